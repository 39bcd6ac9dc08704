// Agent events: what an endpoint tells the console about itself, one signed fact at a time. Each
// event is an envelope signed by the endpoint's own key (the key id IS the endpoint's identity)
// and numbered: `seq` runs 1, 2, 3, … per endpoint without gaps, so the console can tell a
// duplicate (same seq, same bytes: ignored) from a replay or forgery (same seq, other bytes) and
// keep each endpoint's order. The agent writes them; the console ingests them; auditors get them
// back unchanged in evidence bundles.
import { z } from 'zod'
import { PatchswarmError } from '../errors.js'
import { type Signer, isKeyId } from '../crypto/keys.js'
import { isHashHex } from '../crypto/hash.js'
import { isSafeName } from '../content/paths.js'
import { type Envelope, checkEnvelope, envelopeHash, parseEnvelope, signEnvelope, verifyEnvelope } from '../trust/envelope.js'
import { SPEC_VERSION, keyid, safeName, sha256Hex, tenantPath, timestamp, parseShape, checkTenantPath, isIsoUtc } from '../trust/fields.js'
import { releaseRefSchema } from '../trust/directive.js'
import { packageVersionSchema, platformSchema } from '../trust/release.js'

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
const CODE = /^[A-Z][A-Z0-9_]{0,63}$/
const MAX_ATTEMPT = 1_000_000
const MAX_VERSION_CHARS = 64

