// Sites and the origin's comings and goings, on a local testnet in one process.
import t from 'tap'
import type { PeerIdentity } from '../../lib/trust/index.js'
import { Fleet, MiB, type TestNode } from './fleet.js'

/** Counts the bytes each node received, by whether they came from inside its site. */
function countSources (nodes: TestNode[], site: (n: TestNode) => string | null) {
  const outside = new Map<TestNode, number>()
  for (const n of nodes) {
    outside.set(n, 0)
    n.node.on('chunk', (c: { bytes: number, from: PeerIdentity }) => {
      const crossed = c.from.role === 'origin' || c.from.site !== site(n)
      if (crossed) outside.set(n, outside.get(n)! + c.bytes)
    })
  }
  return outside
}

t.test('two sites of 5 peers: each chunk enters each site about once', async (t) => {
  const fleet = await Fleet.create(t)
  const origin = await fleet.node({ role: 'origin', tenant: '' })
  const pkg = await fleet.publish(origin.store, 4 * MiB)
  await origin.node.seed(pkg.digest)
  const sites: Record<string, TestNode[]> = { vienna: [], graz: [] }
  // A member that announces nothing new for siteGraceMs (3 s) counts as stalled, and the others
  // then bring its chunks into the site themselves. Here all eleven nodes share one process: when
  // the machine is busy, that process is slow as a whole and members look stalled that are only
  // waiting for CPU. This test is about the site boundary, not about stalls (scheduler.test covers
  // those): a grace that a starved test process does not reach keeps the two apart.
  const node = { scheduler: { siteGraceMs: 30_000 } }
  for (const site of Object.keys(sites)) for (let i = 0; i < 5; i++) sites[site]!.push(await fleet.node({ site, node }))
  const all = [...sites.vienna!, ...sites.graz!]
  const outside = countSources(all, (n) => sites.vienna!.includes(n) ? 'vienna' : 'graz')
  // The sites form first: a member that does not know its site yet brings in chunks it takes for its own.
  await fleet.mesh([origin, ...all], all.length)
  await Promise.all(all.map((p) => p.node.fetch(pkg.manifest)))
  for (const [site, members] of Object.entries(sites)) {
    const entered = members.reduce((sum, m) => sum + outside.get(m)!, 0)
    t.ok(entered <= 1.3 * pkg.manifest.size, `${site}: ${(entered / pkg.manifest.size).toFixed(2)}× the package entered from outside (≤ 1.3×)`)
  }
  for (const p of all) t.ok((await fleet.checkout(p.store, pkg.digest)).equals(pkg.bytes))
})

t.test('the origin is down at the start and comes back later', async (t) => {
  const fleet = await Fleet.create(t)
  const originKey = (await import('../../lib/crypto/keys.js')).generateKeyPair()
  // Publish into the origin's folder, then take the origin away before anyone asks.
  const dir = `${fleet.base}/origin`
  let origin = await fleet.node({ role: 'origin', tenant: '', keyPair: originKey, dir })
  const pkg = await fleet.publish(origin.store, 2 * MiB)
  await origin.close()
  const peers = [await fleet.node(), await fleet.node(), await fleet.node()]
  let done = false
  const fetching = Promise.all(peers.map((p) => p.node.fetch(pkg.manifest))).then(() => { done = true })
  await new Promise((resolve) => setTimeout(resolve, 1500))
  t.notOk(done, 'nothing completes without a source')
  origin = await fleet.node({ role: 'origin', tenant: '', keyPair: originKey, dir })
  await origin.node.seed(pkg.digest)
  await Promise.all(peers.map((p) => p.node.refresh()))
  await fetching
  for (const p of peers) t.ok((await fleet.checkout(p.store, pkg.digest)).equals(pkg.bytes))
})

t.test('the origin leaves once one full copy exists: the others complete from the swarm', async (t) => {
  const fleet = await Fleet.create(t)
  const origin = await fleet.node({ role: 'origin', tenant: '' })
  const pkg = await fleet.publish(origin.store, 2 * MiB)
  await origin.node.seed(pkg.digest)
  const first = await fleet.node()
  await first.node.refresh()
  await first.node.fetch(pkg.manifest)
  await origin.close()
  const others = [await fleet.node(), await fleet.node(), await fleet.node()]
  await Promise.all(others.map((p) => p.node.refresh()))
  await Promise.all(others.map((p) => p.node.fetch(pkg.manifest)))
  for (const p of others) t.ok((await fleet.checkout(p.store, pkg.digest)).equals(pkg.bytes))
})
