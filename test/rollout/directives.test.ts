import path from 'node:path'
import t from 'tap'
import { openDatabase, sublevel } from '../../lib/store/db.js'
import { generateKeyPair, keySigner } from '../../lib/crypto/keys.js'
import { newDirective, releaseRef, MAX_ASSIGNMENTS, MAX_TARGET_ENDPOINTS } from '../../lib/trust/directive.js'
import { verifyEnvelope, envelopeHash } from '../../lib/trust/envelope.js'
import {
  DirectiveIssuer, assignmentsFor, createRollout, evaluate, pauseRollout, abortRollout, rollbackRollout, type Rollout
} from '../../lib/rollout/index.js'
import { CUSTOMER, MINUTE, RELEASE, T0, TestClock, codeOf, endpoints, openDb, spec } from './helpers.js'
import { enrolled, keys as trustKeys, release as trustRelease, signedRelease, TestClock as TrustClock } from '../trust/helpers.js'

const { risk: _, ...REF } = RELEASE

/** A rollout whose pilot succeeded, so pilot and early have started and broad is pending. */
function twoPhasesStarted (): Rollout {
  const r = createRollout(spec({ deadline: '2030-03-01T00:00:00Z' }), endpoints(100), T0).rollout
  const pilot = new Set(r.phases[0]!.endpoints)
  const step = evaluate(r, (k) => pilot.has(k) ? 'installed' : undefined, new Date(T0.getTime() + 60 * MINUTE))
  return step.rollout
}

t.test('assignments follow the rollout state: install to started phases, nothing when aborted, rollback when rolled back', async (t) => {
  const r = twoPhasesStarted()
  const started = [...r.phases[0]!.endpoints, ...r.phases[1]!.endpoints]
  t.equal(started.length, 55)
  const install = assignmentsFor([r])
  t.same(install, [{ target: { tenant: CUSTOMER, endpoints: started }, release: REF, action: 'install', deadline: '2030-03-01T00:00:00Z', rollout: 'ff-128' }],
    'the pending phase gets nothing yet; the release loses its risk; the deadline urges the install')
  const now = new Date(T0.getTime() + 61 * MINUTE)
  t.same(assignmentsFor([pauseRollout(r, now).rollout]), install, 'pausing takes nothing back')
  t.same(assignmentsFor([{ ...r, state: 'halted' }]), install, 'nor does halting')
  t.same(assignmentsFor([{ ...r, state: 'completed' }]), install)
  t.same(assignmentsFor([abortRollout(r, now).rollout]), [], 'an aborted rollout assigns nothing')
  t.same(assignmentsFor([rollbackRollout(r, now).rollout]), [{ target: { tenant: CUSTOMER, endpoints: started }, release: REF, action: 'rollback', rollout: 'ff-128' }],
    'every endpoint of a started phase is told to roll back; no deadline')
  t.same(assignmentsFor([rollbackRollout(abortRollout(r, now).rollout, now).rollout])[0]?.action, 'rollback', 'an aborted rollout can still be rolled back')
  t.equal(await codeOf(() => assignmentsFor([r, r])), 'BAD_ARGUMENT')
  t.ok(newDirective({ org: 'acme', version: 1, expires: '2031-01-01T00:00:00Z', assignments: [...install, ...assignmentsFor([{ ...rollbackRollout(r, now).rollout, id: 'other' }])] }), 'valid in a directive')
})

t.test('a rollout of 10 000 endpoints builds valid assignments in chunks; too many assignments are refused', async (t) => {
  const r = createRollout(spec({ phases: [{ name: 'all', successThreshold: 1, errorThreshold: 0.1, minSoakMinutes: 0 }] }), endpoints(10_000), T0).rollout
  const assignments = assignmentsFor([r])
  t.same(assignments.map((a) => a.target.endpoints!.length), [MAX_TARGET_ENDPOINTS, MAX_TARGET_ENDPOINTS, 10_000 - 2 * MAX_TARGET_ENDPOINTS])
  t.same(assignments.flatMap((a) => a.target.endpoints!), r.phases[0]!.endpoints, 'every endpoint exactly once, in order')
  const doc = newDirective({ org: 'acme', version: 1, issued: T0, expires: '2030-01-08T00:00:00Z', assignments })
  t.equal(doc.assignments.length, 3)

  const one = createRollout(spec({ id: 'r0', phases: [{ name: 'all', successThreshold: 1, errorThreshold: 0.1, minSoakMinutes: 0 }] }), endpoints(1), T0).rollout
  const many = Array.from({ length: MAX_ASSIGNMENTS + 1 }, (_, i) => ({ ...one, id: `r${i}` }))
  t.equal(assignmentsFor(many.slice(0, MAX_ASSIGNMENTS)).length, MAX_ASSIGNMENTS)
  t.equal(await codeOf(() => assignmentsFor(many)), 'BAD_ROLLOUT')
})

