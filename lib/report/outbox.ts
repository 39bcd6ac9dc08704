// The webhook outbox: a durable delivery queue in LevelDB and the worker that empties it.
//
// Guarantee: at-least-once. A delivery is queued in the same batch as the fact it reports (see
// WebhookStore.enqueueOps) and leaves the queue only in the batch that records its 2xx answer. A
// crash, a close() during a request, or a 2xx answer lost on the wire means the receiver may see
// the same delivery again: every attempt carries the same X-Patchswarm-Delivery id and body, so
// receivers dedupe on it. No order is guaranteed, not even per subscription (a failing delivery
// is retried later while newer ones go out); receivers order by the body's `at`.
//
// Keys in the sublevel ('!' never occurs in a webhook id or a delivery id):
//   q!<webhook>!<delivery> → QueuedDelivery (pending, paused or dead)
//   t!<due ms, 15 digits>!<webhook>!<delivery> → 0   index of the pending ones by next attempt
//   d!<webhook>!<delivery> → DeliveredRecord
// Run one Outbox per database: two workers on one queue would send the same delivery twice.
import { EventEmitter } from 'node:events'
import { createHmac, timingSafeEqual } from 'node:crypto'
import { PatchswarmError } from '../errors.js'
import { sublevel, type Database, type Sublevel } from '../store/db.js'
import { commit, type FleetClock, type FleetOp } from '../fleet/common.js'
import type { WebhookStore, WebhookTarget } from './webhooks.js'

export type DeliveryState = 'pending' | 'paused' | 'dead'

export interface QueuedDelivery {
  webhook: string
  /** The fact's id: the X-Patchswarm-Delivery header and the body's `id`. */
  delivery: string
  type: string
  tenant: string
  /** When the fact happened. */
  at: string
  /** The exact JSON sent on every attempt. */
  body: string
  /** pending: waiting for nextAttemptAt; paused: its subscription is disabled; dead: gave up. */
  state: DeliveryState
  /** Attempts made so far (all failed). */
  attempts: number
  nextAttemptAt: string
  enqueuedAt: string
  lastAttemptAt?: string
  /** The HTTP status of the last attempt, when it got one. */
  lastStatus?: number
  lastError?: string
}

export interface DeliveredRecord {
  webhook: string
  delivery: string
  type: string
  tenant: string
  at: string
  /** Attempts including the successful one. */
  attempts: number
  status: number
  deliveredAt: string
}

export interface DeliveryEvent {
  webhook: string
  delivery: string
  type: string
  tenant: string
  attempts: number
  status?: number
  error?: string
  /** For 'failed': when the next attempt is due. */
  nextAttemptAt?: string
}

export interface OutboxEvents {
  delivered: [DeliveryEvent]
  /** An attempt failed and another is scheduled. */
  failed: [DeliveryEvent]
  /** The last allowed attempt failed; the delivery waits in the dead-letter list for retry(). */
  dead: [DeliveryEvent]
  /** The worker's own storage failed; it tries again at the next poll. */
  warning: [Error]
}

const DIGITS = 15
const itemKey = (webhook: string, delivery: string) => `q!${webhook}!${delivery}`
const doneKey = (webhook: string, delivery: string) => `d!${webhook}!${delivery}`
const dueKey = (ms: number, webhook: string, delivery: string) =>
  `t!${String(Math.max(0, Math.floor(ms))).padStart(DIGITS, '0')}!${webhook}!${delivery}`
const dueKeyOf = (item: QueuedDelivery) => dueKey(Date.parse(item.nextAttemptAt), item.webhook, item.delivery)
/** Everything after `<prefix><webhook>!` — a whole key space for one webhook. */
const range = (prefix: string, webhook?: string) => {
  const p = webhook === undefined ? prefix : `${prefix}${webhook}!`
  return { gte: p, lt: p + '\uffff' }
}

interface DueEntry { key: string, id: string, webhook: string, delivery: string }

/** The queue's records and the batch operations that change them; it takes no locks itself. */
export class DeliveryQueue {
  readonly db: Database
  readonly sub: Sublevel

