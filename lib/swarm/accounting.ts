// Byte accounting: how many bytes of each package came from (or went to) the origin, a peer of the
// same site, or another peer. `record()` is called per chunk and only adds to a Float64Array;
// everything else is coalesced: `stats$` emits at most once per interval with the latest numbers,
// and the dirty packages are written to LevelDB in one batch at most once per flush interval and
// on close(). ready() loads the persisted counters, so a restart continues the counts.
//
// In the database (the sublevel given to the constructor): key = package digest, value =
// { origin: { down, up }, site: { down, up }, peer: { down, up } }. Totals are the sum over packages.
import { Observable, Subject, defer, map, shareReplay, startWith } from 'rxjs'
import { PatchswarmError } from '../errors.js'
import type { Database, Sublevel } from '../store/db.js'
import { type TimeSource, realTime } from './token-bucket.js'

/** Where bytes came from or went to: the origin, a peer of the same site, or another peer. */
export type TrafficSource = 'origin' | 'site' | 'peer'
export type TrafficDirection = 'down' | 'up'

export type ByteCounters = { readonly [S in TrafficSource]: { readonly [D in TrafficDirection]: number } }

export interface AccountingRecord {
  /** The package's digest (its manifest's). */
  digest: string
  source: TrafficSource
  direction: TrafficDirection
  bytes: number
}

export interface AccountingStats {
  /** Per package digest. */
  readonly packages: Readonly<Record<string, ByteCounters>>
  readonly total: ByteCounters
}

export interface AccountingOptions {
  /** Where the counters persist; give it a sublevel of its own. */
  db: Database | Sublevel
  /** Most often stats$ emits, ms. Default 250. */
  statsInterval?: number
  /** Most often the counters are written, ms. Default 2000. */
  flushInterval?: number
  time?: TimeSource
}

export const TRAFFIC_SOURCES: readonly TrafficSource[] = ['origin', 'site', 'peer']
export const TRAFFIC_DIRECTIONS: readonly TrafficDirection[] = ['down', 'up']

const SOURCE_INDEX: Readonly<Record<string, number>> = { origin: 0, site: 2, peer: 4 }
const DIRECTION_INDEX: Readonly<Record<string, number>> = { down: 0, up: 1 }
const SLOTS = 6

type BatchOp = { type: 'put', key: string, value: unknown }

// The few LevelDB calls used here; a Database and a Sublevel both have them.
interface Store {
  batch (ops: BatchOp[]): Promise<void>
  iterator (): AsyncIterable<[string, unknown]>
}

export function emptyCounters (): ByteCounters {
  return { origin: { down: 0, up: 0 }, site: { down: 0, up: 0 }, peer: { down: 0, up: 0 } }
}

function toCounters (slots: Float64Array): ByteCounters {
  return {
    origin: { down: slots[0]!, up: slots[1]! },
    site: { down: slots[2]!, up: slots[3]! },
    peer: { down: slots[4]!, up: slots[5]! }
  }
}

function fromStored (value: unknown): Float64Array | undefined {
  if (value === null || typeof value !== 'object') return undefined
  const slots = new Float64Array(SLOTS)
  for (const source of TRAFFIC_SOURCES) {
    const entry = (value as Record<string, unknown>)[source]
    if (entry === null || typeof entry !== 'object') return undefined
    for (const direction of TRAFFIC_DIRECTIONS) {
      const n = (entry as Record<string, unknown>)[direction]
      if (typeof n !== 'number' || !Number.isFinite(n) || n < 0) return undefined
      slots[SOURCE_INDEX[source]! + DIRECTION_INDEX[direction]!] = n
    }
  }
  return slots
}

export class Accounting {
  /** The latest counters: on subscribe, then at most once per statsInterval while bytes move, and on refresh(). */
  readonly stats$: Observable<AccountingStats>
  private readonly store: Store
  private readonly time: TimeSource
  private readonly statsInterval: number
  private readonly flushInterval: number
  private readonly counters = new Map<string, Float64Array>()
  private readonly totals = new Float64Array(SLOTS)
  private dirty = new Set<string>()
  private readonly ticks = new Subject<void>()
  private lastEmit = -Infinity
  private statsTimer: unknown = undefined
  private flushTimer: unknown = undefined
  private flushing: Promise<void> | undefined
  private loading: Promise<void> | undefined
  private loaded = false
  private closing: Promise<void> | undefined
  private closed = false
  private _lastError: unknown = undefined

  constructor (options: AccountingOptions) {
    if (options?.db === undefined) throw PatchswarmError.BAD_ARGUMENT('accounting needs a database (a sublevel of its own)')
    this.store = options.db as unknown as Store
    this.time = options.time ?? realTime
    this.statsInterval = interval(options.statsInterval ?? 250, 'statsInterval')
    this.flushInterval = interval(options.flushInterval ?? 2000, 'flushInterval')
    this.stats$ = defer(() => this.ticks.pipe(startWith(undefined))).pipe(
      map(() => this.snapshot()),
      shareReplay({ bufferSize: 1, refCount: true })
    )
  }

  /** Loads the persisted counters (adding to anything recorded before). Idempotent. */
  ready (): Promise<void> {
    if (this.closed) return Promise.reject(PatchswarmError.CLOSED('accounting is closed'))
    this.loading ??= this.load()
    return this.loading
  }

