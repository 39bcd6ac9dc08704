// Policy documents and how they resolve down the tenant tree. A policy may be set on any node
// (distributor … customer, group, endpoint) and on the organisation itself (path ''); every part
// is optional, and each part comes from the nearest level at or above a node that sets it:
//   slas                per risk class, hours from availability to the install deadline
//   approval            which releases are approved automatically (by risk class or publisher)
//   windows             maintenance windows; [] = no window (installs only when forced)
//   forceAfterDeadline  install outside windows once the SLA deadline has passed
//   rebootAllowed       the agent may reboot on its own (else it waits in reboot-pending)
//   courtesy            link limits per site name, each site resolved on its own
// SLA hours resolve per risk class, so a customer can tighten `critical` and still inherit the rest.
//
// Publishers are named by who signed a release, as trust's authoriseRelease reports it:
// 'release' for the organisation's release role, 'delegation:<name>' for a delegated release
// authority. Not key ids: keys rotate with the root and a policy should not silently stop
// matching. Not release scopes: a scope says whom a release is for, not who vouched for it.
import { z } from 'zod'
import { PatchswarmError, isPatchswarmError } from '../errors.js'
import { isSafeName } from '../content/paths.js'
import { parseShape, isWithinTenant, UNSAFE } from '../trust/fields.js'
import { RISKS, type Risk } from '../trust/release.js'
import type { ReleaseSigner } from '../trust/verify.js'
import { CourtesySchedule, type CourtesyScheduleSpec, type CourtesyWindow } from '../swarm/courtesy-schedule.js'
import type { CourtesyOptions } from '../swarm/courtesy.js'
import { MAX_WINDOWS, checkTimeZone, windowSchema, windowState, type MaintenanceWindow } from './windows.js'

export const DEFAULT_SLA_HOURS: Readonly<Record<Risk, number>> = { critical: 72, high: 168, medium: 720, low: 2160 }
/** A leap year: an SLA longer than that is no SLA. */
export const MAX_SLA_HOURS = 366 * 24
export const MAX_PUBLISHERS = 64
export const MAX_SITES = 1024
export const MAX_COURTESY_WINDOWS = 32

const DELEGATION_PREFIX = 'delegation:'

/** The publisher name of a release's signer: 'release' or 'delegation:<name>'. */
export function publisherOf (signer: ReleaseSigner): string {
  return signer.role === 'release' ? 'release' : DELEGATION_PREFIX + signer.name
}

const publisher = z.string().max(DELEGATION_PREFIX.length + 128).check((ctx) => {
  const s = ctx.value
  if (s !== 'release' && !(s.startsWith(DELEGATION_PREFIX) && isSafeName(s.slice(DELEGATION_PREFIX.length)))) {
    ctx.issues.push({ code: 'custom', message: `${JSON.stringify(s).slice(0, 80)} is not a publisher ('release' or 'delegation:<name>')`, input: s })
  }
})

/** A list without repeats (a repeat is almost always a typo for something else). */
function distinct<T extends z.ZodType> (item: T, max: number) {
  return z.array(item).max(max).check((ctx) => {
    const seen = new Set<unknown>()
    for (const v of ctx.value) {
      if (seen.has(v)) ctx.issues.push({ code: 'custom', message: `lists ${JSON.stringify(v)} twice`, input: ctx.value })
      seen.add(v)
    }
  })
}

const hours = z.int().min(1).max(MAX_SLA_HOURS)

const slasSchema = z.strictObject({
  critical: hours.optional(),
  high: hours.optional(),
  medium: hours.optional(),
  low: hours.optional()
})

const approvalSchema = z.strictObject({
  automatic: z.strictObject({
    risks: distinct(z.enum(RISKS), RISKS.length),
    publishers: distinct(publisher, MAX_PUBLISHERS)
  })
})

// JSON has no Infinity: leave a limit out for "unlimited".
const bytesPerSec = z.number().min(0).max(Number.MAX_SAFE_INTEGER)

const timeZone = z.string().max(128).check((ctx) => {
  const problem = checkTimeZone(ctx.value)
  if (problem) ctx.issues.push({ code: 'custom', message: problem, input: ctx.value })
})

// lib/swarm/courtesy-schedule.ts's CourtesyWindow, as JSON.
const courtesyWindowSchema = z.strictObject({
  days: z.string().max(64).optional(),
  from: z.string().max(5),
  to: z.string().max(5),
  upload: bytesPerSec.optional(),
  download: bytesPerSec.optional()
})

