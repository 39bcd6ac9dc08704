// @ts-check
// Ticketing: every halted rollout and every SLA breach the session's admin can see becomes one
// ticket, POSTed as JSON to `ticketing.url` and signed like the console's own webhooks:
//
//   X-Patchswarm-Signature: sha256=<hex HMAC-SHA256(secret, `${X-Patchswarm-Timestamp}.${body}`)>
//
// with X-Patchswarm-Timestamp (Unix seconds), X-Patchswarm-Delivery (the ticket id, stable across
// retries and restarts) and X-Patchswarm-Event (the type). The body is the console's fact shape,
// `{ id, type, tenant, at, data }`, plus a one-line `title`, so a receiver written for the console's
// webhooks (lib's verifyWebhookSignature) takes these too.
//
// Incidents:
//   rollout.halted  a rollout in state 'halted' (ctx.fleet.rollouts$); one per halt, so a rollout
//                   resumed and halted again is a new ticket
//   sla.breached    patches past their SLA deadline and not installed, by the console's clock
//                   (ctx.reports.report's generatedAt): one ticket per tenant, release and deadline,
//                   naming the endpoints (a whole group missing a patch is one ticket, not one each)
//
// Delivery is at-least-once and never repeated once answered 2xx: an incident is written to
// globalState (pending) before its first attempt and marked sent after a 2xx, so a restart resends
// what was pending and never what was sent. A failed POST is retried with exponential back-off
// and full jitter until `ticketing.maxAttempts`; then it waits for `ticketing.retryFailed`.
import { createHash, createHmac } from 'node:crypto'

/** @typedef {import('../../tui/extensions/index.js').ExtensionContext} ExtensionContext */
/** @typedef {import('../../tui/extensions/index.js').Disposable} Disposable */
/** @typedef {Awaited<ReturnType<ExtensionContext['fleet']['rollouts']>>[number]} Rollout */
/** @typedef {Awaited<ReturnType<ExtensionContext['reports']['records']>>[number]} PatchRecord */
/** @typedef {'rollout.halted' | 'sla.breached'} IncidentType */

/**
 * @typedef {object} Incident
 * @property {string} id
 * @property {IncidentType} type
 * @property {string} tenant
 * @property {string} at
 * @property {string} title
 * @property {Record<string, unknown>} data
 */

/**
 * What globalState keeps per incident, under `ticket:<id>`. A sent ticket keeps no body: it is
 * only remembered so it is never sent again.
 *
 * @typedef {object} TicketRecord
 * @property {string} id
 * @property {IncidentType} type
 * @property {'pending' | 'sent' | 'dead'} state
 * @property {number} attempts
 * @property {string} createdAt
 * @property {string} [body]
 * @property {string} [nextAttemptAt]
 * @property {string} [sentAt]
 * @property {number} [status]
 * @property {string} [lastError]
 */

export const SIGNATURE_HEADER = 'X-Patchswarm-Signature'
export const TIMESTAMP_HEADER = 'X-Patchswarm-Timestamp'
export const DELIVERY_HEADER = 'X-Patchswarm-Delivery'
export const EVENT_HEADER = 'X-Patchswarm-Event'

const KEY_PREFIX = 'ticket:'
const REQUEST_TIMEOUT_MS = 10_000
const MAX_RETRY_DELAY_MS = 10 * 60_000
/** Endpoints named in one SLA ticket; `data.endpoints` counts them all. */
const MAX_LISTED_ENDPOINTS = 100

/** @param {ExtensionContext} ctx */
export function activate (ctx) {
  const ticketing = new Ticketing(ctx)
  ctx.subscriptions.push(
    ticketing,
    ctx.commands.registerCommand('ticketing.status', () => ticketing.status()),
    ctx.commands.registerCommand('ticketing.checkNow', () => ticketing.checkNow()),
    ctx.commands.registerCommand('ticketing.retryFailed', () => ticketing.retryFailed())
  )
  ticketing.start()
}

/**
 * `sha256=<hex HMAC-SHA256(secret, timestamp + '.' + body)>`, the console's webhook signature.
 *
 * @param {string} secret
 * @param {number} timestamp Unix seconds
 * @param {string} body
 */
export function signature (secret, timestamp, body) {
  return 'sha256=' + createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest('hex')
}

