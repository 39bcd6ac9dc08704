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
    jobsTruncated: false
  }
  // openDatabase would create the folder; a status must not.
  try { await fs.access(paths.db) } catch { return status }
  let db: Database
  try {
    db = await openDatabase(paths.db)
  } catch (err) {
    if (!isPatchswarmError(err, 'IN_USE')) throw err
    // HOOK (agent/agent.ts): while the agent runs it owns the DB; it could publish jobs, breaker
    // state, windows and the next run in a status file or on a socket, read here instead.
    return { ...status, database: 'in-use' }
  }
  try {
    const trust = agentTrust(db)
    await trust.ready()
    const root = trust.root
    const rootEnvelope = trust.rootEnvelope
    const { rows, truncated } = await readJobs(db)
    // HOOK (agent/agent.ts): maintenance windows and the next check-in go here once the daemon
    // keeps them in the DB; jobs (with their breakers) are read below.
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
