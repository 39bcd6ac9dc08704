// The audit log: append-only entries { seq, at, admin, action, target, tenants, result } in a
// sublevel, keyed by a zero-padded sequence number that keeps increasing across restarts (the next
// number comes from the last stored key). An entry can be written on its own or prepared and
// committed in the same batch as the change it records, so a change is never left unaudited.
import { PatchswarmError } from '../errors.js'
import { sublevel, type Database, type Sublevel } from '../store/db.js'
import { commit, systemClock, type FleetClock, type FleetOp } from './common.js'
import { can, type Principal } from './rbac.js'

export interface AuditEntry {
  seq: number
  at: string
  /** The acting admin's id (as given, even if unknown). */
  admin: string
  /** The Fleet method or action name, e.g. 'tenant.move'. */
  action: string
  /** What the action was about: a tenant path, `admin:<id>`, `audit`. */
  target: string
  /** The tenant paths the entry concerns; a reader must cover all of them. Empty: organisation-level. */
  tenants: string[]
  /** 'ok' or the error code. */
  result: 'ok' | string
}

export type AuditInput = Omit<AuditEntry, 'seq' | 'at'>

export interface AuditRange {
  /** First seq (inclusive). */
  from?: number
  /** Last seq (inclusive). */
  to?: number
  limit?: number
  /** Newest first. */
  reverse?: boolean
}

const SEQ_DIGITS = 16
const seqKey = (seq: number) => String(seq).padStart(SEQ_DIGITS, '0')
const MAX_FIELD = 512
const clip = (s: unknown) => String(s).slice(0, MAX_FIELD)

/**
 * True if `admin` may see `entry`: every tenant the entry concerns lies in a scope where the admin
 * has audit.read (so a move between two customers shows only to someone who covers both, and an
 * entry never names a tenant its reader could not see). Entries about no tenant: organisation only.
 */
export function auditVisibleTo (admin: Principal | undefined, entry: AuditEntry): boolean {
  if (entry.tenants.length === 0) return can(admin, 'audit.read', '')
  return entry.tenants.every((t) => can(admin, 'audit.read', t))
}

export class AuditLog {
  readonly db: Database
  private readonly store: Sublevel
  private readonly clock: FleetClock
  private nextSeq = 0
  private opening: Promise<void> | undefined

  constructor (db: Database, opts: { clock?: FleetClock, sublevelName?: string } = {}) {
    this.db = db
    this.store = sublevel(db, opts.sublevelName ?? 'fleet-audit')
    this.clock = opts.clock ?? systemClock
  }

  /** Idempotent: finds the next sequence number. */
  ready (): Promise<void> {
    this.opening ??= (async () => {
      const last = await this.store.keys({ reverse: true, limit: 1 }).all()
      this.nextSeq = last.length === 0 ? 1 : Number(last[0]) + 1
    })()
    return this.opening
  }

  /**
   * Allocates the next seq and returns the entry and the batch operation that writes it. Call
   * this synchronously right before committing (an uncommitted entry leaves a gap, never a reuse).
   */
  prepare (input: AuditInput): { entry: AuditEntry, op: FleetOp } {
    if (this.nextSeq === 0) throw PatchswarmError.CLOSED('audit log is not ready; call ready() first')
    const entry: AuditEntry = {
      seq: this.nextSeq++,
      at: this.clock().toISOString(),
      admin: clip(input.admin),
      action: clip(input.action),
      target: clip(input.target),
      tenants: input.tenants.map(clip),
      result: clip(input.result)
    }
    return { entry, op: { type: 'put', sublevel: this.store, key: seqKey(entry.seq), value: entry } }
  }

  async append (input: AuditInput): Promise<AuditEntry> {
    await this.ready()
    const { entry, op } = this.prepare(input)
    await commit(this.db, [op])
    return entry
  }

  async list (range: AuditRange = {}): Promise<AuditEntry[]> {
    const opts = { ...this.iteratorOptions(range), ...(range.limit !== undefined ? { limit: Math.max(0, Math.floor(range.limit)) } : {}) }
    return await this.store.values(opts).all() as AuditEntry[]
  }

  /** Like list(), keeping only what `admin` may see; `limit` counts visible entries. */
  async listVisible (admin: Principal | undefined, range: AuditRange = {}): Promise<AuditEntry[]> {
    const { limit, ...rest } = range
    const out: AuditEntry[] = []
    for await (const value of this.store.values(this.iteratorOptions(rest))) {
      const entry = value as AuditEntry
      if (!auditVisibleTo(admin, entry)) continue
      out.push(entry)
      if (limit !== undefined && out.length >= limit) break
    }
    return out
  }

  private iteratorOptions (range: AuditRange): { gte?: string, lte?: string, reverse?: boolean } {
    const opts: { gte?: string, lte?: string, reverse?: boolean } = {}
    if (range.from !== undefined) opts.gte = seqKey(Math.max(0, Math.floor(range.from)))
    if (range.to !== undefined) opts.lte = seqKey(Math.max(0, Math.floor(range.to)))
    if (range.reverse) opts.reverse = true
    return opts
  }
}
