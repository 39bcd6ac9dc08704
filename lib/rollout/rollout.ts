// Rollouts, hawkBit-like: one released package goes to a target (a tenant subtree, optionally
// narrowed to listed endpoints) in ordered phases. Which endpoint belongs to which phase is decided
// once, when the rollout is created, and frozen in it: later fleet changes never move an endpoint
// between phases. This module is pure (spec, membership, transitions); engine.ts advances phases,
// store.ts persists, directives.ts turns rollouts into signed assignments.
import { z } from 'zod'
import { PatchswarmError } from '../errors.js'
import { contentHashHex } from '../crypto/hash.js'
import { isKeyId } from '../crypto/keys.js'
import { keyid, safeName, tenantPath, timestamp, parseShape, isWithinTenant, checkTenantPath } from '../trust/fields.js'
import { releaseRefSchema, MAX_TARGET_ENDPOINTS } from '../trust/directive.js'
import { RISKS } from '../trust/release.js'

export const MAX_PHASES = 20
/** Membership is stored in the rollout record; this keeps one record well under 10 MB. */
export const MAX_ROLLOUT_ENDPOINTS = 100_000
export const MAX_SELECT_TENANTS = 256
/** A year: a longer soak is a typo, not a plan. */
export const MAX_SOAK_MINUTES = 366 * 24 * 60

export const ROLLOUT_STATES = ['running', 'paused', 'halted', 'aborted', 'completed', 'rolled-back'] as const
export type RolloutState = typeof ROLLOUT_STATES[number]

export const PHASE_STATES = ['pending', 'active', 'succeeded', 'failed'] as const
export type PhaseState = typeof PHASE_STATES[number]

const fraction = z.number().min(0).max(1)

const selectSchema = z.strictObject({
  /** Group or customer paths; an endpoint matches when it lies in one of their subtrees. */
  tenants: z.array(tenantPath).min(1).max(MAX_SELECT_TENANTS).optional(),
  endpoints: z.array(keyid).min(1).max(MAX_TARGET_ENDPOINTS).optional(),
  /** Share of the endpoints the filters above leave (all remaining ones without filters). */
  percent: z.int().min(1).max(100).optional()
})

const phaseSchema = z.strictObject({
  name: safeName,
  select: selectSchema.default({}),
  /** Fraction of the phase's endpoints that must have installed before the next phase starts. */
  successThreshold: fraction,
  /** Fraction of the phase's endpoints failed or rolled back that halts the rollout. */
  errorThreshold: fraction,
  minSoakMinutes: z.number().min(0).max(MAX_SOAK_MINUTES)
})

export const rolloutSpecSchema = z.strictObject({
  id: safeName,
  release: releaseRefSchema.extend({ risk: z.enum(RISKS) }),
  target: z.strictObject({
    tenant: tenantPath,
    endpoints: z.array(keyid).min(1).max(MAX_ROLLOUT_ENDPOINTS).optional()
  }),
  phases: z.array(phaseSchema).min(1).max(MAX_PHASES),
  /** Install deadline passed on to agents (they may install outside their windows after it). */
  deadline: timestamp.optional()
}).check((ctx) => {
  const spec = ctx.value
  const seen = new Set<string>()
  spec.phases.forEach((phase, i) => {
    if (seen.has(phase.name)) ctx.issues.push({ code: 'custom', message: `phase name ${phase.name} is used twice`, input: phase.name, path: ['phases', i, 'name'] })
    seen.add(phase.name)
    for (const [j, t] of (phase.select.tenants ?? []).entries()) {
      if (!isWithinTenant(t, spec.target.tenant)) {
        ctx.issues.push({ code: 'custom', message: `'${t}' is outside the target '${spec.target.tenant}'`, input: t, path: ['phases', i, 'select', 'tenants', j] })
      }
    }
  })
  const last = spec.phases[spec.phases.length - 1]
  if (last && Object.keys(last.select).length > 0) {
    // A selector here would be silently ignored: say so rather than surprise the admin.
    ctx.issues.push({ code: 'custom', message: 'the last phase takes every remaining target endpoint; leave its select empty', input: last.select, path: ['phases', spec.phases.length - 1, 'select'] })
  }
})

export type RolloutSpec = z.output<typeof rolloutSpecSchema>
export type RolloutSpecInput = z.input<typeof rolloutSpecSchema>
export type PhaseSpec = RolloutSpec['phases'][number]

/** An endpoint the caller offers as part of the target (the console: approved endpoints under it). */
export interface TargetEndpoint {
  keyid: string
  tenant: string
}

export interface RolloutPhase {
  name: string
  state: PhaseState
  /** Key ids, sorted; frozen at creation. */
  endpoints: string[]
  startedAt?: string
  /** When the phase succeeded or failed. */
  endedAt?: string
  /** Errors an admin accepted by resuming after a halt; only errors beyond these halt again. */
  acceptedErrors?: number
}

