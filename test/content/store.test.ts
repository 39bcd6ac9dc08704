import t from 'tap'
import fs from 'node:fs/promises'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { openDatabase, sublevel } from '../../lib/store/db.js'
import { PackageStore } from '../../lib/content/package-store.js'
import { SYNC_EVERY_MS } from '../../lib/content/receive.js'
import { buildManifest } from '../../lib/content/source.js'
import { placementsOf, type Manifest } from '../../lib/content/manifest.js'
import { seededBytes } from '../../fixtures/org.js'

const SMALL = { min: 4096, avg: 16384, max: 65536 }

async function setup (t: any) {
  const dir = t.testdir()
  const db = await openDatabase(path.join(dir, 'db'))
  const store = new PackageStore({ dir: path.join(dir, 'store'), db: sublevel(db, 'content') })
  await store.ready()
  await store.ready()
  t.teardown(async () => {
    await store.close()
    await db.close()
  })
  return { dir, db, store }
}

/** A source tree; random unless `seed` makes its bytes the same every run. */
async function makeSource (root: string, size = 600_000, seed?: number) {
  const bytes = (n: number, file: number) => seed === undefined ? randomBytes(n) : seededBytes(n, seed + file)
  await fs.mkdir(path.join(root, 'bin'), { recursive: true })
  await fs.mkdir(path.join(root, 'empty'))
  await fs.writeFile(path.join(root, 'bin/app'), bytes(size, 0), { mode: 0o755 })
  await fs.writeFile(path.join(root, 'data'), bytes(size / 2, 1))
  await fs.writeFile(path.join(root, 'copy'), await fs.readFile(path.join(root, 'data')))
  await fs.writeFile(path.join(root, 'none'), '')
}

async function sameTree (t: any, a: string, b: string) {
  for (const name of ['bin/app', 'data', 'copy', 'none']) {
    t.ok((await fs.readFile(path.join(a, name))).equals(await fs.readFile(path.join(b, name))), name)
  }
  t.ok((await fs.stat(path.join(b, 'empty'))).isDirectory(), 'empty dir kept')
}

// Bytes of every chunk, by hash, taken from the source tree.
async function chunkBytes (root: string, m: Manifest) {
  const out = new Map<string, Buffer>()
  for (const p of placementsOf(m)) {
    const data = await fs.readFile(path.join(root, p.path))
    out.set(m.chunks[p.chunk]!.hash, data.subarray(p.offset, p.offset + p.size))
  }
  return out
}

/** A store, a source tree (makeSource with `size`), its manifest and its chunks' bytes by hash. */
async function setupWithSource (t: any, size?: number) {
  const { dir, store } = await setup(t)
  const src = path.join(dir, 'src')
  await makeSource(src, size)
  const manifest = await buildManifest(src, SMALL)
  return { dir, store, src, manifest, bytes: await chunkBytes(src, manifest) }
}

t.test('import, list, checkout byte-identical and read-only, verify, remove', async (t) => {
  const { dir, store } = await setup(t)
  const src = path.join(dir, 'src')
  await makeSource(src)
  const { manifest, digest } = await store.importSource(src, SMALL)
  t.equal((await store.importSource(src, SMALL)).digest, digest, 'importing again is idempotent')
  t.ok(await store.has(digest))
  t.same((await store.list()).map((p) => p.digest), [digest])
  t.same(await store.manifest(digest), manifest)
  const pkg = path.join(dir, 'store/packages', digest)
  t.equal((await fs.stat(path.join(pkg, 'files/data'))).mode & 0o777, 0o444)
  t.equal((await fs.stat(path.join(pkg, 'files/bin/app'))).mode & 0o777, 0o555)
  t.equal((await fs.stat(path.join(pkg, 'files/bin'))).mode & 0o777, 0o555)
  t.same(await fs.readdir(path.join(dir, 'store/staging')), [], 'staging left clean')
  await store.verify(digest)
  const out = path.join(dir, 'out')
  await store.checkout(digest, out)
  await sameTree(t, src, out)
  t.equal((await fs.stat(path.join(out, 'data'))).mode & 0o777, 0o444)
  t.equal((await fs.stat(path.join(out, 'bin/app'))).mode & 0o777, 0o555)
  await t.rejects(store.checkout(digest, out), { code: 'ALREADY_EXISTS' })
  const chunk = manifest.chunks[0]!
  t.equal((await store.readChunk(chunk.hash)).length, chunk.size)
  await store.remove(digest)
  t.notOk(await store.has(digest))
  await t.rejects(store.readChunk(chunk.hash), { code: 'NOT_FOUND' })
  await t.rejects(store.checkout(digest, path.join(dir, 'out2')), { code: 'NOT_FOUND' })
  t.same(await fs.readdir(path.join(dir, 'store/packages')), [])
})

