import t, { type Test } from 'tap'
import path from 'node:path'
import { openDatabase, sublevel, type Database } from '../../lib/store/db.js'
import { canonicalBytes } from '../../lib/crypto/canonical.js'
import { generateKeyPair, keySigner, type KeyPair } from '../../lib/crypto/keys.js'
import { envelopeHash, serializeEnvelope, signEnvelope, verifyCertificate, newRoot, type Envelope } from '../../lib/trust/index.js'
import { TenantTree } from '../../lib/fleet/tenants.js'
import { EndpointStore } from '../../lib/fleet/endpoints.js'
import {
  Enrollment, decodeToken, encodeToken, newEnrollmentRequest, TOKEN_PREFIX,
  type CreateTokenInput, type EnrollmentRequest, type EnrollmentOptions
} from '../../lib/fleet/enrollment.js'
import { codeOf } from './helpers.js'
import { TestClock, T0, DAY, LATER, baseRoot, signedRoot, key, keys, rejects } from '../trust/helpers.js'

const CUST = 'msp-1/customer-a'
const SALES = `${CUST}/sales`
const consoleSigner = keys.console[0]!
const swarmKey = key(50).keyid
const root = baseRoot()
const HOUR = 60 * 60 * 1000

async function setup (t: Test, opts: Partial<EnrollmentOptions> = {}) {
  const db = await openDatabase(path.join(t.testdir(), 'db'))
  t.teardown(() => db.close())
  const clock = new TestClock()
  const now = () => clock.now()
  const tree = new TenantTree(db, { clock: now })
  const endpoints = new EndpointStore(db, { tree, clock: now })
  const rootEnvelope = await signedRoot(root)
  const enrollment = new Enrollment(db, { org: 'acme', tree, endpoints, consoleSigner, root: () => rootEnvelope, consoleKey: swarmKey, clock: now, ...opts })
  await tree.create({ parent: '', name: 'msp-1', kind: 'msp' })
  await tree.create({ parent: 'msp-1', name: 'customer-a', kind: 'customer' })
  await tree.create({ parent: 'msp-1', name: 'customer-b', kind: 'customer' })
  await tree.create({ parent: CUST, name: 'sales', kind: 'group' })
  // Each token a second after the last, so that listings (oldest first) have one order.
  const token = (over: Partial<CreateTokenInput> = {}) => {
    clock.advance(1000)
    return enrollment.createToken({ scope: SALES, expiresAt: new Date(T0.getTime() + DAY), maxUses: 10, autoApprove: false, ...over })
  }
  return { db, clock, tree, endpoints, enrollment, rootEnvelope, token }
}

let seed = 100
/** A fresh endpoint key each call (deterministic across runs). */
function endpointKey (): KeyPair {
  return generateKeyPair(Buffer.alloc(32, seed++))
}

function request (token: string, kp: KeyPair, over: { hostname?: string, at?: Date } = {}) {
  return newEnrollmentRequest({ token, signer: keySigner(kp), hostname: over.hostname ?? 'pc-1', platform: 'linux-x64', at: over.at ?? T0 })
}

async function dump (db: Database) {
  return db.iterator().all()
}

t.test('the token carries the organisation, the root to pin and the console, and its secret only once', async (t) => {
  const { db, enrollment, rootEnvelope, token } = await setup(t)
  const { token: str, record } = await token({ site: 'berlin', note: 'office laptops' })
  t.ok(str.startsWith(TOKEN_PREFIX))
  const payload = decodeToken(str)
  t.same(payload, { org: 'acme', id: record.id, secret: payload.secret, root: envelopeHash(rootEnvelope), console: swarmKey })
  t.equal(encodeToken(payload), str, 'one encoding')
  t.same({ ...record, createdAt: undefined, updatedAt: undefined, scopeUid: undefined }, {
    id: payload.id, scope: SALES, site: 'berlin', expiresAt: new Date(T0.getTime() + DAY).toISOString(), maxUses: 10, uses: 0,
    autoApprove: false, note: 'office laptops', state: 'active', createdAt: undefined, updatedAt: undefined, scopeUid: undefined
  })
  const stored = JSON.stringify(await dump(db))
  t.notOk(stored.includes(payload.secret), 'the secret is not stored')
  t.ok(stored.includes(record.id))
  t.same(await enrollment.getToken(record.id), record)
  t.notOk('secretHash' in await enrollment.getToken(record.id), 'the hash is not shown either')
})

