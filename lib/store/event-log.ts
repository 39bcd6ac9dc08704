// The event log: an append-only sequence of entries in a sublevel, keyed by a zero-padded global
// sequence number (lexicographic order = numeric order). Reporting is built on it: agent entries
// hold a signed event exactly as it was verified, console entries hold the console's own facts.
// An append is ONE LevelDB batch, together with whatever the caller adds (e.g. ingest state), so a
// fact and the bookkeeping about it are stored together or not at all. Appends are serialised:
// sequence numbers have no gaps, and live$ emits in sequence order, right after each commit.
//
// The log knows nothing about what the entries mean (that is lib/report); it is generic in the
// agent payload A and the console fact C.
import { Observable, Subject, concatMap } from 'rxjs'
import type { AbstractSublevel } from 'abstract-level'
import { PatchswarmError } from '../errors.js'
import type { Database } from './db.js'

export type LogSource = 'agent' | 'console'

export type LogInput<A = unknown, C = unknown> =
  /**
   * A signed agent event as received, and the hash of its signed bytes. `text`, when the caller
   * has it, is the envelope's JSON exactly as received: it is stored verbatim (and not kept on the
   * entry), so the log holds the very bytes that were verified and nothing is encoded twice.
   */
  | { source: 'agent', hash: string, envelope: A, text?: string }
  /** A fact the console states about itself (an assignment, a rollout change …). */
  | { source: 'console', fact: C }

/** An entry as stored: its global seq and the console time of the append. */
export type LogEntry<A = unknown, C = unknown> =
  | { source: 'agent', hash: string, envelope: A, seq: number, at: string }
  | { source: 'console', fact: C, seq: number, at: string }

// Any sublevel of the database, whatever its value encoding.
export type AnySublevel = AbstractSublevel<Database, string | Buffer | Uint8Array, string, any>

/** One operation of the append's batch, on a sublevel of the same database (like fleet's FleetOp). */
export type BatchOp =
  | { type: 'put', sublevel: AnySublevel, key: string, value: unknown }
  | { type: 'del', sublevel: AnySublevel, key: string }

export interface AppendOptions<A, C> {
  /** More operations for the same batch, built once the entries have their seq numbers. */
  extra?: (entries: LogEntry<A, C>[]) => BatchOp[]
  /** The console time to stamp (default: the log's clock, read once per append). */
  at?: Date
}

export interface ReadRange {
  /** First seq, inclusive (default 1). */
  from?: number
  /** Last seq, inclusive. */
  to?: number
  limit?: number
}

const SEQ_DIGITS = 16
export const seqKey = (seq: number): string => String(seq).padStart(SEQ_DIGITS, '0')
/** Entries per chunk when reading the log back (tail$). */
const READ_CHUNK = 1000

export class EventLog<A = unknown, C = unknown> {
  readonly db: Database
  /** Every appended entry, once committed, in seq order. Hot: no replay (see tail$). */
  readonly live$: Observable<LogEntry<A, C>>
  /** The same, one array per append. */
  readonly appended$: Observable<LogEntry<A, C>[]>
  // Values are JSON text that this class writes and parses itself (see LogInput.text).
  private readonly store: AbstractSublevel<Database, string | Buffer | Uint8Array, string, string>
  private readonly clock: () => Date
  private readonly appended = new Subject<LogEntry<A, C>[]>()
  private nextSeq = 0
  private opening: Promise<void> | undefined
  private closed = false
  private tail: Promise<unknown> = Promise.resolve()

  constructor (db: Database, opts: { clock?: () => Date, sublevelName?: string } = {}) {
    this.db = db
    this.store = db.sublevel<string, string>(opts.sublevelName ?? 'report-log', { valueEncoding: 'utf8' }) as never
    this.clock = opts.clock ?? (() => new Date())
    this.appended$ = this.appended.asObservable()
    this.live$ = this.appended$.pipe(concatMap((entries) => entries))
  }

  /** Finds the next sequence number. Idempotent. */
  ready (): Promise<void> {
    if (this.closed && this.opening === undefined) return Promise.reject(PatchswarmError.CLOSED('event log is closed'))
    this.opening ??= (async () => {
      try {
        const last = await this.store.keys({ reverse: true, limit: 1 }).all()
        this.nextSeq = last.length === 0 ? 1 : Number(last[0]) + 1
      } catch (err) {
        this.opening = undefined
        throw PatchswarmError.IO_ERROR(`cannot read the event log: ${(err as Error).message}`, err)
      }
    })()
    return this.opening
  }

  /** The seq of the newest entry (0 for an empty log); valid after ready(). */
  get last (): number {
    return Math.max(0, this.nextSeq - 1)
  }

