import t from 'tap'
import { SuperSeeding } from '../../lib/swarm/super-seeding.js'
import { BufferPool, Turns } from '../../lib/swarm/buffer-pool.js'

function setup () {
  let now = 0
  const s = new SuperSeeding({ now: () => now, reserveMs: 1000, fallbackMs: 2000 })
  return { s, advance: (ms: number) => { now += ms } }
}
const everyone = () => true

t.test('each chunk goes to one peer; others wait while it is fresh', async (t) => {
  const { s, advance } = setup()
  t.ok(s.mayServe('a', 'c0', false, everyone), 'first asker gets it')
  s.sent('a', 'c0')
  t.notOk(s.mayServe('b', 'c0', false, everyone), 'just sent to a: b waits')
  t.ok(s.mayServe('a', 'c0', false, everyone), 'a may ask again (a retry)')
  s.sent('a', 'c0')
  advance(1001)
  t.ok(s.mayServe('b', 'c0', false, everyone), 'after the reserve, b gets it')
})

t.test('a chunk a peer holds is left to it, unless the asker keeps asking past the fallback', async (t) => {
  const { s, advance } = setup()
  t.notOk(s.mayServe('a', 'c1', true, everyone), 'held elsewhere')
  advance(1000)
  t.notOk(s.mayServe('a', 'c1', true, everyone))
  advance(1001)
  t.ok(s.mayServe('a', 'c1', true, everyone), 'asked for over 2 s: it may not reach the holder')
})

t.test('a reservation that was never sent, or whose peer left, holds nobody back', async (t) => {
  const { s } = setup()
  t.ok(s.mayServe('a', 'c2', false, everyone))
  s.released('a', 'c2')
  t.ok(s.mayServe('b', 'c2', false, everyone), 'released')
  s.sent('b', 'c2')
  t.ok(s.mayServe('c', 'c2', false, (peer) => peer !== 'b'), 'b disconnected')
})

t.test('slow announcements stretch the windows', async (t) => {
  const { s, advance } = setup()
  t.ok(s.mayServe('a', 'c3', false, everyone))
  s.sent('a', 'c3')
  advance(3000) // a takes 3 s to announce: the reserve becomes 9 s
  s.announced('a', 'c3')
  t.ok(s.mayServe('a', 'c4', false, everyone))
  s.sent('a', 'c4')
  advance(5000)
  t.notOk(s.mayServe('b', 'c4', false, everyone), 'still within the stretched reserve')
  advance(4001)
  t.ok(s.mayServe('b', 'c4', false, everyone))
})

t.test('the buffer pool reuses what fits and keeps a bounded number', async (t) => {
  const pool = new BufferPool(2, 1024)
  const a = pool.take(1000)
  t.equal(a.length, 1024, 'rounded up to the step')
  pool.give(a)
  t.equal(pool.take(900), a, 'reused')
  pool.give(Buffer.alloc(10)); pool.give(Buffer.alloc(10)); pool.give(Buffer.alloc(10))
  t.not(pool.take(500), a, 'small spares do not fit; a new one is made')
})

t.test('turns: one holder at a time, in order; an aborted waiter leaves the queue', async (t) => {
  const turns = new Turns()
  const order: string[] = []
  const first = await turns.acquire()
  const second = turns.acquire().then((release) => { order.push('second'); return release })
  const gone = new AbortController()
  const aborted = turns.acquire(gone.signal)
  const third = turns.acquire().then((release) => { order.push('third'); return release })
  gone.abort(new Error('cancelled'))
  await t.rejects(aborted, { message: 'cancelled' })
  await t.rejects(turns.acquire(gone.signal), { message: 'cancelled' }, 'an aborted signal never queues')
  t.same(order, [], 'nobody else while the first holds its turn')
  first()
  first() // releasing twice passes the turn on once
  const releaseSecond = await second
  t.same(order, ['second'])
  releaseSecond()
  const releaseThird = await third
  t.same(order, ['second', 'third'])
  releaseThird()
  const again = await turns.acquire()
  again()
  const two = new Turns(2)
  const x = await two.acquire()
  const y = await two.acquire()
  let z = false
  const pending = two.acquire().then((r) => { z = true; return r })
  await new Promise((resolve) => setImmediate(resolve))
  t.notOk(z, 'a third waits while two hold turns')
  x()
  ;(await pending)()
  y()
  t.ok(z)
})
