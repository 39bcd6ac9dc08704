import t, { type Test } from 'tap'
import path from 'node:path'
import { openDatabase, sublevel } from '../../lib/store/db.js'
import { TenantTree, type TenantKind } from '../../lib/fleet/index.js'
import { codeOf, steppingClock } from './helpers.js'

async function openTree (t: Test, dir?: string) {
  const location = dir ?? path.join(t.testdir(), 'db')
  const db = await openDatabase(location)
  const tree = new TenantTree(db, { clock: steppingClock() })
  return { db, tree, location }
}

type Spec = [parent: string, name: string, kind: TenantKind]
const HIERARCHY: Spec[] = [
  ['', 'dist-1', 'distributor'],
  ['dist-1', 'mgr-1', 'msp-manager'],
  ['dist-1/mgr-1', 'msp-1', 'msp'],
  ['dist-1/mgr-1', 'msp-2', 'msp'],
  ['dist-1/mgr-1/msp-1', 'managed-1', 'managed-msp'],
  ['dist-1/mgr-1/msp-1', 'acme', 'customer'],
  ['dist-1/mgr-1/msp-1/managed-1', 'beta', 'customer'],
  ['dist-1/mgr-1/msp-1/acme', 'sales', 'group'],
  ['dist-1/mgr-1/msp-1/acme/sales', 'emea', 'group'],
  ['dist-1/mgr-1/msp-1/acme/sales/emea', 'pc-1', 'endpoint'],
  ['dist-1/mgr-1/msp-1/acme', 'pc-0', 'endpoint']
]
const ACME = 'dist-1/mgr-1/msp-1/acme'

async function build (tree: TenantTree) {
  for (const [parent, name, kind] of HIERARCHY) await tree.create({ parent, name, kind, displayName: name.toUpperCase() })
}

t.test('creates the whole MSP hierarchy and reads it back', async (t) => {
  const { db, tree } = await openTree(t)
  t.teardown(() => db.close())
  await build(tree)
  const acme = await tree.get(ACME)
  t.equal(acme.kind, 'customer')
  t.equal(acme.status, 'not-set-up')
  t.equal(acme.displayName, 'ACME')
  t.equal(acme.createdAt, acme.updatedAt)
  t.match(acme.createdAt, /^2030-01-01T00:00:\d\d\.000Z$/)
  t.same((await tree.listChildren('dist-1/mgr-1/msp-1')).map((n) => n.name), ['acme', 'managed-1'])
  t.same((await tree.listChildren('')).map((n) => n.path), ['dist-1'])
  t.same((await tree.walk(ACME)).map((n) => n.path), [
    ACME, `${ACME}/pc-0`, `${ACME}/sales`, `${ACME}/sales/emea`, `${ACME}/sales/emea/pc-1`
  ], 'pre-order, the node itself first')
  t.equal((await tree.walk('')).length, HIERARCHY.length)
  const pc1 = await tree.get(`${ACME}/sales/emea/pc-1`)
  t.equal(pc1.status, undefined, 'only customers have a status')
  t.equal(await tree.uidOf(pc1.path), pc1.uid)
  t.same(await tree.getByUid(pc1.uid), pc1)
})

