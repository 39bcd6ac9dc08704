// What `patchswarm agent status` shows: read from what the data folder holds, never creating
// anything. Enrollment comes from enrollment.json, so it shows even while a running agent holds
// the database's lock; the root and jobs come from the database when it is free.
import fs from 'node:fs/promises'
import { isPatchswarmError } from '../lib/errors.js'
import { openDatabase, sublevel, type Database } from '../lib/store/db.js'
import { envelopeHash } from '../lib/trust/envelope.js'
import { agentPaths, readConfigIfAny, type AgentConfig } from './config.js'
import { agentTrust, readEnrollment, summarizeEnrollment, type EnrollmentSummary } from './enroll.js'
import { AGENT_SUBLEVELS } from './store.js'
import type { JobRecord } from './jobs.js'
import type { JobStatus } from './job-runner.js'
import type { MaintenanceWindow } from '../lib/policy/windows.js'
import type { OutboxStats } from './outbox.js'

/** What a running agent publishes in status.json after each step (agent/agent.ts). */
export interface LiveStatus {
  at: string
  pid: number
  endpoint: string
  jobs: JobStatus[]
  /** The policy's maintenance windows; null: installs may run at any time. */
  windows: MaintenanceWindow[] | null
  window: { open: boolean, closesAt?: string, nextOpen?: string } | null
  forceAfterDeadline: boolean
  rebootAllowed: boolean
  /** When the job runner next has something to do. */
  nextStep: string | null
  nextCheckIn: string | null
  outbox: OutboxStats
  consoleConnected: boolean
}

export const MAX_JOBS_SHOWN = 1000

/** One job as status shows it; the fields are null where the record lacks them. */
export interface JobRow {
  key: string
  /** name@version of its release. */
  release: string | null
  state: string | null
  /** Why the circuit breaker stopped the job, while it is open. */
  breaker: string | null
  nextAttemptAt: string | null
  record: unknown
}

export interface AgentStatus {
  dir: string
  /** agent.json exists: the folder went through enrollment. */
  enrolled: boolean
  config: AgentConfig | null
  enrollment: EnrollmentSummary | null
  /** absent: no db/ yet; read: shown below; in-use: a running agent holds it. */
  database: 'absent' | 'read' | 'in-use'
  root: { org: string, version: number, expires: string, hash: string } | null
  /** Null when the database could not be read (absent or in use). */
  jobs: JobRow[] | null
  /** More jobs exist than MAX_JOBS_SHOWN. */
  jobsTruncated: boolean
  /** What the running agent last published (status.json), with whether that process still runs. */
  live: (LiveStatus & { running: boolean }) | null
}

export async function readAgentStatus (dir: string): Promise<AgentStatus> {
  const paths = agentPaths(dir)
  const config = await readConfigIfAny(paths.dir)
  const enrollment = await readEnrollment(paths.dir)
  const status: AgentStatus = {
    dir: paths.dir,
    enrolled: config !== null,
    config,
    enrollment: enrollment ? summarizeEnrollment(enrollment) : null,
    database: 'absent',
    root: null,
    jobs: null,
    jobsTruncated: false,
    live: await readLive(paths.status)
  }
  // openDatabase would create the folder; a status must not.
  try { await fs.access(paths.db) } catch { return status }
  let db: Database
  try {
    db = await openDatabase(paths.db)
  } catch (err) {
    if (!isPatchswarmError(err, 'IN_USE')) throw err
    // While the agent runs it owns the DB; what it published in status.json stands in.
    return { ...status, database: 'in-use' }
  }
  try {
    const trust = agentTrust(db)
    await trust.ready()
    const root = trust.root
    const rootEnvelope = trust.rootEnvelope
    const { rows, truncated } = await readJobs(db)
    return {
      ...status,
      database: 'read',
      root: root && rootEnvelope ? { org: root.org, version: root.version, expires: root.expires, hash: envelopeHash(rootEnvelope) } : null,
      jobs: rows,
      jobsTruncated: truncated
    }
  } finally {
    await db.close()
  }
}

async function readLive (file: string): Promise<AgentStatus['live']> {
  let live: LiveStatus
  try {
    live = JSON.parse(await fs.readFile(file, 'utf8')) as LiveStatus
  } catch {
    return null // absent, or caught mid-write by an older agent: status shows what the DB has
  }
  let running = false
  try { process.kill(live.pid, 0); running = true } catch {}
  return { ...live, running }
}

/**
 * The job state machine's sublevel (agent/jobs.ts), read defensively: a record from an older or
 * newer agent still shows, with what it has.
 */
async function readJobs (db: Database): Promise<{ rows: JobRow[], truncated: boolean }> {
  const rows: JobRow[] = []
  for await (const [key, record] of sublevel(db, AGENT_SUBLEVELS.jobs).iterator({ limit: MAX_JOBS_SHOWN + 1 })) {
    const r = (record !== null && typeof record === 'object' ? record : {}) as Partial<Record<keyof JobRecord, unknown>>
    const release = r.release as Partial<Record<string, unknown>> | undefined
    rows.push({
      key,
      release: typeof release?.name === 'string' && typeof release.packageVersion === 'string' ? `${release.name}@${release.packageVersion}` : null,
      state: typeof r.state === 'string' ? r.state : null,
      breaker: typeof (r.breaker as { reason?: unknown } | undefined)?.reason === 'string' ? (r.breaker as { reason: string }).reason : null,
      nextAttemptAt: typeof r.nextAttemptAt === 'string' ? r.nextAttemptAt : null,
      record
    })
  }
  const truncated = rows.length > MAX_JOBS_SHOWN
  return { rows: rows.slice(0, MAX_JOBS_SHOWN), truncated }
}