/** @implements {Disposable} */
class Ticketing {
  /** @type {ExtensionContext} */ #ctx
  /** @type {string | undefined} */ #url
  /** @type {string} */ #secret = ''
  /** @type {Set<string>} */ #events
  /** @type {number} */ #pollMs
  /** @type {number} */ #baseDelayMs
  /** @type {number} */ #maxAttempts
  #disposed = false
  /** Incident ids known in this session (also while their first write is in flight). */
  /** @type {Set<string>} */ #known = new Set()
  /** @type {Set<NodeJS.Timeout>} */ #timers = new Set()
  /** @type {AbortController | undefined} */ #inflight
  /** @type {{ unsubscribe (): void } | undefined} */ #rolloutsSub
  #pumping = false
  #pumpAgain = false
  /** The first round after start sends every pending ticket: the back-off was the last session's. */
  #firstRound = true
  /** @type {NodeJS.Timeout | undefined} */ #pumpTimer
  /** Tenant paths whose report this admin may not read: warned about once. */
  /** @type {Set<string>} */ #refused = new Set()

  /** @param {ExtensionContext} ctx */
  constructor (ctx) {
    this.#ctx = ctx
    const conf = ctx.configuration
    this.#url = conf.get('ticketing.url')
    this.#events = new Set(conf.get('ticketing.events') ?? [])
    this.#pollMs = conf.get('ticketing.pollIntervalMs') ?? 30_000
    this.#baseDelayMs = conf.get('ticketing.retryBaseDelayMs') ?? 2000
    this.#maxAttempts = conf.get('ticketing.maxAttempts') ?? 10
  }

  get #configured () { return this.#url !== undefined && this.#secret !== '' }