t.test('refuses bad kinds, parents, names and duplicates with codes, writing nothing', async (t) => {
  const { db, tree } = await openTree(t)
  t.teardown(() => db.close())
  await build(tree)
  const before = await db.iterator().all()
  const cases: Array<[string, () => Promise<unknown>, string]> = [
    ['customer under a distributor', () => tree.create({ parent: 'dist-1', name: 'c', kind: 'customer' }), 'BAD_ARGUMENT'],
    ['customer at the top', () => tree.create({ parent: '', name: 'c', kind: 'customer' }), 'BAD_ARGUMENT'],
    ['group under an msp', () => tree.create({ parent: 'dist-1/mgr-1/msp-1', name: 'g', kind: 'group' }), 'BAD_ARGUMENT'],
    ['endpoint under an endpoint', () => tree.create({ parent: `${ACME}/pc-0`, name: 'x', kind: 'endpoint' }), 'BAD_ARGUMENT'],
    ['group under an endpoint', () => tree.create({ parent: `${ACME}/pc-0`, name: 'x', kind: 'group' }), 'BAD_ARGUMENT'],
    ['managed-msp under a customer', () => tree.create({ parent: ACME, name: 'm', kind: 'managed-msp' }), 'BAD_ARGUMENT'],
    ['distributor under a distributor', () => tree.create({ parent: 'dist-1', name: 'd', kind: 'distributor' }), 'BAD_ARGUMENT'],
    ['unknown kind', () => tree.create({ parent: ACME, name: 'x', kind: 'site' as TenantKind }), 'BAD_ARGUMENT'],
    ['unknown parent', () => tree.create({ parent: 'dist-1/nope', name: 'x', kind: 'msp' }), 'NOT_FOUND'],
    ['duplicate', () => tree.create({ parent: 'dist-1/mgr-1/msp-1', name: 'acme', kind: 'customer' }), 'ALREADY_EXISTS'],
    ['slash in name', () => tree.create({ parent: ACME, name: 'a/b', kind: 'group' }), 'UNSAFE_PATH'],
    ['dot-dot name', () => tree.create({ parent: ACME, name: '..', kind: 'group' }), 'UNSAFE_PATH'],
    ['empty name', () => tree.create({ parent: ACME, name: '', kind: 'group' }), 'UNSAFE_PATH'],
    ['unsafe parent', () => tree.create({ parent: 'dist-1/../x', name: 'g', kind: 'group' }), 'UNSAFE_PATH'],
    ['control char in display name', () => tree.create({ parent: ACME, name: 'g', kind: 'group', displayName: 'a\nb' }), 'BAD_ARGUMENT'],
    ['status on a group', () => tree.setStatus(`${ACME}/sales`, 'set-up'), 'BAD_ARGUMENT'],
    ['status removed by hand', () => tree.setStatus(ACME, 'removed' as 'set-up'), 'BAD_ARGUMENT'],
    ['rename unknown', () => tree.rename(`${ACME}/nope`, 'X'), 'NOT_FOUND'],
    ['get unknown', () => tree.get(`${ACME}/nope`), 'NOT_FOUND']
  ]
  for (const [what, f, code] of cases) t.equal(await codeOf(f()), code, what)
  t.same(await db.iterator().all(), before, 'the database is byte-for-byte unchanged')
})

t.test('move: the subtree follows, uids stay, old paths are gone', async (t) => {
  const { db, tree } = await openTree(t)
  t.teardown(() => db.close())
  await build(tree)
  const oldSubtree = await tree.walk(ACME)
  const moved = await tree.move(ACME, 'dist-1/mgr-1/msp-2')
  const NEW = 'dist-1/mgr-1/msp-2/acme'
  t.equal(moved.path, NEW)
  const newSubtree = await tree.walk(NEW)
  t.same(newSubtree.map((n) => n.uid), oldSubtree.map((n) => n.uid), 'same nodes, same uids')
  t.same(newSubtree.map((n) => n.path), oldSubtree.map((n) => n.path.replace(ACME, NEW)))
  for (const n of oldSubtree) {
    t.equal(await tree.find(n.path), undefined, `${n.path} is gone`)
    t.equal(await tree.uidOf(n.path), undefined)
  }
  t.equal(await codeOf(tree.get(`${ACME}/sales`)), 'NOT_FOUND')
  const pc1 = await tree.get(`${NEW}/sales/emea/pc-1`)
  t.equal((await tree.getByUid(pc1.uid))!.path, pc1.path, 'uid → new path')
  t.same(pc1.history.at(-1), { at: pc1.updatedAt, op: 'move', path: pc1.path, from: `${ACME}/sales/emea/pc-1` })
  t.same((await tree.listChildren('dist-1/mgr-1/msp-1')).map((n) => n.name), ['managed-1'])
  t.same((await tree.listChildren('dist-1/mgr-1/msp-2')).map((n) => n.name), ['acme'])
  await tree.create({ parent: `${NEW}/sales`, name: 'apac', kind: 'group' })
  t.ok(await tree.find(`${NEW}/sales/apac`), 'the new path works for new children')
  // a customer into a managed MSP is fine, and moving to where it already is does nothing
  await tree.move(NEW, 'dist-1/mgr-1/msp-1/managed-1')
  const again = await tree.get('dist-1/mgr-1/msp-1/managed-1/acme')
  t.same(await tree.move(again.path, 'dist-1/mgr-1/msp-1/managed-1'), again)
  // a group can move between groups and customers
  await tree.move(`${again.path}/sales/emea`, again.path)
  t.ok(await tree.find(`${again.path}/emea/pc-1`))
})

