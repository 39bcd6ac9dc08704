import t from 'tap'
import { canonicalize } from '../../lib/crypto/canonical.js'
import { addSignature, serializeEnvelope } from '../../lib/trust/envelope.js'
import { verifyEvent, type SignedEvent } from '../../lib/report/event.js'
import { verifyReceived } from '../../lib/report/verify-received.js'
import type { IngestCounters } from '../../lib/report/ingest.js'
import { Agent, bytesOf, openStack, register, RELEASE } from './event-fixtures.js'

const statuses = (r: { results: { status: string, code?: string }[] }) => r.results.map((x) => x.code ?? x.status)

t.test('events in order are accepted, logged as received, and acknowledged', async (t) => {
  const s = await openStack(t)
  const a = new Agent()
  register(s.registry, a)
  const events = [await a.job('assigned'), await a.job('downloading'), await a.transfer({ origin: 10, site: 0, peer: 5, local: 0 })]
  const received = events.map(bytesOf)
  const r = await s.ingestor.ingest([received[0]!, received[1]!.toString(), events[2]!])
  t.same(r.results.map((x) => [x.status, x.seq, x.logSeq, x.endpoint]), [['accepted', 1, 1, a.keyid], ['accepted', 2, 2, a.keyid], ['accepted', 3, 3, a.keyid]])
  t.same(r.acks, { [a.keyid]: 3 })
  const entries = await s.log.read()
  t.same(entries.map((e) => e.source), ['agent', 'agent', 'agent'])
  const first = entries[0]!
  if (first.source !== 'agent') throw new Error('unreachable')
  t.equal(canonicalize(first.envelope), received[0]!.toString(), 'the log holds the envelope exactly as received')
  t.equal(first.hash, verifyEvent(received[0]!).hash)
  t.same(await s.ingestor.stored(a.keyid, 2), { hash: verifyEvent(received[1]!).hash, log: 2 })
  t.same(await s.ingestor.endpointState(a.keyid), { last: 3, replays: 0 })
  t.same(s.ingestor.counters, { accepted: 3, duplicate: 0, rejected: {} })
})

t.test('each rejection has its code, and nothing of it is stored', async (t) => {
  const s = await openStack(t)
  const a = new Agent()
  register(s.registry, a)
  const good = await a.job('assigned', { seq: 1 })
  const text = bytesOf(good).toString()

  const stranger = new Agent() // not registered
  const waiting = new Agent()
  register(s.registry, waiting, 'quarantined')
  const moved = new Agent('msp/customer-b')
  register(s.registry, moved, 'approved', 'msp/customer-a') // registered elsewhere than its event says
  const otherOrg = new Agent()
  otherOrg.org = 'globex'
  register(s.registry, otherOrg)
  const wrongSigner = await addSignature({ signed: good.signed, signatures: [] }, stranger.signer)
  const tampered = { signed: { ...good.signed, tenant: 'msp/customer-b' }, signatures: good.signatures }

  const batch = [
    'not json',
    text.replace('{"signatures"', '{ "signatures"'), // not canonical
    serializeEnvelope({ signed: { ...good.signed, extra: 1 }, signatures: good.signatures }), // bad shape
    'x'.repeat(70_000), // too large
    serializeEnvelope(tampered),
    serializeEnvelope(wrongSigner),
    bytesOf(await otherOrg.job('assigned')),
    bytesOf(await stranger.job('assigned')),
    bytesOf(await waiting.job('assigned')),
    bytesOf(await moved.job('assigned')),
    bytesOf(await a.job('downloading', { seq: 2 })) // a gap: seq 1 is not stored
  ]
  const r = await s.ingestor.ingest(batch)
  t.same(statuses(r), ['BAD_EVENT', 'BAD_EVENT', 'BAD_EVENT', 'BAD_EVENT', 'BAD_SIGNATURE', 'BAD_SIGNATURE',
    'WRONG_ORGANISATION', 'UNKNOWN_ENDPOINT', 'NOT_APPROVED', 'WRONG_TENANT', 'SEQUENCE_GAP'])
  t.ok(r.results.every((x) => x.status === 'rejected' && typeof x.detail === 'string'))
  t.same(r.acks, { [a.keyid]: 0 }, 'only an authentic, admissible endpoint is acknowledged')
  t.equal(s.log.last, 0, 'nothing logged')
  t.same(await s.log.read(), [])
  t.same(await s.ingestor.endpointState(a.keyid), { last: 0, replays: 0 })
  t.equal(await s.ingestor.stored(a.keyid, 2), undefined)
  t.same(s.ingestor.counters, {
    accepted: 0,
    duplicate: 0,
    rejected: { BAD_EVENT: 4, BAD_SIGNATURE: 2, WRONG_ORGANISATION: 1, UNKNOWN_ENDPOINT: 1, NOT_APPROVED: 1, WRONG_TENANT: 1, SEQUENCE_GAP: 1 }
  })

  t.notMatch(r.results[9]!.detail, 'customer-a', 'the tenant an endpoint is registered in is not named')

  // A caller's tenant scope: an endpoint outside it is WRONG_TENANT, without asking the registry
  // (so a scoped caller learns nothing of other tenants' endpoints); inside it is fine.
  let lookups = 0
  const get = s.registry.get.bind(s.registry)
  s.registry.get = (k) => { lookups++; return get(k) }
  const scoped = await s.ingestor.ingest([text, bytesOf(await stranger.job('assigned'))], { tenantScope: 'msp/customer-b' })
  t.same(statuses(scoped), ['WRONG_TENANT', 'WRONG_TENANT'])
  t.equal(scoped.results[0]!.detail, 'event of tenant "msp/customer-a" is outside "msp/customer-b"')
  t.equal(lookups, 0)
  t.same(scoped.acks, {})
  t.same(statuses(await s.ingestor.ingest([text], { tenantScope: 'msp' })), ['accepted'])
  await t.rejects(s.ingestor.ingest([text], { tenantScope: '../x' }), { code: 'BAD_ARGUMENT' })
  await t.rejects(s.ingestor.ingest('nope' as never), { code: 'BAD_ARGUMENT' })
})

