import t from 'tap'
import { signEnvelope, rotateRoot } from '../../lib/trust/index.js'
import {
  enrolled, openState, rejects, dump, release, signedRelease, signedRoot, baseRoot, keys, key, TestClock, T0, DAY
} from './helpers.js'

const linux = { platform: 'linux-x64' }

t.test('a release signed by a threshold of the release role is verified and persisted', async (t) => {
  const { state, db } = await enrolled(t)
  const before = (await dump(db)).length
  const v = await state.verifyRelease(await signedRelease(), linux)
  t.same(v.signer, { role: 'release' })
  t.equal(v.release.manifest.digest, release().manifest.digest)
  t.equal((await dump(db)).length, before + 1)
  t.ok(Object.isFrozen(v.release.install), 'what was verified cannot be changed afterwards')
})

t.test('an unsigned release is THRESHOLD_NOT_MET', async (t) => {
  const { state, db } = await enrolled(t)
  await rejects(t, db, () => state.verifyRelease({ signed: release(), signatures: [] }, linux), 'THRESHOLD_NOT_MET')
})

t.test('a release under its threshold (1 of 2) is THRESHOLD_NOT_MET', async (t) => {
  const { state, db } = await enrolled(t)
  await rejects(t, db, async () => state.verifyRelease(await signedRelease(release(), [keys.release[0]!, keys.other]), linux), 'THRESHOLD_NOT_MET')
})

t.test('one release signature twice does not meet threshold 2', async (t) => {
  const { state, db } = await enrolled(t)
  const once = await signedRelease(release(), [keys.release[0]!])
  const twice = { signed: once.signed, signatures: [once.signatures[0]!, { ...once.signatures[0]! }] }
  await rejects(t, db, () => state.verifyRelease(twice, linux), 'THRESHOLD_NOT_MET')
})

t.test('signatures by console or root keys do not count for a release', async (t) => {
  const { state, db } = await enrolled(t)
  await rejects(t, db, async () => state.verifyRelease(await signedRelease(release(), [...keys.console, keys.root[0]!]), linux), 'THRESHOLD_NOT_MET')
})

t.test('a delegated key releases inside its tenant subtree', async (t) => {
  const { state } = await enrolled(t)
  const v = await state.verifyRelease(await signedRelease(release({ scope: 'msp-1/customer-a/site-1' }), keys.custA), linux)
  t.same(v.signer, { role: 'delegation', name: 'customer-a', scope: 'msp-1/customer-a' })
  const exact = await state.verifyRelease(await signedRelease(release({ name: 'vlc', scope: 'msp-1/customer-a' }), keys.custA), linux)
  t.equal(exact.signer.role, 'delegation')
})

t.test('a delegated release under the delegation threshold is THRESHOLD_NOT_MET', async (t) => {
  const s = await openState(t)
  const root = baseRoot({ delegations: [{ name: 'customer-a', scope: 'msp-1/customer-a', keys: [key(31).keyid, key(32).keyid], threshold: 2 }] })
  await s.state.pinRoot(await signedRoot(root))
  await rejects(t, s.db, async () => s.state.verifyRelease(await signedRelease(release({ scope: 'msp-1/customer-a' }), [key(31)]), linux), 'THRESHOLD_NOT_MET')
  t.equal((await s.state.verifyRelease(await signedRelease(release({ scope: 'msp-1/customer-a' }), [key(31), key(32)]), linux)).signer.role, 'delegation')
})

t.test('a delegated key signing outside its subtree is OUTSIDE_DELEGATION', async (t) => {
  const { state, db } = await enrolled(t)
  for (const scope of ['msp-1/customer-b', 'msp-1', '', 'msp-2/customer-a']) {
    await rejects(t, db, async () => state.verifyRelease(await signedRelease(release({ scope }), keys.custA), linux), 'OUTSIDE_DELEGATION')
  }
})

t.test("the prefix trap: 'msp-1/cust' and 'msp-1/customer-ab' are not inside 'msp-1/customer-a'", async (t) => {
  const { state, db } = await enrolled(t)
  for (const scope of ['msp-1/cust', 'msp-1/customer-ab', 'msp-1/customer-a-evil/x']) {
    await rejects(t, db, async () => state.verifyRelease(await signedRelease(release({ scope }), keys.custA), linux), 'OUTSIDE_DELEGATION')
  }
})

t.test('a release for another platform is WRONG_PLATFORM', async (t) => {
  const { state, db } = await enrolled(t)
  await rejects(t, db, async () => state.verifyRelease(await signedRelease(release({ platform: 'win32-x64' })), linux), 'WRONG_PLATFORM')
  await rejects(t, db, async () => state.verifyRelease(await signedRelease(release({ platform: 'linux-arm64' })), linux), 'WRONG_PLATFORM')
  t.ok(await state.verifyRelease(await signedRelease(release({ platform: 'linux' })), linux), "'linux' is any linux")
  t.ok(await state.verifyRelease(await signedRelease(release({ platform: 'any' })), linux))
})

