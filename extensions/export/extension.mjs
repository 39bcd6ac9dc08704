// @ts-check
// Export: the current scope's patch records as CSV and its HTML audit report, written to a folder
// (the `export.folder` setting) as `<scope>-<date>.csv|html`. The same two formats are offered as
// exporters, for the view layer to write wherever the user asks.
//
// Written only against the extension API: the console makes the files' text (reports.export, as
// the session's admin, so only what that admin may see is in them); this extension names and
// writes them.
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

/** @typedef {import('../../tui/extensions/index.js').ExtensionContext} ExtensionContext */
/** @typedef {'csv' | 'html'} Format */

/** @type {Record<Format, { what: string, ext: string }>} */
const FORMATS = {
  csv: { what: 'CSV of the patch records', ext: '.csv' },
  html: { what: 'HTML audit report', ext: '.html' }
}

/** Exports may name endpoints and failure reasons: readable by their owner only. */
const FILE_MODE = 0o600

/** @param {ExtensionContext} ctx */
export function activate (ctx) {
  for (const format of /** @type {Format[]} */ (['csv', 'html'])) {
    ctx.subscriptions.push(
      ctx.commands.registerCommand(`export.${format}`, (/** @type {unknown} */ arg) => exportToFolder(ctx, format, arg)),
      ctx.exporters.register(`export.${format}`, { export: (request) => ctx.reports.export(request.scope, format) })
    )
  }
}

/**
 * Writes the export of a scope and tells the user where. The scope is the command's argument (a
 * tenant path, or `{ scope }` as the view layer hands over its ExportRequest); without one the user
 * picks a tenant. Resolves with the file's absolute path, or undefined when the user cancelled or
 * the export failed (the user was told why).
 *
 * @param {ExtensionContext} ctx
 * @param {Format} format
 * @param {unknown} arg
 * @returns {Promise<string | undefined>}
 */
async function exportToFolder (ctx, format, arg) {
  const { what, ext } = FORMATS[format]
  let scope
  try {
    scope = await scopeOf(ctx, arg, `Export the ${what} of which tenant?`)
  } catch (err) {
    return failed(ctx, `Cannot list your tenants: ${messageOf(err)}`)
  }
  if (scope === undefined) return undefined
  const label = scope === '' ? 'the whole organisation' : scope
  let file
  try {
    const text = await ctx.reports.export(scope, format)
    file = await writeNew(outputFolder(ctx), fileBase(scope, new Date()), ext, text)
  } catch (err) {
    return failed(ctx, `Export of ${label} failed: ${messageOf(err)}`)
  }
  ctx.log.info('wrote the %s of %s to %s', what, label, file)
  ctx.window.showInformationMessage(`Exported the ${what} of ${label} to ${file}`).catch(() => {})
  return file
}

/**
 * @param {ExtensionContext} ctx
 * @param {string} message
 * @returns {undefined}
 */
function failed (ctx, message) {
  ctx.log.error(message)
  ctx.window.showErrorMessage(message).catch(() => {})
  return undefined
}

/**
 * The tenant path a command runs on: its argument, else the user's pick among the tenants the
 * session's admin sees ('' is the whole organisation, accepted as an argument only).
 *
 * @param {ExtensionContext} ctx
 * @param {unknown} arg
 * @param {string} title
 * @returns {Promise<string | undefined>}
 */
async function scopeOf (ctx, arg, title) {
  if (typeof arg === 'string') return arg
  if (arg !== null && typeof arg === 'object' && typeof (/** @type {{ scope?: unknown }} */ (arg)).scope === 'string') {
    return /** @type {{ scope: string }} */ (arg).scope
  }
  const nodes = (await ctx.fleet.tenants('')).filter((n) => n.kind !== 'endpoint' && !n.removed)
  if (nodes.length === 0) {
    ctx.window.showInformationMessage('There is no tenant in your scope to export.').catch(() => {})
    return undefined
  }
  const picked = await ctx.window.showQuickPick(
    nodes.map((n) => ({ label: n.path, description: `${n.displayName} (${n.kind})` })),
    { title, placeHolder: 'tenant path' })
  return picked?.label
}

/** @param {ExtensionContext} ctx */
function outputFolder (ctx) {
  const configured = ctx.configuration.get('export.folder')
  const folder = typeof configured === 'string' && configured !== '' ? configured : 'exports'
  if (folder === '~' || folder.startsWith('~/')) return path.join(os.homedir(), folder.slice(1))
  return path.resolve(folder)
}

/**
 * `msp-1_customer-a-2030-03-02`: the scope with '/' as '_' ('organisation' for ''), and the local date.
 *
 * @param {string} scope
 * @param {Date} now
 */
function fileBase (scope, now) {
  const name = scope === '' ? 'organisation' : scope.replaceAll('/', '_')
  const pad = (/** @type {number} */ n) => String(n).padStart(2, '0')
  return `${name}-${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}`
}

/**
 * Writes `text` to `<folder>/<base><ext>`, or `<base>-2<ext>`, `-3`, … when that exists: an export
 * never overwrites an earlier one (an auditor may already have been sent it).
 *
 * @param {string} folder
 * @param {string} base
 * @param {string} ext
 * @param {string} text
 * @returns {Promise<string>}
 */
async function writeNew (folder, base, ext, text) {
  await fs.mkdir(folder, { recursive: true })
  for (let n = 1; n <= 1000; n++) {
    const file = path.join(folder, n === 1 ? `${base}${ext}` : `${base}-${n}${ext}`)
    let handle
    try {
      handle = await fs.open(file, 'wx', FILE_MODE)
    } catch (err) {
      if (/** @type {NodeJS.ErrnoException} */ (err).code === 'EEXIST') continue
      throw err
    }
    try {
      await handle.writeFile(text, 'utf8')
      await handle.sync()
    } catch (err) {
      await handle.close().catch(() => {})
      await fs.unlink(file).catch(() => {})
      throw err
    }
    await handle.close()
    return file
  }
  throw new Error(`${folder} already holds 1000 exports named ${base}; move some away`)
}

/** @param {unknown} err */
function messageOf (err) {
  return err instanceof Error ? err.message : String(err)
}
