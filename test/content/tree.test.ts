// checkTree on a tree large enough to be split between this thread and a worker: a flipped byte is
// found in either half, with the same message; a missing file and a stop at the first bad chunk
// still work; a copy (checkout) is never split.
import t from 'tap'
import fs from 'node:fs/promises'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { buildManifest } from '../../lib/content/source.js'
import { placementsOf, type Manifest } from '../../lib/content/manifest.js'
import { checkTree, splitWork, PARALLEL_CHECK_BYTES } from '../../lib/content/tree.js'
import type { FileCheckJob } from '../../lib/content/check-worker.js'

const CHUNKS = { min: 64 * 1024, avg: 256 * 1024, max: 1024 * 1024 }
const MiB = 1024 * 1024

// Two files; together a little over the parallel threshold, so the worker's part lies in `b`.
async function bigTree (t: any): Promise<{ root: string, m: Manifest }> {
  const root = t.testdir()
  const a = PARALLEL_CHECK_BYTES / 2 - 3 * MiB
  await fs.writeFile(path.join(root, 'a'), randomBytes(a))
  await fs.mkdir(path.join(root, 'sub'))
  await fs.writeFile(path.join(root, 'sub/b'), randomBytes(PARALLEL_CHECK_BYTES / 2 + 8 * MiB))
  return { root, m: await buildManifest(root, CHUNKS) }
}

async function flip (root: string, file: string, at: number) {
  const fh = await fs.open(path.join(root, file), 'r+')
  const b = Buffer.alloc(1)
  await fh.read(b, 0, 1, at)
  b[0] = b[0]! ^ 0x40
  await fh.write(b, 0, 1, at)
  await fh.close()
}

/** A byte in the middle of a chunk the worker checks: its file and offset. */
function inWorkersPart (root: string, m: Manifest): [string, number] {
  const job = splitWork(root, m, true).theirs[0]!
  const [, offset, size] = job.chunks[Math.floor(job.chunks.length / 2)]!
  return [job.path, offset + Math.floor(size / 2)]
}

/** The chunk of `file` holding byte `at`, and where it starts. */
function chunkAt (m: Manifest, file: string, at: number) {
  const p = placementsOf(m).find((x) => x.path === file && x.offset <= at && at < x.offset + x.size)!
  return { chunk: p.chunk, offset: p.offset }
}

t.test('a sound tree checks clean on two threads', async (t) => {
  const { root, m } = await bigTree(t)
  t.ok(m.size >= PARALLEL_CHECK_BYTES, `${(m.size / MiB).toFixed(1)} MiB: split`)
  const { own, theirs } = splitWork(root, m, true)
  const mine = own.flatMap((w) => w.chunks.map((c) => c.chunk))
  const worker = theirs.flatMap((j) => j.chunks.map((c) => c[0]))
  t.ok(worker.length > 0 && mine.length > 0, `this thread ${mine.length} chunks, the worker ${worker.length}`)
  t.same([...mine, ...worker].sort((x, y) => x - y), m.chunks.map((_, i) => i), 'every chunk once')
  t.same(theirs.map((j) => path.relative(root, j.file)), ['sub/b'], 'the worker\'s part lies in sub/b')
  t.same(splitWork(root, m, false).theirs, [], 'not split when asked not to')
  const check = await checkTree(root, m)
  t.equal(check.first, null)
  t.equal(check.bad.size, 0)
})

t.test('a flipped byte is found in this thread\'s half and in the worker\'s', async (t) => {
  for (const half of ['first', 'second'] as const) {
    const { root, m } = await bigTree(t)
    const [file, at] = half === 'first' ? ['a', 1000] : inWorkersPart(root, m)
    await flip(root, file, at)
    const { chunk, offset } = chunkAt(m, file, at)
    const check = await checkTree(root, m)
    t.same([...check.bad], [chunk], `${half} half: exactly the chunk with the byte`)
    t.equal(check.first, `${file}: chunk ${chunk} at offset ${offset} does not match its hash`, `${half} half: the same message`)
  }
})

t.test('bad chunks in both halves are all reported; stopAtFirst stops at one', async (t) => {
  const { root, m } = await bigTree(t)
  await flip(root, 'a', 5)
  const [file, at] = inWorkersPart(root, m)
  await flip(root, file, at)
  const all = await checkTree(root, m)
  t.same([...all.bad].sort((x, y) => x - y), [chunkAt(m, 'a', 5).chunk, chunkAt(m, file, at).chunk].sort((x, y) => x - y))
  t.match(all.first, /^a: chunk/, 'the first message is the first file\'s')
  const first = await checkTree(root, m, { stopAtFirst: true })
  t.equal(first.bad.size, 1)
})

