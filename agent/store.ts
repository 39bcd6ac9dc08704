// The agent's data folder: its LevelDB (jobs, crash markers, the outbox) and the work folders the
// installers keep per job. One agent per data folder: LevelDB's lock file is held by the agent that
// opened it until it closes or dies, so a second agent gets IN_USE instead of a shared database.
//
//   <dir>/db/        LevelDB
//   <dir>/work/<job> an installer's folder for one job (kept across restarts; see InstallContext)
import fs from 'node:fs/promises'
import { PatchswarmError, isPatchswarmError } from '../lib/errors.js'
import { openDatabase, type Database } from '../lib/store/db.js'
import { agentPaths } from './config.js'

/** The sublevels of the agent's database, by owner. */
export const AGENT_SUBLEVELS = {
  outbox: 'agent-outbox',
  jobs: 'agent-jobs',
  markers: 'agent-job-markers'
} as const

export interface AgentStore {
  readonly dir: string
  readonly db: Database
  /** Where JobRunner keeps each job's work folder. */
  readonly workRoot: string
  /** Closes the database (idempotent); the lock goes with it. */
  close (): Promise<void>
}

export async function openAgentStore (dir: string): Promise<AgentStore> {
  if (typeof dir !== 'string' || dir === '') throw PatchswarmError.BAD_ARGUMENT('openAgentStore needs a data folder')
  const { dir: root, work: workRoot, db: dbDir } = agentPaths(dir)
  try {
    // Private: job folders may hold what an install left for its rollback.
    await fs.mkdir(root, { recursive: true, mode: 0o700 })
    await fs.mkdir(workRoot, { recursive: true, mode: 0o700 })
  } catch (err) {
    throw PatchswarmError.IO_ERROR(`cannot create the agent's data folder ${root}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, err)
  }
  let db: Database
  try {
    db = await openDatabase(dbDir)
  } catch (err) {
    if (isPatchswarmError(err, 'IN_USE')) throw PatchswarmError.IN_USE(`another patchswarm agent is running on ${root}`, err)
    throw err
  }
  let closing: Promise<void> | undefined
  return {
    dir: root,
    db,
    workRoot,
    close: () => {
      closing ??= db.close()
      return closing
    }
  }
}
