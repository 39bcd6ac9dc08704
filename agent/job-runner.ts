// JobRunner moves the agent's jobs (see jobs.ts for the states): downloads at any time, installs
// only when the policy allows (mayInstall: inside a window, or forced after the deadline), health
// check, automatic rollback on failure, retries with back-off, and a breaker per release.
//
// Each change is one synced LevelDB batch: the job record, the outbox event that reports it, and
// the crash marker. Long steps (install, health check, rollback, reboot) run outside the write
// lock, so a directive can be taken meanwhile; their result is applied to the job as it is then (a
// rollback ordered during an install is honoured when the install returns). step() and recover()
// run one at a time; installs run one at a time.
//
// Downloads run in the background, side by side, outside both locks: one may take hours over a thin
// link, or hang, and nothing else may wait for it (installs of other releases, a rollback the
// console orders, the agent's stop). step() starts the download of each job in `downloading` that
// is due and has none in flight; when it ends, 'download-ended' says so and the next step() moves
// the job on: verified, or a retry after a back-off. close() aborts the downloads in flight.
//
// Crashes: the marker names the step under way, and once its command has started, the process
// group it runs in. recover() ends what is left of that group (the agent may have been killed while
// the step ran on) and runs the step again before anything else, whether or not a window is open
// now, so the endpoint ends fully installed or fully rolled back. Closing the runner aborts a
// running step and leaves its marker: the next start finishes it.
import fs from 'node:fs/promises'
import path from 'node:path'
import { EventEmitter } from 'node:events'
import { PatchswarmError } from '../lib/errors.js'
import { Mutex } from '../lib/fleet/common.js'
import type { Database } from '../lib/store/db.js'
import type { SignedEvent, JobState } from '../lib/report/event.js'
import type { VerifiedAssignment } from '../lib/trust/trusted-state.js'
import type { ReleaseRef } from '../lib/trust/directive.js'
import { mayInstall } from '../lib/policy/policy.js'
import type { InstallContext, InstallResult, InstallerRegistry } from './installers/installer.js'
import { DEFAULT_LEFTOVER_GRACE_MS, endProcessGroup, watchSpawns, type ProcessGroup } from './installers/run.js'
import type { AgentFact, AgentOutbox, OutboxFact } from './outbox.js'
import {
  DEFAULT_BACKOFF, IN_FLIGHT_STATES, JobStore, boundProblem, checkBackoff, deadlineOf, describe, isDue,
  jobFact, label, problemOf, retryDelay, statusOf, systemBootId, wakeAt, without,
  type Backoff, type CrashMarker, type JobPolicy, type JobRecord, type JobStatus, type MarkerStep
} from './jobs.js'

export type { JobStatus } from './jobs.js'

export const DEFAULT_BREAKER_THRESHOLD = 3
export const DEFAULT_MAX_ROLLBACK_ATTEMPTS = 3
/** After asking for a reboot, how long before asking again (and how long step() stands still). */
export const DEFAULT_REBOOT_RETRY_MS = 30 * 60_000
// Bounds on one step(): each job moves at most MAX_MOVES times per round, and rounds end when
// nothing moved (a zero back-off must not spin).
const MAX_ROUNDS = 16
const MAX_MOVES = 32
/** How long close() waits for aborted downloads to end (one that ignores its signal is left behind). */
const CLOSE_DOWNLOADS_MS = 2000

export interface JobRunnerOptions {
  db: Database
  outbox: AgentOutbox
  installers: InstallerRegistry
  clock?: () => Date
  /** Each job's installer folder is <workRoot>/<job id>. */
  workRoot: string
  /** The verified, read-only copy of the job's package. */
  packageDir: (job: JobRecord) => Promise<string>
  /**
   * Fetches the job's package into the store; throws a PatchswarmError on failure. It runs in the
   * background and must end soon after `signal` aborts (close(), or a rollback the console ordered).
   */
  download: (job: JobRecord, signal: AbortSignal) => Promise<void>
  policy: () => JobPolicy | Promise<JobPolicy>
  /** Restarts the endpoint (a configured command); the process is expected to end soon after. */
  reboot: () => Promise<void>
  /** Changes when the endpoint restarts (default: Linux's boot_id, else the boot time). */
  bootId?: () => Promise<string>
  breakerThreshold?: number
  backoff?: Backoff
  maxRollbackAttempts?: number
  rebootRetryMs?: number
  /** recover(): between SIGTERM and SIGKILL to a step's process group that a killed run left behind. */
  orphanGraceMs?: number
  /** For the jitter; [0, 1). */
  random?: () => number
  log?: (line: string) => void
}

