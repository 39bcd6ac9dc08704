import t from 'tap'
import net from 'node:net'
import { once } from 'node:events'
import { firstValueFrom } from 'rxjs'
import { TokenBucket, ManualTime } from '../../lib/swarm/token-bucket.js'
import { Courtesy, type CourtesyRates } from '../../lib/swarm/courtesy.js'
import { CourtesySchedule, parseDays } from '../../lib/swarm/courtesy-schedule.js'
import { LedbatController } from '../../lib/swarm/ledbat.js'

const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

function tracked (p: Promise<void>): { done: boolean, error: unknown } {
  const state = { done: false, error: undefined as unknown }
  p.then(() => { state.done = true }, (err: unknown) => { state.error = err })
  return state
}

t.test('token bucket: exact timings on a manual clock', async (t) => {
  const time = new ManualTime()
  const bucket = new TokenBucket({ rate: 1000, burst: 100, time })
  t.equal(bucket.burst, 100)
  const first = tracked(bucket.take(100))
  await settle()
  t.ok(first.done, 'the burst passes at once')
  const second = tracked(bucket.take(50))
  time.advance(49)
  await settle()
  t.notOk(second.done, 'not before 50 ms')
  time.advance(1)
  await settle()
  t.ok(second.done, 'at 50 ms')

  // Larger than the burst: waits in proportion to its size.
  const big = tracked(bucket.take(1000))
  time.advance(999)
  await settle()
  t.notOk(big.done)
  time.advance(1)
  await settle()
  t.ok(big.done, '1000 bytes at 1000 B/s take one second')

  // An idle spell refills up to the burst, not beyond.
  time.advance(10_000)
  t.equal(bucket.available, 100)
  t.ok(bucket.tryTake(100))
  t.notOk(bucket.tryTake(1))
  time.advance(1)
  t.ok(bucket.tryTake(1))
  bucket.close()
})

t.test('token bucket: FIFO among waiters', async (t) => {
  const time = new ManualTime()
  const bucket = new TokenBucket({ rate: 1000, burst: 1000, time })
  bucket.tryTake(1000)
  const order: string[] = []
  const a = bucket.take(500).then(() => order.push('a'))
  const b = bucket.take(10).then(() => order.push('b'))
  const c = bucket.take(100).then(() => order.push('c'))
  t.equal(bucket.waiting, 3)
  t.notOk(bucket.tryTake(1), 'tryTake never jumps the queue')
  time.advance(500)
  await settle()
  t.same(order, ['a'], 'the small one waits behind the big one')
  time.advance(10)
  await settle()
  t.same(order, ['a', 'b'])
  time.advance(99)
  await settle()
  t.same(order, ['a', 'b'])
  time.advance(1)
  await Promise.all([a, b, c])
  t.same(order, ['a', 'b', 'c'])
  t.equal(bucket.waiting, 0)
  bucket.close()
})

t.test('token bucket: setRate applies to current waiters', async (t) => {
  const time = new ManualTime()
  const bucket = new TokenBucket({ rate: 1000, burst: 100, time })
  bucket.tryTake(100)
  const w = tracked(bucket.take(1000))
  time.advance(500) // 500 of 1000 bytes accrued
  bucket.setRate(500) // the remaining 500 at 500 B/s: one more second
  time.advance(999)
  await settle()
  t.notOk(w.done)
  time.advance(1)
  await settle()
  t.ok(w.done, 'done at 1500 ms')

  const stalled = tracked(bucket.take(10_000))
  bucket.setRate(0)
  time.advance(60_000)
  await settle()
  t.notOk(stalled.done, 'rate 0 lets nothing through')
  t.equal(time.pending, 0, 'and sets no timer')
  bucket.setRate(Infinity)
  await settle()
  t.ok(stalled.done, 'Infinity lets everything through')
  t.ok(bucket.tryTake(1e12))
  bucket.setRate(100)
  t.equal(bucket.available, bucket.burst, 'from unlimited back to limited with a full burst')
  bucket.close()
})

