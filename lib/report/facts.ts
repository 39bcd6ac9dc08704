// Console facts: what the console states about its own decisions, logged next to the agents'
// signed events so the views can be rebuilt from the log alone. The console appends one when a
// rollout phase assigns a release (that moment is the patch's availableAt, from which the SLA
// runs), when it orders a rollback, when a rollout changes state, and when an endpoint's
// enrollment changes (waits in quarantine, approved, rejected, removed). Facts are validated
// before they are appended: a view must never meet a bad one.
import { z } from 'zod'
import { PatchswarmError } from '../errors.js'
import { RISKS, packageVersionSchema } from '../trust/release.js'
import { keyid, safeName, sha256Hex, tenantPath, timestamp, parseShape } from '../trust/fields.js'
import type { EventLog, LogEntry, AppendOptions } from '../store/event-log.js'
import type { SignedEvent } from './event.js'
import { MAX_HOSTNAME } from '../fleet/endpoints.js'

/** Most endpoints one fact names; a larger phase is logged as several facts. */
export const MAX_FACT_ENDPOINTS = 10_000
export const MAX_FACTS_PER_APPEND = 10_000

const endpointRef = z.strictObject({ keyid, tenant: tenantPath })
const stateName = z.string().regex(/^[a-z][a-z0-9-]{0,31}$/, 'must be a lowercase state name')

const patchAssigned = z.strictObject({
  type: z.literal('patch.assigned'),
  rollout: safeName,
  /** The rollout phase (ring) that included these endpoints, e.g. 'pilot'. */
  phase: safeName.optional(),
  /** The release: its envelope hash and what an auditor reads about it. */
  release: z.strictObject({
    hash: sha256Hex,
    name: safeName,
    version: packageVersionSchema,
    risk: z.enum(RISKS)
  }),
  endpoints: z.array(endpointRef).min(1).max(MAX_FACT_ENDPOINTS),
  availableAt: timestamp,
  slaDeadline: timestamp.optional()
})

const patchRollback = z.strictObject({
  type: z.literal('patch.rollback'),
  rollout: safeName,
  release: sha256Hex,
  endpoints: z.array(keyid).min(1).max(MAX_FACT_ENDPOINTS)
})

const rolloutChanged = z.strictObject({
  type: z.literal('rollout.changed'),
  rollout: safeName,
  /** The rollout engine's state name, e.g. 'running', 'paused', 'aborted', 'completed'. */
  state: stateName,
  phase: safeName.optional(),
  release: sha256Hex.optional(),
  reason: z.string().max(1000).optional()
})

/** An endpoint's enrollment changed; the host name is the one it enrolled with (for people). */
const endpointFact = <T extends string>(type: T) => z.strictObject({ type: z.literal(type), keyid, tenant: tenantPath, hostname: z.string().min(1).max(MAX_HOSTNAME).optional() })
const ENDPOINT_FACT_TYPES = ['endpoint.quarantined', 'endpoint.approved', 'endpoint.rejected', 'endpoint.removed'] as const

export const consoleFactSchema = z.discriminatedUnion('type', [patchAssigned, patchRollback, rolloutChanged, ...ENDPOINT_FACT_TYPES.map(endpointFact)])

export type ConsoleFact = z.output<typeof consoleFactSchema>
export type PatchAssigned = z.output<typeof patchAssigned>
export type PatchRollback = z.output<typeof patchRollback>
export type RolloutChanged = z.output<typeof rolloutChanged>

/** The log reporting uses: agent entries carry SignedEvents, console entries ConsoleFacts. */
export type ReportLog = EventLog<SignedEvent, ConsoleFact>
export type ReportEntry = LogEntry<SignedEvent, ConsoleFact>

/** Validates a fact; BAD_ARGUMENT names the offending field. */
export function parseFact (value: unknown): ConsoleFact {
  try {
    return parseShape(consoleFactSchema, value, 'fact')
  } catch (err) {
    throw PatchswarmError.BAD_ARGUMENT((err as PatchswarmError).detail ?? String(err), err)
  }
}

/** Validates and appends console facts in one batch (with `opts.extra`, e.g. the change they record). */
export async function appendFacts (log: ReportLog, facts: unknown[], opts: AppendOptions<SignedEvent, ConsoleFact> = {}): Promise<ReportEntry[]> {
  if (!Array.isArray(facts) || facts.length > MAX_FACTS_PER_APPEND) throw PatchswarmError.BAD_ARGUMENT(`facts are an array of at most ${MAX_FACTS_PER_APPEND}`)
  const parsed = facts.map(parseFact)
  return await log.append(parsed.map((fact) => ({ source: 'console' as const, fact })), opts)
}