t.test('auto-approve: the endpoint is approved at once with a certificate the root verifies', async (t) => {
  const { enrollment, endpoints, clock, token } = await setup(t)
  const { token: str, record } = await token({ autoApprove: true, site: 'berlin' })
  const kp = endpointKey()
  clock.advance(HOUR)
  // The request may arrive as bytes, as it will over the wire.
  const result = await enrollment.enroll(serializeEnvelope(await request(str, kp, { hostname: 'laptop-7', at: clock.now() })))
  t.equal(result.status, 'approved')
  const certificate = result.certificate!
  const id = verifyCertificate(root, certificate, { now: new Date(clock.now().getTime() + 364 * DAY), remotePublicKey: kp.publicKey })
  t.same(id, { keyid: kp.publicKey.toString('hex'), org: 'acme', tenant: SALES, site: 'berlin', role: 'endpoint' })
  t.equal(certificate.signed.expires, new Date(clock.now().getTime() + 365 * DAY).toISOString(), 'certificateDays defaults to 365')
  t.throws(() => verifyCertificate(root, certificate, { now: clock.now(), remotePublicKey: endpointKey().publicKey }), { code: 'WRONG_HOLDER' })

  const ep = await endpoints.get(kp.publicKey.toString('hex'))
  t.match(ep, { status: 'approved', path: `${SALES}/laptop-7`, tenant: SALES, site: 'berlin', hostname: 'laptop-7', platform: 'linux-x64', token: record.id })
  t.same(ep.certificate, certificate)
  t.equal(ep.approvedAt, clock.now().toISOString())
  t.equal((await enrollment.getToken(record.id)).uses, 1)
})

t.test('quarantine, then approve: certificate for the tenant as it is then; renewal follows moves', async (t) => {
  const { enrollment, endpoints, tree, clock, token } = await setup(t, { certificateDays: 30 })
  const { token: str } = await token()
  const kp = endpointKey()
  const keyid = kp.publicKey.toString('hex')
  t.same(await enrollment.enroll(await request(str, kp)), { status: 'quarantine' })
  const waiting = await endpoints.get(keyid)
  t.equal(waiting.status, 'quarantine')
  t.equal(waiting.certificate, undefined)
  t.same((await endpoints.list({ under: CUST, status: 'quarantine' })).map((e) => e.keyid), [keyid])

  await tree.move(SALES, 'msp-1/customer-b')
  clock.advance(HOUR)
  const approved = await enrollment.approve(keyid)
  t.equal(approved.status, 'approved')
  t.equal(approved.tenant, 'msp-1/customer-b/sales')
  const first = verifyCertificate(root, approved.certificate!, { now: clock.now(), remotePublicKey: kp.publicKey })
  t.equal(first.tenant, 'msp-1/customer-b/sales', 'the certificate names the tenant it is in now')
  t.equal(approved.certificate!.signed.expires, new Date(clock.now().getTime() + 30 * DAY).toISOString())

  t.equal(await codeOf(enrollment.approve(keyid)), 'INVALID_TRANSITION')
  t.equal(await codeOf(enrollment.reject(keyid)), 'INVALID_TRANSITION')

  await tree.move('msp-1/customer-b/sales', CUST)
  clock.advance(20 * DAY)
  const renewed = await enrollment.renewCertificate(keyid)
  const second = verifyCertificate(root, renewed.certificate!, { now: new Date(clock.now().getTime() + 29 * DAY), remotePublicKey: kp.publicKey })
  t.equal(second.tenant, SALES)
  t.same(renewed.history.map((h) => h.op), ['enroll', 'approve', 'certificate'])
  t.equal(await codeOf(enrollment.renewCertificate(endpointKey().publicKey.toString('hex'))), 'NOT_FOUND')
})

t.test('quarantine, then reject; the key may enroll again later, a replayed request may not', async (t) => {
  const { db, enrollment, endpoints, tree, clock, token } = await setup(t)
  const { token: str } = await token()
  const kp = endpointKey()
  const keyid = kp.publicKey.toString('hex')
  const first = await request(str, kp)
  await enrollment.enroll(first)
  clock.advance(HOUR)
  const rejected = await enrollment.reject(keyid)
  t.equal(rejected.status, 'rejected')
  t.equal(rejected.certificate, undefined)
  t.equal(await tree.find(rejected.path), undefined, 'gone from the live tree')
  t.equal(await codeOf(enrollment.approve(keyid)), 'INVALID_TRANSITION')
  t.equal(await codeOf(enrollment.reject(keyid)), 'INVALID_TRANSITION')
  t.equal(await codeOf(enrollment.renewCertificate(keyid)), 'INVALID_TRANSITION')

  await rejects(t, db, () => enrollment.enroll(first), 'REPLAY')
  clock.advance(HOUR)
  t.same(await enrollment.enroll(await request(str, kp, { at: clock.now() })), { status: 'quarantine' })
  const history = await endpoints.history(keyid)
  t.same(history.map((e) => e.status), ['rejected', 'quarantine'])
  t.equal(history[1]!.path, `${SALES}/pc-1-${keyid.slice(0, 8)}`)
})