t.test('token bucket: close rejects waiters, abort returns tokens', async (t) => {
  const time = new ManualTime()
  const bucket = new TokenBucket({ rate: 100, burst: 100, time })
  bucket.tryTake(100)
  const ac = new AbortController()
  const aborted = bucket.take(100, ac.signal)
  const next = tracked(bucket.take(50))
  time.advance(300) // 30 bytes set aside for the first
  ac.abort(new Error('gone'))
  await t.rejects(aborted, { message: 'gone' })
  time.advance(199)
  await settle()
  t.notOk(next.done)
  time.advance(1)
  await settle()
  t.ok(next.done, 'the aborted request\'s tokens went to the next in line')

  const w1 = bucket.take(1000)
  const w2 = bucket.take(1)
  bucket.close()
  bucket.close()
  await t.rejects(w1, { code: 'CLOSED' })
  await t.rejects(w2, { code: 'CLOSED' })
  await t.rejects(bucket.take(1), { code: 'CLOSED' })
  t.notOk(bucket.tryTake(0))
  t.equal(time.pending, 0, 'no timer left behind')

  t.throws(() => new TokenBucket({ rate: -1 }), { code: 'BAD_ARGUMENT' })
  t.throws(() => new TokenBucket({ rate: 1, burst: 0 }), { code: 'BAD_ARGUMENT' })
  const b = new TokenBucket({ rate: 1, time })
  await t.rejects(b.take(Number.NaN), { code: 'BAD_ARGUMENT' })
  t.throws(() => b.setRate(Number.NaN), { code: 'BAD_ARGUMENT' })
  b.close()
})

