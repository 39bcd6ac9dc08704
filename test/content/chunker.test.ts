import t, { type Test } from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { Readable } from 'node:stream'
import fs from 'node:fs/promises'
import path from 'node:path'
import { ChunkSplitter, chunkStream, chunkFile, chunkBuffer, collectChunks, type Chunk, type ChunkOptions } from '../../lib/content/chunker.js'
import { createCutter, nextCut, validateChunking, GEAR, DEFAULT_CHUNKING } from '../../lib/content/fastcdc.js'
import { HASHING_MODES } from '../../lib/content/hashers.js'
import { createSharedMemory, instantiateGearScan, wasmCut, GEAR_TABLES_END } from '../../lib/content/gear-wasm.js'
import { chunkWorkerState, stopChunkWorker, pauseChunkWorkerForTests, segmentSize, PARALLEL_AFTER } from '../../lib/content/parallel.js'

// xorshift128+-like seeded generator: reproducible data for big tests, fast enough for 100 MiB.
function seeded (size: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(size)
  let a = seed | 0 || 1
  let b = 0x9e3779b9
  for (let i = 0; i + 4 <= size; i += 4) {
    a ^= a << 13; a ^= a >>> 17; a ^= a << 5
    b = (b + 0x6d2b79f5) | 0
    out.writeInt32LE((a + b) | 0, i)
  }
  for (let i = size & ~3; i < size; i++) out[i] = i & 0xff
  return out
}

function cuts (data: Uint8Array, pieceSizes: number[] | null, params = {}): number[] {
  const s = new ChunkSplitter(params)
  const sizes: number[] = []
  let p = 0
  let k = 0
  while (p < data.length) {
    const n = pieceSizes ? pieceSizes[k++ % pieceSizes.length]! : data.length
    for (const c of s.push(data.subarray(p, p + n))) sizes.push(c.bytes.length)
    p += n
  }
  for (const c of s.finish()) sizes.push(c.bytes.length)
  return sizes
}

const SMALL = { min: 2048, avg: 8192, max: 32768 }

t.test('parameters are validated', async (t) => {
  t.same(validateChunking(), DEFAULT_CHUNKING)
  for (const bad of [{ min: 10 }, { avg: 300000 }, { min: 256 * 1024 }, { max: 128 * 1024 }, { max: 2 ** 30 }, { min: 1.5 }, { avg: -1 }]) {
    t.throws(() => createCutter(bad), { code: 'BAD_ARGUMENT' }, JSON.stringify(bad))
  }
})

t.test('the gear table is derived from SHA-256 of a fixed label', async (t) => {
  const g = createHash('sha256').update('patchswarm/fastcdc/gear/v1').update(Uint8Array.of(7)).digest().readInt32BE(0)
  t.equal(GEAR[7], g)
  t.equal(new Set(GEAR).size, 256)
})

t.test('deterministic, and independent of how the input is split', async (t) => {
  const data = randomBytes(3 * 1024 * 1024 + 17)
  const whole = cuts(data, null)
  t.same(cuts(data, null), whole)
  t.equal(whole.reduce((a, b) => a + b, 0), data.length)
  for (const split of [[1], [7, 65536, 3], [1024 * 1024], [300000, 1], [4 * 1024 * 1024]]) {
    if (split[0] === 1 && split.length === 1) {
      t.same(cuts(data.subarray(0, 200000), split, SMALL), cuts(data.subarray(0, 200000), null, SMALL), 'byte by byte')
    } else {
      t.same(cuts(data, split), whole, `pieces of ${split.join(',')}`)
    }
  }
  const small = cuts(data, null, SMALL)
  t.same(cuts(data, [5000, 1, 77777], SMALL), small)
})

t.test('min and max are respected; the average is near avg for random data', async (t) => {
  const data = randomBytes(8 * 1024 * 1024)
  const sizes = cuts(data, null, SMALL)
  t.ok(sizes.slice(0, -1).every((s) => s >= SMALL.min && s <= SMALL.max), 'all but the last within [min, max]')
  const mean = data.length / sizes.length
  t.ok(mean > SMALL.avg * 0.75 && mean < SMALL.avg * 1.5, `mean ${Math.round(mean)} near ${SMALL.avg}`)
  const big = cuts(randomBytes(32 * 1024 * 1024), null)
  const bigMean = 32 * 1024 * 1024 / big.length
  t.ok(bigMean > 200 * 1024 && bigMean < 400 * 1024, `default mean ${Math.round(bigMean / 1024)} KiB`)
  t.ok(big.slice(0, -1).every((s) => s >= 64 * 1024 && s <= 1024 * 1024))
  // Zeros never match the mask: every chunk is max long.
  t.same(cuts(Buffer.alloc(3 * 1024 * 1024 + 5), null), [1048576, 1048576, 1048576, 5])
  t.same(cuts(Buffer.alloc(0), null), [])
  t.same(cuts(Buffer.alloc(100), null), [100])
})

