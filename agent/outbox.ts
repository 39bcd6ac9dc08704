// The agent's outbox: every fact the agent reports becomes an event signed by the endpoint key with
// the next sequence number, kept in LevelDB until the console acknowledges it. Re-sending the same
// bytes is how delivery becomes at-least-once: the console takes an identical event again as a
// duplicate, so a lost ack costs nothing.
//
// Sequence numbers run 1, 2, 3, … without gaps, and no number may ever name two different events
// (the console rejects that as a REPLAY and the gap blocks everything after it). So a number is
// used only when the batch that stores its event commits, and nobody else gets a number meanwhile:
// prepare() takes the outbox's lock and holds it until the caller's batch has committed or failed.
// A failed batch leaves the counter where it was, and the next prepare() gets the same number.
//
// Keys in the sublevel:
//   last          highest seq committed
//   acked         highest seq the console acknowledged (every event up to it is deleted)
//   e!<seq16>     the event's canonical bytes, as a string: what is sent, byte for byte
import { EventEmitter } from 'node:events'
import { PatchswarmError } from '../lib/errors.js'
import type { Signer } from '../lib/crypto/keys.js'
import { sublevel, type Database, type Sublevel } from '../lib/store/db.js'
import type { FleetOp } from '../lib/fleet/common.js'
import { parseEnvelope, serializeEnvelope } from '../lib/trust/envelope.js'
import { SPEC_VERSION } from '../lib/trust/fields.js'
import { MAX_EVENT_BYTES, signEvent, type AgentEvent, type JobFact, type SignedEvent, type TransferFact } from '../lib/report/event.js'
import { AGENT_SUBLEVELS } from './store.js'

export type AgentFact = NonNullable<AgentEvent['agent']>

/** What one event says; the outbox adds who, when and which number. */
export type OutboxFact =
  | { kind: 'job', job: JobFact }
  | { kind: 'transfer', transfer: TransferFact }
  | { kind: 'agent', agent: AgentFact }
  | { kind: 'inventory', inventory: Record<string, unknown> }

export interface AgentOutboxOptions {
  /** The endpoint key: its key id is the endpoint every event names. */
  signer: Signer
  org: string
  /** The tenant path the endpoint's certificate names. */
  tenant: string
  clock?: () => Date
  sublevelName?: string
}

/** Signed events that hold the outbox's lock until commit() or cancel(). */
export interface PreparedEvents {
  events: SignedEvent[]
  /** Puts of the events and of the counter; commit() writes them with the caller's operations. */
  ops: FleetOp[]
  /** Writes ops + extra in one synced batch and releases the lock; on failure no seq is used. */
  commit (extra?: FleetOp[]): Promise<void>
  /** Releases the lock without writing: the seqs stay free for the next prepare. */
  cancel (): void
}

export interface OutboxStats {
  pending: number
  /** Highest seq committed (0 before the first event). */
  lastSeq: number
  ackedSeq: number
  /** The oldest unacknowledged event. */
  oldestSeq?: number
  oldestAt?: string
}

export interface OutboxEvents {
  /** Something the console said that the outbox ignored (an ack above the last seq). */
  warning: [PatchswarmError]
  /** Events up to this seq are stored: there is something new to send. */
  appended: [number]
}

const LAST = 'last'
const ACKED = 'acked'
const SEQ_DIGITS = 16
const eventKey = (seq: number) => `e!${String(seq).padStart(SEQ_DIGITS, '0')}`
export const DEFAULT_PENDING_LIMIT = 1000

export class AgentOutbox extends EventEmitter<OutboxEvents> {
  readonly db: Database
  readonly sub: Sublevel
  private readonly signer: Signer
  private readonly org: string
  private readonly tenant: string
  private readonly clock: () => Date
  private last = 0
  private acked = 0
  // False after a batch whose outcome is unknown: the counter is read again before it is trusted.
  private lastKnown = false
  private tail: Promise<void> = Promise.resolve()
  private opening: Promise<void> | undefined
  private closed = false

