// The quick checks of the ingestion path against the strict ones they stand in for: they must
// accept and reject exactly the same inputs, with the same result and error.
//   - isIsoUtc (lib/trust/fields.ts) against the round trip through Date it replaced;
//   - parseEvent's hand-written shape check (lib/report/event.ts) against the zod schema alone;
//   - verifyReceived (lib/report/verify-received.ts) against a reference verifier built from the
//     plain rules (JSON.parse, canonicalize must give the text back, checkEnvelope, the zod
//     schema, verifyEnvelope, envelopeHash), and against verifyEvent.
import t from 'tap'
import { canonicalize } from '../../lib/crypto/canonical.js'
import { isIsoUtc, parseShape, timestamp } from '../../lib/trust/fields.js'
import { addSignature, checkEnvelope, envelopeHash, serializeEnvelope, verifyEnvelope } from '../../lib/trust/envelope.js'
import { eventSchema, parseEvent, verifyEvent, MAX_EVENT_BYTES, type AgentEvent, type SignedEvent } from '../../lib/report/event.js'
import { verifyReceived } from '../../lib/report/verify-received.js'
import { PatchswarmError } from '../../lib/errors.js'
import { Agent, RELEASE, bytesOf } from './event-fixtures.js'

/** A test name in printable ASCII (a raw U+2028 would break the TAP stream). */
const ascii = (s: string): string => JSON.stringify(s).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)

// ---------------------------------------------------------------------------------------------
// Timestamps

// The check as it was: the pattern, then Date.parse and toISOString must give the text back.
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z$/
function roundTrip (s: string): boolean {
  const ms = Date.parse(s)
  const back = Number.isNaN(ms) ? '' : new Date(ms).toISOString()
  return ISO_UTC.test(s) && (back === s || back === s.replace('Z', '.000Z'))
}

t.test('isIsoUtc accepts exactly what the round trip through Date accepts', async (t) => {
  const named: Array<[string, boolean]> = [
    ['2030-01-01T00:00:00Z', true], ['2030-01-01T00:00:00.000Z', true], ['2030-01-01T23:59:59.999Z', true],
    ['2024-02-29T00:00:00Z', true], ['2024-02-30T00:00:00Z', false], ['2023-02-29T00:00:00Z', false],
    ['1900-02-29T00:00:00Z', false], ['2000-02-29T00:00:00Z', true], ['2024-04-31T00:00:00Z', false],
    ['2024-01-01T24:00:00Z', false], ['2024-01-01T23:60:00Z', false], ['2024-01-01T23:59:60Z', false],
    ['2024-00-01T00:00:00Z', false], ['2024-13-01T00:00:00Z', false], ['2024-01-00T00:00:00Z', false],
    ['2024-01-01T00:00:00.5Z', false], ['2024-01-01T00:00:00.0000Z', false], ['2024-01-01T00:00:00+00:00', false],
    ['2024-01-01 00:00:00Z', false], ['2024-01-01T00:00:00z', false], ['+002024-01-01T00:00:00Z', false],
    ['2024-1-01T00:00:00Z', false], ['2024-01-01T00:00Z', false], ['2024-01-01', false], ['', false],
    ['２024-01-01T00:00:00Z', false], ['2024-01-01T00:00:00Z ', false], ['0000-01-01T00:00:00Z', true]
  ]
  for (const [s, ok] of named) {
    t.equal(isIsoUtc(s), ok, ascii(s))
    t.equal(roundTrip(s), ok, `reference: ${ascii(s)}`)
    t.equal(timestamp.safeParse(s).success, ok, `schema: ${ascii(s)}`)
  }

  // Every month and day (00-32) of years that test the leap rules, at times in and out of range.
  const years = ['0000', '0001', '0004', '0100', '0400', '1582', '1600', '1700', '1900', '1970', '1999', '2000', '2023', '2024', '2100', '2400', '9999']
  const times = ['00:00:00', '23:59:59', '24:00:00', '12:60:00', '12:00:60', '99:99:99', '1a:00:00']
  const fractions = ['', '.000', '.999', '.5', '.1234', '.abc']
  let n = 0
  let accepted = 0
  const wrong: string[] = []
  const check = (s: string) => {
    const want = roundTrip(s)
    if (isIsoUtc(s) !== want) wrong.push(s)
    n++
    if (want) accepted++
  }
  for (const y of years) {
    for (let m = 0; m <= 13; m++) {
      for (let d = 0; d <= 32; d++) {
        for (const time of times) for (const f of fractions) check(`${y}-${String(m).padStart(2, '0')}-${String(d).padStart(2, '0')}T${time}${f}Z`)
      }
    }
  }
  // Every character of valid times replaced by characters that are and are not allowed there.
  const palette = ['0', '1', '2', '3', '5', '6', '9', '-', ':', '.', 'T', 'Z', 'z', 't', ' ', '+', 'a', '/', '\u0663', '\uff10', '']
  for (const s of ['2024-02-29T23:59:59Z', '2023-12-31T00:00:00.000Z', '1999-09-09T09:09:09.909Z']) {
    for (let i = 0; i <= s.length; i++) {
      for (const c of palette) {
        check(s.slice(0, i) + c + s.slice(i + 1))
        check(s.slice(0, i) + c + s.slice(i))
      }
    }
  }
  t.same(wrong.slice(0, 10), [], `${n} strings, ${accepted} valid`)
  t.ok(accepted > 10_000 && n - accepted > 50_000)
})

