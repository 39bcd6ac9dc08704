// File-system work on a package tree laid out by a manifest: locating entries, reading exact byte
// ranges, checking (and optionally copying) every chunk against its hash, permissions, removal.
import fs from 'node:fs/promises'
import path from 'node:path'
import { PatchswarmError } from '../errors.js'
import { contentHashHex } from '../crypto/index.js'
import type { Manifest } from './manifest.js'
import { checkInWorker, type FileCheckJob } from './check-worker.js'

/** Absolute location of a manifest path under `root` (paths are already validated). */
export function locate (root: string, p: string): string {
  return path.join(root, ...p.split('/'))
}

/** Reads exactly `length` bytes at `position`; fewer only if the file ends first (returns the count). */
export async function readAt (fh: fs.FileHandle, buf: Uint8Array, length: number, position: number): Promise<number> {
  let done = 0
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, position + done)
    if (bytesRead === 0) break
    done += bytesRead
  }
  return done
}

export interface TreeCheck {
  /** Indices (into the chunk table) of chunks found wrong at some placement. */
  bad: Set<number>
  /** The first problem, for messages. */
  first: string | null
}

/** Trees of at least this many bytes are checked on two threads when nothing is copied. */
export const PARALLEL_CHECK_BYTES = 48 * 1024 * 1024
// About what this thread re-hashes while the worker starts (25-29 ms measured; SHA-256 alone takes
// 0.69 ms a MiB here, plus the reads): the worker's part begins that much past the middle, so that
// both end about together.
const WORKER_START_BYTES = 32 * 1024 * 1024

// What checkTree says is wrong, in the same words whichever thread found it.
const problem = {
  unreadable: (p: string, code: string | undefined) => `${p}: cannot open (${code})`,
  chunk: (p: string, ci: number, offset: number) => `${p}: chunk ${ci} at offset ${offset} does not match its hash`,
  size: (p: string, got: number, want: number) => `${p}: file is ${got} bytes, the manifest says ${want}`
}

/**
 * Reads every file of `m` under `root` chunk by chunk and compares each chunk's hash. With `copyTo`,
 * writes exactly the bytes it checked to the same paths under `copyTo` (which must not hold them
 * yet) and stops at the first bad chunk. Files that are longer than the manifest says are bad.
 * Without `copyTo`, a tree of PARALLEL_CHECK_BYTES or more is split: a worker thread re-hashes the
 * chunks that start in the last part of its bytes while this thread does the rest (splitWork).
 */
export async function checkTree (root: string, m: Manifest, opts: { copyTo?: string, stopAtFirst?: boolean } = {}): Promise<TreeCheck> {
  const result: TreeCheck = { bad: new Set(), first: null }
  const fail = (ci: number, msg: string) => {
    result.bad.add(ci)
    result.first ??= msg
  }
  // Two buffers: the next chunk is read while this one is hashed (and copied).
  const bufs = [Buffer.allocUnsafe(m.chunking.max), Buffer.allocUnsafe(m.chunking.max)] as const
  const stop = () => result.first !== null && (opts.stopAtFirst || opts.copyTo !== undefined)
  const { own, theirs } = splitWork(root, m, opts.copyTo === undefined && m.size >= PARALLEL_CHECK_BYTES)
  const helper = theirs.length > 0 ? checkInWorker(theirs, m.chunking.max) : null
  let settled = false
  try {
    if (opts.copyTo) for (const d of m.dirs) await fs.mkdir(locate(opts.copyTo, d))
    for (const [fi, f] of m.files.entries()) {
      if (stop()) break
      const { chunks: mine, checkSize } = own[fi]!
      if (mine.length === 0 && !checkSize) continue // wholly the worker's
      let fh: fs.FileHandle
      try {
        fh = await fs.open(locate(root, f.path), 'r')
      } catch (err) {
        fail(f.chunks[0] ?? -1, problem.unreadable(f.path, (err as NodeJS.ErrnoException).code))
        for (const ci of f.chunks) result.bad.add(ci)
        continue
      }
      let next: Promise<number> | null = null
      const readAhead = (j: number): Promise<number> | null => {
        if (j >= mine.length) return null
        const read = readAt(fh, bufs[j % 2]!, m.chunks[mine[j]!.chunk]!.size, mine[j]!.offset)
        read.catch(() => {}) // awaited below, unless we stop first
        return read
      }
      let out: fs.FileHandle | null = null
      try {
        out = opts.copyTo ? await fs.open(locate(opts.copyTo, f.path), 'wx', 0o600) : null
        next = readAhead(0)
        for (let j = 0; j < mine.length; j++) {
          const { chunk: ci, offset } = mine[j]!
          const { hash, size } = m.chunks[ci]!
          const n = await next!
          // The other buffer is free: the chunk before this one was checked (and written) already.
          next = readAhead(j + 1)
          const bytes = bufs[j % 2]!.subarray(0, n)
          if (n !== size || contentHashHex(bytes) !== hash) {
            fail(ci, problem.chunk(f.path, ci, offset))
            if (stop()) break
          } else if (out) {
            await out.write(bytes, 0, n, offset)
          }
        }
        if (checkSize && !stop()) {
          const { size } = await fh.stat()
          if (size !== f.size) fail(f.chunks.at(-1) ?? -1, problem.size(f.path, size, f.size))
        }
        if (out) await out.sync()
      } finally {
        await next?.catch(() => {}) // a read started before we stopped ends before its file closes
        await fh.close()
        await out?.close()
      }
    }
    // The worker's problems lie after all of this thread's: adding them now keeps `first` the
    // first problem in the tree's order, as on one thread.
    if (helper && !stop()) {
      const bad = await helper.bad
      settled = true
      for (const b of bad) {
        if (b.unreadable) fail(b.chunk, problem.unreadable(b.path, b.unreadable))
        else if (b.size !== undefined) fail(b.chunk, problem.size(b.path, b.size, b.expected!))
        else fail(b.chunk, problem.chunk(b.path, b.chunk, b.offset))
        if (stop()) break
      }
    }
  } finally {
    if (!settled) helper?.stop() // stopped at a bad chunk, or failed: its answer is not needed
  }
  result.bad.delete(-1)
  return result
}

