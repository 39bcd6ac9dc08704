// The admin API: one typed interface, in namespaces like VS Code's (`api.rollouts.pause(actor, id)`).
// Every method takes the acting admin's id first and passes through the fleet's AdminGate:
// permission on the tenant paths the call concerns, then exactly one audit entry. Lists keep only
// what the actor may read. A method whose name ends in `$` is a live subscription (an Observable):
// the gate runs once when it is subscribed (one audit entry per subscription), its values are
// filtered by scope exactly like its non-live sibling's, and the actor's permission is checked again
// as it refreshes, at most once a second (a revoked role ends it with FORBIDDEN). Refreshes are throttled
// here, at the source, so a console under 200 events a second sends each subscriber a few updates a
// second, not 200. The same object serves in-process callers and, through dispatch(), the socket.
//
// Longer than most files: the namespaces are the API's one table of methods, and splitting them
// would scatter the gate rules that must read alike.
import { Observable, defer, from, switchMap, map, distinctUntilChanged, throttleTime, startWith, asyncScheduler, merge, timer, concatMap, bufferTime, filter, EMPTY } from 'rxjs'
import { PatchswarmError } from '../errors.js'
import { can, filterByScope, reachesBelow, scopesFor, type Action } from '../fleet/rbac.js'
import type { Admin } from '../fleet/admins.js'
import { auditVisibleTo, type AuditEntry } from '../fleet/audit.js'
import type { WriteOptions } from '../fleet/common.js'
import { assertTenantPath, type CustomerStatus, type TenantNode } from '../fleet/tenants.js'
import type { Fleet } from '../fleet/fleet.js'
import type { EndpointRecord, EndpointStatus } from '../fleet/endpoints.js'
import type { CreateTokenInput, TokenRecord } from '../fleet/enrollment.js'
import { isWithinTenant } from '../trust/fields.js'
import type { Envelope } from '../trust/envelope.js'
import type { VerifiedRelease } from '../trust/trusted-state.js'
import { requiresApproval, publisherOf } from '../policy/policy.js'
import type { StoredPolicy, EffectivePolicyAt } from '../policy/store.js'
import type { HaltInfo, PhaseState, Rollout, RolloutState } from '../rollout/rollout.js'
import type { RolloutHistoryEntry } from '../rollout/store.js'
import { computeKpis, rollup, type KpiInput, type NodeKpis } from '../report/kpis.js'
import { buildReport, reportToCsv, reportToJson, renderHtmlReport, type Report } from '../report/export.js'
import { buildEvidence } from '../report/evidence.js'
import type { IngestCounters, IngestResult } from '../report/ingest.js'
import type { ByteCounts, Kpis, PatchRecord } from '../report/records.js'
import type { EndpointView, StateCounts, ViewState } from '../report/reducers.js'
import type { ReportEntry } from '../report/facts.js'
import type { Risk } from '../trust/release.js'
import type { Webhook } from '../report/webhooks.js'
import type { Console } from './console.js'

type Gate = Fleet['gate']

/** The parts of a call every namespace states; see AdminGate.call. */
function call<T> (gate: Gate, actor: string, action: string, target: unknown, write: boolean, tenants: (a: Admin) => string[] | Promise<string[]>, allowed: (a: Admin, t: string[]) => boolean | Promise<boolean>, perform: (a: Admin, w: WriteOptions) => Promise<T>): Promise<T> {
  return gate.call({ actor, action, target, write, tenants, allowed, perform })
}

/** `action` on every path (an empty list: the whole organisation). */
const onAll = (action: Action) => (a: Admin, paths: string[]) => paths.length === 0 ? can(a, action, '') : paths.every((p) => can(a, action, p))

/** A read that may start above the actor's scopes: allowed if the actor sees the path or part of it. */
const seesPart = (action: Action) => (a: Admin, [path]: string[]) => can(a, action, path!) || reachesBelow(a, action, path!)

/** True if `path` overlaps a scope where the actor has `action`: lies inside it, or above it. */
const overlaps = (a: Admin, action: Action, path: string) => scopesFor(a, action).some((s) => isWithinTenant(s, path) || isWithinTenant(path, s))

// ---- live subscriptions ---------------------------------------------------------------------

/** Refresh intervals of live methods are at least this (ms): a subscriber cannot make the console spin. */
export const MIN_LIVE_MS = 50
const liveMs = (ms: unknown, fallback: number) => Math.max(MIN_LIVE_MS, Number.isFinite(Number(ms)) && ms !== undefined && ms !== null ? Number(ms) : fallback)

/** What a live method's refresh reads: the actor's admin record now (FORBIDDEN once its rights are gone). */
type Current = () => Promise<Admin>

/** How long a live method trusts its last permission check (ms). */
const RECHECK_MS = 1000

/**
 * A live read: the gate once on subscription (permission, one audit entry), then `build` with a
 * function that re-reads the actor and checks `allowed` again; losing the right ends the stream
 * with FORBIDDEN (and an audit entry saying so).
 */
function live<T> (gate: Gate, actor: string, action: string, target: unknown, tenants: (a: Admin) => string[] | Promise<string[]>, allowed: (a: Admin, t: string[]) => boolean | Promise<boolean>, build: (current: Current, first: Admin) => Observable<T>): Observable<T> {
  return defer(() => from(call(gate, actor, action, target, false, tenants, allowed, async (a) => a))).pipe(
    switchMap((first) => {
      // Checked again at most once a second: 200 events a second do not mean 200 admin lookups.
      let checked = { at: performance.now(), admin: first }
      const current: Current = async () => {
        if (performance.now() - checked.at < RECHECK_MS) return checked.admin
        const a = await gate.actor(actor)
        const paths = a ? await Promise.resolve(tenants(a)).catch(() => null) : null
        if (!a || paths === null || !await allowed(a, paths)) {
          await gate.record({ admin: String(actor), action, target: String(target), tenants: paths ?? [], result: 'FORBIDDEN' })
          throw PatchswarmError.FORBIDDEN(`${action}: admin ${String(actor).slice(0, 80)} may no longer read this`)
        }
        checked = { at: performance.now(), admin: a }
        return a
      }
      return build(current, first)
    }))
}

/**
 * Runs `compute` on each tick, one run at a time: ticks during a run are folded into one more run
 * after it (the latest state is never skipped, and a slow read is never run twice at once).
 */
function refreshOn<T> (ticks: Observable<unknown>, compute: () => Promise<T>): Observable<T> {
  return new Observable<T>((subscriber) => {
    let running = false
    let again = false
    let ended = false
    const run = () => {
      running = true
      compute().then((v) => { if (!subscriber.closed) subscriber.next(v) }, (err) => subscriber.error(err)).finally(() => {
        running = false
        if (subscriber.closed) return
        if (again) { again = false; run() } else if (ended) subscriber.complete()
      })
    }
    const s = ticks.subscribe({
      next: () => { if (running) again = true; else run() },
      error: (err) => subscriber.error(err),
      complete: () => { ended = true; if (!running) subscriber.complete() }
    })
    return () => s.unsubscribe()
  })
}

