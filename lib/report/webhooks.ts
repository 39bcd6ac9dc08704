// Webhook subscriptions for ticketing/ITSM: which facts (by type and tenant subtree) go to which
// URL, signed with which secret. A fact is queued for every matching subscription by batch
// operations the caller commits together with the fact itself (enqueueOps), so a fact is never
// stored without its deliveries nor a delivery without its fact; the Outbox (outbox.ts) sends them.
//
// Secrets are shown once, when created or rotated; reads return subscriptions without them.
import { EventEmitter } from 'node:events'
import { randomBytes } from 'node:crypto'
import { PatchswarmError } from '../errors.js'
import { assertSafeName } from '../content/paths.js'
import { isWithinTenant, timestamp } from '../trust/fields.js'
import { sublevel, type Database, type Sublevel } from '../store/db.js'
import { commit, Mutex, systemClock, type FleetClock, type FleetOp, type WriteOptions } from '../fleet/common.js'
import { assertTenantPath } from '../fleet/tenants.js'
import { DeliveryQueue, type QueuedDelivery } from './outbox.js'

/** The fact types patchswarm emits today; subscriptions may name others of the same form. */
export const WEBHOOK_EVENT_TYPES = ['rollout.halted', 'rollout.completed', 'job.failed', 'sla.breached', 'endpoint.quarantined'] as const

export const MIN_SECRET_BYTES = 16
export const MAX_SECRET_BYTES = 512
export const MAX_URL_CHARS = 2048
export const MAX_EVENT_PATTERNS = 64
/** The largest JSON body a fact may produce. */
export const MAX_WEBHOOK_BODY = 64 * 1024

/** A subscription as reads return it: without its secret. */
export interface Webhook {
  id: string
  url: string
  /** Fact types ('rollout.halted'), prefixes ('rollout.*') or '*' for all. */
  events: string[]
  /** Only facts about tenants inside this path ('' for the whole organisation). */
  tenant: string
  enabled: boolean
  createdAt: string
  updatedAt: string
}

interface StoredWebhook extends Webhook {
  secret: string
}

/** What the delivery worker needs to send one request. */
export interface WebhookTarget {
  id: string
  url: string
  secret: string
  enabled: boolean
}

export interface CreateWebhookInput {
  id: string
  url: string
  /** At least 16 bytes; one is generated when absent. */
  secret?: string
  events: string[]
  tenant: string
  enabled?: boolean
}

/** Something worth a ticket. `id` is unique and stable: receivers dedupe deliveries on it. */
export interface WebhookFact {
  type: string
  tenant: string
  /** ISO 8601 UTC. */
  at: string
  id: string
  data: Record<string, unknown>
}

// Dotted lower-case words: 'rollout.halted', 'sla.breached'.
const TYPE = /^[a-z][a-z0-9-]{0,31}(\.[a-z][a-z0-9-]{0,31}){1,3}$/
const PREFIX = /^[a-z][a-z0-9-]{0,31}(\.[a-z][a-z0-9-]{0,31}){0,2}\.\*$/
// Used in keys and headers: no '!' (the queue's key separator), no spaces.
const FACT_ID = /^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,199}$/

const bad = (msg: string) => PatchswarmError.BAD_WEBHOOK(msg)

