// The tenant tree in the MSP model: distributor › msp-manager › msp › managed-msp › customer ›
// group (nested) › endpoint. Every node has a stable internal `uid` and a current tenant `path`
// (safe names joined by '/'); moves change paths but never uids, so history and references that
// hold a uid survive them. Removal marks a subtree removed (hidden by default) and keeps it, path
// included, so old audit entries still resolve. Each change is validated in full and then written
// as one atomic LevelDB batch; refused changes write nothing.
//
// Keys in the sublevel:  n!<uid> → node,  p!<path> → uid,  c!<parentUid|root>!<name> → uid
import { randomUUID } from 'node:crypto'
import { PatchswarmError } from '../errors.js'
import { assertSafeName } from '../content/paths.js'
import { checkTenantPath } from '../trust/fields.js'
import { sublevel, type Database, type Sublevel } from '../store/db.js'
import { commit, Mutex, systemClock, type FleetClock, type FleetOp, type WriteOptions } from './common.js'

export const TENANT_KINDS = ['distributor', 'msp-manager', 'msp', 'managed-msp', 'customer', 'group', 'endpoint'] as const
export type TenantKind = typeof TENANT_KINDS[number]

export const CUSTOMER_STATUSES = ['not-set-up', 'set-up', 'removed'] as const
export type CustomerStatus = typeof CUSTOMER_STATUSES[number]

/** Which kinds a node of each kind may live under; `null` is the top of the organisation. */
export const ALLOWED_PARENTS: Readonly<Record<TenantKind, readonly (TenantKind | null)[]>> = {
  distributor: [null],
  'msp-manager': [null, 'distributor'],
  msp: [null, 'distributor', 'msp-manager'],
  'managed-msp': ['msp'],
  customer: ['msp', 'managed-msp'],
  group: ['customer', 'group'],
  endpoint: ['customer', 'group']
}

export const MAX_DISPLAY_NAME = 200

export interface TenantHistoryEntry {
  at: string
  op: 'create' | 'rename' | 'move' | 'remove' | 'status'
  /** The node's path after the change. */
  path: string
  /** For moves: the path before. */
  from?: string
  displayName?: string
  status?: CustomerStatus
}

export interface TenantNode {
  /** Stable internal id; never changes. */
  uid: string
  /** Current tenant path, e.g. 'dist-1/msp-1/acme/sales'; changes when an ancestor moves. */
  path: string
  /** The last segment of the path. */
  name: string
  parentUid: string | null
  kind: TenantKind
  displayName: string
  /** Customers only. */
  status?: CustomerStatus
  removed: boolean
  createdAt: string
  updatedAt: string
  removedAt?: string
  history: TenantHistoryEntry[]
}

export interface CreateTenantInput {
  /** Parent tenant path, '' for the top of the organisation. */
  parent: string
  name: string
  kind: TenantKind
  displayName?: string
}

export interface ReadOptions {
  includeRemoved?: boolean
}

export interface CreateOptions extends WriteOptions {
  /**
   * The new node's uid, for a caller whose extra operations must refer to the node (the endpoint
   * registry keys its records by it). A fresh random UUID; refused if any node has it already.
   */
  uid?: string
}

/** One entry of the path index: a node's current path and its uid. */
export interface PathEntry {
  path: string
  uid: string
}

const ROOT = 'root'
const nodeKey = (uid: string) => `n!${uid}`
const pathKey = (path: string) => `p!${path}`
const childPrefix = (parentUid: string | null) => `c!${parentUid ?? ROOT}!`
const childKey = (parentUid: string | null, name: string) => childPrefix(parentUid) + name

export function assertTenantPath (path: unknown, what = 'tenant path'): string {
  if (typeof path !== 'string') throw PatchswarmError.UNSAFE_PATH(`${what} is not a string`)
  const problem = checkTenantPath(path)
  if (problem) throw PatchswarmError.UNSAFE_PATH(`${what} ${JSON.stringify(path).slice(0, 80)}: ${problem}`)
  return path
}

export function joinTenantPath (parent: string, name: string): string {
  return parent === '' ? name : `${parent}/${name}`
}