t.test('move refusals leave everything as it was', async (t) => {
  const { db, tree } = await openTree(t)
  t.teardown(() => db.close())
  await build(tree)
  await tree.create({ parent: 'dist-1/mgr-1/msp-2', name: 'acme', kind: 'customer' })
  // a chain of groups that would be too deep after the move
  let p = `${ACME}/sales/emea`
  for (let i = 0; i < 10; i++) { await tree.create({ parent: p, name: `g${i}`, kind: 'group' }); p += `/g${i}` }
  t.equal(p.split('/').length, 16, 'at the maximum depth')
  const before = await db.iterator().all()
  t.equal(await codeOf(tree.move(ACME, `${ACME}/sales`)), 'BAD_ARGUMENT', 'under its own descendant')
  t.equal(await codeOf(tree.move(`${ACME}/sales`, `${ACME}/sales`)), 'BAD_ARGUMENT', 'under itself')
  t.equal(await codeOf(tree.move(ACME, `${ACME}/sales`)), 'BAD_ARGUMENT')
  t.equal(await codeOf(tree.move(ACME, 'dist-1')), 'BAD_ARGUMENT', 'a customer under a distributor')
  t.equal(await codeOf(tree.move(`${ACME}/sales`, 'dist-1/mgr-1/msp-1')), 'BAD_ARGUMENT', 'a group under an msp')
  t.equal(await codeOf(tree.move(ACME, 'dist-1/mgr-1/msp-2')), 'ALREADY_EXISTS', 'name taken at the destination')
  t.equal(await codeOf(tree.move(ACME, 'dist-1/nope')), 'NOT_FOUND')
  t.equal(await codeOf(tree.move('dist-1/nope', 'dist-1')), 'NOT_FOUND')
  t.equal(await codeOf(tree.move('', 'dist-1')), 'BAD_ARGUMENT')
  // the deepest node would land at depth 17: refused after the ops were being built, nothing written
  t.equal(await codeOf(tree.move(ACME, 'dist-1/mgr-1/msp-1/managed-1')), 'UNSAFE_PATH', 'too deep after the move')
  // a batch that LevelDB itself refuses: the change and the extra op go together or not at all
  const other = sublevel(db, 'other')
  t.equal(await codeOf(tree.move(`${ACME}/pc-0`, `${ACME}/sales`, { extra: () => [{ type: 'put', sublevel: other, key: undefined as unknown as string, value: 1 }] })), 'LEVEL_INVALID_KEY')
  t.same(await db.iterator().all(), before, 'nothing half-applied')
  t.ok(await tree.find(`${ACME}/pc-0`))
})

t.test('rename and status', async (t) => {
  const { db, tree } = await openTree(t)
  t.teardown(() => db.close())
  await build(tree)
  const before = await tree.get(ACME)
  const renamed = await tree.rename(ACME, 'Acme Corp')
  t.equal(renamed.displayName, 'Acme Corp')
  t.equal(renamed.path, ACME, 'renaming changes the display name, not the path')
  t.equal(renamed.uid, before.uid)
  t.ok(renamed.updatedAt > before.updatedAt)
  const setUp = await tree.setStatus(ACME, 'set-up')
  t.equal(setUp.status, 'set-up')
  t.same(setUp.history.map((h) => h.op), ['create', 'rename', 'status'])
  t.equal(await codeOf(tree.rename(ACME, '')), 'BAD_ARGUMENT')
  t.equal(await codeOf(tree.rename(ACME, 'x'.repeat(201))), 'BAD_ARGUMENT')
})

