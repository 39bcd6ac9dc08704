// The `files` installer: puts the package's tree at <installRoot>/<target> by a directory swap, and
// keeps what was there for a rollback.
//
//   <target>.staging-<id>    the new tree while it is copied (same parent: renames stay atomic)
//   <target>.previous-<id>   what was at <target> before this job, kept until commit
//   <target>.discard-<id>    a tree on its way out (renamed first, so nothing is ever half-deleted)
//   <workDir>/files-install.json   the marker, written before the first change:
//                                  { target, id, previousExisted, committed }
//
// <id> is derived from the job's workDir, so a re-run finds the same names. Install: marker → copy
// into staging (fsync) → rename target → previous → rename staging → target. Between the two renames
// <target> is briefly absent; a crash anywhere is completed by re-running install or undone by
// rollback, each deciding from what exists on disk plus the marker.
import fs from 'node:fs/promises'
import { createReadStream } from 'node:fs'
import { createHash } from 'node:crypto'
import path from 'node:path'
import { PatchswarmError, isPatchswarmError } from '../../lib/errors.js'
import { assertSafeRelativePath } from '../../lib/content/paths.js'
import { removeTree } from '../../lib/content/tree.js'
import { writeAtomic } from '../../lib/crypto/keyfile.js'
import { assertSpecType, type InstallContext, type InstallResult, type Installer } from './installer.js'
import { abortCode, abortReason } from './run.js'

export const MARKER_FILE = 'files-install.json'

export interface FilesInstallerOptions {
  /** The folder `files` targets are relative to. */
  installRoot: string
}

export interface FilesLayout {
  id: string
  target: string
  staging: string
  previous: string
  discard: string
  marker: string
}

interface Marker {
  target: string
  id: string
  previousExisted: boolean
  committed: boolean
}

/** Where a job's files install lives on disk (for the agent's cleanup and for tests). */
export function filesLayout (installRoot: string, target: string, workDir: string): FilesLayout {
  const abs = path.join(path.resolve(installRoot), ...assertSafeRelativePath(target, 'files target').split('/'))
  const id = createHash('sha256').update(path.resolve(workDir)).digest('hex').slice(0, 12)
  return layoutOf(abs, id, workDir)
}

function layoutOf (target: string, id: string, workDir: string): FilesLayout {
  return {
    id,
    target,
    staging: `${target}.staging-${id}`,
    previous: `${target}.previous-${id}`,
    discard: `${target}.discard-${id}`,
    marker: path.join(path.resolve(workDir), MARKER_FILE)
  }
}

