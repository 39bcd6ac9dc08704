// Admins: an id (a safe name), an SSH public key (form checked only), an optional TOTP secret
// (base32, stored for the TUI's login; no TOTP here) and role bindings. A binding stores the
// scope's tenant path and, when the scope is a node, that node's stable uid, so whoever resolves
// bindings (the Fleet facade) can follow the node when it moves.
import { PatchswarmError } from '../errors.js'
import { assertSafeName } from '../content/paths.js'
import { sublevel, type Database, type Sublevel } from '../store/db.js'
import { commit, Mutex, systemClock, type FleetClock, type FleetOp, type WriteOptions } from './common.js'
import { isRole, type RoleBinding } from './rbac.js'
import { assertTenantPath } from './tenants.js'

export interface StoredBinding extends RoleBinding {
  /** The uid of the scope's tenant node; absent for '' (the whole organisation). */
  scopeUid?: string
}

export interface Admin {
  id: string
  sshKey: string
  totpSecret?: string
  bindings: StoredBinding[]
  createdAt: string
  updatedAt: string
}

export interface CreateAdminInput {
  id: string
  sshKey: string
  totpSecret?: string
  bindings?: StoredBinding[]
}

export const MAX_BINDINGS = 64
const MAX_SSH_KEY = 16 * 1024

const SSH_KEY_TYPES = new Set([
  'ssh-ed25519', 'ssh-rsa', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521',
  'sk-ssh-ed25519@openssh.com', 'sk-ecdsa-sha2-nistp256@openssh.com'
])

/**
 * Checks the OpenSSH public key line form: `<type> <base64 blob> [comment]`, a known type, and a
 * blob whose first field (uint32 length + string) names the same type. Returns the key trimmed.
 */
export function assertSshPublicKey (key: unknown): string {
  const bad = (why: string) => PatchswarmError.BAD_ARGUMENT(`SSH public key: ${why}`)
  if (typeof key !== 'string') throw bad('not a string')
  const line = key.trim()
  if (line.length > MAX_SSH_KEY) throw bad('too long')
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(line)) throw bad('contains control characters or more than one line')
  const m = /^(\S+) ([A-Za-z0-9+/]+={0,2})(?: (.*))?$/.exec(line)
  if (!m) throw bad('expected "<type> <base64> [comment]"')
  const type = m[1]!
  if (!SSH_KEY_TYPES.has(type)) throw bad(`unsupported key type ${JSON.stringify(type).slice(0, 60)}`)
  const blob = Buffer.from(m[2]!, 'base64')
  if (blob.length < 4 + type.length + 4 || blob.readUInt32BE(0) !== type.length || blob.subarray(4, 4 + type.length).toString('latin1') !== type) {
    throw bad(`the key data does not start with its type ${type}`)
  }
  return line
}

/** A base32 (RFC 4648) TOTP secret, at least 80 bits; spaces are dropped and letters upper-cased. */
export function assertTotpSecret (secret: unknown): string {
  if (typeof secret !== 'string') throw PatchswarmError.BAD_ARGUMENT('TOTP secret is not a string')
  const s = secret.replace(/ /g, '').toUpperCase()
  if (!/^[A-Z2-7]+=*$/.test(s) || s.replace(/=+$/, '').length < 16 || s.length > 256) {
    throw PatchswarmError.BAD_ARGUMENT('TOTP secret must be base32 (A-Z, 2-7), at least 16 characters')
  }
  return s
}

export function assertBinding (b: unknown): StoredBinding {
  if (b === null || typeof b !== 'object') throw PatchswarmError.BAD_ARGUMENT('a role binding is { role, scope }')
  const { role, scope, scopeUid } = b as StoredBinding
  if (!isRole(role)) throw PatchswarmError.BAD_ARGUMENT(`unknown role ${JSON.stringify(role)?.slice(0, 40)}`)
  assertTenantPath(scope, 'scope')
  if (scopeUid !== undefined && (typeof scopeUid !== 'string' || scopeUid === '')) throw PatchswarmError.BAD_ARGUMENT('scopeUid must be a non-empty string')
  return scopeUid === undefined ? { role, scope } : { role, scope, scopeUid }
}

const sameBinding = (a: StoredBinding, b: StoredBinding) =>
  a.role === b.role && (a.scopeUid !== undefined || b.scopeUid !== undefined ? a.scopeUid === b.scopeUid : a.scope === b.scope)

export class AdminStore {
  readonly db: Database
  private readonly store: Sublevel
  private readonly clock: FleetClock
  private readonly lock = new Mutex()

  constructor (db: Database, opts: { clock?: FleetClock, sublevelName?: string } = {}) {
    this.db = db
    this.store = sublevel(db, opts.sublevelName ?? 'fleet-admins')
    this.clock = opts.clock ?? systemClock
  }

