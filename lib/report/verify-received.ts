// verifyEvent (lib/report/event.ts) for the console's hot path: the same checks, codes and result,
// with the work done once. verifyEvent canonicalises `signed` twice (for the signature, then for
// the hash) after parsing already proved the received bytes canonical; at ~20k events/s those
// copies cost a third of the signature check. Received bytes are canonical JSON of
// { signatures, signed } with "signatures" first (RFC 8785 key order) and nothing but hex inside
// it, so the signed bytes are the slice after `,"signed":`, exactly as the agent signed them.
// The envelope's checks are parseEnvelope's, the quick way first: parseCanonical (JSON.parse once,
// the canonical form proven without re-serialising by key), no "__proto__" key (in canonical
// text such a key can only be written `"__proto__"`), and the envelope's shape by hand. Whatever
// that does not accept goes through parseEnvelope itself, which decides and names the problem.
// One difference: bytes that are not UTF-8 are BAD_EVENT here (verifyEvent decodes them with
// U+FFFD in place, so the bytes kept would not be the bytes verified). test/report/ingest.test.ts
// and test/report/fast-paths.test.ts check it against verifyEvent on good and broken events.
import { isUtf8 } from 'node:buffer'
import { PatchswarmError } from '../errors.js'
import { canonicalBytes, parseCanonical } from '../crypto/canonical.js'
import { contentHashHex } from '../crypto/hash.js'
import { SIGNATURE_BYTES, isKeyId, publicKeyFromId, verify } from '../crypto/keys.js'
import { type Envelope, MAX_SIGNATURES, checkEnvelope, parseEnvelope } from '../trust/envelope.js'
import { MAX_EVENT_BYTES, parseEvent, type AgentEvent, type SignedEvent } from './event.js'

const SIGNED_FIELD = Buffer.from(',"signed":')

export interface VerifiedEvent {
  event: AgentEvent
  envelope: SignedEvent
  /** envelopeHash: hex SHA-256 of the signed bytes. */
  hash: string
  /** The envelope's JSON as received, when it came as text or bytes (canonical, so exact). */
  text?: string
}

/** Throws BAD_EVENT (size, encoding, shape) or BAD_SIGNATURE, like verifyEvent. */
export function verifyReceived (input: SignedEvent | Uint8Array | string): VerifiedEvent {
  let envelope: Envelope<Record<string, unknown>>
  let bytes: Buffer | undefined
  let text: string | undefined
  try {
    if (typeof input === 'string' || input instanceof Uint8Array) {
      const raw = typeof input === 'string' ? Buffer.from(input) : Buffer.from(input.buffer, input.byteOffset, input.byteLength)
      if (raw.byteLength > MAX_EVENT_BYTES) throw PatchswarmError.BAD_EVENT(`event is ${raw.byteLength} bytes, more than ${MAX_EVENT_BYTES}`)
      // Decoding would turn broken UTF-8 into U+FFFD: then the bytes kept would not be the bytes parsed.
      if (!isUtf8(raw)) throw PatchswarmError.BAD_EVENT('event is not UTF-8')
      text = typeof input === 'string' ? input : raw.toString('utf8')
      envelope = quickEnvelope(text) ?? parseEnvelope(text)
      const at = raw.indexOf(SIGNED_FIELD)
      bytes = raw.subarray(at + SIGNED_FIELD.byteLength, raw.byteLength - 1)
    } else {
      envelope = checkEnvelope(input)
    }
  } catch (err) {
    if ((err as PatchswarmError).code === 'BAD_EVENT') throw err
    throw PatchswarmError.BAD_EVENT((err as PatchswarmError).detail ?? String(err), err)
  }
  const event = parseEvent(envelope.signed)
  if (bytes === undefined) {
    try {
      bytes = canonicalBytes(envelope.signed)
    } catch {} // not JSON: no signature can be valid
  }
  if (bytes === undefined || !signedBy(envelope, event.endpoint, bytes)) {
    throw PatchswarmError.BAD_SIGNATURE(`event ${event.seq} of endpoint ${event.endpoint.slice(0, 12)}… is not signed by that endpoint`)
  }
  const result: VerifiedEvent = { event, envelope: envelope as SignedEvent, hash: contentHashHex(bytes) }
  if (text !== undefined) result.text = text
  return result
}

// `keyid` is the event's endpoint, a key id by the event's schema.
function signedBy (envelope: Envelope, keyid: string, bytes: Buffer): boolean {
  const key = publicKeyFromId(keyid)
  for (const s of envelope.signatures) {
    if (s.keyid === keyid && verify(Buffer.from(s.sig, 'hex'), bytes, key)) return true
  }
  return false
}

const SIG_HEX = new RegExp(`^[0-9a-f]{${SIGNATURE_BYTES * 2}}$`)

/**
 * The envelope in `text` when parseEnvelope would accept it and the quick checks show it (a
 * subset of parseEnvelope's: every rule is one of its rules); undefined otherwise, for
 * parseEnvelope to decide. The caller has checked the size (MAX_EVENT_BYTES < MAX_ENVELOPE_BYTES).
 */
function quickEnvelope (text: string): Envelope<Record<string, unknown>> | undefined {
  let value: unknown
  try {
    value = parseCanonical(text)
  } catch {
    return undefined
  }
  if (text.includes('"__proto__"') || !isPlain(value)) return undefined
  for (const k in value) if (k !== 'signatures' && k !== 'signed') return undefined
  const { signatures, signed } = value
  if (!isPlain(signed) || !Array.isArray(signatures) || signatures.length > MAX_SIGNATURES) return undefined
  for (const s of signatures as unknown[]) {
    if (!isPlain(s)) return undefined
    for (const k in s) if (k !== 'keyid' && k !== 'sig') return undefined
    if (!isKeyId(s.keyid) || typeof s.sig !== 'string' || !SIG_HEX.test(s.sig)) return undefined
  }
  return { signatures: signatures as Envelope['signatures'], signed }
}

/** An object as JSON.parse makes them (not an array). */
function isPlain (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype
}