export interface HaltInfo {
  phase: number
  name: string
  errors: number
  size: number
  errorRate: number
  threshold: number
  at: string
}

export interface Rollout {
  id: string
  spec: RolloutSpec
  state: RolloutState
  phases: RolloutPhase[]
  /** Why the rollout is halted; only while it is. */
  halted?: HaltInfo
  createdAt: string
  updatedAt: string
  /** 1 at creation, +1 with every stored change; the optimistic-concurrency token. */
  revision: number
}

/** Facts about a rollout, recorded in its history and handed to whoever reacts (directives, TUI). */
export type RolloutChange =
  | { type: 'created', endpoints: number }
  | { type: 'paused' }
  | { type: 'resumed', from: 'paused' | 'halted' }
  | { type: 'aborted' }
  | { type: 'rolled-back', endpoints: number }
  | { type: 'phase-started', phase: number, name: string }
  | { type: 'phase-succeeded', phase: number, name: string, installed: number, size: number }
  | { type: 'rollout-halted', phase: number, name: string, errors: number, size: number, errorRate: number, threshold: number }
  | { type: 'rollout-completed' }

export interface RolloutStep {
  rollout: Rollout
  /** Empty when nothing changed (then `rollout` is the input object). */
  changes: RolloutChange[]
}

export function parseRolloutSpec (value: unknown): RolloutSpec {
  try {
    return parseShape(rolloutSpecSchema, value, 'rollout')
  } catch (err) {
    throw PatchswarmError.BAD_ROLLOUT((err as PatchswarmError).detail ?? String(err), err)
  }
}

/** The position of `keyid` in a phase's percent draw: fixed by rollout id and key, never reshuffled. */
export function drawRank (rolloutId: string, keyid: string): string {
  return contentHashHex(Buffer.from(`${rolloutId}\n${keyid}`))
}

function checkEndpoints (endpoints: readonly TargetEndpoint[]): Map<string, string> {
  if (!Array.isArray(endpoints)) throw PatchswarmError.BAD_ARGUMENT('target endpoints must be an array of { keyid, tenant }')
  const byKey = new Map<string, string>()
  for (const e of endpoints) {
    if (typeof e !== 'object' || e === null || !isKeyId(e.keyid)) throw PatchswarmError.BAD_ARGUMENT(`not a target endpoint: ${JSON.stringify(e)?.slice(0, 120)}`)
    const problem = typeof e.tenant === 'string' ? checkTenantPath(e.tenant) : 'is not a string'
    if (problem !== null) throw PatchswarmError.BAD_ARGUMENT(`endpoint ${e.keyid.slice(0, 12)}… tenant: ${problem}`)
    const known = byKey.get(e.keyid)
    if (known !== undefined && known !== e.tenant) throw PatchswarmError.BAD_ARGUMENT(`endpoint ${e.keyid.slice(0, 12)}… is listed under two tenants (${known}, ${e.tenant})`)
    byKey.set(e.keyid, e.tenant)
  }
  return byKey
}

/**
 * Splits the target endpoints into the phases: each endpoint goes to the first phase whose selector
 * matches it, the last phase takes the rest. A selector with both tenants and endpoints matches an
 * endpoint named by either; percent then draws from what matched. Endpoints outside the target are
 * left out. The result depends only on the spec and the set of endpoints, not on their order.
 */
export function phaseMembers (spec: RolloutSpec, endpoints: readonly TargetEndpoint[]): string[][] {
  const onlyListed = spec.target.endpoints ? new Set(spec.target.endpoints) : null
  let remaining = [...checkEndpoints(endpoints)]
    .filter(([k, tenant]) => isWithinTenant(tenant, spec.target.tenant) && (onlyListed === null || onlyListed.has(k)))
    .sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)
  return spec.phases.map((phase, i) => {
    let taken: Array<[string, string]>
    if (i === spec.phases.length - 1) {
      taken = remaining
    } else {
      const { tenants, endpoints: listed, percent } = phase.select
      const listedSet = listed ? new Set(listed) : null
      const filtered = tenants === undefined && listedSet === null
        ? remaining
        : remaining.filter(([k, tenant]) => (listedSet?.has(k) ?? false) || (tenants ?? []).some((t) => isWithinTenant(tenant, t)))
      if (percent === undefined) {
        taken = filtered
      } else {
        const ranked = filtered.map((e) => ({ e, rank: drawRank(spec.id, e[0]) })).sort((a, b) => a.rank < b.rank ? -1 : a.rank > b.rank ? 1 : 0)
        // Rounding up gives a 10 % pilot of 3 endpoints one endpoint rather than none.
        taken = ranked.slice(0, Math.ceil(filtered.length * percent / 100)).map((r) => r.e)
      }
    }
    const takenKeys = new Set(taken.map(([k]) => k))
    remaining = remaining.filter(([k]) => !takenKeys.has(k))
    return taken.map(([k]) => k).sort()
  })
}