t.test('chunkStream hashes every chunk, the same in every hashing mode and from a Readable', async (t) => {
  const data = randomBytes(5 * 1024 * 1024)
  const expected = cuts(data, null)
  for (const hashing of HASHING_MODES) {
    const chunks = await collectChunks(chunkStream(Readable.from([data.subarray(0, 1000), data.subarray(1000)]), { hashing, withBytes: true, inFlight: 3 }))
    t.same(chunks.map((c) => c.size), expected, hashing)
    let offset = 0
    for (const c of chunks) {
      t.equal(c.offset, offset)
      t.ok(c.hash.equals(createHash('sha256').update(data.subarray(offset, offset + c.size)).digest()))
      t.ok(c.bytes!.equals(data.subarray(offset, offset + c.size)))
      offset += c.size
    }
  }
  await t.rejects(collectChunks(chunkStream([('nope' as unknown) as Uint8Array])), { code: 'BAD_ARGUMENT' })
  await t.rejects(collectChunks(chunkStream([('nope' as unknown) as Uint8Array], { engine: 'sequential' })), { code: 'BAD_ARGUMENT' })
  await t.rejects(collectChunks(chunkStream([], { engine: 'fast' as 'parallel' })), { code: 'BAD_ARGUMENT' })
  await t.rejects(collectChunks(chunkStream([], { avg: 3000 })), { code: 'BAD_ARGUMENT' })
})

// ---- the parallel engine (WebAssembly cuts, hashing shared with a worker) -----------------------

t.test('the WebAssembly scan cuts exactly where nextCut does', async (t) => {
  const zeros = Buffer.alloc(3 * 1024 * 1024 + 5)
  const runs = seeded(6 * 1024 * 1024, 4)
  runs.fill(0, 1024 * 1024, 3 * 1024 * 1024 + 77)
  const inputs = { random: randomBytes(6 * 1024 * 1024 + 13), zeros, runs }
  const memory = createSharedMemory(Math.ceil((GEAR_TABLES_END + 8 * 1024 * 1024) / 65536))
  const scan = instantiateGearScan(memory)
  const u8 = new Uint8Array(memory.buffer)
  for (const params of [{}, SMALL, { min: 64, avg: 128, max: 4096 }, { min: 1000, avg: 4096, max: 5000 }]) {
    const cutter = createCutter(params)
    for (const [name, data] of Object.entries(inputs)) {
      for (const shift of [0, 3]) {
        u8.set(data, GEAR_TABLES_END + shift)
        const at = GEAR_TABLES_END + shift
        const js: number[] = []
        const wasm: number[] = []
        for (let p = 0; p < data.length;) { const n = nextCut(cutter, data, p, data.length, true); js.push(n); p += n }
        for (let p = 0; p < data.length;) { const n = wasmCut(scan, cutter, at + p, at + data.length); wasm.push(n); p += n }
        t.same(wasm, js, `${name} ${JSON.stringify(params)} shift ${shift}`)
      }
    }
  }
})

function describe (chunks: Chunk[]): string[] {
  return chunks.map((c) => `${c.offset}+${c.size}:${c.hash.toString('hex')}`)
}

function* pieces (data: Buffer, sizes: number[]): Generator<Buffer> {
  for (let p = 0, k = 0; p < data.length; p += sizes[k++ % sizes.length]!) yield data.subarray(p, p + sizes[k % sizes.length]!)
}

async function sameAsSequential (t: Test, name: string, data: Buffer, sizes: number[], opts: ChunkOptions = {}) {
  const expected = describe(await collectChunks(chunkStream([data], { ...opts, engine: 'sequential', hashing: 'inline' })))
  const got = describe(await collectChunks(chunkStream(pieces(data, sizes), opts)))
  t.equal(got.length, expected.length, `${name}: ${expected.length} chunks`)
  t.ok(got.every((g, i) => g === expected[i]), `${name}: same offsets, sizes and hashes`)
}