/** Ticks when the report views change (throttled to one per `ms`, the first at once), and every `every` ms. */
function viewTicks (c: Console, ms: number, every?: number): Observable<unknown> {
  return merge(c.views.state$, every ? timer(every, every) : EMPTY).pipe(throttleTime(ms, asyncScheduler, { leading: true, trailing: true }))
}

const sameJson = <T>(a: T, b: T) => JSON.stringify(a) === JSON.stringify(b)

// ---- enrollment tokens and endpoints --------------------------------------------------------

/** An endpoint as the live list shows it: its registry record (without certificate and history) and what it last reported. */
export interface EndpointRow {
  keyid: string
  hostname: string
  /** Its customer or group. */
  tenant: string
  site: string | null
  status: EndpointStatus
  platform: string
  enrolledAt: string
  /** Console time of its latest event. */
  lastSeenAt?: string
  /** The agent's latest state (`started`, `stopped`, `breaker-open` …) and version. */
  agent?: { state: string, version?: string }
  /** Its latest job: the release by name and version, the state reached, the rollout that asked for it. */
  job?: { release: string, state: string, action: string, at: string, rollout?: string }
  /** Bytes it received, by source. */
  bytes: ByteCounts
}

/**
 * One message of `endpoints.list$`. The first message has `reset` (start from an empty list); rows
 * replace the rows of the same keyid (or are added), `removed` keyids leave. The initial list comes
 * in chunks of at most ENDPOINT_CHUNK rows, `loaded` false until its last one: a list of 100 000
 * endpoints never makes one huge frame on the socket, and later messages carry only what changed.
 */
export interface EndpointsUpdate {
  reset: boolean
  loaded: boolean
  rows: EndpointRow[]
  removed: string[]
}

export const ENDPOINT_CHUNK = 2000
/** The largest page `endpoints.list` answers: 1000 full records (certificate, history) stay far below the socket's 8 MiB frame. */
export const MAX_LIST_PAGE = 1000

function pageOf (query: { after?: unknown, limit?: unknown } | undefined): { after: string, limit: number } | null {
  if (query?.after === undefined && query?.limit === undefined) return null
  const limit = query.limit ?? MAX_LIST_PAGE
  if (!Number.isInteger(limit) || (limit as number) < 1 || (limit as number) > MAX_LIST_PAGE) throw PatchswarmError.BAD_ARGUMENT(`limit must be a whole number from 1 to ${MAX_LIST_PAGE}`)
  if (query.after !== undefined && (typeof query.after !== 'string' || query.after.length > 4096)) throw PatchswarmError.BAD_ARGUMENT('after must be the path of the last endpoint of the previous page')
  return { after: (query.after as string | undefined) ?? '', limit: limit as number }
}
/** How often endpoints.list$ reads the registry again (enrollments, moves: changes the report log does not carry). */
const REGISTRY_REFRESH_MS = 2000