t.test('receive out of order and concurrently; bad chunks refused, nothing written', async (t) => {
  const { dir, store, src, manifest, bytes } = await setupWithSource(t)
  const rx = await store.receive(manifest)
  t.equal(await store.receive(manifest), rx, 'one receive per package')
  const missing = rx.missing()
  t.equal(missing.length, manifest.chunks.length)
  const first = missing[0]!
  const wrong = Buffer.from(bytes.get(first)!)
  wrong[0]! ^= 1
  await t.rejects(rx.putChunk(first, wrong), { code: 'HASH_MISMATCH' })
  await t.rejects(rx.putChunk('ab'.repeat(32), wrong), { code: 'HASH_MISMATCH' })
  const staged = await fs.readFile(path.join(dir, 'store/staging', (await import('../../lib/content/manifest.js')).manifestDigest(manifest), 'files/bin/app'))
  t.ok(staged.every((b) => b === 0), 'nothing written for refused chunks')
  t.equal(rx.missing().length, missing.length)
  await t.rejects(rx.commit(), { code: 'PACKAGE_INCOMPLETE' })
  const order = [...missing].reverse()
  const results = await Promise.all([...order, ...order.slice(0, 3)].map((h) => rx.putChunk(h, bytes.get(h)!)))
  t.equal(results.filter(Boolean).length, missing.length, 'each chunk stored once')
  t.same(rx.missing(), [])
  t.equal(rx.progress.chunksDone, manifest.chunks.length)
  t.equal(rx.progress.bytesDone, rx.progress.bytes)
  await Promise.all([rx.commit(), rx.commit()])
  t.ok(rx.committed)
  t.ok(await store.has(rx.digest))
  const out = path.join(dir, 'out')
  await store.checkout(rx.digest, out)
  await sameTree(t, src, out)
  t.same(await fs.readdir(path.join(dir, 'store/staging')), [])
})

t.test('close and reopen mid-receive: only missing chunks, staged ones re-verified', async (t) => {
  const dir = t.testdir()
  const src = path.join(dir, 'src')
  await makeSource(src)
  const manifest = await buildManifest(src, SMALL)
  const bytes = await chunkBytes(src, manifest)
  const db = await openDatabase(path.join(dir, 'db'))
  t.teardown(() => db.close())
  let store = new PackageStore({ dir: path.join(dir, 'store'), db })
  const rx = await store.receive(manifest)
  const all = rx.missing()
  const half = all.slice(0, Math.floor(all.length / 2))
  for (const h of half) await rx.putChunk(h, bytes.get(h)!)
  await store.close()
  await store.close()
  await t.rejects(rx.putChunk(all.at(-1)!, bytes.get(all.at(-1)!)!), { code: 'CLOSED' })
  await t.rejects(store.receive(manifest), { code: 'CLOSED' })

  // Rot one staged chunk on disk.
  const rotted = half[1]!
  const where = placementsOf(manifest).find((p) => manifest.chunks[p.chunk]!.hash === rotted)!
  const file = path.join(dir, 'store/staging', rx.digest, 'files', where.path)
  const fh = await fs.open(file, 'r+')
  await fh.write(Buffer.from([0xff ^ bytes.get(rotted)![5]!]), 0, 1, where.offset + 5)
  await fh.close()

  store = new PackageStore({ dir: path.join(dir, 'store'), db })
  t.teardown(() => store.close())
  const again = await store.receive(manifest)
  const expected = new Set([...all.slice(half.length), rotted])
  t.same(new Set(again.missing()), expected, 'the rest plus the rotted one')
  for (const h of again.missing()) await again.putChunk(h, bytes.get(h)!)
  await again.commit()
  await store.verify(again.digest)
})

