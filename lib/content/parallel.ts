// The fast chunking engine behind chunkStream: cut points found by the WebAssembly gear scan
// (gear-wasm.ts) on the calling thread, SHA-256 split between the calling thread and one shared
// worker, both reading the bytes in place from one SharedArrayBuffer (no copy per chunk).
//
// Memory (an "arena", the scan's shared WebAssembly memory):
//   [0, 2048)       gear tables
//   DONE_BYTES      BigInt64: bytes the worker has hashed
//   [HASHES, …)     HASH_SLOTS × 32 bytes: the worker writes chunk n's hash at slot n % HASH_SLOTS
//   [STATES, …)     HASH_SLOTS × Int32: chunk n's state at n % HASH_SLOTS, FREE → TAKEN → DONE
//   slots           SLOTS segments of slotSize bytes; input is copied into the current segment and
//                   cut there; when it is full, the bytes after the last cut (< max) move to the start
//                   of the next free segment. A chunk therefore always lies inside one segment, and a
//                   segment is reused only once the worker has hashed every chunk it handed over there.
//
// Balance: a chunk goes to the worker while its backlog is under BACKLOG bytes, else it is hashed
// here. Whichever thread takes a handed-over chunk first (compare-and-swap FREE → TAKEN) hashes it:
// when this thread would otherwise wait for the worker (a yielded chunk not hashed yet, no segment
// free) it takes chunks back from the end of the worker's queue and hashes them itself; a yielded
// chunk the worker is in the middle of (it may have been descheduled) is waited for WAIT_MS, then
// hashed here too. So neither thread idles while there is work, even when the machine's load leaves
// the worker a small share.
// The first PARALLEL_AFTER bytes of a stream are always hashed here: small inputs never start or
// wake the worker. Arenas are pooled, so a stream of a few bytes costs no allocation.
import { Worker } from 'node:worker_threads'
import { PatchswarmError } from '../errors.js'
import { contentHash } from '../crypto/hash.js'
import type { Cutter } from './fastcdc.js'
import { createSharedMemory, instantiateGear, wasmCut, GEAR_TABLES_END, type GearScan, type WasmCopy, type WasmMemory } from './gear-wasm.js'
import { createHasher, HAND_OFF_MIN, type HashingMode } from './hashers.js'
import type { ByteSource, Chunk } from './chunker.js'

const DONE_BYTES = 2048
const HASHES = 4096
const HASH_SLOTS = 2048
const STATES = HASHES + 32 * HASH_SLOTS
const FREE = 0
const TAKEN = 1
const DONE = 2
const SLOTS_AT = 128 * 1024
const SLOTS = 4
const PAGE = 64 * 1024
// Segments start up to ALIGN - 1 bytes late so that input copies land equally aligned as their
// source (see WasmCopy); the carried-over bytes are placed accordingly.
const ALIGN = 8

/** Bytes of a stream hashed on the calling thread before the worker is used at all. */
export const PARALLEL_AFTER = 4 * 1024 * 1024
/** The largest `max` this engine takes (segments are sized from it); larger goes the JS way. */
export const PARALLEL_MAX_CHUNK = 4 * 1024 * 1024
// Worker backlog above which chunks are hashed here instead; chunks smaller than HAND_OFF_MIN
// (hashers.ts) are always hashed here (a hand-off costs more than the hash).
const BACKLOG = 8 * 1024 * 1024
// A hash job is sent once it holds this many bytes, or when the current input piece is done.
const JOB_BYTES = 1024 * 1024
const IDLE_MS = 2000
// How long this thread waits for a chunk the worker is hashing before hashing it too.
const WAIT_MS = 0.5

const mod8 = (n: number) => ((n % ALIGN) + ALIGN) % ALIGN

export function segmentSize (cutter: Cutter): number {
  return Math.max(8 * 1024 * 1024, 4 * cutter.params.max)
}

