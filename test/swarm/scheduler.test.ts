import t from 'tap'
import { ChunkScheduler, type ChunkRequest } from '../../lib/swarm/scheduler.js'

const KiB = 1024

function setup (n: number, opts: Partial<ConstructorParameters<typeof ChunkScheduler>[0]> = {}) {
  let now = 1_000_000
  const clock = { now: () => now, advance: (ms: number) => { now += ms } }
  const s = new ChunkScheduler({ chunkSizes: Array(n).fill(256 * KiB), missing: Array.from({ length: n }, (_, i) => i), selfId: 'self', now: clock.now, ...opts })
  return { s, clock }
}
const all = () => true
const byPeer = (reqs: ChunkRequest[], peer: string) => reqs.filter((r) => r.peer === peer).map((r) => r.index)

t.test('rarest first, and no chunk asked twice outside endgame', async (t) => {
  const { s } = setup(4)
  s.addPeer({ id: 'a', origin: false, sameSite: true })
  s.addPeer({ id: 'b', origin: false, sameSite: true })
  s.setHave('a', all)
  s.setHave('b', (i) => i !== 3) // chunk 3 only at a: rarest
  const picks = s.pick()
  t.same(byPeer(picks, 'a').includes(3) || byPeer(picks, 'b').includes(3), true)
  t.ok(byPeer(picks, 'a').includes(3), 'the rare chunk went to the only peer that has it')
  const indexes = picks.map((p) => p.index)
  t.equal(new Set(indexes).size, indexes.length, 'no duplicates')
})

t.test('the origin only for chunks no peer has', async (t) => {
  const { s } = setup(4)
  s.addPeer({ id: 'origin', origin: true, sameSite: false })
  s.addPeer({ id: 'a', origin: false, sameSite: false }) // no site peers: we bring every chunk in ourselves
  s.setHave('a', (i) => i < 2)
  const picks = s.pick()
  t.same(byPeer(picks, 'a').sort(), [0, 1])
  t.same(byPeer(picks, 'origin').sort(), [2, 3])
})

t.test('a refusal backs off that chunk at that peer, then it is asked again', async (t) => {
  const { s, clock } = setup(1, { rejectBackoffMs: 100 })
  s.addPeer({ id: 'origin', origin: true, sameSite: false })
  t.same(s.pick(), [{ peer: 'origin', index: 0 }])
  s.failed('origin', 0, 'reject')
  t.same(s.pick(), [], 'backing off')
  clock.advance(101)
  t.same(s.pick(), [{ peer: 'origin', index: 0 }])
})

t.test('received chunks are done; timeouts and lost peers make chunks schedulable again', async (t) => {
  const { s, clock } = setup(2, { requestTimeoutMs: 1000 })
  s.addPeer({ id: 'a', origin: false, sameSite: true })
  s.setHave('a', all)
  t.same(s.pick().map((r) => r.index).sort(), [0, 1])
  clock.advance(10)
  t.same(s.received('a', 0, 256 * KiB), [])
  t.equal(s.remaining, 1)
  clock.advance(1000)
  t.same(s.overdue(), [{ peer: 'a', index: 1 }])
  s.failed('a', 1, 'timeout')
  s.addPeer({ id: 'b', origin: false, sameSite: true })
  s.setHave('b', all)
  const again = s.pick()
  t.ok(again.some((r) => r.index === 1), 'retried')
  const at = again.find((r) => r.index === 1)!.peer
  t.same(s.removePeer(at), [1], 'a lost peer gives back what it had in flight')
  s.received(at === 'a' ? 'b' : 'a', 1, 256 * KiB)
  t.ok(s.done)
})