const jobFact = z.strictObject({
  release: releaseRefSchema,
  /** The rollout that assigned the job, when the directive named one. */
  rollout: safeName.optional(),
  action: z.enum(['install', 'rollback']),
  state: z.enum(JOB_STATES),
  /** 1 for the first attempt at this release, counting up with each retry. */
  attempt: z.int().min(1).max(MAX_ATTEMPT),
  /** A stable code for why the job failed or rolled back (e.g. INSTALL_FAILED, TIMEOUT). */
  code: z.string().regex(CODE).optional(),
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
  version: z.string().max(MAX_VERSION_CHARS).optional(),
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
  const fast = fastEvent(value)
  if (fast !== undefined) return fast
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

// The shape check of the ingestion hot path, by hand: zod takes 3-6 µs an event, this about one.
// It accepts a subset of what eventSchema accepts (every rule below is one of the schema's, through
// the same predicates where the schema has one: isSafeName, isKeyId, checkTenantPath, isIsoUtc,
// the release's own field schemas) and returns what zod would: a fresh object with the schema's
// key order. Anything it does not accept (a broken event, an inventory event, an
// optional key present as undefined, an unusual object) goes to zod, which decides and names the
// problem. test/report/fast-paths.test.ts holds the two against each other.

const JOB_STATE_SET: ReadonlySet<unknown> = new Set(JOB_STATES)
const AGENT_STATE_SET: ReadonlySet<unknown> = new Set(AGENT_STATES)
const EVENT_KEYS: ReadonlySet<string> = new Set(['_type', 'spec', 'org', 'endpoint', 'tenant', 'seq', 'at', 'kind', 'job', 'transfer', 'agent'])
const JOB_KEYS: ReadonlySet<string> = new Set(['release', 'rollout', 'action', 'state', 'attempt', 'code', 'reason', 'output'])
const TRANSFER_KEYS: ReadonlySet<string> = new Set(['manifest', 'bytes'])
const BYTES_KEYS: ReadonlySet<string> = new Set(['origin', 'site', 'peer', 'local'])
const AGENT_KEYS: ReadonlySet<string> = new Set(['state', 'version', 'release', 'reason'])
const RELEASE_KEYS: ReadonlySet<string> = new Set(['name', 'packageVersion', 'platform', 'manifest', 'envelopeHash'])

type Obj = Record<string, unknown>

/** A plain object (as JSON.parse makes) whose enumerable keys, own or inherited, are all in `keys`. */
function plainWith (value: unknown, keys: ReadonlySet<string>): value is Obj {
  if (typeof value !== 'object' || value === null) return false
  const proto = Object.getPrototypeOf(value)
  if (proto !== Object.prototype && proto !== null) return false
  for (const k in value) if (!keys.has(k) || (value as Obj)[k] === undefined) return false
  return true
}

const isInt = (v: unknown, min: number, max: number): v is number => typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max
const isString = (v: unknown, max: number): v is string => typeof v === 'string' && v.length <= max

function fastEvent (value: unknown): AgentEvent | undefined {
  if (!plainWith(value, EVENT_KEYS)) return undefined
  const { _type, spec, org, endpoint, tenant, seq, at, kind, job, transfer, agent, inventory } = value
  if (inventory !== undefined) return undefined
  if (_type !== 'event' || spec !== SPEC_VERSION || !isSafeName(org) || !isKeyId(endpoint)) return undefined
  if (typeof tenant !== 'string' || checkTenantPath(tenant) !== null) return undefined
  if (!isInt(seq, 1, Number.MAX_SAFE_INTEGER) || typeof at !== 'string' || !isIsoUtc(at)) return undefined
  if (kind === 'job' && transfer === undefined && agent === undefined) {
    const fact = fastJob(job)
    return fact === undefined ? undefined : { _type, spec, org, endpoint, tenant, seq, at, kind, job: fact }
  }
  if (kind === 'transfer' && job === undefined && agent === undefined) {
    const fact = fastTransfer(transfer)
    return fact === undefined ? undefined : { _type, spec, org, endpoint, tenant, seq, at, kind, transfer: fact }
  }
  if (kind === 'agent' && job === undefined && transfer === undefined) {
    const fact = fastAgent(agent)
    return fact === undefined ? undefined : { _type, spec, org, endpoint, tenant, seq, at, kind, agent: fact }
  }
  return undefined
}

function fastJob (value: unknown): AgentEvent['job'] {
  if (!plainWith(value, JOB_KEYS)) return undefined
  const { release, rollout, action, state, attempt, code, reason, output } = value
  const ref = fastRelease(release)
  if (ref === undefined || (rollout !== undefined && !isSafeName(rollout))) return undefined
  if ((action !== 'install' && action !== 'rollback') || !JOB_STATE_SET.has(state) || !isInt(attempt, 1, MAX_ATTEMPT)) return undefined
  if (code !== undefined && (typeof code !== 'string' || !CODE.test(code))) return undefined
  if ((reason !== undefined && !isString(reason, MAX_REASON_CHARS)) || (output !== undefined && !isString(output, MAX_OUTPUT_CHARS))) return undefined
  const fact: Obj = { release: ref }
  if (rollout !== undefined) fact.rollout = rollout
  fact.action = action
  fact.state = state
  fact.attempt = attempt
  if (code !== undefined) fact.code = code
  if (reason !== undefined) fact.reason = reason
  if (output !== undefined) fact.output = output
  return fact as AgentEvent['job']
}

function fastTransfer (value: unknown): AgentEvent['transfer'] {
  if (!plainWith(value, TRANSFER_KEYS)) return undefined
  const { manifest, bytes } = value
  if (!isHashHex(manifest) || !plainWith(bytes, BYTES_KEYS)) return undefined
  const { origin, site, peer, local } = bytes
  const max = Number.MAX_SAFE_INTEGER
  if (!isInt(origin, 0, max) || !isInt(site, 0, max) || !isInt(peer, 0, max) || !isInt(local, 0, max)) return undefined
  return { manifest, bytes: { origin, site, peer, local } }
}

function fastAgent (value: unknown): AgentEvent['agent'] {
  if (!plainWith(value, AGENT_KEYS)) return undefined
  const { state, version, release, reason } = value
  if (!AGENT_STATE_SET.has(state) || (version !== undefined && !isString(version, MAX_VERSION_CHARS))) return undefined
  if (reason !== undefined && !isString(reason, MAX_REASON_CHARS)) return undefined
  const ref = release === undefined ? undefined : fastRelease(release)
  if (release !== undefined && ref === undefined) return undefined
  const fact: Obj = { state }
  if (version !== undefined) fact.version = version
  if (ref !== undefined) fact.release = ref
  if (reason !== undefined) fact.reason = reason
  return fact as AgentEvent['agent']
}

function fastRelease (value: unknown): z.output<typeof releaseRefSchema> | undefined {
  if (!plainWith(value, RELEASE_KEYS)) return undefined
  const { name, packageVersion, platform, manifest, envelopeHash } = value
  if (!isSafeName(name) || !isHashHex(manifest) || !isHashHex(envelopeHash)) return undefined
  if (typeof packageVersion !== 'string' || typeof platform !== 'string') return undefined
  if (!packageVersionSchema.safeParse(packageVersion).success || !platformSchema.safeParse(platform).success) return undefined
  return { name, packageVersion, platform, manifest, envelopeHash }
}
