// Isolation through the whole admin API: two customers under one MSP, an admin scoped to each.
// Customer A's admin calls every admin API method on customer B's objects (and on targets that do
// not exist under B) and gets FORBIDDEN, with one audit entry each; lists, reports and exports show
// A's data and nothing of B's; B is unchanged afterwards. The MSP's owner sees both, and a viewer
// scoped to A reads A but cannot change it. Follows test/fleet/isolation.test.ts.
import { randomBytes } from 'node:crypto'
import t, { type Test } from 'tap'
import { firstValueFrom, isObservable, type Observable } from 'rxjs'
import { OWNER, SimEndpoint } from '../../fixtures/console-org.js'
import { API_NAMESPACES, apiMethods, type AdminApi, type ReleaseView } from '../../lib/console/api.js'
import type { Console } from '../../lib/console/console.js'
import type { Envelope } from '../../lib/trust/envelope.js'
import type { ReleaseDocument } from '../../lib/trust/index.js'
import type { Kpis } from '../../lib/report/records.js'
import { parseDirective } from '../../lib/trust/directive.js'
import { isWithinTenant } from '../../lib/trust/fields.js'
import { codeOf, sshKey } from '../fleet/helpers.js'
import { A, B, MSP, world, type World } from './helpers.js'

/** What one customer owns, made by its admins before the test calls anything. */
interface Side {
  tenant: string
  /** Ids of enrollment tokens scoped inside it. */
  tokens: string[]
  /** Approved endpoints (world() enrolls them). */
  approved: SimEndpoint[]
  /** One endpoint waiting in quarantine. */
  spare: SimEndpoint
  keyids: string[]
  /** The tree path of one of its endpoints. */
  node: string
  /** Tree node uids of its subtree. */
  uids: string[]
  /** A release scoped to it and approved for it. */
  release: ReleaseView
  envelope: Envelope<ReleaseDocument>
  /** A release scoped to it that no one has added yet. */
  fresh: Envelope<ReleaseDocument>
  rollout: string
  hook: string
}

interface Ctx {
  w: World
  api: AdminApi
  c: Console
  /** The acting admin. */
  actor: string
  /** Where the actor's lists and reports start: A for alice, the MSP for mia. */
  home: string
  a: Side
  b: Side
  shared: ReleaseView
  /** A release for the whole organisation that no one has added yet. */
  orgFresh: Envelope<ReleaseDocument>
}

const NOPE = `${B}/nope` // a target that does not exist under B
const UNKNOWN_KEY = randomBytes(32).toString('hex')
const UNKNOWN_HASH = randomBytes(32).toString('hex')
const PHASES = [{ name: 'all', successThreshold: 1, errorThreshold: 0.9, minSoakMinutes: 0 }]

async function side (w: World, admin: string, tenant: string, tag: string, shared: ReleaseView): Promise<Side> {
  const { api, console: c, clock } = w
  const { token, record } = await api.endpoints.createToken(admin, { scope: tenant, expiresAt: new Date(clock.t + 86400_000), maxUses: 3, autoApprove: false, note: `spares of ${tenant}` })
  const spare = new SimEndpoint(`${tag}-spare`)
  await spare.enroll(c, token, clock.now())
  const approved = [...w.endpoints].filter(([g]) => isWithinTenant(g, tenant)).flatMap(([, eps]) => eps)
  await api.policies.set(admin, tenant, { slas: { critical: tag === 'a' ? 48 : 24 } })
  const envelope = await w.org.release(`${tag}-only-fix`, '1.0.0', { scope: tenant })
  const release = await api.releases.add(admin, envelope)
  await api.releases.approve(admin, release.hash, tenant)
  await api.releases.approve(admin, shared.hash, tenant)
  const rollout = `${tag}-rollout`
  await api.rollouts.create(admin, { id: rollout, release: release.hash, target: { tenant }, phases: PHASES })
  for (const [i, ep] of approved.entries()) {
    const end = i % 2 === 0
      ? await ep.job(envelope, 'downloading', clock.now(), { rollout }).then(async (d) => [d, await ep.job(envelope, 'installed', clock.now(), { rollout })])
      : await ep.job(envelope, 'downloading', clock.now(), { rollout }).then(async (d) => [d, await ep.job(envelope, 'failed', clock.now(), { rollout, code: 'INSTALL_FAILED', reason: `install failed at ${tenant}` })])
    const r = await c.ingest(end)
    await c.settled()
    if (!r.results.every((x) => x.status === 'accepted')) throw new Error(`set-up: ${JSON.stringify(r.results)}`)
  }
  const hook = `${tag}-hook`
  await api.webhooks.create(admin, { id: hook, url: `http://127.0.0.1:9/${tag}`, events: ['sla.breached'], tenant })
  return {
    tenant,
    tokens: (await api.endpoints.listTokens(OWNER, { under: tenant })).map((x) => x.id),
    approved,
    spare,
    keyids: [...approved.map((e) => e.keyid), spare.keyid],
    node: (await c.endpoints.get(approved[0]!.keyid)).path,
    uids: (await api.fleet.walk(OWNER, tenant, { includeRemoved: true })).map((n) => n.uid),
    release,
    envelope,
    fresh: await w.org.release(`${tag}-next-fix`, '1.0.0', { scope: tenant }),
    rollout,
    hook
  }
}

async function setup (t: Test): Promise<Omit<Ctx, 'actor' | 'home'>> {
  const w = await world(t)
  const shared = await w.api.releases.add(OWNER, await w.org.release('shared-fix', '2.0.0'))
  const b = await side(w, 'mia', B, 'b', shared) // B's objects: made by the MSP's owner
  const a = await side(w, 'alice', A, 'a', shared)
  return { w, api: w.api, c: w.console, a, b, shared, orgFresh: await w.org.release('org-fix', '3.0.0') }
}

/** Strings that name something of the side: any of them in a result means the result shows it. */
function markers (s: Side): string[] {
  return [s.tenant.split('/').pop()!, ...s.keyids, ...s.tokens, ...s.uids, s.rollout, s.hook, s.release.hash, s.release.name, s.fresh.signed.name]
}

