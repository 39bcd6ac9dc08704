// The console node: owns one LevelDB and composes the fleet, enrollment, policies, rollouts,
// reporting and webhooks. Everything outside (CLI, TUI, scripts) reaches it through its admin API
// (api.ts), in-process or over the Unix socket.
//
// How a rollout change becomes facts, directives and webhooks, crash-safely: an admin call or the
// engine commits the rollout's new state with a history entry (one batch, with the audit entry).
// Then `#project(rollout)` turns the history entries past the rollout's cursor into console facts
// in the report log (patch.assigned when a phase starts, patch.rollback, rollout.changed) and moves
// the cursor in the same batch; the directive is re-derived from all rollouts and issued when it
// differs (or is half-way to expiring). A crash between the two commits is repaired at the next
// start (projection resumes at the cursor); projections run one at a time (tick and API calls).
// Webhooks are derived from the report log the same way, with a cursor of their own and stable
// fact ids, so a notification is queued at least once and never twice.
import path from 'node:path'
import fs from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { PatchswarmError } from '../errors.js'
import { generateKeyPair, keyIdOf, keySigner, type KeyPair, type Signer } from '../crypto/keys.js'
import { openDatabase, sublevel, type Database, type Sublevel } from '../store/db.js'
import { EventLog } from '../store/event-log.js'
import { type Envelope, envelopeHash } from '../trust/envelope.js'
import { TrustedState, type VerifiedRelease } from '../trust/trusted-state.js'
import type { DirectiveDocument } from '../trust/directive.js'
import type { RootDocument } from '../trust/root.js'
import { Fleet } from '../fleet/fleet.js'
import { EndpointStore, type EndpointChange } from '../fleet/endpoints.js'
import { Enrollment } from '../fleet/enrollment.js'
import { systemClock, type FleetClock, type FleetOp } from '../fleet/common.js'
import { PolicyStore } from '../policy/store.js'
import { slaDeadline } from '../policy/policy.js'
import { RolloutStore, type RolloutHistoryEntry } from '../rollout/store.js'
import { assignmentsFor, DirectiveIssuer } from '../rollout/directives.js'
import type { Rollout } from '../rollout/rollout.js'
import { Ingestor, type IngestInput, type IngestOptions, type IngestResult } from '../report/ingest.js'
import { ReportViews } from '../report/views.js'
import { appendFacts, type ConsoleFact, type ReportEntry, type ReportLog } from '../report/facts.js'
import { WebhookStore, type WebhookFact } from '../report/webhooks.js'
import { Outbox, type OutboxOptions } from '../report/outbox.js'
import { canonicalBytes } from '../crypto/canonical.js'

/** What the console's own swarm node sees: the peers connected to it, and the bans in force. */
export interface ConsoleSwarmState {
  keyid: string
  peers: Array<{ keyid: string, role: string, tenant: string, site: string | null }>
  /** `until`: when the ban ends (ISO time). */
  bans: Array<{ keyid: string, until: string, reason: string }>
}

export interface ConsoleOptions {
  /** Holds db/ (LevelDB) and, unless socketPath says otherwise, console.sock. */
  dataDir: string
  /** The organisation's root (self-signed); pinned at the first start. */
  root: Envelope | Uint8Array | string
  /** A key of the root's console role: signs enrollment certificates and directives. */
  consoleKey: KeyPair
  clock?: FleetClock
  /** How often every running rollout is evaluated, ms (reports trigger their own reaction). Default 5000; 0: never by timer. */
  tickMs?: number
  webhooks?: Omit<OutboxOptions, 'store' | 'clock'>
}

/** Bytes of the canonical JSON of `value`, hashed: stable ids for facts derived from history. */
function stableId (...parts: Array<string | number>): string {
  return createHash('sha256').update(canonicalBytes(parts)).digest('hex').slice(0, 32)
}