t.test('the same key cannot enroll twice while it is in quarantine or approved', async (t) => {
  const { db, enrollment, clock, token } = await setup(t)
  const { token: str } = await token()
  const { token: auto } = await token({ autoApprove: true })
  const kp = endpointKey()
  await enrollment.enroll(await request(str, kp))
  clock.advance(1000)
  await rejects(t, db, async () => enrollment.enroll(await request(auto, kp, { hostname: 'other', at: clock.now() })), 'ALREADY_EXISTS')
  await enrollment.approve(kp.publicKey.toString('hex'))
  await rejects(t, db, async () => enrollment.enroll(await request(str, kp, { at: clock.now() })), 'ALREADY_EXISTS')
})

t.test('refused requests carry their code and write nothing', async (t) => {
  const { db, enrollment, clock, token, tree } = await setup(t)
  const expiring = await token({ expiresAt: new Date(T0.getTime() + HOUR) })
  const revoked = await token()
  await enrollment.revokeToken(revoked.record.id)
  const once = await token({ maxUses: 1 })
  await enrollment.enroll(await request(once.token, endpointKey()))
  const good = await token()
  const payload = decodeToken(good.token)
  const wrongSecret = encodeToken({ ...payload, secret: decodeToken(expiring.token).secret })
  const unknownId = encodeToken({ ...payload, id: 'f'.repeat(16) })
  const otherOrg = encodeToken({ ...payload, org: 'evil' })
  await tree.create({ parent: CUST, name: 'gone', kind: 'group' })
  const orphan = await token({ scope: `${CUST}/gone` })
  await tree.remove(`${CUST}/gone`)

  // Forgeries: signed by someone else in the holder's name, or changed after signing.
  const victim = endpointKey()
  const thief = keySigner(endpointKey())
  const honest = await request(good.token, victim)
  const byThief = await signEnvelope(honest.signed, [thief])
  const asThief: Envelope<EnrollmentRequest> = { signed: honest.signed, signatures: [{ keyid: victim.publicKey.toString('hex'), sig: byThief.signatures[0]!.sig }] }
  const tampered: Envelope<EnrollmentRequest> = { ...honest, signed: { ...honest.signed, hostname: 'evil' } }
  const unsigned: Envelope<EnrollmentRequest> = { ...honest, signatures: [] }

  await t.test('expired', async (t) => {
    clock.advance(HOUR)
    await rejects(t, db, async () => enrollment.enroll(await request(expiring.token, endpointKey())), 'TOKEN_EXPIRED')
  })
  await rejects(t, db, async () => enrollment.enroll(await request(revoked.token, endpointKey())), 'TOKEN_REVOKED')
  await rejects(t, db, async () => enrollment.enroll(await request(once.token, endpointKey())), 'TOKEN_USED_UP')
  await rejects(t, db, async () => enrollment.enroll(await request(wrongSecret, endpointKey())), 'BAD_TOKEN')
  await rejects(t, db, async () => enrollment.enroll(await request(unknownId, endpointKey())), 'BAD_TOKEN')
  await rejects(t, db, async () => enrollment.enroll(await request(otherOrg, endpointKey())), 'WRONG_ORGANISATION')
  await rejects(t, db, async () => enrollment.enroll(await request(orphan.token, endpointKey())), 'TOKEN_REVOKED')
  await rejects(t, db, () => enrollment.enroll(asThief), 'BAD_SIGNATURE')
  await rejects(t, db, () => enrollment.enroll(tampered), 'BAD_SIGNATURE')
  await rejects(t, db, () => enrollment.enroll(unsigned), 'BAD_SIGNATURE')
  await rejects(t, db, () => enrollment.enroll({ signed: { ...honest.signed, _type: 'certificate' }, signatures: [] } as Envelope), 'BAD_DOCUMENT')
  await rejects(t, db, () => enrollment.enroll('{"not":"an envelope"}'), 'BAD_ENVELOPE')

  t.equal((await enrollment.getToken(once.record.id)).uses, 1, 'a used-up token stays at its count')
  t.same((await enrollment.listTokens()).map((r) => [r.id, r.state]), [
    [expiring.record.id, 'expired'], [revoked.record.id, 'revoked'], [once.record.id, 'used-up'], [good.record.id, 'active'], [orphan.record.id, 'active']
  ])
  t.same(await enrollment.enroll(honest), { status: 'quarantine' }, 'the honest request still works')
})