t.test('a missing or short file in the worker\'s half', async (t) => {
  const { root, m } = await bigTree(t)
  const b = path.join(root, 'sub/b')
  const bytes = await fs.readFile(b)
  await fs.rm(b)
  const gone = await checkTree(root, m)
  t.match(gone.first, 'sub/b: cannot open (ENOENT)')
  const inB = m.files.find((f) => f.path === 'sub/b')!.chunks
  t.same([...gone.bad].sort((x, y) => x - y), [...inB].sort((x, y) => x - y), 'all of its chunks are bad')
  await fs.writeFile(b, bytes.subarray(0, bytes.length - 10))
  const short = await checkTree(root, m)
  const last = chunkAt(m, 'sub/b', bytes.length - 1)
  t.same([...short.bad], [last.chunk], 'short: its last chunk is bad')
  t.equal(short.first, `sub/b: chunk ${last.chunk} at offset ${last.offset} does not match its hash`, 'short: the chunk first, as on one thread')
  await fs.writeFile(b, Buffer.concat([bytes, Buffer.from('more')]))
  const long = await checkTree(root, m)
  t.equal(long.first, `sub/b: file is ${bytes.length + 4} bytes, the manifest says ${bytes.length}`, 'long: the worker checked the length')
  t.same([...long.bad], [last.chunk])
})

t.test('an empty file and a wholly second-half file: their opening and length are the worker\'s', async (t) => {
  const { root } = await bigTree(t)
  await fs.writeFile(path.join(root, 'sub/z-empty'), '')
  await fs.writeFile(path.join(root, 'sub/z-tail'), randomBytes(300_000))
  const m = await buildManifest(root, CHUNKS)
  const { own, theirs } = splitWork(root, m, true)
  const at = (p: string) => m.files.findIndex((f) => f.path === p)
  for (const p of ['sub/z-empty', 'sub/z-tail']) {
    t.same(own[at(p)], { chunks: [], checkSize: false }, `${p}: nothing of it here`)
    t.equal(theirs.find((j) => j.path === p)?.size, m.files[at(p)]!.size, `${p}: the worker checks its length`)
  }
  t.equal((await checkTree(root, m)).first, null)
  await fs.writeFile(path.join(root, 'sub/z-empty'), 'x')
  t.equal((await checkTree(root, m)).first, 'sub/z-empty: file is 1 bytes, the manifest says 0')
  await fs.rm(path.join(root, 'sub/z-tail'))
  const gone = await checkTree(root, m)
  t.equal(gone.first, 'sub/z-empty: file is 1 bytes, the manifest says 0', 'the earlier file\'s problem stays first')
  for (const ci of m.files[at('sub/z-tail')]!.chunks) t.ok(gone.bad.has(ci), `chunk ${ci} of the missing file is bad`)
})

t.test('a large tree starts one worker; a copy and a small tree start none', async (t) => {
  const real = await import('../../lib/content/check-worker.js')
  const jobs: number[] = []
  const spied = await t.mockImport<typeof import('../../lib/content/tree.js')>('../../lib/content/tree.js', {
    '../../lib/content/check-worker.js': {
      ...real,
      checkInWorker: (work: FileCheckJob[], max: number) => { jobs.push(work.length); return real.checkInWorker(work, max) }
    }
  })
  const { root, m } = await bigTree(t)
  t.equal((await spied.checkTree(root, m)).first, null)
  t.same(jobs, [1], 'one worker, given sub/b')
  const dest = path.join(root, 'out')
  await fs.mkdir(dest)
  await spied.checkTree(root, m, { copyTo: dest })
  const small = await buildManifest(path.join(root, 'a'), CHUNKS)
  await spied.checkTree(path.join(root, 'a'), small)
  t.same(jobs, [1], 'none for the copy, none for 21 MiB')
})

t.test('a copy is checked on this thread and comes out identical', async (t) => {
  const { root, m } = await bigTree(t)
  const dest = path.join(root, 'out') // beside the tree's files; the manifest is made already
  await fs.mkdir(dest)
  const check = await checkTree(root, m, { copyTo: dest })
  t.equal(check.first, null, String(check.first))
  for (const f of ['a', 'sub/b']) t.ok((await fs.readFile(path.join(dest, f))).equals(await fs.readFile(path.join(root, f))), `${f} copied`)
})