t.test('a 2 MB/s upload limit holds within ±15 % over 10 s (real clock, loopback TCP)', async (t) => {
  const RATE = 2_000_000
  const WINDOW_MS = 10_000
  const courtesy = new Courtesy({ schedule: { default: { upload: RATE } } })
  t.equal(courtesy.effectiveRate('upload'), RATE)
  t.equal(courtesy.effectiveRate('download'), Infinity)

  let received = 0
  let start: number | undefined
  let stop = false
  const server = net.createServer((socket) => {
    socket.on('data', (data: Buffer) => {
      const now = performance.now()
      start ??= now
      if (now - start <= WINDOW_MS) received += data.length
      else stop = true
    })
    socket.on('error', () => {})
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as net.AddressInfo
  const client = net.connect(port, '127.0.0.1')
  await once(client, 'connect')
  t.teardown(async () => {
    client.destroy()
    await new Promise((resolve) => server.close(resolve))
    await courtesy.close()
  })

  const piece = Buffer.alloc(32 * 1024, 7)
  while (!stop) {
    await courtesy.upload.take(piece.length)
    if (!client.write(piece)) await once(client, 'drain')
  }
  const rate = received / (WINDOW_MS / 1000)
  t.comment(`measured ${(rate / 1e6).toFixed(3)} MB/s`)
  t.ok(rate >= RATE * 0.85 && rate <= RATE * 1.15, `${rate.toFixed(0)} B/s within ±15 % of ${RATE}`)
})

// Europe/Vienna: CET (UTC+1) in winter, CEST (UTC+2) in summer. In 2025 the clocks went forward on
// Sunday 30 March at 02:00 → 03:00 and back on Sunday 26 October at 03:00 → 02:00.
const business = {
  timeZone: 'Europe/Vienna',
  windows: [
    { days: 'mon-fri', from: '08:00', to: '18:00', upload: 256_000, download: 2_000_000 },
    { days: 'sun', from: '02:30', to: '04:00', upload: 1000 },
    { days: 'fri', from: '22:00', to: '06:00', download: 5000 }
  ],
  default: { upload: 8_000_000 }
}

t.test('schedule: business hours vs night in Europe/Vienna, boundaries and DST', async (t) => {
  const s = new CourtesySchedule(business)
  const at = (iso: string): number => s.limitsAt(new Date(iso)).window
  t.equal(s.timeZone, 'Europe/Vienna')

  // Monday 31 March 2025 (CEST, UTC+2): 08:00 local = 06:00Z, from inclusive, to exclusive.
  t.equal(at('2025-03-31T05:59:59.999Z'), -1, '07:59:59.999 is night')
  t.equal(at('2025-03-31T06:00:00Z'), 0, '08:00 opens the window')
  t.equal(at('2025-03-31T15:59:59.999Z'), 0, '17:59:59.999 still inside')
  t.equal(at('2025-03-31T16:00:00Z'), -1, '18:00 closes it')
  t.same(s.limitsAt(new Date('2025-03-31T10:00:00Z')), { upload: 256_000, download: 2_000_000, window: 0 })
  t.same(s.limitsAt(new Date('2025-03-31T20:00:00Z')), { upload: 8_000_000, download: Infinity, window: -1 })

  // Monday 24 March 2025 (CET, UTC+1): 08:00 local = 07:00Z.
  t.equal(at('2025-03-24T06:30:00Z'), -1, '07:30 CET is night')
  t.equal(at('2025-03-24T07:00:00Z'), 0)
  t.equal(at('2025-03-24T17:00:00Z'), -1)
  t.equal(at('2025-03-29T10:00:00Z'), -1, 'Saturday is not business')

  // Spring forward, Sunday 30 March: 02:30 never happens; the window opens at 03:00 CEST.
  t.equal(at('2025-03-30T00:59:59Z'), -1, '01:59:59 CET')
  t.equal(at('2025-03-30T01:00:00Z'), 1, '03:00 CEST is inside 02:30–04:00')
  t.equal(at('2025-03-30T01:59:59Z'), 1, '03:59:59 CEST')
  t.equal(at('2025-03-30T02:00:00Z'), -1, '04:00 CEST')
  t.same(s.limitsAt(new Date('2025-03-30T01:30:00Z')), { upload: 1000, download: Infinity, window: 1 }, 'a direction left out takes the default')

  // Fall back, Sunday 26 October: 02:30–03:00 happens twice, inside the window both times.
  t.equal(at('2025-10-26T00:29:59Z'), -1, '02:29:59 CEST')
  t.equal(at('2025-10-26T00:30:00Z'), 1, '02:30 CEST')
  t.equal(at('2025-10-26T00:59:59Z'), 1, '02:59:59 CEST')
  t.equal(at('2025-10-26T01:00:00Z'), -1, '02:00 CET (the second time round) is before 02:30')
  t.equal(at('2025-10-26T01:30:00Z'), 1, '02:30 CET, the second time')
  t.equal(at('2025-10-26T02:59:59Z'), 1, '03:59:59 CET')
  t.equal(at('2025-10-26T03:00:00Z'), -1, '04:00 CET')

  // Overnight: Friday 22:00 to Saturday 06:00, belonging to Friday.
  t.equal(at('2025-03-28T20:59:59Z'), -1, 'Fri 21:59:59')
  t.equal(at('2025-03-28T21:00:00Z'), 2, 'Fri 22:00')
  t.equal(at('2025-03-29T04:59:59Z'), 2, 'Sat 05:59:59')
  t.equal(at('2025-03-29T05:00:00Z'), -1, 'Sat 06:00')
  t.equal(at('2025-03-27T22:00:00Z'), -1, 'Thu 23:00 is not Friday night')

  t.same(parseDays('fri-mon'), [true, true, false, false, false, true, true])
  t.same(parseDays('mon-wed,fri'), [false, true, true, true, false, true, false])
  t.same(parseDays('daily'), new Array(7).fill(true))
  t.same(new CourtesySchedule({ timeZone: 'UTC', windows: [{ from: '00:00', to: '24:00', upload: 1 }] }).limitsAt(0).window, 0)
  t.throws(() => new CourtesySchedule({ timeZone: 'Mars/Olympus' }), { code: 'BAD_ARGUMENT' })
  t.throws(() => new CourtesySchedule({ windows: [{ days: 'mo-fr', from: '08:00', to: '18:00' }] }), { code: 'BAD_ARGUMENT' })
  t.throws(() => new CourtesySchedule({ windows: [{ from: '8:00', to: '18:00' }] }), { code: 'BAD_ARGUMENT' })
  t.throws(() => new CourtesySchedule({ windows: [{ from: '08:00', to: '08:00' }] }), { code: 'BAD_ARGUMENT' })
  t.throws(() => new CourtesySchedule({ windows: [{ from: '24:00', to: '08:00' }] }), { code: 'BAD_ARGUMENT' })
  t.throws(() => new CourtesySchedule({ default: { upload: -1 } }), { code: 'BAD_ARGUMENT' })
})

t.test('courtesy: a window opening changes the rate; metered means no upload', async (t) => {
  // Monday 31 March 2025, 07:58:30 in Vienna.
  const time = new ManualTime(new Date('2025-03-31T05:58:30Z'))
  const courtesy = new Courtesy({ schedule: business, time, role: 'origin' })
  await courtesy.ready()
  t.equal(courtesy.role, 'origin')
  t.ok(courtesy.sourcePriority > new Courtesy({ time }).sourcePriority, 'the origin is asked last')
  const seen: CourtesyRates[] = []
  const sub = courtesy.rates$.subscribe((r) => seen.push(r))
  t.equal(seen.length, 1, 'emits the current rates on subscribe')
  t.same(seen[0], { upload: 8_000_000, download: Infinity, uploadAllowed: true, metered: false, cap: { upload: 8_000_000, download: Infinity }, window: -1 })

  time.advance(60_000) // 07:59:30
  t.equal(seen.length, 1, 'nothing changes within the night')
  time.advance(29_999) // 07:59:59.999
  t.equal(courtesy.effectiveRate('upload'), 8_000_000)
  time.advance(11) // 08:00:00.010: the minute timer has fired
  t.equal(courtesy.effectiveRate('upload'), 256_000, 'business hours')
  t.equal(courtesy.effectiveRate('download'), 2_000_000)
  t.equal(seen.length, 2)
  t.equal(seen[1]!.window, 0)
  t.equal(await firstValueFrom(courtesy.effectiveRate$('upload')), 256_000)

  // A take() in progress follows the new rate: 256 kB at 256 kB/s is about a second.
  const big = tracked(courtesy.upload.take(256_000 + courtesy.upload.burst))
  time.advance(999)
  await settle()
  t.notOk(big.done)
  time.advance(2)
  await settle()
  t.ok(big.done)

  courtesy.setMetered(true)
  t.equal(courtesy.uploadAllowed, false)
  t.equal(courtesy.effectiveRate('upload'), 0)
  t.equal(courtesy.effectiveRate('download'), 2_000_000, 'downloads go on')
  t.equal(seen.at(-1)!.uploadAllowed, false)
  const held = tracked(courtesy.upload.take(1))
  time.advance(3_600_000)
  await settle()
  t.notOk(held.done, 'no upload at all on a metered link')
  t.notOk(courtesy.upload.tryTake(0) && courtesy.upload.tryTake(1))
  courtesy.setMetered(false)
  time.advance(100)
  await settle()
  t.ok(held.done)
  t.equal(courtesy.uploadAllowed, true)

  // 18:00 closes the window.
  time.advanceTo(new Date('2025-03-31T16:00:00Z'))
  time.advance(10)
  t.equal(courtesy.effectiveRate('upload'), 8_000_000)
  t.equal(courtesy.effectiveRate('download'), Infinity)

  courtesy.setSchedule({ timeZone: 'Europe/Vienna', default: { upload: 0 } })
  t.equal(courtesy.uploadAllowed, false, 'a schedule without upload allows none either')

  sub.unsubscribe()
  const pending = courtesy.upload.take(1)
  await courtesy.close()
  await courtesy.close()
  await t.rejects(pending, { code: 'CLOSED' })
  await t.rejects(courtesy.ready(), { code: 'CLOSED' })
  t.throws(() => courtesy.effectiveRate('sideways' as 'upload'), { code: 'BAD_ARGUMENT' })
})

t.test('ledbat: back off when the queue grows, recover when it drains, never below the floor', async (t) => {
  const time = new ManualTime()
  const CAP = 2_000_000
  const courtesy = new Courtesy({ schedule: { default: { upload: CAP } }, time })
  const up = courtesy.upload
  const feed = (ms: number, count = 1, every = 100): void => {
    for (let i = 0; i < count; i++) {
      time.advance(every)
      up.onDelaySample(ms)
    }
  }
  feed(20, 50) // base delay 20 ms
  t.equal(up.rate, CAP, 'no queue: the cap')
  t.same(up.delay?.baseDelayMs, 20)

  // A person starts a video call; the queue builds.
  const rising = [40, 80, 150, 250, 300, 300, 300]
  let fellAfter = -1
  for (let i = 0; i < rising.length; i++) {
    feed(rising[i]!)
    if (up.rate < CAP && fellAfter < 0) fellAfter = i + 1
  }
  t.ok(fellAfter > 0 && fellAfter <= 6, `fell below the cap after ${fellAfter} samples`)
  t.ok(up.rate <= CAP * 0.7)
  t.ok(courtesy.rates().upload < CAP)

  // A long stretch of bufferbloat: down to the floor and no further.
  feed(400, 600)
  const floor = Math.max(16 * 1024, CAP / 100)
  t.equal(up.rate, floor, 'at the floor (16 KiB/s or 1 % of the cap)')
  const stillMoves = tracked(up.take(floor / 10))
  time.advance(200)
  await settle()
  t.ok(stillMoves.done, 'a transfer never stalls')

  // The queue drains: back to base delay, the rate climbs gently back to the cap.
  feed(20, 3)
  const early = up.rate
  t.ok(early < CAP / 2, 'gently: not at once')
  let seconds = 0
  while (up.rate < CAP && seconds < 60) {
    feed(20, 10)
    seconds++
  }
  t.equal(up.rate, CAP, `back at the cap after ~${seconds} s`)
  t.ok(seconds >= 5 && seconds <= 15)
  await courtesy.close()
})

t.test('ledbat: base delay window, unlimited cap, bad samples', async (t) => {
  const time = new ManualTime()
  const c = new LedbatController({ time, baseHistoryMinutes: 2 })
  t.equal(c.rate, Infinity)
  c.onDelaySample(10)
  time.advance(100)
  c.onDelaySample(15)
  t.equal(c.state.baseDelayMs, 10)
  // Older than the history: the base follows the path's new delay.
  time.advance(3 * 60_000)
  c.onDelaySample(50)
  t.equal(c.state.baseDelayMs, 50)

  // Unlimited cap: the first back-off starts from what the direction actually moves.
  for (let i = 0; i < 5; i++) {
    time.advance(200)
    c.onDelaySample(400, 1_000_000)
  }
  t.ok(c.rate < 1_000_000 && c.rate >= 16 * 1024, `backed off to ${c.rate}`)
  for (let i = 0; i < 1000 && c.rate !== Infinity; i++) {
    time.advance(100)
    c.onDelaySample(50)
  }
  t.equal(c.rate, Infinity, 'and lets go again once the queue is gone')
  t.throws(() => c.onDelaySample(-1), { code: 'BAD_ARGUMENT' })
  t.throws(() => c.onDelaySample(Number.NaN), { code: 'BAD_ARGUMENT' })
  t.throws(() => new LedbatController({ targetMs: 0 }), { code: 'BAD_ARGUMENT' })

  const off = new Courtesy({ time, ledbat: false, schedule: { default: { upload: 1000 } } })
  for (let i = 0; i < 10; i++) off.upload.onDelaySample(5000)
  t.equal(off.effectiveRate('upload'), 1000, 'back-off can be turned off')
  t.throws(() => off.upload.onDelaySample(-5), { code: 'BAD_ARGUMENT' })
  await off.close()
})