export class EndpointsApi {
  readonly #c: Console
  constructor (c: Console) { this.#c = c }

  createToken (actor: string, input: CreateTokenInput): Promise<{ token: string, record: TokenRecord }> {
    return call(this.#c.fleet.gate, actor, 'token.create', input?.scope, true,
      () => [assertTenantPath(input?.scope, 'scope')], onAll('endpoint.approve'),
      (_, w) => this.#c.enrollment.createToken(input, w))
  }

  listTokens (actor: string, query: { under?: string } = {}): Promise<TokenRecord[]> {
    const under = query?.under ?? ''
    return call(this.#c.fleet.gate, actor, 'token.list', under, false, () => [assertTenantPath(under)], seesPart('endpoint.read'),
      async (a) => filterByScope(a, 'endpoint.read', await this.#c.enrollment.listTokens({ under }), (t) => t.scope))
  }

  revokeToken (actor: string, id: string): Promise<TokenRecord> {
    let token: TokenRecord | undefined
    return call(this.#c.fleet.gate, actor, 'token.revoke', `token:${String(id)}`, true,
      async () => { token = await this.#c.enrollment.getToken(id).catch(() => undefined); return token ? [token.scope] : [] },
      (a, t) => t.length > 0 && onAll('endpoint.approve')(a, t),
      (_, w) => this.#c.enrollment.revokeToken(id, w))
  }

  /**
   * The endpoints under `query.under` the actor may read. With `limit` (at most MAX_LIST_PAGE) it
   * answers one page in path order, starting after the path `after`: a caller over the socket
   * pages through a large fleet, whose full records would not fit one frame.
   */
  list (actor: string, query: { under?: string, status?: EndpointStatus | EndpointStatus[], after?: string, limit?: number } = {}): Promise<EndpointRecord[]> {
    const under = query?.under ?? ''
    return call(this.#c.fleet.gate, actor, 'endpoint.list', under, false, () => [assertTenantPath(under)], seesPart('endpoint.read'),
      async (a) => {
        const page = pageOf(query)
        return await this.#c.endpoints.list({
          under,
          ...(query?.status ? { status: query.status } : {}),
          tenant: (tenant) => can(a, 'endpoint.read', tenant),
          ...(page ? { after: page.after, limit: page.limit } : {})
        })
      })
  }

  /**
   * `list`, live: the endpoints the actor may read under `query.under`, with what each last reported,
   * as an initial list and then changes only (see EndpointsUpdate), at most one message per `ms`
   * (default 1000) however fast events come in.
   */
  list$ (actor: string, query: { under?: string, status?: EndpointStatus | EndpointStatus[] } = {}, ms?: number): Observable<EndpointsUpdate> {
    const under = query?.under ?? ''
    const status = query?.status
    const every = liveMs(ms, 1000)
    const c = this.#c
    return live(c.fleet.gate, actor, 'endpoint.list-watch', under, () => [assertTenantPath(under)], seesPart('endpoint.read'), (current) => defer(() => {
      let state: ViewState | undefined
      let registry: EndpointRecord[] = []
      let readAt = -Infinity
      let first = true
      const shown = new Map<string, { sig: string, row: EndpointRow }>()
      const compute = async (): Promise<EndpointsUpdate[]> => {
        const a = await current()
        if (performance.now() - readAt >= Math.max(every, REGISTRY_REFRESH_MS)) {
          registry = filterByScope(a, 'endpoint.read', await c.endpoints.list({ under, ...(status ? { status } : {}) }), (e) => e.tenant)
          readAt = performance.now()
        }
        // The views' state is read synchronously here, right after the last await: never kept.
        const views = state
        const changed: EndpointRow[] = []
        const seen = new Set<string>()
        for (const e of registry) {
          seen.add(e.keyid)
          const ev = views?.endpoints.get(e.keyid)
          const sig = `${e.updatedAt}|${e.path}|${e.status}|${ev?.position ?? 0}`
          if (shown.get(e.keyid)?.sig === sig) continue
          const row = endpointRow(c, e, ev)
          shown.set(e.keyid, { sig, row })
          changed.push(row)
        }
        const removed = [...shown.keys()].filter((k) => !seen.has(k))
        for (const k of removed) shown.delete(k)
        const out: EndpointsUpdate[] = []
        for (let i = 0; i < changed.length || (first && i === 0); i += ENDPOINT_CHUNK) {
          const rows = changed.slice(i, i + ENDPOINT_CHUNK)
          out.push({ reset: first && i === 0, loaded: i + ENDPOINT_CHUNK >= changed.length, rows, removed: i === 0 ? removed : [] })
        }
        if (out.length === 0 && removed.length > 0) out.push({ reset: false, loaded: true, rows: [], removed })
        first = false
        return out
      }
      const ticks = viewTicks(c, every, REGISTRY_REFRESH_MS).pipe(map((s) => { if (s && typeof s === 'object') state = s as ViewState; return s }))
      return refreshOn(ticks, compute).pipe(concatMap((updates) => from(updates)))
    }))
  }

  get (actor: string, keyid: string): Promise<EndpointRecord> {
    return this.#onEndpoint(actor, 'endpoint.get', keyid, false, 'endpoint.read', async (e) => e)
  }

  approve (actor: string, keyid: string): Promise<EndpointRecord> {
    return this.#onEndpoint(actor, 'endpoint.approve', keyid, true, 'endpoint.approve', (e, w) => this.#c.enrollment.approve(e.keyid, w))
  }

  reject (actor: string, keyid: string): Promise<EndpointRecord> {
    return this.#onEndpoint(actor, 'endpoint.reject', keyid, true, 'endpoint.approve', (e, w) => this.#c.enrollment.reject(e.keyid, w))
  }

  remove (actor: string, keyid: string): Promise<EndpointRecord> {
    return this.#onEndpoint(actor, 'endpoint.remove', keyid, true, 'endpoint.approve', (e, w) => this.#c.endpoints.remove(e.keyid, w))
  }

  /** An endpoint the actor cannot see is FORBIDDEN, exactly like one that does not exist. */
  #onEndpoint<T> (actor: string, action: string, keyid: string, write: boolean, needs: Action, perform: (e: EndpointRecord, w: WriteOptions) => Promise<T>): Promise<T> {
    let record: EndpointRecord | undefined
    return call(this.#c.fleet.gate, actor, action, `endpoint:${String(keyid).slice(0, 64)}`, write,
      async () => { record = typeof keyid === 'string' ? await this.#c.endpoints.byKeyid(keyid) : undefined; return record ? [record.tenant] : [] },
      (a, t) => t.length > 0 ? onAll(needs)(a, t) : false,
      (_, w) => perform(record!, w))
  }
}

function endpointRow (c: Console, e: EndpointRecord, ev: EndpointView | undefined): EndpointRow {
  const row: EndpointRow = {
    keyid: e.keyid, hostname: e.hostname, tenant: e.tenant, site: e.site, status: e.status, platform: e.platform, enrolledAt: e.enrolledAt,
    bytes: ev ? { ...ev.bytes } : { origin: 0, site: 0, peer: 0, local: 0 }
  }
  if (ev?.lastSeenAt) row.lastSeenAt = ev.lastSeenAt
  if (ev?.agent) row.agent = { state: ev.agent.state, ...(ev.agent.version ? { version: ev.agent.version } : {}) }
  let latest: [string, EndpointJob] | undefined
  for (const entry of Object.entries(ev?.jobs ?? {})) if (!latest || entry[1].at > latest[1].at) latest = entry
  if (latest) {
    const [hash, j] = latest
    const r = c.trust.releaseByHash(hash)?.release
    row.job = { release: r ? `${r.name} ${r.packageVersion}` : hash.slice(0, 12), state: j.state, action: j.action, at: j.at, ...(j.rollout ? { rollout: j.rollout } : {}) }
  }
  return row
}

type EndpointJob = { state: string, action: string, at: string, rollout?: string }

// ---- policies -------------------------------------------------------------------------------

export class PoliciesApi {
  readonly #c: Console
  constructor (c: Console) { this.#c = c }

  set (actor: string, path: string, policy: unknown): Promise<StoredPolicy> {
    return call(this.#c.fleet.gate, actor, 'policy.set', path, true, () => [assertTenantPath(path)], onAll('tenant.write'), (_, w) => this.#c.policies.set(path, policy, w))
  }

  get (actor: string, path: string): Promise<StoredPolicy | null> {
    return call(this.#c.fleet.gate, actor, 'policy.get', path, false, () => [assertTenantPath(path)], onAll('tenant.read'), async () => (await this.#c.policies.get(path)) ?? null)
  }

  clear (actor: string, path: string): Promise<boolean> {
    return call(this.#c.fleet.gate, actor, 'policy.clear', path, true, () => [assertTenantPath(path)], onAll('tenant.write'), (_, w) => this.#c.policies.clear(path, w))
  }

  effective (actor: string, path: string, opts: { site?: string } = {}): Promise<EffectivePolicyAt> {
    return call(this.#c.fleet.gate, actor, 'policy.effective', path, false, () => [assertTenantPath(path)], onAll('tenant.read'), () => this.#c.policies.effective(path, opts?.site ? { site: opts.site } : {}))
  }
}

// ---- releases -------------------------------------------------------------------------------

export interface ReleaseView {
  hash: string
  name: string
  version: string
  platform: string
  risk: string
  scope: string
  manifest: string
  publisher: string
  /** Tenant paths where an admin approved it by hand. */
  approvedFor: string[]
}

export class ReleasesApi {
  readonly #c: Console
  constructor (c: Console) { this.#c = c }

  /** Verifies a release against the root and keeps it; needs release.approve on its scope. */
  add (actor: string, envelope: Envelope | string, opts: { content?: string } = {}): Promise<ReleaseView> {
    const scope = (typeof envelope === 'string' ? safeParse(envelope) : envelope as { signed?: { scope?: unknown } })?.signed?.scope
    return call(this.#c.fleet.gate, actor, 'release.add', typeof scope === 'string' ? scope : '?', true,
      () => [assertTenantPath(scope, 'release scope')], onAll('release.approve'),
      async (a) => {
        const hash = (await this.#c.addRelease(envelope)).envelopeHash
        // The package itself, from a folder on the console's machine, when the console seeds it.
        if (opts?.content !== undefined) await this.#c.publishContent(hash, String(opts.content))
        return this.#view(hash, a)
      })
  }

  /** Releases whose scope overlaps a subtree the actor may read rollouts in. */
  list (actor: string): Promise<ReleaseView[]> {
    return call(this.#c.fleet.gate, actor, 'release.list', 'releases', false, (a) => scopesFor(a, 'rollout.read'), (_, s) => s.length > 0, async (a) => {
      const visible = this.#c.trust.releases().filter((r) => overlaps(a, 'rollout.read', r.release.scope))
      return Promise.all(visible.map((r) => this.#view(r.envelopeHash, a)))
    })
  }

  /** `list`, live: again whenever a release or an approval changes (checked every `ms`, default 5000). */
  list$ (actor: string, ms?: number): Observable<ReleaseView[]> {
    const every = liveMs(ms, 5000)
    return live(this.#c.fleet.gate, actor, 'release.list-watch', 'releases', (a) => scopesFor(a, 'rollout.read'), (_, s) => s.length > 0, (current) =>
      refreshOn(timer(0, every), async () => {
        const a = await current()
        const visible = this.#c.trust.releases().filter((r) => overlaps(a, 'rollout.read', r.release.scope))
        return Promise.all(visible.map((r) => this.#view(r.envelopeHash, a)))
      }).pipe(distinctUntilChanged(sameJson)))
  }

  /** Approves a release for a tenant subtree (inside the release's scope). */
  approve (actor: string, hash: string, tenant: string): Promise<ReleaseView> {
    let release: VerifiedRelease | null = null
    return call(this.#c.fleet.gate, actor, 'release.approve', `${String(hash).slice(0, 16)} for ${String(tenant)}`, true,
      (a) => { const path = assertTenantPath(tenant); release = releaseOf(this.#c, hash, a); return [path] },
      (a, t) => onAll('release.approve')(a, t) && knowsRelease(a, 'release.approve', release),
      async (a, w) => {
        const r = release ?? this.#c.release(hash)
        if (!isWithinTenant(tenant, r.release.scope)) throw PatchswarmError.OUTSIDE_DELEGATION(`${tenant} is outside the release's scope ${JSON.stringify(r.release.scope)}`)
        await this.#c.db.batch([...this.#c.approvalOps(r.envelopeHash, [...await this.#c.approvals(r.envelopeHash), tenant]), ...(w.extra?.() ?? [])] as never)
        return this.#view(r.envelopeHash, a)
      })
  }

  /** The release as `a` may see it: approvals only where they overlap the actor's scopes. */
  async #view (hash: string, a: Admin): Promise<ReleaseView> {
    const r = this.#c.release(hash)
    return {
      hash,
      name: r.release.name,
      version: r.release.packageVersion,
      platform: r.release.platform,
      risk: r.release.risk,
      scope: r.release.scope,
      manifest: r.release.manifest.digest,
      publisher: publisherOf(r.signer),
      approvedFor: (await this.#c.approvals(hash)).filter((p) => overlaps(a, 'rollout.read', p))
    }
  }
}

/**
 * The release a call names: by envelope hash, or as `name@version` (`name@version@platform` when
 * several platforms share a version) among the releases `a` may see.
 */
function releaseOf (c: Console, ref: unknown, a: Admin): VerifiedRelease | null {
  if (typeof ref !== 'string') return null
  if (/^[0-9a-f]{64}$/.test(ref)) return c.trust.releaseByHash(ref)
  const [name, version, platform] = ref.split('@')
  const found = c.trust.releases().filter((r) => r.release.name === name && r.release.packageVersion === version &&
    (platform === undefined || r.release.platform === platform) && overlaps(a, 'rollout.read', r.release.scope))
  if (found.length > 1) throw PatchswarmError.BAD_ARGUMENT(`${ref} names ${found.length} releases (platforms ${found.map((r) => r.release.platform).join(', ')}): add @platform or give the hash`)
  return found[0] ?? null
}

/**
 * A release named by a call is part of its target: one whose scope overlaps none of the actor's
 * scopes is FORBIDDEN exactly like one that does not exist (neither its existence nor its scope
 * shows), and an unknown one is NOT_FOUND only for an actor with `action` on the whole organisation.
 */
function knowsRelease (a: Admin, action: Action, r: VerifiedRelease | null): boolean {
  return r !== null ? overlaps(a, 'rollout.read', r.release.scope) : can(a, action, '')
}

function safeParse (s: string): { signed?: { scope?: unknown } } | undefined {
  try { return JSON.parse(s) } catch { return undefined }
}

// ---- rollouts -------------------------------------------------------------------------------

export interface CreateRolloutRequest {
  id: string
  /** The release: its envelope hash (see releases.list), or name@version. */
  release: string
  target: { tenant: string, endpoints?: string[] }
  phases: Array<{ name: string, select?: { tenants?: string[], endpoints?: string[], percent?: number }, successThreshold: number, errorThreshold: number, minSoakMinutes: number }>
  deadline?: string
}

/** A rollout as live lists show it: its phases with their size and progress instead of their endpoint lists. */
export interface RolloutSummary {
  id: string
  state: RolloutState
  release: { name: string, packageVersion: string, platform: string, risk: Risk, envelopeHash: string }
  target: { tenant: string, endpoints?: number }
  deadline?: string
  halted?: HaltInfo
  createdAt: string
  updatedAt: string
  revision: number
  /** Members and their latest job state over all phases (from the reports). */
  total: number
  counts: StateCounts
  /** Why it is in its state, as the report log says (`2 of 10 endpoints failed …`). */
  reason?: string
  phases: Array<{
    name: string
    state: PhaseState
    size: number
    successThreshold: number
    errorThreshold: number
    minSoakMinutes: number
    startedAt?: string
    endedAt?: string
    acceptedErrors?: number
    counts: StateCounts
  }>
}

export class RolloutsApi {
  readonly #c: Console
  constructor (c: Console) { this.#c = c }

  /**
   * Plans a rollout of a released package: the release must cover the target, be approved for it
   * when the target's policy asks for manual approval, and membership is frozen from the approved
   * endpoints under the target now.
   */
  create (actor: string, input: CreateRolloutRequest): Promise<Rollout> {
    const tenant = input?.target?.tenant
    let release: VerifiedRelease | null = null
    return call(this.#c.fleet.gate, actor, 'rollout.create', `rollout:${String(input?.id)}`, true,
      (a) => { const path = assertTenantPath(tenant, 'target tenant'); release = releaseOf(this.#c, input?.release, a); return [path] },
      (a, t) => onAll('rollout.write')(a, t) && knowsRelease(a, 'rollout.write', release),
      async (a, w) => {
        const r = release ?? this.#c.release(input.release)
        if (!isWithinTenant(tenant, r.release.scope)) throw PatchswarmError.OUTSIDE_DELEGATION(`target ${tenant} is outside the release's scope ${JSON.stringify(r.release.scope)}`)
        const policy = await this.#c.policies.effective(tenant)
        if (requiresApproval(policy.policy, { risk: r.release.risk, signer: r.signer })) {
          const approved = await this.#c.approvals(r.envelopeHash)
          if (!approved.some((p) => isWithinTenant(tenant, p))) throw PatchswarmError.NOT_APPROVED(`release ${r.release.name} ${r.release.packageVersion} needs an approval for ${tenant || 'the organisation'} (releases approve)`)
        }
        const endpoints = (await this.#c.endpoints.list({ under: tenant, status: 'approved' })).map((e) => ({ keyid: e.keyid, tenant: e.tenant }))
        // Endpoints the request names must be approved endpoints under the target. Any other one
        // (unknown, in quarantine, another customer's) is refused alike, so neither the answer nor
        // the stored rollout names an endpoint outside the target.
        const offered = new Set(endpoints.map((e) => e.keyid))
        const named = [input.target.endpoints, ...(Array.isArray(input.phases) ? input.phases.map((p) => p?.select?.endpoints) : [])].flatMap((l) => Array.isArray(l) ? l : [])
        const stranger = named.find((k) => !offered.has(k))
        if (stranger !== undefined) throw PatchswarmError.BAD_ROLLOUT(`endpoint ${JSON.stringify(String(stranger).slice(0, 64))} is not an approved endpoint under ${tenant === '' ? 'the organisation' : tenant}`)
        const spec = {
          id: input.id,
          release: { name: r.release.name, packageVersion: r.release.packageVersion, platform: r.release.platform, manifest: r.release.manifest.digest, envelopeHash: r.envelopeHash, risk: r.release.risk },
          target: input.target,
          phases: input.phases.map((p) => ({ ...p, select: p.select ?? {} })),
          ...(input.deadline ? { deadline: input.deadline } : {})
        }
        const step = await this.#c.rollouts.create(spec, endpoints, { ...w, by: a.id })
        await this.#c.rolloutChanged(step.rollout.id)
        return step.rollout
      })
  }

  get (actor: string, id: string): Promise<Rollout> {
    return this.#onRollout(actor, 'rollout.get', id, false, 'rollout.read', async (r) => r)
  }

  list (actor: string, query: { tenant?: string } = {}): Promise<Rollout[]> {
    const under = query?.tenant ?? ''
    return call(this.#c.fleet.gate, actor, 'rollout.list', under, false, () => [assertTenantPath(under)], seesPart('rollout.read'),
      async (a) => filterByScope(a, 'rollout.read', await this.#c.rollouts.list({ tenant: under }), (r) => r.spec.target.tenant))
  }

  /**
   * `list`, live, as summaries with each phase's progress: again whenever the reports change (at most
   * every `ms`, default 500) and every few seconds in any case.
   */
  list$ (actor: string, query: { tenant?: string } = {}, ms?: number): Observable<RolloutSummary[]> {
    const under = query?.tenant ?? ''
    const every = liveMs(ms, 500)
    return live(this.#c.fleet.gate, actor, 'rollout.list-watch', under, () => [assertTenantPath(under)], seesPart('rollout.read'), (current) =>
      refreshOn(viewTicks(this.#c, every, 5000), async () => {
        const a = await current()
        const rollouts = filterByScope(a, 'rollout.read', await this.#c.rollouts.list({ tenant: under }), (r) => r.spec.target.tenant)
        return rollouts.map((r) => rolloutSummary(r, this.#c.views.rollout(r.id)))
      }).pipe(distinctUntilChanged(sameJson)))
  }

  history (actor: string, id: string): Promise<RolloutHistoryEntry[]> {
    return this.#onRollout(actor, 'rollout.history', id, false, 'rollout.read', (r) => this.#c.rollouts.history(r.id))
  }

  pause (actor: string, id: string): Promise<Rollout> { return this.#change(actor, 'rollout.pause', id, 'rollout.write', 'pause') }
  resume (actor: string, id: string): Promise<Rollout> { return this.#change(actor, 'rollout.resume', id, 'rollout.write', 'resume') }
  abort (actor: string, id: string): Promise<Rollout> { return this.#change(actor, 'rollout.abort', id, 'rollout.abort', 'abort') }
  rollback (actor: string, id: string): Promise<Rollout> { return this.#change(actor, 'rollout.rollback', id, 'rollout.abort', 'rollback') }

  #change (actor: string, action: string, id: string, needs: Action, op: 'pause' | 'resume' | 'abort' | 'rollback'): Promise<Rollout> {
    return this.#onRollout(actor, action, id, true, needs, async (r, w, a) => {
      const step = await this.#c.rollouts[op](r.id, { ...w, by: a.id })
      await this.#c.rolloutChanged(r.id)
      return step.rollout
    })
  }

  #onRollout<T> (actor: string, action: string, id: string, write: boolean, needs: Action, perform: (r: Rollout, w: WriteOptions, a: Admin) => Promise<T>): Promise<T> {
    let rollout: Rollout | undefined
    return call(this.#c.fleet.gate, actor, action, `rollout:${String(id).slice(0, 128)}`, write,
      async () => { rollout = typeof id === 'string' ? await this.#c.rollouts.find(id).catch(() => undefined) : undefined; return rollout ? [rollout.spec.target.tenant] : [] },
      (a, t) => t.length > 0 ? onAll(needs)(a, t) : false,
      (a, w) => perform(rollout!, w, a))
  }
}

function rolloutSummary (r: Rollout, p: ReturnType<Console['views']['rollout']>): RolloutSummary {
  const { spec } = r
  return {
    id: r.id,
    state: r.state,
    release: { name: spec.release.name, packageVersion: spec.release.packageVersion, platform: spec.release.platform, risk: spec.release.risk, envelopeHash: spec.release.envelopeHash },
    target: { tenant: spec.target.tenant, ...(spec.target.endpoints ? { endpoints: spec.target.endpoints.length } : {}) },
    ...(spec.deadline ? { deadline: spec.deadline } : {}),
    ...(r.halted ? { halted: r.halted } : {}),
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
    revision: r.revision,
    total: r.phases.reduce((n, ph) => n + ph.endpoints.length, 0),
    counts: { ...p?.counts },
    ...(p?.reason ? { reason: p.reason } : {}),
    phases: r.phases.map((ph, i) => {
      const s = spec.phases[i]!
      return {
        name: ph.name,
        state: ph.state,
        size: ph.endpoints.length,
        successThreshold: s.successThreshold,
        errorThreshold: s.errorThreshold,
        minSoakMinutes: s.minSoakMinutes,
        ...(ph.startedAt ? { startedAt: ph.startedAt } : {}),
        ...(ph.endedAt ? { endedAt: ph.endedAt } : {}),
        ...(ph.acceptedErrors ? { acceptedErrors: ph.acceptedErrors } : {}),
        counts: { ...p?.phases[ph.name]?.counts }
      }
    })
  }
}

// ---- reports --------------------------------------------------------------------------------

/** A tenant of the subtree with its KPIs (NodeKpis) and, for a customer, its status. */
export interface TenantKpis extends NodeKpis {
  status?: CustomerStatus
}

/** One entry of the report log as the events view shows it: what happened, where, in a line. */
export interface EventLine {
  seq: number
  /** Console time of the append. */
  at: string
  source: 'agent' | 'console'
  /** The tenant it concerns (an endpoint's customer or group, a rollout's target). */
  tenant: string
  endpoint?: string
  /** `job`, `transfer`, `agent`, `inventory`, or the console fact's type (`rollout.changed` …). */
  kind: string
  /** `failed`, `halted` … as `warn`/`error`; everything else `info`. */
  level: 'info' | 'warn' | 'error'
  text: string
}

/** Log entries `events$` looks back through for its first message (at most; it wants `last` visible ones). */
const EVENT_LOOKBACK = 20_000

export type ReportFormat = 'json' | 'csv' | 'html'

export class ReportsApi {
  readonly #c: Console
  constructor (c: Console) { this.#c = c }

  /** KPIs of the subtree at `path`. */
  kpis (actor: string, path: string): Promise<Kpis> {
    return this.#read(actor, 'report.kpis', path, async () => computeKpis(await this.#input(path)))
  }

  /** The report: KPIs at every level of the subtree and the patch records. */
  report (actor: string, path: string): Promise<Report> {
    return this.#read(actor, 'report.get', path, () => this.#report(path))
  }

  /** The report as a file's text: JSON, CSV (one row per patch) or a self-contained HTML page. */
  export (actor: string, path: string, format: ReportFormat): Promise<string> {
    if (!['json', 'csv', 'html'].includes(format)) return Promise.reject(PatchswarmError.BAD_ARGUMENT(`format is json, csv or html, not ${JSON.stringify(format)?.slice(0, 20)}`))
    return this.#read(actor, `report.export-${format}`, path, async () => {
      const report = await this.#report(path)
      return format === 'json' ? reportToJson(report) : format === 'csv' ? reportToCsv(report) : renderHtmlReport(report)
    })
  }

  /** The endpoint-signed events of the subtree, with the certificates and root to check them offline. */
  evidence (actor: string, path: string): Promise<string> {
    return this.#read(actor, 'report.evidence', path, async () => {
      const endpoints = await this.#c.endpoints.list({ under: path, status: ['approved', 'removed'] })
      const keep = new Set(endpoints.map((e) => e.keyid))
      const events = []
      for await (const e of iterateLog(this.#c)) if (e.source === 'agent' && keep.has(e.envelope.signed.endpoint)) events.push(e.envelope)
      return buildEvidence({
        org: this.#c.org,
        root: this.#c.rootEnvelope,
        certificates: endpoints.flatMap((e) => e.certificate ? [e.certificate] : []),
        events,
        filter: path === '' ? null : `endpoints under ${path}`,
        generatedAt: this.#c.clock(),
        sealer: this.#c.signer
      })
    })
  }

  records (actor: string, path: string): Promise<PatchRecord[]> {
    return this.#read(actor, 'report.records', path, async () => (await this.#input(path)).records as PatchRecord[])
  }

  /** Ingestion counters (accepted, duplicates, rejections by code): the organisation's. */
  counters (actor: string): Promise<IngestCounters> {
    return this.#read(actor, 'report.counters', '', async () => this.#c.ingestor.counters)
  }

  /**
   * Agent events handed in by an admin (e.g. from an offline export); only events of endpoints
   * inside the actor's scope are taken: others are rejected with WRONG_TENANT.
   */
  ingest (actor: string, path: string, events: unknown[]): Promise<IngestResult> {
    return call(this.#c.fleet.gate, actor, 'report.ingest', path, true, () => [assertTenantPath(path)], onAll('endpoint.approve'),
      () => this.#c.ingest(events as never, { tenantScope: path }))
  }

  /**
   * KPIs of `path`, again whenever the views change (at most every `ms`, default 500) and every
   * few seconds (SLAs running out as time passes). A revoked right ends it.
   */
  kpis$ (actor: string, path: string, ms?: number): Observable<Kpis> {
    const every = liveMs(ms, 500)
    return live(this.#c.fleet.gate, actor, 'report.kpis-watch', path, () => [assertTenantPath(path)], onAll('report.read'), (current) =>
      refreshOn(viewTicks(this.#c, every, 5000), async () => {
        await current()
        return computeKpis(await this.#input(path))
      }).pipe(distinctUntilChanged(sameJson)))
  }

  /**
   * `fleet.walk` without the endpoints, live: the tenants (distributors to groups, with their status)
   * of the subtree at `path` that the actor may read, again when the tree changes (read every `ms`,
   * default 5000). Like walk, `path` may lie above the actor's scopes. (In this namespace because
   * `fleet` is the Fleet itself.) A console session starts from it: the roots are the admin's homes.
   */
  tenants$ (actor: string, path = '', ms?: number): Observable<TenantNode[]> {
    const every = liveMs(ms, 5000)
    const c = this.#c
    return live(c.fleet.gate, actor, 'tenant.watch', path, () => [assertTenantPath(path)], (a) => can(a, 'tenant.read', path) || reachesBelow(a, 'tenant.read', path), (current) =>
      refreshOn(timer(0, every), async () => {
        const a = await current()
        return filterByScope(a, 'tenant.read', (await c.fleet.tenants.walk(path)).filter((n) => n.kind !== 'endpoint'), (n) => n.path)
      }).pipe(distinctUntilChanged(sameJson)))
  }

  /**
   * The KPIs of every tenant of the subtree at `path` (as in `report`, without the patch records),
   * each customer with its status: again whenever the views change (at most every `ms`, default
   * 1000), and the tree itself read again every few seconds (new, moved, removed tenants).
   */
  tree$ (actor: string, path: string, ms?: number): Observable<TenantKpis[]> {
    const every = liveMs(ms, 1000)
    const c = this.#c
    return live(c.fleet.gate, actor, 'report.tree-watch', path, () => [assertTenantPath(path)], onAll('report.read'), (current) => defer(() => {
      let nodes: Awaited<ReturnType<Console['fleet']['tenants']['walk']>> = []
      let readAt = -Infinity
      return refreshOn(viewTicks(c, every, 5000), async () => {
        await current()
        if (performance.now() - readAt >= 5000) {
          nodes = (await c.fleet.tenants.walk(path)).filter((n) => n.kind !== 'endpoint' && isWithinTenant(n.path, path))
          readAt = performance.now()
        }
        const input = await this.#input(path)
        const status = new Map(nodes.map((n) => [n.path, n.status]))
        return rollup(nodes, input).map((k): TenantKpis => {
          const st = status.get(k.path)
          return st === undefined ? k : { ...k, status: st }
        })
      }).pipe(distinctUntilChanged(sameJson))
    }))
  }

  /**
   * The report log under `path`, live: first the latest `last` entries there (default 200, at most
   * 1000) as one message, then new ones in batches (at most one per `ms`, default 250). Agent events
   * count where their endpoint is; console facts where their endpoints or their rollout's target are.
   */
  events$ (actor: string, path: string, opts: { last?: number, ms?: number } = {}): Observable<EventLine[]> {
    const want = Math.max(0, Math.min(1000, Math.floor(Number(opts?.last ?? 200)) || 0))
    const every = liveMs(opts?.ms, 250)
    const c = this.#c
    return live(c.fleet.gate, actor, 'report.events-watch', path, () => [assertTenantPath(path)], onAll('report.read'), (current) => defer(() => {
      const targets = new Map<string, string | null>()
      const targetOf = async (rollout: string) => {
        if (!targets.has(rollout)) targets.set(rollout, (await c.rollouts.find(rollout).catch(() => undefined))?.spec.target.tenant ?? null)
        return targets.get(rollout)!
      }
      const describe = async (entries: ReportEntry[]) => {
        const out: EventLine[] = []
        for (const e of entries) {
          const line = await eventLine(e, path, targetOf)
          if (line) out.push(line)
        }
        return out
      }
      const last = c.log.last
      const backlog = async () => {
        await current()
        const out: EventLine[] = []
        for (let to = last; to >= 1 && out.length < want && last - to < EVENT_LOOKBACK; to -= 1000) {
          out.unshift(...await describe(await c.log.read({ from: Math.max(1, to - 999), to })))
        }
        return out.slice(Math.max(0, out.length - want))
      }
      return from(backlog()).pipe(
        concatMap((first) => merge(from([first]), c.log.tail$(last + 1).pipe(
          concatMap(async (chunk) => { await current(); return describe(chunk) }),
          bufferTime(every),
          map((lists) => lists.flat()),
          filter((l) => l.length > 0)))))
    }))
  }

  /**
   * The audit log as `fleet.listAudit` shows it to the actor, live: first the latest `last` visible
   * entries (default 100, at most 1000), then new ones as they are written (looked for every `ms`,
   * default 1000). Its own subscription is one of them.
   */
  audit$ (actor: string, opts: { last?: number, ms?: number } = {}): Observable<AuditEntry[]> {
    const want = Math.max(0, Math.min(1000, Math.floor(Number(opts?.last ?? 100)) || 0))
    const every = liveMs(opts?.ms, 1000)
    const audit = this.#c.fleet.audit
    return live(this.#c.fleet.gate, actor, 'audit.watch', 'audit', (a) => scopesFor(a, 'audit.read'), (_, s) => s.length > 0, (current) => defer(() => {
      let seen = 0
      let first = true
      return refreshOn(timer(0, every), async () => {
        const a = await current()
        if (first) {
          first = false
          const latest = (await audit.list({ reverse: true, limit: 1 }))[0]?.seq ?? 0
          const visible = want === 0 ? [] : (await audit.listVisible(a, { reverse: true, limit: want })).reverse()
          seen = Math.max(latest, visible[visible.length - 1]?.seq ?? 0)
          return visible
        }
        const fresh = await audit.list({ from: seen + 1 })
        if (fresh.length > 0) seen = fresh[fresh.length - 1]!.seq
        return fresh.filter((e) => auditVisibleTo(a, e))
      }).pipe(filter((l, i) => i === 0 || l.length > 0))
    }))
  }

  #read<T> (actor: string, action: string, path: string, perform: () => Promise<T>): Promise<T> {
    return call(this.#c.fleet.gate, actor, action, path, false, () => [assertTenantPath(path)], onAll('report.read'), perform)
  }

  async #input (path: string): Promise<KpiInput> {
    const endpoints = (await this.#c.endpoints.list({ under: path, status: 'approved' })).map((e) => ({ keyid: e.keyid, tenant: e.tenant }))
    return { records: this.#c.views.patchRecords({ under: path }), endpoints, bytes: this.#c.views.bytesByEndpoint({ under: path }), now: this.#c.clock() }
  }

  async #report (path: string): Promise<Report> {
    const nodes = (await this.#c.fleet.tenants.walk(path)).filter((n) => n.kind !== 'endpoint')
    return buildReport({ ...await this.#input(path), scope: path, nodes })
  }
}

const MB = (n: number) => `${(n / 1e6).toFixed(1)} MB`

/** The line of one log entry, or null when it is not under `path`. */
async function eventLine (e: ReportEntry, path: string, targetOf: (rollout: string) => Promise<string | null>): Promise<EventLine | null> {
  const base = { seq: e.seq, at: e.at, source: e.source }
  if (e.source === 'agent') {
    const ev = e.envelope.signed
    if (!isWithinTenant(ev.tenant, path)) return null
    const head = { ...base, tenant: ev.tenant, endpoint: ev.endpoint, kind: ev.kind }
    if (ev.kind === 'job' && ev.job) {
      const j = ev.job
      const level = j.state === 'failed' || j.state === 'rolled-back' ? 'error' : j.state === 'rolling-back' ? 'warn' : 'info'
      const why = j.code || j.reason ? ` (${[j.code, j.reason].filter(Boolean).join(': ')})` : ''
      return { ...head, level, text: `${j.action} ${j.release.name} ${j.release.packageVersion}: ${j.state}${j.attempt > 1 ? ` attempt ${j.attempt}` : ''}${j.rollout ? ` [${j.rollout}]` : ''}${why}` }
    }
    if (ev.kind === 'transfer' && ev.transfer) {
      const b = ev.transfer.bytes
      return { ...head, level: 'info', text: `received ${MB(b.origin + b.site + b.peer)}: origin ${MB(b.origin)}, site ${MB(b.site)}, peers ${MB(b.peer)}, local ${MB(b.local)}` }
    }
    if (ev.kind === 'agent' && ev.agent) {
      const g = ev.agent
      return { ...head, level: g.state.includes('breaker') ? 'warn' : 'info', text: `agent ${g.state}${g.version ? ` ${g.version}` : ''}${g.release ? ` ${g.release.name} ${g.release.packageVersion}` : ''}${g.reason ? `: ${g.reason}` : ''}` }
    }
    return { ...head, level: 'info', text: 'inventory' }
  }
  const f = e.fact
  switch (f.type) {
    case 'patch.assigned': {
      const mine = f.endpoints.filter((x) => isWithinTenant(x.tenant, path))
      if (mine.length === 0) return null
      const tenants = [...new Set(mine.map((x) => x.tenant))]
      return { ...base, tenant: tenants.length === 1 ? tenants[0]! : path, kind: f.type, level: 'info', text: `${f.release.name} ${f.release.version} assigned to ${mine.length} endpoint(s) [${f.rollout}${f.phase ? ` ${f.phase}` : ''}]` }
    }
    case 'patch.rollback': {
      const tenant = await targetOf(f.rollout)
      if (tenant === null || !isWithinTenant(tenant, path)) return null
      return { ...base, tenant, kind: f.type, level: 'warn', text: `rollback ordered for ${f.endpoints.length} endpoint(s) [${f.rollout}]` }
    }
    case 'rollout.changed': {
      const tenant = await targetOf(f.rollout)
      if (tenant === null || !isWithinTenant(tenant, path)) return null
      const level = f.state === 'halted' || f.state === 'aborted' ? 'error' : f.state === 'rolled-back' || f.state === 'paused' ? 'warn' : 'info'
      return { ...base, tenant, kind: f.type, level, text: `rollout ${f.rollout}: ${f.state}${f.phase ? ` (phase ${f.phase})` : ''}${f.reason ? `: ${f.reason}` : ''}` }
    }
    default: {
      if (!isWithinTenant(f.tenant, path)) return null
      const what = f.type === 'endpoint.quarantined' ? 'enrolled, waits in quarantine for approval' : f.type.slice('endpoint.'.length)
      const level = f.type === 'endpoint.approved' ? 'info' : 'warn'
      return { ...base, tenant: f.tenant, endpoint: f.keyid, kind: f.type, level, text: `endpoint ${f.hostname ? `${f.hostname} ` : ''}${what}` }
    }
  }
}

async function * iterateLog (c: Console) {
  let from = 1
  for (;;) {
    const page = await c.log.read({ from, limit: 2000 })
    if (page.length === 0) return
    yield * page
    from = page[page.length - 1]!.seq + 1
  }
}

// ---- webhooks -------------------------------------------------------------------------------

export class WebhooksApi {
  readonly #c: Console
  constructor (c: Console) { this.#c = c }

  create (actor: string, input: { id: string, url: string, secret?: string, events: string[], tenant: string }): Promise<{ webhook: Webhook, secret: string }> {
    return call(this.#c.fleet.gate, actor, 'webhook.create', `webhook:${String(input?.id)}`, true,
      () => [assertTenantPath(input?.tenant)], onAll('webhook.write'), (_, w) => this.#c.webhooks.create(input, w))
  }

  list (actor: string): Promise<Webhook[]> {
    return call(this.#c.fleet.gate, actor, 'webhook.list', 'webhooks', false, (a) => scopesFor(a, 'webhook.write'), (_, s) => s.length > 0,
      async (a) => filterByScope(a, 'webhook.write', await this.#c.webhooks.list(), (h) => h.tenant))
  }

  remove (actor: string, id: string): Promise<Webhook> {
    return this.#onHook(actor, 'webhook.remove', id, (w) => this.#c.webhooks.remove(id, w))
  }

  setEnabled (actor: string, id: string, enabled: boolean): Promise<Webhook> {
    return this.#onHook(actor, 'webhook.enable', id, (w) => this.#c.webhooks.setEnabled(id, enabled === true, w))
  }

  #onHook<T> (actor: string, action: string, id: string, perform: (w: WriteOptions) => Promise<T>): Promise<T> {
    return call(this.#c.fleet.gate, actor, action, `webhook:${String(id).slice(0, 128)}`, true,
      async () => { const h = typeof id === 'string' ? await this.#c.webhooks.find(id).catch(() => undefined) : undefined; return h ? [h.tenant] : [] },
      (a, t) => t.length > 0 ? onAll('webhook.write')(a, t) : false,
      (_, w) => perform(w))
  }
}

// ---- swarm ----------------------------------------------------------------------------------

export interface SwarmPeerView {
  keyid: string
  role: string
  /** The tenant its certificate names ('' for the organisation's own nodes). */
  tenant: string
  site: string | null
  /** The endpoint's host name, when the peer is an enrolled endpoint. */
  hostname: string | null
}

export interface SwarmStatus {
  /** False when the console runs without --bootstrap (no swarm): no peers, no bans. */
  online: boolean
  /** The console's own key on the swarm. */
  keyid: string | null
  peers: SwarmPeerView[]
  bans: Array<{ keyid: string, until: string, reason: string, hostname: string | null, tenant: string | null }>
}

/**
 * The console's own swarm node: who is connected to it and who it banned. An admin sees the peers
 * and bans of endpoints within their read scope; the organisation's own nodes and keys that are no
 * enrolled endpoint only with a scope over the whole organisation.
 */
export class SwarmApi {
  readonly #c: Console

  constructor (c: Console) { this.#c = c }

  status (actor: string): Promise<SwarmStatus> {
    return call(this.#c.fleet.gate, actor, 'swarm.status', 'swarm', false, (a) => scopesFor(a, 'report.read'), (_, s) => s.length > 0, (a) => this.#status(a))
  }

  /** `status`, again every `ms` (default 2000). */
  status$ (actor: string, ms?: number): Observable<SwarmStatus> {
    const every = liveMs(ms, 2000)
    return live(this.#c.fleet.gate, actor, 'swarm.watch', 'swarm', (a) => scopesFor(a, 'report.read'), (_, s) => s.length > 0, (current) =>
      refreshOn(timer(0, every), async () => this.#status(await current())).pipe(distinctUntilChanged(sameJson)))
  }

  async #status (a: Admin): Promise<SwarmStatus> {
    const state = this.#c.swarmState?.()
    if (!state) return { online: false, keyid: null, peers: [], bans: [] }
    const endpoint = async (keyid: string) => (await this.#c.endpoints.byKeyid(keyid)) ?? null
    const peers: SwarmPeerView[] = []
    for (const p of state.peers) {
      const e = await endpoint(p.keyid)
      const tenant = e?.tenant ?? p.tenant
      if (e ? can(a, 'report.read', tenant) : can(a, 'report.read', '')) peers.push({ ...p, hostname: e?.hostname ?? null })
    }
    const bans: SwarmStatus['bans'] = []
    for (const b of state.bans) {
      const e = await endpoint(b.keyid)
      if (e ? can(a, 'report.read', e.tenant) : can(a, 'report.read', '')) bans.push({ ...b, hostname: e?.hostname ?? null, tenant: e?.tenant ?? null })
    }
    return { online: true, keyid: state.keyid, peers: peers.sort((x, y) => (x.hostname ?? x.keyid).localeCompare(y.hostname ?? y.keyid)), bans }
  }
}

// ---- the whole API --------------------------------------------------------------------------

export class AdminApi {
  readonly fleet: Fleet
  readonly endpoints: EndpointsApi
  readonly policies: PoliciesApi
  readonly releases: ReleasesApi
  readonly rollouts: RolloutsApi
  readonly reports: ReportsApi
  readonly webhooks: WebhooksApi
  readonly swarm: SwarmApi

  constructor (c: Console) {
    this.fleet = c.fleet
    this.endpoints = new EndpointsApi(c)
    this.policies = new PoliciesApi(c)
    this.releases = new ReleasesApi(c)
    this.rollouts = new RolloutsApi(c)
    this.reports = new ReportsApi(c)
    this.webhooks = new WebhooksApi(c)
    this.swarm = new SwarmApi(c)
  }
}

export const API_NAMESPACES = ['fleet', 'endpoints', 'policies', 'releases', 'rollouts', 'reports', 'webhooks', 'swarm'] as const
export type ApiNamespace = typeof API_NAMESPACES[number]

/** Fleet methods that are not admin calls. */
const NOT_API = new Set(['constructor', 'ready', 'close', 'bootstrapOwner'])

/** The callable methods of a namespace: its class's own public methods. */
export function apiMethods (api: AdminApi, ns: ApiNamespace): string[] {
  return Object.getOwnPropertyNames(Object.getPrototypeOf(api[ns])).filter((m) => !NOT_API.has(m) && typeof (api[ns] as unknown as Record<string, unknown>)[m] === 'function').sort()
}

/** Routes 'namespace.method' with params to `api`, acting as `admin` (the socket server uses it). */
export function dispatcher (api: AdminApi) {
  const table = new Map<string, (...args: unknown[]) => unknown>()
  for (const ns of API_NAMESPACES) {
    for (const m of apiMethods(api, ns)) {
      const target = api[ns] as unknown as Record<string, (...args: unknown[]) => unknown>
      table.set(`${ns}.${m}`, (...args) => target[m]!.apply(target, args))
    }
  }
  return (admin: string, method: string, params: unknown[]): Promise<unknown> | Observable<unknown> => {
    const fn = table.get(method)
    if (!fn) throw PatchswarmError.NOT_FOUND(`no admin API method ${JSON.stringify(method).slice(0, 80)}`)
    return fn(admin, ...params) as Promise<unknown> | Observable<unknown>
  }
}
