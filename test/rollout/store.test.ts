import t from 'tap'
import { openDatabase, sublevel } from '../../lib/store/db.js'
import type { JobState } from '../../lib/report/event.js'
import { RolloutStore } from '../../lib/rollout/index.js'
import { CUSTOMER, MINUTE, T0, codeOf, endpoints, openDb, spec, TestClock } from './helpers.js'

t.test('create, get, list by tenant subtree and state; a taken id is ALREADY_EXISTS', async (t) => {
  const { db } = await openDb(t)
  const clock = new TestClock()
  const store = new RolloutStore(db, { clock: clock.now })
  const created = await store.create(spec(), endpoints(30), { by: 'alice' })
  t.equal(created.rollout.revision, 1)
  t.same(await store.get('ff-128'), created.rollout)
  await store.create(spec({ id: 'other', target: { tenant: 'msp-2/beta' } }), [{ keyid: endpoints(31)[30]!.keyid, tenant: 'msp-2/beta/pcs' }])
  await store.abort('other')

  t.same((await store.list()).map((r) => r.id), ['ff-128', 'other'])
  t.same((await store.list({ tenant: 'msp-1' })).map((r) => r.id), ['ff-128'], 'targets inside msp-1 only')
  t.same((await store.list({ tenant: `${CUSTOMER}/sales` })).map((r) => r.id), [], 'a rollout for the whole customer is not inside one of its groups')
  t.same((await store.list({ states: ['aborted'] })).map((r) => r.id), ['other'])
  t.equal(await codeOf(() => store.list({ tenant: '../x' })), 'UNSAFE_PATH')

  t.equal(await codeOf(() => store.create(spec(), endpoints(5))), 'ALREADY_EXISTS')
  t.equal(await codeOf(() => store.create(spec({ id: 'x', phases: [] }), endpoints(5))), 'BAD_ROLLOUT')
  t.equal(await codeOf(() => store.get('missing')), 'NOT_FOUND')
  t.equal(await store.find('missing'), undefined)
  t.equal(await codeOf(() => store.pause('missing')), 'NOT_FOUND')
})

t.test('every change raises the revision by one; a stale revision is refused and writes nothing', async (t) => {
  const { db } = await openDb(t)
  const clock = new TestClock()
  const store = new RolloutStore(db, { clock: clock.now })
  await store.create(spec(), endpoints(30))
  clock.advance(MINUTE)
  const paused = await store.pause('ff-128', { by: 'bob', revision: 1 })
  t.equal(paused.rollout.revision, 2)
  t.equal(paused.rollout.updatedAt, new Date(T0.getTime() + MINUTE).toISOString())
  const before = await db.iterator().all()
  t.equal(await codeOf(() => store.resume('ff-128', { revision: 1 })), 'INVALID_TRANSITION', 'someone acted on revision 1')
  t.equal(await codeOf(() => store.pause('ff-128')), 'INVALID_TRANSITION', 'already paused')
  t.same(await db.iterator().all(), before, 'refused changes write nothing')
  t.equal((await store.resume('ff-128', { revision: 2 })).rollout.revision, 3)

  const none = await store.evaluate('ff-128', () => undefined)
  t.same(none.changes, [])
  t.equal(none.rollout.revision, 3, 'an evaluation that changes nothing stores nothing')
})

t.test('evaluate through the store; history says who did what when, and survives a reopen', async (t) => {
  const { db, location } = await openDb(t)
  const clock = new TestClock()
  const store = new RolloutStore(db, { clock: clock.now })
  const { rollout } = await store.create(spec(), endpoints(30), { by: 'alice' })
  const states = new Map<string, JobState>(rollout.phases[0]!.endpoints.map((k) => [k, 'installed']))
  clock.advance(59 * MINUTE)
  t.same((await store.evaluate('ff-128', (k) => states.get(k))).changes, [], 'not soaked yet')
  clock.advance(MINUTE)
  const step = await store.evaluate('ff-128', (k) => states.get(k))
  t.same(step.changes.map((c) => c.type), ['phase-succeeded', 'phase-started'])
  t.equal(step.rollout.revision, 2)
  clock.advance(MINUTE)
  await store.rollback('ff-128', { by: 'carol' })

  await db.close()
  const reopened = await openDatabase(location)
  t.teardown(() => reopened.close())
  const again = new RolloutStore(reopened, { clock: clock.now })
  const r = await again.get('ff-128')
  t.equal(r.state, 'rolled-back')
  t.equal(r.revision, 3)
  const history = await again.history('ff-128')
  t.same(history.map((h) => [h.revision, h.by, h.change.type, h.at]), [
    [1, 'alice', 'created', T0.toISOString()],
    [1, 'alice', 'phase-started', T0.toISOString()],
    [2, 'engine', 'phase-succeeded', new Date(T0.getTime() + 60 * MINUTE).toISOString()],
    [2, 'engine', 'phase-started', new Date(T0.getTime() + 60 * MINUTE).toISOString()],
    [3, 'carol', 'rolled-back', new Date(T0.getTime() + 61 * MINUTE).toISOString()]
  ])
  t.same((await again.history('ff-128', { reverse: true, limit: 1 })).map((h) => h.change), [{ type: 'rolled-back', endpoints: r.phases[0]!.endpoints.length + r.phases[1]!.endpoints.length }])
  t.same(await again.history('ff-12'), [], 'a prefix of an id is another rollout')
})

t.test("WriteOptions.extra commits the caller's audit entry in the same batch, and only for a real change", async (t) => {
  const { db } = await openDb(t)
  const audit = sublevel(db, 'audit')
  const store = new RolloutStore(db, { clock: new TestClock().now })
  let n = 0
  const extra = () => [{ type: 'put' as const, sublevel: audit, key: String(++n), value: { action: 'rollout' } }]
  await store.create(spec(), endpoints(10), { extra })
  await store.pause('ff-128', { extra })
  await store.evaluate('ff-128', () => 'installed', { extra })
  t.equal(await codeOf(() => store.pause('ff-128', { extra })), 'INVALID_TRANSITION')
  t.same(await audit.keys().all(), ['1', '2'], 'create and pause wrote an entry; the no-op evaluation and the refusal did not')
})