t.test('a staged chunk that rots before commit is caught by commit', async (t) => {
  const { dir, store, manifest, bytes } = await setupWithSource(t, 100_000)
  const rx = await store.receive(manifest)
  for (const h of rx.missing()) await rx.putChunk(h, bytes.get(h)!)
  const f = path.join(dir, 'store/staging', rx.digest, 'files/data')
  await fs.writeFile(f, Buffer.alloc(50_000))
  await t.rejects(rx.commit(), { code: 'HASH_MISMATCH' })
  t.ok(rx.missing().length > 0)
  t.notOk(await store.has(rx.digest))
  for (const h of rx.missing()) await rx.putChunk(h, bytes.get(h)!)
  await rx.commit()
  t.ok(await store.has(rx.digest))
})

t.test('staged chunks are recorded at once and synced within about a second, also when they stop coming', async (t) => {
  const { store, manifest, bytes } = await setupWithSource(t)
  const calls: Array<{ at: number, n: number, sync: boolean }> = []
  const mark = store.db.markStaged.bind(store.db)
  store.db.markStaged = async (digest, hashes, opts) => {
    calls.push({ at: Date.now(), n: hashes.length, sync: opts.sync })
    return mark(digest, hashes, opts)
  }
  const rx = await store.receive(manifest)
  const hashes = rx.missing()
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
  const t0 = Date.now()
  // Chunks for 1.5 s: each is recorded before putChunk resolves; the flush that comes a second
  // after the last sync is a synced one.
  let unrecorded = 0
  for (const [i, h] of hashes.entries()) {
    const before = calls.length
    await rx.putChunk(h, bytes.get(h)!)
    if (calls.length === before) unrecorded++
    if (Date.now() - t0 > 1500 || i === hashes.length - 3) break
    await sleep(1500 / hashes.length)
  }
  t.equal(unrecorded, 0, 'every chunk recorded before putChunk resolved')
  const unsynced = calls.filter((c) => !c.sync).length
  t.ok(unsynced > 0, `${unsynced} of ${calls.length} batches recorded without a sync`)
  t.ok(calls.some((c) => c.sync), 'a synced batch among those of the 1.5 s (a second after the receive began)')
  // Then one more chunk, recorded unsynced (unless the loop ended on a synced batch a moment ago,
  // nothing is due), and nothing after it: the timer syncs it, about a second after it was made.
  await rx.putChunk(hashes.at(-2)!, bytes.get(hashes.at(-2)!)!)
  if (calls.at(-1)!.sync) await rx.putChunk(hashes.at(-1)!, bytes.get(hashes.at(-1)!)!) // a sync was due: the next is not
  const last = calls.at(-1)!
  t.notOk(last.sync, 'the last chunk recorded without a sync')
  const lastAt = calls.length // calls after it, by position: the clock may not have moved a millisecond
  for (let waited = 0; waited < 5000 && calls.length === lastAt; waited += 50) await sleep(50)
  const after = calls.slice(lastAt)
  t.same(after.map((c) => ({ n: c.n, sync: c.sync })), [{ n: 1, sync: true }], 'one synced re-record of the last chunk')
  t.ok(after[0]!.at - last.at <= 2 * SYNC_EVERY_MS, `${after[0]!.at - last.at} ms after it`)
  // Idle and synced: no more writes.
  const count = calls.length
  await sleep(SYNC_EVERY_MS + 300)
  t.equal(calls.length, count, 'nothing more while idle')
  for (const h of rx.missing()) await rx.putChunk(h, bytes.get(h)!)
  await rx.commit()
  await store.verify(rx.digest)
})

