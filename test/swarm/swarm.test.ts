// Real swarms on a local DHT testnet, in one process: distribution, hostile peers, certificates.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { generateKeyPair } from '../../lib/crypto/keys.js'
import type { SwarmNode } from '../../lib/swarm/node.js'
import { Fleet, MiB, makeOrg, type TestNode } from './fleet.js'

/** Makes a node serve garbage for every chunk (a hostile peer), keeping its honest bitfield. */
function lie (node: SwarmNode, only?: Set<number>) {
  const honest = (node as any).sourceOf.bind(node)
  ;(node as any).sourceOf = async (digest: string) => {
    const source = await honest(digest)
    if (!source) return source
    return { ...source, readChunk: async (i: number) => (!only || only.has(i)) ? randomBytes(source.manifest.chunks[i].size) : source.readChunk(i) }
  }
}

t.test('20 peers and an origin: identical verified bytes, the origin sends each byte about once', async (t) => {
  const fleet = await Fleet.create(t)
  const origin = await fleet.node({ role: 'origin', tenant: '' })
  const pkg = await fleet.publish(origin.store, 8 * MiB)
  let originUp = 0
  origin.node.on('upload', (u: { bytes: number }) => { originUp += u.bytes })
  await origin.node.seed(pkg.digest)
  const peers: TestNode[] = []
  for (let i = 0; i < 20; i++) peers.push(await fleet.node())
  await Promise.all(peers.map((p) => p.node.refresh()))
  const started = Date.now()
  await Promise.all(peers.map((p) => p.node.fetch(pkg.manifest)))
  t.comment(`20 peers fetched 8 MiB in ${Date.now() - started} ms; origin uploaded ${(originUp / MiB).toFixed(2)} MiB`)
  for (const p of peers) t.ok((await fleet.checkout(p.store, pkg.digest)).equals(pkg.bytes), 'identical bytes')
  t.ok(originUp <= 1.5 * pkg.manifest.size, `origin uploaded ${(originUp / pkg.manifest.size).toFixed(2)}× the package (≤ 1.5×)`)
})

t.test('a peer serving bad chunks is banned, its chunks never stored, the rest comes from others', async (t) => {
  const fleet = await Fleet.create(t)
  const seed = await fleet.node()
  const pkg = await fleet.publish(seed.store, 2 * MiB)
  const liar = await fleet.node()
  await fleet.publish(liar.store, 2 * MiB) // same bytes, so it has every chunk
  lie(liar.node)
  const rx = await fleet.node({ node: { banMs: 1500 } })
  const bans: Array<{ keyid: string }> = []
  rx.node.on('ban', (b) => bans.push(b))
  await rx.node.refresh()
  await rx.node.fetch(pkg.manifest)
  t.ok((await fleet.checkout(rx.store, pkg.digest)).equals(pkg.bytes), 'complete and correct')
  t.ok(bans.some((b) => b.keyid === liar.node.keyid), 'the liar was banned')
  t.ok(rx.node.bans.isBanned(liar.node.keyid))
  await new Promise((resolve) => setTimeout(resolve, 1600))
  t.notOk(rx.node.bans.isBanned(liar.node.keyid), 'the ban expired')
})

t.test('the only peer holding some chunks sends garbage: the origin fills in within the bound', async (t) => {
  const fleet = await Fleet.create(t)
  const origin = await fleet.node({ role: 'origin', tenant: '' })
  const pkg = await fleet.publish(origin.store, 2 * MiB)
  await origin.node.seed(pkg.digest)
  const liar = await fleet.node()
  await fleet.publish(liar.store, 2 * MiB)
  lie(liar.node)
  const rx = await fleet.node()
  await rx.node.refresh()
  const started = Date.now()
  await rx.node.fetch(pkg.manifest)
  const seconds = (Date.now() - started) / 1000
  t.ok((await fleet.checkout(rx.store, pkg.digest)).equals(pkg.bytes))
  t.ok(seconds < 10, `completed in ${seconds.toFixed(1)} s`)
  t.ok(rx.node.bans.isBanned(liar.node.keyid))
})

t.test('a peer without a valid certificate for the organisation gets nothing', async (t) => {
  const fleet = await Fleet.create(t)
  const seed = await fleet.node()
  const pkg = await fleet.publish(seed.store, 1 * MiB)
  await seed.node.seed(pkg.digest)
  // Its certificate is signed by another organisation's console: it must not even get a have.
  const stranger = await makeOrg('acme') // same name, other keys
  const keyPair = generateKeyPair()
  const outsider = await fleet.node({ keyPair, certificate: await stranger.certify(keyPair), node: { root: () => stranger.root } })
  let chunks = 0
  outsider.node.on('chunk', () => chunks++)
  await outsider.node.refresh()
  const fetched = outsider.node.fetch(pkg.manifest)
  fetched.catch(() => {})
  await new Promise((resolve) => setTimeout(resolve, 2000))
  t.equal(chunks, 0, 'no chunk moved')
  t.same(seed.node.connectedPeers().filter((p) => p.keyid === outsider.node.keyid), [], 'the seed never accepted it')
  t.notOk(await outsider.store.has(pkg.digest))

  // A certificate lifted from a real member is worthless on another key.
  const victim = generateKeyPair()
  const thief = await fleet.node({ certificate: await fleet.org.certify(victim) }).catch((err) => err)
  t.equal(thief.code, 'WRONG_HOLDER', 'a node refuses to start with a certificate for another key')
})