// ---------------------------------------------------------------------------------------------
// The event's shape

/** parseEvent as it was: the zod schema alone. */
function zodEvent (value: unknown): AgentEvent {
  try {
    return parseShape(eventSchema, value, 'event')
  } catch (err) {
    throw PatchswarmError.BAD_EVENT((err as PatchswarmError).detail ?? String(err), err)
  }
}

type Outcome = { value: string } | { code: string | undefined, detail: string | undefined }

/** The result as its JSON (which keeps the key order), or the error's code and detail. */
function outcomeOf (fn: () => unknown): Outcome {
  try {
    return { value: JSON.stringify(fn()) }
  } catch (err) {
    return { code: (err as PatchswarmError).code, detail: (err as PatchswarmError).detail }
  }
}

async function sampleEvents (): Promise<AgentEvent[]> {
  const a = new Agent()
  const other = { ...RELEASE, name: 'browser', packageVersion: '10.0.19041.1+b1~rc1', platform: 'any', envelopeHash: 'c'.repeat(64) }
  const signed = [
    await a.job('assigned'),
    await a.job('failed', { rollout: 'spring-2030', code: 'INSTALL_FAILED', reason: 'exit 3 — «ü» \u2028 "quoted" 😀', release: other, action: 'rollback', attempt: 1_000_000 }),
    await a.transfer({ origin: 0, site: Number.MAX_SAFE_INTEGER, peer: 5, local: 1 }),
    await a.agentState('started')
  ]
  const events = signed.map((e) => e.signed)
  events.push(a.event({ kind: 'job', job: { release: RELEASE, action: 'install', state: 'installed', attempt: 2, output: 'x'.repeat(8192), reason: 'r'.repeat(1000) } }))
  events.push(a.event({ kind: 'agent', agent: { state: 'breaker-open', version: 'v'.repeat(64), release: RELEASE, reason: 'too many failures' } }))
  events.push(a.event({ kind: 'inventory', inventory: { os: 'debian 12', disks: [{ size: 1 }] } }))
  events.push({ ...a.event({ kind: 'job', job: { release: RELEASE, action: 'install', state: 'installed', attempt: 1 } }), tenant: '', at: '2024-02-29T23:59:59Z' })
  return events
}

/** Every path to a value inside `v` (objects and arrays), the root excluded. */
function paths (v: unknown, at: string[] = []): string[][] {
  if (typeof v !== 'object' || v === null) return []
  return Object.keys(v).flatMap((k) => [[...at, k], ...paths((v as Record<string, unknown>)[k], [...at, k])])
}

/** A deep copy of `v` with `path` set to `to` (deleted when `to` is DELETE). */
const DELETE = Symbol('delete')
function edited (v: unknown, path: string[], to: unknown): unknown {
  const copy = structuredClone(v) as Record<string, unknown>
  let o = copy
  for (const k of path.slice(0, -1)) o = o[k] as Record<string, unknown>
  const last = path[path.length - 1]!
  if (to === DELETE) delete o[last]
  else Object.defineProperty(o, last, { value: to, enumerable: true, writable: true, configurable: true })
  return copy
}