t.test('the parallel engine yields exactly the sequential chunks', async (t) => {
  const seg = segmentSize(createCutter())
  t.equal(seg, 8 * 1024 * 1024)
  const big = seeded(5 * seg + 12345, 5)
  const sizes: Array<[string, number]> = [
    ['empty', 0], ['100 B', 100], ['1 MiB + 3', 1024 * 1024 + 3], ['around PARALLEL_AFTER', PARALLEL_AFTER + 1],
    ['one segment', seg], ['one segment + 1', seg + 1], ['two segments', 2 * seg], ['five segments and a bit', big.length]
  ]
  for (const [name, n] of sizes) await sameAsSequential(t, name, big.subarray(0, n), [1024 * 1024])
  await sameAsSequential(t, 'odd pieces', big, [7, 65536, 3, 1000003, 4 * 1024 * 1024 + 1])
  await sameAsSequential(t, 'pieces larger than a segment', big, [3 * seg + 5])
  await sameAsSequential(t, 'one piece', big, [big.length])
  await sameAsSequential(t, 'misaligned 1 MiB pieces', big.subarray(3), [1024 * 1024])

  // Long runs of zeros: no content cut, every chunk there is max long, across segment boundaries.
  const runs = Buffer.from(big)
  runs.fill(0, seg - 300000, 3 * seg + 4321)
  await sameAsSequential(t, 'runs of zeros', runs, [1024 * 1024])
  await sameAsSequential(t, 'all zeros', Buffer.alloc(3 * seg + 5), [1024 * 1024])

  // Other parameters: small chunks (mostly hashed here), and mid-sized ones (many hand-offs).
  await sameAsSequential(t, 'small chunks', big.subarray(0, 3 * seg), [1024 * 1024], SMALL)
  await sameAsSequential(t, '64 KiB chunks', big, [999999], { min: 16 * 1024, avg: 64 * 1024, max: 256 * 1024 })
  await sameAsSequential(t, 'max 4 MiB (bigger segments)', big, [1024 * 1024], { min: 256 * 1024, avg: 1024 * 1024, max: 4 * 1024 * 1024 })
  await sameAsSequential(t, 'max over the parallel limit (sequential)', big.subarray(0, seg), [1024 * 1024], { min: 1024 * 1024, avg: 4 * 1024 * 1024, max: 8 * 1024 * 1024 })

  // Everything handed to the worker, which is held up: the cutter waits for segments to come free.
  const slow = (async function * () {
    for (const [i, p] of [...pieces(big, [1024 * 1024])].entries()) {
      if (i === 5) pauseChunkWorkerForTests(300)
      yield p
    }
  })()
  const expected = describe(await collectChunks(chunkStream([big], { engine: 'sequential' })))
  t.same(describe(await collectChunks(chunkStream(slow, { workerBacklog: Infinity, inFlight: 10000 }))), expected, 'worker-bound')
  // The worker stalls in the middle of a chunk: this thread hashes that chunk too, and does not reuse
  // its segment or state slot before the worker is done with it.
  for (const at of [5, 12, 30]) {
    const stalled = (async function * () {
      for (const [i, p] of [...pieces(big, [1024 * 1024])].entries()) {
        if (i === at) pauseChunkWorkerForTests(100, true)
        yield p
      }
    })()
    t.same(describe(await collectChunks(chunkStream(stalled, { inFlight: 4 }))), expected, `worker stalled at piece ${at}`)
  }

  // withBytes, and a consumer slower than the hashing.
  const withBytes: Chunk[] = []
  for await (const c of chunkStream(pieces(big, [1024 * 1024]), { withBytes: true })) {
    withBytes.push(c)
    if (withBytes.length % 16 === 0) await new Promise((resolve) => setTimeout(resolve, 1))
  }
  t.same(describe(withBytes), describe(await collectChunks(chunkStream([big], { engine: 'sequential' }))))
  t.ok(withBytes.every((c) => c.bytes!.equals(big.subarray(c.offset, c.offset + c.size))), 'withBytes copies the bytes')
  t.ok(await until(() => !chunkWorkerState().busy), 'the worker has nothing left to do')
})

async function until (cond: () => boolean, ms = 5000) {
  const end = Date.now() + ms
  while (!cond() && Date.now() < end) await new Promise((resolve) => setTimeout(resolve, 10))
  return cond()
}