  start () {
    const ctx = this.#ctx
    if (this.#url === undefined) {
      ctx.log.info('ticketing.url is not set: no tickets are sent')
      return
    }
    const problem = urlProblem(this.#url)
    const secret = ctx.configuration.get('ticketing.secret')
    if (problem !== undefined || typeof secret !== 'string') {
      const why = problem ?? 'ticketing.secret is not set, and tickets are only sent signed'
      ctx.log.error('not sending tickets: %s', why)
      ctx.window.showErrorMessage(`Ticketing is off: ${why}.`).catch(() => {})
      this.#url = undefined
      return
    }
    this.#secret = secret
    for (const key of ctx.globalState.keys()) if (key.startsWith(KEY_PREFIX)) this.#known.add(key.slice(KEY_PREFIX.length))
    ctx.log.info('sending tickets for %s to %s', [...this.#events].join(', ') || 'nothing', shown(this.#url))
    this.#pump()
    if (this.#events.has('rollout.halted')) this.#watchRollouts()
    if (this.#events.has('sla.breached')) this.#every(this.#pollMs, () => this.#scanSlas())
  }

  dispose () {
    this.#disposed = true
    this.#rolloutsSub?.unsubscribe()
    for (const t of this.#timers) clearTimeout(t)
    this.#timers.clear()
    if (this.#pumpTimer) clearTimeout(this.#pumpTimer)
    this.#inflight?.abort()
  }

  // ---- watching -------------------------------------------------------------------------------

  #watchRollouts () {
    if (this.#disposed) return
    this.#rolloutsSub = this.#ctx.fleet.rollouts$({}, { intervalMs: this.#pollMs }).subscribe({
      next: (rollouts) => { this.#onRollouts(rollouts).catch((err) => this.#ctx.log.error('rollouts: %s', messageOf(err))) },
      error: (err) => {
        // A refused or failed poll ends the stream: watch again after a while.
        this.#ctx.log.warn('watching rollouts failed (%s); trying again in %d ms', messageOf(err), this.#pollMs)
        this.#after(this.#pollMs, () => this.#watchRollouts())
      }
    })
  }

  /** @param {Rollout[]} rollouts */
  async #onRollouts (rollouts) {
    let raised = 0
    for (const r of rollouts) {
      const incident = haltIncident(r)
      if (incident && await this.#raise(incident)) raised++
    }
    return raised
  }

  async #scanSlas () {
    let raised = 0
    for (const root of await this.#roots()) {
      let report
      try {
        report = await this.#ctx.reports.report(root)
      } catch (err) {
        if (!this.#refused.has(root)) this.#ctx.log.warn('cannot read the report of %s: %s', root, messageOf(err))
        this.#refused.add(root)
        continue
      }
      this.#refused.delete(root)
      for (const incident of slaIncidents(report.records, Date.parse(report.generatedAt))) {
        if (await this.#raise(incident)) raised++
      }
    }
    return raised
  }

  /** The tops of the subtrees the admin sees: nodes whose parent it does not see. */
  async #roots () {
    const nodes = (await this.#ctx.fleet.tenants('')).filter((n) => n.kind !== 'endpoint' && !n.removed)
    const seen = new Set(nodes.map((n) => n.uid))
    return nodes.filter((n) => n.parentUid === null || !seen.has(n.parentUid)).map((n) => n.path)
  }

  /**
   * Queues a ticket for an incident not seen before; true if it was new. Written before it is
   * sent: a crash after this sends it at the next start, never loses it.
   *
   * @param {Incident} incident
   */
  async #raise (incident) {
    if (this.#disposed || this.#known.has(incident.id)) return false
    this.#known.add(incident.id)
    const { id, type, tenant, at, title, data } = incident
    const now = new Date().toISOString()
    /** @type {TicketRecord} */
    const record = { id, type, state: 'pending', attempts: 0, createdAt: now, nextAttemptAt: now, body: JSON.stringify({ id, type, tenant, at, title, data }) }
    try {
      await this.#ctx.globalState.update(KEY_PREFIX + id, record)
    } catch (err) {
      this.#known.delete(id)
      if (this.#disposed) return false // stopped meanwhile: it is found again at the next start
      throw err
    }
    this.#ctx.log.info('new incident %s: %s', id, title)
    this.#pump()
    return true
  }

  // ---- delivering -----------------------------------------------------------------------------

  /** @returns {TicketRecord[]} */
  #records () {
    const state = this.#ctx.globalState
    return state.keys().filter((k) => k.startsWith(KEY_PREFIX)).flatMap((k) => {
      const r = /** @type {TicketRecord | undefined} */ (state.get(k))
      return r ? [r] : []
    })
  }

  /** Sends every due ticket, one at a time, then sleeps until the next one is due. */
  #pump () {
    if (this.#disposed || !this.#configured) return
    if (this.#pumping) { this.#pumpAgain = true; return }
    this.#pumping = true
    if (this.#pumpTimer) { clearTimeout(this.#pumpTimer); this.#pumpTimer = undefined }
    ;(async () => {
      do {
        this.#pumpAgain = false
        const now = Date.now()
        const all = this.#firstRound
        this.#firstRound = false
        const due = this.#records()
          .filter((r) => r.state === 'pending' && (all || Date.parse(r.nextAttemptAt ?? '') <= now))
          .sort((a, b) => Date.parse(a.nextAttemptAt ?? '') - Date.parse(b.nextAttemptAt ?? ''))
        for (const r of due) {
          if (this.#disposed) return
          await this.#deliver(r)
        }
      } while (this.#pumpAgain && !this.#disposed)
    })().catch((err) => {
      if (!this.#disposed) this.#ctx.log.error('delivering tickets: %s', messageOf(err))
    }).finally(() => {
      this.#pumping = false
      if (this.#disposed) return
      if (this.#pumpAgain) return this.#pump()
      const next = Math.min(...this.#records().filter((r) => r.state === 'pending').map((r) => Date.parse(r.nextAttemptAt ?? '')))
      if (Number.isFinite(next)) {
        this.#pumpTimer = setTimeout(() => { this.#pumpTimer = undefined; this.#pump() }, Math.max(0, next - Date.now()))
      }
    })
  }

  /** @param {TicketRecord} record */
  async #deliver (record) {
    const body = record.body ?? ''
    const timestamp = Math.floor(Date.now() / 1000)
    const ctl = new AbortController()
    this.#inflight = ctl
    /** @type {{ ok: boolean, status?: number, error?: string }} */
    let outcome
    try {
      const res = await fetch(/** @type {string} */ (this.#url), {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': `patchswarm-ticketing/${this.#ctx.extension.version}`,
          [DELIVERY_HEADER]: record.id,
          [EVENT_HEADER]: record.type,
          [TIMESTAMP_HEADER]: String(timestamp),
          [SIGNATURE_HEADER]: signature(this.#secret, timestamp, body)
        },
        body,
        // A signed ticket goes to the configured URL and nowhere else.
        redirect: 'manual',
        signal: AbortSignal.any([ctl.signal, AbortSignal.timeout(REQUEST_TIMEOUT_MS)])
      })
      await res.body?.cancel().catch(() => {})
      outcome = res.status >= 200 && res.status < 300 ? { ok: true, status: res.status } : { ok: false, status: res.status, error: `HTTP ${res.status}` }
    } catch (err) {
      // Stopped mid-request: the ticket stays pending and goes out at the next start.
      if (this.#disposed) return
      outcome = { ok: false, error: messageOf(err) }
    } finally {
      if (this.#inflight === ctl) this.#inflight = undefined
    }
    if (this.#disposed) return
    const attempts = record.attempts + 1
    const now = new Date()
    /** @type {TicketRecord} */
    let next
    if (outcome.ok) {
      next = { id: record.id, type: record.type, state: 'sent', attempts, createdAt: record.createdAt, sentAt: now.toISOString(), ...(outcome.status !== undefined ? { status: outcome.status } : {}) }
      this.#ctx.log.info('ticket %s delivered (HTTP %d, attempt %d)', record.id, outcome.status, attempts)
    } else if (attempts >= this.#maxAttempts) {
      next = { ...record, state: 'dead', attempts, lastError: outcome.error ?? 'failed' }
      delete next.nextAttemptAt
      this.#ctx.log.error('ticket %s not delivered after %d attempts: %s', record.id, attempts, outcome.error)
      this.#ctx.window.showErrorMessage(`Ticket ${record.id} could not be delivered after ${attempts} attempts (${outcome.error}). Run "Ticketing: Retry tickets that could not be delivered" to try again.`).catch(() => {})
    } else {
      const delay = backoffDelay(attempts, this.#baseDelayMs, MAX_RETRY_DELAY_MS)
      next = { ...record, attempts, lastError: outcome.error ?? 'failed', nextAttemptAt: new Date(now.getTime() + delay).toISOString() }
      this.#ctx.log.warn('ticket %s: attempt %d failed (%s); next in %d ms', record.id, attempts, outcome.error, delay)
    }
    try {
      await this.#ctx.globalState.update(KEY_PREFIX + record.id, next)
    } catch (err) {
      // Deactivated meanwhile: the state is read-only now, and the ticket stays as it was stored.
      if (!this.#disposed) throw err
    }
  }

  // ---- commands -------------------------------------------------------------------------------

  status () {
    const records = this.#records()
    const count = (/** @type {TicketRecord['state']} */ s) => records.filter((r) => r.state === s).length
    const summary = { url: this.#url === undefined ? null : shown(this.#url), pending: count('pending'), sent: count('sent'), dead: count('dead') }
    const text = summary.url === null
      ? 'Ticketing is off (set ticketing.url and ticketing.secret).'
      : `Tickets to ${summary.url}: ${summary.sent} delivered, ${summary.pending} waiting, ${summary.dead} given up.`
    this.#ctx.window.showInformationMessage(text).catch(() => {})
    return summary
  }

  /** Looks for incidents at once (besides the polls); resolves with how many new tickets were queued. */
  async checkNow () {
    if (!this.#configured) return 0
    let raised = 0
    if (this.#events.has('rollout.halted')) raised += await this.#onRollouts(await this.#ctx.fleet.rollouts({}))
    if (this.#events.has('sla.breached')) raised += await this.#scanSlas()
    return raised
  }

  async retryFailed () {
    const dead = this.#records().filter((r) => r.state === 'dead')
    const now = new Date().toISOString()
    for (const r of dead) {
      const { lastError: _e, ...rest } = r
      await this.#ctx.globalState.update(KEY_PREFIX + r.id, { ...rest, state: 'pending', attempts: 0, nextAttemptAt: now })
    }
    this.#pump()
    return dead.length
  }

  // ---- timers ---------------------------------------------------------------------------------

  /**
   * @param {number} ms
   * @param {() => void} fn
   */
  #after (ms, fn) {
    if (this.#disposed) return
    const t = setTimeout(() => { this.#timers.delete(t); if (!this.#disposed) fn() }, ms)
    this.#timers.add(t)
  }

  /**
   * Runs `fn` now and `ms` after each run ends (runs never overlap).
   *
   * @param {number} ms
   * @param {() => Promise<unknown>} fn
   */
  #every (ms, fn) {
    const run = () => {
      fn().catch((err) => { if (!this.#disposed) this.#ctx.log.warn('%s', messageOf(err)) })
        .finally(() => this.#after(ms, run))
    }
    this.#after(0, run)
  }
}

// ---- incidents ----------------------------------------------------------------------------------

/**
 * @param {Rollout} r
 * @returns {Incident | undefined}
 */
function haltIncident (r) {
  if (r.state !== 'halted' || !r.halted) return undefined
  const h = r.halted
  const rel = r.spec.release
  const pct = (/** @type {number} */ x) => `${(x * 100).toFixed(1)} %`
  return {
    id: `rollout.halted:${r.id}:${Date.parse(h.at)}`,
    type: 'rollout.halted',
    tenant: r.spec.target.tenant,
    at: h.at,
    title: `Rollout ${r.id} of ${rel.name} ${rel.packageVersion} halted in phase ${h.name}: ${h.errors} of ${h.size} endpoints failed (${pct(h.errorRate)} ≥ ${pct(h.threshold)})`,
    data: {
      rollout: r.id,
      state: r.state,
      phase: h.name,
      errors: h.errors,
      size: h.size,
      errorRate: h.errorRate,
      threshold: h.threshold,
      release: { hash: rel.envelopeHash, name: rel.name, version: rel.packageVersion, platform: rel.platform, risk: rel.risk }
    }
  }
}

/**
 * Patches past their deadline and not installed as of `now`, one incident per tenant, release and
 * deadline (the endpoints of one rollout phase in one group share it).
 *
 * @param {PatchRecord[]} records
 * @param {number} now
 * @returns {Incident[]}
 */
function slaIncidents (records, now) {
  /** @type {Map<string, PatchRecord[]>} */
  const groups = new Map()
  for (const r of records) {
    if (r.state === 'installed' || r.slaDeadline === undefined || !(Date.parse(r.slaDeadline) <= now)) continue
    const key = `${r.tenant}\n${r.release}\n${r.slaDeadline}`
    groups.set(key, [...(groups.get(key) ?? []), r])
  }
  return [...groups.entries()].map(([key, list]) => {
    const first = /** @type {PatchRecord} */ (list[0])
    /** @type {Record<string, number>} */
    const states = {}
    for (const r of list) states[r.state] = (states[r.state] ?? 0) + 1
    const endpoints = list.map((r) => r.endpoint).sort()
    const rollouts = [...new Set(list.flatMap((r) => r.rollout === undefined ? [] : [r.rollout]))].sort()
    return {
      id: `sla.breached:${createHash('sha256').update(key).digest('hex').slice(0, 32)}`,
      type: /** @type {const} */ ('sla.breached'),
      tenant: first.tenant,
      at: /** @type {string} */ (first.slaDeadline),
      title: `SLA breached: ${first.name} ${first.version} (${first.risk}) is not installed on ${list.length} endpoint${list.length === 1 ? '' : 's'} in ${first.tenant} (deadline ${first.slaDeadline})`,
      data: {
        release: { hash: first.release, name: first.name, version: first.version, risk: first.risk },
        slaDeadline: first.slaDeadline,
        availableAt: first.availableAt,
        endpoints: list.length,
        keyids: endpoints.slice(0, MAX_LISTED_ENDPOINTS),
        states,
        rollouts
      }
    }
  })
}

// ---- helpers ------------------------------------------------------------------------------------

/** @param {string} url */
function urlProblem (url) {
  let u
  try { u = new URL(url) } catch { return `ticketing.url ${JSON.stringify(url)} is not a URL` }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return 'ticketing.url must be http: or https:'
  if (u.username !== '' || u.password !== '') return 'ticketing.url must not contain a user name or password (the signature authenticates the console)'
  return undefined
}

/**
 * The URL as it may be shown and logged: a query string may carry the receiver's token.
 *
 * @param {string} url
 */
function shown (url) {
  const u = new URL(url)
  return `${u.origin}${u.pathname}${u.search === '' ? '' : '?…'}`
}

/**
 * Exponential back-off with full jitter: uniform in [0, min(max, base · 2^(attempt−1))).
 *
 * @param {number} attempt
 * @param {number} baseMs
 * @param {number} maxMs
 */
function backoffDelay (attempt, baseMs, maxMs) {
  return Math.floor(Math.random() * Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1)))
}

/** @param {unknown} err */
function messageOf (err) {
  return err instanceof Error ? err.message : String(err)
}