export interface JobTransition {
  job: string
  release: ReleaseRef
  from: JobState
  to: JobState
  action: JobRecord['action']
  attempt: number
  /** Seqs of the events committed with it (none for a change the console does not hear about). */
  seqs: number[]
}

export interface StepResult {
  /** What this call changed, in order (assign()'s changes are on the 'transition' event only). */
  transitions: JobTransition[]
  /** The endpoint is being rebooted: nothing more happens until it is back (or rebootRetryMs passed). */
  rebooting: boolean
  /**
   * When calling step() again can move something (absent: only a new directive, a reboot or the
   * end of a download can; 'download-ended' says when one ends).
   */
  nextWakeAt?: Date
  /** Downloads under way (or ended, for the next step() to apply). */
  downloading: number
}

export type AssignOutcome =
  | 'created' | 'unchanged' | 'updated' | 'ignored'
  | 'rolled-back' | 'rollback-started' | 'rollback-ordered' | 'breaker-closed'

export interface JobRunnerEvents {
  /** After each committed transition (the batch is on disk), from step(), recover() or assign(). */
  transition: [JobTransition, JobRecord]
  /** A background download ended (ok or not): the next step() moves its job on. */
  'download-ended': [job: string, ok: boolean]
}

/** A download running in the background for one attempt of a job. */
interface Fetch {
  attempt: number
  controller: AbortController
  /** Resolves (never rejects) when the download has ended and `outcome` is set. */
  ended: Promise<void>
  outcome?: { ok: true } | { ok: false, error: unknown }
}

interface Change {
  job: JobRecord
  /** undefined: the marker stays; null: removed. */
  marker?: CrashMarker | null
  /** Whether the console hears of it; default: when state or action changed. */
  report?: boolean
  agent?: AgentFact[]
}

type StepName = 'install' | 'health' | 'rollback'

export class JobRunner extends EventEmitter<JobRunnerEvents> {
  private readonly opts: JobRunnerOptions
  private readonly store: JobStore
  private readonly clock: () => Date
  private readonly backoff: Backoff
  private readonly breakerThreshold: number
  private readonly maxRollbackAttempts: number
  private readonly rebootRetryMs: number
  private readonly random: () => number
  private readonly jobs = new Map<string, JobRecord>()
  private readonly markers = new Map<string, CrashMarker>()
  private readonly fetches = new Map<string, Fetch>()
  private readonly writeLock = new Mutex()
  private readonly stepLock = new Mutex()
  private readonly abort = new AbortController()
  private history: JobTransition[] = []
  private recovered = false
  private recovering = false
  private rebootingNow = false
  private suspendedUntil = 0
  private opening: Promise<void> | undefined
  private closing: Promise<void> | undefined

  constructor (opts: JobRunnerOptions) {
    super()
    if (!opts?.db || !opts.outbox || !opts.installers || typeof opts.workRoot !== 'string' || typeof opts.packageDir !== 'function' ||
        typeof opts.download !== 'function' || typeof opts.policy !== 'function' || typeof opts.reboot !== 'function') {
      throw PatchswarmError.BAD_ARGUMENT('a JobRunner needs { db, outbox, installers, workRoot, packageDir, download, policy, reboot }')
    }
    const threshold = opts.breakerThreshold ?? DEFAULT_BREAKER_THRESHOLD
    const maxRollbacks = opts.maxRollbackAttempts ?? DEFAULT_MAX_ROLLBACK_ATTEMPTS
    if (!Number.isInteger(threshold) || threshold < 1) throw PatchswarmError.BAD_CONFIG('breakerThreshold must be a positive integer')
    if (!Number.isInteger(maxRollbacks) || maxRollbacks < 1) throw PatchswarmError.BAD_CONFIG('maxRollbackAttempts must be a positive integer')
    this.opts = opts
    this.store = new JobStore(opts.db)
    this.clock = opts.clock ?? (() => new Date())
    this.backoff = checkBackoff(opts.backoff ?? DEFAULT_BACKOFF)
    this.breakerThreshold = threshold
    this.maxRollbackAttempts = maxRollbacks
    this.rebootRetryMs = opts.rebootRetryMs ?? DEFAULT_REBOOT_RETRY_MS
    this.random = opts.random ?? Math.random
  }

