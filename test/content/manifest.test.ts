import t from 'tap'
import fs from 'node:fs/promises'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { buildManifest } from '../../lib/content/source.js'
import { manifestBytes, manifestDigest, parseManifest, placementsOf, type Manifest } from '../../lib/content/manifest.js'
import { walkSource } from '../../lib/content/walk.js'

const SMALL = { min: 1024, avg: 4096, max: 16384 }

async function makeTree (root: string) {
  await fs.mkdir(path.join(root, 'bin'), { recursive: true })
  await fs.mkdir(path.join(root, 'share/doc'), { recursive: true })
  await fs.mkdir(path.join(root, 'empty'))
  await fs.writeFile(path.join(root, 'bin/tool'), randomBytes(50000), { mode: 0o750 })
  await fs.writeFile(path.join(root, 'share/doc/README'), 'hello\n', { mode: 0o600 })
  await fs.writeFile(path.join(root, 'share/data'), Buffer.concat([randomBytes(30000), randomBytes(30000)]))
  await fs.writeFile(path.join(root, 'zero'), '')
  await fs.writeFile(path.join(root, 'a-b'), 'x')
}

t.test('manifest of a directory tree', async (t) => {
  const root = t.testdir()
  await makeTree(root)
  const m = await buildManifest(root, SMALL)
  t.same(m.dirs, ['bin', 'empty', 'share', 'share/doc'])
  t.same(m.files.map((f) => [f.path, f.mode]), [['a-b', 0o644], ['bin/tool', 0o755], ['share/data', 0o644], ['share/doc/README', 0o644], ['zero', 0o644]])
  t.equal(m.size, 1 + 50000 + 60000 + 6)
  t.same(m.files.find((f) => f.path === 'zero')!.chunks, [])
  t.same(m.chunking, SMALL)
  const again = await buildManifest(root, SMALL)
  t.equal(manifestDigest(again), manifestDigest(m), 'digest stable across runs')
  t.match(manifestDigest(m), /^[0-9a-f]{64}$/)
  t.same(parseManifest(manifestBytes(m)), m, 'round trip through canonical bytes')
  const placed = placementsOf(m).filter((p) => p.path === 'bin/tool')
  t.equal(placed.reduce((a, p) => a + p.size, 0), 50000)
})

t.test('identical chunks appear once in the table', async (t) => {
  const root = t.testdir()
  const same = randomBytes(40000)
  await fs.writeFile(path.join(root, 'one'), same)
  await fs.writeFile(path.join(root, 'two'), same)
  const m = await buildManifest(root, SMALL)
  t.same(m.files[0]!.chunks, m.files[1]!.chunks)
  t.equal(m.chunks.reduce((a, c) => a + c.size, 0), 40000)
})

t.test('a single file becomes a package of one file', async (t) => {
  const root = t.testdir({ 'setup.bin': 'abc' })
  const m = await buildManifest(path.join(root, 'setup.bin'))
  t.same(m.files.map((f) => f.path), ['setup.bin'])
  t.same(m.dirs, [])
  t.same(m.chunking, { min: 65536, avg: 262144, max: 1048576 })
})

t.test('symlinks and special files are refused', async (t) => {
  const top = t.testdir({ links: { f: 'x' }, fifo: { f: 'x' }, bad: { 'a\\b': 'x' } })
  const root = path.join(top, 'links')
  await fs.symlink('/etc/passwd', path.join(root, 'link'))
  await t.rejects(walkSource(root), { code: 'UNSAFE_PATH' })
  await t.rejects(walkSource(path.join(root, 'link')), { code: 'UNSAFE_PATH' })
  const fifoRoot = path.join(top, 'fifo')
  const { execFileSync } = await import('node:child_process')
  execFileSync('mkfifo', [path.join(fifoRoot, 'pipe')])
  await t.rejects(walkSource(fifoRoot), { code: 'BAD_ARGUMENT' })
  await t.rejects(walkSource(path.join(root, 'nope')), { code: 'NOT_FOUND' })
  await t.rejects(walkSource(path.join(top, 'bad')), { code: 'UNSAFE_PATH' })
})

const H = (n: number) => n.toString(16).padStart(64, '0')

function sample (): Manifest {
  return {
    _type: 'manifest',
    spec: 1,
    hash: 'sha256',
    chunking: { min: 1024, avg: 4096, max: 16384 },
    size: 300,
    files: [
      { path: 'a/x', mode: 0o644, size: 200, chunks: [0, 1] },
      { path: 'b', mode: 0o755, size: 100, chunks: [0] }
    ],
    dirs: ['a'],
    chunks: [{ hash: H(1), size: 100 }, { hash: H(2), size: 100 }]
  }
}

