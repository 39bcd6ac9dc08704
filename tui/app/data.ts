// What the views read, fed by the admin API's live methods (the `$` ones) through a ConsoleAccess:
// in-process, or over the console's socket. Each stream is shared by every view that shows it
// (shareReplay with refCount: the subscription to the console ends when the last view closes), and
// the console throttles them at the source, so 200 events a second arrive as a few updates a second.
// The admin's tenants are followed for the whole session (reports.tenants$): the roots of what it may
// see are its "homes", where the per-subtree reports (KPIs, events) are asked for.
import { Observable, combineLatest, defer, map, merge, of, scan, shareReplay, filter, tap, type OperatorFunction, type Subscription } from 'rxjs'
import type { ConsoleAccess } from '../extensions/access.js'
import type { EndpointRow, EndpointsUpdate, EventLine, ReleaseView, RolloutSummary, SwarmStatus, TenantKpis } from '../../lib/console/api.js'
import type { AuditEntry } from '../../lib/fleet/audit.js'
import type { TenantNode } from '../../lib/fleet/tenants.js'
import type { Kpis } from '../../lib/report/records.js'
import { isWithinTenant } from '../../lib/trust/fields.js'

export interface ConsoleDataOptions {
  /** How often the console may send a list again (ms); 500 by default. */
  refreshMs?: number
  /** Lines the events and audit tails keep (500). */
  tailLines?: number
}

const share = <T>(): OperatorFunction<T, T> => shareReplay<T>({ bufferSize: 1, refCount: true })

/** The roots of a tenant list: nodes whose parent is not in it. */
export function rootsOf (nodes: readonly TenantNode[]): string[] {
  const paths = new Set(nodes.map((n) => n.path))
  return nodes.filter((n) => n.kind !== 'endpoint' && !paths.has(n.path.split('/').slice(0, -1).join('/'))).map((n) => n.path).sort()
}

/** Does `tenant` match a `:endpoints acme/` argument: the path itself, below it, or a path with that part in it? */
export function tenantMatches (tenant: string, prefix: string): boolean {
  const p = prefix.replace(/^\/+|\/+$/g, '')
  if (p === '') return true
  return isWithinTenant(tenant, p) || `/${tenant}/`.includes(`/${p}/`)
}

/** KPIs of several subtrees as one: counts add up; medians and percentiles cannot, so they go. */
export function sumKpis (list: readonly Kpis[]): Kpis | null {
  if (list.length === 0) return null
  if (list.length === 1) return list[0]!
  const add = (f: (k: Kpis) => number) => list.reduce((n, k) => n + f(k), 0)
  const endpoints = add((k) => k.endpoints)
  const compliant = add((k) => k.compliant)
  const bytes = { origin: add((k) => k.bytes.origin), site: add((k) => k.bytes.site), peer: add((k) => k.bytes.peer), local: add((k) => k.bytes.local), delivered: add((k) => k.bytes.delivered) }
  const weighted = (f: (k: Kpis) => number | null) => {
    const parts = list.filter((k) => f(k) !== null && k.endpoints > 0)
    const w = parts.reduce((n, k) => n + k.endpoints, 0)
    return w === 0 ? null : parts.reduce((n, k) => n + f(k)! * k.endpoints, 0) / w
  }
  return {
    endpoints,
    compliant,
    compliance: endpoints === 0 ? null : compliant / endpoints,
    timeToPatch: { count: add((k) => k.timeToPatch.count), medianHours: null, p95Hours: null },
    firstPassSuccess: weighted((k) => k.firstPassSuccess),
    finalSuccess: weighted((k) => k.finalSuccess),
    slaBreaches: add((k) => k.slaBreaches),
    bytes,
    wanSavings: bytes.delivered > 0 ? 1 - bytes.origin / bytes.delivered : null
  }
}

export class ConsoleData {
  readonly access: ConsoleAccess
  readonly #ms: number
  readonly #tail: number
  #tenants: TenantNode[] = []
  #ready: Promise<void> | undefined
  #tenantsSub: Subscription | undefined
  #homes: string[] = []
  #rollouts: RolloutSummary[] = []
  readonly #endpoints = new Map<string, Observable<EndpointRow[]>>()
  /** WAN savings over time, one sample per KPI update: the dashboard's sparkline. */
  readonly savings: number[] = []

  readonly rollouts$: Observable<RolloutSummary[]>
  readonly releases$: Observable<ReleaseView[]>
  /** KPIs of every tenant the admin may see, each home's subtree after the other. */
  readonly tree$: Observable<TenantKpis[]>
  /** The latest lines of the report log in the admin's homes, newest last. */
  readonly events$: Observable<EventLine[]>
  /** The latest audit entries the admin may see, newest last. */
  readonly audit$: Observable<AuditEntry[]>
  /** The console's own swarm node: peers connected to it and bans, as far as the admin may see. */
  readonly swarm$: Observable<SwarmStatus>