  constructor (db: Database, name = 'report-webhook-outbox') {
    this.db = db
    this.sub = sublevel(db, name)
  }

  async get (webhook: string, delivery: string): Promise<QueuedDelivery | undefined> {
    return await this.sub.get(itemKey(webhook, delivery)) as QueuedDelivery | undefined
  }

  async deliveredRecord (webhook: string, delivery: string): Promise<DeliveredRecord | undefined> {
    return await this.sub.get(doneKey(webhook, delivery)) as DeliveredRecord | undefined
  }

  /** Writes `item` (new or changed), keeping the due index in step with its state. */
  putOps (item: QueuedDelivery, previous?: QueuedDelivery): FleetOp[] {
    const ops: FleetOp[] = []
    if (previous?.state === 'pending') ops.push({ type: 'del', sublevel: this.sub, key: dueKeyOf(previous) })
    ops.push({ type: 'put', sublevel: this.sub, key: itemKey(item.webhook, item.delivery), value: item })
    if (item.state === 'pending') ops.push({ type: 'put', sublevel: this.sub, key: dueKeyOf(item), value: 0 })
    return ops
  }

  removeOps (item: QueuedDelivery): FleetOp[] {
    const ops: FleetOp[] = [{ type: 'del', sublevel: this.sub, key: itemKey(item.webhook, item.delivery) }]
    if (item.state === 'pending') ops.push({ type: 'del', sublevel: this.sub, key: dueKeyOf(item) })
    return ops
  }

  deliveredOps (item: QueuedDelivery, record: DeliveredRecord): FleetOp[] {
    return [...this.removeOps(item), { type: 'put', sublevel: this.sub, key: doneKey(record.webhook, record.delivery), value: record }]
  }

  /** Deletes everything queued or recorded for one webhook. */
  async purgeOps (webhook: string): Promise<FleetOp[]> {
    const ops: FleetOp[] = []
    for (const item of await this.items({ webhook })) ops.push(...this.removeOps(item))
    for (const key of await this.sub.keys(range('d!', webhook)).all()) ops.push({ type: 'del', sublevel: this.sub, key })
    return ops
  }

  async items (opts: { webhook?: string, state?: DeliveryState, limit?: number } = {}): Promise<QueuedDelivery[]> {
    const out: QueuedDelivery[] = []
    for await (const value of this.sub.values(range('q!', opts.webhook))) {
      const item = value as QueuedDelivery
      if (opts.state !== undefined && item.state !== opts.state) continue
      out.push(item)
      if (opts.limit !== undefined && out.length >= opts.limit) break
    }
    return out
  }

  async delivered (opts: { webhook?: string, limit?: number } = {}): Promise<DeliveredRecord[]> {
    const limit = opts.limit === undefined ? {} : { limit: Math.max(0, Math.floor(opts.limit)) }
    return await this.sub.values({ ...range('d!', opts.webhook), ...limit }).all() as DeliveredRecord[]
  }

  /** Pending deliveries due at `now`, earliest first, skipping those in `skip` (ids `webhook!delivery`). */
  async due (now: number, limit: number, skip: ReadonlySet<string>): Promise<DueEntry[]> {
    const out: DueEntry[] = []
    for await (const key of this.sub.keys({ gte: 't!', lt: `t!${String(Math.max(0, now + 1)).padStart(DIGITS, '0')}` })) {
      const entry = parseDueKey(key)
      if (skip.has(entry.id)) continue
      out.push(entry)
      if (out.length >= limit) break
    }
    return out
  }

  /** When the earliest pending delivery not in `skip` is due (ms), if any. */
  async nextDueAt (skip: ReadonlySet<string>): Promise<number | undefined> {
    for await (const key of this.sub.keys({ gte: 't!', lt: 't!\uffff' })) {
      const entry = parseDueKey(key)
      if (!skip.has(entry.id)) return Number(key.slice(2, 2 + DIGITS))
    }
    return undefined
  }

  dueKeyOf (item: QueuedDelivery): string { return dueKeyOf(item) }
}