t.test('two requests racing for the last use: exactly one wins', async (t) => {
  const { enrollment, endpoints, token } = await setup(t)
  const one = await token({ maxUses: 1 })
  const [a, b] = await Promise.all([request(one.token, endpointKey(), { hostname: 'a' }), request(one.token, endpointKey(), { hostname: 'b' })])
  const results = await Promise.allSettled([enrollment.enroll(a), enrollment.enroll(b)])
  t.equal(results.filter((r) => r.status === 'fulfilled').length, 1)
  const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult
  t.equal(lost.reason.code, 'TOKEN_USED_UP')
  t.equal((await enrollment.getToken(one.record.id)).uses, 1)
  t.equal(await endpoints.count({ under: SALES, status: ['quarantine', 'approved', 'rejected', 'removed'] }), 1)

  const three = await token({ maxUses: 3, autoApprove: true })
  const many = await Promise.all(Array.from({ length: 10 }, (_, i) => request(three.token, endpointKey(), { hostname: `m${i}` })))
  const outcome = await Promise.allSettled(many.map((r) => enrollment.enroll(r)))
  t.equal(outcome.filter((r) => r.status === 'fulfilled').length, 3)
  t.ok(outcome.every((r) => r.status === 'fulfilled' || r.reason.code === 'TOKEN_USED_UP'))
  t.equal((await enrollment.getToken(three.record.id)).uses, 3)
  t.equal(await endpoints.count({ under: SALES }), 4)
})

t.test('decodeToken refuses anything encodeToken could not have written', async (t) => {
  const { token } = await setup(t)
  const good = (await token()).token
  const payload = decodeToken(good)
  const b64 = (v: unknown) => TOKEN_PREFIX + Buffer.from(typeof v === 'string' ? v : canonicalBytes(v)).toString('base64url')
  const garbage: Array<[string, unknown]> = [
    ['not a string', 42],
    ['empty', ''],
    ['prefix only', TOKEN_PREFIX],
    ['other version', 'pst2.' + good.slice(TOKEN_PREFIX.length)],
    ['no prefix', good.slice(TOKEN_PREFIX.length)],
    ['not base64url', TOKEN_PREFIX + '!!!!'],
    ['standard base64 padding', good + '=='],
    ['a character changed', good.slice(0, 20) + (good[20] === 'A' ? 'B' : 'A') + good.slice(21)],
    ['truncated', good.slice(0, -5)],
    ['too long', TOKEN_PREFIX + 'A'.repeat(2000)],
    ['white space inside', good.slice(0, 30) + ' ' + good.slice(30)],
    ['not JSON', b64('hello')],
    ['not canonical', b64(JSON.stringify(payload, null, 1))],
    ['an array', b64([1, 2])],
    ['extra field', b64({ ...payload, admin: true })],
    ['missing root', b64(Object.fromEntries(Object.entries(payload).filter(([k]) => k !== 'root')))],
    ['bad id', b64({ ...payload, id: 'XYZ' })],
    ['short secret', b64({ ...payload, secret: 'abc' })],
    ['bad console key', b64({ ...payload, console: 'ab' })],
    ['unsafe org', b64({ ...payload, org: '../acme' })]
  ]
  for (const [name, input] of garbage) t.throws(() => decodeToken(input), { code: 'BAD_TOKEN' }, name)
  t.same(decodeToken(` ${good}\n`), payload, 'white space around a pasted token is ignored')
  t.throws(() => encodeToken({ ...payload, id: 'nope' }), { code: 'BAD_ARGUMENT' })
})