const siteCourtesyShape = z.strictObject({
  /** Cap outside the schedule's windows, bytes/s; absent = unlimited. */
  downBytesPerSec: bytesPerSec.optional(),
  upBytesPerSec: bytesPerSec.optional(),
  /** A metered link: no uploads at all. */
  metered: z.boolean().optional(),
  /** The schedule's time zone; absent = the endpoint's own. */
  timeZone: timeZone.optional(),
  /** Windows with their own limits (first match wins), e.g. business hours. */
  schedule: z.array(courtesyWindowSchema).max(MAX_COURTESY_WINDOWS).optional()
})

export type SiteCourtesy = z.output<typeof siteCourtesyShape>

const siteCourtesySchema = siteCourtesyShape.check((ctx) => {
  // The swarm's own schedule decides what a window means; build one to hear its objections.
  try {
    void new CourtesySchedule(toCourtesyOptions(ctx.value).schedule)
  } catch (err) {
    if (!isPatchswarmError(err)) throw err
    ctx.issues.push({ code: 'custom', message: err.detail.replace(/^windows\[/, 'schedule['), input: ctx.value })
  }
})

const courtesySchema = z.record(z.string(), siteCourtesySchema).check((ctx) => {
  const sites = Object.keys(ctx.value)
  if (sites.length > MAX_SITES) ctx.issues.push({ code: 'custom', message: `at most ${MAX_SITES} sites, not ${sites.length}`, input: ctx.value })
  for (const site of sites) {
    if (!isSafeName(site)) {
      ctx.issues.push({ code: 'custom', message: `site name ${JSON.stringify(site).slice(0, 80)} is not a safe name (letters, digits, . _ + -; 1-128 characters)`, input: site, params: UNSAFE })
    }
  }
})

export const policySchema = z.strictObject({
  slas: slasSchema.optional(),
  approval: approvalSchema.optional(),
  windows: z.array(windowSchema).max(MAX_WINDOWS).optional(),
  forceAfterDeadline: z.boolean().optional(),
  rebootAllowed: z.boolean().optional(),
  courtesy: courtesySchema.optional()
})

/** What one level of the tree sets; every part optional. */
export type PolicyDocument = z.output<typeof policySchema>
export type ApprovalRule = z.output<typeof approvalSchema>

/**
 * Validates a policy. A problem inside one maintenance window is BAD_WINDOW, an unsafe site name
 * UNSAFE_PATH, anything else BAD_POLICY; the message names the field (`policy.slas.critical: …`).
 */
export function parsePolicy (value: unknown, what = 'policy'): PolicyDocument {
  try {
    return parseShape(policySchema, value, what)
  } catch (err) {
    if (!isPatchswarmError(err, 'BAD_DOCUMENT')) throw err
    const path = (err.cause as z.ZodError | undefined)?.issues[0]?.path ?? []
    if (path[0] === 'windows' && typeof path[1] === 'number') throw PatchswarmError.BAD_WINDOW(err.detail, err.cause)
    throw PatchswarmError.BAD_POLICY(err.detail, err.cause)
  }
}

/** A site's courtesy as options for lib/swarm's Courtesy (its schedule's default = the site's caps). */
export function toCourtesyOptions (site: SiteCourtesy): CourtesyOptions & { schedule: CourtesyScheduleSpec } {
  return {
    metered: site.metered === true,
    schedule: {
      ...(site.timeZone !== undefined ? { timeZone: site.timeZone } : {}),
      windows: (site.schedule ?? []) as CourtesyWindow[],
      default: { upload: site.upBytesPerSec ?? Infinity, download: site.downBytesPerSec ?? Infinity }
    }
  }
}

// ---- resolution ----------------------------------------------------------------------------

/** One level of the tree: its tenant path ('' = the organisation) and the policy set there, if any. */
export interface PolicyLevel {
  path: string
  policy?: PolicyDocument | null
}

export interface EffectivePolicy {
  slas: Record<Risk, number>
  approval: ApprovalRule
  /**
   * null: no level sets windows, so installs may run at any time. []: no window at all, so
   * installs run only when forced after the deadline.
   */
  windows: MaintenanceWindow[] | null
  forceAfterDeadline: boolean
  rebootAllowed: boolean
  /** Per site name; a site not listed has no limits. */
  courtesy: Record<string, SiteCourtesy>
}

/** Where each part came from: the tenant path of the level that set it, null = built-in default. */
export interface PolicySources {
  slas: Record<Risk, string | null>
  approval: string | null
  windows: string | null
  forceAfterDeadline: string | null
  rebootAllowed: string | null
  courtesy: Record<string, string>
}

export interface ResolvedPolicy {
  policy: EffectivePolicy
  sources: PolicySources
}

/**
 * Resolves the policies of a chain of levels, from the top of the tree down to a node (each path
 * inside the one before): each part from the lowest level that sets it. Takes documents as
 * parsePolicy returns them; the result shares nothing with them.
 */
export function effectivePolicy (chain: readonly PolicyLevel[]): ResolvedPolicy {
  if (!Array.isArray(chain as unknown)) throw PatchswarmError.BAD_ARGUMENT('effectivePolicy needs a list of { path, policy } from the top down')
  const policy: EffectivePolicy = {
    slas: { ...DEFAULT_SLA_HOURS },
    approval: { automatic: { risks: [], publishers: [] } },
    windows: null,
    forceAfterDeadline: false,
    rebootAllowed: false,
    courtesy: siteMap<SiteCourtesy>()
  }
  const sources: PolicySources = {
    slas: { critical: null, high: null, medium: null, low: null },
    approval: null,
    windows: null,
    forceAfterDeadline: null,
    rebootAllowed: null,
    courtesy: siteMap<string>()
  }
  let above: string | undefined
  for (const level of chain) {
    if (above !== undefined && (level.path === above || !isWithinTenant(level.path, above))) {
      throw PatchswarmError.BAD_ARGUMENT(`policy chain: ${JSON.stringify(level.path)} is not below ${JSON.stringify(above)}`)
    }
    above = level.path
    const p = level.policy
    if (p === undefined || p === null) continue
    const from = level.path
    for (const risk of RISKS) {
      const h = p.slas?.[risk]
      if (h !== undefined) { policy.slas[risk] = h; sources.slas[risk] = from }
    }
    if (p.approval !== undefined) {
      const a = p.approval.automatic
      policy.approval = { automatic: { risks: [...a.risks], publishers: [...a.publishers] } }
      sources.approval = from
    }
    if (p.windows !== undefined) { policy.windows = p.windows.map((w) => ({ ...w })); sources.windows = from }
    if (p.forceAfterDeadline !== undefined) { policy.forceAfterDeadline = p.forceAfterDeadline; sources.forceAfterDeadline = from }
    if (p.rebootAllowed !== undefined) { policy.rebootAllowed = p.rebootAllowed; sources.rebootAllowed = from }
    for (const [site, c] of Object.entries(p.courtesy ?? {})) {
      policy.courtesy[site] = structuredClone(c)
      sources.courtesy[site] = from
    }
  }
  return { policy, sources }
}

/** Site names are safe names, but 'constructor' is one: look them up in a map without a prototype. */
function siteMap<T> (): Record<string, T> {
  return Object.create(null) as Record<string, T>
}

// ---- decisions -----------------------------------------------------------------------------

/** What approval looks at: the release's risk class and who signed it (a VerifiedRelease's signer). */
export interface ApprovalSubject {
  risk: Risk
  signer: ReleaseSigner
}

/** True if the release needs a manual approval: neither its risk class nor its publisher is automatic. */
export function requiresApproval (policy: Pick<EffectivePolicy, 'approval'>, release: ApprovalSubject): boolean {
  const auto = policy.approval.automatic
  return !(auto.risks.includes(release.risk) || auto.publishers.includes(publisherOf(release.signer)))
}

/** When a patch of `risk` that became available at `availableAt` must be installed. */
export function slaDeadline (policy: Pick<EffectivePolicy, 'slas'>, risk: Risk, availableAt: Date | string): Date {
  if (!(RISKS as readonly string[]).includes(risk)) throw PatchswarmError.BAD_ARGUMENT(`unknown risk class ${JSON.stringify(risk)?.slice(0, 40)}`)
  const start = typeof availableAt === 'string' ? Date.parse(availableAt) : availableAt instanceof Date ? availableAt.getTime() : NaN
  if (!Number.isFinite(start)) throw PatchswarmError.BAD_ARGUMENT('availableAt must be a valid Date or ISO time')
  return new Date(start + policy.slas[risk] * 3_600_000)
}

/**
 * May an install start at `now`? Yes without windows (none set anywhere), inside an open window,
 * or, with forceAfterDeadline, once `deadline` has passed.
 */
export function mayInstall (policy: Pick<EffectivePolicy, 'windows' | 'forceAfterDeadline'>, now: Date, deadline?: Date): boolean {
  if (policy.windows === null) return true
  if (policy.forceAfterDeadline && deadline !== undefined && now.getTime() >= deadline.getTime()) return true
  return windowState(policy.windows, now).open
}
