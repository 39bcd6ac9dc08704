// The gate every admin API call passes through, whichever namespace it belongs to (tenants,
// endpoints, rollouts, reports …): load the acting admin (bindings re-resolved to the current paths
// of their scope nodes, so they follow moves), validate the arguments, check the permission
// (FORBIDDEN otherwise; a target that does not exist is FORBIDDEN too unless the actor could see
// it), perform, and write exactly one audit entry with the result. A successful write commits its
// audit entry in the same LevelDB batch as the change; reads and refusals append it afterwards.
// Writes are serialised by one lock, so read-validate-write sections never interleave.
import { PatchswarmError, isPatchswarmError } from '../errors.js'
import { Mutex, type WriteOptions } from './common.js'
import type { TenantTree } from './tenants.js'
import type { Admin, AdminStore, StoredBinding } from './admins.js'
import type { AuditInput, AuditLog } from './audit.js'

export interface CallSpec<T> {
  actor: string
  action: string
  target: unknown
  write: boolean
  /** Validates arguments and returns the tenant paths the call concerns (for the audit entry). */
  tenants: (admin: Admin) => string[] | Promise<string[]>
  /** Whether the actor may do it. */
  allowed: (admin: Admin, tenants: string[]) => boolean | Promise<boolean>
  perform: (admin: Admin, wopts: WriteOptions) => Promise<T>
}

export class AdminGate {
  readonly #tenants: TenantTree
  readonly #admins: AdminStore
  readonly #audit: AuditLog
  readonly #ready: () => Promise<void>
  readonly lock = new Mutex()

  constructor (opts: { tenants: TenantTree, admins: AdminStore, audit: AuditLog, ready: () => Promise<void> }) {
    this.#tenants = opts.tenants
    this.#admins = opts.admins
    this.#audit = opts.audit
    this.#ready = opts.ready
  }

  async call<T> (spec: CallSpec<T>): Promise<T> {
    await this.#ready()
    const run = async (): Promise<T> => {
      let tenants: string[] = []
      let batched = false
      const entry = (result: string) => ({ admin: String(spec.actor), action: spec.action, target: String(spec.target), tenants, result })
      try {
        const admin = await this.actor(spec.actor)
        if (!admin) {
          // Still record which tenants the attempt aimed at, so their admins see it.
          tenants = await Promise.resolve(spec.tenants(nobody(spec.actor))).catch(() => [])
          throw PatchswarmError.FORBIDDEN(`${spec.action}: unknown admin ${JSON.stringify(spec.actor)?.slice(0, 80)}`)
        }
        tenants = await spec.tenants(admin)
        if (!await spec.allowed(admin, tenants)) throw PatchswarmError.FORBIDDEN(`${spec.action}: admin ${admin.id} may not do this on ${String(spec.target).slice(0, 120)}`)
        const value = await spec.perform(admin, { extra: () => { batched = true; return [this.#audit.prepare(entry('ok')).op] } })
        if (!batched) await this.#audit.append(entry('ok'))
        return value
      } catch (err) {
        // A change either committed with its entry (and did not throw) or wrote nothing.
        await this.#audit.append(entry(codeOf(err)))
        throw err
      }
    }
    return spec.write ? this.lock.run(run) : run()
  }

  /** Writes an audit entry for something that is not an admin call (e.g. the console's own actions). */
  record (input: AuditInput): Promise<unknown> {
    return this.#audit.append(input)
  }

  async actor (id: string): Promise<Admin | undefined> {
    const admin = await this.#admins.find(id)
    return admin && this.resolve(admin)
  }

  /** Bindings at the current paths of their scope nodes; a binding whose node is gone is dropped. */
  async resolve (admin: Admin): Promise<Admin> {
    const bindings: StoredBinding[] = []
    for (const b of admin.bindings) {
      if (b.scopeUid === undefined) { bindings.push(b); continue }
      const node = await this.#tenants.getByUid(b.scopeUid, { includeRemoved: true })
      if (node) bindings.push({ ...b, scope: node.path })
    }
    return { ...admin, bindings }
  }
}

function nobody (id: unknown): Admin {
  return { id: String(id), sshKey: '', bindings: [], createdAt: '', updatedAt: '' }
}

export function codeOf (err: unknown): string {
  return isPatchswarmError(err) ? err.code : 'INTERNAL'
}
