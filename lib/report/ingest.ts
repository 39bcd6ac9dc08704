// Ingestion: the console's door for agent events. Each event is verified on its own (shape, size,
// the endpoint's signature), then against the console's knowledge: the organisation, the endpoint
// registry (known, approved, same tenant, inside the caller's scope) and the endpoint's sequence.
// Sequence rules, per endpoint: seq = last + 1 is accepted and appended to the log; seq <= last is
// a duplicate when its signed bytes hash to what was stored for that seq (an agent re-sending
// after a lost ack, or old traffic played back: ignored) and a REPLAY otherwise (the endpoint's
// key signed two different events with one seq: a stolen key, or an agent restored from an old
// backup: rejected and counted per endpoint); seq > last + 1 is a
// SEQUENCE_GAP (rejected, not stored: the agent re-sends from its ack).
//
// One ingest call is one LevelDB batch: the log entries, each endpoint's `last`, the per-seq hash
// index and the counters commit together, so a restart accepts every real event exactly once.
// Per-endpoint state is cached in memory once read; calls are serialised by a lock.
//
// Stored in the `report-ingest` sublevel:
//   e!<keyid>            { last, replays }       the endpoint's contiguous position
//   s!<keyid>!<seq16>    { hash, log }           hash of the event stored for seq, and its log seq
//   counters             IngestCounters
import { Observable, Subject, defer, map, shareReplay, startWith } from 'rxjs'
import { PatchswarmError, isPatchswarmError } from '../errors.js'
import { sublevel, type Database, type Sublevel } from '../store/db.js'
import { seqKey, type BatchOp } from '../store/event-log.js'
import { Mutex } from '../fleet/common.js'
import { checkTenantPath, isWithinTenant } from '../trust/fields.js'
import type { AgentEvent, SignedEvent } from './event.js'
import { verifyReceived, type VerifiedEvent as Verified } from './verify-received.js'
import type { ReportLog } from './facts.js'

/** What ingestion needs of the endpoint registry (lib/fleet/endpoints.ts has it as byKeyid). */
export interface EndpointLookup {
  lookup (keyid: string): Promise<{ keyid: string, tenant: string, status: string } | undefined>
}

export interface IngestorOptions {
  log: ReportLog
  endpoints: EndpointLookup
  /** The organisation whose events this console takes. */
  org: string
  clock?: () => Date
  sublevelName?: string
}

export type IngestInput = SignedEvent | string | Uint8Array

export interface IngestOptions {
  /** Events of endpoints outside this tenant subtree are WRONG_TENANT (a caller's scope). */
  tenantScope?: string
  /** Events of any other endpoint are WRONG_HOLDER (the peer that reports them speaks for itself only). */
  endpoint?: string
}

/** What one ingest call admits, besides the organisation. */
interface Restriction { scope: string | undefined, endpoint: string | undefined }

export interface IngestItemResult {
  status: 'accepted' | 'duplicate' | 'rejected'
  /** The error code of a rejection. */
  code?: string
  detail?: string
  /** The event's own seq, once it could be read. */
  seq?: number
  endpoint?: string
  /** Where an accepted event went in the log. */
  logSeq?: number
}

export interface IngestResult {
  /** One per input, in input order. */
  results: IngestItemResult[]
  /** For each endpoint that sent an authentic, admissible event: its last contiguous seq stored. */
  acks: Record<string, number>
  /** The rollouts that accepted job events name: whose thresholds may have moved. */
  rollouts: string[]
}

export interface IngestCounters {
  accepted: number
  duplicate: number
  /** By error code. */
  rejected: Record<string, number>
}

export interface EndpointIngestState {
  /** Highest seq stored; every seq below it is stored too. */
  last: number
  /** Events rejected as REPLAY: the same seq with other signed bytes. */
  replays: number
}

/** An approved endpoint's status in the registry; anything else is NOT_APPROVED. */
export const APPROVED = 'approved'
export const MAX_BATCH = 10_000


const stateKey = (keyid: string) => `e!${keyid}`
const hashKey = (keyid: string, seq: number) => `s!${keyid}!${seqKey(seq)}`
const COUNTERS_KEY = 'counters'

