// Streaming chunker: buffers of any sizes in, chunks `{ offset, size, hash }` out, in order.
// Two engines, with the same output:
//   parallel    (default) cut points by the WebAssembly gear scan, SHA-256 shared between this thread
//               and a worker reading the bytes in place (parallel.ts).
//   sequential  the JavaScript cutter (ChunkSplitter) with one of the hashers of hashers.ts.
import fs from 'node:fs'
import { PatchswarmError } from '../errors.js'
import { createCutter, nextCut, type ChunkingParams, type Cutter } from './fastcdc.js'
import { createHasher, type HashingMode } from './hashers.js'
import { chunkStreamParallel, PARALLEL_MAX_CHUNK } from './parallel.js'

export interface Chunk {
  /** Position of the chunk's first byte in the stream. */
  offset: number
  size: number
  /** SHA-256 of the chunk's bytes, 32 bytes. */
  hash: Buffer
  /** The chunk's bytes (a copy the caller owns), only with `withBytes`. */
  bytes?: Buffer
}

export interface ChunkOptions extends Partial<ChunkingParams> {
  withBytes?: boolean
  hashing?: HashingMode
  /** Chunks hashed ahead of the one being yielded. */
  inFlight?: number
  /** Parallel engine: bytes the worker may have queued before chunks are hashed here instead. */
  workerBacklog?: number
  /** 'parallel' unless max is over PARALLEL_MAX_CHUNK; 'sequential' is the JavaScript-only path. */
  engine?: ChunkEngine
}

export type ChunkEngine = 'parallel' | 'sequential'
export const CHUNK_ENGINES: readonly ChunkEngine[] = ['parallel', 'sequential']

export type ByteSource = AsyncIterable<Uint8Array> | Iterable<Uint8Array>

/** A cut chunk before hashing; `bytes` is a view valid only until the splitter is used again. */
export interface RawChunk {
  offset: number
  bytes: Uint8Array
}

/**
 * Turns a sequence of buffers into chunks. Bytes are copied into a window only when a chunk
 * straddles input buffers; a chunk that lies inside one input buffer is cut in place.
 */
export class ChunkSplitter {
  readonly cutter: Cutter
  private readonly window: Buffer
  private start = 0
  private end = 0
  private offset = 0

  constructor (params: Partial<ChunkingParams> | Cutter = {}) {
    this.cutter = 'maskS' in params ? params : createCutter(params)
    this.window = Buffer.allocUnsafeSlow(Math.max(4 * this.cutter.params.max, 8 * 1024 * 1024))
  }

  * push (piece: Uint8Array): Generator<RawChunk> {
    const { max } = this.cutter.params
    let p = 0
    while (p < piece.length) {
      if (this.start === this.end) {
        // Nothing held back: cut straight from the caller's buffer while a whole max fits.
        while (piece.length - p >= max) {
          const size = nextCut(this.cutter, piece, p, piece.length, false)
          yield this.emit(piece.subarray(p, p + size))
          p += size
        }
        this.start = this.end = 0
        if (p === piece.length) break
      }
      if (this.window.length - this.end < piece.length - p && this.start > 0) this.compact()
      const take = Math.min(piece.length - p, this.window.length - this.end)
      this.window.set(piece.subarray(p, p + take), this.end)
      this.end += take
      p += take
      while (this.end - this.start >= max) yield this.cutWindow(false)
    }
  }

  /** The input has ended: cut what is left. */
  * finish (): Generator<RawChunk> {
    while (this.end > this.start) yield this.cutWindow(true)
    this.start = this.end = 0
  }

  private cutWindow (final: boolean): RawChunk {
    const size = nextCut(this.cutter, this.window, this.start, this.end, final)
    const chunk = this.emit(this.window.subarray(this.start, this.start + size))
    this.start += size
    return chunk
  }

  private emit (bytes: Uint8Array): RawChunk {
    const chunk = { offset: this.offset, bytes }
    this.offset += bytes.length
    return chunk
  }