  /** Counts bytes; cheap enough for every chunk. Throws BAD_ARGUMENT on bad input, CLOSED after close(). */
  record (entry: AccountingRecord): void {
    const { digest, source, direction, bytes } = entry
    const s = SOURCE_INDEX[source]
    const d = DIRECTION_INDEX[direction]
    if (s === undefined || d === undefined || typeof digest !== 'string' || digest.length === 0 ||
      typeof bytes !== 'number' || !(bytes >= 0) || !Number.isFinite(bytes)) {
      throw PatchswarmError.BAD_ARGUMENT(`cannot record ${JSON.stringify({ digest, source, direction, bytes })}`)
    }
    if (this.closed) throw PatchswarmError.CLOSED('accounting is closed')
    let slots = this.counters.get(digest)
    if (slots === undefined) {
      slots = new Float64Array(SLOTS)
      this.counters.set(digest, slots)
    }
    slots[s + d]! += bytes
    this.totals[s + d]! += bytes
    this.dirty.add(digest)
    if (this.statsTimer === undefined) {
      this.statsTimer = this.time.setTimeout(() => {
        this.statsTimer = undefined
        this.emit()
      }, Math.max(0, this.lastEmit + this.statsInterval - this.time.now()), { unref: true })
    }
    if (this.flushTimer === undefined && this.loaded) this.armFlush()
  }

  /** The counters right now, as a fresh copy. */
  snapshot (): AccountingStats {
    const packages: Record<string, ByteCounters> = {}
    for (const [digest, slots] of this.counters) packages[digest] = toCounters(slots)
    return { packages, total: toCounters(this.totals) }
  }

  /** One package's counters (zeros if nothing was counted). */
  package (digest: string): ByteCounters {
    const slots = this.counters.get(digest)
    return slots === undefined ? emptyCounters() : toCounters(slots)
  }

  /** Makes stats$ emit the latest counters now. */
  refresh (): void {
    if (this.statsTimer !== undefined) this.time.clearTimeout(this.statsTimer)
    this.statsTimer = undefined
    this.emit()
  }

  /** The error of the last failed background write, if any (it is retried). */
  get lastError (): unknown { return this._lastError }

  /** Writes every changed counter now. Rejects with IO_ERROR when the write fails. */
  async flush (): Promise<void> {
    if (!this.loaded) {
      if (this.loading === undefined) return
      await this.loading
    }
    while (this.flushing !== undefined) await this.flushing.catch(() => {})
    if (this.dirty.size === 0) return
    if (this.flushTimer !== undefined) this.time.clearTimeout(this.flushTimer)
    this.flushTimer = undefined
    const digests = this.dirty
    this.dirty = new Set()
    const ops: BatchOp[] = []
    for (const digest of digests) ops.push({ type: 'put', key: digest, value: toCounters(this.counters.get(digest)!) })
    const write = this.store.batch(ops).then(() => {
      this._lastError = undefined
    }, (err: unknown) => {
      for (const digest of digests) this.dirty.add(digest)
      this._lastError = err
      if (!this.closed && this.flushTimer === undefined) this.armFlush()
      throw PatchswarmError.IO_ERROR(`cannot write byte counters: ${(err as Error)?.message}`, err)
    })
    this.flushing = write
    try {
      await write
    } finally {
      if (this.flushing === write) this.flushing = undefined
    }
  }

  /** Writes what is left, stops timers and completes stats$. Leaves the database open. Idempotent. */
  close (): Promise<void> {
    this.closing ??= this.shutdown()
    return this.closing
  }

  private async shutdown (): Promise<void> {
    this.closed = true
    if (this.statsTimer !== undefined) this.time.clearTimeout(this.statsTimer)
    this.statsTimer = undefined
    if (this.flushTimer !== undefined) this.time.clearTimeout(this.flushTimer)
    this.flushTimer = undefined
    try {
      if (this.loading !== undefined) await this.loading.catch(() => {})
      if (this.loaded) await this.flush()
    } finally {
      this.ticks.next()
      this.ticks.complete()
    }
  }

  private async load (): Promise<void> {
    try {
      for await (const [digest, value] of this.store.iterator()) {
        const stored = fromStored(value)
        if (stored === undefined) continue
        let slots = this.counters.get(digest)
        if (slots === undefined) {
          slots = new Float64Array(SLOTS)
          this.counters.set(digest, slots)
        } else {
          this.dirty.add(digest)
        }
        for (let i = 0; i < SLOTS; i++) {
          slots[i]! += stored[i]!
          this.totals[i]! += stored[i]!
        }
      }
    } catch (err) {
      this.loading = undefined
      throw PatchswarmError.IO_ERROR(`cannot read byte counters: ${(err as Error)?.message}`, err)
    }
    this.loaded = true
    if (this.dirty.size > 0 && this.flushTimer === undefined && !this.closed) this.armFlush()
    this.emit()
  }

  private armFlush (): void {
    this.flushTimer = this.time.setTimeout(() => {
      this.flushTimer = undefined
      this.flush().catch(() => {}) // kept in lastError and retried
    }, this.flushInterval, { unref: true })
  }

  private emit (): void {
    this.lastEmit = this.time.now()
    if (!this.ticks.closed) this.ticks.next()
  }
}

function interval (ms: number, name: string): number {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) throw PatchswarmError.BAD_ARGUMENT(`${name} is a number of ms >= 0, not ${String(ms)}`)
  return ms
}
