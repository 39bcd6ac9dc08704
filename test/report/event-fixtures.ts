// Agents that sign real events, an in-memory endpoint registry, and a console stack (log, ingestor,
// views) on a temporary LevelDB, for the reporting tests.
import path from 'node:path'
import type { Test } from 'tap'
import { generateKeyPair, keySigner, type Signer } from '../../lib/crypto/keys.js'
import { serializeEnvelope } from '../../lib/trust/envelope.js'
import { openDatabase, type Database } from '../../lib/store/db.js'
import { EventLog } from '../../lib/store/event-log.js'
import { signEvent, type AgentEvent, type JobState, type SignedEvent } from '../../lib/report/event.js'
import type { ConsoleFact, ReportLog } from '../../lib/report/facts.js'
import { Ingestor } from '../../lib/report/ingest.js'
import { ReportViews } from '../../lib/report/views.js'

export const ORG = 'acme'

export const RELEASE = {
  name: 'editor',
  packageVersion: '2.4.1',
  platform: 'linux-x64',
  manifest: 'a'.repeat(64),
  envelopeHash: 'b'.repeat(64)
}

/** A clock that moves one second per call. */
export function steppingClock (start = Date.parse('2030-01-01T00:00:00Z')): () => Date {
  let t = start
  return () => new Date((t += 1000))
}

export class Agent {
  readonly signer: Signer
  readonly keyid: string
  tenant: string
  org = ORG
  seq = 0

  constructor (tenant = 'msp/customer-a') {
    this.signer = keySigner(generateKeyPair())
    this.keyid = this.signer.keyid
    this.tenant = tenant
  }

  /** The event `seq` (default: the next one) of `kind`, unsigned. */
  event (fact: Partial<AgentEvent> & Pick<AgentEvent, 'kind'>, seq = ++this.seq): AgentEvent {
    return {
      _type: 'event',
      spec: 1,
      org: this.org,
      endpoint: this.keyid,
      tenant: this.tenant,
      seq,
      at: new Date(Date.UTC(2030, 0, 1, 12) + seq * 60_000).toISOString(),
      ...fact
    } as AgentEvent
  }

  async job (state: JobState, opts: { seq?: number, attempt?: number, release?: typeof RELEASE, rollout?: string, action?: 'install' | 'rollback', code?: string, reason?: string } = {}): Promise<SignedEvent> {
    const job = {
      release: opts.release ?? RELEASE,
      action: opts.action ?? 'install',
      state,
      attempt: opts.attempt ?? 1,
      ...(opts.rollout !== undefined ? { rollout: opts.rollout } : {}),
      ...(opts.code !== undefined ? { code: opts.code } : {}),
      ...(opts.reason !== undefined ? { reason: opts.reason } : {})
    }
    return await signEvent(this.event({ kind: 'job', job }, opts.seq ?? ++this.seq), this.signer)
  }

  async transfer (bytes: { origin: number, site: number, peer: number, local: number }, seq = ++this.seq): Promise<SignedEvent> {
    return await signEvent(this.event({ kind: 'transfer', transfer: { manifest: RELEASE.manifest, bytes } }, seq), this.signer)
  }

  async agentState (state: 'started' | 'stopped', seq = ++this.seq): Promise<SignedEvent> {
    return await signEvent(this.event({ kind: 'agent', agent: { state, version: '1.0.0' } }, seq), this.signer)
  }
}

export const bytesOf = (env: SignedEvent): Buffer => serializeEnvelope(env)

export type Registry = Map<string, { keyid: string, tenant: string, status: string }>

export function register (registry: Registry, agent: Agent, status = 'approved', tenant = agent.tenant): void {
  registry.set(agent.keyid, { keyid: agent.keyid, tenant, status })
}

export interface Stack {
  dir: string
  db: Database
  log: ReportLog
  ingestor: Ingestor
  registry: Registry
  /** Closes the ingestor, views and log, then the database. Idempotent. */
  close (): Promise<void>
}

/** A console's reporting stack on `dir` (a fresh temporary folder by default). */
export async function openStack (t: Test, opts: { dir?: string, registry?: Registry, clock?: () => Date } = {}): Promise<Stack> {
  const dir = opts.dir ?? path.join(t.testdir(), 'db')
  const db = await openDatabase(dir)
  const log: ReportLog = new EventLog<SignedEvent, ConsoleFact>(db, { clock: opts.clock ?? steppingClock() })
  const registry: Registry = opts.registry ?? new Map()
  const ingestor = new Ingestor(db, { log, org: ORG, endpoints: { lookup: async (k) => registry.get(k) }, clock: opts.clock ?? steppingClock() })
  await ingestor.ready()
  let closing: Promise<void> | undefined
  const stack: Stack = {
    dir,
    db,
    log,
    ingestor,
    registry,
    close: () => (closing ??= (async () => {
      await ingestor.close()
      await log.close()
      await db.close()
    })())
  }
  t.teardown(() => stack.close())
  return stack
}

/** Views over a stack's log; closed before the stack on teardown. */
export async function openViews (t: Test, stack: Stack, opts: { snapshotEvery?: number, sublevelName?: string } = {}): Promise<ReportViews> {
  const views = new ReportViews(stack.db, { log: stack.log, clock: steppingClock(), ...opts })
  t.teardown(() => views.close())
  await views.ready()
  return views
}