t.test('duplicates are ignored and counted; the same seq with other bytes is a REPLAY', async (t) => {
  const s = await openStack(t)
  const a = new Agent()
  register(s.registry, a)
  const e1 = bytesOf(await a.job('assigned', { seq: 1 }))
  const e2 = bytesOf(await a.job('downloading', { seq: 2 }))
  const forged2 = bytesOf(await a.job('installed', { seq: 2 })) // the endpoint's key, another event with seq 2
  t.same(statuses(await s.ingestor.ingest([e1, e2])), ['accepted', 'accepted'])

  const again = await s.ingestor.ingest([e1, e2, forged2])
  t.same(statuses(again), ['duplicate', 'duplicate', 'REPLAY'])
  t.same(again.acks, { [a.keyid]: 2 }, 'a resend gets the ack it missed')

  // Within one batch: the first copy of a seq is accepted, a second identical one is a duplicate,
  // a different one a replay.
  const e3 = bytesOf(await a.job('verified', { seq: 3 }))
  const forged3 = bytesOf(await a.job('failed', { seq: 3 }))
  t.same(statuses(await s.ingestor.ingest([e3, e3, forged3])), ['accepted', 'duplicate', 'REPLAY'])

  t.equal(s.log.last, 3, 'each real event once')
  t.same(await s.ingestor.endpointState(a.keyid), { last: 3, replays: 2 })
  t.same(s.ingestor.counters, { accepted: 3, duplicate: 3, rejected: { REPLAY: 2 } })
})