t.test('parseEvent\'s quick shape check agrees with the zod schema', async (t) => {
  const events = await sampleEvents()
  const keyid = new Agent().keyid
  const palette: unknown[] = [
    undefined, null, true, false, 0, 1, -1, 1.5, 2, 1_000_000, 1_000_001, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER + 1,
    NaN, Infinity, -0, '', 'x', 'event', 'job', 'transfer', 'agent', 'inventory', 'install', 'rollback', 'reset-breaker',
    'installed', 'started', 'breaker-closed', 'A', 'INSTALL_FAILED', 'install_failed', 'A'.repeat(64), 'A'.repeat(65),
    'a'.repeat(64), 'A'.repeat(64).toLowerCase().replace('a', 'g'), 'a'.repeat(63), 'a'.repeat(65), keyid, keyid.toUpperCase(),
    'x'.repeat(64), 'x'.repeat(65), 'x'.repeat(128), 'x'.repeat(129), 'x'.repeat(1000), 'x'.repeat(1001), 'x'.repeat(8192), 'x'.repeat(8193),
    '..', 'a..b', '.a', 'msp', 'msp/customer-a', 'msp/../x', 'msp//x', '/msp', 'msp/', 'a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p', 'a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q',
    'linux', 'Linux', 'linux-x64', 'linux-', 'any', '1.0', '2.4.1', 'v1', '1..0', '1'.repeat(65), 'é', '\u200b',
    '2030-01-01T00:00:00Z', '2024-02-30T00:00:00Z', '2024-02-29T00:00:00.000Z', '2030-01-01T00:00:00', 1893456000000,
    [], {}, ['a'], { ...RELEASE }, { origin: 1, site: 2, peer: 3, local: 4 }, Object.create(null), new Date(0), new Map()
  ]
  let zodCalls = 0
  const safeParse = eventSchema.safeParse
  eventSchema.safeParse = ((...args: Parameters<typeof safeParse>) => { zodCalls++; return safeParse.apply(eventSchema, args) }) as typeof safeParse
  t.teardown(() => { eventSchema.safeParse = safeParse })

  for (const e of events) parseEvent(e)
  t.equal(zodCalls, 1, 'only the inventory event goes to zod')

  const cases: unknown[] = [...events, null, undefined, 1, 'event', [], {}, [events[0]]]
  for (const e of events) {
    for (const p of paths(e)) {
      cases.push(edited(e, p, DELETE))
      for (const v of palette) cases.push(edited(e, p, v))
    }
    cases.push(Object.assign(Object.create(null), structuredClone(e)))
    cases.push(Object.assign(new (class Event {})(), structuredClone(e)))
    cases.push({ ...structuredClone(e), extra: 1 }, { ...structuredClone(e), inventory: {} }, { ...structuredClone(e), job: undefined })
    cases.push({ ...structuredClone(e), __proto__: { inventory: { a: 1 } } })
    for (const kind of ['job', 'transfer', 'agent', 'inventory']) cases.push({ ...structuredClone(e), kind })
    for (const p of paths(e)) {
      const parent = p.slice(0, -1)
      cases.push(edited(e, [...parent, 'extra'], 1), edited(e, [...parent, '__proto__'], {}), edited(e, [...parent, 'constructor'], 1))
    }
  }
  let accepted = 0
  const wrong: unknown[] = []
  for (const c of cases) {
    const want = outcomeOf(() => zodEvent(c))
    const got = outcomeOf(() => parseEvent(c))
    if (JSON.stringify(got) !== JSON.stringify(want)) wrong.push({ input: c, got, want })
    if ('value' in want) accepted++
  }
  t.same(wrong.slice(0, 5), [], `${cases.length} inputs, ${accepted} valid`)
  t.ok(accepted > 100 && cases.length - accepted > 2000)

  const fresh = structuredClone(events[1]!)
  const parsed = parseEvent(fresh)
  t.not(parsed, fresh, 'a fresh object, as zod returns')
  t.not(parsed.job, fresh.job)
  t.not(parsed.job!.release, fresh.job!.release)
  t.same(Object.keys(parseEvent({ ...fresh, seq: fresh.seq, _type: 'event' })), Object.keys(zodEvent(fresh)), 'keys in the schema\'s order')
})