/** The parent path of a tenant path ('' for a top-level node). */
export function parentTenantPath (path: string): string {
  const i = path.lastIndexOf('/')
  return i < 0 ? '' : path.slice(0, i)
}

function assertKind (kind: unknown): TenantKind {
  if (typeof kind !== 'string' || !(TENANT_KINDS as readonly string[]).includes(kind)) {
    throw PatchswarmError.BAD_ARGUMENT(`unknown tenant kind ${JSON.stringify(kind)?.slice(0, 40)}`)
  }
  return kind as TenantKind
}

function assertDisplayName (s: unknown): string {
  // eslint-disable-next-line no-control-regex
  if (typeof s !== 'string' || s.trim() === '' || s.length > MAX_DISPLAY_NAME || /[\u0000-\u001f\u007f-\u009f]/.test(s)) {
    throw PatchswarmError.BAD_ARGUMENT(`display name must be 1-${MAX_DISPLAY_NAME} printable characters`)
  }
  return s
}

function checkParentKind (kind: TenantKind, parent: TenantNode | null): void {
  const parentKind = parent?.kind ?? null
  if (!ALLOWED_PARENTS[kind].includes(parentKind)) {
    const where = parent ? `a ${parent.kind} (${parent.path})` : 'the top of the organisation'
    throw PatchswarmError.BAD_ARGUMENT(`a ${kind} cannot live under ${where}; allowed: ${ALLOWED_PARENTS[kind].map((k) => k ?? 'top level').join(', ')}`)
  }
}

export class TenantTree {
  readonly db: Database
  private readonly store: Sublevel
  private readonly clock: FleetClock
  private readonly lock = new Mutex()

  constructor (db: Database, opts: { clock?: FleetClock, sublevelName?: string } = {}) {
    this.db = db
    this.store = sublevel(db, opts.sublevelName ?? 'fleet-tenants')
    this.clock = opts.clock ?? systemClock
  }

  // ---- reads -------------------------------------------------------------------------------

  async getByUid (uid: string, opts: ReadOptions = {}): Promise<TenantNode | undefined> {
    if (typeof uid !== 'string' || uid === '') return undefined
    const node = await this.store.get(nodeKey(uid)) as TenantNode | undefined
    if (!node || (node.removed && !opts.includeRemoved)) return undefined
    return node
  }

  async uidOf (path: string): Promise<string | undefined> {
    assertTenantPath(path)
    if (path === '') return undefined
    return await this.store.get(pathKey(path)) as string | undefined
  }

  /** The node at `path`, or undefined; removed nodes only with `includeRemoved`. */
  async find (path: string, opts: ReadOptions = {}): Promise<TenantNode | undefined> {
    const uid = await this.uidOf(path)
    return uid === undefined ? undefined : this.getByUid(uid, opts)
  }

  /** The node at `path`; NOT_FOUND if there is none (or it is removed and `includeRemoved` is off). */
  async get (path: string, opts: ReadOptions = {}): Promise<TenantNode> {
    const node = await this.find(path, opts)
    if (!node) throw PatchswarmError.NOT_FOUND(`no tenant at ${JSON.stringify(path).slice(0, 120)}`)
    return node
  }

  /**
   * The path index of the subtree at `path` ('' = everything), the node itself included and
   * removed nodes too, sorted by path. One range read: no recursion, no node loaded.
   */
  async pathsUnder (path: string): Promise<PathEntry[]> {
    assertTenantPath(path)
    const below = path === '' ? { gt: pathKey(''), lt: pathKey('\xff') } : { gt: pathKey(path + '/'), lt: pathKey(path + '/\xff') }
    const rows = await this.store.iterator(below).all() as Array<[string, string]>
    const out = rows.map(([k, uid]) => ({ path: k.slice(pathKey('').length), uid }))
    if (path !== '') {
      const uid = await this.store.get(pathKey(path)) as string | undefined
      if (uid !== undefined) out.unshift({ path, uid })
    }
    return out
  }

  /** Direct children of `path` ('' = top-level nodes), ordered by name. */
  async listChildren (path: string, opts: ReadOptions = {}): Promise<TenantNode[]> {
    const parentUid = path === '' ? null : (await this.get(path, opts)).uid
    return this.childrenOf(parentUid, opts)
  }