t.test('a failed sync ends the receive; the store starts a new one, which keeps what verifies', async (t) => {
  const { dir, store, manifest, bytes } = await setupWithSource(t)
  // Every file handle's datasync fails (EIO), as a dying disk's would, until restored.
  const probe = await fs.open(path.join(dir, 'probe'), 'w')
  const proto = Object.getPrototypeOf(probe) as { datasync: () => Promise<void> }
  await probe.close()
  const datasync = proto.datasync
  t.teardown(() => { proto.datasync = datasync })
  proto.datasync = async () => { throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }) }

  const rx = await store.receive(manifest)
  const hashes = rx.missing()
  await rx.putChunk(hashes[0]!, bytes.get(hashes[0]!)!)
  // No more chunks: the timer's sync, a second later, fails.
  for (let waited = 0; waited < 5000 && !rx.failure; waited += 50) await new Promise((resolve) => setTimeout(resolve, 50))
  t.match(rx.failure, { code: 'IO_ERROR', message: /could not be synced to disk: EIO/ })
  await t.rejects(rx.putChunk(hashes[1]!, bytes.get(hashes[1]!)!), { code: 'IO_ERROR' }, 'no chunk is taken after it')
  await t.rejects(rx.commit(), { code: 'IO_ERROR' })

  proto.datasync = datasync
  const again = await store.receive(manifest)
  t.not(again, rx, 'a new receive')
  t.equal(again.failure, null)
  t.same(again.missing(), hashes.slice(1), 'the chunk written before the failure re-hashed and kept')
  for (const h of again.missing()) await again.putChunk(h, bytes.get(h)!)
  await again.commit()
  await store.verify(again.digest)
})

t.test('dedup: v2 with a small change copies most chunks locally', async (t) => {
  const { dir, store } = await setup(t)
  const src = path.join(dir, 'src')
  // Seeded: how many chunks a change touches depends on where the content's cut points fall, and
  // with random bytes an unlucky run touched 6.
  await makeSource(src, 2_000_000, 1)
  const v1 = await store.importSource(src, SMALL)
  const app = await fs.readFile(path.join(src, 'bin/app'))
  seededBytes(1000, 99).copy(app, 1_000_000)
  await fs.writeFile(path.join(src, 'bin/app'), app)
  const m2 = await buildManifest(src, SMALL)
  const rx = await store.receive(m2)
  const missing = rx.missing()
  t.ok(missing.length > 0 && missing.length <= 3, `${missing.length} of ${m2.chunks.length} chunks missing`)
  t.ok(rx.progress.bytesCopied > 2_500_000, `${rx.progress.bytesCopied} bytes copied locally`)
  const bytes = await chunkBytes(src, m2)
  for (const h of missing) await rx.putChunk(h, bytes.get(h)!)
  await rx.commit()
  t.same((await store.list()).map((p) => p.digest).sort(), [v1.digest, rx.digest].sort())
  const again = await store.receive(m2)
  t.ok(again.committed)
  t.same(again.missing(), [])
  await again.commit()
})

t.test('bytes that change after verification are caught at hand-out', async (t) => {
  const { dir, store } = await setup(t)
  const src = path.join(dir, 'src')
  await makeSource(src)
  const { manifest, digest } = await store.importSource(src, SMALL)
  await store.verify(digest)
  const file = path.join(dir, 'store/packages', digest, 'files/data')
  await fs.chmod(file, 0o644)
  const fh = await fs.open(file, 'r+')
  const b = Buffer.alloc(1)
  await fh.read(b, 0, 1, 200_000)
  b[0] = b[0]! ^ 0x55
  await fh.write(b, 0, 1, 200_000)
  await fh.close()
  const out = path.join(dir, 'out')
  await t.rejects(store.checkout(digest, out), { code: 'HASH_MISMATCH' })
  await t.rejects(fs.stat(out), { code: 'ENOENT' }, 'no dest dir left behind')
  await t.rejects(store.verify(digest), { code: 'HASH_MISMATCH', message: /data/ })

  // The rotted chunk: readChunk refuses it and drops the index entry.
  const p = placementsOf(manifest).find((x) => x.path === 'data' && x.offset <= 200_000 && x.offset + x.size > 200_000)!
  const hash = manifest.chunks[p.chunk]!.hash
  const other = placementsOf(manifest).filter((x) => x.chunk === p.chunk && x.path !== 'data')
  if (other.length === 0) {
    await t.rejects(store.readChunk(hash), { code: 'HASH_MISMATCH' })
    await t.rejects(store.readChunk(hash), { code: 'NOT_FOUND' }, 'index entry dropped')
  }
})