// ---------------------------------------------------------------------------------------------
// A received event, end to end

/** The checks of a received event as plain rules, each as strict as it gets. */
function referenceVerify (input: string | Uint8Array): { event: AgentEvent, hash: string } {
  const bytes = typeof input === 'string' ? Buffer.from(input) : Buffer.from(input.buffer, input.byteOffset, input.byteLength)
  if (bytes.byteLength > MAX_EVENT_BYTES) throw PatchswarmError.BAD_EVENT('too large')
  const text = typeof input === 'string' ? input : bytes.toString('utf8')
  let envelope
  try {
    const value = JSON.parse(text) as unknown
    if (canonicalize(value) !== text) throw PatchswarmError.NOT_CANONICAL('not canonical')
    envelope = checkEnvelope(value)
  } catch (err) {
    throw PatchswarmError.BAD_EVENT(String(err))
  }
  const event = zodEvent(envelope.signed)
  if (!verifyEnvelope(envelope, { keyids: [event.endpoint], threshold: 1 }).ok) throw PatchswarmError.BAD_SIGNATURE('not signed')
  return { event, hash: envelopeHash(envelope) }
}

function result (fn: () => { event: unknown, hash: string }): { code?: string, hash?: string, event?: unknown } {
  try {
    const { event, hash } = fn()
    return { event, hash }
  } catch (err) {
    return { code: (err as PatchswarmError).code }
  }
}

