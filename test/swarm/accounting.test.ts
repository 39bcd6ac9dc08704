import t from 'tap'
import path from 'node:path'
import { openDatabase, sublevel } from '../../lib/store/db.js'
import { Accounting, type AccountingStats, emptyCounters } from '../../lib/swarm/accounting.js'
import { ManualTime } from '../../lib/swarm/token-bucket.js'

const A = 'a'.repeat(64)
const B = 'b'.repeat(64)
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

t.test('record → snapshot, per package and in total', async (t) => {
  const db = await openDatabase(path.join(t.testdir(), 'db'))
  t.teardown(() => db.close())
  const acc = new Accounting({ db: sublevel(db, 'accounting') })
  await acc.ready()
  await acc.ready()
  acc.record({ digest: A, source: 'origin', direction: 'down', bytes: 1000 })
  acc.record({ digest: A, source: 'site', direction: 'down', bytes: 300 })
  acc.record({ digest: A, source: 'site', direction: 'up', bytes: 50 })
  acc.record({ digest: B, source: 'peer', direction: 'down', bytes: 7 })
  acc.record({ digest: B, source: 'origin', direction: 'down', bytes: 0 })
  const snap = acc.snapshot()
  t.same(snap.packages[A], { origin: { down: 1000, up: 0 }, site: { down: 300, up: 50 }, peer: { down: 0, up: 0 } })
  t.same(snap.packages[B], { origin: { down: 0, up: 0 }, site: { down: 0, up: 0 }, peer: { down: 7, up: 0 } })
  t.same(snap.total, { origin: { down: 1000, up: 0 }, site: { down: 300, up: 50 }, peer: { down: 7, up: 0 } })
  t.same(acc.package('c'.repeat(64)), emptyCounters())
  // A snapshot is a copy: later records do not change it.
  acc.record({ digest: A, source: 'origin', direction: 'down', bytes: 1 })
  t.equal(snap.packages[A]!.origin.down, 1000)
  t.equal(acc.snapshot().total.origin.down, 1001)

  t.throws(() => acc.record({ digest: A, source: 'moon' as 'peer', direction: 'down', bytes: 1 }), { code: 'BAD_ARGUMENT' })
  t.throws(() => acc.record({ digest: A, source: 'peer', direction: 'sideways' as 'up', bytes: 1 }), { code: 'BAD_ARGUMENT' })
  t.throws(() => acc.record({ digest: A, source: 'peer', direction: 'up', bytes: -1 }), { code: 'BAD_ARGUMENT' })
  t.throws(() => acc.record({ digest: A, source: 'peer', direction: 'up', bytes: Number.NaN }), { code: 'BAD_ARGUMENT' })
  t.throws(() => acc.record({ digest: '', source: 'peer', direction: 'up', bytes: 1 }), { code: 'BAD_ARGUMENT' })
  t.same(acc.snapshot().total.peer, { down: 7, up: 0 }, 'bad records count nothing')

  await acc.close()
  await acc.close()
  t.throws(() => acc.record({ digest: A, source: 'peer', direction: 'up', bytes: 1 }), { code: 'CLOSED' })
  await t.rejects(acc.ready(), { code: 'CLOSED' })
})

t.test('stats$ is throttled: at most once per interval, with the latest numbers, and on demand', async (t) => {
  const db = await openDatabase(path.join(t.testdir(), 'db'))
  t.teardown(() => db.close())
  const time = new ManualTime()
  const acc = new Accounting({ db: sublevel(db, 'accounting'), time, statsInterval: 250, flushInterval: 60_000 })
  await acc.ready()
  const seen: AccountingStats[] = []
  const sub = acc.stats$.subscribe((s) => seen.push(s))
  t.equal(seen.length, 1, 'the current numbers on subscribe')
  time.advance(1000) // a quiet spell

  acc.record({ digest: A, source: 'peer', direction: 'down', bytes: 1 })
  time.advance(0)
  t.equal(seen.length, 2, 'the first change after a quiet spell comes out at once')
  for (let ms = 10; ms < 250; ms += 10) {
    time.advance(10)
    acc.record({ digest: A, source: 'peer', direction: 'down', bytes: 1 })
  }
  t.equal(seen.length, 2, 'nothing more within the interval')
  time.advance(10) // 250 ms after the first emission
  t.equal(seen.length, 3, 'one emission when the interval is up')
  t.equal(seen[2]!.total.peer.down, 25, 'with the latest numbers')
  time.advance(10_000)
  t.equal(seen.length, 3, 'no bytes, no emissions')

  acc.record({ digest: B, source: 'origin', direction: 'down', bytes: 5 })
  acc.refresh()
  t.equal(seen.length, 4, 'refresh() emits at once')
  t.equal(seen[3]!.packages[B]!.origin.down, 5)
  time.advance(1000)
  t.equal(seen.length, 4, 'and the pending emission is dropped')

  // A late subscriber gets the latest numbers at once.
  const late: AccountingStats[] = []
  const sub2 = acc.stats$.subscribe((s) => late.push(s))
  t.equal(late.length, 1)
  t.equal(late[0]!.total.origin.down, 5)

  let completed = false
  acc.stats$.subscribe({ complete: () => { completed = true } })
  await acc.close()
  t.ok(completed, 'close completes stats$')
  t.equal(seen.at(-1)!.total.peer.down, 25)
  sub.unsubscribe()
  sub2.unsubscribe()
  t.equal(time.pending, 0, 'no timers left')
})