function parseDueKey (key: string): DueEntry {
  const id = key.slice(3 + DIGITS)
  const bang = id.indexOf('!')
  return { key, id, webhook: id.slice(0, bang), delivery: id.slice(bang + 1) }
}

// --- Signing -------------------------------------------------------------------------------------

export const SIGNATURE_HEADER = 'X-Patchswarm-Signature'
export const TIMESTAMP_HEADER = 'X-Patchswarm-Timestamp'
export const DELIVERY_HEADER = 'X-Patchswarm-Delivery'
export const EVENT_HEADER = 'X-Patchswarm-Event'

/**
 * `sha256=<hex HMAC-SHA256(secret, timestamp + '.' + body)>`. The timestamp is inside the MAC so a
 * receiver can refuse requests older than its replay window without trusting an unsigned header;
 * within the window it dedupes by delivery id, so it only has to remember ids for that long.
 */
export function webhookSignature (secret: string, timestamp: number, body: string | Uint8Array): string {
  return 'sha256=' + createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest('hex')
}

/** The headers of one attempt; every retry is signed afresh with the time it is sent. */
export function webhookHeaders (secret: string, delivery: string, type: string, body: string, timestamp: number): Record<string, string> {
  return {
    'content-type': 'application/json',
    'user-agent': 'patchswarm-webhooks',
    [DELIVERY_HEADER]: delivery,
    [EVENT_HEADER]: type,
    [TIMESTAMP_HEADER]: String(timestamp),
    [SIGNATURE_HEADER]: webhookSignature(secret, timestamp, body)
  }
}

export type HeaderBag = Headers | Record<string, string | string[] | undefined>

export type WebhookVerification =
  | { ok: true, delivery: string | undefined, timestamp: number }
  | { ok: false, reason: string }

function header (headers: HeaderBag, name: string): string | undefined {
  if (typeof (headers as Headers).get === 'function') return (headers as Headers).get(name) ?? undefined
  const lower = name.toLowerCase()
  for (const [k, v] of Object.entries(headers)) if (k.toLowerCase() === lower) return Array.isArray(v) ? v[0] : v
  return undefined
}

/**
 * For receivers: checks a request's signature over the raw body bytes (not re-serialised JSON) and
 * that its timestamp is within `toleranceSec` (default 300) of `now`. Several secrets may be given
 * while one is being rotated. Never throws for a bad request.
 */
export function verifyWebhookSignature (
  secret: string | readonly string[],
  headers: HeaderBag,
  body: string | Uint8Array,
  opts: { toleranceSec?: number, now?: Date } = {}
): WebhookVerification {
  const tolerance = opts.toleranceSec ?? 300
  const ts = header(headers, TIMESTAMP_HEADER)
  const sig = header(headers, SIGNATURE_HEADER)
  if (ts === undefined || !/^\d{1,12}$/.test(ts)) return { ok: false, reason: 'missing or malformed timestamp' }
  if (sig === undefined) return { ok: false, reason: 'missing signature' }
  const timestamp = Number(ts)
  const now = (opts.now ?? new Date()).getTime() / 1000
  if (Math.abs(now - timestamp) > tolerance) return { ok: false, reason: 'timestamp outside the tolerance' }
  const offered = sig.split(',').map((s) => s.trim()).filter((s) => s.startsWith('sha256=')).map((s) => Buffer.from(s))
  for (const s of typeof secret === 'string' ? [secret] : secret) {
    const expected = Buffer.from(webhookSignature(s, timestamp, body))
    if (offered.some((o) => o.length === expected.length && timingSafeEqual(o, expected))) {
      return { ok: true, delivery: header(headers, DELIVERY_HEADER), timestamp }
    }
  }
  return { ok: false, reason: 'signature mismatch' }
}

/** Exponential back-off with full jitter: uniform in [0, min(max, base · 2^(attempt−1))). */
export function backoffDelay (attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const cap = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1))
  return Math.floor(random() * cap)
}

// --- The worker ----------------------------------------------------------------------------------