  /** The subtree at `path` in pre-order, the node itself first ('' = the whole organisation). */
  async walk (path: string, opts: ReadOptions = {}): Promise<TenantNode[]> {
    const out: TenantNode[] = []
    const visit = async (node: TenantNode): Promise<void> => {
      out.push(node)
      for (const child of await this.childrenOf(node.uid, opts)) await visit(child)
    }
    if (path === '') {
      for (const top of await this.childrenOf(null, opts)) await visit(top)
    } else {
      await visit(await this.get(path, opts))
    }
    return out
  }

  private async childrenOf (parentUid: string | null, opts: ReadOptions): Promise<TenantNode[]> {
    const prefix = childPrefix(parentUid)
    const uids = await this.store.values({ gt: prefix, lt: prefix + '\xff' }).all() as string[]
    const nodes = await this.store.getMany(uids.map(nodeKey)) as (TenantNode | undefined)[]
    return nodes.filter((n): n is TenantNode => n !== undefined && (!n.removed || !!opts.includeRemoved))
  }

  // ---- writes ------------------------------------------------------------------------------

  async create (input: CreateTenantInput, wopts: CreateOptions = {}): Promise<TenantNode> {
    if (input === null || typeof input !== 'object') throw PatchswarmError.BAD_ARGUMENT('create needs { parent, name, kind }')
    const parentPath = assertTenantPath(input.parent, 'parent')
    const name = assertSafeName(input.name, 'tenant name')
    const kind = assertKind(input.kind)
    const displayName = assertDisplayName(input.displayName ?? name)
    const path = assertTenantPath(joinTenantPath(parentPath, name))
    const uid = wopts.uid ?? randomUUID()
    if (typeof uid !== 'string' || !/^[0-9a-f-]{36}$/.test(uid)) throw PatchswarmError.BAD_ARGUMENT('uid must be a UUID')
    return this.lock.run(async () => {
      const parent = await this.parentAt(parentPath, 'parent')
      checkParentKind(kind, parent)
      const existing = await this.store.get(pathKey(path)) as string | undefined
      if (existing !== undefined) {
        const old = await this.getByUid(existing, { includeRemoved: true })
        throw PatchswarmError.ALREADY_EXISTS(`${path} already exists${old?.removed ? ' (removed; its name stays reserved for history)' : ''}`)
      }
      if (await this.store.get(nodeKey(uid)) !== undefined) throw PatchswarmError.ALREADY_EXISTS(`a node with uid ${uid} exists already`)
      const at = this.clock().toISOString()
      const node: TenantNode = {
        uid,
        path,
        name,
        parentUid: parent?.uid ?? null,
        kind,
        displayName,
        ...(kind === 'customer' ? { status: 'not-set-up' as const } : {}),
        removed: false,
        createdAt: at,
        updatedAt: at,
        history: [{ at, op: 'create', path, displayName }]
      }
      await commit(this.db, [
        this.put(nodeKey(node.uid), node),
        this.put(pathKey(path), node.uid),
        this.put(childKey(node.parentUid, name), node.uid)
      ], wopts.extra)
      return node
    })
  }

  async rename (path: string, displayName: string, wopts: WriteOptions = {}): Promise<TenantNode> {
    assertTenantPath(path)
    const name = assertDisplayName(displayName)
    return this.lock.run(async () => {
      const node = await this.get(path)
      const at = this.clock().toISOString()
      const next: TenantNode = { ...node, displayName: name, updatedAt: at, history: [...node.history, { at, op: 'rename', path, displayName: name }] }
      await commit(this.db, [this.put(nodeKey(node.uid), next)], wopts.extra)
      return next
    })
  }

