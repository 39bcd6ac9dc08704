// The reporting views, kept current: after ready() loads the persisted snapshot (and the log seq it
// covers), the log's tail from there on (stored entries, then live ones) runs through `scan` with
// the reducers of reducers.ts. The snapshot is written every `snapshotEvery` entries and on
// close(), in one batch with its position, and only for the objects that changed: a restart
// replays just the entries after it. Because the log emits right after each commit and the tail is
// folded in synchronously, the views include an append as soon as the append's promise resolves.
//
// Stored in the `report-views` sublevel, values JSON text (stringified when the snapshot is taken,
// so later in-place changes cannot leak into a write in flight):
//   meta                  { format, position, at }
//   e!<keyid>             EndpointView
//   p!<keyid>!<release>   PairState
//   r!<rollout>           RolloutProgress
//   m!<rollout>!<keyid>   RolloutMember
import { Observable, Subject, type Subscription, defer, distinctUntilChanged, map, scan, shareReplay, startWith } from 'rxjs'
import type { AbstractSublevel } from 'abstract-level'
import { PatchswarmError, isPatchswarmError } from '../errors.js'
import type { Database } from '../store/db.js'
import { isWithinTenant } from '../trust/fields.js'
import type { JobState } from './event.js'
import type { ByteCounts, PatchRecord } from './records.js'
import type { ReportEntry, ReportLog } from './facts.js'
import {
  type EndpointView, type PairState, type RolloutMember, type RolloutProgress, type ViewState,
  emptyState, pairKey, reduce, zeroBytes
} from './reducers.js'

export type { EndpointView, RolloutProgress, RolloutMember, ViewState } from './reducers.js'

/** Bump when the reducers change what they build: an older snapshot is then dropped and rebuilt. */
export const VIEWS_FORMAT = 1
export const DEFAULT_SNAPSHOT_EVERY = 5000

export interface ReportViewsOptions {
  log: ReportLog
  clock?: () => Date
  /** Write the snapshot after this many new entries (default 5000). */
  snapshotEvery?: number
  sublevelName?: string
}

export interface Scope {
  /** A tenant subtree ('' or absent: everything). */
  under?: string
}

type TextSublevel = AbstractSublevel<Database, string | Buffer | Uint8Array, string, string>

export class ReportViews {
  /** The live view state after each change. It is mutated in place: derive values, do not keep it. */
  readonly state$: Observable<ViewState>
  private readonly store: TextSublevel
  private readonly log: ReportLog
  private readonly clock: () => Date
  private readonly snapshotEvery: number
  private state: ViewState = emptyState()
  private readonly changes = new Subject<ViewState>()
  private subscription: Subscription | undefined
  private opening: Promise<void> | undefined
  private closing: Promise<void> | undefined
  private closed = false
  private snapshotPosition = 0
  private writing: Promise<void> = Promise.resolve()
  private writeInFlight = false
  private _applied = 0
  private _loadedFrom = 0
  private _lastError: unknown = undefined

  constructor (db: Database, opts: ReportViewsOptions) {
    if (opts?.log === undefined) throw PatchswarmError.BAD_ARGUMENT('ReportViews needs { log }')
    const every = opts.snapshotEvery ?? DEFAULT_SNAPSHOT_EVERY
    if (!Number.isInteger(every) || every < 1) throw PatchswarmError.BAD_ARGUMENT(`snapshotEvery is a whole number >= 1, not ${String(every)}`)
    this.store = db.sublevel<string, string>(opts.sublevelName ?? 'report-views', { valueEncoding: 'utf8' }) as unknown as TextSublevel
    this.log = opts.log
    this.clock = opts.clock ?? (() => new Date())
    this.snapshotEvery = every
    this.state$ = defer(() => this.changes.pipe(startWith(this.state))).pipe(shareReplay({ bufferSize: 1, refCount: true }))
  }

  /**
   * Loads the snapshot, then folds in the log entries after it; resolves when the views have
   * caught up with the log as it was when ready() was called. Idempotent.
   */
  ready (): Promise<void> {
    if (this.closed) return Promise.reject(PatchswarmError.CLOSED('views are closed'))
    this.opening ??= this.open().catch((err) => {
      this.opening = undefined
      throw err
    })
    return this.opening
  }

  /** The log seq the views include. */
  get position (): number { return this.state.position }
  /** The log seq the snapshot loaded at ready() covered. */
  get loadedFrom (): number { return this._loadedFrom }
  /** Entries folded in since ready() (the replayed tail, then live ones). */
  get applied (): number { return this._applied }
  /** Entries the reducers could not use. */
  get skipped (): number { return this.state.skipped }
  /** The error of the last failed snapshot write, if any (the next write retries). */
  get lastError (): unknown { return this._lastError }

