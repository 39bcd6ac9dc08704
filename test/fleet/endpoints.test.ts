import t, { type Test } from 'tap'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { openDatabase, sublevel } from '../../lib/store/db.js'
import { generateKeyPair, keyIdOf } from '../../lib/crypto/keys.js'
import { newCertificate, signEnvelope } from '../../lib/trust/index.js'
import { TenantTree } from '../../lib/fleet/tenants.js'
import { EndpointStore, nodeNames, type NewEndpoint } from '../../lib/fleet/endpoints.js'
import { codeOf, steppingClock } from './helpers.js'
import { keys } from '../trust/helpers.js'

const CUST = 'msp-1/customer-a'

async function setup (t: Test) {
  const db = await openDatabase(path.join(t.testdir(), 'db'))
  t.teardown(() => db.close())
  const clock = steppingClock()
  const tree = new TenantTree(db, { clock })
  const endpoints = new EndpointStore(db, { tree, clock })
  await tree.create({ parent: '', name: 'msp-1', kind: 'msp' })
  await tree.create({ parent: 'msp-1', name: 'customer-a', kind: 'customer' })
  await tree.create({ parent: 'msp-1', name: 'customer-b', kind: 'customer' })
  await tree.create({ parent: CUST, name: 'sales', kind: 'group' })
  return { db, tree, endpoints }
}

const fakeKey = () => randomBytes(32).toString('hex')

function input (over: Partial<NewEndpoint> = {}): NewEndpoint {
  return { keyid: fakeKey(), parent: CUST, hostname: 'pc-1', platform: 'linux-x64', token: '0123456789abcdef', ...over }
}

async function certFor (keyid: string, tenant = CUST) {
  const cert = newCertificate({ org: 'acme', holder: keyid, tenant, issued: '2030-01-01T00:00:00Z', expires: '2031-01-01T00:00:00Z' })
  return signEnvelope(cert, [keys.console[0]!])
}

t.test('creates an endpoint as a tree node and reads it back by key, uid and subtree', async (t) => {
  const { tree, endpoints } = await setup(t)
  const rec = await endpoints.create(input({ hostname: 'pc-1', site: 'berlin' }))
  t.equal(rec.status, 'quarantine')
  t.equal(rec.path, `${CUST}/pc-1`)
  t.equal(rec.tenant, CUST)
  t.equal(rec.site, 'berlin')
  t.equal(rec.certificate, undefined)
  t.same(rec.history.map((h) => h.op), ['enroll'])
  const node = await tree.get(rec.path)
  t.equal(node.kind, 'endpoint')
  t.equal(node.uid, rec.uid, 'the record is keyed by its node')
  t.same(await endpoints.byKeyid(rec.keyid), rec)
  t.same(await endpoints.get(rec.keyid), rec)
  t.same(await endpoints.byUid(rec.uid), rec)
  t.equal(await endpoints.byKeyid(fakeKey()), undefined)
  t.equal(await endpoints.byKeyid('not a key'), undefined)
  t.equal(await codeOf(endpoints.get(fakeKey())), 'NOT_FOUND')
  t.same((await endpoints.list({ under: CUST })).map((r) => r.keyid), [rec.keyid])
  t.same(await endpoints.list({ under: 'msp-1/customer-b' }), [])
  t.equal(await endpoints.count(), 1)
  t.equal(await codeOf(endpoints.list({ under: 'msp-1/nope' })), 'NOT_FOUND')
  t.equal(await codeOf(endpoints.list({ under: '../x' })), 'UNSAFE_PATH')
  t.equal(await codeOf(endpoints.list({ status: 'gone' as 'removed' })), 'BAD_ARGUMENT')
})