const PROJECTION = 'projection!'
const NOTIFIER = 'notifier'
const FACTS_PER_DRAIN = 1000
/** How far the notifier's stored cursor may lag while no webhook listens. */
const NOTIFIER_LAG = 1000
/** Longest a reaction to reports waits while more reports keep arriving. */
const REACTION_DELAY_MS = 1000
// How often (console time) a tick looks for patches past their SLA: the first tick a minute after the last check.
const SLA_CHECK_MS = 60_000

export class Console {
  readonly db: Database
  readonly org: string
  readonly clock: FleetClock
  readonly signer: Signer
  /** The key of the pre-certificate enrollment link (derived from the console key). */
  readonly enrollKeyPair: KeyPair
  readonly fleet: Fleet
  readonly trust: TrustedState
  readonly endpoints: EndpointStore
  readonly enrollment: Enrollment
  readonly policies: PolicyStore
  readonly rollouts: RolloutStore
  readonly directives: DirectiveIssuer
  readonly log: ReportLog
  readonly ingestor: Ingestor
  readonly views: ReportViews
  readonly webhooks: WebhookStore
  readonly outbox: Outbox
  readonly #state: Sublevel
  readonly #approvals: Sublevel
  /** Endpoint facts written with the enrollment change, waiting to be appended to the log. */
  readonly #endpointFacts: Sublevel
  #endpointFactNo = 0
  /** Set once an enrollment change committed (and at start: a crash may have left some). */
  #endpointFactsPending = true
  /** Reports and enrollment changes not reacted to yet: the rollouts reports named, and since when. */
  #pending: { rollouts: Set<string>, since: number } | null = null
  #ingesting = 0
  /** Set when rollouts changed: the assignments must be compared with the directive again. */
  #directiveStale = true
  /** The notifier's cursor: the last log seq it read, and the last one stored. */
  #notified = 0
  #notifiedStored = 0
  readonly #tickMs: number
  #slaCheckedAt = -Infinity
  #timer: NodeJS.Timeout | null = null
  #ticking: Promise<void> = Promise.resolve()
  #opening: Promise<void> | undefined
  #closing: Promise<void> | undefined
  readonly #directiveListeners = new Set<(d: Envelope<DirectiveDocument>) => void>()

