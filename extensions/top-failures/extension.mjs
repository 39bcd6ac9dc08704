// @ts-check
// Top failing packages: a view (a table model; the view layer draws, filters and scrolls it) of
// the releases whose installs fail most in the scope the console session is looking at:
//
//   Package  Version  Failed  Rolled back  Recovered  Endpoints  Last failure  Reason
//
// Failed and Rolled back count endpoints whose latest state for the release is that; Recovered
// counts endpoints that failed once and have it installed now; Endpoints counts every endpoint the
// release was assigned to in the scope. Ranked by Failed + Rolled back, then Recovered, then the
// latest failure. Only releases with at least one failure are listed.
//
// The view is live: it is rebuilt from the patch records (ctx.reports.records) whenever the
// scope's KPIs change (ctx.reports.kpis$, which the console pushes when its views change).
/** @typedef {import('../../tui/extensions/index.js').ExtensionContext} ExtensionContext */
/** @typedef {import('../../tui/extensions/index.js').ViewModel} ViewModel */
/** @typedef {Awaited<ReturnType<ExtensionContext['reports']['records']>>[number]} PatchRecord */

export const VIEW_ID = 'topFailures'
export const COLUMNS = ['Package', 'Version', 'Failed', 'Rolled back', 'Recovered', 'Endpoints', 'Last failure', 'Reason']
/** How often the view may be rebuilt while failures stream in. */
const REFRESH_MS = 1000
const MAX_REASON_CHARS = 120

/** @param {ExtensionContext} ctx */
export function activate (ctx) {
  ctx.subscriptions.push(
    ctx.window.registerViewProvider(VIEW_ID, { resolve: ({ scope }) => liveModel(ctx, scope) }),
    ctx.commands.registerCommand('topFailures.show', (/** @type {unknown} */ arg) => show(ctx, arg))
  )
}

/**
 * The model of `scope`, again whenever its KPIs change. An Observable of the same rxjs the console
 * uses, made with the constructor of one the API handed out: extensions import nothing but Node.
 *
 * @param {ExtensionContext} ctx
 * @param {string} scope
 */
function liveModel (ctx, scope) {
  const changes = ctx.reports.kpis$(scope, REFRESH_MS)
  const Observable = /** @type {typeof import('rxjs').Observable<ViewModel>} */ (/** @type {unknown} */ (changes.constructor))
  return new Observable((subscriber) => {
    let asked = 0
    let shown = 0
    let closed = false
    const refresh = () => {
      const mine = ++asked
      build(ctx, scope).then(
        (model) => { if (!closed && mine > shown) { shown = mine; subscriber.next(model) } },
        (err) => { if (!closed && mine > shown) { shown = mine; subscriber.next(problemModel(scope, err)) } })
    }
    const sub = changes.subscribe({
      next: refresh,
      error: (err) => { if (!closed) { subscriber.next(problemModel(scope, err)); subscriber.complete() } }
    })
    return () => { closed = true; sub.unsubscribe() }
  })
}

/**
 * @param {ExtensionContext} ctx
 * @param {string} scope
 * @returns {Promise<ViewModel>}
 */
async function build (ctx, scope) {
  const limit = /** @type {number | undefined} */ (ctx.configuration.get('topFailures.limit')) ?? 50
  const ranked = rank(await ctx.reports.records(scope))
  if (ranked.length === 0) return { kind: 'text', lines: [`No failed or rolled-back installs ${where(scope)}.`] }
  return {
    kind: 'table',
    columns: [...COLUMNS],
    rows: ranked.slice(0, limit).map((r) => [
      r.name, r.version, String(r.failed), String(r.rolledBack), String(r.recovered), String(r.endpoints),
      r.lastFailureAt === undefined ? '' : minute(r.lastFailureAt), r.reason
    ])
  }
}

/**
 * @typedef {object} Ranked
 * @property {string} release
 * @property {string} name
 * @property {string} version
 * @property {number} failed
 * @property {number} rolledBack
 * @property {number} recovered
 * @property {number} endpoints
 * @property {string} [lastFailureAt]
 * @property {string} reason
 */

/**
 * @param {PatchRecord[]} records
 * @returns {Ranked[]}
 */
