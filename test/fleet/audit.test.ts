import t from 'tap'
import path from 'node:path'
import { Fleet, assertSshPublicKey, assertTotpSecret, can, type AuditEntry } from '../../lib/fleet/index.js'
import { codeOf, openFleet, sshKey, steppingClock } from './helpers.js'

const A = 'msp-1/customer-a'
const B = 'msp-1/customer-b'

async function setup (fleet: Fleet) {
  await fleet.bootstrapOwner({ id: 'root', sshKey: sshKey() })
  await fleet.createTenant('root', { parent: '', name: 'msp-1', kind: 'msp' })
  await fleet.createTenant('root', { parent: 'msp-1', name: 'customer-a', kind: 'customer' })
  await fleet.createTenant('root', { parent: 'msp-1', name: 'customer-b', kind: 'customer' })
  await fleet.createAdmin('root', { id: 'mia', sshKey: sshKey(), bindings: [{ role: 'owner', scope: 'msp-1' }] })
  await fleet.createAdmin('root', { id: 'alice', sshKey: sshKey(), bindings: [{ role: 'owner', scope: A }] })
  await fleet.createAdmin('root', { id: 'bob', sshKey: sshKey(), bindings: [{ role: 'owner', scope: B }] })
}

t.test('every call, allowed or refused, writes exactly one entry with its result', async (t) => {
  const fleet = await openFleet(t)
  await setup(fleet)
  const calls: Array<[string, () => Promise<unknown>, string, string]> = [
    ['create ok', () => fleet.createTenant('alice', { parent: A, name: 'g', kind: 'group' }), 'tenant.create', 'ok'],
    ['create duplicate', () => fleet.createTenant('alice', { parent: A, name: 'g', kind: 'group' }), 'tenant.create', 'ALREADY_EXISTS'],
    ['create bad kind', () => fleet.createTenant('alice', { parent: A, name: 'h', kind: 'msp' }), 'tenant.create', 'BAD_ARGUMENT'],
    ['create unsafe', () => fleet.createTenant('alice', { parent: A, name: '../x', kind: 'group' }), 'tenant.create', 'UNSAFE_PATH'],
    ['create in B', () => fleet.createTenant('alice', { parent: B, name: 'g', kind: 'group' }), 'tenant.create', 'FORBIDDEN'],
    ['get ok', () => fleet.getTenant('alice', `${A}/g`), 'tenant.get', 'ok'],
    ['get missing', () => fleet.getTenant('alice', `${A}/nope`), 'tenant.get', 'NOT_FOUND'],
    ['get unsafe', () => fleet.getTenant('alice', `${A}/..`), 'tenant.get', 'UNSAFE_PATH'],
    ['walk', () => fleet.walk('alice', A), 'tenant.walk', 'ok'],
    ['rename', () => fleet.renameTenant('alice', A, 'A'), 'tenant.rename', 'ok'],
    ['remove', () => fleet.removeTenant('alice', `${A}/g`), 'tenant.remove', 'ok'],
    ['unknown actor', () => fleet.getTenant('ghost', A), 'tenant.get', 'FORBIDDEN'],
    ['grant ok', () => fleet.grantRole('mia', 'alice', { role: 'viewer', scope: B }), 'admin.grant', 'ok'],
    ['bad ssh key', () => fleet.setAdminSshKey('root', 'bob', 'ssh-ed25519 AAAA'), 'admin.set-ssh-key', 'BAD_ARGUMENT'],
    ['list audit', () => fleet.listAudit('bob'), 'audit.list', 'ok']
  ]
  for (const [what, call, action, result] of calls) {
    const before = await fleet.audit.list()
    const err = await codeOf(call())
    t.equal(err ?? 'ok', result, what)
    const after = await fleet.audit.list()
    t.equal(after.length, before.length + 1, `${what}: one entry`)
    const last = after.at(-1)!
    t.match(last, { action, result }, what)
    t.ok(last.seq > before.at(-1)!.seq, 'seq increases')
  }
  const ghost = (await fleet.audit.list()).find((e) => e.admin === 'ghost')
  t.match(ghost, { action: 'tenant.get', target: A, tenants: [A], result: 'FORBIDDEN' })
})