t.test('names the node after the host, tagged with the key when the name is taken or unsafe', async (t) => {
  const { endpoints } = await setup(t)
  const a = await endpoints.create(input({ hostname: 'pc-1' }))
  const b = await endpoints.create(input({ hostname: 'pc-1' }))
  const c = await endpoints.create(input({ hostname: 'Bob’s Laptop (2)' }))
  t.equal(await codeOf(endpoints.create(input({ hostname: 'two  spaces' }))), 'BAD_ARGUMENT')
  t.equal(await codeOf(endpoints.create(input({ hostname: ' lead' }))), 'BAD_ARGUMENT')
  t.equal(await codeOf(endpoints.create(input({ hostname: 'zero\u200bwidth' }))), 'BAD_ARGUMENT')
  t.equal(a.path, `${CUST}/pc-1`)
  t.equal(b.path, `${CUST}/pc-1-${b.keyid.slice(0, 8)}`)
  t.equal(c.path, `${CUST}/Bob-s-Laptop-2-${c.keyid.slice(0, 8)}`)
  t.equal(c.hostname, 'Bob’s Laptop (2)', 'the record keeps the host name as reported')
  const names = [...nodeNames('..', 'ab'.repeat(32))]
  t.equal(names[0], 'endpoint-abababab', 'nothing safe left of the host name')
  t.equal(names.length, 99)
  t.equal(await codeOf(endpoints.create(input({ hostname: 'a\nb' }))), 'BAD_ARGUMENT')
  t.equal(await codeOf(endpoints.create(input({ hostname: '' }))), 'BAD_ARGUMENT')
  t.equal(await codeOf(endpoints.create(input({ hostname: 'x'.repeat(254) }))), 'BAD_ARGUMENT')
})

t.test('refuses bad input and a second live record for a key, writing nothing', async (t) => {
  const { db, tree, endpoints } = await setup(t)
  const live = await endpoints.create(input())
  await tree.create({ parent: CUST, name: 'old', kind: 'group' })
  await tree.remove(`${CUST}/old`)
  const before = await db.iterator().all()
  const cases: Array<[string, Partial<NewEndpoint>, string]> = [
    ['same key again', { keyid: live.keyid, hostname: 'other' }, 'ALREADY_EXISTS'],
    ['bad keyid', { keyid: 'abc' }, 'BAD_ARGUMENT'],
    ['unknown parent', { parent: 'msp-1/nope' }, 'NOT_FOUND'],
    ['removed parent', { parent: `${CUST}/old` }, 'NOT_FOUND'],
    ['an msp as parent', { parent: 'msp-1' }, 'BAD_ARGUMENT'],
    ['an endpoint as parent', { parent: live.path }, 'BAD_ARGUMENT'],
    ['unsafe platform', { platform: '../x' }, 'UNSAFE_PATH'],
    ['unsafe site', { site: 'a b' }, 'UNSAFE_PATH'],
    ['no token', { token: '' }, 'BAD_ARGUMENT'],
    ['approved without certificate', { status: 'approved' }, 'BAD_ARGUMENT'],
    ['bad status', { status: 'removed' as 'approved' }, 'BAD_ARGUMENT']
  ]
  for (const [name, over, code] of cases) t.equal(await codeOf(endpoints.create(input(over))), code, name)
  const other = fakeKey()
  t.equal(await codeOf(endpoints.create(input({ keyid: other, status: 'approved', certificate: await certFor(fakeKey()) }))), 'BAD_ARGUMENT', 'certificate of another key')
  t.same(await db.iterator().all(), before, 'nothing was written')
})