/** A new rollout: running, its first phase active from `now`. */
export function createRollout (specInput: unknown, endpoints: readonly TargetEndpoint[], now: Date): RolloutStep {
  const spec = parseRolloutSpec(specInput)
  if (spec.deadline !== undefined && Date.parse(spec.deadline) <= now.getTime()) throw PatchswarmError.BAD_ROLLOUT(`rollout.deadline ${spec.deadline} has already passed`)
  const members = phaseMembers(spec, endpoints)
  const total = members.reduce((n, m) => n + m.length, 0)
  if (total === 0) throw PatchswarmError.BAD_ROLLOUT(`rollout ${spec.id}: no endpoint of the target '${spec.target.tenant}' was offered`)
  if (total > MAX_ROLLOUT_ENDPOINTS) throw PatchswarmError.BAD_ROLLOUT(`rollout ${spec.id} has ${total} endpoints, more than ${MAX_ROLLOUT_ENDPOINTS}`)
  const at = now.toISOString()
  const phases: RolloutPhase[] = spec.phases.map((p, i) => i === 0
    ? { name: p.name, state: 'active', endpoints: members[i]!, startedAt: at }
    : { name: p.name, state: 'pending', endpoints: members[i]! })
  return {
    rollout: { id: spec.id, spec, state: 'running', phases, createdAt: at, updatedAt: at, revision: 1 },
    changes: [{ type: 'created', endpoints: total }, { type: 'phase-started', phase: 0, name: phases[0]!.name }]
  }
}

function refuse (r: Rollout, verb: string, allowed: readonly RolloutState[]): never {
  throw PatchswarmError.INVALID_TRANSITION(`cannot ${verb} rollout ${r.id}: it is ${r.state} (${verb} needs ${allowed.join(' or ')})`)
}

const PAUSABLE: readonly RolloutState[] = ['running']
const RESUMABLE: readonly RolloutState[] = ['paused', 'halted']
const ABORTABLE: readonly RolloutState[] = ['running', 'paused', 'halted']
const ROLLBACKABLE: readonly RolloutState[] = ['running', 'paused', 'halted', 'aborted', 'completed']

/** running → paused: no new phase starts; what was assigned stays assigned. */
export function pauseRollout (r: Rollout, now: Date): RolloutStep {
  if (!PAUSABLE.includes(r.state)) refuse(r, 'pause', PAUSABLE)
  return { rollout: { ...r, state: 'paused', updatedAt: now.toISOString() }, changes: [{ type: 'paused' }] }
}

/**
 * paused | halted → running. Resuming a halted rollout re-activates the failed phase and accepts
 * the errors seen so far: it halts again only when more endpoints of that phase fail.
 */
export function resumeRollout (r: Rollout, now: Date): RolloutStep {
  if (!RESUMABLE.includes(r.state)) refuse(r, 'resume', RESUMABLE)
  const from = r.state as 'paused' | 'halted'
  const { halted, ...rest } = r
  let phases = r.phases
  if (halted !== undefined) {
    phases = r.phases.map((p, i) => {
      if (i !== halted.phase) return p
      const { endedAt: _, ...active } = p
      return { ...active, state: 'active' as const, acceptedErrors: halted.errors }
    })
  }
  return { rollout: { ...rest, state: 'running', phases, updatedAt: now.toISOString() }, changes: [{ type: 'resumed', from }] }
}

/** running | paused | halted → aborted: like hawkBit, open work is cancelled, nothing more is assigned. */
export function abortRollout (r: Rollout, now: Date): RolloutStep {
  if (!ABORTABLE.includes(r.state)) refuse(r, 'abort', ABORTABLE)
  const { halted: _, ...rest } = r
  return { rollout: { ...rest, state: 'aborted', updatedAt: now.toISOString() }, changes: [{ type: 'aborted' }] }
}

/** Any state but rolled-back → rolled-back: every endpoint of a started phase is told to roll back. */
export function rollbackRollout (r: Rollout, now: Date): RolloutStep {
  if (!ROLLBACKABLE.includes(r.state)) refuse(r, 'roll back', ROLLBACKABLE)
  const { halted: _, ...rest } = r
  return {
    rollout: { ...rest, state: 'rolled-back', updatedAt: now.toISOString() },
    changes: [{ type: 'rolled-back', endpoints: startedEndpoints(r).length }]
  }
}

/** Key ids of every phase that has started, in phase order: what the rollout has reached. */
export function startedEndpoints (r: Rollout): string[] {
  return r.phases.filter((p) => p.startedAt !== undefined).flatMap((p) => p.endpoints)
}