  constructor (access: ConsoleAccess, opts: ConsoleDataOptions = {}) {
    this.access = access
    this.#ms = Math.max(50, opts.refreshMs ?? 500)
    this.#tail = Math.max(10, opts.tailLines ?? 500)
    this.rollouts$ = defer(() => this.subscribe<RolloutSummary[]>('rollouts.list$', {}, this.#ms)).pipe(tap((l) => { this.#rollouts = l }), share())
    this.releases$ = defer(() => this.subscribe<ReleaseView[]>('releases.list$', Math.max(this.#ms, 2000))).pipe(share())
    this.tree$ = defer(() => this.#homes.length === 0
      ? of([] as TenantKpis[])
      : combineLatest(this.#homes.map((h) => this.subscribe<TenantKpis[]>('reports.tree$', h, Math.max(this.#ms, 1000))))).pipe(
      map((lists) => lists.flat()),
      tap((nodes) => {
        const total = sumKpis(nodes.filter((n) => this.#homes.includes(n.path)).map((n) => n.kpis))
        if (total?.wanSavings !== null && total?.wanSavings !== undefined && this.savings[this.savings.length - 1] !== total.wanSavings) {
          this.savings.push(total.wanSavings)
          if (this.savings.length > 240) this.savings.shift()
        }
      }),
      share())
    this.events$ = defer(() => merge(...this.#homes.map((h) => this.subscribe<EventLine[]>('reports.events$', h, { last: Math.min(1000, this.#tail), ms: Math.max(this.#ms, 250) })))).pipe(
      scan((kept: EventLine[], fresh: EventLine[]) => {
        const all = kept.concat(fresh)
        // Several homes' backlogs interleave: keep seq order, and only the newest lines.
        if (this.#homes.length > 1) all.sort((a, b) => a.seq - b.seq)
        return all.length > this.#tail ? all.slice(all.length - this.#tail) : all
      }, []),
      share())
    this.swarm$ = defer(() => this.subscribe<SwarmStatus>('swarm.status$', Math.max(this.#ms, 1000))).pipe(share())
    this.audit$ = defer(() => this.subscribe<AuditEntry[]>('reports.audit$', { last: Math.min(1000, this.#tail), ms: Math.max(this.#ms, 1000) })).pipe(
      scan((kept: AuditEntry[], fresh: AuditEntry[]) => {
        const all = kept.concat(fresh)
        return all.length > this.#tail ? all.slice(all.length - this.#tail) : all
      }, []),
      share())
  }

  /**
   * Follows the admin's tenants (and from them its homes) for the session; resolves with the first
   * list. Fails like the console does: FORBIDDEN for an unknown admin, UNAVAILABLE without a console.
   */
  ready (): Promise<void> {
    this.#ready ??= new Promise<void>((resolve, reject) => {
      this.#tenantsSub = this.subscribe<TenantNode[]>('reports.tenants$', '', 5000).subscribe({
        next: (list) => {
          this.#tenants = list
          this.#homes = rootsOf(list)
          resolve()
        },
        error: reject
      })
    })
    return this.#ready
  }

  /** Ends the session's own subscription (views end theirs when they close). */
  close (): void {
    this.#tenantsSub?.unsubscribe()
  }

  /** The tenants (no endpoints) the admin may see, as last read. */
  get tenants (): readonly TenantNode[] { return this.#tenants }
  /** The roots of what the admin may see: its KPIs and events are asked for there. */
  get homes (): readonly string[] { return this.#homes }
  /** The rollouts as the last update had them (for completion). */
  get rollouts (): readonly RolloutSummary[] { return this.#rollouts }

  /** Every endpoint the admin may see, live; rows that did not change keep their identity. */
  endpoints$ (): Observable<EndpointRow[]> {
    let o = this.#endpoints.get('')
    if (!o) {
      o = defer(() => this.subscribe<EndpointsUpdate>('endpoints.list$', {}, Math.max(this.#ms, 250))).pipe(
        scan((s: { rows: Map<string, EndpointRow>, loaded: boolean }, u: EndpointsUpdate) => {
          if (u.reset) s.rows.clear()
          for (const r of u.rows) s.rows.set(r.keyid, r)
          for (const k of u.removed) s.rows.delete(k)
          s.loaded = u.loaded
          return s
        }, { rows: new Map<string, EndpointRow>(), loaded: false }),
        filter((s) => s.loaded),
        map((s) => [...s.rows.values()]),
        share())
      this.#endpoints.set('', o)
    }
    return o
  }

  call<T> (method: string, ...params: unknown[]): Promise<T> {
    return this.access.call(method, params) as Promise<T>
  }

  subscribe<T> (method: string, ...params: unknown[]): Observable<T> {
    return this.access.subscribe(method, params) as Observable<T>
  }
}