export function createFilesInstaller (opts: FilesInstallerOptions): Installer<'files'> {
  if (typeof opts?.installRoot !== 'string' || opts.installRoot === '') throw PatchswarmError.BAD_ARGUMENT('the files installer needs an installRoot')
  const installRoot = path.resolve(opts.installRoot)

  const layout = (ctx: InstallContext) => {
    assertSpecType(ctx, 'files')
    return filesLayout(installRoot, ctx.spec.target, ctx.workDir)
  }

  return {
    type: 'files',

    install: async (ctx) => {
      const L = layout(ctx)
      return guarded(ctx, 'install', async (say, checkAbort) => {
        await fs.mkdir(ctx.workDir, { recursive: true })
        let m = await readMarker(L.marker)
        if (m && (m.target !== L.target || m.id !== L.id)) throw PatchswarmError.BAD_STATE(`this job installed to ${m.target}, not ${L.target}`)
        if (!m) {
          m = { target: L.target, id: L.id, previousExisted: await exists(L.target), committed: false }
          await writeMarker(L.marker, m)
        }
        await removeTree(L.discard)
        const previousSafe = m.committed || !m.previousExisted || await exists(L.previous)
        if (previousSafe && !(await exists(L.staging)) && await compareTrees(L.target, ctx.packageDir, ctx.signal) === null) {
          say(`${L.target} already holds this package`)
          return
        }
        await removeTree(L.staging) // whatever an interrupted run left there is copied afresh
        checkAbort()
        await fs.mkdir(path.dirname(L.target), { recursive: true })
        const n = await copyTree(ctx.packageDir, L.staging, ctx.signal)
        say(`copied ${n.files} files (${n.bytes} bytes) to ${L.staging}`)
        checkAbort() // from here on, finish the swap rather than stop between the renames
        if (await exists(L.target)) {
          if (m.previousExisted && !m.committed && !(await exists(L.previous))) {
            await move(L.target, L.previous)
            say(`kept the previous version as ${L.previous}`)
          } else {
            await move(L.target, L.discard) // ours, from an earlier run of this job
            say('replaced what an earlier run of this job installed')
          }
        }
        await move(L.staging, L.target)
        await syncDir(path.dirname(L.target))
        await removeTree(L.discard)
        say(`installed ${L.target}`)
      })
    },

    healthCheck: async (ctx) => {
      const L = layout(ctx)
      return guarded(ctx, 'health', async (say) => {
        const problem = await compareTrees(L.target, ctx.packageDir, ctx.signal)
        if (problem) throw PatchswarmError.INSTALL_FAILED(problem)
        say(`${L.target} matches the package`)
      })
    },

    rollback: async (ctx) => {
      layout(ctx)
      return guarded(ctx, 'rollback', async (say, checkAbort) => {
        checkAbort()
        const m = await readMarker(path.join(path.resolve(ctx.workDir), MARKER_FILE))
        if (!m) {
          say('nothing to roll back: this job changed nothing')
          return
        }
        if (m.committed) throw PatchswarmError.BAD_STATE('the install was committed; its previous version is gone')
        const L = layoutOf(m.target, m.id, ctx.workDir)
        await removeTree(L.staging)
        await removeTree(L.discard)
        if (m.previousExisted) {
          if (await exists(L.previous)) {
            if (await exists(L.target)) await move(L.target, L.discard)
            await move(L.previous, L.target)
            say(`restored the previous version of ${L.target}`)
          } else {
            say(`the previous version of ${L.target} is in place`) // never moved, or restored already
          }
        } else if (await exists(L.target)) {
          await move(L.target, L.discard)
          say(`removed ${L.target}, which this job created`)
        } else {
          say(`nothing is installed at ${L.target}`)
        }
        await syncDir(path.dirname(L.target))
        await removeTree(L.discard)
      })
    },

    commit: async (ctx) => {
      layout(ctx)
      return guarded(ctx, 'commit', async (say) => {
        const m = await readMarker(path.join(path.resolve(ctx.workDir), MARKER_FILE))
        if (!m) {
          say('nothing to commit')
          return
        }
        const L = layoutOf(m.target, m.id, ctx.workDir)
        // Marked first: a crash halfway must not let a rollback restore a half-removed tree.
        if (!m.committed) await writeMarker(L.marker, { ...m, committed: true })
        await removeTree(L.staging)
        if (await exists(L.previous)) await move(L.previous, L.discard)
        await removeTree(L.discard)
        say(`committed ${L.target}; the previous version is released`)
      })
    }
  }
}

// --- inside ---------------------------------------------------------------------------------------

class Aborted extends Error {
  constructor (readonly reason: unknown) { super('aborted') }
}

type Step = (say: (line: string) => void, checkAbort: () => void) => Promise<void>

// Runs a step; a failure becomes a result. Only BAD_ARGUMENT (a programming error) is thrown.
async function guarded (ctx: InstallContext, name: string, step: Step): Promise<InstallResult> {
  const lines: string[] = []
  const say = (line: string) => {
    lines.push(line)
    ctx.log(`files ${name}: ${line}`)
  }
  const checkAbort = () => {
    if (ctx.signal.aborted) throw new Aborted(ctx.signal.reason)
  }
  try {
    await step(say, checkAbort)
    return { ok: true, output: lines.join('\n') }
  } catch (err) {
    if (isPatchswarmError(err, 'BAD_ARGUMENT')) throw err
    const output = lines.join('\n')
    if (err instanceof Aborted) return { ok: false, code: abortCode(err.reason), reason: `${name}: ${abortReason(err.reason)}`, output }
    const detail = isPatchswarmError(err) ? err.detail : `${(err as NodeJS.ErrnoException).code ?? ''} ${(err as Error).message}`.trim()
    ctx.log(`files ${name}: failed: ${detail}`)
    return { ok: false, code: 'INSTALL_FAILED', reason: `${name}: ${detail}`, output }
  }
}

