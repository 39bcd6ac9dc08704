// The Fleet facade: tenants, admins and the audit log as the admin API shows them. Every method
// takes the acting admin's id first and passes through the AdminGate (gate.ts): permission check,
// then exactly one audit entry. The console's other namespaces share this gate.
import { PatchswarmError } from '../errors.js'
import { openDatabase, type Database } from '../store/db.js'
import { systemClock, type FleetClock, type WriteOptions } from './common.js'
import { AdminGate, codeOf } from './gate.js'
import { TenantTree, assertTenantPath, joinTenantPath, parentTenantPath, type CreateTenantInput, type CustomerStatus, type ReadOptions, type TenantNode } from './tenants.js'
import { AdminStore, assertBinding, type Admin, type CreateAdminInput, type StoredBinding } from './admins.js'
import { AuditLog, type AuditEntry, type AuditInput, type AuditRange } from './audit.js'
import { can, filterByScope, reachesBelow, scopesFor, type RoleBinding } from './rbac.js'

export interface FleetOptions {
  clock?: FleetClock
}

/** An admin as the API shows it: bindings at their current paths, the TOTP secret never included. */
export interface AdminView {
  id: string
  sshKey: string
  hasTotp: boolean
  bindings: RoleBinding[]
  createdAt: string
  updatedAt: string
}

export interface CreateAdminRequest {
  id: string
  sshKey: string
  totpSecret?: string
  bindings?: RoleBinding[]
}

export class Fleet {
  readonly db: Database
  readonly tenants: TenantTree
  readonly admins: AdminStore
  readonly audit: AuditLog
  readonly gate: AdminGate
  readonly #ownsDb: boolean
  #closing: Promise<void> | undefined

  constructor (db: Database, opts: FleetOptions & { ownsDb?: boolean } = {}) {
    const clock = opts.clock ?? systemClock
    this.db = db
    this.tenants = new TenantTree(db, { clock })
    this.admins = new AdminStore(db, { clock })
    this.audit = new AuditLog(db, { clock })
    this.#ownsDb = opts.ownsDb ?? false
    this.gate = new AdminGate({ tenants: this.tenants, admins: this.admins, audit: this.audit, ready: () => this.ready() })
  }

  /** Opens (and owns) the LevelDB at `location`. */
  static async open (location: string, opts: FleetOptions = {}): Promise<Fleet> {
    const fleet = new Fleet(await openDatabase(location), { ...opts, ownsDb: true })
    await fleet.ready()
    return fleet
  }