  // --- plain getters (copies) ---

  /** PatchRecords (one per endpoint × assigned release), optionally within a tenant subtree. */
  patchRecords (scope: Scope = {}): PatchRecord[] {
    const out: PatchRecord[] = []
    for (const pair of this.state.pairs.values()) {
      if (pair.availableAt === undefined || !inScope(pair.tenant, scope)) continue
      out.push({ ...pair } as PatchRecord)
    }
    return out
  }

  patchRecord (endpoint: string, release: string): PatchRecord | undefined {
    const pair = this.state.pairs.get(pairKey(endpoint, release))
    return pair?.availableAt === undefined ? undefined : { ...pair } as PatchRecord
  }

  /** The job state of `keyid` in `rollout`, as the rollout engine's thresholds read it. */
  statusOf (rollout: string, keyid: string): JobState | undefined {
    return this.state.members.get(rollout)?.get(keyid)?.state
  }

  rollout (rollout: string): RolloutProgress | undefined {
    const r = this.state.rollouts.get(rollout)
    return r === undefined ? undefined : copyProgress(r)
  }

  rollouts (): RolloutProgress[] {
    return [...this.state.rollouts.values()].map(copyProgress)
  }

  /** The members of a rollout and their job states. */
  members (rollout: string): Record<string, RolloutMember> {
    const out: Record<string, RolloutMember> = {}
    for (const [k, m] of this.state.members.get(rollout) ?? []) out[k] = { ...m }
    return out
  }

  endpoint (keyid: string): EndpointView | undefined {
    const ep = this.state.endpoints.get(keyid)
    return ep === undefined ? undefined : copyEndpoint(ep)
  }

  endpoints (scope: Scope = {}): EndpointView[] {
    const out: EndpointView[] = []
    for (const ep of this.state.endpoints.values()) if (inScope(ep.tenant, scope)) out.push(copyEndpoint(ep))
    return out
  }

  /** Bytes received by endpoints in scope, by source. */
  bytes (scope: Scope = {}): ByteCounts {
    const total = zeroBytes()
    for (const ep of this.state.endpoints.values()) {
      if (!inScope(ep.tenant, scope)) continue
      total.origin += ep.bytes.origin
      total.site += ep.bytes.site
      total.peer += ep.bytes.peer
      total.local += ep.bytes.local
    }
    return total
  }

  /** The same per endpoint. */
  bytesByEndpoint (scope: Scope = {}): Record<string, ByteCounts> {
    const out: Record<string, ByteCounts> = {}
    for (const ep of this.state.endpoints.values()) if (inScope(ep.tenant, scope)) out[ep.keyid] = { ...ep.bytes }
    return out
  }

  // --- selectors ---

  /** A derived value of the state, emitted when it changes. `fn` must return a fresh value (the state is mutated in place). */
  select<T> (fn: (state: ViewState) => T, equal: (a: T, b: T) => boolean = Object.is): Observable<T> {
    return this.state$.pipe(map(fn), distinctUntilChanged(equal), shareReplay({ bufferSize: 1, refCount: true }))
  }

  rollout$ (rollout: string): Observable<RolloutProgress | undefined> {
    return this.select((s) => s.rollouts.get(rollout)?.position ?? 0).pipe(map(() => this.rollout(rollout)))
  }

  endpoint$ (keyid: string): Observable<EndpointView | undefined> {
    return this.select((s) => s.endpoints.get(keyid)?.position ?? 0).pipe(map(() => this.endpoint(keyid)))
  }

  /** PatchRecords in scope, recomputed only when some pair changed. */
  patchRecords$ (scope: Scope = {}): Observable<PatchRecord[]> {
    return this.select((s) => s.changed.pairs).pipe(map(() => this.patchRecords(scope)))
  }

  bytes$ (scope: Scope = {}): Observable<ByteCounts> {
    return this.select((s) => s.changed.endpoints).pipe(
      map(() => this.bytes(scope)),
      distinctUntilChanged((a, b) => a.origin === b.origin && a.site === b.site && a.peer === b.peer && a.local === b.local)
    )
  }

  // --- snapshot ---

  /** Writes the changed objects and the position now (waits for a write in flight first). */
  snapshot (): Promise<void> {
    const run = this.writing.then(() => this.writeSnapshot())
    this.writing = run.catch(() => {})
    return run
  }