t.test('verifyReceived agrees with the reference and with verifyEvent on received bytes', async (t) => {
  const a = new Agent()
  const b = new Agent()
  const env = await a.job('failed', { code: 'INSTALL_FAILED', reason: 'exit 3 — «ü» é \u2028 "quoted" \\ / 😀 \u0007 \u001f' })
  const text = bytesOf(env).toString()
  const cosigned = await addSignature(env, b.signer)
  const sig = env.signatures[0]!
  const signedText = canonicalize(env.signed)
  const withSigned = (signed: string, sigs = `[{"keyid":"${sig.keyid}","sig":"${sig.sig}"}]`) => `{"signatures":${sigs},"signed":${signed}}`
  const resign = async (signed: Record<string, unknown>) => serializeEnvelope(await addSignature({ signed, signatures: [] }, a.signer)).toString()
  const sixtyFive = `[${Array(65).fill(`{"keyid":"${sig.keyid}","sig":"${sig.sig}"}`).join(',')}]`
  const cases: Array<[string, string]> = [
    ['as signed', text],
    ['cosigned', serializeEnvelope(cosigned).toString()],
    ['other signature first', serializeEnvelope({ signed: env.signed, signatures: [...cosigned.signatures].reverse() }).toString()],
    ['an escaped é', text.replace('é', '\\u00e9')],
    ['an escaped /', text.replace(' / ', ' \\/ ')],
    ['an escaped emoji', text.replace('😀', '\\ud83d\\ude00')],
    ['a lone surrogate', text.replace('😀', '\\ud83d')],
    ['a lone surrogate, escaped backslash before', text.replace('😀', '\\\\ud83d')],
    ['\\u001F in upper case', text.replace('\\u001f', '\\u001F')],
    ['\\u0007 as \\a', text.replace('\\u0007', '\\a')],
    ['\\u0007 raw', text.replace('\\u0007', '\u0007')],
    ['U+2028 escaped', text.replace('\u2028', '\\u2028')],
    ['seq 1.0', text.replace('"seq":1', '"seq":1.0')],
    ['seq 1e0', text.replace('"seq":1', '"seq":1e0')],
    ['attempt 01', text.replace('"attempt":1', '"attempt":01')],
    ['attempt -0', text.replace('"attempt":1', '"attempt":-0')],
    ['seq 1e400', text.replace('"seq":1', '"seq":1e400')],
    ['seq twice', text.replace('"seq":1', '"seq":1,"seq":1')],
    ['tenant twice', text.replace('"tenant":', '"tenant":"x","tenant":')],
    ['an integer-like key', text.replace('{"_type"', '{"0":1,"_type"')],
    ['an integer-like key, re-signed', await resign({ ...env.signed, 0: 1 })],
    ['__proto__ in signed', text.replace('"spec":1', '"__proto__":{},"spec":1')],
    ['__proto__ in the envelope', text.replace('{"signatures"', '{"__proto__":1,"signatures"')],
    ['__proto__ in a signature', text.replace('{"keyid"', '{"__proto__":1,"keyid"')],
    ['signature with an extra key', text.replace(/"sig":"[0-9a-f]+"/, (m) => `${m},"x":1`)],
    ['signature in upper case', text.replace(/"sig":"[0-9a-f]+"/, (m) => m.toUpperCase().replace('"SIG"', '"sig"'))],
    ['keyid in upper case', text.replace(`"keyid":"${sig.keyid}"`, `"keyid":"${sig.keyid.toUpperCase()}"`)],
    ['65 signatures', withSigned(signedText, sixtyFive)],
    ['signatures an object', withSigned(signedText, '{}')],
    ['signatures empty', withSigned(signedText, '[]')],
    ['a signature not an object', withSigned(signedText, '[1]')],
    ['signed an array', withSigned('[]')],
    ['signed null', withSigned('null')],
    ['signed a string', withSigned('"x"')],
    ['signed empty', withSigned('{}')],
    [',"signed": inside a string of signed', await resign({ ...env.signed, job: { ...env.signed.job!, reason: 'a,"signed":{}' } })],
    ['a key after signed', text.slice(0, -1) + ',"z":1}'],
    ['white space', text.replace(',"signed":', ', "signed":')],
    ['trailing newline', text + '\n'],
    ['byte order mark', '\ufeff' + text],
    ['keys out of order', `{"signed":${signedText},"signatures":${canonicalize(env.signatures)}}`],
    ['truncated', text.slice(0, -1)],
    ['a changed field', text.replace('"seq":1', '"seq":2')],
    ['a timestamp that does not exist, re-signed', await resign({ ...env.signed, at: '2024-02-30T00:00:00Z' })],
    ['a leap day, re-signed', await resign({ ...env.signed, at: '2024-02-29T00:00:00Z' })],
    ['an unknown event key, re-signed', await resign({ ...env.signed, extra: 1 })],
    ['an inventory event', serializeEnvelope(await signEventOf(a, { kind: 'inventory', inventory: { os: 'debian', n: [1, 2.5] } })).toString()],
    ['an agent event', bytesOf(await a.agentState('stopped')).toString()],
    ['a transfer event', bytesOf(await a.transfer({ origin: 1, site: 2, peer: 3, local: 4 })).toString()],
    ['not json', 'not json'],
    ['too large', text + ' '.repeat(MAX_EVENT_BYTES)]
  ]
  let valid = 0
  for (const [name, input] of cases) {
    const want = result(() => referenceVerify(input))
    if (want.code === undefined) valid++
    t.same(result(() => verifyReceived(input)), want, `${name} (text): ${want.code ?? 'valid'}`)
    t.same(result(() => verifyReceived(Buffer.from(input))), want, `${name} (bytes)`)
    t.same(result(() => verifyEvent(input)), want, `${name}: verifyEvent`)
  }
  t.ok(valid >= 8, `${valid} of ${cases.length} valid`)
  const [, signedField] = cases.find(([n]) => n.startsWith(',"signed":'))!
  t.equal(verifyReceived(signedField).event.job!.reason, 'a,"signed":{}')
})

async function signEventOf (a: Agent, fact: Partial<AgentEvent> & Pick<AgentEvent, 'kind'>): Promise<SignedEvent> {
  return await addSignature({ signed: a.event(fact), signatures: [] }, a.signer) as SignedEvent
}

t.test('a raw lone surrogate in a string input is refused, as before', async (t) => {
  const a = new Agent()
  const env = await a.job('failed', { reason: 'x😀' })
  const text = bytesOf(env).toString().replace('😀', '\ud83d')
  t.same(result(() => verifyReceived(text)), { code: 'BAD_EVENT' })
  t.same(result(() => verifyReceived(text)), result(() => referenceVerify(text)))
})