  /** Loads the jobs. Idempotent. */
  ready (): Promise<void> {
    this.opening ??= (async () => {
      await this.opts.outbox.ready()
      const { jobs, markers } = await this.store.load()
      for (const j of jobs) this.jobs.set(j.id, j)
      for (const m of markers) this.markers.set(m.job, m)
    })()
    return this.opening
  }

  /**
   * Stops a running step (its marker stays, so the next start runs it again) and waits for it;
   * aborts the downloads in flight (their jobs stay in downloading: the next start downloads again,
   * and what arrived is kept) and waits a little for them. The database and the outbox belong to
   * the caller. Idempotent.
   */
  close (): Promise<void> {
    this.closing ??= (async () => {
      this.abort.abort(PatchswarmError.CLOSED('the agent is stopping'))
      await this.stepLock.run(async () => {})
      const downloads = [...this.fetches.values()].map((f) => f.ended)
      if (downloads.length > 0) {
        let timer: NodeJS.Timeout | undefined
        await Promise.race([Promise.all(downloads), new Promise<void>((resolve) => { timer = setTimeout(resolve, CLOSE_DOWNLOADS_MS) })])
        clearTimeout(timer)
      }
      await this.writeLock.run(async () => {})
    })()
    return this.closing
  }

  /** Resolves when the downloads in flight now have ended (the next step() moves their jobs on). */
  async downloadsEnded (): Promise<void> {
    await Promise.all([...this.fetches.values()].map((f) => f.ended))
  }

  job (id: string): JobRecord | undefined {
    const j = this.jobs.get(id)
    return j && structuredClone(j)
  }

  status (): JobStatus[] {
    return this.ordered().map((j) => statusOf(j, this.markers.get(j.id)))
  }

  /**
   * Takes one assignment of a verified directive. Idempotent: directives are read again at every
   * check-in, so the same assignment changes nothing the second time.
   *   install        creates the job (nothing if it exists; a changed deadline or rollout is noted)
   *   rollback       undoes the job: at once if nothing is installed, by a rollback step otherwise,
   *                  after the running step if one runs; a job once ordered back stays rolled back
   *   reset-breaker  closes an open breaker and lets the job try again; with `issued` (the
   *                  directive's), only a breaker that opened before it, so an old reset that is
   *                  still in the directive cannot reopen the loop
   */
  async assign (a: VerifiedAssignment, opts: { issued?: Date | string } = {}): Promise<AssignOutcome> {
    const v = a?.verifiedRelease
    if (!v || typeof a.release?.envelopeHash !== 'string' || a.release.envelopeHash !== v.envelopeHash || a.release.manifest !== v.release.manifest.digest) {
      throw PatchswarmError.BAD_ARGUMENT('assign needs a verified assignment whose release is the verified release it names')
    }
    const issued = opts.issued === undefined ? undefined : new Date(opts.issued).getTime()
    await this.ready()
    this.assertOpen()
    const id = v.envelopeHash
    return this.writeLock.run(async () => {
      const cur = this.jobs.get(id)
      const now = this.clock()
      if (a.action === 'install') {
        if (!cur) {
          const at = now.toISOString()
          const job: JobRecord = {
            id,
            release: { ...a.release },
            spec: structuredClone(v.release.install),
            action: 'install',
            state: 'assigned',
            attempt: 1,
            failures: 0,
            rollbackAttempts: 0,
            downloadFailures: 0,
            assignedAt: at,
            updatedAt: at
          }
          if (a.rollout !== undefined) job.rollout = a.rollout
          if (a.deadline !== undefined) job.deadline = a.deadline
          await this.commit(undefined, { job, report: true }, false)
          return 'created'
        }
        if (cur.action === 'rollback') return 'ignored'
        if (cur.deadline === a.deadline && cur.rollout === a.rollout) return 'unchanged'
        const job = without({ ...cur, deadline: a.deadline, rollout: a.rollout }, a.deadline === undefined ? 'deadline' : null, a.rollout === undefined ? 'rollout' : null)
        await this.commit(cur, { job, report: false }, false)
        return 'updated'
      }

      if (a.action === 'rollback') {
        if (!cur) return 'ignored'
        if (cur.action === 'rollback') return 'unchanged'
        const ordered = without({ ...cur, action: 'rollback' as const }, 'nextAttemptAt')
        // A rollback the console ordered is no failure: its events carry no failure code.
        const fresh = without(ordered, 'problem')
        switch (cur.state) {
          case 'assigned': case 'downloading': case 'verified': case 'waiting-window': case 'rolled-back':
            // Nothing of this release is on the endpoint (and its download, if one runs, is not needed).
            await this.commit(cur, { job: { ...fresh, state: 'rolled-back' }, marker: null }, false)
            this.fetches.get(id)?.controller.abort(PatchswarmError.CLOSED('the console ordered a rollback'))
            return 'rolled-back'
          case 'installed': case 'reboot-pending':
            await this.commit(cur, this.startRollback(fresh, now), false)
            return 'rollback-started'
          case 'failed':
            if (!this.markers.has(id)) {
              await this.commit(cur, this.startRollback(fresh, now), false)
              return 'rollback-started'
            }
            break
        }
        // A step is under way (or about to be): it sees the order when it returns.
        await this.commit(cur, { job: ordered, report: false }, false)
        return 'rollback-ordered'
      }

      if (a.action === 'reset-breaker') {
        if (!cur) return 'ignored'
        if (!cur.breaker) return 'unchanged'
        if (issued !== undefined && Date.parse(cur.breaker.openedAt) > issued) return 'unchanged'
        let job: JobRecord = without({ ...cur, failures: 0, rollbackAttempts: 0 }, 'breaker', 'problem')
        let marker: CrashMarker | undefined
        if (job.action === 'install') {
          job.nextAttemptAt = now.toISOString()
        } else if (job.state === 'failed') {
          const c = this.startRollback(job, now)
          job = c.job
          marker = c.marker!
        }
        const agent: AgentFact = { state: 'breaker-closed', release: cur.release, reason: 'reset by a directive' }
        await this.commit(cur, { job, ...(marker ? { marker } : {}), agent: [agent] }, false)
        return 'breaker-closed'
      }
      throw PatchswarmError.BAD_ARGUMENT(`unknown action ${JSON.stringify(a.action)}`)
    })
  }