  /**
   * Appends `inputs` (possibly none: then only `extra` is committed) in one batch with the extra
   * operations. Resolves with the stored entries once committed and emitted on live$.
   */
  append (inputs: LogInput<A, C>[], opts: AppendOptions<A, C> = {}): Promise<LogEntry<A, C>[]> {
    if (this.closed) return Promise.reject(PatchswarmError.CLOSED('event log is closed'))
    const run = this.tail.then(() => this.appendNow(inputs, opts))
    this.tail = run.catch(() => {})
    return run
  }

  private async appendNow (inputs: LogInput<A, C>[], opts: AppendOptions<A, C>): Promise<LogEntry<A, C>[]> {
    await this.ready()
    const at = (opts.at ?? this.clock()).toISOString()
    const first = this.nextSeq
    const entries: LogEntry<A, C>[] = []
    const ops: BatchOp[] = []
    inputs.forEach((input, i) => {
      const seq = first + i
      let entry: LogEntry<A, C>
      let value: string
      if (input.source === 'agent') {
        entry = { source: 'agent', hash: input.hash, envelope: input.envelope, seq, at }
        value = input.text === undefined ? JSON.stringify(entry) : `{"source":"agent","hash":${JSON.stringify(input.hash)},"seq":${seq},"at":"${at}","envelope":${input.text}}`
      } else {
        entry = { source: 'console', fact: input.fact, seq, at }
        value = JSON.stringify(entry)
      }
      entries.push(entry)
      ops.push({ type: 'put', sublevel: this.store, key: seqKey(seq), value })
    })
    if (opts.extra) ops.push(...opts.extra(entries))
    if (ops.length > 0) {
      try {
        await this.db.batch(ops as never)
      } catch (err) {
        throw PatchswarmError.IO_ERROR(`cannot append to the event log: ${(err as Error).message}`, err)
      }
    }
    // Only now, under the lock: a failed batch used no numbers.
    this.nextSeq = first + entries.length
    if (entries.length > 0) this.appended.next(entries)
    return entries
  }

  /** One entry, or undefined. */
  async get (seq: number): Promise<LogEntry<A, C> | undefined> {
    const text = await this.store.get(seqKey(seq))
    return text === undefined ? undefined : parse<A, C>(text)
  }

  /** Entries in seq order within `range`. */
  async read (range: ReadRange = {}): Promise<LogEntry<A, C>[]> {
    return (await this.store.values(rangeOptions(range)).all()).map(parse<A, C>)
  }

  /** Iterates stored entries in seq order (a LevelDB snapshot taken when iteration starts). */
  async * entries (range: ReadRange = {}): AsyncGenerator<LogEntry<A, C>> {
    for await (const value of this.store.values(rangeOptions(range))) yield parse<A, C>(value)
  }

  /**
   * Stored entries from `from` on, then live ones, as chunks in seq order with no gap and no
   * duplicate: live$ is subscribed first and buffered while the stored part is read, then anything
   * already read is dropped by seq. Completes when the log closes.
   */
  tail$ (from = 1): Observable<LogEntry<A, C>[]> {
    return new Observable<LogEntry<A, C>[]>((subscriber) => {
      let next = Math.max(1, Math.floor(from))
      let buffered: LogEntry<A, C>[][] | null = []
      let completed = false
      const emit = (chunk: LogEntry<A, C>[]) => {
        const fresh = chunk[0]!.seq >= next ? chunk : chunk.filter((e) => e.seq >= next)
        if (fresh.length === 0) return
        next = fresh[fresh.length - 1]!.seq + 1
        subscriber.next(fresh)
      }
      const live = this.appended.subscribe({
        next: (chunk) => { if (buffered !== null) buffered.push(chunk); else emit(chunk) },
        complete: () => { if (buffered !== null) completed = true; else subscriber.complete() }
      })
      const replay = async () => {
        const it = this.store.values({ gte: seqKey(next) })
        try {
          while (!subscriber.closed) {
            const values = await it.nextv(READ_CHUNK)
            if (values.length === 0) break
            emit(values.map(parse<A, C>))
          }
        } finally {
          await it.close()
        }
        const waiting = buffered!
        buffered = null
        for (const chunk of waiting) emit(chunk)
        if (completed) subscriber.complete()
      }
      replay().catch((err) => subscriber.error(PatchswarmError.IO_ERROR(`cannot read the event log: ${(err as Error)?.message}`, err)))
      return () => live.unsubscribe()
    })
  }

  /** Refuses new appends, waits for those already asked for, then completes live$. Leaves the database open. Idempotent. */
  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.tail
    this.appended.complete()
  }
}

function parse<A, C> (text: string): LogEntry<A, C> {
  return JSON.parse(text) as LogEntry<A, C>
}

function rangeOptions (range: ReadRange): { gte: string, lte?: string, limit?: number } {
  const out: { gte: string, lte?: string, limit?: number } = { gte: seqKey(Math.max(1, Math.floor(range.from ?? 1))) }
  if (range.to !== undefined) out.lte = seqKey(Math.max(0, Math.floor(range.to)))
  if (range.limit !== undefined) out.limit = Math.max(0, Math.floor(range.limit))
  return out
}
