// Jobs: one per assigned release, keyed by the release's envelope hash, each a persisted state
// machine (DESIGN.md, Agent):
//
//   assigned → downloading → verified → waiting-window → installing → health-check → installed
//                                          (skipped when the window is open)  ↘ reboot-pending ↗
//   installing | health-check fails → failed → rolling-back → rolled-back → (retry) downloading …
//   a rollback that keeps failing → failed (rests; the breaker is open)
//
// This file holds the records, their keys and the pure rules; JobRunner (job-runner.ts) moves them.
// Every change is one synced batch with the job record, the outbox event that reports it, and the
// crash marker: present while an install, health check, rollback or reboot is under way, so a
// restart knows which step to run again (installers are re-runnable, see installers/installer.ts).
import fs from 'node:fs/promises'
import os from 'node:os'
import { PatchswarmError, isPatchswarmError } from '../lib/errors.js'
import { sublevel, type Database, type Sublevel } from '../lib/store/db.js'
import type { FleetOp } from '../lib/fleet/common.js'
import type { ReleaseRef } from '../lib/trust/directive.js'
import type { InstallSpec } from '../lib/trust/install-spec.js'
import { mayInstall, type EffectivePolicy } from '../lib/policy/policy.js'
import { windowState } from '../lib/policy/windows.js'
import { MAX_OUTPUT_CHARS, MAX_REASON_CHARS, type JobFact, type JobState } from '../lib/report/event.js'
import { AGENT_SUBLEVELS } from './store.js'

export type JobAction = 'install' | 'rollback'

/** What a job needs of the endpoint's effective policy. */
export type JobPolicy = Pick<EffectivePolicy, 'windows' | 'forceAfterDeadline' | 'rebootAllowed'>

/** Why something failed, as the console gets it. */
export interface JobProblem {
  code: string
  reason?: string
  output?: string
}

export interface JobRecord {
  /** The release's envelope hash. */
  id: string
  release: ReleaseRef
  /** From the verified release: what the installers run. */
  spec: InstallSpec
  rollout?: string
  deadline?: string
  /** 'rollback' once the console ordered one; it is never turned back into an install. */
  action: JobAction
  state: JobState
  /** 1 for the first attempt, counting up with each retry. */
  attempt: number
  /** Failed install attempts since the breaker last closed. */
  failures: number
  /** Failed runs of the current rollback. */
  rollbackAttempts: number
  /** Failed downloads in a row (they are retried, and never open the breaker). */
  downloadFailures: number
  /** Open: no more attempts until a reset-breaker directive. */
  breaker?: { openedAt: string, reason: string }
  /** When a retry (download, rollback, install attempt, reboot request) is due. */
  nextAttemptAt?: string
  /** Why the current attempt failed; reported with failed, rolling-back and rolled-back. */
  problem?: JobProblem
  /** The latest problem of any kind (downloads and reboots too), for `agent status`. */
  lastError?: JobProblem & { at: string }
  /** When the agent last asked for a reboot to complete this install. */
  rebootRequestedAt?: string
  assignedAt: string
  updatedAt: string
}

export type MarkerStep = 'install' | 'health' | 'rollback' | 'reboot'

/** Written in the batch that starts a step, removed in the one that leaves the in-flight states. */
export interface CrashMarker {
  job: string
  step: MarkerStep
  attempt: number
  at: string
  /** reboot: the boot the install ran in; another boot id means the endpoint has restarted. */
  bootId?: string
  /**
   * The process group the step's command runs in (its own, so it outlives an agent that is killed),
   * written (synced) as soon as the command has started. recover() ends what is left of it before
   * it runs the step again, if it is still the same group: same boot, same leader (start time).
   */
  process?: StepProcess
}

export interface StepProcess {
  /** The group's id: the pid of the step's command, its leader. */
  pgid: number
  /** The boot it ran in: after a restart of the endpoint nothing of it is left. */
  bootId: string
  /** Linux: the leader's start time; a process with its pid and another start time is not it. */
  startTime?: string
}

/** States in which a step was under way; recover() finishes them. ('failed' only with a marker.) */
export const IN_FLIGHT_STATES: ReadonlySet<JobState> = new Set(['installing', 'health-check', 'reboot-pending', 'failed', 'rolling-back'])

export interface Backoff {
  baseMs: number
  maxMs: number
}

