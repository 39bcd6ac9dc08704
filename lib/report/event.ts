// Agent events: what an endpoint tells the console about itself, one signed fact at a time. Each
// event is an envelope signed by the endpoint's own key (the key id IS the endpoint's identity)
// and numbered: `seq` runs 1, 2, 3, … per endpoint without gaps, so the console can tell a
// duplicate (same seq, same bytes: ignored) from a replay or forgery (same seq, other bytes) and
// keep each endpoint's order. The agent writes them; the console ingests them; auditors get them
// back unchanged in evidence bundles.
import { z } from 'zod'
import { PatchswarmError } from '../errors.js'
import { type Signer } from '../crypto/keys.js'
import { type Envelope, checkEnvelope, envelopeHash, parseEnvelope, signEnvelope, verifyEnvelope } from '../trust/envelope.js'
import { SPEC_VERSION, keyid, safeName, sha256Hex, tenantPath, timestamp, parseShape } from '../trust/fields.js'
import { releaseRefSchema } from '../trust/directive.js'

/** A job's states on the endpoint (see DESIGN.md, Agent). */
export const JOB_STATES = [
  'assigned', 'downloading', 'verified', 'waiting-window', 'installing', 'health-check',
  'reboot-pending', 'installed', 'failed', 'rolling-back', 'rolled-back'
] as const
export type JobState = typeof JOB_STATES[number]

/** States a job rests in until a new directive or retry moves it. */
export const FINAL_JOB_STATES: ReadonlySet<JobState> = new Set(['installed', 'failed', 'rolled-back'])

export const AGENT_STATES = ['started', 'stopped', 'enrolled', 'breaker-open', 'breaker-closed'] as const

export const MAX_OUTPUT_CHARS = 8192
export const MAX_REASON_CHARS = 1000
export const MAX_EVENT_BYTES = 64 * 1024

const count = z.int().min(0).max(Number.MAX_SAFE_INTEGER)

const jobFact = z.strictObject({
  release: releaseRefSchema,
  /** The rollout that assigned the job, when the directive named one. */
  rollout: safeName.optional(),
  action: z.enum(['install', 'rollback']),
  state: z.enum(JOB_STATES),
  /** 1 for the first attempt at this release, counting up with each retry. */
  attempt: z.int().min(1).max(1_000_000),
  /** A stable code for why the job failed or rolled back (e.g. INSTALL_FAILED, TIMEOUT). */
  code: z.string().regex(/^[A-Z][A-Z0-9_]{0,63}$/).optional(),
  reason: z.string().max(MAX_REASON_CHARS).optional(),
  /** The bounded tail of the installer's output. */
  output: z.string().max(MAX_OUTPUT_CHARS).optional()
})

const transferFact = z.strictObject({
  manifest: sha256Hex,
  /** Bytes of the package by where they came from (see lib/swarm/accounting.ts). */
  bytes: z.strictObject({ origin: count, site: count, peer: count, local: count })
})

const agentFact = z.strictObject({
  state: z.enum(AGENT_STATES),
  version: z.string().max(64).optional(),
  /** For breaker events: the release whose breaker changed. */
  release: releaseRefSchema.optional(),
  reason: z.string().max(MAX_REASON_CHARS).optional()
})

const inventoryFact = z.record(z.string().max(64), z.unknown())

export const eventSchema = z.strictObject({
  _type: z.literal('event'),
  spec: z.literal(SPEC_VERSION),
  org: safeName,
  endpoint: keyid,
  /** The tenant path the endpoint's certificate names; the console checks it against its registry. */
  tenant: tenantPath,
  seq: z.int().min(1).max(Number.MAX_SAFE_INTEGER),
  /** The agent's clock when the fact happened. */
  at: timestamp,
  kind: z.enum(['job', 'transfer', 'agent', 'inventory']),
  job: jobFact.optional(),
  transfer: transferFact.optional(),
  agent: agentFact.optional(),
  inventory: inventoryFact.optional()
}).check((ctx) => {
  const e = ctx.value
  const present = (['job', 'transfer', 'agent', 'inventory'] as const).filter((k) => e[k] !== undefined)
  if (present.length !== 1 || present[0] !== e.kind) {
    ctx.issues.push({ code: 'custom', message: `a ${e.kind} event carries exactly its "${e.kind}" field`, input: e })
  }
})

export type AgentEvent = z.output<typeof eventSchema>
export type JobFact = z.output<typeof jobFact>
export type TransferFact = z.output<typeof transferFact>
export type SignedEvent = Envelope<AgentEvent>

export function parseEvent (value: unknown): AgentEvent {
  try {
    return parseShape(eventSchema, value, 'event')
  } catch (err) {
    throw PatchswarmError.BAD_EVENT((err as PatchswarmError).detail ?? String(err), err)
  }
}

/** Signs `event` with the endpoint key; the signer must be the endpoint the event names. */
export async function signEvent (event: AgentEvent, signer: Signer): Promise<SignedEvent> {
  const parsed = parseEvent(event)
  if (signer.keyid !== parsed.endpoint) throw PatchswarmError.BAD_ARGUMENT('an event is signed by the endpoint it names')
  return signEnvelope(parsed, [signer])
}

/**
 * Checks a signed event on its own: shape, size, and one valid signature by the endpoint it names.
 * Whether the endpoint is known, in that tenant and in sequence is the console's question (ingest).
 * Throws BAD_EVENT (shape) or BAD_SIGNATURE.
 */
export function verifyEvent (input: SignedEvent | Uint8Array | string): { event: AgentEvent, envelope: SignedEvent, hash: string } {
  let envelope: Envelope<Record<string, unknown>>
  try {
    if (typeof input === 'string' || input instanceof Uint8Array) {
      const size = typeof input === 'string' ? Buffer.byteLength(input) : input.byteLength
      if (size > MAX_EVENT_BYTES) throw PatchswarmError.BAD_EVENT(`event is ${size} bytes, more than ${MAX_EVENT_BYTES}`)
      envelope = parseEnvelope(input)
    } else {
      envelope = checkEnvelope(input)
    }
  } catch (err) {
    if ((err as PatchswarmError).code === 'BAD_EVENT') throw err
    throw PatchswarmError.BAD_EVENT((err as PatchswarmError).detail ?? String(err), err)
  }
  const event = parseEvent(envelope.signed)
  const result = verifyEnvelope(envelope, { keyids: [event.endpoint], threshold: 1 })
  if (!result.ok) throw PatchswarmError.BAD_SIGNATURE(`event ${event.seq} of endpoint ${event.endpoint.slice(0, 12)}… is not signed by that endpoint`)
  return { event, envelope: envelope as SignedEvent, hash: envelopeHash(envelope) }
}