  private constructor (db: Database, root: RootDocument, opts: ConsoleOptions) {
    this.db = db
    this.org = root.org
    this.clock = opts.clock ?? systemClock
    const clock = this.clock
    this.signer = keySigner(opts.consoleKey)
    this.enrollKeyPair = generateKeyPair(createHash('sha256').update('patchswarm/enroll-link/v1\0').update(opts.consoleKey.secretKey.subarray(0, 32)).digest())
    this.fleet = new Fleet(db, { clock })
    this.trust = new TrustedState({ db: sublevel(db, 'console-trust'), clock: { now: clock } })
    this.endpoints = new EndpointStore(db, { tree: this.fleet.tenants, clock, changeOps: (c) => this.#endpointFactOps(c), changed: () => this.#endpointChanged() })
    this.enrollment = new Enrollment(db, {
      org: root.org,
      tree: this.fleet.tenants,
      endpoints: this.endpoints,
      consoleSigner: this.signer,
      root: () => this.rootEnvelope,
      consoleKey: keyIdOf(this.enrollKeyPair.publicKey),
      clock
    })
    this.policies = new PolicyStore(db, { tree: this.fleet.tenants, clock })
    this.rollouts = new RolloutStore(db, { clock })
    this.directives = new DirectiveIssuer(db, { org: root.org, signer: this.signer, clock })
    this.log = new EventLog(db, { clock })
    this.ingestor = new Ingestor(db, { log: this.log, endpoints: { lookup: (k) => this.endpoints.byKeyid(k) }, org: root.org, clock })
    this.views = new ReportViews(db, { log: this.log, clock })
    this.webhooks = new WebhookStore(db, { clock })
    this.outbox = new Outbox({ ...opts.webhooks, store: this.webhooks })
    this.#state = sublevel(db, 'console-state')
    this.#approvals = sublevel(db, 'console-approvals')
    this.#endpointFacts = sublevel(db, 'console-endpoint-facts')
    this.#tickMs = opts.tickMs ?? 5000
  }

  /** Opens (creating if need be) the console in `dataDir`; IN_USE if another console has it. */
  static async open (opts: ConsoleOptions): Promise<Console> {
    await fs.mkdir(opts.dataDir, { recursive: true, mode: 0o700 })
    const db = await openDatabase(path.join(opts.dataDir, 'db'))
    try {
      const trust = new TrustedState({ db: sublevel(db, 'console-trust') })
      await trust.ready()
      const root = trust.root ?? await trust.pinRoot(opts.root)
      const console = new Console(db, root, opts)
      await console.ready()
      return console
    } catch (err) {
      await db.close()
      throw err
    }
  }

  get root (): RootDocument { return this.trust.root! }
  get rootEnvelope (): Envelope<RootDocument> { return this.trust.rootEnvelope! }

  ready (): Promise<void> {
    this.#opening ??= (async () => {
      await this.fleet.ready()
      await this.trust.ready()
      await this.log.ready()
      await this.ingestor.ready()
      await this.views.ready()
      if (!this.root.roles.console.keyids.includes(this.signer.keyid)) {
        throw PatchswarmError.FORBIDDEN(`the console key ${this.signer.keyid.slice(0, 12)}… is not a key of the root's console role`)
      }
      this.#notified = this.#notifiedStored = (await this.#state.get(NOTIFIER) as number | undefined) ?? 0
      // Repair what a crash between a rollout change and its projection left behind.
      for (const r of await this.rollouts.list()) await this.#project(r.id)
      await this.#appendEndpointFacts()
      await this.#syncDirective()
      await this.#notify()
      await this.outbox.ready()
      if (this.#tickMs > 0) {
        this.#timer = setInterval(() => { this.tick().catch((err) => this.#warn(err)) }, this.#tickMs)
        this.#timer.unref()
      }
    })()
    return this.#opening
  }

  close (): Promise<void> {
    this.#closing ??= (async () => {
      await this.#opening?.catch(() => {})
      if (this.#timer) clearInterval(this.#timer)
      await this.#ticking.catch(() => {})
      if (this.#notified > this.#notifiedStored) await this.#storeNotified().catch((err) => this.#warn(err))
      await this.outbox.close()
      await this.views.close()
      await this.ingestor.close()
      await this.log.close()
      await this.trust.close()
      await this.fleet.close()
      await this.db.close()
    })()
    return this.#closing
  }

  // ---- releases ----------------------------------------------------------------------------

  /** Verifies a release against the root (threshold of release keys or a delegation) and keeps it. */
  async addRelease (input: Envelope | Uint8Array | string): Promise<VerifiedRelease> {
    this.trust.beginCycle()
    return this.trust.verifyRelease(input, { platform: releasePlatform(input) })
  }

  /** Set by ConsoleSwarm: imports and seeds a release's package from a folder. */
  contentHost: ((hash: string, dir: string) => Promise<void>) | null = null

  /** Set by ConsoleSwarm: its node's peers and bans, as they are now. */
  swarmState: (() => ConsoleSwarmState) | null = null

  publishContent (hash: string, dir: string): Promise<void> {
    if (!this.contentHost) return Promise.reject(PatchswarmError.UNAVAILABLE('this console is not on the swarm (start it with --bootstrap) and cannot seed packages'))
    return this.contentHost(hash, dir)
  }

  release (hash: string): VerifiedRelease {
    const r = this.trust.releaseByHash(hash)
    if (!r) throw PatchswarmError.NOT_FOUND(`no release ${String(hash).slice(0, 16)}… at this console`)
    return r
  }