t.test('the worker: only for large inputs, idle after the stream, ended when left alone', async (t) => {
  stopChunkWorker()
  t.notOk(chunkWorkerState().running)
  await collectChunks(chunkBuffer(randomBytes(PARALLEL_AFTER)))
  t.notOk(chunkWorkerState().running, 'an input under PARALLEL_AFTER is hashed on the calling thread')

  const data = seeded(40 * 1024 * 1024, 6)
  await collectChunks(chunkStream(pieces(data, [1024 * 1024])))
  t.ok(chunkWorkerState().running, 'a large input uses the worker')
  t.ok(await until(() => !chunkWorkerState().busy), 'nothing in flight once the stream has ended')

  // Abandoned midway: the jobs in flight finish, then the worker is idle (and unref'd).
  let n = 0
  for await (const c of chunkStream(pieces(data, [1024 * 1024]))) {
    if (c.offset > 20 * 1024 * 1024 && ++n > 2) break
  }
  t.ok(await until(() => !chunkWorkerState().busy), 'idle after a break')
  // Abandoned without return(): the generator is just dropped.
  const it = chunkStream(pieces(data, [1024 * 1024]))[Symbol.asyncIterator]()
  for (let i = 0; i < 60; i++) await it.next()
  t.ok(await until(() => !chunkWorkerState().busy), 'idle after the consumer walked away')
  // And the same chunks as ever afterwards.
  await sameAsSequential(t, 'after abandoned streams', data, [1024 * 1024])
  t.ok(await until(() => !chunkWorkerState().running, 4000), 'the thread ends after a while idle')
  await sameAsSequential(t, 'after the worker ended', data.subarray(0, 20 * 1024 * 1024), [1024 * 1024])
  stopChunkWorker()
  t.ok(await until(() => !chunkWorkerState().running), 'stopChunkWorker ends the worker once idle')
})

t.test('errors from the source propagate', async (t) => {
  const data = seeded(30 * 1024 * 1024, 7)
  async function * failing () {
    for (const p of pieces(data, [1024 * 1024])) {
      if (p.byteOffset >= 20 * 1024 * 1024) throw new Error('disk on fire')
      yield p
    }
  }
  const seen: Chunk[] = []
  await t.rejects(async () => { for await (const c of chunkStream(failing())) seen.push(c) }, { message: 'disk on fire' })
  t.ok(seen.length > 0, `${seen.length} chunks before the error`)
  t.ok(await until(() => !chunkWorkerState().busy), 'the worker is left idle')
  await sameAsSequential(t, 'after an error', data, [1024 * 1024])
})

t.test('chunkFile reads from disk; a missing file is NOT_FOUND', async (t) => {
  const dir = t.testdir()
  const data = randomBytes(2 * 1024 * 1024 + 3)
  await fs.writeFile(path.join(dir, 'f'), data)
  const fromFile = await collectChunks(chunkFile(path.join(dir, 'f')))
  const fromMemory = await collectChunks(chunkBuffer(data))
  t.same(fromFile.map((c) => c.hash.toString('hex')), fromMemory.map((c) => c.hash.toString('hex')))
  await t.rejects(collectChunks(chunkFile(path.join(dir, 'missing'))), { code: 'NOT_FOUND' })
})

async function chunkBytesByHash (data: Buffer) {
  const map = new Map<string, number>()
  for await (const c of chunkBuffer(data)) map.set(c.hash.toString('hex'), c.size)
  return map
}

t.test('shift resistance: one byte inserted at the start of 64 MiB', async (t) => {
  const data = seeded(64 * 1024 * 1024, 1)
  const before = await chunkBytesByHash(data)
  const after = await chunkBytesByHash(Buffer.concat([Buffer.from([42]), data]))
  let same = 0
  for (const [h, size] of after) if (before.has(h)) same += size
  t.ok(same / data.length >= 0.95, `${(100 * same / data.length).toFixed(1)} % of bytes in unchanged chunks`)
})

t.test('delta: 1 MiB changed in the middle of 100 MiB moves at most 3 MiB', async (t) => {
  const data = seeded(100 * 1024 * 1024, 2)
  const before = await chunkBytesByHash(data)
  const changed = Buffer.from(data)
  seeded(1024 * 1024, 3).copy(changed, 50 * 1024 * 1024)
  const after = await chunkBytesByHash(changed)
  let fresh = 0
  for (const [h, size] of after) if (!before.has(h)) fresh += size
  t.ok(fresh <= 3 * 1024 * 1024, `${(fresh / 1024 / 1024).toFixed(2)} MiB of new chunks`)
})
