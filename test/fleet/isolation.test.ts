// Isolation through the Fleet facade: two customers under one MSP, an admin scoped to each.
import t, { type Test } from 'tap'
import { Fleet, type TenantNode } from '../../lib/fleet/index.js'
import { isWithinTenant } from '../../lib/trust/fields.js'
import { codeOf, openFleet, sshKey } from './helpers.js'

const MSP = 'msp-1'
const A = 'msp-1/customer-a'
const B = 'msp-1/customer-b'
const TRAP = 'msp-1/cust' // a prefix of both customers' paths, as a string but not as segments

async function setup (t: Test) {
  const fleet = await openFleet(t)
  await fleet.bootstrapOwner({ id: 'root', sshKey: sshKey() })
  await fleet.createTenant('root', { parent: '', name: 'msp-1', kind: 'msp' })
  await fleet.createTenant('root', { parent: '', name: 'msp-2', kind: 'msp' })
  for (const c of ['customer-a', 'customer-b', 'cust']) {
    await fleet.createTenant('root', { parent: MSP, name: c, kind: 'customer' })
    await fleet.createTenant('root', { parent: `${MSP}/${c}`, name: 'grp', kind: 'group' })
    await fleet.createTenant('root', { parent: `${MSP}/${c}/grp`, name: 'pc-1', kind: 'endpoint' })
  }
  await fleet.createAdmin('root', { id: 'mia', sshKey: sshKey(), bindings: [{ role: 'owner', scope: MSP }] })
  await fleet.createAdmin('mia', { id: 'alice', sshKey: sshKey(), bindings: [{ role: 'owner', scope: A }] })
  await fleet.createAdmin('mia', { id: 'bob', sshKey: sshKey(), totpSecret: 'JBSWY3DPEHPK3PXPJBSWY3DP', bindings: [{ role: 'owner', scope: B }] })
  await fleet.createAdmin('mia', { id: 'vic', sshKey: sshKey(), bindings: [{ role: 'viewer', scope: A }] })
  await fleet.createAdmin('mia', { id: 'carl', sshKey: sshKey(), bindings: [{ role: 'owner', scope: TRAP }] })
  return fleet
}

const paths = (nodes: TenantNode[]) => nodes.map((n) => n.path)

type Call = (f: Fleet, actor: string) => Promise<unknown>
// Every public Fleet method, called as customer A's admin on customer B's objects. A method that
// returns a list has a `list` check instead (its result must not contain B's data).
const ON_B: Record<string, { forbidden?: Call[], list?: Array<(f: Fleet, actor: string) => Promise<string[]>> }> = {
  createTenant: { forbidden: [(f, a) => f.createTenant(a, { parent: B, name: 'x', kind: 'group' }), (f, a) => f.createTenant(a, { parent: `${B}/grp`, name: 'pc-9', kind: 'endpoint' })] },
  getTenant: { forbidden: [(f, a) => f.getTenant(a, B), (f, a) => f.getTenant(a, `${B}/grp/pc-1`), (f, a) => f.getTenant(a, `${B}/nope`), (f, a) => f.getTenant(a, B, { includeRemoved: true })] },
  listChildren: {
    forbidden: [(f, a) => f.listChildren(a, B), (f, a) => f.listChildren(a, `${B}/grp`)],
    list: [async (f, a) => paths(await f.listChildren(a, MSP)), async (f, a) => paths(await f.listChildren(a, A))]
  },
  walk: {
    forbidden: [(f, a) => f.walk(a, B), (f, a) => f.walk(a, `${B}/grp`)],
    list: [async (f, a) => paths(await f.walk(a, '')), async (f, a) => paths(await f.walk(a, MSP, { includeRemoved: true }))]
  },
  renameTenant: { forbidden: [(f, a) => f.renameTenant(a, B, 'pwned'), (f, a) => f.renameTenant(a, `${B}/grp`, 'pwned')] },
  setCustomerStatus: { forbidden: [(f, a) => f.setCustomerStatus(a, B, 'set-up')] },
  moveTenant: {
    forbidden: [
      (f, a) => f.moveTenant(a, `${B}/grp`, A), // take from B
      (f, a) => f.moveTenant(a, `${A}/grp`, B), // push into B
      (f, a) => f.moveTenant(a, B, 'msp-2')
    ]
  },
  removeTenant: { forbidden: [(f, a) => f.removeTenant(a, B), (f, a) => f.removeTenant(a, `${B}/grp`)] },
  createAdmin: { forbidden: [(f, a) => f.createAdmin(a, { id: 'evil', sshKey: sshKey(), bindings: [{ role: 'owner', scope: B }] }), (f, a) => f.createAdmin(a, { id: 'evil', sshKey: sshKey(), bindings: [{ role: 'owner', scope: A }, { role: 'viewer', scope: B }] })] },
  getAdmin: { forbidden: [(f, a) => f.getAdmin(a, 'bob'), (f, a) => f.getAdmin(a, 'mia'), (f, a) => f.getAdmin(a, 'nobody')] },
  listAdmins: { list: [async (f, a) => (await f.listAdmins(a)).flatMap((x) => x.bindings.map((b) => b.scope))] },
  grantRole: { forbidden: [(f, a) => f.grantRole(a, 'bob', { role: 'viewer', scope: B }), (f, a) => f.grantRole(a, a, { role: 'owner', scope: B }), (f, a) => f.grantRole(a, a, { role: 'owner', scope: MSP })] },
  revokeRole: { forbidden: [(f, a) => f.revokeRole(a, 'bob', { role: 'owner', scope: B })] },
  setAdminSshKey: { forbidden: [(f, a) => f.setAdminSshKey(a, 'bob', sshKey('mine'))] },
  setAdminTotpSecret: { forbidden: [(f, a) => f.setAdminTotpSecret(a, 'bob', null), (f, a) => f.setAdminTotpSecret(a, 'bob', 'JBSWY3DPEHPK3PXP')] },
  removeAdmin: { forbidden: [(f, a) => f.removeAdmin(a, 'bob')] },
  listAudit: { list: [async (f, a) => (await f.listAudit(a)).flatMap((e) => e.tenants)] }
}
// Methods not called on behalf of an admin.
const NOT_SCOPED = ['ready', 'close', 'bootstrapOwner']