  /** Manual approvals: release hash → tenant paths where an admin approved it. */
  async approvals (hash: string): Promise<string[]> {
    return (await this.#approvals.get(hash) as string[] | undefined) ?? []
  }

  approvalOps (hash: string, tenants: string[]): Array<{ type: 'put', sublevel: Sublevel, key: string, value: unknown }> {
    return [{ type: 'put', sublevel: this.#approvals, key: hash, value: [...new Set(tenants)].sort() }]
  }

  // ---- ingestion and the engine ------------------------------------------------------------

  /**
   * Agent events in (from the swarm link or a test). Resolves once they are stored, which is what
   * the agent's ack promises; the engine then reacts on its own (see settled()). Reports that
   * arrive together share one reaction, so a fleet reporting at once is not evaluated per report.
   */
  async ingest (batch: IngestInput[], opts: IngestOptions = {}): Promise<IngestResult> {
    this.#ingesting++
    try {
      const result = await this.ingestor.ingest(batch, opts)
      // The events are stored: whatever the engine runs into afterwards must not turn into a
      // failed ingest (the agent would never get its ack and would send the same events forever).
      if (result.results.some((r) => r.status === 'accepted')) {
        const pending = this.#reactionPending()
        for (const id of result.rollouts) pending.rollouts.add(id)
      }
      return result
    } finally {
      this.#ingesting--
      this.#maybeReact()
    }
  }

  /** Resolves when the console has reacted to everything ingested and enrolled so far. */
  async settled (): Promise<void> {
    this.#maybeReact(true)
    await this.#ticking
  }

  /**
   * Evaluates every running rollout (soak times pass without any event), projects what changed,
   * issues the directive, queues webhooks, looks for SLA breaches. Serialised. One rollout that
   * fails to evaluate does not hold up the others; the first error is thrown after.
   */
  tick (): Promise<void> {
    return this.#serialised(async () => {
      await this.#step((await this.rollouts.list({ states: ['running'] })).map((r) => r.id))
      const now = this.clock().getTime()
      if (now - this.#slaCheckedAt >= SLA_CHECK_MS) {
        this.#slaCheckedAt = now
        await this.checkSlas()
      }
    })
  }

  #reactionPending (): { rollouts: Set<string>, since: number } {
    this.#pending ??= { rollouts: new Set(), since: performance.now() }
    return this.#pending
  }

  /**
   * Reacts to what happened since the last reaction (reports stored: the rollouts their job events
   * name; enrollment changes) once no report is being stored, or, while they keep coming, when the
   * first ingest to finish REACTION_DELAY_MS or more after the first report finds it due.
   */
  #maybeReact (now = false): void {
    const pending = this.#pending
    if (pending === null) return
    if (!now && this.#ingesting > 0 && performance.now() - pending.since < REACTION_DELAY_MS) return
    this.#pending = null
    this.#serialised(() => this.#step([...pending.rollouts])).catch((err) => this.#warn(err))
  }