export interface OutboxOptions {
  store: WebhookStore
  /** Default: the store's clock. */
  clock?: FleetClock
  fetch?: typeof fetch
  baseDelayMs?: number
  maxDelayMs?: number
  /** Attempts before a delivery is dead-lettered. */
  maxAttempts?: number
  timeoutMs?: number
  /** Requests in flight at once. */
  concurrency?: number
  /** How often to look for deliveries queued by batches the worker did not see. */
  pollIntervalMs?: number
}

interface Outcome { ok: boolean, status?: number, error?: string }

function positiveInt (value: number | undefined, fallback: number, what: string): number {
  const v = value ?? fallback
  if (!Number.isSafeInteger(v) || v < 1) throw PatchswarmError.BAD_ARGUMENT(`${what} must be a positive integer`)
  return v
}

function describe (err: unknown): string {
  // fetch rejects with a bare 'fetch failed'; the cause says what happened on the wire.
  const cause = (err as { cause?: { code?: string, message?: string } }).cause
  const message = String(cause?.message ?? (err as Error)?.message ?? err)
  const code = cause?.code
  return (code && !message.includes(code) ? `${code}: ${message}` : message).slice(0, 200)
}

export class Outbox extends EventEmitter<OutboxEvents> {
  readonly store: WebhookStore
  readonly queue: DeliveryQueue
  private readonly clock: FleetClock
  private readonly fetch: typeof fetch
  private readonly baseDelayMs: number
  private readonly maxDelayMs: number
  private readonly maxAttempts: number
  private readonly timeoutMs: number
  private readonly concurrency: number
  private readonly pollMs: number

  private state: 'new' | 'running' | 'closed' = 'new'
  private closing: Promise<void> | undefined
  private timer: NodeJS.Timeout | undefined
  private pumping: Promise<void> | undefined
  private again = false
  private readonly inflight = new Map<string, Promise<void>>()
  private readonly controllers = new Set<AbortController>()
  private readonly onEnqueued = () => this.kick()

  constructor (opts: OutboxOptions) {
    super()
    this.store = opts.store
    this.queue = opts.store.queue
    this.clock = opts.clock ?? opts.store.clock
    this.fetch = opts.fetch ?? globalThis.fetch
    this.baseDelayMs = positiveInt(opts.baseDelayMs, 1000, 'baseDelayMs')
    this.maxDelayMs = positiveInt(opts.maxDelayMs, 3_600_000, 'maxDelayMs')
    this.maxAttempts = positiveInt(opts.maxAttempts, 12, 'maxAttempts')
    this.timeoutMs = positiveInt(opts.timeoutMs, 10_000, 'timeoutMs')
    this.concurrency = positiveInt(opts.concurrency, 4, 'concurrency')
    this.pollMs = positiveInt(opts.pollIntervalMs, 1000, 'pollIntervalMs')
  }

  /** Starts the worker (idempotent). */
  async ready (): Promise<void> {
    if (this.state === 'closed') throw PatchswarmError.CLOSED('the webhook outbox is closed')
    if (this.state === 'running') return
    this.state = 'running'
    this.store.on('enqueued', this.onEnqueued)
    this.kick()
  }

  /** Stops the worker, aborts requests in flight (they stay queued) and waits for them. Idempotent. */
  close (): Promise<void> {
    this.closing ??= (async () => {
      this.state = 'closed'
      clearTimeout(this.timer)
      this.store.off('enqueued', this.onEnqueued)
      for (const ctl of this.controllers) ctl.abort(PatchswarmError.CLOSED('the webhook outbox closed'))
      await this.pumping
      await Promise.allSettled([...this.inflight.values()])
    })()
    return this.closing
  }

  /** Looks for due deliveries now (call after committing WebhookStore.enqueueOps yourself). */
  kick (): void {
    if (this.state !== 'running') return
    if (this.pumping) { this.again = true; return }
    clearTimeout(this.timer)
    this.pumping = this.pump().finally(() => {
      this.pumping = undefined
      if (this.again) { this.again = false; this.kick() }
    })
  }