t.test('endgame: a late last chunk is asked from another peer too, the loser cancelled', async (t) => {
  const { s, clock } = setup(1)
  s.addPeer({ id: 'a', origin: false, sameSite: true })
  s.addPeer({ id: 'b', origin: false, sameSite: true })
  s.setHave('a', all)
  s.setHave('b', all)
  const first = s.pick()
  t.equal(first.length, 1, 'one copy while it is on time')
  clock.advance(500)
  t.same(s.pick(), [], 'not late yet')
  clock.advance(600)
  const second = s.pick()
  t.equal(second.length, 1, 'late: a second copy')
  t.not(second[0]!.peer, first[0]!.peer, 'from the other peer')
  t.same(s.received(second[0]!.peer, 0, 256 * KiB), [first[0]!], 'cancel the other copy')
  t.ok(s.done)
})

t.test('site: only the responsible member fetches from outside during the grace time', async (t) => {
  const n = 64
  const members = ['self', 'm1', 'm2', 'm3']
  let total = 0
  for (const me of members) {
    const { s, clock } = setup(n, { selfId: me, siteGraceMs: 1000 })
    for (const m of members) if (m !== me) s.addPeer({ id: m, origin: false, sameSite: true })
    s.addPeer({ id: 'outsider', origin: false, sameSite: false })
    s.setHave('outsider', all)
    const mine = new Set<number>()
    // Drain the pipeline a few times to see everything this member would fetch from outside.
    for (let round = 0; round < 40; round++) {
      for (const r of s.pick()) { mine.add(r.index); s.received(r.peer, r.index, 256 * KiB) }
    }
    total += mine.size
    t.ok(mine.size > n / 8 && mine.size < n / 2, `${me} fetches about a quarter from outside (${mine.size})`)
    clock.advance(1001)
    t.ok(s.pick().length > 0, `${me}: after the grace time, anything goes`)
  }
  t.equal(total, n, 'each chunk crosses into the site exactly once')
})

t.test('pipelines grow with measured throughput', async (t) => {
  const { s, clock } = setup(100, { maxPipeline: 8 })
  s.addPeer({ id: 'fast', origin: false, sameSite: true })
  s.setHave('fast', all)
  t.equal(s.pick().length, 2, 'two in flight before anything is measured')
  for (let k = 0; k < 10; k++) {
    clock.advance(10) // 256 KiB per 10 ms ≈ 25 MiB/s
    const inflight = s.stats('fast')!.inFlight
    t.ok(inflight > 0)
    const first = s.overdue() // nothing overdue
    t.same(first, [])
    const r = (s as unknown as { peers: Map<string, { inFlight: Map<number, unknown> }> }).peers.get('fast')!.inFlight.keys().next().value as number
    s.received('fast', r, 256 * KiB)
    s.pick()
  }
  t.equal(s.stats('fast')!.inFlight, 8, 'a fast peer gets a full pipeline')
})

t.test('a slow peer is replaced by faster ones; one that keeps timing out is dropped', async (t) => {
  const { s, clock } = setup(200)
  for (const id of ['a', 'b', 'c', 'slow']) { s.addPeer({ id, origin: false, sameSite: true }); s.setHave(id, all) }
  const asked: Record<string, number> = { a: 0, b: 0, c: 0, slow: 0 }
  const inflight: ChunkRequest[] = []
  // Fast peers deliver every 10 ms, the slow one every 500 ms; count who gets asked.
  for (let step = 0; step < 200 && !s.done; step++) {
    for (const r of s.pick()) { asked[r.peer]!++; inflight.push(r) }
    clock.advance(10)
    for (let k = inflight.length - 1; k >= 0; k--) {
      const r = inflight[k]!
      if (r.peer !== 'slow' || step % 50 === 49) { s.received(r.peer, r.index, 256 * KiB); inflight.splice(k, 1) }
    }
  }
  t.ok(asked.slow! < asked.a! / 4, `the slow peer was asked ${asked.slow} times, a fast one ${asked.a}`)
  t.same(s.slowPeers(), [], 'slow is not misbehaving')
  const { s: s2 } = setup(3)
  s2.addPeer({ id: 'x', origin: false, sameSite: true })
  s2.setHave('x', all)
  for (let k = 0; k < 3; k++) s2.failed('x', k, 'timeout')
  t.same(s2.slowPeers(), ['x'])
})