t.test('persisted: coalesced flushes, and close + reopen continues the counts', async (t) => {
  const dir = path.join(t.testdir(), 'db')
  let db = await openDatabase(dir)
  const time = new ManualTime()
  let acc = new Accounting({ db: sublevel(db, 'accounting'), time, flushInterval: 1000 })
  // Counted before ready(): kept and added to what was stored.
  acc.record({ digest: A, source: 'origin', direction: 'down', bytes: 10 })
  await acc.ready()
  for (let i = 0; i < 100; i++) acc.record({ digest: A, source: 'site', direction: 'down', bytes: 100 })
  t.equal(await sublevel(db, 'accounting').get(A), undefined, 'nothing written per record')
  time.advance(1000)
  await acc.flush() // waits for the timer's write
  t.same(await sublevel(db, 'accounting').get(A), { origin: { down: 10, up: 0 }, site: { down: 10_000, up: 0 }, peer: { down: 0, up: 0 } }, 'one coalesced write after the interval')

  acc.record({ digest: B, source: 'peer', direction: 'up', bytes: 42 })
  await acc.close() // writes what is left
  await db.close()

  db = await openDatabase(dir)
  t.teardown(() => db.close())
  acc = new Accounting({ db: sublevel(db, 'accounting'), time })
  acc.record({ digest: B, source: 'peer', direction: 'up', bytes: 8 }) // before ready: added on top
  await acc.ready()
  const snap = acc.snapshot()
  t.same(snap.packages[A], { origin: { down: 10, up: 0 }, site: { down: 10_000, up: 0 }, peer: { down: 0, up: 0 } })
  t.same(snap.packages[B], { origin: { down: 0, up: 0 }, site: { down: 0, up: 0 }, peer: { down: 0, up: 50 } })
  t.same(snap.total, { origin: { down: 10, up: 0 }, site: { down: 10_000, up: 0 }, peer: { down: 0, up: 50 } })
  await acc.close()
  t.same(await sublevel(db, 'accounting').get(B), snap.packages[B])
})

t.test('concurrent records lose nothing (real clock, flushes racing records)', async (t) => {
  const dir = path.join(t.testdir(), 'db')
  let db = await openDatabase(dir)
  let acc = new Accounting({ db: sublevel(db, 'accounting'), statsInterval: 1, flushInterval: 1 })
  await acc.ready()
  let emissions = 0
  const sub = acc.stats$.subscribe(() => { emissions++ })
  const digests = [A, B, 'c'.repeat(64)]
  const sources = ['origin', 'site', 'peer'] as const
  const directions = ['down', 'up'] as const
  const TASKS = 40
  const ROUNDS = 250
  await Promise.all(Array.from({ length: TASKS }, async (_, task) => {
    for (let i = 0; i < ROUNDS; i++) {
      acc.record({ digest: digests[(task + i) % 3]!, source: sources[i % 3]!, direction: directions[task % 2]!, bytes: 3 })
      if (i % 10 === 0) await settle()
      if (i % 50 === 0) await acc.flush()
    }
  }))
  const expected = TASKS * ROUNDS * 3
  const sum = (s: AccountingStats['total']): number => sources.reduce((n, src) => n + s[src].down + s[src].up, 0)
  const snap = acc.snapshot()
  t.equal(sum(snap.total), expected, 'every byte counted')
  t.equal(Object.values(snap.packages).reduce((n, c) => n + sum(c), 0), expected, 'packages add up to the total')
  t.ok(emissions > 1)
  sub.unsubscribe()
  await acc.close()
  await db.close()

  db = await openDatabase(dir)
  t.teardown(() => db.close())
  acc = new Accounting({ db: sublevel(db, 'accounting') })
  await acc.ready()
  t.same(acc.snapshot(), snap, 'and every byte persisted')
  await acc.close()
})

t.test('a failing database: IO_ERROR, and the counts stay for a retry', async (t) => {
  const db = await openDatabase(path.join(t.testdir(), 'db'))
  const acc = new Accounting({ db: sublevel(db, 'accounting'), flushInterval: 60_000 })
  await acc.ready()
  acc.record({ digest: A, source: 'origin', direction: 'down', bytes: 5 })
  await db.close()
  await t.rejects(acc.flush(), { code: 'IO_ERROR' })
  t.ok(acc.lastError !== undefined)
  t.equal(acc.snapshot().total.origin.down, 5, 'nothing lost in memory')
  await t.rejects(acc.close(), { code: 'IO_ERROR' }, 'close says the last write failed')

  const broken = new Accounting({ db: sublevel(db, 'accounting') })
  await t.rejects(broken.ready(), { code: 'IO_ERROR' })
  await broken.close()
})