  /**
   * Finishes what a crash or a stop interrupted: each job with a step under way runs it again until
   * it rests (no window check: half an install is worse than an install outside the window).
   * Runs once; step() calls it first if nobody did.
   */
  async recover (): Promise<StepResult> {
    await this.ready()
    this.assertOpen()
    return this.stepLock.run(async () => {
      this.history = []
      await this.recoverLocked()
      return this.result()
    })
  }

  /** Advances every job that can move now; see StepResult. */
  async step (): Promise<StepResult> {
    await this.ready()
    this.assertOpen()
    return this.stepLock.run(async () => {
      this.history = []
      await this.recoverLocked()
      if (this.clock().getTime() < this.suspendedUntil) return this.result()
      this.rebootingNow = false
      // Downloads started by this call: one that fails at once waits for its back-off, not the next round.
      const started = new Set<string>()
      for (let round = 0; round < MAX_ROUNDS && this.running(); round++) {
        let moved = await this.downloadsDone()
        for (const job of this.ordered()) {
          for (let i = 0; i < MAX_MOVES && this.running(); i++) {
            if (!(await this.advance(job.id))) break
            moved = true
          }
        }
        if (!this.running()) break
        const now = this.clock()
        for (const j of this.ordered()) {
          if (j.state === 'downloading' && isDue(j, now) && !this.fetches.has(j.id) && !started.has(j.id)) {
            started.add(j.id)
            this.startDownload(j)
          }
        }
        // Another round if something moved, or a download ended meanwhile (during an install).
        if (!moved && ![...this.fetches.values()].some((f) => f.outcome)) break
      }
      return this.result()
    })
  }

  // --- moving one job -----------------------------------------------------------------------------

  private running (): boolean {
    return this.closing === undefined && !this.rebootingNow
  }

  private async recoverLocked () {
    if (this.recovered) return
    this.recovering = true
    try {
      // First what a killed run left running: no step may run twice side by side.
      for (const marker of [...this.markers.values()]) {
        if (marker.process && this.closing === undefined) await this.endLeftover(marker)
      }
      const ids = new Set([...this.markers.keys(), ...[...this.jobs.values()].filter((j) => this.inFlight(j)).map((j) => j.id)])
      for (const id of ids) {
        for (let i = 0; i < MAX_MOVES && this.closing === undefined; i++) {
          const job = this.jobs.get(id)
          if (!job || !this.inFlight(job)) break
          if (!(await this.advance(id))) break
        }
      }
    } finally {
      this.recovering = false
    }
    if (this.closing === undefined) this.recovered = true
  }

  private inFlight (job: JobRecord): boolean {
    return IN_FLIGHT_STATES.has(job.state) && (job.state !== 'failed' || this.markers.has(job.id))
  }