t.test('remove hides the subtree by default and keeps its history', async (t) => {
  const { db, tree } = await openTree(t)
  t.teardown(() => db.close())
  await build(tree)
  const sales = await tree.get(`${ACME}/sales`)
  await tree.remove(`${ACME}/sales`)
  t.equal(await tree.find(`${ACME}/sales`), undefined)
  t.equal(await tree.find(`${ACME}/sales/emea/pc-1`), undefined, 'descendants are removed too')
  t.same((await tree.walk(ACME)).map((n) => n.name), ['acme', 'pc-0'])
  t.same((await tree.listChildren(ACME)).map((n) => n.name), ['pc-0'])
  t.equal(await codeOf(tree.get(`${ACME}/sales`)), 'NOT_FOUND')
  const kept = await tree.get(`${ACME}/sales`, { includeRemoved: true })
  t.equal(kept.uid, sales.uid)
  t.equal(kept.removed, true)
  t.equal(kept.removedAt, kept.updatedAt)
  t.same(kept.history.map((h) => h.op), ['create', 'remove'])
  t.same((await tree.walk(ACME, { includeRemoved: true })).length, 5)
  t.same((await tree.listChildren(ACME, { includeRemoved: true })).map((n) => n.name), ['pc-0', 'sales'])
  t.equal(await codeOf(tree.create({ parent: ACME, name: 'sales', kind: 'group' })), 'ALREADY_EXISTS', 'the path stays reserved')
  t.equal(await codeOf(tree.create({ parent: `${ACME}/sales`, name: 'x', kind: 'group' })), 'NOT_FOUND', 'no children under a removed node')
  t.equal(await codeOf(tree.rename(`${ACME}/sales`, 'X')), 'NOT_FOUND')
  t.equal(await codeOf(tree.move(`${ACME}/sales`, ACME)), 'NOT_FOUND')
  t.equal(await codeOf(tree.remove(`${ACME}/sales`)), 'NOT_FOUND')
  const customer = await tree.remove(ACME)
  t.equal(customer.status, 'removed', 'a removed customer has status removed')
  const emea = await tree.get(`${ACME}/sales/emea`, { includeRemoved: true })
  t.same(emea.history.map((h) => h.op), ['create', 'remove'], 'already-removed descendants are not removed twice')
})

t.test('persists across close and reopen', async (t) => {
  const location = path.join(t.testdir(), 'db')
  const first = await openTree(t, location)
  await build(first.tree)
  await first.tree.move(ACME, 'dist-1/mgr-1/msp-2')
  await first.tree.remove('dist-1/mgr-1/msp-1/managed-1/beta')
  const all = await first.tree.walk('', { includeRemoved: true })
  await first.db.close()
  const second = await openTree(t, location)
  t.teardown(() => second.db.close())
  t.same(await second.tree.walk('', { includeRemoved: true }), all)
  t.ok(await second.tree.find('dist-1/mgr-1/msp-2/acme/sales/emea/pc-1'))
  t.equal(await second.tree.find('dist-1/mgr-1/msp-1/managed-1/beta'), undefined)
})

t.test('concurrent creates of one name: exactly one wins', async (t) => {
  const { db, tree } = await openTree(t)
  t.teardown(() => db.close())
  await build(tree)
  const results = await Promise.allSettled(Array.from({ length: 5 }, () => tree.create({ parent: ACME, name: 'dup', kind: 'group' })))
  t.equal(results.filter((r) => r.status === 'fulfilled').length, 1)
  t.equal((await tree.listChildren(ACME)).filter((n) => n.name === 'dup').length, 1)
})