t.test('the table covers every public Fleet method', async (t) => {
  const methods = Object.getOwnPropertyNames(Fleet.prototype).filter((n) => n !== 'constructor').sort()
  t.same(methods, [...Object.keys(ON_B), ...NOT_SCOPED].sort(), 'add new Fleet methods to ON_B (or NOT_SCOPED)')
})

t.test("customer A's admin gets FORBIDDEN on every method for B's objects, and lists never show B", async (t) => {
  const fleet = await setup(t)
  const seeB = async () => ({ nodes: await fleet.walk('mia', B, { includeRemoved: true }), bob: await fleet.getAdmin('mia', 'bob') })
  const before = await seeB()
  for (const [method, { forbidden = [], list = [] }] of Object.entries(ON_B)) {
    for (const [i, call] of forbidden.entries()) {
      const seq = (await fleet.audit.list({ reverse: true, limit: 1 }))[0]!.seq
      t.equal(await codeOf(call(fleet, 'alice')), 'FORBIDDEN', `${method} #${i}`)
      const entries = await fleet.audit.list({ from: seq + 1 })
      t.equal(entries.length, 1, `${method} #${i}: one audit entry`)
      t.match(entries[0], { admin: 'alice', result: 'FORBIDDEN' })
    }
    for (const [i, call] of list.entries()) {
      const seen = await call(fleet, 'alice')
      t.ok(seen.length > 0, `${method} list #${i} shows A's data`)
      t.same(seen.filter((p) => !isWithinTenant(p, A)), [], `${method} list #${i} shows nothing outside A (not B, not the trap, not the MSP)`)
    }
  }
  t.same(await fleet.listChildren('alice', ''), [], 'the top level holds nothing of its own')
  t.same(await seeB(), before, "B's tree and admin are untouched")
  t.equal((await fleet.admins.find('evil')), undefined)
})

t.test('an MSP-level admin sees both customers; org-level admins are out of its reach', async (t) => {
  const fleet = await setup(t)
  const all = paths(await fleet.walk('mia', MSP))
  t.ok(all.includes(`${A}/grp/pc-1`) && all.includes(`${B}/grp/pc-1`))
  t.same(paths(await fleet.walk('mia', '')), all, 'walking from the top shows just its subtree')
  t.same((await fleet.listAdmins('mia')).map((a) => a.id).sort(), ['alice', 'bob', 'carl', 'mia', 'vic'])
  t.equal((await fleet.getAdmin('mia', 'bob')).hasTotp, true)
  t.notOk('totpSecret' in (await fleet.getAdmin('mia', 'bob')), 'the TOTP secret never leaves through the API')
  t.equal(await codeOf(fleet.getAdmin('mia', 'root')), 'FORBIDDEN')
  t.equal((await fleet.getAdmin('mia', 'mia')).id, 'mia', 'its own binding lies within its scope')
  t.equal(await codeOf(fleet.getAdmin('mia', 'nobody')), 'FORBIDDEN', 'unknown admins are not revealed below the top')
  t.equal(await codeOf(fleet.getAdmin('root', 'nobody')), 'NOT_FOUND')
  await fleet.renameTenant('mia', B, 'Customer B Ltd')
  t.equal(await codeOf(fleet.moveTenant('mia', `${A}/grp`, B)), 'ALREADY_EXISTS', 'B has a grp already')
  await fleet.createTenant('mia', { parent: `${A}/grp`, name: 'pc-2', kind: 'endpoint' })
  await fleet.moveTenant('mia', `${A}/grp/pc-2`, `${B}/grp`)
  t.equal((await fleet.getTenant('bob', `${B}/grp/pc-2`)).kind, 'endpoint', 'between customers, within its scope')
})