interface OwnWork {
  /** This thread's chunks of the file, and where they start. */
  chunks: Array<{ chunk: number, offset: number }>
  /** Whether this thread checks the file's length (it holds its end). */
  checkSize: boolean
}

/**
 * Who checks what: chunks that start before `(size + WORKER_START_BYTES) / 2` in the tree's bytes,
 * and the length of every file that ends there, are this thread's ([file index]); the rest are the
 * worker's jobs.
 */
export function splitWork (root: string, m: Manifest, parallel: boolean): { own: OwnWork[], theirs: FileCheckJob[] } {
  const from = parallel ? (m.size + WORKER_START_BYTES) / 2 : Infinity
  const own: OwnWork[] = []
  const theirs: FileCheckJob[] = []
  let before = 0 // bytes of the files before this one
  for (const f of m.files) {
    const mine: OwnWork['chunks'] = []
    const job: FileCheckJob = { file: locate(root, f.path), path: f.path, chunks: [], size: -1, last: f.chunks.at(-1) ?? -1 }
    let offset = 0
    for (const ci of f.chunks) {
      const { hash, size } = m.chunks[ci]!
      if (before + offset >= from) job.chunks.push([ci, offset, size, hash])
      else mine.push({ chunk: ci, offset })
      offset += size
    }
    // The length goes with the file's last chunk (an empty file: with where it starts).
    const endsHere = f.chunks.length > 0 ? job.chunks.length === 0 : before < from
    if (!endsHere) job.size = f.size
    own.push({ chunks: mine, checkSize: endsHere })
    if (job.chunks.length > 0 || !endsHere) theirs.push(job)
    before += offset
  }
  return { own, theirs }
}

export function throwIfBad (check: TreeCheck, what: string) {
  if (check.first !== null) throw PatchswarmError.HASH_MISMATCH(`${what}: ${check.first}`)
}

/** Files 0444 (0555 if executable), directories 0555, deepest first, then `root` itself. */
export async function makeReadOnly (root: string, m: Manifest, includeRoot = true): Promise<void> {
  for (const f of m.files) await fs.chmod(locate(root, f.path), f.mode === 0o755 ? 0o555 : 0o444)
  for (const d of [...m.dirs].reverse()) await fs.chmod(locate(root, d), 0o555)
  if (includeRoot) await fs.chmod(root, 0o555)
}

/** Owner-writable again, so the tree can be changed or removed (works for any tree). */
export async function makeWritable (root: string): Promise<void> {
  let st
  try {
    st = await fs.lstat(root)
  } catch {
    return
  }
  if (st.isSymbolicLink()) return
  await fs.chmod(root, (st.mode & 0o777) | 0o200)
  if (st.isDirectory()) for (const name of await fs.readdir(root)) await makeWritable(path.join(root, name))
}

/** Removes a tree even when parts of it are read-only. */
export async function removeTree (root: string): Promise<void> {
  try {
    await fs.rm(root, { recursive: true, force: true })
  } catch {
    await makeWritable(root)
    await fs.rm(root, { recursive: true, force: true })
  }
}

/** Files under one folder kept open for repeated reads and writes, each opened once, closed together. */
export class OpenFiles {
  private readonly handles = new Map<string, Promise<fs.FileHandle>>()

  constructor (private readonly root: string, private readonly flags: 'r' | 'r+') {}

  get (file: string): Promise<fs.FileHandle> {
    let fh = this.handles.get(file)
    if (!fh) {
      fh = fs.open(locate(this.root, file), this.flags)
      fh.catch(() => this.handles.delete(file))
      this.handles.set(file, fh)
    }
    return fh
  }

  async closeAll (): Promise<void> {
    const handles = [...this.handles.values()]
    this.handles.clear()
    for (const fh of handles) await (await fh.catch(() => null))?.close()
  }
}