  async find (id: string): Promise<Admin | undefined> {
    if (typeof id !== 'string' || id === '') return undefined
    return await this.store.get(id) as Admin | undefined
  }

  async get (id: string): Promise<Admin> {
    const admin = await this.find(id)
    if (!admin) throw PatchswarmError.NOT_FOUND(`no admin ${JSON.stringify(id)?.slice(0, 80)}`)
    return admin
  }

  async list (): Promise<Admin[]> {
    return await this.store.values().all() as Admin[]
  }

  async isEmpty (): Promise<boolean> {
    return (await this.store.keys({ limit: 1 }).all()).length === 0
  }

  async create (input: CreateAdminInput, wopts: WriteOptions = {}): Promise<Admin> {
    if (input === null || typeof input !== 'object') throw PatchswarmError.BAD_ARGUMENT('create needs { id, sshKey }')
    const id = assertSafeName(input.id, 'admin id')
    const sshKey = assertSshPublicKey(input.sshKey)
    const totpSecret = input.totpSecret === undefined ? undefined : assertTotpSecret(input.totpSecret)
    const bindings: StoredBinding[] = []
    for (const b of input.bindings ?? []) {
      const sb = assertBinding(b)
      if (!bindings.some((o) => sameBinding(o, sb))) bindings.push(sb)
    }
    if (bindings.length > MAX_BINDINGS) throw PatchswarmError.BAD_ARGUMENT(`at most ${MAX_BINDINGS} role bindings`)
    return this.lock.run(async () => {
      if (await this.find(id)) throw PatchswarmError.ALREADY_EXISTS(`admin ${id} already exists`)
      const at = this.clock().toISOString()
      const admin: Admin = { id, sshKey, ...(totpSecret ? { totpSecret } : {}), bindings, createdAt: at, updatedAt: at }
      await commit(this.db, [this.put(admin)], wopts.extra)
      return admin
    })
  }

  /** Adds a binding (no-op if the admin already has it). */
  async grant (id: string, binding: StoredBinding, wopts: WriteOptions = {}): Promise<Admin> {
    const b = assertBinding(binding)
    return this.update(id, (a) => {
      if (a.bindings.some((o) => sameBinding(o, b))) return a
      if (a.bindings.length >= MAX_BINDINGS) throw PatchswarmError.BAD_ARGUMENT(`at most ${MAX_BINDINGS} role bindings`)
      return { ...a, bindings: [...a.bindings, b] }
    }, wopts)
  }

  /** Removes a binding; NOT_FOUND if the admin does not have it. */
  async revoke (id: string, binding: StoredBinding, wopts: WriteOptions = {}): Promise<Admin> {
    const b = assertBinding(binding)
    return this.update(id, (a) => {
      if (!a.bindings.some((o) => sameBinding(o, b))) throw PatchswarmError.NOT_FOUND(`admin ${id} has no ${b.role} binding on ${JSON.stringify(b.scope)}`)
      return { ...a, bindings: a.bindings.filter((o) => !sameBinding(o, b)) }
    }, wopts)
  }

  async setSshKey (id: string, sshKey: string, wopts: WriteOptions = {}): Promise<Admin> {
    const key = assertSshPublicKey(sshKey)
    return this.update(id, (a) => ({ ...a, sshKey: key }), wopts)
  }

  /** Sets or (with null) clears the TOTP secret. */
  async setTotpSecret (id: string, secret: string | null, wopts: WriteOptions = {}): Promise<Admin> {
    const s = secret === null ? null : assertTotpSecret(secret)
    return this.update(id, (a) => {
      const { totpSecret: _old, ...rest } = a
      return s === null ? rest : { ...rest, totpSecret: s }
    }, wopts)
  }

  /** Deletes the admin; the audit log keeps what they did. */
  async remove (id: string, wopts: WriteOptions = {}): Promise<Admin> {
    return this.lock.run(async () => {
      const admin = await this.get(id)
      await commit(this.db, [{ type: 'del', sublevel: this.store, key: admin.id }], wopts.extra)
      return admin
    })
  }

  private async update (id: string, change: (a: Admin) => Admin, wopts: WriteOptions): Promise<Admin> {
    return this.lock.run(async () => {
      const admin = await this.get(id)
      const changed = change(admin)
      const next = changed === admin ? admin : { ...changed, updatedAt: this.clock().toISOString() }
      await commit(this.db, changed === admin ? [] : [this.put(next)], wopts.extra)
      return next
    })
  }

  private put (admin: Admin): FleetOp { return { type: 'put', sublevel: this.store, key: admin.id, value: admin } }
}