// ---------------------------------------------------------------------------------------------
// The worker: plain JavaScript evaluated from a string, so it loads the same under tsx, tap's
// TypeScript loader and compiled dist/ (as in hashers.ts).

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads')
const { createHash } = require('node:crypto')
const arenas = new Map()
const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
let holdMs = 0
parentPort.on('message', (m) => {
  if (m.attach !== undefined) {
    arenas.set(m.attach, { u8: new Uint8Array(m.sab), states: new Int32Array(m.sab, ${STATES}, ${HASH_SLOTS}), bytes: new BigInt64Array(m.sab, ${DONE_BYTES}, 1) })
    return
  }
  if (m.detach !== undefined) { arenas.delete(m.detach); return }
  if (m.pause !== undefined) { if (m.holding) holdMs = m.pause; else sleep(m.pause); return }
  const a = arenas.get(m.key)
  const r = m.jobs
  for (let k = 0; k < r.length; k += 3) {
    const slot = r[k + 2]
    if (Atomics.compareExchange(a.states, slot, ${FREE}, ${TAKEN}) !== ${FREE}) continue
    if (holdMs > 0) { sleep(holdMs); holdMs = 0 }
    const h = createHash('sha256').update(a.u8.subarray(r[k], r[k] + r[k + 1])).digest()
    a.u8.set(h, ${HASHES} + 32 * slot)
    Atomics.add(a.bytes, 0, BigInt(r[k + 1]))
    Atomics.store(a.states, slot, ${DONE})
    Atomics.notify(a.states, slot)
  }
  parentPort.postMessage(m.key)
})
`

let shared: HashWorker | null = null

/** State of the process's chunk-hashing worker, for tests and diagnostics. */
export function chunkWorkerState (): { running: boolean, busy: boolean } {
  return { running: shared !== null, busy: shared !== null && shared.jobs > 0 }
}

/** Ends the chunk-hashing worker as soon as it has nothing to do (it also ends by itself when idle). */
export function stopChunkWorker (): void {
  shared?.retireWhenIdle()
}

/**
 * Tests: blocks the worker thread for `ms` (so that it falls behind the cutter); with `holding`,
 * in the middle of its next chunk (as when the machine's load deschedules it).
 */
export function pauseChunkWorkerForTests (ms: number, holding = false): void {
  shared?.pause(ms, holding)
}

class HashWorker {
  readonly worker: Worker
  jobs = 0
  private readonly arenas = new Map<number, Arena>()
  private idle: NodeJS.Timeout | null = null
  private dead = false
  private retiring = false

  constructor () {
    this.worker = new Worker(WORKER_SOURCE, { eval: true })
    this.worker.on('message', (key: number) => {
      if (--this.jobs === 0) this.retiring ? this.retire() : this.rest()
      this.arenas.get(key)?.wake(null)
    })
    this.worker.on('error', (err) => this.fail(err))
    this.worker.on('exit', () => this.fail(new Error('hash worker exited')))
    this.worker.unref() // after the listeners: adding a 'message' listener refs the port again
    this.rest()
  }

  attach (arena: Arena) {
    this.arenas.set(arena.key, arena)
    this.worker.postMessage({ attach: arena.key, sab: arena.memory.buffer })
  }

  detach (arena: Arena) {
    if (!this.arenas.delete(arena.key) || this.dead) return
    this.worker.postMessage({ detach: arena.key })
  }

  submit (key: number, jobs: number[]) {
    if (this.jobs++ === 0) {
      if (this.idle) clearTimeout(this.idle)
      this.idle = null
      this.worker.ref()
    }
    this.worker.postMessage({ key, jobs })
  }

  // No job in flight: let the process exit, and end the thread if nothing comes for a while.
  private rest () {
    this.worker.unref()
    if (this.idle) clearTimeout(this.idle)
    this.idle = setTimeout(() => { if (this.jobs === 0) this.retire() }, IDLE_MS)
    this.idle.unref()
  }

  pause (ms: number, holding: boolean) {
    this.worker.postMessage({ pause: ms, holding })
  }

  retireWhenIdle () {
    if (this.jobs === 0) this.retire()
    else this.retiring = true
  }

  /** Ends the thread; arenas attach to a new worker when they next need one. */
  retire () {
    if (this.dead) return
    this.dead = true
    if (shared === this) shared = null
    if (this.idle) clearTimeout(this.idle)
    for (const a of this.arenas.values()) a.worker = null
    this.arenas.clear()
    void this.worker.terminate()
  }

  private fail (err: Error) {
    if (this.dead) return
    this.dead = true
    if (shared === this) shared = null
    if (this.idle) clearTimeout(this.idle)
    const e = PatchswarmError.IO_ERROR('hash worker failed: ' + err.message, err)
    for (const a of this.arenas.values()) { a.worker = null; a.wake(e) }
    this.arenas.clear()
  }
}

// ---------------------------------------------------------------------------------------------

let nextKey = 0
const pool: Arena[] = []
const POOLED = 1

class Arena {
  readonly key = nextKey++
  readonly memory: WasmMemory
  readonly u8: Uint8Array
  readonly scan: GearScan
  readonly copy: WasmCopy
  readonly slotBase: number[] = []
  readonly states: Int32Array
  readonly doneBytes: BigInt64Array
  worker: HashWorker | null = null
  /** Chunks handed to the worker / whose hash was read back (in order), over the arena's life. */
  submitted = 0
  read = 0
  /** Bytes handed to the worker, and taken back from it. */
  submittedBytes = 0
  takenBack = 0
  private waiters: Array<{ resolve: () => void, reject: (e: Error) => void }> = []
  error: Error | null = null

  constructor (readonly slotSize: number) {
    const pages = Math.ceil((SLOTS_AT + SLOTS * (slotSize + ALIGN)) / PAGE)
    this.memory = createSharedMemory(pages)
    this.u8 = new Uint8Array(this.memory.buffer)
    const gear = instantiateGear(this.memory)
    this.scan = gear.scan
    this.copy = gear.copy
    for (let s = 0; s < SLOTS; s++) this.slotBase.push(SLOTS_AT + s * (slotSize + ALIGN))
    this.states = new Int32Array(this.memory.buffer, STATES, HASH_SLOTS)
    this.doneBytes = new BigInt64Array(this.memory.buffer, DONE_BYTES, 1)
    if (GEAR_TABLES_END > DONE_BYTES || STATES + 4 * HASH_SLOTS > SLOTS_AT) throw new Error('arena layout')
  }

  backlog (): number { return this.submittedBytes - this.takenBack - Number(Atomics.load(this.doneBytes, 0)) }
  done (n: number): boolean { return Atomics.load(this.states, n % HASH_SLOTS) === DONE }
  /** Takes chunk n back from the worker; false if the worker has it already. */
  takeBack (n: number): boolean { return Atomics.compareExchange(this.states, n % HASH_SLOTS, FREE, TAKEN) === FREE }
  idle (): boolean {
    for (let n = this.read; n < this.submitted; n++) if (!this.done(n)) return false
    return true
  }

  /** The worker, attached to this arena; started if need be. */
  hashWorker (): HashWorker {
    if (this.error) throw this.error
    if (this.worker === null) {
      this.worker = shared ??= new HashWorker()
      this.worker.attach(this)
    }
    return this.worker
  }

  /** Resolves at the worker's next reply for this arena. */
  nextReply (): Promise<void> {
    if (this.error) return Promise.reject(this.error)
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }))
  }

  wake (err: Error | null) {
    if (err) this.error = err
    const ws = this.waiters
    this.waiters = []
    for (const w of ws) err ? w.reject(err) : w.resolve()
  }

  static take (slotSize: number): Arena {
    const i = pool.findIndex((a) => a.slotSize === slotSize && a.error === null)
    return i >= 0 ? pool.splice(i, 1)[0]! : new Arena(slotSize)
  }

  /** Back to the pool if the worker is done with it; else it is dropped once the worker is. */
  release () {
    if (this.error === null && this.idle() && pool.length < POOLED) {
      this.read = this.submitted
      pool.push(this)
    } else {
      this.worker?.detach(this)
      this.worker = null
    }
  }
}

interface Pending {
  offset: number
  size: number
  /** The hash; null while handed to the worker as chunk number `job`. */
  hash: Buffer | Promise<Buffer> | null
  job: number
  /** Memory offset of the bytes, while handed to the worker. */
  at: number
  bytes?: Buffer
}

export interface ParallelOptions {
  withBytes?: boolean | undefined
  hashing?: HashingMode | undefined
  inFlight?: number | undefined
  workerBacklog?: number | undefined
}

/** chunkStream's engine; same chunks as the sequential one (see the header of this file). */
export async function * chunkStreamParallel (source: ByteSource, cutter: Cutter, opts: ParallelOptions = {}): AsyncGenerator<Chunk> {
  const { max } = cutter.params
  const useWorker = (opts.hashing ?? 'worker') === 'worker'
  const other = useWorker ? null : createHasher(opts.hashing)
  const inFlight = Math.max(1, opts.inFlight ?? 64)
  const backlog = opts.workerBacklog ?? BACKLOG
  const slotSize = segmentSize(cutter)
  const arena = Arena.take(slotSize)
  const u8 = arena.u8
  const scan = arena.scan
  // A segment is free again once every chunk handed over there (numbers firstJob to lastJob) is done.
  const firstJob = new Array<number>(SLOTS).fill(-1)
  const lastJob = new Array<number>(SLOTS).fill(-1)
  // Chunks handed to the worker and not yet yielded, for taking back from the end.
  const handed: Pending[] = []
  let slot = 0
  let base = -1 // where the segment's bytes begin: its slotBase plus 0 to ALIGN - 1
  let pos = 0 // cut position, relative to the segment
  let end = 0 // bytes in the segment
  let offset = 0 // stream offset of pos
  let seen = 0
  let jobs: number[] = []
  let jobBytes = 0
  const queue: Pending[] = []

  const flush = () => {
    if (jobs.length === 0) return
    arena.hashWorker().submit(arena.key, jobs)
    jobs = []
    jobBytes = 0
  }

  const cut = (final: boolean) => {
    const start = base + pos
    const size = final || end - pos >= max ? wasmCut(scan, cutter, start, base + end) : 0
    if (size === 0) throw new Error('chunker: cut without enough bytes')
    const view = u8.subarray(start, start + size)
    const p: Pending = { offset, size, hash: null, job: -1, at: start }
    if (opts.withBytes) p.bytes = Buffer.from(view)
    if (other) {
      p.hash = other.hash(view)
    } else if (seen > PARALLEL_AFTER && size >= HAND_OFF_MIN && arena.submitted - arena.read < HASH_SLOTS && arena.backlog() < backlog) {
      const n = arena.submitted++
      arena.submittedBytes += size
      Atomics.store(arena.states, n % HASH_SLOTS, FREE)
      jobs.push(start, size, n % HASH_SLOTS)
      jobBytes += size
      if (firstJob[slot]! < 0) firstJob[slot] = n
      lastJob[slot] = n
      p.job = n
      handed.push(p)
      if (jobBytes >= JOB_BYTES) flush()
    } else {
      p.hash = contentHash(view)
    }
    queue.push(p)
    pos += size
    offset += size
  }

  // Hashes a handed-over chunk here if the worker has not started on it.
  const takeBack = (p: Pending): boolean => {
    if (p.hash !== null || !arena.takeBack(p.job)) return false
    p.hash = contentHash(u8.subarray(p.at, p.at + p.size))
    arena.takenBack += p.size
    Atomics.store(arena.states, p.job % HASH_SLOTS, DONE)
    return true
  }

  // Instead of waiting for the worker: take back the most recently handed chunk it has not started.
  // Else, waiting for chunk `p` that the worker is hashing: wait briefly, then hash it here as well
  // (false) rather than wait on a worker the machine's load may have descheduled.
  const helpOrWait = async (p?: Pending): Promise<boolean> => {
    flush()
    while (handed.length > 0) if (takeBack(handed.pop()!)) return true
    if (p === undefined) {
      await arena.nextReply()
      return true
    }
    Atomics.wait(arena.states, p.job % HASH_SLOTS, TAKEN, WAIT_MS)
    return arena.done(p.job)
  }

  // arena.read: every chunk before it is yielded and DONE. Chunks hashed here while the worker was
  // still at them (lagging) hold it back: their bytes and state slot are the worker's until DONE.
  const lagging: number[] = []
  let settled = arena.read
  const advanceRead = () => {
    while (lagging.length > 0 && arena.done(lagging[0]!)) lagging.shift()
    arena.read = lagging.length > 0 ? lagging[0]! : settled
  }
  const settle = async (p: Pending): Promise<Chunk> => {
    if (p.job >= 0) {
      if (handed[0] === p) handed.shift()
      if (!takeBack(p)) {
        while (!arena.done(p.job)) {
          if (!await helpOrWait(p)) {
            p.hash = contentHash(u8.subarray(p.at, p.at + p.size))
            lagging.push(p.job)
            break
          }
        }
        if (p.hash === null) {
          const at = HASHES + 32 * (p.job % HASH_SLOTS)
          p.hash = Buffer.from(u8.subarray(at, at + 32))
        }
      }
      settled = p.job + 1
      advanceRead()
    }
    const hash = await p.hash!
    return p.bytes ? { offset: p.offset, size: p.size, hash, bytes: p.bytes } : { offset: p.offset, size: p.size, hash }
  }

  const slotDone = (s: number): boolean => {
    // Chunks before arena.read were yielded, so done (and their state slots may be reused).
    const from = Math.max(firstJob[s]!, arena.read)
    for (let n = lastJob[s]!; n >= from; n--) if (!arena.done(n)) return false
    return true
  }

  const freeSlot = (): number => {
    for (let k = 1; k < SLOTS; k++) {
      const s = (slot + k) % SLOTS
      if (slotDone(s)) return s
    }
    return -1
  }

  try {
    for await (const piece of source) {
      if (!(piece instanceof Uint8Array)) throw PatchswarmError.BAD_ARGUMENT('chunkStream: the source must yield Buffers or Uint8Arrays')
      let p = 0
      while (p < piece.length) {
        if (base < 0) {
          base = arena.slotBase[0]! + mod8(piece.byteOffset)
        } else if (end === slotSize) {
          // Segment full and cut as far as it goes: carry the rest (< max) to a free segment.
          flush()
          let s: number
          while ((s = freeSlot()) < 0) await helpOrWait()
          advanceRead()
          const rest = end - pos
          const nextBase = arena.slotBase[s]! + mod8(piece.byteOffset + p - rest)
          arena.copy(nextBase, base + pos, rest)
          end = rest
          pos = 0
          slot = s
          base = nextBase
          firstJob[s] = lastJob[s] = -1
        }
        const take = Math.min(piece.length - p, slotSize - end)
        u8.set(take === piece.length ? piece : piece.subarray(p, p + take), base + end)
        end += take
        p += take
        seen += take
        while (end - pos >= max) cut(false)
        while (queue.length > inFlight) {
          flush()
          yield await settle(queue.shift()!)
        }
      }
      flush()
    }
    if (base < 0) return
    while (end > pos) cut(true)
    flush()
    while (queue.length > 0) yield await settle(queue.shift()!)
  } finally {
    for (const p of queue) if (p.hash instanceof Promise) p.hash.catch(() => {})
    other?.close()
    arena.release()
  }
}
