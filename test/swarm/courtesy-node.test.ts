// Courtesy inside a running swarm node: round trips feed the back-off; a metered link uploads nothing.
import t from 'tap'
import { Courtesy } from '../../lib/swarm/courtesy.js'
import { Fleet, MiB } from './fleet.js'

t.test('round trips reach the delay-based back-off', async (t) => {
  const fleet = await Fleet.create(t)
  const courtesy = new Courtesy({ schedule: { default: { upload: 4 * MiB, download: 4 * MiB } } })
  t.teardown(() => courtesy.close())
  const a = await fleet.node({ node: { courtesy } })
  const b = await fleet.node()
  await b.node.refresh()
  // Pings go out every second once the two are connected: wait for the first answered one, not a
  // fixed time (2.5 s assumed the connection and the first pong come sooner on a busy machine).
  const until = Date.now() + 30_000
  while (!a.node.roundTrips().some((r) => r.rttMs !== null) && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 50))
  const rtts = a.node.roundTrips()
  t.equal(rtts.length, 1)
  t.ok(typeof rtts[0]!.rttMs === 'number' && rtts[0]!.rttMs >= 0, `measured ${rtts[0]!.rttMs?.toFixed(2)} ms`)
  const delay = courtesy.upload.delay!
  t.ok(Number.isFinite(delay.baseDelayMs), 'the back-off has a base delay from the samples')
})

t.test('a metered node uploads nothing until the link is no longer metered', async (t) => {
  const fleet = await Fleet.create(t)
  const courtesy = new Courtesy({ metered: true })
  t.teardown(() => courtesy.close())
  const seed = await fleet.node({ node: { courtesy } })
  const pkg = await fleet.publish(seed.store, 1 * MiB)
  await seed.node.seed(pkg.digest)
  let uploaded = 0
  seed.node.on('upload', (u: { bytes: number }) => { uploaded += u.bytes })
  const rx = await fleet.node()
  await rx.node.refresh()
  let done = false
  const fetching = rx.node.fetch(pkg.manifest).then(() => { done = true })
  await new Promise((resolve) => setTimeout(resolve, 2000))
  t.equal(uploaded, 0, 'not a byte over a metered link')
  t.notOk(done)
  courtesy.setMetered(false)
  await fetching
  t.equal(uploaded, pkg.manifest.size)
})