async function readMarker (file: string): Promise<Marker | null> {
  let text: string
  try {
    text = await fs.readFile(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw err
  }
  let m: Partial<Marker>
  try {
    m = JSON.parse(text)
  } catch (err) {
    throw PatchswarmError.BAD_STATE(`${file} is not JSON`, err)
  }
  if (typeof m?.target !== 'string' || typeof m.id !== 'string' || typeof m.previousExisted !== 'boolean' || typeof m.committed !== 'boolean') {
    throw PatchswarmError.BAD_STATE(`${file} is not a files-install marker`)
  }
  return m as Marker
}

async function writeMarker (file: string, m: Marker) {
  await writeAtomic(file, JSON.stringify(m) + '\n', 0o644)
  await syncDir(path.dirname(file))
}

async function exists (p: string): Promise<boolean> {
  try {
    await fs.lstat(p)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw err
  }
}

async function move (from: string, to: string) {
  try {
    await fs.rename(from, to)
  } catch (err) {
    throw PatchswarmError.IO_ERROR(`cannot move ${from} to ${to}: ${(err as NodeJS.ErrnoException).code}`, err)
  }
}

// Renames are only as durable as the directory entry; not every platform can fsync a directory.
async function syncDir (dir: string) {
  let fh: fs.FileHandle | undefined
  try {
    fh = await fs.open(dir, 'r')
    await fh.sync()
  } catch {
    // Windows (EISDIR/EPERM): the rename is as durable as the OS makes it
  } finally {
    await fh?.close()
  }
}

/** Copies files and directories (nothing else) into `dst`, which must not exist; synced. */
async function copyTree (src: string, dst: string, signal: AbortSignal): Promise<{ files: number, bytes: number }> {
  const n = { files: 0, bytes: 0 }
  const walk = async (from: string, to: string, rel: string) => {
    await fs.mkdir(to, { mode: 0o755 })
    const entries = await fs.readdir(from, { withFileTypes: true })
    for (const e of entries.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0)) {
      if (signal.aborted) throw new Aborted(signal.reason)
      const s = path.join(from, e.name)
      const d = path.join(to, e.name)
      const r = rel ? `${rel}/${e.name}` : e.name
      if (e.isDirectory()) {
        await walk(s, d, r)
      } else if (e.isFile()) {
        await fs.copyFile(s, d, fs.constants.COPYFILE_EXCL)
        const st = await fs.stat(s)
        // The package copy is read-only; the installed tree gets the publisher's modes back.
        await fs.chmod(d, st.mode & 0o100 ? 0o755 : 0o644)
        const fh = await fs.open(d, 'r+')
        try {
          await fh.sync()
        } finally {
          await fh.close()
        }
        n.files++
        n.bytes += st.size
      } else {
        throw PatchswarmError.IO_ERROR(`${r} in the package is neither a file nor a directory`)
      }
    }
    await syncDir(to)
  }
  await walk(src, dst, '')
  return n
}

/** The first difference between `actual` and the package tree `expected`, or null if they match. */
export async function compareTrees (actual: string, expected: string, signal?: AbortSignal): Promise<string | null> {
  const cmp = async (a: string, e: string, rel: string): Promise<string | null> => {
    if (signal?.aborted) throw new Aborted(signal.reason)
    const name = rel || path.basename(actual)
    const se = await fs.stat(e)
    let sa
    try {
      sa = await fs.lstat(a)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return `${name} is missing`
      throw err
    }
    if (se.isDirectory()) {
      if (!sa.isDirectory()) return `${name} is not a directory`
      const want = (await fs.readdir(e)).sort()
      const have = new Set(await fs.readdir(a))
      for (const n of want) if (!have.has(n)) return `${join(rel, n)} is missing`
      const wanted = new Set(want)
      for (const n of [...have].sort()) if (!wanted.has(n)) return `${join(rel, n)} is not in the package`
      for (const n of want) {
        const problem = await cmp(path.join(a, n), path.join(e, n), join(rel, n))
        if (problem) return problem
      }
      return null
    }
    if (!sa.isFile()) return `${name} is not a file`
    if (sa.size !== se.size) return `${name} is ${sa.size} bytes, the package has ${se.size}`
    if (process.platform !== 'win32' && (sa.mode & 0o100) !== (se.mode & 0o100)) return `${name} differs in its execute permission`
    if (await fileHash(a) !== await fileHash(e)) return `${name} differs from the package`
    return null
  }
  return cmp(actual, expected, '')
}

function join (rel: string, name: string) {
  return rel ? `${rel}/${name}` : name
}

async function fileHash (file: string): Promise<string> {
  const h = createHash('sha256')
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer)
  return h.digest('hex')
}
