import t from 'tap'
import {
  newDirective, releaseRef, signEnvelope, rotateRoot, envelopeHash, type Assignment, type DirectiveDocument,
  type VerifiedRelease
} from '../../lib/trust/index.js'
import type { Signer } from '../../lib/crypto/keys.js'
import {
  enrolled, openState, rejects, release, signedRelease, signedRoot, baseRoot, keys, key, TestClock, T0, DAY, LATER, DIGEST_B
} from './helpers.js'

const linux = { platform: 'linux-x64' }

async function withRelease (t: Parameters<typeof enrolled>[0], clock = new TestClock(), scope = 'msp-1') {
  const s = await enrolled(t, clock)
  const verified = await s.state.verifyRelease(await signedRelease(release({ scope })), linux)
  return { ...s, verified }
}

function assign (v: VerifiedRelease, over: Partial<Assignment> = {}): Assignment {
  return { target: { tenant: 'msp-1/customer-a' }, release: releaseRef(v.envelope), action: 'install', ...over }
}

function directive (assignments: Assignment[], over: Partial<DirectiveDocument> = {}): DirectiveDocument {
  return { ...newDirective({ org: 'acme', version: 1, issued: T0, expires: LATER, assignments }), ...over }
}

const sign = (d: DirectiveDocument, signers: Signer[] = [keys.console[0]!]) => signEnvelope(d, signers)

t.test('a console-signed directive naming a verified release is accepted and persisted', async (t) => {
  const { state, verified } = await withRelease(t)
  const d = await state.verifyDirective(await sign(directive([assign(verified)])))
  t.equal(d.assignments.length, 1)
  t.equal(d.assignments[0]!.verifiedRelease.envelopeHash, verified.envelopeHash)
  t.equal(state.directive!.directive.version, 1)
})

t.test('an unsigned directive is THRESHOLD_NOT_MET', async (t) => {
  const { state, db, verified } = await withRelease(t)
  await rejects(t, db, () => state.verifyDirective({ signed: directive([assign(verified)]), signatures: [] }), 'THRESHOLD_NOT_MET')
})

t.test('a directive signed by release or root keys, not the console, is THRESHOLD_NOT_MET', async (t) => {
  const { state, db, verified } = await withRelease(t)
  await rejects(t, db, async () => state.verifyDirective(await sign(directive([assign(verified)]), [...keys.release, keys.root[0]!])), 'THRESHOLD_NOT_MET')
})

t.test('a directive under a console threshold of 2, and one signature twice, are THRESHOLD_NOT_MET', async (t) => {
  const s = await openState(t)
  await s.state.pinRoot(await signedRoot(baseRoot({ thresholds: { root: 1, release: 2, console: 2 } })))
  const v = await s.state.verifyRelease(await signedRelease(release({ scope: 'msp-1' })), linux)
  const once = await sign(directive([assign(v)]))
  await rejects(t, s.db, async () => s.state.verifyDirective(once), 'THRESHOLD_NOT_MET')
  await rejects(t, s.db, async () => s.state.verifyDirective({ signed: once.signed, signatures: [once.signatures[0]!, once.signatures[0]!] }), 'THRESHOLD_NOT_MET')
  t.ok(await s.state.verifyDirective(await sign(directive([assign(v)]), keys.console)))
})

t.test('an older directive is VERSION_ROLLBACK, as is other content under the same version', async (t) => {
  const { state, db, verified } = await withRelease(t)
  await state.verifyDirective(await sign(directive([assign(verified)], { version: 2 })))
  await rejects(t, db, async () => state.verifyDirective(await sign(directive([assign(verified)], { version: 1 }))), 'VERSION_ROLLBACK')
  await rejects(t, db, async () => state.verifyDirective(await sign(directive([], { version: 2 }))), 'VERSION_ROLLBACK')
})

t.test('an expired directive is EXPIRED', async (t) => {
  const { state, db, verified } = await withRelease(t)
  await rejects(t, db, async () => state.verifyDirective(await sign(directive([assign(verified)], { issued: '2029-01-01T00:00:00Z', expires: T0.toISOString() }))), 'EXPIRED')
})

t.test('an expired trusted directive still refuses an older version: VERSION_ROLLBACK', async (t) => {
  const clock = new TestClock()
  const { state, db, verified } = await withRelease(t, clock)
  await state.verifyDirective(await sign(directive([], { version: 7, expires: new Date(T0.getTime() + DAY).toISOString() })))
  clock.advance(2 * DAY)
  state.beginCycle()
  await rejects(t, db, async () => state.verifyDirective(await sign(directive([assign(verified)], { version: 6 }))), 'VERSION_ROLLBACK')
})

t.test('mix-and-match: a manifest digest that no release signed is UNRELEASED', async (t) => {
  const { state, db, verified } = await withRelease(t)
  const a = assign(verified)
  await rejects(t, db, async () => state.verifyDirective(await sign(directive([{ ...a, release: { ...a.release, manifest: DIGEST_B } }]))), 'UNRELEASED')
})