  /** One move of one job, if it can move now; downloads are started by step(). */
  private async advance (id: string): Promise<boolean> {
    const job = this.jobs.get(id)
    if (!job) return false
    const now = this.clock()
    switch (job.state) {
      case 'assigned':
        return this.move(id, 'assigned', (cur) => ({ job: { ...cur, state: 'downloading' } }))
      case 'verified':
      case 'waiting-window': {
        if (!mayInstall(await this.policy(), now, deadlineOf(job))) {
          return job.state === 'verified' && this.move(id, 'verified', (cur) => ({ job: { ...cur, state: 'waiting-window' } }))
        }
        return this.move(id, job.state, (cur, at) => ({ job: { ...cur, state: 'installing' }, marker: this.marker(cur, 'install', at) }))
      }
      case 'installing':
        return this.runStep(id, 'install')
      case 'health-check':
        return this.runStep(id, 'health')
      case 'reboot-pending':
        return this.rebootPending(id)
      case 'failed':
        if (this.markers.has(id)) return this.move(id, 'failed', (cur, at) => this.startRollback(cur, at))
        return this.retry(id)
      case 'rolling-back':
        return isDue(job, now) && this.runStep(id, 'rollback')
      case 'rolled-back':
        return this.retry(id)
      default:
        return false
    }
  }

  /** A new attempt at an install that failed, when its back-off has passed and the breaker is closed. */
  private retry (id: string): Promise<boolean> {
    const job = this.jobs.get(id)!
    if (job.action !== 'install' || job.breaker || job.nextAttemptAt === undefined || !isDue(job, this.clock())) return Promise.resolve(false)
    return this.move(id, job.state, (cur) => ({
      job: without({ ...cur, state: 'downloading', attempt: cur.attempt + 1, rollbackAttempts: 0, downloadFailures: 0 }, 'nextAttemptAt', 'problem')
    }))
  }

  /** Starts the job's download in the background; its end is applied by a later step(). */
  private startDownload (job: JobRecord): void {
    const controller = new AbortController()
    const onClose = () => controller.abort(this.abort.signal.reason)
    this.abort.signal.addEventListener('abort', onClose, { once: true })
    const fetch: Fetch = { attempt: job.attempt, controller, ended: Promise.resolve() }
    fetch.ended = (async () => {
      try {
        await this.opts.download(structuredClone(job), controller.signal)
        fetch.outcome = { ok: true }
      } catch (error) {
        fetch.outcome = { ok: false, error }
      } finally {
        this.abort.signal.removeEventListener('abort', onClose)
      }
      if (this.closing !== undefined) return
      try {
        this.emit('download-ended', job.id, fetch.outcome.ok)
      } catch (err) {
        this.say(`${label(job)}: a 'download-ended' listener failed: ${(err as Error).message}`)
      }
    })()
    this.fetches.set(job.id, fetch)
  }

  /** Applies the downloads that ended; true if a job moved. */
  private async downloadsDone (): Promise<boolean> {
    let moved = false
    for (const [id, fetch] of [...this.fetches]) {
      if (!fetch.outcome || !this.running()) continue
      this.fetches.delete(id)
      if (await this.afterDownload(id, fetch.attempt, fetch.outcome)) moved = true
    }
    return moved
  }

  private async afterDownload (id: string, attempt: number, outcome: NonNullable<Fetch['outcome']>): Promise<boolean> {
    const current = (cur: JobRecord) => cur.state === 'downloading' && cur.attempt === attempt
    if (outcome.ok) {
      return (await this.update(id, (cur) => current(cur) ? { job: without({ ...cur, state: 'verified', downloadFailures: 0 }, 'nextAttemptAt') } : null)) !== null
    }
    const job = this.jobs.get(id)
    if (!job || !current(job)) return false // rolled back meanwhile: its download was aborted
    const problem = problemOf(outcome.error, 'download')
    this.say(`${label(job)}: download failed: ${problem.code}: ${problem.reason}`)
    await this.update(id, (cur, now) => {
      if (!current(cur)) return null
      const n = cur.downloadFailures + 1
      return {
        job: { ...cur, downloadFailures: n, nextAttemptAt: this.later(now, n), lastError: { ...problem, at: now.toISOString() } },
        report: false
      }
    })
    return false
  }

