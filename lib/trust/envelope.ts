// Signed envelopes: { signed, signatures: [{ keyid, sig }] }. What is signed is the canonical JSON
// (RFC 8785) of `signed`, so any party can recompute the exact bytes. Verifying an envelope answers
// how many distinct, authorised keys signed it; it never throws, because a bad signature is an
// answer (not enough valid signatures), not an accident.
import { z } from 'zod'
import { PatchswarmError } from '../errors.js'
import { canonicalBytes, parseCanonical } from '../crypto/canonical.js'
import { contentHashHex } from '../crypto/hash.js'
import { type Signer, SIGNATURE_BYTES, isKeyId, publicKeyFromId, verify } from '../crypto/keys.js'
import { keyid } from './fields.js'

export const MAX_ENVELOPE_BYTES = 1024 * 1024
export const MAX_SIGNATURES = 64

export interface Signature {
  keyid: string
  sig: string
}

export interface Envelope<T = unknown> {
  signed: T
  signatures: Signature[]
}

export interface RoleThreshold {
  keyids: readonly string[]
  threshold: number
}

export interface VerifyResult {
  ok: boolean
  threshold: number
  /** Distinct authorised keys whose signature is valid. */
  valid: string[]
  /** How many more valid signatures the threshold needs (0 when ok). */
  missing: number
}

const SIG_HEX = new RegExp(`^[0-9a-f]{${SIGNATURE_BYTES * 2}}$`)

const envelopeShape = z.strictObject({
  signed: z.record(z.string(), z.unknown()),
  signatures: z.array(z.strictObject({
    keyid,
    sig: z.string().regex(SIG_HEX, `must be a ${SIGNATURE_BYTES}-byte signature in lowercase hex`)
  })).max(MAX_SIGNATURES)
})

/** The bytes every signature of the envelope covers. */
export function signedBytes (envelope: Envelope): Buffer {
  return canonicalBytes(envelope.signed)
}

/** Hex SHA-256 of the signed bytes: names one exact document, whatever signatures it carries. */
export function envelopeHash (envelope: Envelope): string {
  return contentHashHex(signedBytes(envelope))
}

/** The envelope as it goes into a file or onto the wire: canonical JSON. */
export function serializeEnvelope (envelope: Envelope): Buffer {
  return canonicalBytes(envelope)
}

export async function signEnvelope<T> (signed: T, signers: Signer[]): Promise<Envelope<T>> {
  let envelope: Envelope<T> = { signed, signatures: [] }
  for (const signer of signers) envelope = await addSignature(envelope, signer)
  return envelope
}

/** Returns a new envelope with `signer`'s signature added (replacing an older one by the same key). */
export async function addSignature<T> (envelope: Envelope<T>, signer: Signer): Promise<Envelope<T>> {
  const sig = Buffer.from(await signer.sign(signedBytes(envelope))).toString('hex')
  const others = envelope.signatures.filter((s) => s.keyid !== signer.keyid)
  return { signed: envelope.signed, signatures: [...others, { keyid: signer.keyid, sig }] }
}

/**
 * Parses an envelope file. The whole file must be canonical JSON of bounded size, so that one
 * document has one byte form; anything truncated, garbled or mis-shaped is BAD_ENVELOPE.
 */
export function parseEnvelope (bytes: Uint8Array | string): Envelope<Record<string, unknown>> {
  const size = typeof bytes === 'string' ? Buffer.byteLength(bytes) : bytes.byteLength
  if (size > MAX_ENVELOPE_BYTES) throw PatchswarmError.BAD_ENVELOPE(`envelope is ${size} bytes, more than ${MAX_ENVELOPE_BYTES}`)
  let value: unknown
  try {
    value = parseCanonical(bytes)
  } catch (err) {
    if ((err as PatchswarmError).code === 'NOT_CANONICAL') throw err
    throw PatchswarmError.BAD_ENVELOPE('envelope is not JSON: ' + (err as Error).message, err)
  }
  return checkEnvelope(value)
}

/** Checks the shape of an envelope that arrived as a value rather than bytes. */
export function checkEnvelope (value: unknown): Envelope<Record<string, unknown>> {
  // JSON.parse keeps "__proto__" as a plain key, but copying objects (as validators do) may drop it
  // or turn it into a prototype; no document of ours has one, so it is refused outright.
  const proto = findProtoKey(value, 'envelope')
  if (proto !== null) throw PatchswarmError.BAD_ENVELOPE(`${proto}: "__proto__" is not allowed as a key`)
  const result = envelopeShape.safeParse(value)
  if (!result.success) {
    const issue = result.error.issues[0]!
    const field = ['envelope', ...issue.path.map(String)].join('.')
    throw PatchswarmError.BAD_ENVELOPE(`${field}: ${issue.message}`, result.error)
  }
  return result.data
}

/** Counts distinct valid signatures by the role's keys; signatures by other keys are ignored. */
export function verifyEnvelope (envelope: Envelope, role: RoleThreshold): VerifyResult {
  const threshold = role.threshold
  const valid: string[] = []
  let message: Buffer | null = null
  try {
    message = signedBytes(envelope)
  } catch {} // a `signed` that is not JSON carries no valid signature
  const signatures = Array.isArray(envelope?.signatures) ? envelope.signatures : []
  const authorised = new Set(role.keyids)
  for (const s of signatures) {
    if (message === null) break
    if (typeof s !== 'object' || s === null) continue
    const { keyid, sig } = s
    if (!authorised.has(keyid) || valid.includes(keyid) || !isKeyId(keyid)) continue
    if (typeof sig !== 'string' || !SIG_HEX.test(sig)) continue
    if (verify(Buffer.from(sig, 'hex'), message, publicKeyFromId(keyid))) valid.push(keyid)
  }
  // A threshold below 1 would let an unsigned document through; it never verifies.
  const ok = Number.isInteger(threshold) && threshold >= 1 && valid.length >= threshold
  return { ok, threshold, valid, missing: ok ? 0 : Math.max(1, threshold - valid.length) }
}

function findProtoKey (value: unknown, at: string): string | null {
  if (typeof value !== 'object' || value === null) return null
  if (Object.hasOwn(value, '__proto__')) return at
  for (const [k, v] of Object.entries(value)) {
    const found = findProtoKey(v, `${at}.${k}`)
    if (found !== null) return found
  }
  return null
}