t.test('a viewer reads but cannot write', async (t) => {
  const fleet = await setup(t)
  t.equal((await fleet.getTenant('vic', A)).path, A)
  t.ok((await fleet.walk('vic', A)).length === 3)
  t.ok((await fleet.listAudit('vic')).length > 0)
  const writes: Array<[string, () => Promise<unknown>]> = [
    ['createTenant', () => fleet.createTenant('vic', { parent: A, name: 'x', kind: 'group' })],
    ['renameTenant', () => fleet.renameTenant('vic', A, 'x')],
    ['setCustomerStatus', () => fleet.setCustomerStatus('vic', A, 'set-up')],
    ['moveTenant', () => fleet.moveTenant('vic', `${A}/grp/pc-1`, A)],
    ['removeTenant', () => fleet.removeTenant('vic', `${A}/grp`)],
    ['createAdmin', () => fleet.createAdmin('vic', { id: 'x', sshKey: sshKey(), bindings: [{ role: 'viewer', scope: A }] })],
    ['listAdmins', () => fleet.listAdmins('vic')],
    ['grantRole', () => fleet.grantRole('vic', 'vic', { role: 'owner', scope: A })],
    ['setAdminSshKey', () => fleet.setAdminSshKey('vic', 'vic', sshKey())]
  ]
  for (const [what, f] of writes) t.equal(await codeOf(f()), 'FORBIDDEN', what)
  t.equal((await fleet.getTenant('vic', A)).displayName, 'customer-a')
})

t.test("the prefix trap: 'msp-1/cust' does not cover 'msp-1/customer-a'", async (t) => {
  const fleet = await setup(t)
  t.equal(await codeOf(fleet.getTenant('carl', A)), 'FORBIDDEN')
  t.equal(await codeOf(fleet.renameTenant('carl', A, 'x')), 'FORBIDDEN')
  t.same(paths(await fleet.walk('carl', MSP)), [TRAP, `${TRAP}/grp`, `${TRAP}/grp/pc-1`])
  t.same(paths(await fleet.listChildren('carl', MSP)), [TRAP])
  t.equal(await codeOf(fleet.getTenant('alice', TRAP)), 'FORBIDDEN')
  t.equal(await codeOf(fleet.getAdmin('carl', 'alice')), 'FORBIDDEN')
  t.same(paths(await fleet.walk('alice', MSP)), [A, `${A}/grp`, `${A}/grp/pc-1`])
})

t.test('what a customer admin may do inside its own scope, and the edges of it', async (t) => {
  const fleet = await setup(t)
  await fleet.createTenant('alice', { parent: A, name: 'sales', kind: 'group' })
  await fleet.moveTenant('alice', `${A}/grp/pc-1`, `${A}/sales`)
  await fleet.renameTenant('alice', A, 'Customer A')
  await fleet.setCustomerStatus('alice', A, 'set-up')
  await fleet.createAdmin('alice', { id: 'ann', sshKey: sshKey(), bindings: [{ role: 'operator', scope: `${A}/sales` }] })
  await fleet.grantRole('alice', 'ann', { role: 'viewer', scope: A })
  await fleet.revokeRole('alice', 'ann', { role: 'viewer', scope: A })
  await fleet.setAdminTotpSecret('alice', 'ann', 'jbsw y3dp ehpk 3pxp')
  t.same((await fleet.getAdmin('alice', 'ann')).bindings, [{ role: 'operator', scope: `${A}/sales` }])
  t.same((await fleet.listAdmins('alice')).map((a) => a.id), ['alice', 'ann', 'vic'])
  t.equal(await codeOf(fleet.removeTenant('alice', A)), 'FORBIDDEN', 'cannot remove the node its scope is')
  t.equal(await codeOf(fleet.moveTenant('alice', A, 'msp-2')), 'FORBIDDEN', 'cannot move it either')
  t.equal(await codeOf(fleet.createTenant('ann', { parent: A, name: 'x', kind: 'group' })), 'FORBIDDEN', 'operator on sales only')
  await fleet.createTenant('ann', { parent: `${A}/sales`, name: 'x', kind: 'group' })
  await fleet.removeAdmin('alice', 'ann')
  t.equal(await codeOf(fleet.getAdmin('alice', 'ann')), 'FORBIDDEN')
})

t.test('bindings follow their node when it moves', async (t) => {
  const fleet = await setup(t)
  await fleet.moveTenant('root', A, 'msp-2')
  const moved = 'msp-2/customer-a'
  t.equal((await fleet.getTenant('alice', moved)).path, moved, "A's admin follows the customer")
  t.same((await fleet.getAdmin('root', 'alice')).bindings, [{ role: 'owner', scope: moved }])
  t.equal(await codeOf(fleet.getTenant('mia', moved)), 'FORBIDDEN', 'the old MSP admin lost it')
  t.equal(await codeOf(fleet.getTenant('alice', A)), 'FORBIDDEN', 'the old path is not in scope any more')
  t.equal(await codeOf(fleet.getAdmin('mia', 'alice')), 'FORBIDDEN')
  t.equal(await codeOf(fleet.bootstrapOwner({ id: 'again', sshKey: sshKey() })), 'ALREADY_EXISTS')
})