t.test('AIMD: the window grows with deliveries and halves on a refusal', async (t) => {
  const { s, clock } = setup(100, { maxPipeline: 16 })
  s.addPeer({ id: 'a', origin: false, sameSite: true })
  s.setHave('a', all)
  let inflight = s.pick()
  t.equal(inflight.length, 2)
  for (let k = 0; k < 6; k++) {
    clock.advance(5)
    for (const r of inflight) s.received(r.peer, r.index, 256 * KiB)
    inflight = s.pick()
  }
  const grown = s.stats('a')!.inFlight
  t.ok(grown >= 16, `grew to ${grown}`)
  s.failed('a', inflight[0]!.index, 'reject')
  s.failed('a', inflight[1]!.index, 'reject')
  t.ok(s.stats('a')!.inFlight <= 16 && s.pick().length === 0, 'no new requests while over the halved window')
})

t.test('site: a chunk some site member has never crosses the WAN, even after the grace time', async (t) => {
  const { s, clock } = setup(2, { siteGraceMs: 100, maxPipeline: 1 })
  s.addPeer({ id: 'lan', origin: false, sameSite: true })
  s.addPeer({ id: 'wan', origin: false, sameSite: false })
  s.setHave('lan', (i) => i === 0)
  s.setHave('wan', all)
  clock.advance(101)
  const picks = s.pick()
  t.same(byPeer(picks, 'wan'), [1], 'only the chunk no site member has comes from outside')
  t.ok(byPeer(picks, 'lan').length <= 2)
  // The LAN peer is busy with chunk 0; the WAN peer still must not get a second copy of it (endgame).
  s.received('wan', 1, 256 * KiB)
  t.same(byPeer(s.pick(), 'wan'), [], 'no endgame copy from across the WAN')
})

t.test('a peer that refused (metered, choked) is asked again later, not forgotten', async (t) => {
  const { s, clock } = setup(1, { rejectBackoffMs: 100 })
  s.addPeer({ id: 'a', origin: false, sameSite: true })
  s.setHave('a', all)
  t.same(s.pick(), [{ peer: 'a', index: 0 }])
  s.failed('a', 0, 'reject')
  t.same(s.pick(), [])
  t.ok(s.nextWake()! <= 1_000_000 + 100, 'the caller is told when to look again')
  clock.advance(100)
  t.same(s.pick(), [{ peer: 'a', index: 0 }])
  s.failed('a', 0, 'reject')
  clock.advance(100)
  t.same(s.pick(), [], 'a second refusal waits twice as long')
  clock.advance(100)
  t.same(s.pick(), [{ peer: 'a', index: 0 }])
})

t.test('a chunk whose bytes arrived cannot time out while we verify and store it', async (t) => {
  const { s, clock } = setup(1, { requestTimeoutMs: 1000 })
  s.addPeer({ id: 'a', origin: false, sameSite: true })
  s.setHave('a', all)
  t.same(s.pick(), [{ peer: 'a', index: 0 }])
  clock.advance(500)
  s.arrived('a', 0, 256 * KiB)
  clock.advance(5000) // our disk is slow today
  t.same(s.overdue(), [], 'not overdue')
  t.same(s.received('a', 0, 256 * KiB), [])
  t.ok(s.stats('a')!.rate! > 256 * 1024, 'the rate counts the link, not our disk')
  t.ok(s.done)
})

t.test('arrived chunks free their slot; storing is bounded', async (t) => {
  const { s } = setup(20, { maxPipeline: 2, maxStoring: 3 })
  s.addPeer({ id: 'a', origin: false, sameSite: true })
  s.setHave('a', all)
  const first = s.pick()
  t.equal(first.length, 2)
  for (const r of first) s.arrived('a', r.index, 256 * KiB)
  const second = s.pick()
  t.equal(second.length, 2, 'arrived chunks no longer hold the window')
  s.arrived('a', second[0]!.index, 256 * KiB)
  t.same(s.pick(), [], 'three chunks being stored: wait for the disk')
  s.received('a', first[0]!.index, 256 * KiB)
  t.equal(s.pick().length, 1, 'one stored, one more request')
})
