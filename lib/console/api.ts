// The admin API: one typed interface, in namespaces like VS Code's (`api.rollouts.pause(actor, id)`).
// Every method takes the acting admin's id first and passes through the fleet's AdminGate:
// permission on the tenant paths the call concerns, then exactly one audit entry. Lists keep only
// what the actor may read. A method whose name ends in `$` is a live subscription (an Observable).
// The same object serves in-process callers and, through dispatch(), the Unix socket.
import { Observable, defer, from, switchMap, map, distinctUntilChanged, throttleTime, startWith, asyncScheduler } from 'rxjs'
import { PatchswarmError } from '../errors.js'
import { can, filterByScope, reachesBelow, scopesFor, type Action } from '../fleet/rbac.js'
import type { Admin } from '../fleet/admins.js'
import type { WriteOptions } from '../fleet/common.js'
import { assertTenantPath } from '../fleet/tenants.js'
import type { Fleet } from '../fleet/fleet.js'
import type { EndpointRecord, EndpointStatus } from '../fleet/endpoints.js'
import type { CreateTokenInput, TokenRecord } from '../fleet/enrollment.js'
import { isWithinTenant } from '../trust/fields.js'
import type { Envelope } from '../trust/envelope.js'
import type { VerifiedRelease } from '../trust/trusted-state.js'
import { requiresApproval, publisherOf } from '../policy/policy.js'
import type { StoredPolicy, EffectivePolicyAt } from '../policy/store.js'
import type { Rollout } from '../rollout/rollout.js'
import type { RolloutHistoryEntry } from '../rollout/store.js'
import { computeKpis, type KpiInput } from '../report/kpis.js'
import { buildReport, reportToCsv, reportToJson, renderHtmlReport, type Report } from '../report/export.js'
import { buildEvidence } from '../report/evidence.js'
import type { IngestCounters, IngestResult } from '../report/ingest.js'
import type { Kpis, PatchRecord } from '../report/records.js'
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

// ---- enrollment tokens and endpoints --------------------------------------------------------

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

  list (actor: string, query: { under?: string, status?: EndpointStatus | EndpointStatus[] } = {}): Promise<EndpointRecord[]> {
    const under = query?.under ?? ''
    return call(this.#c.fleet.gate, actor, 'endpoint.list', under, false, () => [assertTenantPath(under)], seesPart('endpoint.read'),
      async (a) => filterByScope(a, 'endpoint.read', await this.#c.endpoints.list({ under, ...(query?.status ? { status: query.status } : {}) }), (e) => e.tenant))
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

// ---- reports --------------------------------------------------------------------------------

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
        generatedAt: this.#c.clock()
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

  /** KPIs of `path`, again whenever the views change (at most every `ms`, default 500). */
  kpis$ (actor: string, path: string, ms = 500): Observable<Kpis> {
    return defer(() => from(this.#read(actor, 'report.kpis-watch', path, async () => true))).pipe(
      switchMap(() => this.#c.views.state$.pipe(startWith(null), throttleTime(ms, asyncScheduler, { leading: true, trailing: true }))),
      switchMap(() => from(this.#input(path).then(computeKpis))),
      distinctUntilChanged((a, b) => JSON.stringify(a) === JSON.stringify(b)),
      map((k) => k)
    )
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

// ---- the whole API --------------------------------------------------------------------------

export class AdminApi {
  readonly fleet: Fleet
  readonly endpoints: EndpointsApi
  readonly policies: PoliciesApi
  readonly releases: ReleasesApi
  readonly rollouts: RolloutsApi
  readonly reports: ReportsApi
  readonly webhooks: WebhooksApi

  constructor (c: Console) {
    this.fleet = c.fleet
    this.endpoints = new EndpointsApi(c)
    this.policies = new PoliciesApi(c)
    this.releases = new ReleasesApi(c)
    this.rollouts = new RolloutsApi(c)
    this.reports = new ReportsApi(c)
    this.webhooks = new WebhooksApi(c)
  }
}

export const API_NAMESPACES = ['fleet', 'endpoints', 'policies', 'releases', 'rollouts', 'reports', 'webhooks'] as const
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
