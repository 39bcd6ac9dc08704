// Ways to SHA-256 a chunk while the main thread looks for the next cut point. A hasher takes a view
// that is only valid during the call (the chunker reuses its window), so anything asynchronous must
// copy it before returning.
//   inline      node:crypto on the calling thread; no copy, no parallelism.
//   threadpool  WebCrypto digest, which Node runs on the libuv thread pool (it copies the input).
//   worker      one shared worker_threads worker; the chunk is copied into a pooled ArrayBuffer that is
//               transferred there and back (no allocation per chunk, no structured clone).
// These serve chunkStream's sequential engine (and the parallel one with hashing 'inline' or
// 'threadpool'); the default parallel engine hashes through its own worker (parallel.ts).
import { webcrypto } from 'node:crypto'
import { Worker } from 'node:worker_threads'
import { PatchswarmError } from '../errors.js'
import { contentHash } from '../crypto/hash.js'

export type HashingMode = 'inline' | 'threadpool' | 'worker'
export const HASHING_MODES: readonly HashingMode[] = ['inline', 'threadpool', 'worker']
export const DEFAULT_HASHING: HashingMode = 'worker'

// Below this size a chunk is hashed inline whatever the mode: a hand-off costs more than the hash.
export const HAND_OFF_MIN = 32 * 1024

export interface ChunkHasher {
  hash (view: Uint8Array): Buffer | Promise<Buffer>
  close (): void
}

export function createHasher (mode: HashingMode = DEFAULT_HASHING): ChunkHasher {
  switch (mode) {
    case 'inline': return { hash: hashInline, close () {} }
    case 'threadpool': return { hash: (v) => v.byteLength < HAND_OFF_MIN ? hashInline(v) : hashOnThreadpool(v), close () {} }
    case 'worker': return new WorkerHasher()
    default: throw PatchswarmError.BAD_ARGUMENT(`unknown hashing mode ${JSON.stringify(mode)}; use one of ${HASHING_MODES.join(', ')}`)
  }
}

const hashInline = contentHash

async function hashOnThreadpool (view: Uint8Array): Promise<Buffer> {
  // WebCrypto refuses views of a SharedArrayBuffer (the parallel chunker's memory): copy those.
  const bytes = view.buffer instanceof SharedArrayBuffer ? new Uint8Array(view) : view
  return Buffer.from(await webcrypto.subtle.digest('SHA-256', bytes))
}

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads')
const { createHash } = require('node:crypto')
parentPort.on('message', ({ id, buffer, length }) => {
  const hash = createHash('sha256').update(new Uint8Array(buffer, 0, length)).digest()
  parentPort.postMessage({ id, buffer, hash }, [buffer])
})
`

interface Reply { id: number, buffer: ArrayBuffer, hash: Uint8Array }

// One worker for the whole process, started on first use, unref'd while idle so it never keeps
// the process alive; every WorkerHasher shares it.
let shared: SharedWorker | null = null

class SharedWorker {
  readonly worker: Worker
  private readonly waiting = new Map<number, { resolve: (h: Buffer) => void, reject: (e: Error) => void, onBuffer: (b: ArrayBuffer) => void }>()
  private nextId = 0

  constructor () {
    this.worker = new Worker(WORKER_SOURCE, { eval: true })
    this.worker.on('message', (m: Reply) => {
      const w = this.waiting.get(m.id)
      if (!w) return
      this.waiting.delete(m.id)
      if (this.waiting.size === 0) this.worker.unref()
      w.onBuffer(m.buffer)
      w.resolve(Buffer.from(m.hash.buffer, m.hash.byteOffset, m.hash.byteLength))
    })
    this.worker.on('error', (err) => this.failAll(err))
    this.worker.on('exit', () => this.failAll(new Error('hash worker exited')))
    this.worker.unref() // after the listeners: adding a 'message' listener refs the port again
  }

  submit (buffer: ArrayBuffer, length: number, onBuffer: (b: ArrayBuffer) => void): Promise<Buffer> {
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      if (this.waiting.size === 0) this.worker.ref()
      this.waiting.set(id, { resolve, reject, onBuffer })
      this.worker.postMessage({ id, buffer, length }, [buffer])
    })
  }

  private failAll (err: Error) {
    if (shared === this) shared = null
    for (const w of this.waiting.values()) w.reject(PatchswarmError.IO_ERROR('hash worker failed: ' + err.message, err))
    this.waiting.clear()
  }
}

class WorkerHasher implements ChunkHasher {
  private readonly pool: ArrayBuffer[] = []
  private readonly worker: SharedWorker

  constructor () {
    this.worker = shared ??= new SharedWorker()
  }

  hash (view: Uint8Array): Buffer | Promise<Buffer> {
    if (view.byteLength < HAND_OFF_MIN) return hashInline(view)
    let buffer = this.pool.pop()
    if (!buffer || buffer.byteLength < view.byteLength) buffer = new ArrayBuffer(Math.max(view.byteLength, 1024 * 1024))
    new Uint8Array(buffer, 0, view.byteLength).set(view)
    return this.worker.submit(buffer, view.byteLength, (b) => { if (this.pool.length < 64) this.pool.push(b) })
  }

  close () {
    this.pool.length = 0
  }
}