  async #step (rolloutIds: readonly string[]): Promise<void> {
    const errors: unknown[] = []
    for (const id of rolloutIds) {
      try {
        const r = await this.rollouts.find(id)
        if (r?.state !== 'running') continue
        const step = await this.rollouts.evaluate(id, (keyid) => this.views.statusOf(id, keyid))
        if (step.changes.length > 0) await this.#project(id)
      } catch (err) {
        errors.push(err)
      }
    }
    await this.#appendEndpointFacts()
    await this.#syncDirective()
    await this.#notify()
    if (errors.length > 0) throw errors[0]
  }

  /** Problems of background work (the engine after an ingest, the timer): for whoever listens. */
  readonly warnings: Array<(err: unknown) => void> = []

  #warn (err: unknown): void {
    for (const listener of this.warnings) listener(err)
  }

  /** Called by the API after it committed a rollout change. Serialised with tick(). */
  rolloutChanged (id: string): Promise<void> {
    return this.#serialised(async () => {
      await this.#project(id)
      await this.#syncDirective()
      await this.#notify()
    })
  }

  /**
   * Runs projection work one call at a time. #project and #notify read their cursor, append and
   * move the cursor in separate steps: two of them at once (an admin call while ingestion ticks)
   * would both read the old cursor and append the same facts twice, and each copy gets its own
   * webhook id. Skipped once close() began: a committed change is projected at the next start.
   */
  #serialised (fn: () => Promise<void>): Promise<void> {
    const run = this.#ticking.then(async () => {
      if (this.#closing) return
      await fn()
    })
    this.#ticking = run.catch(() => {})
    return run
  }

  /** The directive agents should follow now. */
  latestDirective (): Promise<Envelope<DirectiveDocument> | undefined> {
    return this.directives.latest()
  }

  /** Called with each newly issued directive (the swarm link pushes it to agents). */
  onDirective (listener: (d: Envelope<DirectiveDocument>) => void): () => void {
    this.#directiveListeners.add(listener)
    return () => this.#directiveListeners.delete(listener)
  }

  // ---- endpoint facts: enrollment changes → report log --------------------------------------

  /**
   * Written in the batch of the enrollment change itself, so no change is lost to a crash; moved
   * to the report log soon after (and at the next start). The key keeps the order of changes.
   */
  #endpointFactOps (c: EndpointChange): FleetOp[] {
    const type = ({ quarantine: 'endpoint.quarantined', approved: 'endpoint.approved', rejected: 'endpoint.rejected', removed: 'endpoint.removed' } as const)[c.status]
    const key = `${c.at}!${String(this.#endpointFactNo++).padStart(12, '0')}`
    return [{ type: 'put', sublevel: this.#endpointFacts, key, value: { type, keyid: c.keyid, tenant: c.tenant, hostname: c.hostname } }]
  }

  /** After an enrollment change committed: its fact is appended (and notified) by the next reaction. */
  #endpointChanged (): void {
    this.#endpointFactsPending = true
    this.#reactionPending()
    setImmediate(() => this.#maybeReact())
  }

  async #appendEndpointFacts (): Promise<void> {
    if (!this.#endpointFactsPending) return
    this.#endpointFactsPending = false
    for (;;) {
      const pending = await this.#endpointFacts.iterator({ limit: FACTS_PER_DRAIN }).all() as Array<[string, unknown]>
      if (pending.length === 0) return
      await appendFacts(this.log, pending.map(([, fact]) => fact), {
        extra: () => pending.map(([key]) => ({ type: 'del', sublevel: this.#endpointFacts, key }) as never)
      })
      if (pending.length < FACTS_PER_DRAIN) return
    }
  }

  // ---- projection: rollout history → report facts ------------------------------------------

  async #project (id: string): Promise<void> {
    const cursorKey = PROJECTION + id
    const done = (await this.#state.get(cursorKey) as number | undefined) ?? 0
    const rollout = await this.rollouts.get(id)
    if (rollout.revision <= done) return
    // Only up to the revision read above: the cursor moves to it, so a change committed meanwhile
    // is left for the next projection rather than appended now and again then.
    const history = (await this.rollouts.history(id)).filter((h) => h.revision > done && h.revision <= rollout.revision)
    const facts: ConsoleFact[] = []
    for (const h of history) facts.push(...await this.#factsOf(rollout, h))
    this.#directiveStale = true
    await appendFacts(this.log, facts, {
      extra: () => [{ type: 'put', sublevel: this.#state, key: cursorKey, value: rollout.revision }]
    })
  }

  async #factsOf (rollout: Rollout, h: RolloutHistoryEntry): Promise<ConsoleFact[]> {
    const { spec } = rollout
    const release = { hash: spec.release.envelopeHash, name: spec.release.name, version: spec.release.packageVersion, risk: spec.release.risk }
    const c = h.change
    const changed = (state: string, extra: { phase?: string, reason?: string } = {}): ConsoleFact =>
      ({ type: 'rollout.changed', rollout: rollout.id, state, release: release.hash, ...extra })
    switch (c.type) {
      case 'phase-started': {
        // One fact per tenant: each tenant's policy sets its own SLA.
        const byTenant = new Map<string, string[]>()
        for (const keyid of rollout.phases[c.phase]!.endpoints) {
          const tenant = (await this.endpoints.byKeyid(keyid))?.tenant ?? spec.target.tenant
          byTenant.set(tenant, [...(byTenant.get(tenant) ?? []), keyid])
        }
        const facts: ConsoleFact[] = []
        for (const [tenant, keyids] of byTenant) {
          const policy = await this.policies.effective(tenant)
          for (let i = 0; i < keyids.length; i += 10_000) {
            facts.push({
              type: 'patch.assigned',
              rollout: rollout.id,
              phase: c.name,
              release,
              endpoints: keyids.slice(i, i + 10_000).map((keyid) => ({ keyid, tenant })),
              availableAt: h.at,
              slaDeadline: slaDeadline(policy.policy, spec.release.risk, h.at).toISOString()
            })
          }
        }
        return [changed('running', { phase: c.name }), ...facts]
      }
      case 'rolled-back': {
        const keyids = rollout.phases.filter((p) => p.startedAt !== undefined).flatMap((p) => p.endpoints)
        const facts: ConsoleFact[] = [changed('rolled-back')]
        for (let i = 0; i < keyids.length; i += 10_000) facts.push({ type: 'patch.rollback', rollout: rollout.id, release: release.hash, endpoints: keyids.slice(i, i + 10_000) })
        return facts
      }
      case 'rollout-halted': return [changed('halted', { phase: c.name, reason: `${c.errors} of ${c.size} endpoints failed (${(c.errorRate * 100).toFixed(1)} % ≥ ${(c.threshold * 100).toFixed(1)} %)` })]
      case 'rollout-completed': return [changed('completed')]
      case 'paused': return [changed('paused')]
      case 'resumed': return [changed('running', { reason: `resumed from ${c.from}` })]
      case 'aborted': return [changed('aborted')]
      default: return []
    }
  }

  /**
   * Issues a directive when the assignments differ from the latest one's, and signs the same again
   * once half its lifetime has passed (agents refuse an expired directive, and a fleet without
   * rollout changes must not lose it). Assignments are only compared after rollouts changed.
   */
  async #syncDirective (): Promise<void> {
    const latest = await this.directives.latest()
    const renew = latest !== undefined && this.#halfExpired(latest)
    if (!this.#directiveStale && !renew) return
    const assignments = assignmentsFor(await this.rollouts.list())
    const same = latest ? envelopeHash({ signed: latest.signed.assignments, signatures: [] }) === envelopeHash({ signed: assignments, signatures: [] }) : assignments.length === 0
    if (!same || renew) {
      const directive = await this.directives.issue(assignments)
      for (const listener of this.#directiveListeners) listener(directive)
    }
    this.#directiveStale = false // only once issued: a failure leaves it to the next step
  }

  #halfExpired (d: Envelope<DirectiveDocument>): boolean {
    const issued = Date.parse(d.signed.issued)
    const expires = Date.parse(d.signed.expires)
    return this.clock().getTime() >= issued + (expires - issued) / 2
  }

  // ---- webhooks: report log → notifications -----------------------------------------------

  async #notify (): Promise<void> {
    if (this.log.last <= this.#notified) return
    if (!await this.webhooks.anyEnabled()) {
      // Nobody to tell: the cursor moves on without reading the log, and is stored now and then.
      // A restart re-reads at most NOTIFIER_LAG entries; a fact already queued is never queued twice.
      this.#notified = this.log.last
      if (this.#notified - this.#notifiedStored >= NOTIFIER_LAG) await this.#storeNotified()
      return
    }
    while (this.log.last > this.#notified) {
      const entries = await this.log.read({ from: this.#notified + 1, limit: 1000 }) as ReportEntry[]
      if (entries.length === 0) return
      const facts = (await Promise.all(entries.map((e) => this.#webhookFactsOf(e)))).flat()
      const ops = (await Promise.all(facts.map((f) => this.webhooks.enqueueOps(f)))).flat()
      const last = entries[entries.length - 1]!.seq
      await this.db.batch([...ops, { type: 'put', sublevel: this.#state, key: NOTIFIER, value: last }] as never)
      this.#notified = this.#notifiedStored = last
      if (ops.length > 0) this.outbox.kick()
    }
  }

  async #storeNotified (): Promise<void> {
    const at = this.#notified
    await this.#state.put(NOTIFIER, at)
    this.#notifiedStored = at
  }

  async #webhookFactsOf (e: ReportEntry): Promise<WebhookFact[]> {
    if (e.source === 'console') {
      const f = e.fact
      if (f.type === 'endpoint.quarantined') {
        return [{ type: f.type, tenant: f.tenant, at: e.at, id: `log-${e.seq}`, data: { endpoint: f.keyid, ...(f.hostname ? { hostname: f.hostname } : {}) } }]
      }
      if (f.type !== 'rollout.changed' || !['halted', 'completed', 'rolled-back', 'aborted'].includes(f.state)) return []
      const rollout = await this.rollouts.find(f.rollout)
      return [{
        type: `rollout.${f.state}`,
        tenant: rollout?.spec.target.tenant ?? '',
        at: e.at,
        id: `log-${e.seq}`,
        data: { rollout: f.rollout, state: f.state, ...(f.phase ? { phase: f.phase } : {}), ...(f.reason ? { reason: f.reason } : {}), ...(f.release ? { release: f.release } : {}) }
      }]
    }
    const event = e.envelope.signed
    const job = event.job
    if (event.kind !== 'job' || !job || (job.state !== 'failed' && job.state !== 'rolled-back')) return []
    return [{
      type: job.state === 'failed' ? 'job.failed' : 'job.rolled-back',
      tenant: event.tenant,
      at: event.at,
      id: `log-${e.seq}`,
      data: { endpoint: event.endpoint, release: job.release.name, version: job.release.packageVersion, attempt: job.attempt, ...(job.rollout ? { rollout: job.rollout } : {}), ...(job.code ? { code: job.code } : {}), ...(job.reason ? { reason: job.reason } : {}) }
    }]
  }

  /** Queues `sla.breached` once per patch that is past its deadline and not installed. */
  async checkSlas (): Promise<number> {
    const now = this.clock().getTime()
    let queued = 0
    for (const r of this.views.patchRecords()) {
      if (r.state === 'installed' || r.slaDeadline === undefined || Date.parse(r.slaDeadline) > now) continue
      queued += await this.webhooks.notify({
        type: 'sla.breached',
        tenant: r.tenant,
        at: new Date(now).toISOString(),
        id: `sla-${stableId(r.endpoint, r.release)}`,
        data: { endpoint: r.endpoint, release: r.name, version: r.version, risk: r.risk, slaDeadline: r.slaDeadline, state: r.state }
      })
    }
    if (queued > 0) this.outbox.kick()
    return queued
  }
}

function releasePlatform (input: Envelope | Uint8Array | string): string {
  const value = typeof input === 'string' || input instanceof Uint8Array ? JSON.parse(Buffer.from(input as Uint8Array).toString('utf8')) : input
  const platform = (value as { signed?: { platform?: unknown } })?.signed?.platform
  if (typeof platform !== 'string') throw PatchswarmError.BAD_DOCUMENT('release.platform: missing')
  return platform
}