t.test('an older metadata version of the same release is VERSION_ROLLBACK', async (t) => {
  const { state, db } = await enrolled(t)
  const v1 = await signedRelease(release({ version: 1 }))
  await state.verifyRelease(await signedRelease(release({ version: 2 })), linux)
  await rejects(t, db, () => state.verifyRelease(v1, linux), 'VERSION_ROLLBACK')
  t.equal(state.releases()[0]!.release.version, 2)
})

t.test('the same version with other content is VERSION_ROLLBACK; the very same is accepted again', async (t) => {
  const { state, db } = await enrolled(t)
  const env = await signedRelease(release({ version: 3 }))
  await state.verifyRelease(env, linux)
  const swapped = await signedRelease(release({ version: 3, manifest: { digest: 'c'.repeat(64), size: 1 } }))
  await rejects(t, db, () => state.verifyRelease(swapped, linux), 'VERSION_ROLLBACK')
  t.equal((await state.verifyRelease(env, linux)).release.version, 3)
})

t.test('another package version or platform is another release, not a rollback', async (t) => {
  const { state } = await enrolled(t)
  await state.verifyRelease(await signedRelease(release({ version: 5 })), linux)
  await state.verifyRelease(await signedRelease(release({ version: 1, packageVersion: '127.0' })), linux)
  await state.verifyRelease(await signedRelease(release({ version: 1, platform: 'linux' })), linux)
  t.equal(state.releases().length, 3)
})

t.test('an expired release is EXPIRED', async (t) => {
  const { state, db } = await enrolled(t)
  await rejects(t, db, async () => state.verifyRelease(await signedRelease(release({ expires: T0 })), linux), 'EXPIRED')
})

t.test('an expired trusted copy still refuses an older version: VERSION_ROLLBACK', async (t) => {
  const clock = new TestClock()
  const { state, db } = await enrolled(t, clock)
  await state.verifyRelease(await signedRelease(release({ version: 5, expires: new Date(T0.getTime() + DAY) })), linux)
  clock.advance(2 * DAY)
  state.beginCycle()
  await rejects(t, db, async () => state.verifyRelease(await signedRelease(release({ version: 3 })), linux), 'VERSION_ROLLBACK')
  t.ok(await state.verifyRelease(await signedRelease(release({ version: 6 })), linux), 'a newer one replaces it')
})

t.test('the clock is read once per cycle', async (t) => {
  let reads = 0
  const clock = new TestClock()
  const counting = { now: () => { reads++; return clock.now() } }
  const s = await openState(t, counting as unknown as TestClock)
  await s.state.pinRoot(await signedRoot(baseRoot()))
  t.equal(reads, 1, 'one reading at the start of the cycle')
  const env = await signedRelease(release({ expires: new Date(T0.getTime() + 60_000) }))
  clock.advance(DAY) // mid-cycle: the release is now expired by the wall clock
  t.ok(await s.state.verifyRelease(env, linux), 'decided with the reading taken when the cycle began')
  t.equal(reads, 1)
  s.state.beginCycle()
  t.equal(reads, 2)
  await rejects(t, s.db, () => s.state.verifyRelease(env, linux), 'EXPIRED')
})

t.test('an expired trusted root refuses every release: EXPIRED', async (t) => {
  const s = await openState(t)
  await s.state.pinRoot(await signedRoot(baseRoot({ expires: new Date(T0.getTime() - 1) })))
  await rejects(t, s.db, async () => s.state.verifyRelease(await signedRelease(), linux), 'EXPIRED')
})

t.test('a release whose signer lost its role in a root rotation is dropped with that rotation', async (t) => {
  const s = await enrolled(t)
  await s.state.verifyRelease(await signedRelease(), linux)
  await s.state.verifyRelease(await signedRelease(release({ name: 'vlc', scope: 'msp-1/customer-a' }), keys.custA), linux)
  const v2 = rotateRoot(baseRoot(), { keys: { release: [keys.other.keyid] }, thresholds: { release: 1 } })
  await s.state.updateRoot(await signEnvelope(v2, [keys.root[0]!]))
  t.same(s.state.releases().map((r) => r.signer.role), ['delegation'], 'the delegated one is still authorised')
  t.equal((await s.reopen()).releases().length, 1)
})

t.test('a delegated key cannot raise the version floor of an organisation-wide release', async (t) => {
  const { state } = await enrolled(t)
  // The customer's key signs "the same" package at a huge metadata version, scoped to its subtree.
  const squat = await signedRelease(release({ scope: 'msp-1/customer-a', version: 1000 }), keys.custA)
  t.equal((await state.verifyRelease(squat, linux)).signer.role, 'delegation')
  const real = await state.verifyRelease(await signedRelease(release({ version: 2 })), linux)
  t.same(real.signer, { role: 'release' }, 'the organisation-wide release is not a rollback of the delegated one')
  t.equal(state.releases().length, 2)
})
