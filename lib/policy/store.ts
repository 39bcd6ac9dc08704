// Policies in LevelDB: one record per tree node, keyed by the node's stable uid so a policy follows
// its node through moves, and one for the organisation itself (path '', which has no node). A
// record keeps the policy in force, when it was set, and the few versions before it; who set it
// is the audit log's business (pass its entry as WriteOptions.extra to commit both at once).
//
// Keys in the sublevel:  u!<uid> → record,  org → record
import { PatchswarmError } from '../errors.js'
import { assertSafeName } from '../content/paths.js'
import { MAX_TENANT_DEPTH } from '../trust/fields.js'
import { sublevel, type Database, type Sublevel } from '../store/db.js'
import { commit, Mutex, systemClock, type FleetClock, type WriteOptions } from '../fleet/common.js'
import { assertTenantPath, type TenantNode, type TenantTree } from '../fleet/tenants.js'
import { effectivePolicy, parsePolicy, type PolicyDocument, type ResolvedPolicy, type SiteCourtesy } from './policy.js'

/** Earlier versions kept per node, newest first. */
export const POLICY_HISTORY = 10

export interface PolicyVersion {
  /** null: the policy was cleared. */
  policy: PolicyDocument | null
  updatedAt: string
}

interface PolicyRecord extends PolicyVersion {
  /** The versions before this one, newest first, at most POLICY_HISTORY. */
  history: PolicyVersion[]
}

export interface StoredPolicy {
  path: string
  /** The node's uid; null for the organisation (''). */
  uid: string | null
  policy: PolicyDocument
  updatedAt: string
}

export interface EffectivePolicyAt extends ResolvedPolicy {
  path: string
  /** With `site`: that site's courtesy (undefined: no limits) and the path that set it. */
  site?: { name: string, courtesy: SiteCourtesy | undefined, from: string | null }
}

export interface PolicyStoreOptions {
  tree: TenantTree
  clock?: FleetClock
  sublevelName?: string
}

const ORG_KEY = 'org'
const uidKey = (uid: string) => `u!${uid}`

export class PolicyStore {
  readonly db: Database
  private readonly store: Sublevel
  private readonly tree: TenantTree
  private readonly clock: FleetClock
  private readonly lock = new Mutex()

  constructor (db: Database, opts: PolicyStoreOptions) {
    if (opts?.tree === undefined) throw PatchswarmError.BAD_ARGUMENT('PolicyStore needs { tree }')
    this.db = db
    this.tree = opts.tree
    this.store = sublevel(db, opts.sublevelName ?? 'policy')
    this.clock = opts.clock ?? systemClock
  }

  /** The policy set at `path` itself ('' = the organisation), or undefined. NOT_FOUND without a node there. */
  async get (path: string): Promise<StoredPolicy | undefined> {
    const { key, uid } = await this.keyOf(path)
    const record = await this.store.get(key) as PolicyRecord | undefined
    if (record?.policy == null) return undefined
    return { path, uid, policy: record.policy, updatedAt: record.updatedAt }
  }

  /** The versions set at `path`, newest (the one in force, or its clearing) first. */
  async history (path: string): Promise<PolicyVersion[]> {
    const { key } = await this.keyOf(path)
    const record = await this.store.get(key) as PolicyRecord | undefined
    if (record === undefined) return []
    return [{ policy: record.policy, updatedAt: record.updatedAt }, ...record.history]
  }

  /** Validates and sets the policy at `path`, replacing the one there (BAD_POLICY, BAD_WINDOW, UNSAFE_PATH). */
  async set (path: string, policy: unknown, wopts: WriteOptions = {}): Promise<StoredPolicy> {
    assertTenantPath(path)
    const doc = parsePolicy(policy)
    return this.lock.run(async () => {
      const { key, uid } = await this.keyOf(path)
      const at = this.clock().toISOString()
      await this.write(key, { policy: doc, updatedAt: at }, wopts)
      return { path, uid, policy: doc, updatedAt: at }
    })
  }

  /** Removes the policy at `path` so it inherits everything; false (and nothing written) if none was set. */
  async clear (path: string, wopts: WriteOptions = {}): Promise<boolean> {
    assertTenantPath(path)
    return this.lock.run(async () => {
      const { key } = await this.keyOf(path)
      const record = await this.store.get(key) as PolicyRecord | undefined
      if (record?.policy == null) return false
      await this.write(key, { policy: null, updatedAt: this.clock().toISOString() }, wopts, record)
      return true
    })
  }

  /** The policy in force at `path`: the organisation's, then each ancestor's, then its own. */
  async effective (path: string, opts: { site?: string } = {}): Promise<EffectivePolicyAt> {
    assertTenantPath(path)
    if (opts.site !== undefined) assertSafeName(opts.site, 'site name')
    const levels: Array<{ path: string, key: string }> = [{ path: '', key: ORG_KEY }]
    if (path !== '') for (const n of await this.lineOf(path)) levels.push({ path: n.path, key: uidKey(n.uid) })
    const records = await this.store.getMany(levels.map((l) => l.key)) as (PolicyRecord | undefined)[]
    const resolved = effectivePolicy(levels.map((l, i) => ({ path: l.path, policy: records[i]?.policy ?? null })))
    if (opts.site === undefined) return { path, ...resolved }
    const name = opts.site
    const set = Object.hasOwn(resolved.policy.courtesy, name)
    return {
      path,
      ...resolved,
      site: { name, courtesy: set ? resolved.policy.courtesy[name] : undefined, from: set ? resolved.sources.courtesy[name]! : null }
    }
  }

  /** The node at `path` and its ancestors, top first. */
  private async lineOf (path: string): Promise<TenantNode[]> {
    const node = await this.tree.get(path)
    const line = [node]
    for (let parent = node.parentUid; parent !== null;) {
      const p = await this.tree.getByUid(parent, { includeRemoved: true })
      if (p === undefined || line.length > MAX_TENANT_DEPTH) throw PatchswarmError.BAD_STATE(`tenant tree: the ancestors of ${path} cannot be read`)
      line.unshift(p)
      parent = p.parentUid
    }
    return line
  }

  private async keyOf (path: string): Promise<{ key: string, uid: string | null }> {
    assertTenantPath(path)
    if (path === '') return { key: ORG_KEY, uid: null }
    const node = await this.tree.get(path)
    return { key: uidKey(node.uid), uid: node.uid }
  }

  private async write (key: string, next: PolicyVersion, wopts: WriteOptions, old?: PolicyRecord): Promise<void> {
    const prev = old ?? await this.store.get(key) as PolicyRecord | undefined
    const history = prev === undefined ? [] : [{ policy: prev.policy, updatedAt: prev.updatedAt }, ...prev.history].slice(0, POLICY_HISTORY)
    const record: PolicyRecord = { ...next, history }
    await commit(this.db, [{ type: 'put', sublevel: this.store, key, value: record }], wopts.extra)
  }
}