  private compact () {
    this.window.copyWithin(0, this.start, this.end)
    this.end -= this.start
    this.start = 0
  }
}

interface Pending { offset: number, size: number, hash: Buffer | Promise<Buffer>, bytes?: Buffer }

/** Chunks a stream of buffers (a Readable works: it is an async iterable of Buffers). */
// (A generator itself, so that bad options reject on first use, as they always have.)
export async function * chunkStream (source: ByteSource, opts: ChunkOptions = {}): AsyncGenerator<Chunk> {
  const cutter = createCutter(opts)
  const engine = opts.engine ?? 'parallel'
  if (engine !== 'parallel' && engine !== 'sequential') throw PatchswarmError.BAD_ARGUMENT(`unknown chunking engine ${JSON.stringify(engine)}; use one of ${CHUNK_ENGINES.join(', ')}`)
  if (engine === 'parallel' && cutter.params.max <= PARALLEL_MAX_CHUNK) yield * chunkStreamParallel(source, cutter, opts)
  else yield * chunkStreamSequential(source, cutter, opts)
}

async function * chunkStreamSequential (source: ByteSource, cutter: Cutter, opts: ChunkOptions): AsyncGenerator<Chunk> {
  const splitter = new ChunkSplitter(cutter)
  const hasher = createHasher(opts.hashing)
  const inFlight = Math.max(1, opts.inFlight ?? 8)
  const queue: Pending[] = []
  const take = (raw: RawChunk) => {
    queue.push({
      offset: raw.offset,
      size: raw.bytes.length,
      hash: hasher.hash(raw.bytes),
      ...(opts.withBytes ? { bytes: Buffer.from(raw.bytes) } : {})
    })
  }
  try {
    for await (const piece of source) {
      if (!(piece instanceof Uint8Array)) throw PatchswarmError.BAD_ARGUMENT('chunkStream: the source must yield Buffers or Uint8Arrays')
      for (const raw of splitter.push(piece)) {
        take(raw)
        while (queue.length > inFlight) yield await settle(queue.shift()!)
      }
    }
    for (const raw of splitter.finish()) {
      take(raw)
      while (queue.length > inFlight) yield await settle(queue.shift()!)
    }
    while (queue.length > 0) yield await settle(queue.shift()!)
  } finally {
    // Hashes still in flight when the consumer stops early must not become unhandled rejections.
    for (const p of queue) if (p.hash instanceof Promise) p.hash.catch(() => {})
    hasher.close()
  }
}

async function settle (p: Pending): Promise<Chunk> {
  const hash = await p.hash
  return p.bytes ? { offset: p.offset, size: p.size, hash, bytes: p.bytes } : { offset: p.offset, size: p.size, hash }
}

/** Chunks a file from disk. */
export async function * chunkFile (file: string, opts: ChunkOptions = {}): AsyncGenerator<Chunk> {
  const stream = fs.createReadStream(file, { highWaterMark: 1024 * 1024 })
  try {
    yield * chunkStream(stream, opts)
  } catch (err) {
    throw ioError(err, file)
  } finally {
    stream.destroy()
  }
}

/** Chunks a buffer held in memory. */
export function chunkBuffer (bytes: Uint8Array, opts: ChunkOptions = {}): AsyncGenerator<Chunk> {
  return chunkStream([bytes], opts)
}

/** Every chunk of a source, collected. */
export async function collectChunks (chunks: AsyncIterable<Chunk>): Promise<Chunk[]> {
  const all: Chunk[] = []
  for await (const c of chunks) all.push(c)
  return all
}

export function ioError (err: unknown, file: string): Error {
  if (err instanceof PatchswarmError) return err
  const code = (err as NodeJS.ErrnoException).code
  if (code === 'ENOENT') return PatchswarmError.NOT_FOUND(`${file} does not exist`, err)
  return PatchswarmError.IO_ERROR(`${file}: ${code ?? (err as Error).message}`, err)
}