  /** Queued deliveries (pending, paused and dead), by webhook then delivery id. */
  list (opts: { webhook?: string, state?: DeliveryState, limit?: number } = {}): Promise<QueuedDelivery[]> {
    return this.queue.items(opts)
  }

  deadLetters (opts: { webhook?: string, limit?: number } = {}): Promise<QueuedDelivery[]> {
    return this.queue.items({ ...opts, state: 'dead' })
  }

  delivered (opts: { webhook?: string, limit?: number } = {}): Promise<DeliveredRecord[]> {
    return this.queue.delivered(opts)
  }

  /**
   * Requeues the dead-lettered delivery `delivery` (of one webhook, or of every webhook it went
   * to) with a fresh set of attempts. Returns how many were requeued; NOT_FOUND if none.
   */
  async retry (delivery: string, webhook?: string): Promise<number> {
    const n = await this.store.lock.run(async () => {
      const dead = webhook === undefined
        ? (await this.queue.items({ state: 'dead' })).filter((i) => i.delivery === delivery)
        : [await this.queue.get(webhook, delivery)].filter((i): i is QueuedDelivery => i?.state === 'dead')
      if (dead.length === 0) throw PatchswarmError.NOT_FOUND(`no dead-lettered delivery ${JSON.stringify(delivery).slice(0, 80)}`)
      const now = this.clock().toISOString()
      await commit(this.queue.db, dead.flatMap((i) => this.queue.putOps({ ...i, state: 'pending', attempts: 0, nextAttemptAt: now }, i)))
      return dead.length
    })
    this.kick()
    return n
  }

  /** Forgets delivered records older than `before`; they also stop notify() from queueing a fact again. */
  async pruneDelivered (before: Date): Promise<number> {
    const cutoff = before.getTime()
    const ops: FleetOp[] = []
    for await (const [key, value] of this.queue.sub.iterator(range('d!'))) {
      if (Date.parse((value as DeliveredRecord).deliveredAt) < cutoff) ops.push({ type: 'del', sublevel: this.queue.sub, key })
    }
    await commit(this.queue.db, ops)
    return ops.length
  }

  private async pump (): Promise<void> {
    try {
      const free = this.concurrency - this.inflight.size
      if (free > 0) {
        const skip = new Set(this.inflight.keys())
        for (const entry of await this.queue.due(this.clock().getTime(), free, skip)) {
          if (this.state !== 'running') return
          this.start(entry)
        }
      }
      await this.arm()
    } catch (err) {
      if (this.state !== 'running') return
      this.emit('warning', err as Error)
      clearTimeout(this.timer)
      this.timer = setTimeout(() => this.kick(), this.pollMs)
    }
  }

  /** Sleeps until the next delivery is due, at most one poll interval; a finished request wakes us too. */
  private async arm (): Promise<void> {
    if (this.state !== 'running' || this.inflight.size >= this.concurrency) return
    const next = await this.queue.nextDueAt(new Set(this.inflight.keys()))
    if (this.state !== 'running') return
    const wait = next === undefined ? this.pollMs : Math.min(this.pollMs, Math.max(0, next - this.clock().getTime()))
    clearTimeout(this.timer)
    this.timer = setTimeout(() => this.kick(), wait)
  }

  private start (entry: DueEntry): void {
    const run = this.attempt(entry)
      .catch((err) => { if (this.state === 'running') this.emit('warning', err as Error) })
      .finally(() => { this.inflight.delete(entry.id); this.kick() })
    this.inflight.set(entry.id, run)
  }

  private async attempt (entry: DueEntry): Promise<void> {
    const claim = await this.claim(entry)
    if (!claim) return
    const { item, target } = claim
    const outcome = await this.send(item, target)
    if (!outcome) return
    const event = await this.settle(item, outcome)
    if (event) this.emit(event[0], event[1])
  }

