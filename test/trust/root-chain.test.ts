import t from 'tap'
import { TrustedState, newRoot, rotateRoot, signEnvelope, serializeEnvelope, type RootDocument, type Envelope } from '../../lib/trust/index.js'
import { sublevel } from '../../lib/store/db.js'
import { key, openState, enrolled, rejects, baseRoot, signedRoot, keys, LATER, T0, DAY, TestClock } from './helpers.js'

const k = [0, 1, 2, 3, 4, 5, 6].map((n) => key(100 + n)) // k[1]…k[6]; k[0] unused
const ids = (...n: number[]) => n.map((i) => k[i]!.keyid)
const others = { release: [keys.release[0]!.keyid], console: [keys.console[0]!.keyid] }

function rootV1 (): RootDocument {
  return newRoot({ org: 'acme', keys: { root: ids(1), ...others }, expires: LATER })
}

/** v1 (1-of-1) → v2 (2-of-3) → v3 → v4 → v5, the keys rotating away from the first ones. */
async function chain () {
  const v1 = rootV1()
  const v2 = rotateRoot(v1, { keys: { root: ids(1, 2, 3) }, thresholds: { root: 2 } })
  const v3 = rotateRoot(v2, { keys: { root: ids(2, 3, 4) } })
  const v4 = rotateRoot(v3, { keys: { root: ids(4, 5, 6) } })
  const v5 = rotateRoot(v4, { expires: new Date(LATER.getTime() + DAY) })
  const sign = (doc: RootDocument, ...n: number[]) => signEnvelope(doc, n.map((i) => k[i]!))
  return {
    docs: [v1, v2, v3, v4, v5],
    envs: [
      await sign(v1, 1),
      await sign(v2, 1, 2), // old 1-of-[1], new 2-of-[1,2,3]
      await sign(v3, 2, 3), // old 2-of-[1,2,3], new 2-of-[2,3,4]
      await sign(v4, 3, 4, 5), // old 2-of-[2,3,4], new 2-of-[4,5,6]
      await sign(v5, 5, 6)
    ] as Envelope<RootDocument>[]
  }
}

async function pinnedAt (t: Parameters<typeof openState>[0], upTo: number) {
  const s = await openState(t)
  const { envs, docs } = await chain()
  await s.state.pinRoot(envs[0]!)
  for (let i = 1; i <= upTo - 1; i++) await s.state.updateRoot(envs[i]!)
  return { ...s, envs, docs }
}

t.test('walks v1→v5 with rotated keys and a threshold raised from 1-of-1 to 2-of-3', async (t) => {
  const { state, envs } = await pinnedAt(t, 1)
  for (const env of envs.slice(1)) t.equal((await state.updateRoot(env)).version, env.signed.version)
  t.equal(state.root!.version, 5)
  t.same(state.root!.roles.root, { keyids: ids(4, 5, 6), threshold: 2 })
})

t.test('walks a whole chain in one call, persisted in one batch', async (t) => {
  const s = await pinnedAt(t, 1)
  t.equal((await s.state.updateRoots(s.envs.slice(1))).version, 5)
  t.equal((await s.reopen()).root!.version, 5)
})

t.test('a skipped version (v1→v3) is BAD_ROOT_VERSION', async (t) => {
  const { state, db, envs } = await pinnedAt(t, 1)
  await rejects(t, db, () => state.updateRoot(envs[2]!), 'BAD_ROOT_VERSION')
  t.equal(state.root!.version, 1)
})

t.test('a repeated version (v2 again) is BAD_ROOT_VERSION', async (t) => {
  const { state, db, envs } = await pinnedAt(t, 2)
  await rejects(t, db, () => state.updateRoot(envs[1]!), 'BAD_ROOT_VERSION')
})

t.test('an older root (v2 after v3) is VERSION_ROLLBACK', async (t) => {
  const { state, db, envs } = await pinnedAt(t, 3)
  await rejects(t, db, () => state.updateRoot(envs[1]!), 'VERSION_ROLLBACK')
  t.equal(state.root!.version, 3)
})

t.test('a new root signed only by its new keys (not the old threshold) is refused', async (t) => {
  const { state, db, docs } = await pinnedAt(t, 1)
  await rejects(t, db, async () => state.updateRoot(await signEnvelope(docs[1]!, [k[2]!, k[3]!])), 'THRESHOLD_NOT_MET')
})

t.test('a new root signed only by the old keys (not its own threshold) is refused', async (t) => {
  const { state, db, docs } = await pinnedAt(t, 1)
  await rejects(t, db, async () => state.updateRoot(await signEnvelope(docs[1]!, [k[1]!])), 'THRESHOLD_NOT_MET')
  const takeover = rotateRoot(docs[0]!, { keys: { root: [keys.other.keyid] } })
  await rejects(t, db, async () => state.updateRoot(await signEnvelope(takeover, [k[1]!])), 'THRESHOLD_NOT_MET')
})

t.test('a chain whose middle step fails persists none of it', async (t) => {
  const { state, db, envs, docs } = await pinnedAt(t, 1)
  const forged = await signEnvelope(docs[2]!, [k[4]!]) // v3 signed by a key v2 never trusted
  await rejects(t, db, () => state.updateRoots([envs[1]!, forged, envs[3]!]), 'THRESHOLD_NOT_MET')
  t.equal(state.root!.version, 1)
})