export const DEFAULT_BACKOFF: Readonly<Backoff> = { baseMs: 5 * 60_000, maxMs: 6 * 3_600_000 }

/**
 * Delay before retry number `n` (1 = the first retry): baseMs · 2^(n−1), capped at maxMs, of which
 * a random half is taken off ("equal jitter"): endpoints that failed together spread out, and none
 * retries at once.
 */
export function retryDelay (n: number, backoff: Backoff, random: () => number = Math.random): number {
  const cap = Math.min(backoff.maxMs, backoff.baseMs * 2 ** Math.max(0, Math.min(n, 64) - 1))
  const r = Math.min(1, Math.max(0, random()))
  return Math.round(cap / 2 + (cap / 2) * r)
}

export function checkBackoff (b: unknown): Backoff {
  const o = b as Partial<Backoff> | undefined
  if (typeof o !== 'object' || o === null || !Number.isFinite(o.baseMs) || !Number.isFinite(o.maxMs) ||
      o.baseMs! < 0 || o.maxMs! < o.baseMs!) {
    throw PatchswarmError.BAD_CONFIG('backoff needs 0 ≤ baseMs ≤ maxMs')
  }
  return { baseMs: o.baseMs!, maxMs: o.maxMs! }
}

const CODE = /^[A-Z][A-Z0-9_]{0,63}$/

/** A problem in the bounds of the event format: a valid code, the head of the reason, the tail of the output. */
export function boundProblem (p: { code?: string, reason?: string, output?: string }): JobProblem {
  const out: JobProblem = { code: p.code !== undefined && CODE.test(p.code) ? p.code : 'INSTALL_FAILED' }
  if (p.reason) out.reason = head(p.reason, MAX_REASON_CHARS)
  if (p.output) out.output = tail(p.output, MAX_OUTPUT_CHARS)
  return out
}

// Cuts never leave half a surrogate pair (canonical JSON refuses lone surrogates).
function head (s: string, max: number): string {
  if (s.length <= max) return s
  let cut = max - 1
  if (/[\ud800-\udbff]/.test(s[cut - 1]!)) cut--
  return s.slice(0, cut) + '…'
}

function tail (s: string, max: number): string {
  if (s.length <= max) return s
  let from = s.length - max + 1
  if (/[\udc00-\udfff]/.test(s[from]!)) from++
  return '…' + s.slice(from)
}

/** States whose event carries the attempt's problem. */
const REPORTS_PROBLEM: ReadonlySet<JobState> = new Set(['failed', 'rolling-back', 'rolled-back'])

/** The job fact of an event describing `job` now. */
export function jobFact (job: JobRecord): JobFact {
  const fact: JobFact = { release: job.release, action: job.action, state: job.state, attempt: job.attempt }
  if (job.rollout !== undefined) fact.rollout = job.rollout
  if (job.problem && REPORTS_PROBLEM.has(job.state)) {
    fact.code = job.problem.code
    if (job.problem.reason !== undefined) fact.reason = job.problem.reason
    if (job.problem.output !== undefined) fact.output = job.problem.output
  }
  return fact
}

export function deadlineOf (job: JobRecord): Date | undefined {
  return job.deadline === undefined ? undefined : new Date(job.deadline)
}

/** Due when no time is set or it has come. */
export function isDue (job: JobRecord, now: Date): boolean {
  return job.nextAttemptAt === undefined || Date.parse(job.nextAttemptAt) <= now.getTime()
}

export interface JobStatus {
  id: string
  name: string
  packageVersion: string
  rollout?: string
  action: JobRecord['action']
  state: JobState
  attempt: number
  failures: number
  breaker: 'open' | 'closed'
  breakerReason?: string
  nextAttemptAt?: string
  deadline?: string
  /** The step a restart would run again. */
  inFlight?: MarkerStep
  lastCode?: string
  lastReason?: string
  updatedAt: string
}

/** A job as `agent status` shows it. */
export function statusOf (j: JobRecord, marker?: CrashMarker): JobStatus {
  const s: JobStatus = {
    id: j.id,
    name: j.release.name,
    packageVersion: j.release.packageVersion,
    action: j.action,
    state: j.state,
    attempt: j.attempt,
    failures: j.failures,
    breaker: j.breaker ? 'open' : 'closed',
    updatedAt: j.updatedAt
  }
  if (j.rollout !== undefined) s.rollout = j.rollout
  if (j.breaker) s.breakerReason = j.breaker.reason
  if (j.nextAttemptAt !== undefined) s.nextAttemptAt = j.nextAttemptAt
  if (j.deadline !== undefined) s.deadline = j.deadline
  if (marker) s.inFlight = marker.step
  if (j.lastError) {
    s.lastCode = j.lastError.code
    if (j.lastError.reason !== undefined) s.lastReason = j.lastError.reason
  }
  return s
}