  constructor (db: Database, opts: AgentOutboxOptions) {
    super()
    if (!db || typeof opts?.signer?.sign !== 'function' || typeof opts.org !== 'string' || typeof opts.tenant !== 'string') {
      throw PatchswarmError.BAD_ARGUMENT('an AgentOutbox needs a database and { signer, org, tenant }')
    }
    this.db = db
    this.sub = sublevel(db, opts.sublevelName ?? AGENT_SUBLEVELS.outbox)
    this.signer = opts.signer
    this.org = opts.org
    this.tenant = opts.tenant
    this.clock = opts.clock ?? (() => new Date())
  }

  /** Loads the counters. Idempotent. */
  ready (): Promise<void> {
    this.opening ??= this.exclusive(async () => { await this.loadCounters() })
    return this.opening
  }

  /** Waits for a prepared batch to settle; later calls get CLOSED. The database stays open. */
  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.tail
  }

  /** Signs one fact as the next event; see PreparedEvents. */
  async prepare (fact: OutboxFact): Promise<PreparedEvents & { event: SignedEvent }> {
    const p = await this.prepareAll([fact])
    return { ...p, event: p.events[0]! }
  }

  /** Signs facts as consecutive events, for one batch. */
  async prepareAll (facts: readonly OutboxFact[]): Promise<PreparedEvents> {
    if (!Array.isArray(facts) || facts.length === 0) throw PatchswarmError.BAD_ARGUMENT('prepare needs at least one fact')
    await this.ready()
    const release = await this.acquire()
    let settled = false
    const settle = () => {
      if (settled) throw PatchswarmError.BAD_STATE('these events were already committed or cancelled')
      settled = true
      release()
    }
    try {
      this.assertOpen()
      if (!this.lastKnown) await this.loadCounters()
      const at = this.clock().toISOString()
      const events: SignedEvent[] = []
      const ops: FleetOp[] = []
      let seq = this.last
      for (const fact of facts) {
        seq++
        const event = await signEvent(this.eventOf(fact, seq, at), this.signer)
        const bytes = serializeEnvelope(event)
        // The console refuses an oversized event for good, and every later seq would wait behind it.
        if (bytes.byteLength > MAX_EVENT_BYTES) throw PatchswarmError.BAD_EVENT(`a ${fact.kind} event of ${bytes.byteLength} bytes is more than ${MAX_EVENT_BYTES}`)
        events.push(event)
        ops.push({ type: 'put', sublevel: this.sub, key: eventKey(seq), value: bytes.toString('utf8') })
      }
      ops.push({ type: 'put', sublevel: this.sub, key: LAST, value: seq })
      const committedSeq = seq
      return {
        events,
        ops,
        commit: async (extra = []) => {
          if (settled) throw PatchswarmError.BAD_STATE('these events were already committed or cancelled')
          try {
            await this.db.batch([...ops, ...extra] as never, { sync: true })
            this.last = committedSeq
            this.emit('appended', committedSeq)
          } catch (err) {
            // Almost always nothing was written; if it was, re-reading the counter says so.
            this.lastKnown = false
            throw err
          } finally {
            settle()
          }
        },
        cancel: () => { if (!settled) settle() }
      }
    } catch (err) {
      settle()
      throw err
    }
  }

  /** prepare + commit: the facts as events, with `extra` in the same batch. */
  async append (facts: OutboxFact | readonly OutboxFact[], extra: FleetOp[] = []): Promise<SignedEvent[]> {
    const p = await this.prepareAll(Array.isArray(facts) ? facts : [facts as OutboxFact])
    await p.commit(extra)
    return p.events
  }

  /** Unacknowledged events in seq order, exactly as signed. */
  async pending (opts: { limit?: number } = {}): Promise<SignedEvent[]> {
    return (await this.pendingSerialized(opts)).map((text) => parseEnvelope(text) as unknown as SignedEvent)
  }

  /** Like pending(), but each event's canonical bytes as stored: what is sent, byte for byte. */
  async pendingSerialized (opts: { limit?: number } = {}): Promise<string[]> {
    const limit = opts.limit ?? DEFAULT_PENDING_LIMIT
    if (!Number.isInteger(limit) || limit < 1) throw PatchswarmError.BAD_ARGUMENT('limit must be a positive integer')
    await this.ready()
    const out: string[] = []
    for await (const value of this.sub.values({ gt: eventKey(this.acked), lte: eventKey(Number.MAX_SAFE_INTEGER), limit })) out.push(value as string)
    return out
  }

  /**
   * The console holds every event up to `lastSeq`: they are deleted. An ack at or below an earlier
   * one changes nothing; one above the last committed seq is ignored with a warning (the console
   * knows events this outbox never wrote: a restored backup, or another agent with this key).
   */
  ack (lastSeq: number): Promise<{ removed: number }> {
    if (!Number.isSafeInteger(lastSeq) || lastSeq < 0) return Promise.reject(PatchswarmError.BAD_ARGUMENT('an ack is a seq (a non-negative integer)'))
    return this.exclusive(async () => {
      this.assertOpen()
      if (!this.lastKnown) await this.loadCounters()
      if (lastSeq > this.last) {
        this.emit('warning', PatchswarmError.BAD_STATE(`the console acknowledged seq ${lastSeq}, but the last event written is ${this.last}; ack ignored`))
        return { removed: 0 }
      }
      if (lastSeq <= this.acked) return { removed: 0 }
      const ops: FleetOp[] = []
      for (let seq = this.acked + 1; seq <= lastSeq; seq++) ops.push({ type: 'del', sublevel: this.sub, key: eventKey(seq) })
      ops.push({ type: 'put', sublevel: this.sub, key: ACKED, value: lastSeq })
      // Not synced: an ack lost in a crash only means sending those events once more.
      await this.db.batch(ops as never)
      const removed = lastSeq - this.acked
      this.acked = lastSeq
      return { removed }
    })
  }

  async stats (): Promise<OutboxStats> {
    await this.ready()
    const stats: OutboxStats = { pending: this.last - this.acked, lastSeq: this.last, ackedSeq: this.acked }
    if (stats.pending > 0) {
      const [oldest] = await this.pending({ limit: 1 })
      if (oldest) {
        stats.oldestSeq = oldest.signed.seq
        stats.oldestAt = oldest.signed.at
      }
    }
    return stats
  }

  private eventOf (fact: OutboxFact, seq: number, at: string): AgentEvent {
    if (typeof fact !== 'object' || fact === null) throw PatchswarmError.BAD_ARGUMENT('a fact is an object with a kind')
    return {
      _type: 'event',
      spec: SPEC_VERSION,
      org: this.org,
      endpoint: this.signer.keyid,
      tenant: this.tenant,
      seq,
      at,
      ...fact
    } as AgentEvent
  }

  private async loadCounters () {
    this.last = await this.readCount(LAST)
    this.acked = await this.readCount(ACKED)
    if (this.acked > this.last) throw PatchswarmError.BAD_STATE(`the outbox's ack (${this.acked}) is beyond its last event (${this.last})`)
    this.lastKnown = true
  }

  private async readCount (key: string): Promise<number> {
    const v = await this.sub.get(key)
    if (v === undefined) return 0
    if (!Number.isSafeInteger(v) || (v as number) < 0) throw PatchswarmError.BAD_STATE(`the outbox's ${key} counter is not a seq: ${JSON.stringify(v)}`)
    return v as number
  }

  private assertOpen () {
    if (this.closed) throw PatchswarmError.CLOSED('the outbox is closed')
  }

  /** Waits for the lock; the returned function releases it. */
  private async acquire (): Promise<() => void> {
    let release!: () => void
    const held = new Promise<void>((resolve) => { release = resolve })
    const before = this.tail
    this.tail = before.then(() => held)
    await before
    return release
  }

  private async exclusive<T> (fn: () => Promise<T>): Promise<T> {
    const release = await this.acquire()
    try {
      return await fn()
    } finally {
      release()
    }
  }
}