t.test('unsigned and under-threshold roots are refused at pinning', async (t) => {
  const { state, db } = await openState(t)
  const two = newRoot({ org: 'acme', keys: { root: ids(1, 2), ...others }, thresholds: { root: 2 }, expires: LATER })
  await rejects(t, db, () => state.pinRoot({ signed: two, signatures: [] }), 'THRESHOLD_NOT_MET')
  await rejects(t, db, async () => state.pinRoot(await signEnvelope(two, [k[1]!])), 'THRESHOLD_NOT_MET')
  const once = await signEnvelope(two, [k[1]!])
  await rejects(t, db, () => state.pinRoot({ signed: two, signatures: [once.signatures[0]!, once.signatures[0]!] }), 'THRESHOLD_NOT_MET')
  await rejects(t, db, async () => state.pinRoot(await signEnvelope(two, [k[1]!, keys.other])), 'THRESHOLD_NOT_MET')
  t.equal(state.root, null)
})

t.test('the final root must not be expired; an intermediate one may be', async (t) => {
  const clock = new TestClock()
  const s = await openState(t, clock)
  const v1 = rootV1()
  const v2 = rotateRoot(v1, { expires: new Date(T0.getTime() - DAY) })
  const v3 = rotateRoot(v2, { expires: LATER })
  await s.state.pinRoot(await signEnvelope(v1, [k[1]!]))
  const e2 = await signEnvelope(v2, [k[1]!])
  await rejects(t, s.db, () => s.state.updateRoot(e2), 'EXPIRED')
  t.equal((await s.state.updateRoots([e2, await signEnvelope(v3, [k[1]!])])).version, 3)
})

t.test('a root may not change its organisation', async (t) => {
  const { state, db } = await pinnedAt(t, 1)
  const v2 = { ...rotateRoot(rootV1()), org: 'evil' }
  await rejects(t, db, async () => state.updateRoot(await signEnvelope(v2, [k[1]!])), 'BAD_DOCUMENT')
})

t.test('pinning twice: the same root is a no-op, another root is ALREADY_EXISTS', async (t) => {
  const { state, db } = await enrolled(t)
  const env = await signedRoot(baseRoot())
  t.equal((await state.pinRoot(env)).version, 1)
  await rejects(t, db, async () => state.pinRoot(await signedRoot(baseRoot({ org: 'other' }))), 'ALREADY_EXISTS')
})

t.test('nothing verifies before a root is pinned, or before a cycle began', async (t) => {
  const { state, db } = await openState(t)
  const env = await signEnvelope(rootV1(), [k[1]!])
  await rejects(t, db, () => state.updateRoot(env), 'NOT_FOUND')
  await state.pinRoot(env)
  const noCycle = new TrustedState({ db: sublevel(db, 'trust') })
  await rejects(t, db, () => noCycle.updateRoot(env), 'BAD_ARGUMENT')
})

t.test('a root envelope given as bytes, garbage or the wrong document type', async (t) => {
  const { state, db } = await openState(t)
  const bytes = serializeEnvelope(await signEnvelope(rootV1(), [k[1]!]))
  await rejects(t, db, () => state.pinRoot(bytes.subarray(0, 40)), 'BAD_ENVELOPE')
  await rejects(t, db, () => state.pinRoot(Buffer.from(JSON.stringify(JSON.parse(bytes.toString()), null, 1))), 'NOT_CANONICAL')
  await rejects(t, db, async () => state.pinRoot(await signEnvelope({ _type: 'release' }, [k[1]!])), 'BAD_DOCUMENT')
  await rejects(t, db, () => state.pinRoot({ signed: rootV1(), signatures: [{ keyid: 'x', sig: 'y' }] }), 'BAD_ENVELOPE')
  await rejects(t, db, () => state.pinRoot({ signed: { version: undefined }, signatures: [] }), 'BAD_ENVELOPE')
  t.equal((await state.pinRoot(bytes)).version, 1)
})

t.test('an expired trusted root still refuses an older root: VERSION_ROLLBACK', async (t) => {
  const clock = new TestClock()
  const s = await openState(t, clock)
  const v1 = rootV1()
  const v2 = rotateRoot(v1, { expires: new Date(T0.getTime() + DAY) })
  const v3 = rotateRoot(v2, { expires: new Date(T0.getTime() + 2 * DAY) })
  await s.state.pinRoot(await signEnvelope(v1, [k[1]!]))
  await s.state.updateRoots([await signEnvelope(v2, [k[1]!]), await signEnvelope(v3, [k[1]!])])
  clock.advance(10 * DAY)
  s.state.beginCycle()
  await rejects(t, s.db, async () => s.state.updateRoot(await signEnvelope(v2, [k[1]!])), 'VERSION_ROLLBACK')
  const v4 = rotateRoot(v3, { expires: LATER })
  t.equal((await s.state.updateRoot(await signEnvelope(v4, [k[1]!]))).version, 4, 'an expired root can still be rotated forward')
})