  /** Runs an installer step of the job's current state and applies its result. */
  private async runStep (id: string, step: StepName): Promise<boolean> {
    const job = this.jobs.get(id)!
    const { state, attempt } = job
    const result = await this.runInstaller(job, step)
    // Stopped with the agent: the marker stays and the next start runs the step again.
    if (!result.ok && this.closing !== undefined) return false
    const bootId = result.ok && step === 'install' && result.rebootRequired ? await this.bootId() : undefined
    return this.move(id, state, (cur, now) => {
      if (cur.attempt !== attempt) return null
      const change = this.afterStep(cur, step, result, now, bootId)
      // A marker that stays (a rollback to be tried again) no longer names the run that ended.
      const marker = this.markers.get(id)
      if (change && change.marker === undefined && marker?.process) change.marker = without(marker, 'process')
      return change
    })
  }

  private afterStep (cur: JobRecord, step: StepName, r: InstallResult, now: Date, bootId?: string): Change | null {
    const at = now.toISOString()
    if (step === 'rollback') {
      if (r.ok) {
        const job: JobRecord = without({ ...cur, state: 'rolled-back', rollbackAttempts: 0 }, 'nextAttemptAt')
        if (cur.action === 'rollback') return { job, marker: null }
        if (cur.failures >= this.breakerThreshold) {
          const why = `${cur.failures} failed attempts; last: ${describe(cur.problem)}`
          return { job: { ...job, breaker: { openedAt: at, reason: why } }, marker: null, agent: [this.breakerFact(cur, why)] }
        }
        return { job: { ...job, nextAttemptAt: this.later(now, cur.failures) }, marker: null }
      }
      const problem = boundProblem(r)
      const n = cur.rollbackAttempts + 1
      const lastError = { ...problem, at }
      if (n < this.maxRollbackAttempts) {
        this.say(`${label(cur)}: rollback failed (${n} of ${this.maxRollbackAttempts}): ${describe(problem)}`)
        return { job: { ...cur, rollbackAttempts: n, nextAttemptAt: this.later(now, n), lastError }, report: false }
      }
      // Nothing more the agent can do on its own: it rests, and says so.
      const why = `rollback failed ${n} times; last: ${describe(problem)}`
      const job: JobRecord = without({ ...cur, state: 'failed', rollbackAttempts: n, problem, lastError }, 'nextAttemptAt')
      if (cur.breaker) return { job, marker: null }
      return { job: { ...job, breaker: { openedAt: at, reason: why } }, marker: null, agent: [this.breakerFact(cur, why)] }
    }

    if (!r.ok) {
      const problem = boundProblem(r)
      this.say(`${label(cur)}: ${step} failed: ${describe(problem)}`)
      return {
        job: { ...cur, state: 'failed', failures: cur.failures + 1, problem, lastError: { ...problem, at } },
        marker: this.marker(cur, 'rollback', now)
      }
    }
    if (cur.action === 'rollback') return this.startRollback(cur, now)
    if (step === 'install') {
      if (r.rebootRequired) return { job: { ...cur, state: 'reboot-pending' }, marker: { ...this.marker(cur, 'reboot', now), bootId: bootId! } }
      return { job: { ...cur, state: 'health-check' }, marker: this.marker(cur, 'health', now) }
    }
    return { job: without({ ...cur, state: 'installed', failures: 0 }, 'nextAttemptAt', 'problem', 'rebootRequestedAt'), marker: null }
  }

  private async rebootPending (id: string): Promise<boolean> {
    const job = this.jobs.get(id)!
    const marker = this.markers.get(id)
    if (job.action === 'rollback') return this.move(id, 'reboot-pending', (cur, now) => this.startRollback(cur, now))
    if (marker?.bootId !== undefined && await this.bootId() !== marker.bootId) {
      this.say(`${label(job)}: the endpoint has restarted; checking the install`)
      return this.move(id, 'reboot-pending', (cur, now) => ({ job: { ...cur, state: 'health-check' }, marker: this.marker(cur, 'health', now) }))
    }
    if (this.recovering) return false
    const now = this.clock()
    const policy = await this.policy()
    if (!policy.rebootAllowed || !isDue(job, now) || !mayInstall(policy, now, deadlineOf(job))) return false
    // Recorded first: a reboot that happens before anything else is written still counts once.
    const asked = await this.update(id, (cur, at) => cur.state === 'reboot-pending'
      ? { job: { ...cur, rebootRequestedAt: at.toISOString(), nextAttemptAt: new Date(at.getTime() + this.rebootRetryMs).toISOString() }, report: false }
      : null)
    if (!asked) return false
    this.say(`${label(job)}: rebooting to complete the install`)
    try {
      await this.opts.reboot()
    } catch (err) {
      const problem = problemOf(err, 'reboot')
      this.say(`${label(job)}: reboot failed: ${describe(problem)}`)
      await this.update(id, (cur, at) => ({ job: { ...cur, lastError: { ...problem, at: at.toISOString() } }, report: false }))
      return false
    }
    this.rebootingNow = true
    this.suspendedUntil = now.getTime() + this.rebootRetryMs
    return false
  }