t.test('mix-and-match: the right digest with another release envelope hash is UNRELEASED', async (t) => {
  const { state, db, verified } = await withRelease(t)
  const a = assign(verified)
  const unsignedTwin = envelopeHash(await signedRelease(release({ scope: 'msp-1', risk: 'low' })))
  for (const hash of [unsignedTwin, 'f'.repeat(64)]) {
    await rejects(t, db, async () => state.verifyDirective(await sign(directive([{ ...a, release: { ...a.release, envelopeHash: hash } }]))), 'UNRELEASED')
  }
  const renamed = { ...a, release: { ...a.release, name: 'chrome' } }
  await rejects(t, db, async () => state.verifyDirective(await sign(directive([renamed]))), 'UNRELEASED')
})

t.test('mix-and-match: `releases` narrows the choice, and cannot widen it with a forged object', async (t) => {
  const { state, db, verified } = await withRelease(t)
  const env = await sign(directive([assign(verified)]))
  await rejects(t, db, () => state.verifyDirective(env, { releases: [] }), 'UNRELEASED')
  const other = await signedRelease(release({ name: 'chrome', scope: 'msp-1' }))
  const forged = { ...verified, envelope: other, envelopeHash: envelopeHash(other), release: other.signed }
  const env2 = await sign(directive([assign(forged)]))
  await rejects(t, db, () => state.verifyDirective(env2, { releases: [forged] }), 'UNRELEASED')
  t.ok(await state.verifyDirective(env, { releases: [verified] }))
})

t.test('an assignment to a tenant outside the release scope is OUTSIDE_DELEGATION', async (t) => {
  const { state, db, verified } = await withRelease(t, new TestClock(), 'msp-1/customer-a')
  for (const tenant of ['msp-1', '', 'msp-1/customer-b', 'msp-1/cust']) {
    await rejects(t, db, async () => state.verifyDirective(await sign(directive([assign(verified, { target: { tenant } })]))), 'OUTSIDE_DELEGATION')
  }
  t.ok(await state.verifyDirective(await sign(directive([assign(verified, { target: { tenant: 'msp-1/customer-a/site-2' } })]))))
})

t.test('an assigned release that has since expired is EXPIRED', async (t) => {
  const clock = new TestClock()
  const s = await enrolled(t, clock)
  const v = await s.state.verifyRelease(await signedRelease(release({ scope: 'msp-1', expires: new Date(T0.getTime() + DAY) })), linux)
  clock.advance(2 * DAY)
  s.state.beginCycle()
  await rejects(t, s.db, async () => s.state.verifyDirective(await sign(directive([assign(v)]))), 'EXPIRED')
})

t.test("an endpoint reads only its assignments; others' unknown releases do not matter", async (t) => {
  const { state, verified } = await withRelease(t)
  const me = key(77).keyid
  const a = assign(verified)
  const unknown = { ...a.release, manifest: DIGEST_B }
  const d = directive([
    { ...a, target: { tenant: 'msp-1/customer-b' }, release: unknown }, // another tenant
    { ...a, target: { tenant: 'msp-1', group: 'servers' }, release: unknown }, // a group I am not in
    { ...a, target: { tenant: 'msp-1', endpoints: [key(78).keyid] }, release: unknown }, // other endpoints
    { ...a, release: { ...unknown, platform: 'win32-x64' } }, // another platform
    { ...a, target: { tenant: 'msp-1', group: 'laptops', endpoints: [me] } } // mine
  ])
  const endpoint = { keyid: me, tenant: 'msp-1/customer-a/site-1', groups: ['laptops'], platform: 'linux-x64' }
  const v = await state.verifyDirective(await sign(d), { endpoint })
  t.equal(v.assignments.length, 1)
  t.same(v.assignments[0]!.target, { tenant: 'msp-1', group: 'laptops', endpoints: [me] })
})

t.test('a directive for another organisation is BAD_DOCUMENT', async (t) => {
  const { state, db, verified } = await withRelease(t)
  await rejects(t, db, async () => state.verifyDirective(await sign(directive([assign(verified)], { org: 'globex' }))), 'BAD_DOCUMENT')
})

t.test('an expired trusted root refuses directives: EXPIRED', async (t) => {
  const clock = new TestClock()
  const s = await openState(t, clock)
  await s.state.pinRoot(await signedRoot(baseRoot({ expires: new Date(T0.getTime() + DAY) })))
  clock.advance(2 * DAY)
  s.state.beginCycle()
  await rejects(t, s.db, async () => s.state.verifyDirective(await sign(directive([], { issued: '2030-01-02T00:00:00Z' }))), 'EXPIRED')
})

t.test('rotating the console key drops the trusted directive and its version floor', async (t) => {
  const { state, verified } = await withRelease(t)
  await state.verifyDirective(await sign(directive([assign(verified)], { version: 1000 })))
  const v2 = rotateRoot(baseRoot(), { keys: { console: [keys.other.keyid] } })
  await state.updateRoot(await signEnvelope(v2, [keys.root[0]!]))
  t.equal(state.directive, null)
  t.ok(await state.verifyDirective(await sign(directive([assign(verified)], { version: 1 }), [keys.other])), 'the new console starts afresh')
})