t.test('the audit listing is filtered by scope', async (t) => {
  const fleet = await openFleet(t)
  await setup(fleet)
  await fleet.createTenant('alice', { parent: A, name: 'g', kind: 'group' })
  await fleet.createTenant('bob', { parent: B, name: 'g', kind: 'group' })
  await codeOf(fleet.renameTenant('alice', B, 'pwned')) // refused; visible to B's side, not to alice
  const within = (entries: AuditEntry[], scope: string) => entries.every((e) => e.tenants.length > 0 && e.tenants.every((p) => p === scope || p.startsWith(scope + '/')))
  const alice = await fleet.listAudit('alice')
  t.ok(within(alice, A), "alice sees only A's entries")
  t.ok(alice.some((e) => e.action === 'tenant.create' && e.admin === 'alice'))
  const bob = await fleet.listAudit('bob')
  t.ok(within(bob, B))
  t.ok(bob.some((e) => e.admin === 'alice' && e.result === 'FORBIDDEN'), "bob sees alice's refused attempt on B")
  const mia = await fleet.listAudit('mia')
  t.ok(within(mia, 'msp-1'))
  t.ok(mia.some((e) => e.tenants.includes(`${A}`)) && mia.some((e) => e.tenants.includes(`${B}`)), 'the MSP admin sees both')
  const all = await fleet.listAudit('root')
  t.ok(all.some((e) => e.action === 'admin.bootstrap'), 'organisation-level entries only at the top')
  t.notOk(mia.some((e) => e.action === 'admin.bootstrap'))
  // ranges
  const first = all[0]!.seq
  t.same((await fleet.listAudit('root', { from: first + 2, to: first + 4 })).map((e) => e.seq), [first + 2, first + 3, first + 4])
  t.same((await fleet.listAudit('root', { reverse: true, limit: 2 })).map((e) => e.seq), [all.at(-1)!.seq + 2, all.at(-1)!.seq + 1], 'newest first; listings are audited too')
  t.equal((await fleet.listAudit('alice', { limit: 1 })).length, 1)
  t.equal(await codeOf(fleet.listAudit('ghost')), 'FORBIDDEN')
})

t.test('seq keeps increasing across close and reopen', async (t) => {
  const dir = path.join(t.testdir(), 'db')
  const fleet = await Fleet.open(dir, { clock: steppingClock() })
  await setup(fleet)
  const last = (await fleet.audit.list({ reverse: true, limit: 1 }))[0]!
  await fleet.close()
  await fleet.close() // idempotent
  const again = await Fleet.open(dir, { clock: steppingClock(Date.parse('2031-01-01T00:00:00Z')) })
  t.teardown(() => again.close())
  const node = await again.createTenant('root', { parent: A, name: 'g', kind: 'group' })
  const entry = (await again.audit.list({ reverse: true, limit: 1 }))[0]!
  t.equal(entry.seq, last.seq + 1)
  t.match(entry, { admin: 'root', action: 'tenant.create', target: `${A}/g`, tenants: [A], result: 'ok' })
  t.ok(entry.at > node.createdAt && entry.at.startsWith('2031-'), 'the injected clock')
})

t.test('admin credentials: form checks only', async (t) => {
  t.equal(assertSshPublicKey(`  ${sshKey('a b c')}  `).startsWith('ssh-ed25519 '), true)
  for (const bad of ['', 'ssh-ed25519', 'ssh-dss AAAA', 'ssh-ed25519 !!!', `ssh-rsa ${sshKey().split(' ')[1]}`, `${sshKey()}\nssh-ed25519 AAAA`, 42]) {
    t.throws(() => assertSshPublicKey(bad), { code: 'BAD_ARGUMENT' }, JSON.stringify(bad).slice(0, 30))
  }
  t.equal(assertTotpSecret('jbsw y3dp ehpk 3pxp'), 'JBSWY3DPEHPK3PXP')
  for (const bad of ['JBSWY3DP', 'JBSWY3DPEHPK3PX1', '', null]) t.throws(() => assertTotpSecret(bad), { code: 'BAD_ARGUMENT' })
  const fleet = await openFleet(t)
  await setup(fleet)
  t.equal(await codeOf(fleet.createAdmin('root', { id: 'x', sshKey: sshKey(), bindings: [{ role: 'root' as 'owner', scope: A }] })), 'BAD_ARGUMENT')
  t.equal(await codeOf(fleet.createAdmin('root', { id: 'x', sshKey: sshKey(), bindings: [{ role: 'owner', scope: 'msp-1/nope' }] })), 'NOT_FOUND')
  t.equal(await codeOf(fleet.createAdmin('root', { id: 'a/b', sshKey: sshKey() })), 'UNSAFE_PATH')
  t.equal(await codeOf(fleet.createAdmin('root', { id: 'alice', sshKey: sshKey() })), 'ALREADY_EXISTS')
  t.ok(can({ id: 'p', bindings: [{ role: 'operator', scope: A }] }, 'tenant.write', `${A}/x`))
  t.notOk(can({ id: 'p', bindings: [{ role: 'operator', scope: A }] }, 'admin.manage', A))
  t.notOk(can({ id: 'p', bindings: [{ role: 'owner', scope: 'msp-1/cust' }] }, 'tenant.read', A), 'segment-wise')
})