t.test('directive versions rise strictly, across a reopen; the envelope verifies against the console key', async (t) => {
  const { db, location } = await openDb(t)
  const consoleKey = keySigner(generateKeyPair())
  const clock = new TestClock()
  const issuer = new DirectiveIssuer(db, { org: 'acme', signer: consoleKey, clock: clock.now, validDays: 3 })
  t.equal(await issuer.latest(), undefined)
  const assignments = assignmentsFor([twoPhasesStarted()])
  const first = await issuer.issue(assignments)
  t.equal(first.signed.version, 1)
  t.equal(first.signed.issued, T0.toISOString())
  t.equal(first.signed.expires, new Date(T0.getTime() + 3 * 24 * 60 * MINUTE).toISOString())
  t.same(first.signed.assignments, assignments)
  t.same(verifyEnvelope(first, { keyids: [consoleKey.keyid], threshold: 1 }), { ok: true, threshold: 1, valid: [consoleKey.keyid], missing: 0 })
  t.notOk(verifyEnvelope(first, { keyids: [keySigner(generateKeyPair()).keyid], threshold: 1 }).ok, 'not by another key')
  clock.advance(MINUTE)
  t.equal((await issuer.issue([])).signed.version, 2)

  await db.close()
  const reopened = await openDatabase(location)
  t.teardown(() => reopened.close())
  const again = new DirectiveIssuer(reopened, { org: 'acme', signer: consoleKey, clock: clock.now })
  t.equal((await again.latest())?.signed.version, 2, 'the latest directive is persisted')
  clock.t = T0 // even a clock that went back does not lower the version
  const versions = await Promise.all([again.issue(assignments), again.issue(assignments), again.issue([])])
  t.same(versions.map((e) => e.signed.version), [3, 4, 5], 'concurrent issues get distinct, rising versions')
  t.equal(envelopeHash((await again.latest())!), envelopeHash(versions[2]!))
})

t.test('issue: extra in the same batch; bad options and oversized or invalid directives are refused, writing nothing', async (t) => {
  const { db } = await openDb(t)
  const audit = sublevel(db, 'audit')
  const signer = keySigner(generateKeyPair())
  const issuer = new DirectiveIssuer(db, { org: 'acme', signer, clock: new TestClock().now })
  await issuer.issue([], { extra: () => [{ type: 'put', sublevel: audit, key: '1', value: 'issued' }] })
  t.same(await audit.keys().all(), ['1'])

  const before = await db.iterator().all()
  const huge = createRollout(spec({ phases: [{ name: 'all', successThreshold: 1, errorThreshold: 0.1, minSoakMinutes: 0 }] }), endpoints(16_000), T0).rollout
  t.equal(await codeOf(() => issuer.issue(assignmentsFor([huge]))), 'BAD_DOCUMENT', '16 000 endpoints make a directive over 1 MiB')
  const bad = assignmentsFor([twoPhasesStarted()]).map((a) => ({ ...a, action: 'explode' as never }))
  t.equal(await codeOf(() => issuer.issue(bad)), 'BAD_DOCUMENT')
  t.same(await db.iterator().all(), before, 'nothing written')
  t.equal((await issuer.issue([])).signed.version, 2, 'and no version was used up')

  for (const opts of [{ org: '../x', signer }, { org: 'acme', signer: {} as never }, { org: 'acme', signer, validDays: 0 }, { org: 'acme', signer, validDays: 1000 }]) {
    t.equal(await codeOf(() => new DirectiveIssuer(db, opts)), 'BAD_ARGUMENT')
  }
})

t.test("an agent accepts the directive for a release delegated to the rollout's customer", async (t) => {
  const scope = 'msp-1/customer-a'
  const s = await enrolled(t, new TrustClock(T0))
  const releaseEnvelope = await signedRelease(trustRelease({ scope }), trustKeys.custA)
  const verifiedRelease = await s.state.verifyRelease(releaseEnvelope, { platform: 'linux-x64' })
  const fleet = endpoints(20).map((e) => ({ ...e, tenant: e.tenant.replace(CUSTOMER, scope) }))
  const r = createRollout(spec({
    release: { ...releaseRef(releaseEnvelope), risk: 'high' },
    target: { tenant: scope },
    phases: [{ name: 'all', successThreshold: 1, errorThreshold: 0.1, minSoakMinutes: 0 }]
  }), fleet, T0).rollout
  const { db } = await openDb(t, path.join(t.testdir(), 'console-db')) // the agent's state holds 'db'
  const issuer = new DirectiveIssuer(db, { org: 'acme', signer: trustKeys.console[0]!, clock: () => T0 })
  const directive = await issuer.issue(assignmentsFor([r]))
  const verified = await s.state.verifyDirective(directive, { endpoint: { keyid: fleet[3]!.keyid, tenant: fleet[3]!.tenant, platform: 'linux-x64' } })
  t.equal(verified.assignments.length, 1)
  t.equal(verified.assignments[0]!.verifiedRelease.envelopeHash, verifiedRelease.envelopeHash)
  t.equal(verified.assignments[0]!.rollout, 'ff-128')
})