  /** Sets a customer's status to 'not-set-up' or 'set-up' ('removed' comes only from remove()). */
  async setStatus (path: string, status: Exclude<CustomerStatus, 'removed'>, wopts: WriteOptions = {}): Promise<TenantNode> {
    assertTenantPath(path)
    if (status !== 'not-set-up' && status !== 'set-up') throw PatchswarmError.BAD_ARGUMENT(`status must be not-set-up or set-up, not ${JSON.stringify(status)?.slice(0, 40)}`)
    return this.lock.run(async () => {
      const node = await this.get(path)
      if (node.kind !== 'customer') throw PatchswarmError.BAD_ARGUMENT(`${path} is a ${node.kind}; only customers have a status`)
      const at = this.clock().toISOString()
      const next: TenantNode = { ...node, status, updatedAt: at, history: [...node.history, { at, op: 'status', path, status }] }
      await commit(this.db, [this.put(nodeKey(node.uid), next)], wopts.extra)
      return next
    })
  }

  /** Moves the subtree at `path` under `newParent` ('' = top level); uids stay, paths change. */
  async move (path: string, newParent: string, wopts: WriteOptions = {}): Promise<TenantNode> {
    assertTenantPath(path)
    assertTenantPath(newParent, 'new parent')
    if (path === '') throw PatchswarmError.BAD_ARGUMENT('cannot move the whole organisation')
    return this.lock.run(async () => {
      const node = await this.get(path)
      const parent = await this.parentAt(newParent, 'new parent')
      if (parent && (parent.uid === node.uid || parent.path.startsWith(node.path + '/'))) {
        throw PatchswarmError.BAD_ARGUMENT(`cannot move ${path} under itself or its own descendant ${newParent}`)
      }
      checkParentKind(node.kind, parent)
      if ((parent?.uid ?? null) === node.parentUid) return node // already there: nothing to do
      const newPath = assertTenantPath(joinTenantPath(newParent, node.name), 'new path')
      if (await this.store.get(pathKey(newPath)) !== undefined) throw PatchswarmError.ALREADY_EXISTS(`${newPath} already exists`)
      const subtree = await this.walk(path, { includeRemoved: true })
      const at = this.clock().toISOString()
      const ops: FleetOp[] = [this.del(childKey(node.parentUid, node.name)), this.put(childKey(parent?.uid ?? null, node.name), node.uid)]
      let moved: TenantNode | undefined
      for (const n of subtree) {
        const p = newPath + n.path.slice(path.length)
        assertTenantPath(p, 'new path')
        const next: TenantNode = {
          ...n,
          path: p,
          ...(n.uid === node.uid ? { parentUid: parent?.uid ?? null } : {}),
          updatedAt: at,
          history: [...n.history, { at, op: 'move', path: p, from: n.path }]
        }
        if (n.uid === node.uid) moved = next
        ops.push(this.del(pathKey(n.path)), this.put(pathKey(p), n.uid), this.put(nodeKey(n.uid), next))
      }
      await commit(this.db, ops, wopts.extra)
      return moved!
    })
  }

  /** Marks the subtree at `path` removed (customers get status 'removed'); nothing is deleted. */
  async remove (path: string, wopts: WriteOptions = {}): Promise<TenantNode> {
    assertTenantPath(path)
    if (path === '') throw PatchswarmError.BAD_ARGUMENT('cannot remove the whole organisation')
    return this.lock.run(async () => {
      const subtree = await this.walk(path) // already-removed descendants keep their own removal time
      const at = this.clock().toISOString()
      const ops: FleetOp[] = []
      let removed: TenantNode | undefined
      for (const n of subtree) {
        const next: TenantNode = {
          ...n,
          removed: true,
          removedAt: at,
          ...(n.kind === 'customer' ? { status: 'removed' as const } : {}),
          updatedAt: at,
          history: [...n.history, { at, op: 'remove', path: n.path }]
        }
        if (n.path === path) removed = next
        ops.push(this.put(nodeKey(n.uid), next))
      }
      await commit(this.db, ops, wopts.extra)
      return removed!
    })
  }

  /** The node at `path`, null for '' (the top); NOT_FOUND, calling it `what`, if there is none. */
  private async parentAt (path: string, what: string): Promise<TenantNode | null> {
    if (path === '') return null
    const node = await this.find(path)
    if (!node) throw PatchswarmError.NOT_FOUND(`${what} ${path} does not exist`)
    return node
  }

  private put (key: string, value: unknown): FleetOp { return { type: 'put', sublevel: this.store, key, value } }
  private del (key: string): FleetOp { return { type: 'del', sublevel: this.store, key } }
}