export class Ingestor {
  readonly db: Database
  /** The counters now, then after each ingest call. */
  readonly counters$: Observable<IngestCounters>
  private readonly store: Sublevel
  private readonly log: ReportLog
  private readonly endpoints: EndpointLookup
  private readonly org: string
  private readonly clock: () => Date
  private readonly mutex = new Mutex()
  private readonly states = new Map<string, EndpointIngestState>()
  private counts: IngestCounters = { accepted: 0, duplicate: 0, rejected: {} }
  private readonly ticks = new Subject<void>()
  private opening: Promise<void> | undefined
  private closed = false

  constructor (db: Database, opts: IngestorOptions) {
    if (opts?.log === undefined || typeof opts.endpoints?.lookup !== 'function' || typeof opts.org !== 'string') {
      throw PatchswarmError.BAD_ARGUMENT('an Ingestor needs { log, endpoints: { lookup }, org }')
    }
    this.db = db
    this.store = sublevel(db, opts.sublevelName ?? 'report-ingest')
    this.log = opts.log
    this.endpoints = opts.endpoints
    this.org = opts.org
    this.clock = opts.clock ?? (() => new Date())
    this.counters$ = defer(() => this.ticks.pipe(startWith(undefined))).pipe(
      map(() => this.counters),
      shareReplay({ bufferSize: 1, refCount: true })
    )
  }

  /** Loads the counters and readies the log. Idempotent. */
  ready (): Promise<void> {
    if (this.closed) return Promise.reject(PatchswarmError.CLOSED('ingestor is closed'))
    this.opening ??= (async () => {
      try {
        await this.log.ready()
        const stored = await this.store.get(COUNTERS_KEY) as IngestCounters | undefined
        if (stored !== undefined) this.counts = stored
      } catch (err) {
        this.opening = undefined
        throw isPatchswarmError(err) ? err : PatchswarmError.IO_ERROR(`cannot read ingest state: ${(err as Error).message}`, err)
      }
      this.ticks.next()
    })()
    return this.opening
  }

  /** A copy of the counters. */
  get counters (): IngestCounters {
    return { accepted: this.counts.accepted, duplicate: this.counts.duplicate, rejected: { ...this.counts.rejected } }
  }

  /** An endpoint's position (last: 0 before its first event). */
  async endpointState (keyid: string): Promise<EndpointIngestState> {
    await this.ready()
    return await this.mutex.run(async () => ({ ...(await this.loadStates([keyid])).get(keyid)! }))
  }

  /** Where the event `seq` of `keyid` is: its hash and log seq, if stored. */
  async stored (keyid: string, seq: number): Promise<{ hash: string, log: number } | undefined> {
    return await this.store.get(hashKey(keyid, seq)) as { hash: string, log: number } | undefined
  }

  /**
   * Verifies and stores a batch (e.g. one outbox flush). Events of one endpoint may come in any
   * order within the batch; they are taken in seq order. Resolves once everything accepted is in
   * the log (and on its live$); rejects only when storing fails, then nothing was stored.
   */
  async ingest (batch: IngestInput[], opts: IngestOptions = {}): Promise<IngestResult> {
    if (!Array.isArray(batch) || batch.length > MAX_BATCH) throw PatchswarmError.BAD_ARGUMENT(`a batch is an array of at most ${MAX_BATCH} events`)
    const scope = opts.tenantScope
    if (scope !== undefined && (typeof scope !== 'string' || checkTenantPath(scope) !== null)) {
      throw PatchswarmError.BAD_ARGUMENT(`tenantScope ${JSON.stringify(scope)?.slice(0, 80)} is not a tenant path`)
    }
    const only = { scope, endpoint: opts.endpoint }
    await this.ready()
    // Signatures first, outside the lock: they depend on nothing stored.
    const results: IngestItemResult[] = new Array(batch.length)
    const verified: (Verified | undefined)[] = new Array(batch.length)
    for (let i = 0; i < batch.length; i++) {
      try {
        verified[i] = verifyReceived(batch[i]!)
      } catch (err) {
        results[i] = rejection(err)
      }
    }
    return await this.mutex.run(() => this.admit(verified, results, only))
  }