t.test('token management: validation, listing by subtree, revocation, scopes that move', async (t) => {
  const { db, enrollment, tree, token } = await setup(t)
  const a = await token()
  const b = await token({ scope: 'msp-1/customer-b' })
  await tree.create({ parent: 'msp-1/customer-b', name: 'old', kind: 'group' })
  await tree.remove('msp-1/customer-b/old')
  const cases: Array<[string, Partial<CreateTokenInput>, string]> = [
    ['an msp', { scope: 'msp-1' }, 'BAD_ARGUMENT'],
    ['unknown scope', { scope: 'msp-1/nope' }, 'NOT_FOUND'],
    ['removed scope', { scope: 'msp-1/customer-b/old' }, 'NOT_FOUND'],
    ['the whole organisation', { scope: '' }, 'NOT_FOUND'],
    ['unsafe scope', { scope: '../x' }, 'UNSAFE_PATH'],
    ['unsafe site', { site: 'a/b' }, 'UNSAFE_PATH'],
    ['no uses', { maxUses: 0 }, 'BAD_ARGUMENT'],
    ['fractional uses', { maxUses: 1.5 }, 'BAD_ARGUMENT'],
    ['expired already', { expiresAt: T0 }, 'BAD_ARGUMENT'],
    ['bad expiry', { expiresAt: 'tomorrow' }, 'BAD_ARGUMENT'],
    ['invalid date', { expiresAt: new Date(NaN) }, 'BAD_ARGUMENT'],
    ['autoApprove not boolean', { autoApprove: 'yes' as unknown as boolean }, 'BAD_ARGUMENT'],
    ['note with a newline', { note: 'a\nb' }, 'BAD_ARGUMENT']
  ]
  const before = await dump(db)
  for (const [name, over, code] of cases) t.equal(await codeOf(token(over)), code, name)
  t.same(await dump(db), before, 'refused tokens wrote nothing')

  t.same((await enrollment.listTokens({ under: CUST })).map((r) => r.id), [a.record.id])
  t.same((await enrollment.listTokens()).map((r) => r.id), [a.record.id, b.record.id])
  await tree.move(SALES, 'msp-1/customer-b')
  t.same((await enrollment.listTokens({ under: 'msp-1/customer-b' })).map((r) => [r.id, r.scope]), [
    [a.record.id, 'msp-1/customer-b/sales'], [b.record.id, 'msp-1/customer-b']
  ])
  // A token follows its scope: the endpoint lands where the group is now.
  const kp = endpointKey()
  await enrollment.enroll(await request(a.token, kp))
  t.equal((await enrollment.endpoints.get(kp.publicKey.toString('hex'))).tenant, 'msp-1/customer-b/sales')

  const revoked = await enrollment.revokeToken(a.record.id)
  t.equal(revoked.state, 'revoked')
  const unchanged = await dump(db)
  t.same(await enrollment.revokeToken(a.record.id), revoked, 'revoking again changes nothing')
  t.same(await dump(db), unchanged)
  t.equal(await codeOf(enrollment.revokeToken('0'.repeat(16))), 'NOT_FOUND')
  t.equal(await codeOf(enrollment.getToken('nope')), 'NOT_FOUND')
})

t.test('tokens are refused when the root does not trust the console signer or is another organisation\'s', async (t) => {
  const stranger = keySigner(generateKeyPair(Buffer.alloc(32, 250)))
  const other = await signEnvelope(newRoot({ org: 'acme', keys: { root: [keys.root[0]!.keyid], release: [keys.root[0]!.keyid], console: [stranger.keyid] }, expires: LATER }), [keys.root[0]!])
  await t.test('console signer not in the console role', async (t) => {
    const s = await setup(t, { root: () => other })
    await rejects(t, s.db, () => s.token(), 'BAD_ARGUMENT')
  })
  const foreign = await signedRoot(baseRoot({ org: 'globex' }))
  const s2 = await setup(t, { root: () => foreign })
  await rejects(t, s2.db, () => s2.token(), 'BAD_ARGUMENT')
  t.throws(() => new Enrollment(s2.db, { org: 'acme', tree: s2.tree, endpoints: s2.endpoints, consoleSigner, root: () => foreign, consoleKey: 'x' }), { code: 'BAD_ARGUMENT' })
  t.throws(() => new Enrollment(s2.db, { org: 'acme', tree: s2.tree, endpoints: s2.endpoints, consoleSigner, root: () => foreign, consoleKey: swarmKey, certificateDays: 0 }), { code: 'BAD_ARGUMENT' })
})

t.test('WriteOptions.extra rides in the same batch as the enrollment, and not at all when refused', async (t) => {
  const { db, enrollment, token } = await setup(t)
  const audit = sublevel(db, 'test-audit')
  let n = 0
  const extra = () => [{ type: 'put' as const, sublevel: audit, key: String(++n), value: 'entry' }]
  const { token: str, record } = await token({ maxUses: 1 })
  const kp = endpointKey()
  await enrollment.enroll(await request(str, kp), { extra })
  await codeOf(enrollment.enroll(await request(str, endpointKey()), { extra }))
  await enrollment.approve(kp.publicKey.toString('hex'), { extra })
  await enrollment.revokeToken(record.id, { extra })
  await enrollment.createToken({ scope: SALES, expiresAt: LATER, maxUses: 1, autoApprove: false }, { extra })
  t.same(await audit.keys().all(), ['1', '2', '3', '4'])
})