  async ready (): Promise<void> {
    if (this.#closing) throw PatchswarmError.CLOSED('fleet is closed')
    await this.audit.ready()
  }

  /** Idempotent; closes the database only if this Fleet opened it. */
  close (): Promise<void> {
    this.#closing ??= this.gate.lock.run(async () => { if (this.#ownsDb) await this.db.close() })
    return this.#closing
  }

  /** Creates the first admin as owner of the whole organisation; refused once any admin exists. */
  async bootstrapOwner (input: Omit<CreateAdminRequest, 'bindings'>): Promise<AdminView> {
    await this.ready()
    const id = String(input?.id)
    const entry = (result: string): AuditInput => ({ admin: id, action: 'admin.bootstrap', target: `admin:${id}`, tenants: [], result })
    return this.gate.lock.run(async () => {
      try {
        if (!await this.admins.isEmpty()) throw PatchswarmError.ALREADY_EXISTS('admins exist already; bootstrap is only for the first owner')
        const admin = await this.admins.create({ ...input, bindings: [{ role: 'owner', scope: '' }] }, {
          extra: () => [this.audit.prepare(entry('ok')).op]
        })
        return viewOf(admin)
      } catch (err) {
        await this.audit.append(entry(codeOf(err)))
        throw err
      }
    })
  }

  // ---- tenants -----------------------------------------------------------------------------

  createTenant (actor: string, input: CreateTenantInput): Promise<TenantNode> {
    return this.gate.call({
      actor,
      action: 'tenant.create',
      target: input && typeof input === 'object' ? joinTenantPath(String(input.parent), String(input.name)) : input,
      write: true,
      tenants: () => [assertTenantPath(input?.parent, 'parent')],
      allowed: (a, [parent]) => can(a, 'tenant.write', parent!),
      perform: (_, w) => this.tenants.create(input, w)
    })
  }

  getTenant (actor: string, path: string, opts: ReadOptions = {}): Promise<TenantNode> {
    return this.#tenantCall(actor, 'tenant.get', path, false, (a) => can(a, 'tenant.read', path), () => this.tenants.get(path, opts))
  }

  /** Children of `path` that the actor may read; `path` may be an ancestor of the actor's scope. */
  listChildren (actor: string, path: string, opts: ReadOptions = {}): Promise<TenantNode[]> {
    return this.#readTree(actor, 'tenant.list', path, () => this.tenants.listChildren(path, opts))
  }

  /** The subtree at `path` in pre-order, limited to what the actor may read. */
  walk (actor: string, path: string, opts: ReadOptions = {}): Promise<TenantNode[]> {
    return this.#readTree(actor, 'tenant.walk', path, () => this.tenants.walk(path, opts))
  }

  renameTenant (actor: string, path: string, displayName: string): Promise<TenantNode> {
    return this.#tenantCall(actor, 'tenant.rename', path, true, (a) => can(a, 'tenant.write', path), (_, w) => this.tenants.rename(path, displayName, w))
  }

  setCustomerStatus (actor: string, path: string, status: Exclude<CustomerStatus, 'removed'>): Promise<TenantNode> {
    return this.#tenantCall(actor, 'tenant.status', path, true, (a) => can(a, 'tenant.write', path), (_, w) => this.tenants.setStatus(path, status, w))
  }

  /** Needs tenant.write on the node's current parent (to take it) and on the new parent (to put it). */
  moveTenant (actor: string, path: string, newParent: string): Promise<TenantNode> {
    return this.gate.call({
      actor,
      action: 'tenant.move',
      target: path,
      write: true,
      tenants: () => [assertTenantPath(path), assertTenantPath(newParent, 'new parent')],
      allowed: (a) => path !== '' && can(a, 'tenant.write', parentTenantPath(path)) && can(a, 'tenant.write', newParent),
      perform: (_, w) => this.tenants.move(path, newParent, w)
    })
  }

  /** Needs tenant.write on the parent: an admin cannot remove the node their own scope is. */
  removeTenant (actor: string, path: string): Promise<TenantNode> {
    return this.#tenantCall(actor, 'tenant.remove', path, true, (a) => path !== '' && can(a, 'tenant.write', parentTenantPath(path)), (_, w) => this.tenants.remove(path, w))
  }

  // ---- admins ------------------------------------------------------------------------------
  // An actor manages another admin only if every binding of that admin (and every binding being
  // granted) lies within the actor's admin.manage scopes; an admin without bindings, or with an
  // organisation-wide one, only from the organisation level.

  createAdmin (actor: string, input: CreateAdminRequest): Promise<AdminView> {
    return this.gate.call({
      actor,
      action: 'admin.create',
      target: `admin:${String(input?.id)}`,
      write: true,
      tenants: () => (input?.bindings ?? []).map((b) => assertBinding(b).scope),
      allowed: (a, scopes) => manages(a, scopes),
      perform: async (_, w) => this.#view(await this.admins.create({ ...input, bindings: await this.#anchor(input.bindings ?? []) } satisfies CreateAdminInput, w))
    })
  }

  getAdmin (actor: string, id: string): Promise<AdminView> {
    return this.#adminCall(actor, 'admin.get', id, false, undefined, async (target) => viewOf(target))
  }

  listAdmins (actor: string): Promise<AdminView[]> {
    return this.gate.call({
      actor,
      action: 'admin.list',
      target: 'admins',
      write: false,
      tenants: (a) => scopesFor(a, 'admin.manage'),
      allowed: (_, scopes) => scopes.length > 0,
      perform: async (a) => {
        const all = await Promise.all((await this.admins.list()).map((x) => this.gate.resolve(x)))
        return all.filter((x) => manages(a, x.bindings.map((b) => b.scope))).map(viewOf)
      }
    })
  }

  grantRole (actor: string, id: string, binding: RoleBinding): Promise<AdminView> {
    return this.#adminCall(actor, 'admin.grant', id, true, binding, async (target, w) => {
      const [anchored] = await this.#anchor([binding])
      return this.#view(await this.admins.grant(target.id, anchored!, w))
    })
  }

  revokeRole (actor: string, id: string, binding: RoleBinding): Promise<AdminView> {
    return this.#adminCall(actor, 'admin.revoke', id, true, binding, async (target, w) => {
      const stored = target.bindings.find((b) => b.role === binding.role && b.scope === binding.scope)
      if (!stored) throw PatchswarmError.NOT_FOUND(`admin ${target.id} has no ${binding.role} binding on ${JSON.stringify(binding.scope)}`)
      return this.#view(await this.admins.revoke(target.id, stored, w))
    })
  }

  setAdminSshKey (actor: string, id: string, sshKey: string): Promise<AdminView> {
    return this.#adminCall(actor, 'admin.set-ssh-key', id, true, undefined, async (target, w) => this.#view(await this.admins.setSshKey(target.id, sshKey, w)))
  }

  setAdminTotpSecret (actor: string, id: string, secret: string | null): Promise<AdminView> {
    return this.#adminCall(actor, 'admin.set-totp', id, true, undefined, async (target, w) => this.#view(await this.admins.setTotpSecret(target.id, secret, w)))
  }

  removeAdmin (actor: string, id: string): Promise<AdminView> {
    return this.#adminCall(actor, 'admin.remove', id, true, undefined, async (target, w) => this.#view(await this.admins.remove(target.id, w)))
  }

  // ---- audit -------------------------------------------------------------------------------

  /** Audit entries the actor may see (every tenant of the entry within its audit.read scopes). */
  listAudit (actor: string, range: AuditRange = {}): Promise<AuditEntry[]> {
    return this.gate.call({
      actor,
      action: 'audit.list',
      target: 'audit',
      write: false,
      tenants: (a) => scopesFor(a, 'audit.read'),
      allowed: (_, scopes) => scopes.length > 0,
      perform: (a) => this.audit.listVisible(a, range)
    })
  }

  // ---- internals ---------------------------------------------------------------------------

  /** A call about the one tenant at `path`, which is validated and is the audit entry's tenant. */
  #tenantCall<T> (actor: string, action: string, path: string, write: boolean, allowed: (admin: Admin) => boolean, perform: (admin: Admin, w: WriteOptions) => Promise<T>): Promise<T> {
    return this.gate.call({ actor, action, target: path, write, tenants: () => [assertTenantPath(path)], allowed, perform })
  }

  /** A read that may start above the actor's scopes; only the nodes the actor may read come back. */
  #readTree (actor: string, action: string, path: string, list: () => Promise<TenantNode[]>): Promise<TenantNode[]> {
    return this.#tenantCall(actor, action, path, false,
      (a) => can(a, 'tenant.read', path) || reachesBelow(a, 'tenant.read', path),
      async (a) => filterByScope(a, 'tenant.read', await list(), (n) => n.path))
  }

  /** An admin-management call on admin `id`; `binding` is the one being granted or revoked, if any. */
  #adminCall<T> (actor: string, action: string, id: string, write: boolean, binding: RoleBinding | undefined, perform: (target: Admin, w: WriteOptions) => Promise<T>): Promise<T> {
    let target: Admin | undefined
    return this.gate.call({
      actor,
      action,
      target: `admin:${String(id)}`,
      write,
      tenants: async () => {
        const extra = binding === undefined ? [] : [assertBinding(binding).scope]
        const found = await this.admins.find(id)
        target = found && await this.gate.resolve(found)
        return [...new Set([...(target?.bindings.map((b) => b.scope) ?? []), ...extra])]
      },
      // Unknown target: FORBIDDEN unless the actor manages the whole organisation (then NOT_FOUND).
      allowed: (a, scopes) => target ? manages(a, scopes) : manages(a, []) && manages(a, scopes),
      perform: async (_, w) => {
        if (!target) throw PatchswarmError.NOT_FOUND(`no admin ${JSON.stringify(id)?.slice(0, 80)}`)
        return perform(target, w)
      }
    })
  }

  async #view (admin: Admin): Promise<AdminView> {
    return viewOf(await this.gate.resolve(admin))
  }

  /** Ties each binding to its scope node's uid; NOT_FOUND for a scope that is not a live node. */
  async #anchor (bindings: RoleBinding[]): Promise<StoredBinding[]> {
    const out: StoredBinding[] = []
    for (const b of bindings) {
      const { role, scope } = assertBinding(b)
      if (scope === '') { out.push({ role, scope }); continue }
      const node = await this.tenants.get(scope)
      out.push({ role, scope: node.path, scopeUid: node.uid })
    }
    return out
  }
}

function manages (admin: Admin, scopes: string[]): boolean {
  if (scopes.length === 0) return can(admin, 'admin.manage', '')
  return scopes.every((s) => can(admin, 'admin.manage', s))
}

function viewOf (admin: Admin): AdminView {
  return {
    id: admin.id,
    sshKey: admin.sshKey,
    hasTotp: admin.totpSecret !== undefined,
    bindings: admin.bindings.map(({ role, scope }) => ({ role, scope })),
    createdAt: admin.createdAt,
    updatedAt: admin.updatedAt
  }
}