/** The Linux boot id, or elsewhere the boot time to the minute. */
export async function systemBootId (): Promise<string> {
  try {
    return (await fs.readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim()
  } catch {
    return `boot-${Math.round((Date.now() - os.uptime() * 1000) / 60_000)}`
  }
}

/** When an install may start, at `now` or later; undefined when nothing but a policy change opens it. */
export function installOpensAt (policy: JobPolicy, now: number, deadline?: Date): number | undefined {
  if (mayInstall(policy, new Date(now), deadline)) return now
  let t = Infinity
  const next = windowState(policy.windows ?? [], new Date(now)).nextOpen
  if (next) t = next.getTime()
  if (policy.forceAfterDeadline && deadline !== undefined) t = Math.min(t, deadline.getTime())
  return t === Infinity ? undefined : t
}

/**
 * When step() can next move `job` (≥ now), or undefined when only a directive, a policy change or
 * a restart of the endpoint can. `marked`: the job has a crash marker.
 */
export function wakeAt (job: JobRecord, marked: boolean, policy: JobPolicy, now: number): number | undefined {
  const next = job.nextAttemptAt === undefined ? undefined : Date.parse(job.nextAttemptAt)
  const at = (t: number | undefined) => t === undefined || Number.isNaN(t) ? undefined : Math.max(t, now)
  switch (job.state) {
    case 'assigned': case 'installing': case 'health-check':
      return now
    case 'downloading': case 'rolling-back':
      return at(next ?? now)
    case 'failed': case 'rolled-back':
      if (marked) return now
      return job.action === 'install' && !job.breaker ? at(next) : undefined
    case 'verified': case 'waiting-window':
      return at(installOpensAt(policy, now, deadlineOf(job)))
    case 'reboot-pending': {
      if (!policy.rebootAllowed) return undefined
      const opens = installOpensAt(policy, now, deadlineOf(job))
      return opens === undefined ? undefined : at(Math.max(opens, next ?? now))
    }
    default:
      return undefined
  }
}

export function problemOf (err: unknown, step: string): JobProblem {
  if (isPatchswarmError(err)) return boundProblem({ code: err.code, reason: `${step}: ${err.detail}` })
  return boundProblem({ code: 'IO_ERROR', reason: `${step}: ${(err as Error)?.message ?? String(err)}` })
}

export function describe (p: JobProblem | undefined): string {
  if (!p) return 'unknown'
  return p.reason ? `${p.code}: ${p.reason}` : p.code
}

export function label (job: JobRecord): string {
  return `${job.release.name} ${job.release.packageVersion}`
}

/** A copy without the named keys (so records hold no `undefined` fields). */
export function without<T extends object> (o: T, ...keys: (keyof T | null)[]): T {
  const copy = { ...o }
  for (const k of keys) if (k !== null) delete copy[k]
  return copy
}

/** The job records and crash markers, and the batch operations that change them. */
export class JobStore {
  readonly jobs: Sublevel
  readonly markers: Sublevel

  constructor (db: Database, names: { jobs?: string, markers?: string } = {}) {
    this.jobs = sublevel(db, names.jobs ?? AGENT_SUBLEVELS.jobs)
    this.markers = sublevel(db, names.markers ?? AGENT_SUBLEVELS.markers)
  }

  async load (): Promise<{ jobs: JobRecord[], markers: CrashMarker[] }> {
    const jobs = (await this.jobs.values().all()) as JobRecord[]
    const markers = (await this.markers.values().all()) as CrashMarker[]
    return { jobs, markers }
  }

  putOps (job: JobRecord): FleetOp[] {
    return [{ type: 'put', sublevel: this.jobs, key: job.id, value: job }]
  }

  /** null removes the job's marker. */
  markerOps (id: string, marker: CrashMarker | null): FleetOp[] {
    return marker === null
      ? [{ type: 'del', sublevel: this.markers, key: id }]
      : [{ type: 'put', sublevel: this.markers, key: id, value: marker }]
  }
}
