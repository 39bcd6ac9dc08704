// Peers in their own processes: killed with SIGKILL mid-transfer, restarted, resumed.
import t, { type Test } from 'tap'
import path from 'node:path'
import fs from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { generateKeyPair } from '../../lib/crypto/keys.js'
import { openDatabase, sublevel } from '../../lib/store/db.js'
import { PackageStore, buildManifest, manifestBytes, manifestDigest, type Manifest } from '../../lib/content/index.js'
import { startTestnet } from '../../lib/swarm/transport.js'
import { startPeer, type PeerProcess } from '../../fixtures/peers.js'
import type { PeerConfig } from '../../fixtures/swarm-peer.js'
import { makeOrg, seededBytes, SMALL_CHUNKS, MiB, type Org } from './fleet.js'

interface World {
  base: string
  org: Org
  bootstrap: Array<{ host: string, port: number }>
  manifest: Manifest
  source: string
  peer (name: string, opts?: Partial<PeerConfig> & { role?: 'origin' | 'endpoint', site?: string | null, seedHex?: string }): Promise<PeerProcess>
}

async function world (t: Test, size: number): Promise<World> {
  const base = t.testdir()
  const net = await startTestnet(3)
  const org = await makeOrg()
  const source = path.join(base, 'source')
  await fs.mkdir(source)
  await fs.writeFile(path.join(source, 'payload.bin'), seededBytes(size, 7))
  const manifest = await buildManifest(source, SMALL_CHUNKS)
  const procs: PeerProcess[] = []
  t.teardown(async () => {
    await Promise.all(procs.map((p) => p.kill()))
    await net.destroy()
  })
  return {
    base, org, bootstrap: net.bootstrap, manifest, source,
    async peer (name, opts = {}) {
      const seed = opts.seedHex ?? randomBytes(32).toString('hex')
      const keyPair = generateKeyPair(Buffer.from(seed, 'hex'))
      const certificate = await org.certify(keyPair, { role: opts.role ?? 'endpoint', tenant: opts.role === 'origin' ? '' : 'msp-1/customer-a', site: opts.site ?? null })
      const { role: _r, site: _s, seedHex: _h, ...rest } = opts
      const p = await startPeer(name, {
        dir: path.join(base, name), bootstrap: net.bootstrap, seed, certificate: Buffer.from(certificate).toString('hex'),
        root: org.root, manifest: manifestBytes(manifest).toString('utf8'), ...rest
      })
      procs.push(p)
      return p
    }
  }
}


async function verifyStore (dir: string, digest: string): Promise<boolean> {
  const db = await openDatabase(path.join(dir, 'db'))
  const store = new PackageStore({ dir: path.join(dir, 'store'), db: sublevel(db, 'store') })
  try {
    await store.verify(digest)
    return true
  } catch {
    return false
  } finally {
    await store.close()
    await db.close()
  }
}

t.test('churn: 30 % of the peers are killed mid-transfer, every survivor completes', async (t) => {
  const w = await world(t, 8 * MiB)
  const digest = manifestDigest(w.manifest)
  const chunks = w.manifest.chunks.length
  const origin = await w.peer('origin', { role: 'origin', seedFrom: w.source, upload: 2 * MiB })
  await origin.event('seeding')
  const peers: PeerProcess[] = []
  for (let i = 0; i < 10; i++) peers.push(await w.peer(`peer-${i}`, { upload: 1 * MiB, progressEvery: 4 }))
  await Promise.all(peers.map((p) => p.event('ready')))
  const victims = peers.slice(0, 3)
  const survivors = peers.slice(3)
  // Kill each victim once it holds about a third of the package: it has been serving others.
  await Promise.all(victims.map(async (v) => {
    await v.waitFor((e) => e.event === 'progress' && (e.received as number) >= chunks / 3)
    await v.kill()
  }))
  t.ok(survivors.every((s) => !s.events.some((e) => e.event === 'done')), 'the kills happened mid-transfer')
  const done = await Promise.all(survivors.map((s) => s.event('done', 120_000)))
  t.equal(done.length, 7, 'every survivor completed')
  await Promise.all(survivors.map((s) => s.stop()))
  for (const s of survivors) t.ok(await verifyStore(path.join(w.base, s.name), digest), `${s.name} holds the verified package`)
  await origin.stop()
})

t.test('resume: a receiver killed at ~40 % fetches at most one chunk more than it was missing', async (t) => {
  const w = await world(t, 6 * MiB)
  const digest = manifestDigest(w.manifest)
  const total = w.manifest.chunks.length
  const origin = await w.peer('origin', { role: 'origin', seedFrom: w.source, upload: 1 * MiB })
  await origin.event('seeding')
  const seedHex = randomBytes(32).toString('hex')
  const first = await w.peer('rx', { seedHex, progressEvery: 1 })
  await first.waitFor((e) => e.event === 'progress' && (e.received as number) >= 0.4 * total)
  await first.kill()
  const before = first.events.filter((e) => e.event === 'progress').length
  t.ok(before < total, `killed after ${before} of ${total} chunks`)

  const second = await w.peer('rx', { seedHex, progressEvery: 1 })
  const ready = await second.event('ready')
  const done = await second.event('done', 120_000)
  const missing = ready.missingBytes as number
  const fetched = done.receivedBytes as number
  const maxChunk = Math.max(...w.manifest.chunks.map((c) => c.size))
  t.ok(missing < w.manifest.size * 0.7, `only ${(missing / MiB).toFixed(2)} MiB of ${(w.manifest.size / MiB).toFixed(2)} MiB were missing after the restart`)
  t.ok(fetched <= missing + maxChunk, `fetched ${fetched} bytes for ${missing} missing (at most one chunk more)`)
  await second.stop()
  t.ok(await verifyStore(path.join(w.base, 'rx'), digest))
  await origin.stop()
})