t.test('status transitions: approve needs a certificate; reject and remove keep history', async (t) => {
  const { db, tree, endpoints } = await setup(t)
  const a = await endpoints.create(input({ hostname: 'a' }))
  const b = await endpoints.create(input({ hostname: 'b' }))
  const c = await endpoints.create(input({ hostname: 'c' }))

  t.equal(await codeOf(endpoints.setStatus(a.keyid, 'approved')), 'BAD_ARGUMENT', 'no certificate')
  const approved = await endpoints.setStatus(a.keyid, 'approved', { certificate: await certFor(a.keyid) })
  t.equal(approved.status, 'approved')
  t.ok(approved.approvedAt)
  t.equal(approved.certificate?.signed.holder, a.keyid)
  const renewed = await endpoints.setCertificate(a.keyid, await certFor(a.keyid, `${CUST}/sales`))
  t.equal(renewed.certificate?.signed.tenant, `${CUST}/sales`)
  t.same(renewed.history.map((h) => h.op), ['enroll', 'approve', 'certificate'])

  const rejected = await endpoints.setStatus(b.keyid, 'rejected')
  t.equal(rejected.status, 'rejected')
  t.equal(await tree.find(b.path), undefined, 'the rejected node is hidden from the tree')
  t.equal((await tree.find(b.path, { includeRemoved: true }))?.removed, true, '…but kept')

  const before = await db.iterator().all()
  const [certA, certB, certC] = await Promise.all([certFor(a.keyid), certFor(b.keyid), certFor(c.keyid)])
  const bad: Array<[string, () => Promise<unknown>, string]> = [
    ['approve approved', () => endpoints.setStatus(a.keyid, 'approved', { certificate: certA }), 'INVALID_TRANSITION'],
    ['reject approved', () => endpoints.setStatus(a.keyid, 'rejected'), 'INVALID_TRANSITION'],
    ['back to quarantine', () => endpoints.setStatus(a.keyid, 'quarantine'), 'INVALID_TRANSITION'],
    ['approve rejected', () => endpoints.setStatus(b.keyid, 'approved', { certificate: certB }), 'INVALID_TRANSITION'],
    ['remove rejected', () => endpoints.remove(b.keyid), 'INVALID_TRANSITION'],
    ['certificate for quarantine', () => endpoints.setCertificate(c.keyid, certC), 'INVALID_TRANSITION'],
    ['unknown status', () => endpoints.setStatus(c.keyid, 'lost' as 'removed'), 'BAD_ARGUMENT'],
    ['unknown key', () => endpoints.remove(fakeKey()), 'NOT_FOUND']
  ]
  for (const [name, op, code] of bad) t.equal(await codeOf(op()), code, name)
  t.same(await db.iterator().all(), before, 'refusals wrote nothing')

  const removed = await endpoints.remove(a.keyid)
  t.equal(removed.status, 'removed')
  t.same(removed.history.map((h) => h.op), ['enroll', 'approve', 'certificate', 'remove'])
  t.equal(await tree.find(a.path), undefined)
  t.same((await endpoints.list()).map((r) => r.hostname), ['b', 'c'], 'removed ones are hidden by default')
  t.same((await endpoints.list({ status: 'removed' })).map((r) => r.hostname), ['a'])
  t.same((await endpoints.list({ status: ['removed', 'rejected'] })).map((r) => r.hostname), ['a', 'b'])
  t.equal(await endpoints.count({ status: 'quarantine' }), 1)

  // A removed or rejected key may come back: a new node and record; the old ones stay.
  const again = await endpoints.create(input({ keyid: a.keyid, hostname: 'a' }))
  t.equal(again.path, `${CUST}/a-${a.keyid.slice(0, 8)}`, 'the old name stays reserved')
  t.not(again.uid, a.uid)
  t.same((await endpoints.history(a.keyid)).map((r) => [r.status, r.path]), [['removed', a.path], ['quarantine', again.path]])
  t.same(await endpoints.byKeyid(a.keyid), again)
})

t.test('an endpoint whose ancestor was removed can still be removed', async (t) => {
  const { tree, endpoints } = await setup(t)
  const e = await endpoints.create(input({ parent: `${CUST}/sales` }))
  await tree.remove(`${CUST}/sales`)
  const removed = await endpoints.remove(e.keyid)
  t.equal(removed.status, 'removed')
  t.equal(removed.path, e.path)
})

t.test('paths follow moves of the tree (resolved by uid, never stored)', async (t) => {
  const { tree, endpoints } = await setup(t)
  const e = await endpoints.create(input({ parent: `${CUST}/sales`, hostname: 'pc-9' }))
  await tree.move(`${CUST}/sales`, 'msp-1/customer-b')
  const moved = await endpoints.get(e.keyid)
  t.equal(moved.path, 'msp-1/customer-b/sales/pc-9')
  t.equal(moved.tenant, 'msp-1/customer-b/sales')
  t.same((await endpoints.list({ under: 'msp-1/customer-b' })).map((r) => r.keyid), [e.keyid])
  t.same(await endpoints.list({ under: CUST }), [])
  t.equal(await codeOf(endpoints.list({ under: `${CUST}/sales` })), 'NOT_FOUND')
})

t.test('WriteOptions.extra is committed in the same batch, and only when the change is', async (t) => {
  const { db, endpoints } = await setup(t)
  const audit = sublevel(db, 'test-audit')
  let n = 0
  const extra = () => [{ type: 'put' as const, sublevel: audit, key: String(++n), value: 'entry' }]
  const e = await endpoints.create(input(), { extra })
  await endpoints.setStatus(e.keyid, 'rejected', { extra })
  await codeOf(endpoints.setStatus(e.keyid, 'approved', { certificate: await certFor(e.keyid), extra }))
  await codeOf(endpoints.create(input({ parent: 'msp-1/nope' }), { extra }))
  t.same(await audit.keys().all(), ['1', '2'])
})

