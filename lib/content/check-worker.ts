// Re-hashing chunks of files on a worker thread, so that checking a large tree (a receive's
// commit, a store's verify) uses a second core: checkTree gives it part of the chunks and hashes
// the rest itself. The worker reads with its own file descriptors and its own buffer. One worker
// per check (starting one took 25-29 ms here; checkTree gives it less to make up for that), so a
// check holds no thread when it is done. (lib/content/parallel.ts keeps its worker for the
// chunker's streams, whose bytes are in memory already.)
import { Worker } from 'node:worker_threads'
import { PatchswarmError } from '../errors.js'
import { HASH_ALGORITHM } from '../crypto/hash.js'

/**
 * The chunks of one file to re-hash: [chunk index, offset, size, hash hex] each; with `size` (not
 * -1) the file's length is checked too, and a problem with it is reported as chunk `last`.
 */
export interface FileCheckJob {
  file: string
  path: string
  chunks: Array<[number, number, number, string]>
  size: number
  last: number
}

/** What the worker found wrong: a chunk, a file it could not open (errno code), or a length. */
export interface BadChunk {
  chunk: number
  offset: number
  path: string
  unreadable?: string
  /** The file's length, when it is not the `expected` one. */
  size?: number
  expected?: number
}

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads')
const fs = require('node:fs')
const { createHash } = require('node:crypto')
const buf = Buffer.allocUnsafe(workerData.max)
const bad = []
for (const job of workerData.jobs) {
  let fd
  try {
    fd = fs.openSync(job.file, 'r')
  } catch (err) {
    for (const [chunk, offset] of job.chunks) bad.push({ chunk, offset, path: job.path, unreadable: err.code })
    if (job.chunks.length === 0) bad.push({ chunk: job.last, offset: -1, path: job.path, unreadable: err.code })
    continue
  }
  try {
    for (const [chunk, offset, size, hash] of job.chunks) {
      let n = 0
      while (n < size) {
        const r = fs.readSync(fd, buf, n, size - n, offset + n)
        if (r === 0) break
        n += r
      }
      if (n !== size || createHash('${HASH_ALGORITHM}').update(buf.subarray(0, n)).digest('hex') !== hash) bad.push({ chunk, offset, path: job.path })
    }
    if (job.size !== -1) {
      const size = fs.fstatSync(fd).size
      if (size !== job.size) bad.push({ chunk: job.last, offset: -1, path: job.path, size, expected: job.size })
    }
  } finally {
    fs.closeSync(fd)
  }
}
parentPort.postMessage(bad)
`

export interface WorkerCheck {
  /** The chunks that did not match, once the worker is through. */
  readonly bad: Promise<BadChunk[]>
  /** Ends the worker early (its result is then an empty list). */
  stop (): void
}

/** Starts one worker on `jobs`; `max` is the largest chunk size among them. */
export function checkInWorker (jobs: FileCheckJob[], max: number): WorkerCheck {
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { jobs, max } })
  let stopped = false
  const bad = new Promise<BadChunk[]>((resolve, reject) => {
    worker.once('message', (list: BadChunk[]) => resolve(list))
    worker.once('error', (err) => reject(PatchswarmError.IO_ERROR(`re-hashing on a worker thread failed: ${err.message}`, err)))
    worker.once('exit', () => stopped ? resolve([]) : reject(PatchswarmError.IO_ERROR('the re-hashing worker thread exited without a result')))
  })
  bad.catch(() => {}) // awaited by the caller, unless it stops first
  return {
    bad,
    stop () {
      stopped = true
      void worker.terminate()
    }
  }
}