  /** Stops following the log, writes the snapshot and completes state$. Leaves the database open. Idempotent. */
  close (): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true
      await this.opening?.catch(() => {})
      this.subscription?.unsubscribe()
      this.subscription = undefined
      try {
        if (this.opening !== undefined) await this.snapshot()
      } finally {
        this.changes.complete()
      }
    })()
    return this.closing
  }

  private async open (): Promise<void> {
    await this.log.ready()
    await this.load()
    const target = this.log.last
    let caughtUp!: () => void
    let failed!: (err: unknown) => void
    const done = new Promise<void>((resolve, reject) => { caughtUp = resolve; failed = reject })
    this.subscription = this.log.tail$(this.state.position + 1).pipe(
      scan((state: ViewState, chunk: ReportEntry[]) => {
        for (const entry of chunk) reduce(state, entry)
        this._applied += chunk.length
        return state
      }, this.state)
    ).subscribe({
      next: (state) => {
        this.changes.next(state)
        if (state.position >= target) caughtUp()
        if (state.position - this.snapshotPosition >= this.snapshotEvery && !this.writeInFlight) {
          this.snapshot().catch(() => {}) // kept in lastError; retried by the next one
        }
      },
      error: (err) => {
        this._lastError = err
        failed(err)
      }
    })
    if (this.state.position >= target) caughtUp()
    await done
  }

  private async load (): Promise<void> {
    const state = emptyState()
    let meta: { format: number, position: number } | undefined
    try {
      const text = await this.store.get('meta')
      meta = text === undefined ? undefined : JSON.parse(text)
      if (meta?.format === VIEWS_FORMAT && Number.isInteger(meta.position) && meta.position <= this.log.last) {
        for await (const [key, text] of this.store.iterator()) if (key !== 'meta') restore(state, key, JSON.parse(text))
        state.position = meta.position
      } else if (text !== undefined) {
        // Another format (or a log that was reset): rebuild from the whole log.
        await this.store.clear()
      }
    } catch (err) {
      throw isPatchswarmError(err) ? err : PatchswarmError.IO_ERROR(`cannot read the report views: ${(err as Error).message}`, err)
    }
    this.state = state
    this.snapshotPosition = state.position
    this._loadedFrom = state.position
  }

  private async writeSnapshot (): Promise<void> {
    const state = this.state
    if (state.position === this.snapshotPosition && state.dirty.size === 0) return
    const keys = [...state.dirty]
    state.dirty.clear()
    const ops: { type: 'put', key: string, value: string }[] = []
    for (const key of keys) {
      const value = lookup(state, key)
      if (value !== undefined) ops.push({ type: 'put', key, value: JSON.stringify(value) })
    }
    const position = state.position
    ops.push({ type: 'put', key: 'meta', value: JSON.stringify({ format: VIEWS_FORMAT, position, at: this.clock().toISOString() }) })
    this.writeInFlight = true
    try {
      await this.store.batch(ops)
      this.snapshotPosition = position
      this._lastError = undefined
    } catch (err) {
      for (const key of keys) state.dirty.add(key)
      this._lastError = err
      throw PatchswarmError.IO_ERROR(`cannot write the report views: ${(err as Error).message}`, err)
    } finally {
      this.writeInFlight = false
    }
  }
}

function inScope (tenant: string, scope: Scope): boolean {
  return scope.under === undefined || isWithinTenant(tenant, scope.under)
}

function copyEndpoint (ep: EndpointView): EndpointView {
  const jobs: EndpointView['jobs'] = {}
  for (const [k, j] of Object.entries(ep.jobs)) jobs[k] = { ...j }
  return { ...ep, jobs, bytes: { ...ep.bytes }, ...(ep.agent !== undefined ? { agent: { ...ep.agent } } : {}) }
}

function copyProgress (r: RolloutProgress): RolloutProgress {
  const phases: RolloutProgress['phases'] = {}
  for (const [k, p] of Object.entries(r.phases)) phases[k] = { total: p.total, counts: { ...p.counts } }
  return { ...r, counts: { ...r.counts }, phases }
}

/** The object a snapshot key names. */
function lookup (state: ViewState, key: string): unknown {
  const rest = key.slice(2)
  switch (key[0]) {
    case 'e': return state.endpoints.get(rest)
    case 'p': return state.pairs.get(rest)
    case 'r': return state.rollouts.get(rest)
    case 'm': {
      const bang = rest.indexOf('!')
      return state.members.get(rest.slice(0, bang))?.get(rest.slice(bang + 1))
    }
  }
  return undefined
}

function restore (state: ViewState, key: string, value: unknown): void {
  const rest = key.slice(2)
  switch (key[0]) {
    case 'e': state.endpoints.set(rest, value as EndpointView); break
    case 'p': state.pairs.set(rest, value as PairState); break
    case 'r': state.rollouts.set(rest, value as RolloutProgress); break
    case 'm': {
      const bang = rest.indexOf('!')
      const rollout = rest.slice(0, bang)
      let members = state.members.get(rollout)
      if (members === undefined) state.members.set(rollout, members = new Map())
      members.set(rest.slice(bang + 1), value as RolloutMember)
    }
  }
}