t.test('lists one subtree of a large fleet quickly, sorted by path', async (t) => {
  const { tree, endpoints } = await setup(t)
  const GROUPS = 10
  const PER_GROUP = 1000
  const OTHERS = 1000
  for (let g = 0; g < GROUPS; g++) await tree.create({ parent: CUST, name: `g${g}`, kind: 'group' })
  const t0 = performance.now()
  for (let g = 0; g < GROUPS; g++) {
    for (let i = 0; i < PER_GROUP; i++) await endpoints.create(input({ parent: `${CUST}/g${g}`, hostname: `pc-${i}` }))
  }
  for (let i = 0; i < OTHERS; i++) await endpoints.create(input({ parent: 'msp-1/customer-b', hostname: `pc-${i}` }))
  t.comment(`created ${GROUPS * PER_GROUP + OTHERS} endpoints in ${Math.round(performance.now() - t0)} ms`)

  const time = async <T>(fn: () => Promise<T>): Promise<[T, number]> => {
    const s = performance.now()
    const v = await fn()
    return [v, performance.now() - s]
  }
  const [all, allMs] = await time(() => endpoints.list({ under: CUST }))
  const [one, oneMs] = await time(() => endpoints.list({ under: `${CUST}/g3` }))
  const [n, countMs] = await time(() => endpoints.count({ under: CUST, status: 'quarantine' }))
  t.comment(`list ${all.length} in ${allMs.toFixed(1)} ms, one group of ${one.length} in ${oneMs.toFixed(1)} ms, count in ${countMs.toFixed(1)} ms`)
  t.equal(all.length, GROUPS * PER_GROUP)
  t.equal(n, GROUPS * PER_GROUP)
  t.equal(one.length, PER_GROUP)
  t.ok(one.every((r) => r.tenant === `${CUST}/g3`))
  const paths = all.map((r) => r.path)
  t.same(paths, [...paths].sort(), 'sorted by path')
  t.ok(allMs < 3000, `10 000 listed in ${allMs.toFixed(0)} ms (bound 3000)`)
  t.ok(oneMs < 500, `one group listed in ${oneMs.toFixed(0)} ms (bound 500)`)
  // The subtree's cost follows its size, not the fleet's: a tenth of the endpoints, well under half the time.
  t.ok(oneMs < allMs / 2, 'a group is listed faster than its customer')
})

t.test('the tree additions: a caller-chosen uid, and the path index of a subtree', async (t) => {
  const { db, tree, endpoints } = await setup(t)
  const e = await endpoints.create(input({ keyid: keyIdOf(generateKeyPair(Buffer.alloc(32, 7)).publicKey), parent: `${CUST}/sales` }))
  await tree.create({ parent: CUST, name: 'old', kind: 'group' })
  await tree.remove(`${CUST}/old`)
  t.same(await tree.pathsUnder(CUST), [
    { path: CUST, uid: await tree.uidOf(CUST) },
    { path: `${CUST}/old`, uid: await tree.uidOf(`${CUST}/old`) },
    { path: `${CUST}/sales`, uid: await tree.uidOf(`${CUST}/sales`) },
    { path: e.path, uid: e.uid }
  ], 'the node first, then its subtree by path, removed nodes included')
  t.same((await tree.pathsUnder('')).map((p) => p.path), ['msp-1', CUST, `${CUST}/old`, `${CUST}/sales`, e.path, 'msp-1/customer-b'])
  t.same(await tree.pathsUnder('msp-1/nope'), [])
  t.same(await tree.pathsUnder('msp-1/customer-b'), [{ path: 'msp-1/customer-b', uid: await tree.uidOf('msp-1/customer-b') }])
  const before = await db.iterator().all()
  t.equal(await codeOf(tree.create({ parent: CUST, name: 'g', kind: 'group' }, { uid: e.uid })), 'ALREADY_EXISTS', 'a uid in use')
  t.equal(await codeOf(tree.create({ parent: CUST, name: 'g', kind: 'group' }, { uid: 'mine' })), 'BAD_ARGUMENT', 'not a UUID')
  t.same(await db.iterator().all(), before)
  const uid = '00000000-0000-4000-8000-000000000001'
  t.equal((await tree.create({ parent: CUST, name: 'g', kind: 'group' }, { uid })).uid, uid)
})