t.test('a rotted chunk read directly gives HASH_MISMATCH', async (t) => {
  const { dir, store } = await setup(t)
  await fs.writeFile(path.join(dir, 'one'), randomBytes(100_000))
  const { manifest, digest } = await store.importSource(path.join(dir, 'one'), SMALL)
  const file = path.join(dir, 'store/packages', digest, 'files/one')
  await fs.chmod(file, 0o644)
  await fs.writeFile(file, Buffer.alloc(100_000))
  const last = manifest.chunks.at(-1)!.hash
  await t.rejects(store.readChunk(last), { code: 'HASH_MISMATCH' })
  await t.rejects(store.readChunk(last), { code: 'NOT_FOUND' })
  await t.rejects(store.readChunk('nope'), { code: 'BAD_ARGUMENT' })
})

t.test('a package dir renamed in before a crash is indexed at ready()', async (t) => {
  const { dir, db, store } = await setup(t)
  const src = path.join(dir, 'src')
  await makeSource(src, 50_000)
  const { digest } = await store.importSource(src, SMALL)
  const sub = sublevel(db, 'content')
  await sub.sublevel('packages', { valueEncoding: 'json' }).del(digest)
  await fs.mkdir(path.join(dir, 'store/packages', 'f'.repeat(64)))
  const fresh = new PackageStore({ dir: path.join(dir, 'store'), db: sub })
  t.teardown(() => fresh.close())
  await fresh.ready()
  t.ok(await fresh.has(digest))
  t.same(await fs.readdir(path.join(dir, 'store/packages')), [digest], 'unverifiable dir removed')
})

t.test('a receiving node serves its staged chunks, re-hashed, before the package is complete', async (t) => {
  const { dir, store } = await setup(t)
  const src = path.join(dir, 'src')
  await makeSource(src)
  const m = await buildManifest(src, SMALL)
  const bytes = await chunkBytes(src, m)
  const rx = await store.receive(m)
  const first = m.chunks[0]!
  await rx.putChunk(first.hash, bytes.get(first.hash)!)
  t.ok(rx.hasChunk(0))
  t.ok((await rx.readChunk(0)).equals(bytes.get(first.hash)!))
  await t.rejects(rx.readChunk(1), { code: 'NOT_FOUND' }, 'a chunk not here yet')

  // Rot the staged bytes: the chunk is refused and needed again.
  const p = placementsOf(m).find((x) => x.chunk === 0)!
  const staged = path.join(dir, 'store', 'staging', (rx as unknown as { digest: string }).digest, 'files', p.path)
  const fh = await fs.open(staged, 'r+')
  await fh.write(Buffer.from([0xff ^ bytes.get(first.hash)![0]!]), 0, 1, p.offset)
  await fh.close()
  await t.rejects(rx.readChunk(0), { code: 'HASH_MISMATCH' })
  t.notOk(rx.hasChunk(0))
  t.ok(rx.missing().includes(first.hash))

  for (const h of rx.missing()) await rx.putChunk(h, bytes.get(h)!)
  await rx.commit()
  t.ok((await rx.readChunk(0)).equals(bytes.get(first.hash)!), 'after commit, from the store')
})

t.test('a package reader serves chunks by index, re-hashed', async (t) => {
  const { dir, store } = await setup(t)
  const src = path.join(dir, 'src')
  await makeSource(src)
  const { manifest, digest } = await store.importSource(src, SMALL)
  const bytes = await chunkBytes(src, manifest)
  const reader = await store.reader(digest)
  for (let i = 0; i < manifest.chunks.length; i++) t.ok((await reader.readChunk(i)).equals(bytes.get(manifest.chunks[i]!.hash)!))
  await t.rejects(reader.readChunk(manifest.chunks.length), { code: 'NOT_FOUND' })
  // Rot a byte of the stored package: the reader refuses that chunk.
  const p = placementsOf(manifest).find((x) => x.chunk === 0)!
  const file = path.join(dir, 'store', 'packages', digest, 'files', p.path)
  await fs.chmod(file, 0o644)
  const fh = await fs.open(file, 'r+')
  await fh.write(Buffer.from([bytes.get(manifest.chunks[0]!.hash)![0]! ^ 0xff]), 0, 1, p.offset)
  await fh.close()
  await t.rejects(reader.readChunk(0), { code: 'HASH_MISMATCH' })
  await reader.close()
  await t.rejects(reader.readChunk(1), { code: 'CLOSED' })
})