function mutate (fn: (m: any) => void): unknown {
  const m = structuredClone(sample()) as any
  fn(m)
  return m
}

t.test('bad manifests are refused with a code that names the field', async (t) => {
  t.same(parseManifest(sample()), sample())
  const cases: Array<[string, (m: any) => void, string, RegExp]> = [
    ['../a', (m) => { m.files[1].path = '../a' }, 'UNSAFE_PATH', /files\[1\]\.path/],
    ['/etc/x', (m) => { m.files[1].path = '/etc/x' }, 'UNSAFE_PATH', /files\[1\]\.path.*absolute/],
    ['.', (m) => { m.files[1].path = '.' }, 'UNSAFE_PATH', /files\[1\]\.path/],
    ['NUL', (m) => { m.files[1].path = 'b\u0000c' }, 'UNSAFE_PATH', /files\[1\]\.path/],
    ['overlong', (m) => { m.files[1].path = 'b'.repeat(2000) }, 'UNSAFE_PATH', /longer/],
    ['dir ..', (m) => { m.dirs[0] = '..' }, 'UNSAFE_PATH', /dirs\[0\]/],
    ['duplicate path', (m) => { m.files[1].path = 'a/x'; m.files[1].size = 100 }, 'BAD_MANIFEST', /files\[1\]\.path: duplicate/],
    ['unsorted', (m) => { m.files.reverse() }, 'BAD_MANIFEST', /sorted/],
    ['file is also a dir', (m) => { m.dirs.push('b') }, 'BAD_MANIFEST', /files\[1\]\.path: is also listed as a directory/],
    ['file is a dir prefix', (m) => { m.files[0].path = 'b/x'; m.files[1].path = 'b'; m.files.reverse() }, 'BAD_MANIFEST', /parent directory "b"/],
    ['parent not listed', (m) => { m.dirs = [] }, 'BAD_MANIFEST', /files\[0\]\.path: parent directory "a"/],
    ['hash not hex', (m) => { m.chunks[0].hash = 'XYZ' }, 'BAD_MANIFEST', /chunks\[0\]\.hash/],
    ['hash upper case', (m) => { m.chunks[0].hash = H(1).replace(/0/g, 'A') }, 'BAD_MANIFEST', /chunks\[0\]\.hash/],
    ['duplicate chunk', (m) => { m.chunks[1].hash = H(1) }, 'BAD_MANIFEST', /chunks\[1\]\.hash: appears twice/],
    ['chunk size 0', (m) => { m.chunks[0].size = 0 }, 'BAD_MANIFEST', /chunks\[0\]\.size/],
    ['chunk over max', (m) => { m.chunks[0].size = 20000 }, 'BAD_MANIFEST', /chunks\[0\]\.size.*max/],
    ['file sum', (m) => { m.files[0].size = 201; m.size = 301 }, 'BAD_MANIFEST', /files\[0\]\.chunks: chunk sizes add up to 200/],
    ['total', (m) => { m.size = 299 }, 'BAD_MANIFEST', /manifest\.size: files add up to 300/],
    ['index out of range', (m) => { m.files[1].chunks = [5] }, 'BAD_MANIFEST', /files\[1\]\.chunks\[0\]: index 5/],
    ['negative index', (m) => { m.files[1].chunks = [-1] }, 'BAD_MANIFEST', /files\[1\]\.chunks\[0\]/],
    ['unused chunk', (m) => { m.chunks.push({ hash: H(3), size: 5 }) }, 'BAD_MANIFEST', /chunks\[2\]: is not used/],
    ['bad mode', (m) => { m.files[0].mode = 0o4755 }, 'BAD_MANIFEST', /files\[0\]\.mode/],
    ['extra field', (m) => { m.extra = 1 }, 'BAD_MANIFEST', /manifest/],
    ['wrong type', (m) => { m._type = 'release' }, 'BAD_MANIFEST', /_type/],
    ['bad chunking', (m) => { m.chunking.avg = 5000 }, 'BAD_MANIFEST', /chunking/],
    ['missing files', (m) => { delete m.files }, 'BAD_MANIFEST', /manifest\.files/]
  ]
  for (const [name, fn, code, field] of cases) {
    t.throws(() => parseManifest(mutate(fn)), { code, message: field }, name)
  }
  t.throws(() => parseManifest(Buffer.from('{"b":1, "a":2}')), { code: 'BAD_MANIFEST' }, 'not canonical')
  t.throws(() => parseManifest(Buffer.from('nope')), { code: 'BAD_MANIFEST' }, 'not JSON')
})