  /** Re-reads the delivery and its webhook under the lock; tidies what no longer needs sending. */
  private claim (entry: DueEntry): Promise<{ item: QueuedDelivery, target: WebhookTarget } | undefined> {
    return this.store.lock.run(async () => {
      if (this.state !== 'running') return undefined
      const item = await this.queue.get(entry.webhook, entry.delivery)
      if (!item || item.state !== 'pending' || this.queue.dueKeyOf(item) !== entry.key) {
        // A leftover index entry: e.g. a caller's batch queued this delivery again with a new due time.
        await commit(this.queue.db, [{ type: 'del', sublevel: this.queue.sub, key: entry.key }])
        return undefined
      }
      const target = await this.store.target(item.webhook)
      if (!target) {
        await commit(this.queue.db, this.queue.removeOps(item))
        return undefined
      }
      if (!target.enabled) {
        // Parked until setEnabled(true) requeues it; a disabled receiver gets nothing.
        await commit(this.queue.db, this.queue.putOps({ ...item, state: 'paused' }, item))
        return undefined
      }
      return { item, target }
    })
  }

  /** One POST; undefined when close() aborted it (the delivery stays queued as it was). */
  private async send (item: QueuedDelivery, target: WebhookTarget): Promise<Outcome | undefined> {
    const timestamp = Math.floor(this.clock().getTime() / 1000)
    const headers = webhookHeaders(target.secret, item.delivery, item.type, item.body, timestamp)
    const ctl = new AbortController()
    let timedOut = false
    const timer = setTimeout(() => { timedOut = true; ctl.abort(PatchswarmError.TIMEOUT('webhook request timed out')) }, this.timeoutMs)
    this.controllers.add(ctl)
    try {
      // Redirects are not followed: a signed body goes to the configured URL and nowhere else.
      const res = await this.fetch(target.url, { method: 'POST', headers, body: item.body, redirect: 'manual', signal: ctl.signal })
      res.body?.cancel().catch(() => {})
      if (res.status >= 200 && res.status < 300) return { ok: true, status: res.status }
      return { ok: false, status: res.status, error: `HTTP ${res.status}` }
    } catch (err) {
      if (timedOut) return { ok: false, error: `timed out after ${this.timeoutMs} ms` }
      if (this.state !== 'running') return undefined
      return { ok: false, error: describe(err) }
    } finally {
      clearTimeout(timer)
      this.controllers.delete(ctl)
    }
  }

  private settle (sent: QueuedDelivery, outcome: Outcome): Promise<['delivered' | 'failed' | 'dead', DeliveryEvent] | undefined> {
    return this.store.lock.run(async () => {
      const item = await this.queue.get(sent.webhook, sent.delivery)
      if (!item) return undefined // its webhook was removed meanwhile
      const now = this.clock()
      const attempts = item.attempts + 1
      const base = { webhook: item.webhook, delivery: item.delivery, type: item.type, tenant: item.tenant, attempts }
      if (outcome.ok) {
        const status = outcome.status!
        await commit(this.queue.db, this.queue.deliveredOps(item, { ...base, at: item.at, status, deliveredAt: now.toISOString() }))
        return ['delivered', { ...base, status }]
      }
      const { lastStatus: _s, lastError: _e, ...rest } = item
      const failed: QueuedDelivery = {
        ...rest,
        attempts,
        lastAttemptAt: now.toISOString(),
        ...(outcome.status !== undefined ? { lastStatus: outcome.status } : {}),
        ...(outcome.error !== undefined ? { lastError: outcome.error } : {})
      }
      const info = { ...base, ...(outcome.status !== undefined ? { status: outcome.status } : {}), ...(outcome.error !== undefined ? { error: outcome.error } : {}) }
      if (attempts >= this.maxAttempts) {
        await commit(this.queue.db, this.queue.putOps({ ...failed, state: 'dead' }, item))
        return ['dead', info]
      }
      const nextAttemptAt = new Date(now.getTime() + backoffDelay(attempts, this.baseDelayMs, this.maxDelayMs)).toISOString()
      await commit(this.queue.db, this.queue.putOps({ ...failed, nextAttemptAt }, item))
      return ['failed', { ...info, nextAttemptAt }]
    })
  }
}