t.test('a batch may hold an endpoint\'s events out of order; each endpoint keeps its order', async (t) => {
  const s = await openStack(t)
  const a = new Agent()
  const b = new Agent('msp/customer-b')
  register(s.registry, a)
  register(s.registry, b)
  const as = await Promise.all([1, 2, 3].map((seq) => a.job('downloading', { seq, attempt: seq })))
  const bs = await Promise.all([1, 2].map((seq) => b.job('downloading', { seq, attempt: seq })))
  const r = await s.ingestor.ingest([as[2]!, bs[1]!, as[0]!, bs[0]!, as[1]!].map(bytesOf))
  t.same(statuses(r), ['accepted', 'accepted', 'accepted', 'accepted', 'accepted'])
  t.same(r.results.map((x) => x.seq), [3, 2, 1, 1, 2], 'results stay in input order')
  t.same(r.acks, { [a.keyid]: 3, [b.keyid]: 2 })
  const logged = (await s.log.read()).map((e) => e.source === 'agent' ? [e.envelope.signed.endpoint === a.keyid ? 'a' : 'b', e.envelope.signed.seq] : [])
  t.same(logged, [['a', 1], ['b', 1], ['a', 2], ['b', 2], ['a', 3]], 'each endpoint\'s events are logged in seq order, in the slots they came in')

  // A hole in a batch: what follows it is a gap until the missing event arrives.
  const more = await Promise.all([4, 5, 6].map((seq) => a.job('verified', { seq })))
  const gap = await s.ingestor.ingest([more[0]!, more[2]!].map(bytesOf))
  t.same(statuses(gap), ['accepted', 'SEQUENCE_GAP'])
  t.same(gap.acks, { [a.keyid]: 4 })
  t.same(statuses(await s.ingestor.ingest(more.slice(1).map(bytesOf))), ['accepted', 'accepted'], 'the agent resends from its ack')
})

t.test('concurrent calls are serialised: a resend racing the original is a duplicate', async (t) => {
  const s = await openStack(t)
  const a = new Agent()
  register(s.registry, a)
  const batch = (await Promise.all([1, 2, 3, 4, 5].map((seq) => a.job('downloading', { seq })))).map(bytesOf)
  const [x, y] = await Promise.all([s.ingestor.ingest(batch), s.ingestor.ingest(batch)])
  t.same(statuses(x), ['accepted', 'accepted', 'accepted', 'accepted', 'accepted'])
  t.same(statuses(y), ['duplicate', 'duplicate', 'duplicate', 'duplicate', 'duplicate'])
  t.equal(s.log.last, 5)
})