export function assertWebhookUrl (url: unknown): string {
  if (typeof url !== 'string' || url === '') throw bad('the URL is not a string')
  if (url.length > MAX_URL_CHARS) throw bad(`the URL is longer than ${MAX_URL_CHARS} characters`)
  // The URL parser silently drops tabs and newlines; refuse them instead of guessing.
  // eslint-disable-next-line no-control-regex
  if (/[\s\u0000-\u001f\u007f]/.test(url)) throw bad('the URL contains spaces or control characters')
  let u: URL
  try {
    u = new URL(url)
  } catch (err) {
    throw PatchswarmError.BAD_WEBHOOK(`not a URL: ${JSON.stringify(url).slice(0, 80)}`, err)
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw bad(`the URL must be http: or https:, not ${u.protocol}`)
  // Credentials in a URL end up in logs and listings; the signature authenticates us instead.
  if (u.username !== '' || u.password !== '') throw bad('the URL must not contain a user name or password')
  if (u.hostname === '') throw bad('the URL has no host')
  if (u.hash !== '') throw bad('the URL must not have a #fragment (it is never sent)')
  return u.href
}

export function assertWebhookSecret (secret: unknown): string {
  if (typeof secret !== 'string') throw bad('the secret is not a string')
  const n = Buffer.byteLength(secret)
  if (n < MIN_SECRET_BYTES || n > MAX_SECRET_BYTES) throw bad(`the secret must be ${MIN_SECRET_BYTES}-${MAX_SECRET_BYTES} bytes`)
  return secret
}

export function generateWebhookSecret (): string {
  return randomBytes(32).toString('base64url')
}

/** Event patterns, de-duplicated: exact types, 'prefix.*' or '*'. */
export function assertEventPatterns (events: unknown): string[] {
  if (!Array.isArray(events) || events.length === 0) throw bad('events must be a non-empty list (use ["*"] for all)')
  if (events.length > MAX_EVENT_PATTERNS) throw bad(`at most ${MAX_EVENT_PATTERNS} event patterns`)
  for (const e of events) {
    if (typeof e !== 'string' || !(e === '*' || TYPE.test(e) || PREFIX.test(e))) {
      throw bad(`event pattern ${JSON.stringify(e)?.slice(0, 80)} is not a type like 'rollout.halted', a prefix like 'rollout.*', or '*'`)
    }
  }
  return [...new Set(events as string[])]
}

export function eventMatches (pattern: string, type: string): boolean {
  if (pattern === '*') return true
  if (pattern.endsWith('.*')) return type.startsWith(pattern.slice(0, -1))
  return pattern === type
}

/** True if the subscription is enabled and wants this fact (its type, and a tenant inside its scope). */
export function webhookMatches (hook: Webhook, fact: Pick<WebhookFact, 'type' | 'tenant'>): boolean {
  return hook.enabled && isWithinTenant(fact.tenant, hook.tenant) && hook.events.some((p) => eventMatches(p, fact.type))
}

/** Checks a fact and returns it with the JSON body every delivery of it carries. */
export function checkWebhookFact (fact: WebhookFact): { fact: WebhookFact, body: string } {
  if (fact === null || typeof fact !== 'object') throw bad('a fact is { type, tenant, at, id, data }')
  const { type, tenant, at, id, data } = fact
  if (typeof type !== 'string' || !TYPE.test(type)) throw bad(`fact type ${JSON.stringify(type)?.slice(0, 80)} is not like 'rollout.halted'`)
  assertTenantPath(tenant, 'fact tenant')
  if (!timestamp.safeParse(at).success) throw bad(`fact time ${JSON.stringify(at)?.slice(0, 80)} is not an ISO 8601 UTC time`)
  if (typeof id !== 'string' || !FACT_ID.test(id)) throw bad(`fact id ${JSON.stringify(id)?.slice(0, 80)} must be 1-200 of A-Z a-z 0-9 . _ : @ + -`)
  if (data === null || typeof data !== 'object' || Array.isArray(data)) throw bad('fact data must be an object')
  let body: string
  try {
    body = JSON.stringify({ id, type, tenant, at, data })
  } catch (err) {
    throw PatchswarmError.BAD_WEBHOOK('fact data is not JSON', err)
  }
  if (Buffer.byteLength(body) > MAX_WEBHOOK_BODY) throw bad(`the fact's body is larger than ${MAX_WEBHOOK_BODY} bytes`)
  return { fact: { type, tenant, at, id, data }, body }
}

const view = ({ secret: _secret, ...hook }: StoredWebhook): Webhook => hook

export interface WebhookStoreEvents {
  /** Deliveries were queued or requeued by this store; an Outbox listening wakes up. */
  enqueued: [number]
}

export class WebhookStore extends EventEmitter<WebhookStoreEvents> {
  readonly db: Database
  readonly clock: FleetClock
  /** The delivery queue the Outbox empties. */
  readonly queue: DeliveryQueue
  /** Serialises changes to subscriptions and their queued deliveries; the Outbox takes it too. */
  readonly lock = new Mutex()
  private readonly store: Sublevel

  constructor (db: Database, opts: { clock?: FleetClock, sublevelName?: string, queueSublevelName?: string } = {}) {
    super()
    this.db = db
    this.clock = opts.clock ?? systemClock
    this.store = sublevel(db, opts.sublevelName ?? 'report-webhooks')
    this.queue = new DeliveryQueue(db, opts.queueSublevelName)
  }

  /** Creates a subscription; the secret (given or generated) is returned here and never again. */
  async create (input: CreateWebhookInput, wopts: WriteOptions = {}): Promise<{ webhook: Webhook, secret: string }> {
    if (input === null || typeof input !== 'object') throw bad('create needs { id, url, events, tenant }')
    const id = assertSafeName(input.id, 'webhook id')
    const url = assertWebhookUrl(input.url)
    const secret = input.secret === undefined ? generateWebhookSecret() : assertWebhookSecret(input.secret)
    const events = assertEventPatterns(input.events)
    const tenant = assertTenantPath(input.tenant, 'webhook tenant')
    if (input.enabled !== undefined && typeof input.enabled !== 'boolean') throw bad('enabled must be a boolean')
    return this.lock.run(async () => {
      if (await this.store.get(id) !== undefined) throw PatchswarmError.ALREADY_EXISTS(`webhook ${id} already exists`)
      const at = this.clock().toISOString()
      const stored: StoredWebhook = { id, url, events, tenant, enabled: input.enabled ?? true, createdAt: at, updatedAt: at, secret }
      await commit(this.db, [this.put(stored)], wopts.extra)
      return { webhook: view(stored), secret }
    })
  }

  async find (id: string): Promise<Webhook | undefined> {
    const stored = await this.findStored(id)
    return stored && view(stored)
  }

  async get (id: string): Promise<Webhook> {
    const hook = await this.find(id)
    if (!hook) throw PatchswarmError.NOT_FOUND(`no webhook ${JSON.stringify(id)?.slice(0, 80)}`)
    return hook
  }

  /** All subscriptions, or those scoped inside `under`. */
  async list (opts: { under?: string } = {}): Promise<Webhook[]> {
    const under = opts.under === undefined ? '' : assertTenantPath(opts.under, 'under')
    return (await this.all()).filter((h) => isWithinTenant(h.tenant, under)).map(view)
  }

  /** For the delivery worker: the subscription's URL and secret as they are now. */
  async target (id: string): Promise<WebhookTarget | undefined> {
    const s = await this.findStored(id)
    return s && { id: s.id, url: s.url, secret: s.secret, enabled: s.enabled }
  }

  /** Deletes the subscription with its queued deliveries and delivered records. */
  async remove (id: string, wopts: WriteOptions = {}): Promise<Webhook> {
    return this.lock.run(async () => {
      const stored = await this.getStored(id)
      const ops: FleetOp[] = [{ type: 'del', sublevel: this.store, key: stored.id }, ...await this.queue.purgeOps(stored.id)]
      await commit(this.db, ops, wopts.extra)
      return view(stored)
    })
  }

  /**
   * Disabling stops new deliveries and parks queued ones when they come due; enabling sends the
   * parked ones at once. Facts that happened while disabled are not delivered.
   */
  async setEnabled (id: string, enabled: boolean, wopts: WriteOptions = {}): Promise<Webhook> {
    if (typeof enabled !== 'boolean') throw bad('enabled must be a boolean')
    let resumed = 0
    const hook = await this.lock.run(async () => {
      const stored = await this.getStored(id)
      if (stored.enabled === enabled) {
        await commit(this.db, [], wopts.extra)
        return view(stored)
      }
      const now = this.clock().toISOString()
      const next = { ...stored, enabled, updatedAt: now }
      const ops = [this.put(next)]
      if (enabled) {
        for (const item of await this.queue.items({ webhook: id, state: 'paused' })) {
          ops.push(...this.queue.putOps({ ...item, state: 'pending', nextAttemptAt: now }, item))
          resumed++
        }
      }
      await commit(this.db, ops, wopts.extra)
      return view(next)
    })
    if (resumed > 0) this.emit('enqueued', resumed)
    return hook
  }

  /** Replaces the secret (given or generated) and returns it; queued deliveries are signed with it. */
  async rotateSecret (id: string, secret?: string, wopts: WriteOptions = {}): Promise<{ webhook: Webhook, secret: string }> {
    const next = secret === undefined ? generateWebhookSecret() : assertWebhookSecret(secret)
    return this.lock.run(async () => {
      const stored = await this.getStored(id)
      const changed = { ...stored, secret: next, updatedAt: this.clock().toISOString() }
      await commit(this.db, [this.put(changed)], wopts.extra)
      return { webhook: view(changed), secret: next }
    })
  }

  /**
   * The batch operations that queue `fact` for every matching subscription: commit them in the
   * same batch as the fact (e.g. as WriteOptions.extra). Subscriptions that already queued or
   * delivered this fact id are skipped, so replaying a fact does not send it twice.
   */
  async enqueueOps (fact: WebhookFact): Promise<FleetOp[]> {
    return (await this.plan(fact)).flatMap((item) => this.queue.putOps(item))
  }

  /** Queues `fact` (with `wopts.extra` in the same batch); returns how many deliveries were queued. */
  async notify (fact: WebhookFact, wopts: WriteOptions = {}): Promise<number> {
    const n = await this.lock.run(async () => {
      const items = await this.plan(fact)
      await commit(this.db, items.flatMap((item) => this.queue.putOps(item)), wopts.extra)
      return items.length
    })
    if (n > 0) this.emit('enqueued', n)
    return n
  }

  private async plan (input: WebhookFact): Promise<QueuedDelivery[]> {
    const { fact, body } = checkWebhookFact(input)
    const now = this.clock().toISOString()
    const items: QueuedDelivery[] = []
    for (const hook of await this.all()) {
      if (!webhookMatches(hook, fact)) continue
      if (await this.queue.get(hook.id, fact.id) || await this.queue.deliveredRecord(hook.id, fact.id)) continue
      items.push({
        webhook: hook.id,
        delivery: fact.id,
        type: fact.type,
        tenant: fact.tenant,
        at: fact.at,
        body,
        state: 'pending',
        attempts: 0,
        nextAttemptAt: now,
        enqueuedAt: now
      })
    }
    return items
  }

  /** Whether any subscription is enabled (else no fact needs planning at all). */
  async anyEnabled (): Promise<boolean> {
    return (await this.all()).some((h) => h.enabled)
  }

  private async all (): Promise<StoredWebhook[]> {
    return await this.store.values().all() as StoredWebhook[]
  }

  private async findStored (id: string): Promise<StoredWebhook | undefined> {
    if (typeof id !== 'string' || id === '') return undefined
    return await this.store.get(id) as StoredWebhook | undefined
  }

  private async getStored (id: string): Promise<StoredWebhook> {
    const stored = await this.findStored(id)
    if (!stored) throw PatchswarmError.NOT_FOUND(`no webhook ${JSON.stringify(id)?.slice(0, 80)}`)
    return stored
  }

  private put (hook: StoredWebhook): FleetOp { return { type: 'put', sublevel: this.store, key: hook.id, value: hook } }
}

export { verifyWebhookSignature } from './outbox.js'
