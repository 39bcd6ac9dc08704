import t from 'tap'
import {
  signEnvelope, addSignature, verifyEnvelope, parseEnvelope, serializeEnvelope, signedBytes, envelopeHash,
  MAX_ENVELOPE_BYTES, type Envelope
} from '../../lib/trust/index.js'
import { canonicalBytes } from '../../lib/crypto/canonical.js'
import { key } from './helpers.js'

const a = key(1)
const b = key(2)
const c = key(3)
const role = { keyids: [a.keyid, b.keyid], threshold: 2 }
const doc = { _type: 'test', n: 1, list: ['x', 'y'] }

t.test('signed bytes are the canonical JSON of signed', async (t) => {
  const env = await signEnvelope({ b: 1, a: [true, null] }, [a])
  t.equal(signedBytes(env).toString(), '{"a":[true,null],"b":1}')
  t.equal(envelopeHash(env).length, 64)
  t.same(parseEnvelope(serializeEnvelope(env)), env, 'round trip through the canonical file form')
})

t.test('a threshold of distinct role keys verifies; foreign keys are ignored', async (t) => {
  const env = await signEnvelope(doc, [a, c, b])
  t.same(verifyEnvelope(env, role), { ok: true, threshold: 2, valid: [a.keyid, b.keyid], missing: 0 })
})

t.test('under threshold reports how many are missing', async (t) => {
  const env = await signEnvelope(doc, [a, c])
  t.same(verifyEnvelope(env, role), { ok: false, threshold: 2, valid: [a.keyid], missing: 1 })
  t.same(verifyEnvelope({ signed: doc, signatures: [] }, role), { ok: false, threshold: 2, valid: [], missing: 2 })
})

t.test('two copies of one signature do not meet threshold 2', async (t) => {
  const env = await signEnvelope(doc, [a])
  const twice: Envelope = { signed: doc, signatures: [env.signatures[0]!, { ...env.signatures[0]! }] }
  const r = verifyEnvelope(twice, role)
  t.equal(r.ok, false)
  t.same(r.valid, [a.keyid])
  t.equal(r.missing, 1)
})

t.test('a role listing one key twice still needs distinct signers', async (t) => {
  const env = await signEnvelope(doc, [a])
  t.equal(verifyEnvelope(env, { keyids: [a.keyid, a.keyid], threshold: 2 }).ok, false)
})

t.test('addSignature replaces an older signature by the same key', async (t) => {
  let env = await signEnvelope(doc, [a])
  env = await addSignature(env, a)
  env = await addSignature(env, b)
  t.equal(env.signatures.length, 2)
  t.equal(verifyEnvelope(env, role).ok, true)
})

t.test('an async Signer works', async (t) => {
  const slow = { keyid: a.keyid, sign: async (m: Uint8Array) => a.sign(m) }
  const env = await signEnvelope(doc, [slow, b])
  t.equal(verifyEnvelope(env, role).ok, true)
})

t.test('verifyEnvelope never throws on junk', async (t) => {
  const good = await signEnvelope(doc, [a, b])
  const sig = good.signatures[0]!
  const cases: unknown[] = [
    { signed: doc, signatures: [{ keyid: a.keyid, sig: sig.sig.replace(/^./, (x) => x === '0' ? '1' : '0') }] }, // flipped bit
    { signed: { ...doc, n: 2 }, signatures: good.signatures }, // changed document
    { signed: doc, signatures: [{ keyid: a.keyid, sig: 'zz' }] },
    { signed: doc, signatures: [{ keyid: 'nothex', sig: sig.sig }] },
    { signed: doc, signatures: [null, 1, 'x', { keyid: 5 }] },
    { signed: { x: undefined }, signatures: good.signatures },
    { signed: { n: NaN }, signatures: good.signatures },
    { signed: doc, signatures: 'nope' },
    { signed: doc },
    null,
    undefined,
    'string'
  ]
  for (const env of cases) {
    let r
    t.doesNotThrow(() => { r = verifyEnvelope(env as Envelope, role) })
    t.equal(r!.ok, false)
  }
  t.equal(verifyEnvelope(good, { keyids: [], threshold: 0 }).ok, false, 'threshold 0 never verifies')
})

t.test('parseEnvelope: a truncated envelope is BAD_ENVELOPE', async (t) => {
  const bytes = serializeEnvelope(await signEnvelope(doc, [a]))
  t.throws(() => parseEnvelope(bytes.subarray(0, bytes.length - 5)), { code: 'BAD_ENVELOPE' })
})

t.test('parseEnvelope: JSON that is not canonical is NOT_CANONICAL', async (t) => {
  const env = await signEnvelope(doc, [a])
  t.throws(() => parseEnvelope(JSON.stringify(env, null, 2)), { code: 'NOT_CANONICAL' })
  t.throws(() => parseEnvelope(JSON.stringify({ signatures: env.signatures, signed: env.signed })), { code: 'NOT_CANONICAL' })
})

t.test('parseEnvelope: garbage is BAD_ENVELOPE', async (t) => {
  for (const junk of ['', 'garbage', '\u0000\u0001', Buffer.from([0xff, 0xfe, 0x00]), '{"signed":']) {
    t.throws(() => parseEnvelope(junk), { code: 'BAD_ENVELOPE' }, JSON.stringify(junk.toString()))
  }
})

t.test('parseEnvelope: wrong shapes are BAD_ENVELOPE and name the field', async (t) => {
  const sig = (await signEnvelope(doc, [a])).signatures[0]!
  const shapes: Array<[unknown, RegExp]> = [
    [[], /envelope/],
    [{ signed: doc }, /signatures/],
    [{ signatures: [] }, /signed/],
    [{ signed: [1], signatures: [] }, /signed/],
    [{ signed: doc, signatures: [{ keyid: 'ab', sig: sig.sig }] }, /signatures\.0\.keyid/],
    [{ signed: doc, signatures: [{ keyid: a.keyid, sig: sig.sig.slice(2) }] }, /signatures\.0\.sig/],
    [{ signed: doc, signatures: [{ keyid: a.keyid.toUpperCase(), sig: sig.sig }] }, /keyid/],
    [{ signed: doc, signatures: [{ keyid: a.keyid, sig: sig.sig, extra: 1 }] }, /signatures\.0/],
    [{ signed: doc, signatures: [], more: true }, /envelope/]
  ]
  for (const [value, field] of shapes) {
    t.throws(() => parseEnvelope(canonicalBytes(value)), { code: 'BAD_ENVELOPE', message: field })
  }
})

t.test('parseEnvelope: oversized input is BAD_ENVELOPE before parsing', async (t) => {
  t.throws(() => parseEnvelope(Buffer.alloc(MAX_ENVELOPE_BYTES + 1, 0x20)), { code: 'BAD_ENVELOPE', message: /bytes/ })
})

t.test('parseEnvelope: a "__proto__" key anywhere is BAD_ENVELOPE', async (t) => {
  t.throws(() => parseEnvelope('{"signatures":[],"signed":{"__proto__":{"x":1},"a":1}}'), { code: 'BAD_ENVELOPE', message: /envelope\.signed/ })
  t.throws(() => parseEnvelope('{"signatures":[],"signed":{"a":[{"__proto__":1}]}}'), { code: 'BAD_ENVELOPE', message: /envelope\.signed\.a\.0/ })
})