  private async admit (verified: (Verified | undefined)[], results: IngestItemResult[], only: Restriction): Promise<IngestResult> {
    if (this.closed) throw PatchswarmError.CLOSED('ingestor is closed')
    const refuse = (i: number, refusal: PatchswarmError | undefined): boolean => {
      if (refusal === undefined) return false
      const { event } = verified[i]!
      verified[i] = undefined
      results[i] = { status: 'rejected', code: refusal.code, detail: refusal.detail, seq: event.seq, endpoint: event.endpoint }
      return true
    }
    // Registry checks, one lookup per endpoint, for the events the refusals needing none let through.
    const keyids = new Set<string>()
    for (let i = 0; i < verified.length; i++) {
      const v = verified[i]
      if (v !== undefined && !refuse(i, this.preRefusal(v.event, only))) keyids.add(v.event.endpoint)
    }
    const registered = new Map<string, { tenant: string, status: string } | undefined>()
    await Promise.all([...keyids].map(async (k) => { registered.set(k, await this.endpoints.lookup(k)) }))

    // Positions of each admissible endpoint's events, to take them in seq order in those slots.
    const slots = new Map<string, number[]>()
    for (let i = 0; i < verified.length; i++) {
      const v = verified[i]
      if (v === undefined || refuse(i, this.registryRefusal(v.event, registered.get(v.event.endpoint)))) continue
      let list = slots.get(v.event.endpoint)
      if (list === undefined) slots.set(v.event.endpoint, list = [])
      list.push(i)
    }
    const order: number[] = [] // input indexes in processing order
    const sorted = new Array<number>(verified.length)
    for (const list of slots.values()) {
      const bySeq = list.slice().sort((a, b) => verified[a]!.event.seq - verified[b]!.event.seq || a - b)
      for (let j = 0; j < list.length; j++) sorted[list[j]!] = bySeq[j]!
    }
    for (let i = 0; i < verified.length; i++) if (verified[i] !== undefined) order.push(sorted[i]!)

    const committed = await this.loadStates([...slots.keys()])
    // The batch's view of each endpoint: accepted seqs raise `last` and remember their hash.
    const next = new Map<string, { last: number, replays: number, hashes: Map<number, string> }>()
    for (const k of slots.keys()) {
      const c = committed.get(k)!
      next.set(k, { last: c.last, replays: c.replays, hashes: new Map() })
    }
    const accepted: number[] = []
    const old: number[] = [] // seq <= committed last: duplicate or replay, decided by the stored hash
    for (const i of order) {
      const { event, hash } = verified[i]!
      const n = next.get(event.endpoint)!
      const base = { seq: event.seq, endpoint: event.endpoint }
      if (event.seq === n.last + 1) {
        n.last = event.seq
        n.hashes.set(event.seq, hash)
        accepted.push(i)
        results[i] = { status: 'accepted', ...base }
      } else if (event.seq > n.last + 1) {
        results[i] = { status: 'rejected', code: 'SEQUENCE_GAP', detail: `expected seq ${n.last + 1}, got ${event.seq}`, ...base }
      } else if (n.hashes.has(event.seq)) {
        results[i] = n.hashes.get(event.seq) === hash ? { status: 'duplicate', ...base } : this.replay(n, base)
      } else {
        old.push(i)
      }
    }
    if (old.length > 0) {
      const stored = await this.store.getMany(old.map((i) => hashKey(verified[i]!.event.endpoint, verified[i]!.event.seq))) as ({ hash: string } | undefined)[]
      old.forEach((i, j) => {
        const { event, hash } = verified[i]!
        const base = { seq: event.seq, endpoint: event.endpoint }
        // A missing hash below `last` cannot happen unless the database was edited: not a duplicate.
        results[i] = stored[j]?.hash === hash ? { status: 'duplicate', ...base } : this.replay(next.get(event.endpoint)!, base)
      })
    }

    const counts = this.counters
    for (const r of results) {
      if (r.status === 'accepted') counts.accepted++
      else if (r.status === 'duplicate') counts.duplicate++
      else counts.rejected[r.code!] = (counts.rejected[r.code!] ?? 0) + 1
    }
    const extra = (entries: { seq: number }[]): BatchOp[] => {
      const ops: BatchOp[] = []
      accepted.forEach((i, j) => {
        const { event, hash } = verified[i]!
        results[i]!.logSeq = entries[j]!.seq
        ops.push({ type: 'put', sublevel: this.store, key: hashKey(event.endpoint, event.seq), value: { hash, log: entries[j]!.seq } })
      })
      for (const [k, n] of next) {
        const c = committed.get(k)!
        if (n.last !== c.last || n.replays !== c.replays) ops.push({ type: 'put', sublevel: this.store, key: stateKey(k), value: { last: n.last, replays: n.replays } })
      }
      if (results.length > 0) ops.push({ type: 'put', sublevel: this.store, key: COUNTERS_KEY, value: counts })
      return ops
    }
    const inputs = accepted.map((i) => {
      const { hash, envelope, text } = verified[i]!
      return text === undefined ? { source: 'agent' as const, hash, envelope } : { source: 'agent' as const, hash, envelope, text }
    })
    await this.log.append(inputs, { extra, at: this.clock() })

    // Committed: the cache and counters follow.
    const acks: Record<string, number> = {}
    for (const [k, n] of next) {
      this.states.set(k, { last: n.last, replays: n.replays })
      acks[k] = n.last
    }
    this.counts = counts
    if (results.length > 0) this.ticks.next()
    const rollouts = new Set<string>()
    for (const i of accepted) {
      const rollout = verified[i]!.event.job?.rollout
      if (rollout !== undefined) rollouts.add(rollout)
    }
    return { results, acks, rollouts: [...rollouts] }
  }