function rank (records) {
  /** @type {Map<string, Ranked & { reasonAt: string }>} */
  const byRelease = new Map()
  for (const r of records) {
    let row = byRelease.get(r.release)
    if (!row) {
      row = { release: r.release, name: clean(r.name), version: clean(r.version), failed: 0, rolledBack: 0, recovered: 0, endpoints: 0, reason: '', reasonAt: '' }
      byRelease.set(r.release, row)
    }
    row.endpoints++
    if (r.state === 'failed') row.failed++
    else if (r.state === 'rolled-back') row.rolledBack++
    else if (r.state === 'installed' && (r.failedAt !== undefined || r.firstResult === 'failed')) row.recovered++
    if (r.failedAt !== undefined && (row.lastFailureAt === undefined || r.failedAt > row.lastFailureAt)) row.lastFailureAt = r.failedAt
    // The reason of the latest failure that gave one (a rollback may come without).
    const reason = [r.code, r.reason].filter((s) => s !== undefined && s !== '').join(': ')
    if (reason !== '' && r.failedAt !== undefined && r.failedAt >= row.reasonAt) { row.reason = clean(reason).slice(0, MAX_REASON_CHARS); row.reasonAt = r.failedAt }
  }
  return [...byRelease.values()]
    .filter((r) => r.failed + r.rolledBack + r.recovered > 0)
    .sort((a, b) => (b.failed + b.rolledBack) - (a.failed + a.rolledBack) ||
      b.recovered - a.recovered ||
      (b.lastFailureAt ?? '').localeCompare(a.lastFailureAt ?? '') ||
      a.name.localeCompare(b.name) || a.version.localeCompare(b.version) || a.release.localeCompare(b.release))
    .map(({ reasonAt: _r, ...row }) => row)
}

/**
 * Opens the view on a scope (the argument, or the user's pick). While the console offers no
 * command to open a view (`patchswarm.openView`), the ranking is shown as a pick list instead.
 * Resolves with the model shown, or undefined when the user cancelled.
 *
 * @param {ExtensionContext} ctx
 * @param {unknown} arg
 * @returns {Promise<ViewModel | undefined>}
 */
async function show (ctx, arg) {
  let scope
  try {
    scope = await scopeOf(ctx, arg)
  } catch (err) {
    ctx.window.showErrorMessage(`Cannot list your tenants: ${messageOf(err)}`).catch(() => {})
    return undefined
  }
  if (scope === undefined) return undefined
  if ((await ctx.commands.getCommands()).includes('patchswarm.openView')) {
    await ctx.commands.executeCommand('patchswarm.openView', VIEW_ID, { scope })
    return undefined
  }
  let model
  try {
    model = await build(ctx, scope)
  } catch (err) {
    model = problemModel(scope, err)
  }
  if (model.kind === 'text') {
    ctx.window.showInformationMessage(model.lines.join(' ')).catch(() => {})
    return model
  }
  const col = (/** @type {string} */ name) => COLUMNS.indexOf(name)
  const items = model.rows.map((row) => ({
    label: `${row[col('Package')]} ${row[col('Version')]}`,
    description: `${row[col('Failed')]} failed, ${row[col('Rolled back')]} rolled back, ${row[col('Recovered')]} recovered of ${row[col('Endpoints')]}`,
    detail: [row[col('Last failure')], row[col('Reason')]].filter(Boolean).join('  ')
  }))
  ctx.window.showQuickPick(items, { title: `Top failing packages ${where(scope)}` }).catch(() => {})
  return model
}

/**
 * @param {ExtensionContext} ctx
 * @param {unknown} arg
 * @returns {Promise<string | undefined>}
 */
async function scopeOf (ctx, arg) {
  if (typeof arg === 'string') return arg
  if (arg !== null && typeof arg === 'object' && typeof (/** @type {{ scope?: unknown }} */ (arg)).scope === 'string') {
    return /** @type {{ scope: string }} */ (arg).scope
  }
  const nodes = (await ctx.fleet.tenants('')).filter((n) => n.kind !== 'endpoint' && !n.removed)
  if (nodes.length === 0) return undefined
  const picked = await ctx.window.showQuickPick(
    nodes.map((n) => ({ label: n.path, description: `${n.displayName} (${n.kind})` })),
    { title: 'Top failing packages of which tenant?', placeHolder: 'tenant path' })
  return picked?.label
}

/**
 * @param {string} scope
 * @param {unknown} err
 * @returns {ViewModel}
 */
function problemModel (scope, err) {
  return { kind: 'text', lines: [`Cannot show the failing packages ${where(scope)}: ${clean(messageOf(err))}`] }
}

/** @param {string} scope */
function where (scope) {
  return scope === '' ? 'in the whole organisation' : `under ${scope}`
}

/**
 * `2030-03-02 08:10` (UTC) from an ISO time.
 *
 * @param {string} iso
 */
function minute (iso) {
  return `${iso.slice(0, 10)} ${iso.slice(11, 16)}`
}

/**
 * Texts from endpoints (a failure reason) go to a terminal: no control characters, so no escape
 * sequences, and one line.
 *
 * @param {string} s
 */
function clean (s) {
  // eslint-disable-next-line no-control-regex
  return String(s).replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ').trim()
}

/** @param {unknown} err */
function messageOf (err) {
  return err instanceof Error ? err.message : String(err)
}