t.test('exactly once across a restart; counters persist', async (t) => {
  const dir = t.testdir()
  const registry = new Map()
  const a = new Agent()
  register(registry, a)
  const batch = (await Promise.all(Array.from({ length: 10 }, (_, i) => a.job('downloading', { seq: i + 1 })))).map(bytesOf)
  const first = await openStack(t, { dir, registry })
  await first.ingestor.ingest(batch.slice(0, 7))
  await first.ingestor.ingest([batch[9]!]) // a gap
  await first.close()

  const second = await openStack(t, { dir, registry })
  t.same(second.ingestor.counters, { accepted: 7, duplicate: 0, rejected: { SEQUENCE_GAP: 1 } })
  const r = await second.ingestor.ingest(batch)
  t.same(statuses(r), [...Array(7).fill('duplicate'), 'accepted', 'accepted', 'accepted'])
  t.equal(second.log.last, 10)
  t.same((await second.log.read()).map((e) => e.source === 'agent' && e.envelope.signed.seq), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
  t.same(second.ingestor.counters, { accepted: 10, duplicate: 7, rejected: { SEQUENCE_GAP: 1 } })
})

t.test('a failing registry lookup stores nothing; counters$ follows each call', async (t) => {
  const s = await openStack(t)
  const a = new Agent()
  register(s.registry, a)
  const seen: IngestCounters[] = []
  const sub = s.ingestor.counters$.subscribe((c) => seen.push(c))
  t.teardown(() => sub.unsubscribe())
  const e1 = bytesOf(await a.job('assigned', { seq: 1 }))

  const lookup = s.registry.get.bind(s.registry)
  s.registry.get = () => { throw new Error('registry down') }
  await t.rejects(s.ingestor.ingest([e1]), { message: 'registry down' })
  s.registry.get = lookup
  t.equal(s.log.last, 0)
  t.same(s.ingestor.counters, { accepted: 0, duplicate: 0, rejected: {} }, 'a failed call counts nothing')

  await s.ingestor.ingest([e1])
  await s.ingestor.ingest([e1, 'garbage'])
  t.same(seen, [
    { accepted: 0, duplicate: 0, rejected: {} },
    { accepted: 1, duplicate: 0, rejected: {} },
    { accepted: 1, duplicate: 1, rejected: { BAD_EVENT: 1 } }
  ])
  await s.ingestor.close()
  await t.rejects(s.ingestor.ingest([e1]), { code: 'CLOSED' })
})

t.test('verifyReceived agrees with verifyEvent', async (t) => {
  const a = new Agent()
  const other = new Agent()
  const env = await a.job('failed', { code: 'INSTALL_FAILED', reason: 'exit 3 — «ü» \u2028 "quoted"' })
  const text = bytesOf(env).toString()
  const cosigned = await addSignature(env, other.signer)
  const big = Buffer.concat([Buffer.from('xx'), bytesOf(env), Buffer.from('yy')])
  const cases: Array<[string, SignedEvent | string | Uint8Array]> = [
    ['bytes', bytesOf(env)],
    ['text', text],
    ['object', env],
    ['bytes inside a larger buffer', new Uint8Array(big.buffer, big.byteOffset + 2, big.byteLength - 4)],
    ['second signature by another key', serializeEnvelope(cosigned)],
    ['other signature first', serializeEnvelope({ signed: env.signed, signatures: [...cosigned.signatures].reverse() })],
    ['signature by another key only', serializeEnvelope({ signed: env.signed, signatures: cosigned.signatures.filter((s) => s.keyid !== a.keyid) })],
    ['no signatures', serializeEnvelope({ signed: env.signed, signatures: [] })],
    ['a changed field', text.replace('"seq":1', '"seq":2')],
    ['a flipped signature', text.replace(/"sig":"(.)/, (_, c) => `"sig":"${c === '0' ? '1' : '0'}`)],
    ['white space', text.replace(',"signed":', ', "signed":')],
    ['keys out of order', `{"signed":${canonicalize(env.signed)},"signatures":${canonicalize(env.signatures)}}`],
    ['truncated', text.slice(0, -1)],
    ['an unknown envelope key', text.replace('{"signatures"', '{"a":1,"signatures"')],
    ['__proto__ in the event', text.replace('"spec":1', '"__proto__":{},"spec":1')],
    ['a lone surrogate', text.replace('exit 3', 'exit \\ud800')],
    ['too large', `${text}${' '.repeat(70_000)}`],
    ['not an envelope', '[]'],
    ['an object that is not one', { signed: 1 } as never],
    ['null', null as never]
  ]
  for (const [name, input] of cases) {
    const expected = outcome(() => verifyEvent(input))
    t.same(outcome(() => verifyReceived(input)), expected, `${name}: ${expected.code ?? 'valid'}`)
  }
  t.equal(verifyReceived(text).text, text, 'the received text is kept')
  t.equal(verifyReceived(env).text, undefined)
  t.same(outcome(() => verifyReceived(Buffer.concat([bytesOf(env).subarray(0, 20), Buffer.from([0xff]), bytesOf(env).subarray(21)]))), { code: 'BAD_EVENT' }, 'bytes that are not UTF-8')
})

function outcome (fn: () => { hash: string, event: unknown }): { code?: string, hash?: string, event?: unknown } {
  try {
    const { hash, event } = fn()
    return { hash, event }
  } catch (err) {
    return { code: (err as { code?: string }).code }
  }
}

t.test('a release other than the fixture\'s is accepted too (the fixture is not special)', async (t) => {
  const s = await openStack(t)
  const a = new Agent()
  register(s.registry, a)
  const other = { ...RELEASE, name: 'browser', envelopeHash: 'c'.repeat(64) }
  t.same(statuses(await s.ingestor.ingest([bytesOf(await a.job('assigned', { release: other }))])), ['accepted'])
})

t.test('with `endpoint`, a batch carries only that endpoint\'s events (the swarm link: a peer speaks for itself)', async (t) => {
  const s = await openStack(t)
  const a = new Agent()
  const b = new Agent()
  register(s.registry, a)
  register(s.registry, b)
  const result = await s.ingestor.ingest([bytesOf(await a.job('assigned')), bytesOf(await b.job('assigned'))], { endpoint: a.keyid })
  t.same(result.results.map((r) => r.code ?? r.status), ['accepted', 'WRONG_HOLDER'])
  t.same(result.acks, { [a.keyid]: 1 }, 'only the sender is acknowledged')
  t.equal(s.ingestor.counters.rejected.WRONG_HOLDER, 1, 'and the refusal is counted')
})