  /**
   * Why the registry makes an event (that preRefusal let through) inadmissible. No message names
   * the tenant an endpoint is registered in: a scoped caller learns nothing outside its scope.
   */
  private registryRefusal (event: AgentEvent, reg: { tenant: string, status: string } | undefined): PatchswarmError | undefined {
    if (reg === undefined) return PatchswarmError.UNKNOWN_ENDPOINT(`endpoint ${event.endpoint.slice(0, 12)}… is not registered`)
    // Equal tenants, and the event's inside the scope: the registered one is inside it too.
    if (event.tenant !== reg.tenant) return PatchswarmError.WRONG_TENANT(`endpoint ${event.endpoint.slice(0, 12)}… is not registered in tenant ${JSON.stringify(event.tenant)}`)
    if (reg.status !== APPROVED) return PatchswarmError.NOT_APPROVED(`endpoint ${event.endpoint.slice(0, 12)}… is ${JSON.stringify(reg.status)}, not approved`)
    return undefined
  }

  /**
   * The refusals that need no registry lookup, made before its sequence is looked at: an event
   * whose tenant is outside the caller's scope is refused before the registry is asked about it.
   */
  private preRefusal (event: AgentEvent, { scope, endpoint }: Restriction): PatchswarmError | undefined {
    if (endpoint !== undefined && event.endpoint !== endpoint) return PatchswarmError.WRONG_HOLDER(`event of endpoint ${event.endpoint.slice(0, 12)}… reported by ${endpoint.slice(0, 12)}…`)
    if (event.org !== this.org) return PatchswarmError.WRONG_ORGANISATION(`event is for organisation ${JSON.stringify(event.org)}, not ${JSON.stringify(this.org)}`)
    if (scope !== undefined && !isWithinTenant(event.tenant, scope)) return PatchswarmError.WRONG_TENANT(`event of tenant ${JSON.stringify(event.tenant)} is outside ${JSON.stringify(scope)}`)
    return undefined
  }

  private replay (n: { replays: number }, base: { seq: number, endpoint: string }): IngestItemResult {
    n.replays++
    return { status: 'rejected', code: 'REPLAY', detail: `seq ${base.seq} was stored with other signed bytes`, ...base }
  }

  /** The committed state of each endpoint, from the cache or (once) from the database. */
  private async loadStates (keyids: string[]): Promise<Map<string, EndpointIngestState>> {
    const out = new Map<string, EndpointIngestState>()
    const missing: string[] = []
    for (const k of keyids) {
      const s = this.states.get(k)
      if (s !== undefined) out.set(k, s)
      else missing.push(k)
    }
    if (missing.length > 0) {
      const values = await this.store.getMany(missing.map(stateKey)) as (EndpointIngestState | undefined)[]
      missing.forEach((k, j) => {
        const s = values[j] ?? { last: 0, replays: 0 }
        this.states.set(k, s)
        out.set(k, s)
      })
    }
    return out
  }

  /** Lets calls in progress finish, then refuses new ones and completes counters$. Idempotent. */
  async close (): Promise<void> {
    if (this.closed) return
    await this.mutex.run(async () => { this.closed = true })
    this.ticks.complete()
  }
}

function rejection (err: unknown): IngestItemResult {
  if (isPatchswarmError(err)) return { status: 'rejected', code: err.code, detail: err.detail }
  return { status: 'rejected', code: 'BAD_EVENT', detail: String(err) }
}