  private startRollback (cur: JobRecord, now: Date): Change {
    return {
      job: without({ ...cur, state: 'rolling-back', rollbackAttempts: 0 }, 'nextAttemptAt'),
      marker: this.marker(cur, 'rollback', now)
    }
  }

  private breakerFact (job: JobRecord, reason: string): AgentFact {
    this.say(`${label(job)}: breaker open: ${reason}`)
    return { state: 'breaker-open', release: job.release, reason: boundProblem({ reason }).reason! }
  }

  private marker (job: JobRecord, step: MarkerStep, now: Date): CrashMarker {
    return { job: job.id, step, attempt: job.attempt, at: now.toISOString() }
  }

  private later (now: Date, n: number): string {
    return new Date(now.getTime() + retryDelay(n, this.backoff, this.random)).toISOString()
  }

  private async runInstaller (job: JobRecord, step: StepName): Promise<InstallResult> {
    const workDir = path.join(this.opts.workRoot, job.id)
    // Each command the step starts is recorded in the marker before the step's result is applied.
    const recording: Promise<void>[] = []
    const spawned = (group: ProcessGroup) => { recording.push(this.recordProcess(job.id, step, job.attempt, group)) }
    try {
      await fs.mkdir(workDir, { recursive: true, mode: 0o700 })
      const installer = this.opts.installers.for(job.spec)
      const ctx: InstallContext = {
        spec: job.spec,
        packageDir: await this.opts.packageDir(structuredClone(job)),
        workDir,
        signal: this.abort.signal,
        log: (line) => this.say(`${label(job)}: ${line}`)
      }
      switch (step) {
        case 'install': return await watchSpawns(spawned, () => installer.install(ctx as never))
        case 'health': return await watchSpawns(spawned, () => installer.healthCheck(ctx as never))
        case 'rollback': return await watchSpawns(spawned, () => installer.rollback(ctx as never))
      }
    } catch (err) {
      // No installer for the type, no package copy, or an installer's own bug: a failed step.
      const p = problemOf(err, step)
      return { ok: false, code: p.code, reason: p.reason ?? '', output: '' }
    } finally {
      await Promise.all(recording)
    }
  }

  /** Notes the process group of a step's command in the job's marker (synced), if the step is still the marker's. */
  private async recordProcess (id: string, step: MarkerStep, attempt: number, group: ProcessGroup): Promise<void> {
    try {
      const bootId = await this.bootId()
      await this.writeLock.run(async () => {
        const marker = this.markers.get(id)
        if (!marker || marker.step !== step || marker.attempt !== attempt) return
        const next: CrashMarker = { ...marker, process: { ...group, bootId } }
        await this.opts.db.batch(this.store.markerOps(id, next) as never, { sync: true })
        this.markers.set(id, next)
        // Said once it is on disk: from here on a run that is killed leaves a marker naming the
        // group, and the next run ends it before the step runs again. (This is written a moment
        // after the command started: a kill in between leaves a marker without it.)
        const job = this.jobs.get(id)
        this.say(`${job ? label(job) : id}: its ${step} step runs as process group ${group.pgid}, noted in its crash marker`)
      })
    } catch (err) {
      this.say(`cannot record the process group ${group.pgid} of a ${step} step: ${(err as Error).message}`)
    }
  }

  /**
   * Ends the process group that a run killed during the marker's step left behind (if it is still
   * that group), then forgets it: its pid may belong to someone else one day.
   */
  private async endLeftover (marker: CrashMarker): Promise<void> {
    const group = marker.process!
    const job = this.jobs.get(marker.job)
    const name = job ? label(job) : marker.job
    const what = `process group ${group.pgid} of its ${marker.step} step`
    try {
      if (group.bootId !== await this.bootId()) {
        this.say(`${name}: ${what} ran before the endpoint restarted: nothing of it is left`)
      } else {
        const outcome = await endProcessGroup(group, { graceMs: this.opts.orphanGraceMs ?? DEFAULT_LEFTOVER_GRACE_MS })
        if (outcome === 'ended') this.say(`${name}: ended ${what}, left running by a run of the agent that was killed`)
        else if (outcome === 'gone') this.say(`${name}: ${what} has ended already`)
        else this.say(`${name}: ${what}: that id belongs to another process now; left alone`)
      }
    } catch (err) {
      this.say(`${name}: cannot end ${what}: ${(err as Error).message}`)
    }
    await this.writeLock.run(async () => {
      const cur = this.markers.get(marker.job)
      if (cur?.process?.pgid !== group.pgid) return
      const next = without(cur, 'process')
      await this.opts.db.batch(this.store.markerOps(marker.job, next) as never, { sync: true })
      this.markers.set(marker.job, next)
    })
  }