async function until (cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting for a live update')
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

const text = (v: unknown): string => typeof v === 'string' ? v : JSON.stringify(v)
const found = (v: unknown, marks: string[]): string[] => { const s = text(v); return marks.filter((m) => s.includes(m)) }

type Call = (x: Ctx) => Promise<unknown> | Observable<unknown>
const settle = (v: Promise<unknown> | Observable<unknown>): Promise<unknown> => isObservable(v) ? firstValueFrom(v) : v

interface Entry {
  /** Does the method change anything (a viewer must be refused)? */
  write: boolean
  /** Calls as alice on B's objects, or on targets that do not exist under B: each FORBIDDEN. */
  forbidden?: Call[]
  /** Reads whose result must show the actor's own data: A's only for alice, A's and B's for mia. */
  reads?: Call[]
  /** KPIs whose endpoint count must be A's for alice and A's plus B's for mia. */
  kpis?: Array<(x: Ctx) => Promise<Kpis>>
  /** Calls alice may make that name B's objects: they must leave B alone and tell nothing of it. */
  checks?: Array<(t: Test, x: Ctx) => Promise<void>>
}

/** The evidence bundle, parsed: the endpoint keys and tenants its certificates and events name. */
function evidenceNames (bundle: string): { holders: string[], tenants: string[], endpoints: string[] } {
  const doc = JSON.parse(bundle) as { certificates: Envelope[], events: Envelope[] }
  const signed = (e: Envelope) => e.signed as Record<string, string>
  return {
    holders: doc.certificates.map((e) => signed(e).holder!),
    tenants: [...doc.certificates, ...doc.events].map((e) => signed(e).tenant!),
    endpoints: doc.events.map((e) => signed(e).endpoint!)
  }
}

// Every admin API method, keyed 'namespace.method'.
const TABLE: Record<string, Entry> = {
  // ---- fleet: tenants, admins, audit
  'fleet.createTenant': { write: true, forbidden: [(x) => x.api.fleet.createTenant(x.actor, { parent: B, name: 'x', kind: 'group' }), (x) => x.api.fleet.createTenant(x.actor, { parent: `${B}/office`, name: 'x', kind: 'group' }), (x) => x.api.fleet.createTenant(x.actor, { parent: NOPE, name: 'x', kind: 'group' })] },
  'fleet.getTenant': { write: false, forbidden: [(x) => x.api.fleet.getTenant(x.actor, B), (x) => x.api.fleet.getTenant(x.actor, x.b.node), (x) => x.api.fleet.getTenant(x.actor, NOPE), (x) => x.api.fleet.getTenant(x.actor, B, { includeRemoved: true })] },
  'fleet.listChildren': {
    write: false,
    forbidden: [(x) => x.api.fleet.listChildren(x.actor, B), (x) => x.api.fleet.listChildren(x.actor, `${B}/office`), (x) => x.api.fleet.listChildren(x.actor, NOPE)],
    reads: [(x) => x.api.fleet.listChildren(x.actor, MSP), (x) => x.api.fleet.listChildren(x.actor, x.home, { includeRemoved: true })]
  },
  'fleet.walk': {
    write: false,
    forbidden: [(x) => x.api.fleet.walk(x.actor, B), (x) => x.api.fleet.walk(x.actor, NOPE)],
    reads: [(x) => x.api.fleet.walk(x.actor, ''), (x) => x.api.fleet.walk(x.actor, x.home, { includeRemoved: true })]
  },
  'fleet.renameTenant': { write: true, forbidden: [(x) => x.api.fleet.renameTenant(x.actor, B, 'pwned'), (x) => x.api.fleet.renameTenant(x.actor, x.b.node, 'pwned'), (x) => x.api.fleet.renameTenant(x.actor, NOPE, 'pwned')] },
  'fleet.setCustomerStatus': { write: true, forbidden: [(x) => x.api.fleet.setCustomerStatus(x.actor, B, 'set-up'), (x) => x.api.fleet.setCustomerStatus(x.actor, NOPE, 'set-up')] },
  'fleet.moveTenant': {
    write: true,
    forbidden: [
      (x) => x.api.fleet.moveTenant(x.actor, `${B}/office`, A), // take from B
      (x) => x.api.fleet.moveTenant(x.actor, x.b.node, `${A}/office`), // take one of B's endpoints
      (x) => x.api.fleet.moveTenant(x.actor, `${A}/pilot`, B), // push into B
      (x) => x.api.fleet.moveTenant(x.actor, NOPE, A)
    ]
  },
  'fleet.removeTenant': { write: true, forbidden: [(x) => x.api.fleet.removeTenant(x.actor, B), (x) => x.api.fleet.removeTenant(x.actor, `${B}/office`), (x) => x.api.fleet.removeTenant(x.actor, x.b.node), (x) => x.api.fleet.removeTenant(x.actor, NOPE)] },
  'fleet.createAdmin': { write: true, forbidden: [(x) => x.api.fleet.createAdmin(x.actor, { id: 'evil', sshKey: sshKey(), bindings: [{ role: 'owner', scope: B }] }), (x) => x.api.fleet.createAdmin(x.actor, { id: 'evil', sshKey: sshKey(), bindings: [{ role: 'owner', scope: A }, { role: 'viewer', scope: `${B}/office` }] }), (x) => x.api.fleet.createAdmin(x.actor, { id: 'evil', sshKey: sshKey(), bindings: [{ role: 'viewer', scope: NOPE }] })] },
  'fleet.getAdmin': { write: false, forbidden: [(x) => x.api.fleet.getAdmin(x.actor, 'bob'), (x) => x.api.fleet.getAdmin(x.actor, 'mia'), (x) => x.api.fleet.getAdmin(x.actor, 'nobody')] },
  'fleet.listAdmins': { write: false, reads: [(x) => x.api.fleet.listAdmins(x.actor)] },
  'fleet.grantRole': { write: true, forbidden: [(x) => x.api.fleet.grantRole(x.actor, 'bob', { role: 'viewer', scope: B }), (x) => x.api.fleet.grantRole(x.actor, x.actor, { role: 'owner', scope: B }), (x) => x.api.fleet.grantRole(x.actor, x.actor, { role: 'owner', scope: MSP }), (x) => x.api.fleet.grantRole(x.actor, x.actor, { role: 'owner', scope: NOPE })] },
  'fleet.revokeRole': { write: true, forbidden: [(x) => x.api.fleet.revokeRole(x.actor, 'bob', { role: 'owner', scope: B })] },
  'fleet.setAdminSshKey': { write: true, forbidden: [(x) => x.api.fleet.setAdminSshKey(x.actor, 'bob', sshKey('mine'))] },
  'fleet.setAdminTotpSecret': { write: true, forbidden: [(x) => x.api.fleet.setAdminTotpSecret(x.actor, 'bob', 'JBSWY3DPEHPK3PXP')] },
  'fleet.removeAdmin': { write: true, forbidden: [(x) => x.api.fleet.removeAdmin(x.actor, 'bob')] },
  'fleet.listAudit': { write: false, reads: [(x) => x.api.fleet.listAudit(x.actor)] },

  // ---- endpoints and enrollment tokens
  'endpoints.createToken': { write: true, forbidden: [B, `${B}/office`, NOPE].map((scope) => (x: Ctx) => x.api.endpoints.createToken(x.actor, { scope, expiresAt: new Date(x.w.clock.t + 86400_000), maxUses: 1, autoApprove: true })) },
  'endpoints.listTokens': {
    write: false,
    forbidden: [(x) => x.api.endpoints.listTokens(x.actor, { under: B }), (x) => x.api.endpoints.listTokens(x.actor, { under: NOPE })],
    reads: [(x) => x.api.endpoints.listTokens(x.actor), (x) => x.api.endpoints.listTokens(x.actor, { under: x.home })]
  },
  'endpoints.revokeToken': { write: true, forbidden: [(x) => x.api.endpoints.revokeToken(x.actor, x.b.tokens[0]!), (x) => x.api.endpoints.revokeToken(x.actor, x.b.tokens[1]!), (x) => x.api.endpoints.revokeToken(x.actor, '0123456789abcdef'), (x) => x.api.endpoints.revokeToken(x.actor, 'not-a-token')] },
  'endpoints.list': {
    write: false,
    forbidden: [(x) => x.api.endpoints.list(x.actor, { under: B }), (x) => x.api.endpoints.list(x.actor, { under: `${B}/office`, status: 'approved' }), (x) => x.api.endpoints.list(x.actor, { under: NOPE })],
    reads: [(x) => x.api.endpoints.list(x.actor), (x) => x.api.endpoints.list(x.actor, { under: x.home }), (x) => x.api.endpoints.list(x.actor, { status: 'quarantine' })]
  },
  'endpoints.list$': {
    write: false,
    forbidden: [(x) => x.api.endpoints.list$(x.actor, { under: B }, 10), (x) => x.api.endpoints.list$(x.actor, { under: `${B}/office` }, 10), (x) => x.api.endpoints.list$(x.actor, { under: NOPE }, 10)],
    reads: [(x) => x.api.endpoints.list$(x.actor, {}, 10), (x) => x.api.endpoints.list$(x.actor, { under: x.home, status: 'quarantine' }, 10)]
  },
  'endpoints.get': { write: false, forbidden: [(x) => x.api.endpoints.get(x.actor, x.b.approved[0]!.keyid), (x) => x.api.endpoints.get(x.actor, x.b.spare.keyid), (x) => x.api.endpoints.get(x.actor, UNKNOWN_KEY)] },
  'endpoints.approve': { write: true, forbidden: [(x) => x.api.endpoints.approve(x.actor, x.b.spare.keyid), (x) => x.api.endpoints.approve(x.actor, x.b.approved[0]!.keyid), (x) => x.api.endpoints.approve(x.actor, UNKNOWN_KEY)] },
  'endpoints.reject': { write: true, forbidden: [(x) => x.api.endpoints.reject(x.actor, x.b.spare.keyid), (x) => x.api.endpoints.reject(x.actor, UNKNOWN_KEY)] },
  'endpoints.remove': { write: true, forbidden: [(x) => x.api.endpoints.remove(x.actor, x.b.approved[1]!.keyid), (x) => x.api.endpoints.remove(x.actor, x.b.spare.keyid), (x) => x.api.endpoints.remove(x.actor, UNKNOWN_KEY)] },

  // ---- policies
  'policies.set': { write: true, forbidden: [B, `${B}/office`, NOPE, MSP].map((p) => (x: Ctx) => x.api.policies.set(x.actor, p, { slas: { critical: 1 } })) },
  'policies.get': { write: false, forbidden: [B, `${B}/office`, NOPE].map((p) => (x: Ctx) => x.api.policies.get(x.actor, p)) },
  'policies.clear': { write: true, forbidden: [B, NOPE].map((p) => (x: Ctx) => x.api.policies.clear(x.actor, p)) },
  'policies.effective': { write: false, forbidden: [(x) => x.api.policies.effective(x.actor, B), (x) => x.api.policies.effective(x.actor, `${B}/office`, { site: 'hq' }), (x) => x.api.policies.effective(x.actor, NOPE)] },

  // ---- releases
  'releases.add': { write: true, forbidden: [(x) => x.api.releases.add(x.actor, x.b.envelope), (x) => x.api.releases.add(x.actor, x.b.fresh), (x) => x.api.releases.add(x.actor, JSON.stringify(x.b.fresh)), (x) => x.api.releases.add(x.actor, x.orgFresh)] },
  'releases.approve': {
    write: true,
    forbidden: [
      (x) => x.api.releases.approve(x.actor, x.b.release.hash, B),
      (x) => x.api.releases.approve(x.actor, x.shared.hash, B),
      (x) => x.api.releases.approve(x.actor, x.shared.hash, NOPE),
      (x) => x.api.releases.approve(x.actor, x.b.release.hash, A), // B's release, for A: as if it did not exist
      (x) => x.api.releases.approve(x.actor, UNKNOWN_HASH, A)
    ]
  },
  'releases.list': { write: false, reads: [(x) => x.api.releases.list(x.actor)] },
  'releases.list$': { write: false, reads: [(x) => x.api.releases.list$(x.actor, 10)] },

  // ---- rollouts
  'rollouts.create': {
    write: true,
    forbidden: [
      (x) => x.api.rollouts.create(x.actor, { id: 'evil-1', release: x.shared.hash, target: { tenant: B }, phases: PHASES }),
      (x) => x.api.rollouts.create(x.actor, { id: 'evil-2', release: x.b.release.hash, target: { tenant: `${B}/office` }, phases: PHASES }),
      (x) => x.api.rollouts.create(x.actor, { id: 'evil-3', release: x.shared.hash, target: { tenant: NOPE }, phases: PHASES }),
      (x) => x.api.rollouts.create(x.actor, { id: 'evil-4', release: x.shared.hash, target: { tenant: MSP }, phases: PHASES }),
      (x) => x.api.rollouts.create(x.actor, { id: 'evil-5', release: x.b.release.hash, target: { tenant: A }, phases: PHASES }), // B's release, on A
      (x) => x.api.rollouts.create(x.actor, { id: 'evil-6', release: UNKNOWN_HASH, target: { tenant: A }, phases: PHASES })
    ],
    checks: [async (t, x) => {
      // A's own rollout naming endpoints outside its target: refused alike whether the endpoint is
      // B's (approved or in quarantine) or unknown, and nothing is stored that names it.
      const plan = (id: string, keyid: string, where: 'target' | 'select') => ({
        id,
        release: x.shared.hash,
        target: where === 'target' ? { tenant: A, endpoints: [x.a.approved[0]!.keyid, keyid] } : { tenant: A },
        phases: where === 'select' ? [{ name: 'pilot', select: { endpoints: [keyid] }, successThreshold: 1, errorThreshold: 0.5, minSoakMinutes: 0 }, ...PHASES] : PHASES
      })
      const answers = new Set<string>()
      for (const keyid of [x.b.approved[0]!.keyid, x.b.spare.keyid, UNKNOWN_KEY]) {
        for (const where of ['target', 'select'] as const) {
          const err = await x.api.rollouts.create(x.actor, plan('a-sneaky', keyid, where)).then(() => undefined, (e: Error & { code?: string }) => e)
          t.equal(err?.code, 'BAD_ROLLOUT', `${where} names ${keyid.slice(0, 8)}`)
          answers.add(String(err?.message).replace(keyid, 'KEY'))
        }
      }
      t.equal(answers.size, 1, 'with the same words')
      t.same(found(answers, [B]), [], 'not naming B')
      t.equal(await codeOf(x.api.rollouts.get(x.actor, 'a-sneaky')), 'FORBIDDEN', 'no rollout was stored')
      const narrow = await x.api.rollouts.create(x.actor, plan('a-narrow', x.a.approved[1]!.keyid, 'target'))
      t.same(narrow.phases.flatMap((p) => p.endpoints).sort(), [x.a.approved[0]!.keyid, x.a.approved[1]!.keyid].sort(), 'naming its own endpoints works')
      const assigned = parseDirective((await x.c.latestDirective())!.signed).assignments.filter((s) => s.rollout?.startsWith('a-')).flatMap((s) => s.target.endpoints ?? [])
      t.same(found(assigned, x.b.keyids), [], 'the directive assigns none of B\'s endpoints to A\'s rollouts')
    }]
  },
  'rollouts.get': { write: false, forbidden: [(x) => x.api.rollouts.get(x.actor, x.b.rollout), (x) => x.api.rollouts.get(x.actor, 'no-such-rollout')] },
  'rollouts.list': {
    write: false,
    forbidden: [(x) => x.api.rollouts.list(x.actor, { tenant: B }), (x) => x.api.rollouts.list(x.actor, { tenant: NOPE })],
    reads: [(x) => x.api.rollouts.list(x.actor), (x) => x.api.rollouts.list(x.actor, { tenant: x.home })]
  },
  'rollouts.list$': {
    write: false,
    forbidden: [(x) => x.api.rollouts.list$(x.actor, { tenant: B }, 10), (x) => x.api.rollouts.list$(x.actor, { tenant: NOPE }, 10)],
    reads: [(x) => x.api.rollouts.list$(x.actor, {}, 10), (x) => x.api.rollouts.list$(x.actor, { tenant: x.home }, 10)]
  },
  'rollouts.history': { write: false, forbidden: [(x) => x.api.rollouts.history(x.actor, x.b.rollout), (x) => x.api.rollouts.history(x.actor, 'no-such-rollout')] },
  'rollouts.pause': { write: true, forbidden: [(x) => x.api.rollouts.pause(x.actor, x.b.rollout), (x) => x.api.rollouts.pause(x.actor, 'no-such-rollout')] },
  'rollouts.resume': { write: true, forbidden: [(x) => x.api.rollouts.resume(x.actor, x.b.rollout), (x) => x.api.rollouts.resume(x.actor, 'no-such-rollout')] },
  'rollouts.abort': { write: true, forbidden: [(x) => x.api.rollouts.abort(x.actor, x.b.rollout), (x) => x.api.rollouts.abort(x.actor, 'no-such-rollout')] },
  'rollouts.rollback': { write: true, forbidden: [(x) => x.api.rollouts.rollback(x.actor, x.b.rollout), (x) => x.api.rollouts.rollback(x.actor, 'no-such-rollout')] },

  // ---- reports
  'reports.kpis': {
    write: false,
    forbidden: [B, `${B}/office`, NOPE, MSP, ''].map((p) => (x: Ctx) => x.api.reports.kpis(x.actor, p)),
    kpis: [(x) => x.api.reports.kpis(x.actor, x.home)]
  },
  'reports.kpis$': {
    write: false,
    forbidden: [B, NOPE, MSP].map((p) => (x: Ctx) => x.api.reports.kpis$(x.actor, p, 10)),
    kpis: [(x) => firstValueFrom(x.api.reports.kpis$(x.actor, x.home, 10))]
  },
  'reports.tenants$': {
    write: false,
    forbidden: [B, `${B}/office`, NOPE].map((p) => (x: Ctx) => x.api.reports.tenants$(x.actor, p, 10)),
    reads: [(x) => x.api.reports.tenants$(x.actor, '', 10), (x) => x.api.reports.tenants$(x.actor, MSP, 10), (x) => x.api.reports.tenants$(x.actor, x.home, 10)]
  },
  'reports.tree$': {
    write: false,
    forbidden: [B, `${B}/office`, NOPE, MSP].map((p) => (x: Ctx) => x.api.reports.tree$(x.actor, p, 10)),
    reads: [(x) => x.api.reports.tree$(x.actor, x.home, 10)],
    kpis: [async (x) => (await firstValueFrom(x.api.reports.tree$(x.actor, x.home, 10))).find((n) => n.path === x.home)!.kpis]
  },
  'reports.events$': {
    write: false,
    forbidden: [B, `${B}/office`, NOPE, MSP].map((p) => (x: Ctx) => x.api.reports.events$(x.actor, p, { ms: 10 })),
    reads: [(x) => x.api.reports.events$(x.actor, x.home, { ms: 10 })]
  },
  'reports.audit$': { write: false, reads: [(x) => x.api.reports.audit$(x.actor, { ms: 10 })] },
  'reports.report': {
    write: false,
    forbidden: [B, NOPE, MSP].map((p) => (x: Ctx) => x.api.reports.report(x.actor, p)),
    reads: [(x) => x.api.reports.report(x.actor, x.home)]
  },
  'reports.export': {
    write: false,
    forbidden: [[B, 'json'], [B, 'csv'], [B, 'html'], [NOPE, 'csv'], [MSP, 'html']].map(([p, f]) => (x: Ctx) => x.api.reports.export(x.actor, p!, f as 'json')),
    reads: (['json', 'csv', 'html'] as const).map((f) => (x: Ctx) => x.api.reports.export(x.actor, x.home, f))
  },
  'reports.evidence': {
    write: false,
    forbidden: [B, `${B}/office`, NOPE, MSP].map((p) => (x: Ctx) => x.api.reports.evidence(x.actor, p)),
    reads: [(x) => x.api.reports.evidence(x.actor, x.home)],
    checks: [async (t, x) => {
      const names = evidenceNames(await x.api.reports.evidence(x.actor, A))
      t.same(names.holders.sort(), x.a.approved.map((e) => e.keyid).sort(), 'a certificate for each of A\'s approved endpoints, no other')
      t.same([...new Set(names.endpoints)].sort(), x.a.approved.map((e) => e.keyid).sort(), 'events of A\'s endpoints only')
      t.same(names.tenants.filter((p) => !isWithinTenant(p, A)), [], 'every certificate and event names a tenant inside A')
    }]
  },
  'reports.records': {
    write: false,
    forbidden: [B, NOPE, MSP].map((p) => (x: Ctx) => x.api.reports.records(x.actor, p)),
    reads: [(x) => x.api.reports.records(x.actor, x.home)]
  },
  // The organisation's ingestion counters count every customer's events: organisation level only.
  'reports.counters': { write: false, forbidden: [(x) => x.api.reports.counters(x.actor)] },
  'reports.ingest': {
    write: true,
    forbidden: [
      async (x) => x.api.reports.ingest(x.actor, B, [await x.b.approved[0]!.job(x.b.envelope, 'installed', x.w.clock.now(), { rollout: x.b.rollout })]),
      (x) => x.api.reports.ingest(x.actor, NOPE, []),
      (x) => x.api.reports.ingest(x.actor, MSP, [])
    ],
    checks: [async (t, x) => {
      // B's events handed in under A: refused, all alike, whether the endpoint is B's (approved or
      // in quarantine) or unknown; the answers name nothing but what the events themselves say.
      const stranger = new SimEndpoint('stranger')
      stranger.tenant = `${B}/office`
      const events = [
        await x.b.approved[1]!.job(x.b.envelope, 'installed', x.w.clock.now(), { rollout: x.b.rollout }),
        await x.b.spare.job(x.b.envelope, 'installed', x.w.clock.now()),
        await stranger.job(x.b.envelope, 'installed', x.w.clock.now())
      ]
      const r = await x.api.reports.ingest(x.actor, A, events)
      t.same(r.results.map((e) => [e.status, e.code]), events.map(() => ['rejected', 'WRONG_TENANT']), 'each one WRONG_TENANT')
      const own = r.results.map((e, i) => String(e.detail).replaceAll(events[i]!.signed.endpoint.slice(0, 12), 'KEY').replaceAll(JSON.stringify(events[i]!.signed.tenant), 'TENANT'))
      t.equal(new Set(own).size, 1, 'with the same words')
      t.same(found(own, [B]), [], 'naming no tenant of B but the one each event claims')
      t.same(Object.keys(r.acks), [], 'no acknowledgement of any of them')
    }]
  },

  // ---- webhooks
  'webhooks.create': { write: true, forbidden: [B, `${B}/office`, NOPE, MSP, ''].map((tenant, i) => (x: Ctx) => x.api.webhooks.create(x.actor, { id: `evil-${i}`, url: 'http://127.0.0.1:9/evil', events: ['*'], tenant })) },
  'webhooks.list': { write: false, reads: [(x) => x.api.webhooks.list(x.actor)] },
  'webhooks.remove': { write: true, forbidden: [(x) => x.api.webhooks.remove(x.actor, x.b.hook), (x) => x.api.webhooks.remove(x.actor, 'no-such-hook')] },
  'webhooks.setEnabled': { write: true, forbidden: [(x) => x.api.webhooks.setEnabled(x.actor, x.b.hook, false), (x) => x.api.webhooks.setEnabled(x.actor, 'no-such-hook', true)] },
  // ---- swarm: the console's node, as if every endpoint of A and B were connected and one of each banned
  'swarm.status': { write: false, reads: [(x) => { onSwarm(x); return x.api.swarm.status(x.actor) }] },
  'swarm.status$': { write: false, reads: [(x) => { onSwarm(x); return x.api.swarm.status$(x.actor, 10) }] }
}

function onSwarm (x: Ctx): void {
  const until = new Date(Date.now() + 600_000).toISOString()
  x.c.swarmState = () => ({
    keyid: 'c'.repeat(64),
    peers: [...x.a.keyids, ...x.b.keyids].map((keyid) => ({ keyid, role: 'endpoint', tenant: '', site: null })),
    bans: [x.a.keyids[0]!, x.b.keyids[0]!].map((keyid) => ({ keyid, until, reason: 'sent a chunk that does not match its hash' }))
  })
}

/** Everything of B as the MSP's owner sees it. */
async function seeB (x: Omit<Ctx, 'actor' | 'home'>) {
  const { api } = x
  const bKeys = new Set(x.b.keyids)
  const directive = parseDirective((await x.c.latestDirective())!.signed)
  return {
    tree: await api.fleet.walk('mia', B, { includeRemoved: true }),
    bob: await api.fleet.getAdmin('mia', 'bob'),
    endpoints: await api.endpoints.list('mia', { under: B }),
    tokens: await api.endpoints.listTokens('mia', { under: B }),
    policies: [await api.policies.get('mia', B), await api.policies.effective('mia', `${B}/office`)],
    releases: (await api.releases.list('mia')).map((r) => ({ ...r, approvedFor: r.approvedFor.filter((p) => isWithinTenant(p, B)) })),
    rollouts: await api.rollouts.list('mia', { tenant: B }),
    history: await api.rollouts.history('mia', x.b.rollout),
    report: await api.reports.report('mia', B),
    evidence: await api.reports.evidence('mia', B),
    hooks: (await api.webhooks.list('mia')).filter((h) => isWithinTenant(h.tenant, B)),
    assignments: directive.assignments.filter((s) => (s.target.endpoints ?? []).some((k) => bKeys.has(k)))
  }
}

async function lastAuditSeq (c: Console): Promise<number> {
  return (await c.fleet.audit.list({ reverse: true, limit: 1 }))[0]?.seq ?? 0
}

t.test('the table covers every admin API method', async (t) => {
  const w = await world(t, { perGroup: 1 })
  const methods = API_NAMESPACES.flatMap((ns) => apiMethods(w.api, ns).map((m) => `${ns}.${m}`)).sort()
  t.same(Object.keys(TABLE).sort(), methods, 'add new admin API methods to TABLE')
  for (const [method, e] of Object.entries(TABLE)) {
    t.ok((e.forbidden?.length ?? 0) + (e.reads?.length ?? 0) + (e.kpis?.length ?? 0) > 0, `${method} is checked`)
    if (e.write) t.ok((e.forbidden?.length ?? 0) > 0, `${method} changes things: it has forbidden calls`)
  }
})

t.test("customer A's admin gets FORBIDDEN on every method for B's objects, and sees nothing of B", async (t) => {
  const s = await setup(t)
  const x: Ctx = { ...s, actor: 'alice', home: A }
  const bMarks = markers(s.b)
  const aMarks = markers(s.a)
  const before = await seeB(s)
  t.ok(before.endpoints.length === 3 && before.rollouts.length === 1 && before.hooks.length === 1 && before.report.records.length === 2, 'B has endpoints, a rollout, a webhook and patch records')

  let calls = 0
  for (const [method, { forbidden = [] }] of Object.entries(TABLE)) {
    for (const [i, call] of forbidden.entries()) {
      const seq = await lastAuditSeq(s.c)
      t.equal(await codeOf(settle(call(x))), 'FORBIDDEN', `${method} #${i}`)
      const entries = await s.c.fleet.audit.list({ from: seq + 1 })
      t.equal(entries.length, 1, `${method} #${i}: one audit entry`)
      t.match(entries[0], { admin: 'alice', result: 'FORBIDDEN' }, `${method} #${i}: audited as refused`)
      calls++
    }
  }
  t.comment(`${Object.keys(TABLE).length} methods, ${calls} forbidden calls`)

  let reads = 0
  for (const [method, { reads: list = [], kpis = [], checks = [] }] of Object.entries(TABLE)) {
    for (const [i, read] of list.entries()) {
      reads++
      const seen = await settle(read(x))
      t.same(found(seen, bMarks), [], `${method} read #${i} shows nothing of B`)
      t.ok(found(seen, aMarks).length > 0, `${method} read #${i} shows A's data`)
    }
    for (const [i, k] of kpis.entries()) t.equal((await k(x)).endpoints, s.a.approved.length, `${method} #${i}: A's endpoints only`)
    reads += kpis.length
    for (const [i, check] of checks.entries()) await t.test(`${method}: check #${i}`, (t) => check(t, x))
  }
  t.comment(`${reads} reads`)

  const audit = await s.api.fleet.listAudit('alice')
  t.same(audit.flatMap((e) => e.tenants).filter((p) => !isWithinTenant(p, A)), [], 'audit entries alice sees concern only A')
  t.notOk(audit.some((e) => e.result === 'FORBIDDEN' && e.tenants.some((p) => isWithinTenant(p, B))), 'her refused attempts on B are not shown to her')

  t.same(await seeB(s), before, "B's state is unchanged")
  t.equal(await s.c.fleet.admins.find('evil'), undefined, 'no admin was created')
  const bobSees = await s.api.fleet.listAudit('bob')
  t.ok(bobSees.some((e) => e.admin === 'alice' && e.result === 'FORBIDDEN'), "B's own admin sees the refused attempts on B")
})

t.test('the MSP owner sees both customers in lists, reports and exports', async (t) => {
  const s = await setup(t)
  const x: Ctx = { ...s, actor: 'mia', home: MSP }
  const aMarks = markers(s.a)
  const bMarks = markers(s.b)
  for (const [method, { reads = [], kpis = [] }] of Object.entries(TABLE)) {
    for (const [i, read] of reads.entries()) {
      const seen = await settle(read(x))
      t.ok(found(seen, aMarks).length > 0, `${method} read #${i} shows A`)
      t.ok(found(seen, bMarks).length > 0, `${method} read #${i} shows B`)
    }
    for (const [i, k] of kpis.entries()) t.equal((await k(x)).endpoints, s.a.approved.length + s.b.approved.length, `${method} #${i}: both customers' endpoints`)
  }
  const names = evidenceNames(await s.api.reports.evidence('mia', MSP))
  t.same(names.holders.sort(), [...s.a.approved, ...s.b.approved].map((e) => e.keyid).sort(), 'evidence holds both customers\' certificates')
  t.same([...new Set(names.endpoints)].sort(), [...s.a.approved, ...s.b.approved].map((e) => e.keyid).sort(), 'and their events')
  const csv = await s.api.reports.export('mia', MSP, 'csv')
  t.ok(csv.includes(`install failed at ${A}`) && csv.includes(`install failed at ${B}`), 'the CSV has both customers\' failures')
  t.same((await s.api.reports.records('mia', MSP)).map((r) => r.tenant).filter((p) => !isWithinTenant(p, A) && !isWithinTenant(p, B)), [])
  t.equal((await s.api.rollouts.get('mia', s.b.rollout)).id, s.b.rollout)
  t.equal((await s.api.endpoints.get('mia', s.b.spare.keyid)).status, 'quarantine')
  t.same((await s.api.releases.list('mia')).find((r) => r.hash === s.shared.hash)?.approvedFor, [A, B], 'the shared release shows both approvals')
  t.equal(await codeOf(s.api.reports.counters('mia')), 'FORBIDDEN', 'the ingestion counters are the organisation\'s')
  t.ok((await s.api.reports.counters(OWNER)).accepted > 0)
  // Its own changes to B work (the refusals above were about scope, not about the objects).
  await s.api.rollouts.pause('mia', s.b.rollout)
  await s.api.webhooks.setEnabled('mia', s.b.hook, false)
  t.equal((await s.api.rollouts.get('bob', s.b.rollout)).state, 'paused')
})

// A viewer's refusals on A's own objects, one or more per write method.
const VIEWER_WRITES: Record<string, Call[]> = {
  'fleet.createTenant': [(x) => x.api.fleet.createTenant(x.actor, { parent: A, name: 'x', kind: 'group' })],
  'fleet.renameTenant': [(x) => x.api.fleet.renameTenant(x.actor, A, 'x'), (x) => x.api.fleet.renameTenant(x.actor, x.a.node, 'x')],
  'fleet.setCustomerStatus': [(x) => x.api.fleet.setCustomerStatus(x.actor, A, 'set-up')],
  'fleet.moveTenant': [(x) => x.api.fleet.moveTenant(x.actor, x.a.node, `${A}/office`)],
  'fleet.removeTenant': [(x) => x.api.fleet.removeTenant(x.actor, `${A}/pilot`), (x) => x.api.fleet.removeTenant(x.actor, x.a.node)],
  'fleet.createAdmin': [(x) => x.api.fleet.createAdmin(x.actor, { id: 'x', sshKey: sshKey(), bindings: [{ role: 'viewer', scope: A }] })],
  'fleet.grantRole': [(x) => x.api.fleet.grantRole(x.actor, x.actor, { role: 'owner', scope: A })],
  'fleet.revokeRole': [(x) => x.api.fleet.revokeRole(x.actor, 'alice', { role: 'owner', scope: A })],
  'fleet.setAdminSshKey': [(x) => x.api.fleet.setAdminSshKey(x.actor, x.actor, sshKey())],
  'fleet.setAdminTotpSecret': [(x) => x.api.fleet.setAdminTotpSecret(x.actor, 'alice', null)],
  'fleet.removeAdmin': [(x) => x.api.fleet.removeAdmin(x.actor, 'alice')],
  'endpoints.createToken': [(x) => x.api.endpoints.createToken(x.actor, { scope: `${A}/office`, expiresAt: new Date(x.w.clock.t + 86400_000), maxUses: 1, autoApprove: true })],
  'endpoints.revokeToken': [(x) => x.api.endpoints.revokeToken(x.actor, x.a.tokens[0]!)],
  'endpoints.approve': [(x) => x.api.endpoints.approve(x.actor, x.a.spare.keyid)],
  'endpoints.reject': [(x) => x.api.endpoints.reject(x.actor, x.a.spare.keyid)],
  'endpoints.remove': [(x) => x.api.endpoints.remove(x.actor, x.a.approved[0]!.keyid)],
  'policies.set': [(x) => x.api.policies.set(x.actor, A, { slas: { critical: 1 } })],
  'policies.clear': [(x) => x.api.policies.clear(x.actor, A)],
  'releases.add': [(x) => x.api.releases.add(x.actor, x.a.fresh)],
  'releases.approve': [(x) => x.api.releases.approve(x.actor, x.shared.hash, `${A}/pilot`), (x) => x.api.releases.approve(x.actor, x.a.release.hash, A)],
  'rollouts.create': [(x) => x.api.rollouts.create(x.actor, { id: 'vic-1', release: x.a.release.hash, target: { tenant: A }, phases: PHASES })],
  'rollouts.pause': [(x) => x.api.rollouts.pause(x.actor, x.a.rollout)],
  'rollouts.resume': [(x) => x.api.rollouts.resume(x.actor, x.a.rollout)],
  'rollouts.abort': [(x) => x.api.rollouts.abort(x.actor, x.a.rollout)],
  'rollouts.rollback': [(x) => x.api.rollouts.rollback(x.actor, x.a.rollout)],
  'reports.ingest': [async (x) => x.api.reports.ingest(x.actor, A, [await x.a.approved[0]!.job(x.a.envelope, 'installed', x.w.clock.now(), { rollout: x.a.rollout })])],
  'webhooks.create': [(x) => x.api.webhooks.create(x.actor, { id: 'vic-hook', url: 'http://127.0.0.1:9/vic', events: ['*'], tenant: A })],
  'webhooks.remove': [(x) => x.api.webhooks.remove(x.actor, x.a.hook)],
  'webhooks.setEnabled': [(x) => x.api.webhooks.setEnabled(x.actor, x.a.hook, false)]
}

// A viewer's reads of A, one per read method: 'ok' or the refusal it gets on purpose.
const VIEWER_READS: Record<string, [Call, 'ok' | 'FORBIDDEN']> = {
  'fleet.getTenant': [(x) => x.api.fleet.getTenant(x.actor, x.a.node), 'ok'],
  'fleet.listChildren': [(x) => x.api.fleet.listChildren(x.actor, A), 'ok'],
  'fleet.walk': [(x) => x.api.fleet.walk(x.actor, A), 'ok'],
  'fleet.listAudit': [(x) => x.api.fleet.listAudit(x.actor), 'ok'],
  'fleet.getAdmin': [(x) => x.api.fleet.getAdmin(x.actor, 'alice'), 'FORBIDDEN'], // managing admins is for owners
  'fleet.listAdmins': [(x) => x.api.fleet.listAdmins(x.actor), 'FORBIDDEN'],
  'endpoints.listTokens': [(x) => x.api.endpoints.listTokens(x.actor, { under: A }), 'ok'],
  'endpoints.list': [(x) => x.api.endpoints.list(x.actor, { under: A }), 'ok'],
  'endpoints.get': [(x) => x.api.endpoints.get(x.actor, x.a.spare.keyid), 'ok'],
  'policies.get': [(x) => x.api.policies.get(x.actor, A), 'ok'],
  'policies.effective': [(x) => x.api.policies.effective(x.actor, `${A}/office`), 'ok'],
  'releases.list': [(x) => x.api.releases.list(x.actor), 'ok'],
  'releases.list$': [(x) => x.api.releases.list$(x.actor, 10), 'ok'],
  'endpoints.list$': [(x) => x.api.endpoints.list$(x.actor, { under: A }, 10), 'ok'],
  'rollouts.list$': [(x) => x.api.rollouts.list$(x.actor, { tenant: A }, 10), 'ok'],
  'reports.tenants$': [(x) => x.api.reports.tenants$(x.actor, '', 10), 'ok'],
  'reports.tree$': [(x) => x.api.reports.tree$(x.actor, A, 10), 'ok'],
  'reports.events$': [(x) => x.api.reports.events$(x.actor, A, { ms: 10 }), 'ok'],
  'reports.audit$': [(x) => x.api.reports.audit$(x.actor, { ms: 10 }), 'ok'],
  'swarm.status': [(x) => { onSwarm(x); return x.api.swarm.status(x.actor) }, 'ok'],
  'swarm.status$': [(x) => { onSwarm(x); return x.api.swarm.status$(x.actor, 10) }, 'ok'],
  'rollouts.get': [(x) => x.api.rollouts.get(x.actor, x.a.rollout), 'ok'],
  'rollouts.list': [(x) => x.api.rollouts.list(x.actor, { tenant: A }), 'ok'],
  'rollouts.history': [(x) => x.api.rollouts.history(x.actor, x.a.rollout), 'ok'],
  'reports.kpis': [(x) => x.api.reports.kpis(x.actor, A), 'ok'],
  'reports.kpis$': [(x) => x.api.reports.kpis$(x.actor, A, 10), 'ok'],
  'reports.report': [(x) => x.api.reports.report(x.actor, A), 'ok'],
  'reports.export': [(x) => x.api.reports.export(x.actor, A, 'html'), 'ok'],
  'reports.evidence': [(x) => x.api.reports.evidence(x.actor, A), 'ok'],
  'reports.records': [(x) => x.api.reports.records(x.actor, A), 'ok'],
  'reports.counters': [(x) => x.api.reports.counters(x.actor), 'FORBIDDEN'], // organisation level
  'webhooks.list': [(x) => x.api.webhooks.list(x.actor), 'FORBIDDEN'] // webhooks are for owners
}

t.test('a viewer scoped to A reads A but cannot change anything in it', async (t) => {
  const s = await setup(t)
  await s.api.fleet.createAdmin('alice', { id: 'vic', sshKey: sshKey(), bindings: [{ role: 'viewer', scope: A }] })
  const x: Ctx = { ...s, actor: 'vic', home: A }
  t.same([...Object.keys(VIEWER_WRITES)].sort(), Object.entries(TABLE).filter(([, e]) => e.write).map(([m]) => m).sort(), 'a refusal for every write method')
  t.same([...Object.keys(VIEWER_READS)].sort(), Object.entries(TABLE).filter(([, e]) => !e.write).map(([m]) => m).sort(), 'a read for every read method')

  const seeA = async () => ({
    tree: await s.api.fleet.walk('alice', A, { includeRemoved: true }),
    admins: await s.api.fleet.listAdmins('alice'),
    endpoints: await s.api.endpoints.list('alice', { under: A }),
    tokens: await s.api.endpoints.listTokens('alice', { under: A }),
    policy: await s.api.policies.get('alice', A),
    releases: await s.api.releases.list('alice'),
    rollouts: await s.api.rollouts.list('alice', { tenant: A }),
    report: await s.api.reports.report('alice', A),
    hooks: await s.api.webhooks.list('alice')
  })
  const before = await seeA()
  for (const [method, calls] of Object.entries(VIEWER_WRITES)) {
    for (const [i, call] of calls.entries()) {
      const seq = await lastAuditSeq(s.c)
      t.equal(await codeOf(settle(call(x))), 'FORBIDDEN', `${method} #${i}`)
      t.match(await s.c.fleet.audit.list({ from: seq + 1 }), [{ admin: 'vic', result: 'FORBIDDEN' }], `${method} #${i}: audited`)
    }
  }
  t.same(await seeA(), before, "A's state is unchanged")

  const bMarks = markers(s.b)
  for (const [method, [call, expected]] of Object.entries(VIEWER_READS)) {
    if (expected === 'FORBIDDEN') { t.equal(await codeOf(settle(call(x))), 'FORBIDDEN', method); continue }
    const seen = await settle(call(x))
    t.ok(seen !== undefined && seen !== null, `${method} reads A`)
    t.same(found(seen, bMarks), [], `${method} shows nothing of B`)
  }
  t.equal((await s.api.reports.kpis('vic', A)).endpoints, s.a.approved.length)
  t.same((await s.api.rollouts.list('vic')).map((r) => r.id), [s.a.rollout])
  t.ok((await s.api.endpoints.list('vic')).some((e) => e.keyid === s.a.spare.keyid), 'sees the endpoint waiting in quarantine')
})

t.test("live subscriptions: while B's endpoints report and its rollout changes, A's admin is sent A's changes and nothing of B", async (t) => {
  const s = await setup(t)
  const bMarks = [...markers(s.b), 'b secret']
  const seen = { endpoints: [] as unknown[], rollouts: [] as Array<Array<{ id: string, state: string }>>, events: [] as Array<Array<{ endpoint?: string }>>, tree: [] as unknown[], audit: [] as unknown[] }
  const subs = [
    s.api.endpoints.list$('alice', {}, 10).subscribe((u) => seen.endpoints.push(u)),
    s.api.rollouts.list$('alice', {}, 10).subscribe((l) => seen.rollouts.push(l)),
    s.api.reports.events$('alice', A, { last: 5, ms: 10 }).subscribe((l) => seen.events.push(l)),
    s.api.reports.tree$('alice', A, 10).subscribe((l) => seen.tree.push(l)),
    s.api.reports.audit$('alice', { ms: 10 }).subscribe((l) => seen.audit.push(l))
  ]
  t.teardown(() => { for (const sub of subs) sub.unsubscribe() })
  await until(() => Object.values(seen).every((l) => l.length > 0))
  t.ok(seen.events[0]!.length <= 5, 'the first events message holds at most `last` lines')

  // B changes first, then A: once A's changes have arrived, B's would have too.
  await s.c.ingest([await s.b.approved[0]!.transfer(s.b.release.manifest, { origin: 1, site: 2, peer: 3, local: 0 }, s.w.clock.now())])
  await s.c.ingest([await s.b.approved[1]!.job(s.b.envelope, 'failed', s.w.clock.now(), { rollout: s.b.rollout, code: 'INSTALL_FAILED', reason: 'b secret' })])
  await s.api.rollouts.pause('mia', s.b.rollout)
  await s.c.ingest([await s.a.approved[0]!.transfer(s.a.release.manifest, { origin: 1, site: 2, peer: 3, local: 0 }, s.w.clock.now())])
  await s.api.rollouts.pause('alice', s.a.rollout)
  await until(() => found(seen.endpoints.slice(1), [s.a.approved[0]!.keyid]).length > 0)
  await until(() => seen.rollouts.some((l) => l.some((r) => r.id === s.a.rollout && r.state === 'paused')))
  await until(() => seen.events.slice(1).flat().some((l) => l.endpoint === s.a.approved[0]!.keyid))
  await until(() => found(seen.audit.slice(1), ['rollout.pause']).length > 0)

  for (const [what, messages] of Object.entries(seen)) t.same(found(messages, bMarks), [], `${what}: no message names anything of B`)
  t.match(seen.endpoints[seen.endpoints.length - 1], { reset: false, loaded: true, rows: [{ keyid: s.a.approved[0]!.keyid, bytes: { site: 2 } }] }, 'an endpoint change comes alone, with what it reported')
  t.ok(found(seen.audit.slice(1), ['alice']).length > 0 && found(seen.audit.slice(1), ['mia']).length === 0, "the audit tail shows alice's pause, not mia's pause of B")
})

t.test('a live subscription ends with FORBIDDEN once its admin loses the right', async (t) => {
  const w = await world(t, { perGroup: 1 })
  await w.api.fleet.createAdmin(OWNER, { id: 'vic', sshKey: sshKey(), bindings: [{ role: 'viewer', scope: A }] })
  const errors: string[] = []
  let messages = 0
  const watch = { tree: w.api.reports.tree$('vic', A, 10), kpis: w.api.reports.kpis$('vic', A, 10) }
  for (const [name, live] of Object.entries(watch)) {
    const sub = (live as typeof watch.tree).subscribe({ next: () => { messages++ }, error: (e: { code?: string }) => { errors.push(`${name}: ${String(e.code)}`) } })
    t.teardown(() => sub.unsubscribe())
  }
  await until(() => messages >= 2)
  await w.api.fleet.revokeRole(OWNER, 'vic', { role: 'viewer', scope: A })
  const seq = await lastAuditSeq(w.console)
  // The next refresh after the recheck interval finds the right gone.
  await new Promise((resolve) => setTimeout(resolve, 1100))
  await w.console.ingest([await w.endpoints.get(`${A}/pilot`)![0]!.transfer('00'.repeat(32), { origin: 1, site: 0, peer: 0, local: 0 }, w.clock.now())])
  await until(() => errors.length >= 2)
  t.same(errors.sort(), ['kpis: FORBIDDEN', 'tree: FORBIDDEN'], 'each live method ends')
  const refusals = (await w.console.fleet.audit.list({ from: seq + 1 })).map((e) => [e.admin, e.action, e.result])
  t.same(refusals.sort(), [['vic', 'report.kpis-watch', 'FORBIDDEN'], ['vic', 'report.tree-watch', 'FORBIDDEN']], 'and each refusal is audited')
})
