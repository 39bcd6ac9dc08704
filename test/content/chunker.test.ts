import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { Readable } from 'node:stream'
import fs from 'node:fs/promises'
import path from 'node:path'
import { ChunkSplitter, chunkStream, chunkFile, chunkBuffer, collectChunks } from '../../lib/content/chunker.js'
import { createCutter, validateChunking, GEAR, DEFAULT_CHUNKING } from '../../lib/content/fastcdc.js'
import { HASHING_MODES } from '../../lib/content/hashers.js'

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