  // --- committing ---------------------------------------------------------------------------------

  /** Applies `fn` to the job if it is still in state `from`; true if something was committed. */
  private async move (id: string, from: JobState, fn: (cur: JobRecord, now: Date) => Change | null): Promise<boolean> {
    return (await this.update(id, (cur, now) => cur.state === from ? fn(cur, now) : null)) !== null
  }

  private update (id: string, fn: (cur: JobRecord, now: Date) => Change | null): Promise<JobRecord | null> {
    return this.writeLock.run(async () => {
      const cur = this.jobs.get(id)
      if (!cur) return null
      const change = fn(cur, this.clock())
      return change ? this.commit(cur, change) : null
    })
  }

  /** One synced batch: job record, marker, events. Call with the write lock held. */
  private async commit (cur: JobRecord | undefined, change: Change, fromStep = true): Promise<JobRecord> {
    const now = this.clock()
    const job: JobRecord = { ...change.job, updatedAt: now.toISOString() }
    const ops = this.store.putOps(job)
    if (change.marker !== undefined) ops.push(...this.store.markerOps(job.id, change.marker))
    const report = change.report ?? (cur === undefined || job.state !== cur.state || job.action !== cur.action)
    const facts: OutboxFact[] = []
    if (report) facts.push({ kind: 'job', job: jobFact(job) })
    for (const agent of change.agent ?? []) facts.push({ kind: 'agent', agent })
    let events: SignedEvent[] = []
    if (facts.length > 0) events = await this.opts.outbox.append(facts, ops)
    else await this.opts.db.batch(ops as never, { sync: true })
    this.jobs.set(job.id, job)
    if (change.marker === null) this.markers.delete(job.id)
    else if (change.marker !== undefined) this.markers.set(job.id, change.marker)
    // A note in the record (a retry time, a new deadline) is no transition.
    if (events.length > 0 || cur?.state !== job.state) {
      const t: JobTransition = {
        job: job.id,
        release: job.release,
        from: cur?.state ?? job.state,
        to: job.state,
        action: job.action,
        attempt: job.attempt,
        seqs: events.map((e) => e.signed.seq)
      }
      if (fromStep) this.history.push(t)
      this.emit('transition', t, structuredClone(job))
    }
    return job
  }

  // --- reading ------------------------------------------------------------------------------------

  private async result (): Promise<StepResult> {
    const transitions = this.history
    this.history = []
    const out: StepResult = { transitions, rebooting: this.rebootingNow || this.clock().getTime() < this.suspendedUntil, downloading: this.fetches.size }
    const wake = await this.nextWake()
    if (wake !== undefined) out.nextWakeAt = wake
    return out
  }

  /** The earliest time at which step() may move a job (a hint for the agent's timer). */
  private async nextWake (): Promise<Date | undefined> {
    const now = this.clock().getTime()
    if (now < this.suspendedUntil) return new Date(this.suspendedUntil)
    const policy = await this.policy()
    let best = Infinity
    for (const job of this.jobs.values()) {
      // A download in flight wakes no one: its end does ('download-ended'); one that ended is due now.
      const fetch = this.fetches.get(job.id)
      const t = fetch ? (fetch.outcome ? now : undefined) : wakeAt(job, this.markers.has(job.id), policy, now)
      if (t !== undefined) best = Math.min(best, t)
    }
    return best === Infinity ? undefined : new Date(best)
  }

  private ordered (): JobRecord[] {
    return [...this.jobs.values()].sort((a, b) => a.assignedAt < b.assignedAt ? -1 : a.assignedAt > b.assignedAt ? 1 : a.id < b.id ? -1 : 1)
  }

  private async policy (): Promise<JobPolicy> {
    return await this.opts.policy()
  }

  private bootId (): Promise<string> {
    return (this.opts.bootId ?? systemBootId)()
  }

  private say (line: string) {
    this.opts.log?.(line)
  }

  private assertOpen () {
    if (this.closing !== undefined) throw PatchswarmError.CLOSED('the job runner is closed')
  }
}
