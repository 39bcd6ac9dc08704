// The endpoint registry: one record per enrollment of an endpoint key (its Ed25519/Noise public key,
// hex, is its identity). Each record belongs to a node of kind 'endpoint' in the TenantTree and is
// keyed by that node's uid. Its path and tenant are not stored but read from the tree, so they
// follow moves of any ancestor with nothing to rewrite. Listing a subtree reads the tree's path
// index for that subtree (one range read, sorted by path) and then the records of those uids, so
// its cost follows the subtree, not the fleet.
// Rejecting or removing an endpoint marks its tree node removed and keeps both, for history. The
// same key may then enroll again: it gets a new node and a new record; the old ones stay.
//
// Keys in the sublevel:  e!<uid> → stored record,  k!<keyid> → uids of its records, oldest first
import { randomUUID } from 'node:crypto'
import { PatchswarmError, isPatchswarmError } from '../errors.js'
import { assertSafeName, isSafeName } from '../content/paths.js'
import { isKeyId } from '../crypto/keys.js'
import { sublevel, type Database, type Sublevel } from '../store/db.js'
import type { Envelope } from '../trust/envelope.js'
import { parseCertificate, type CertificateDocument } from '../trust/certificate.js'
import { commit, Mutex, systemClock, type FleetClock, type FleetOp, type WriteOptions } from './common.js'
import { assertTenantPath, parentTenantPath, MAX_DISPLAY_NAME, type TenantTree } from './tenants.js'

export const ENDPOINT_STATUSES = ['quarantine', 'approved', 'rejected', 'removed'] as const
export type EndpointStatus = typeof ENDPOINT_STATUSES[number]

/** Rejected and removed are final for a record; the key may enroll again as a new record. */
const TRANSITIONS: Readonly<Record<EndpointStatus, readonly EndpointStatus[]>> = {
  quarantine: ['approved', 'rejected', 'removed'],
  approved: ['removed'],
  rejected: [],
  removed: []
}

export const MAX_HOSTNAME = 253
/** Records a listing reads at once. */
const SCAN_SLICE = 1024

export interface EndpointHistoryEntry {
  at: string
  op: 'enroll' | 'approve' | 'reject' | 'remove' | 'certificate'
  /** The status after the change. */
  status: EndpointStatus
}

export interface EndpointRecord {
  /** The endpoint's public key (hex): its identity. */
  keyid: string
  /** Its node in the tenant tree (kind 'endpoint'). */
  uid: string
  /** The node's current path. */
  path: string
  /** The current path of the node's parent: a customer or a group. */
  tenant: string
  site: string | null
  status: EndpointStatus
  hostname: string
  platform: string
  /** The id of the token it enrolled with. */
  token: string
  enrolledAt: string
  approvedAt?: string
  /** The latest console-signed enrollment certificate, once approved. */
  certificate?: Envelope<CertificateDocument>
  updatedAt: string
  history: EndpointHistoryEntry[]
}

type StoredEndpoint = Omit<EndpointRecord, 'path' | 'tenant'>

export interface NewEndpoint {
  keyid: string
  /** The tenant path of the customer or group it joins. */
  parent: string
  hostname: string
  platform: string
  site?: string | null
  token: string
  /** 'approved' needs its certificate. */
  status?: 'quarantine' | 'approved'
  certificate?: Envelope<CertificateDocument>
}

export interface EndpointQuery {
  /** A tenant path; '' or absent: the whole organisation. */
  under?: string
  /** One status or several; absent: every status but 'removed'. */
  status?: EndpointStatus | readonly EndpointStatus[]
  /** Only endpoints whose tenant passes (e.g. a reader's scope). */
  tenant?: (tenant: string) => boolean
  /** A page: the endpoints after this path, in path order (the tree's index order). */
  after?: string
  /** At most this many (with `after`, the page size). */
  limit?: number
}

export interface StatusOptions extends WriteOptions {
  /** Required when approving. */
  certificate?: Envelope<CertificateDocument>
}

const recordKey = (uid: string) => `e!${uid}`
const keyidKey = (keyid: string) => `k!${keyid}`

// A host name is shown in lists and logs: no controls, invisible characters or white space other
// than single inner spaces (some systems' computer names have them, e.g. "Bob's MacBook").
const NOT_IN_HOSTNAME = /[\u0000-\u001f\u007f-\u00a0\u1680\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\ufeff]|\x20\x20/u

/** Null when `s` may be a host name as an agent reports it; what is wrong otherwise. */
export function checkHostname (s: unknown): string | null {
  if (typeof s !== 'string' || s === '') return 'host name must be a non-empty string'
  if (s.length > MAX_HOSTNAME) return `host name is longer than ${MAX_HOSTNAME} characters`
  if (s.normalize('NFC') !== s) return 'host name is not NFC-normalized'
  if (s.trim() !== s || NOT_IN_HOSTNAME.test(s)) return 'host name contains control or invisible characters, or white space other than single inner spaces'
  return null
}

/**
 * Tree names to try for an endpoint, in order: the host name itself when it is a safe name, then
 * a safe form of it tagged with the key's first 8 hex digits (two hosts named alike, or the same
 * key enrolling again under the same parent), then numbered variants of that.
 */
export function * nodeNames (hostname: string, keyid: string): Generator<string> {
  if (isSafeName(hostname)) yield hostname
  const base = hostname.replace(/[^A-Za-z0-9._+-]+/g, '-').replace(/\.{2,}/g, '.').slice(0, 100)
    .replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, '') || 'endpoint'
  const tagged = `${base}-${keyid.slice(0, 8)}`
  yield tagged
  for (let n = 2; n < 100; n++) yield `${tagged}-${n}`
}

function statusFilter (status: EndpointQuery['status']): (s: EndpointStatus) => boolean {
  if (status === undefined) return (s) => s !== 'removed'
  const wanted = typeof status === 'string' ? [status] : [...status]
  for (const s of wanted) {
    if (!(ENDPOINT_STATUSES as readonly string[]).includes(s)) throw PatchswarmError.BAD_ARGUMENT(`unknown endpoint status ${JSON.stringify(s)?.slice(0, 40)}`)
  }
  return (s) => wanted.includes(s)
}

function assertCertificateFor (keyid: string, certificate: unknown): Envelope<CertificateDocument> {
  const signed = (certificate as Envelope | undefined)?.signed
  if (signed === undefined) throw PatchswarmError.BAD_ARGUMENT('an approved endpoint needs its certificate')
  if (parseCertificate(signed).holder !== keyid) throw PatchswarmError.BAD_ARGUMENT(`the certificate is not for ${keyid.slice(0, 12)}…`)
  return certificate as Envelope<CertificateDocument>
}

/** A record's status as it changed: what a change hook is told. */
export interface EndpointChange {
  keyid: string
  /** The tenant (customer or group path) of the endpoint at the change. */
  tenant: string
  hostname: string
  status: EndpointStatus
  at: string
}

export interface EndpointStoreOptions {
  tree: TenantTree
  clock?: FleetClock
  sublevelName?: string
  /**
   * Operations to write in the same batch as every status change (enrolled into quarantine or
   * approved, approved, rejected, removed): the console keeps its report log in step this way.
   */
  changeOps?: (change: EndpointChange) => FleetOp[]
  /** Told after such a change was committed. */
  changed?: (change: EndpointChange) => void
}

export class EndpointStore {
  readonly db: Database
  readonly tree: TenantTree
  private readonly store: Sublevel
  private readonly clock: FleetClock
  private readonly lock = new Mutex()
  private readonly changeOps: (change: EndpointChange) => FleetOp[]
  private readonly changed: (change: EndpointChange) => void

  constructor (db: Database, opts: EndpointStoreOptions) {
    this.db = db
    this.tree = opts.tree
    this.store = sublevel(db, opts.sublevelName ?? 'fleet-endpoints')
    this.clock = opts.clock ?? systemClock
    this.changeOps = opts.changeOps ?? (() => [])
    this.changed = opts.changed ?? (() => {})
  }

  // ---- reads -------------------------------------------------------------------------------

  /** The key's current (latest) record, or undefined. */
  async byKeyid (keyid: string): Promise<EndpointRecord | undefined> {
    const uid = (await this.uidsOf(keyid)).at(-1)
    return uid === undefined ? undefined : this.byUid(uid)
  }

  /** The key's current record; NOT_FOUND if it never enrolled. */
  async get (keyid: string): Promise<EndpointRecord> {
    const record = await this.byKeyid(keyid)
    if (!record) throw PatchswarmError.NOT_FOUND(`no endpoint ${String(keyid).slice(0, 64)}`)
    return record
  }

  /** The record of the endpoint node `uid`, or undefined. */
  async byUid (uid: string): Promise<EndpointRecord | undefined> {
    if (typeof uid !== 'string' || uid === '') return undefined
    const stored = await this.store.get(recordKey(uid)) as StoredEndpoint | undefined
    if (!stored) return undefined
    // Tree nodes are never deleted, so a record's node is always there.
    const node = await this.tree.getByUid(uid, { includeRemoved: true })
    if (!node) throw PatchswarmError.NOT_FOUND(`endpoint record ${uid} has no tree node`)
    return withPath(stored, node.path)
  }

  /** Every record of the key, oldest first (earlier enrollments were rejected or removed). */
  async history (keyid: string): Promise<EndpointRecord[]> {
    const records = await Promise.all((await this.uidsOf(keyid)).map((uid) => this.byUid(uid)))
    return records.filter((r): r is EndpointRecord => r !== undefined)
  }

  /** Records under a tenant subtree, sorted by path; NOT_FOUND if `under` is not a node. */
  async list (query: EndpointQuery = {}): Promise<EndpointRecord[]> {
    const out: EndpointRecord[] = []
    await this.scan(query, (stored, path) => { out.push(withPath(stored, path)) })
    return out
  }

  async count (query: EndpointQuery = {}): Promise<number> {
    let n = 0
    await this.scan(query, () => { n++ })
    return n
  }

  private async scan (query: EndpointQuery, each: (stored: StoredEndpoint, path: string) => void): Promise<void> {
    const under = assertTenantPath(query.under ?? '', 'under')
    const wanted = statusFilter(query.status)
    const tenantOk = query.tenant ?? (() => true)
    const limit = query.limit ?? Infinity
    let entries = await this.tree.pathsUnder(under)
    if (under !== '' && entries.length === 0) throw PatchswarmError.NOT_FOUND(`no tenant at ${JSON.stringify(under).slice(0, 120)}`)
    const after = query.after
    if (after !== undefined) entries = entries.filter((e) => e.path > after)
    // Records are read a slice at a time, so a page stops reading once it is full. Other nodes of
    // the subtree (customers, groups) simply have no record.
    let found = 0
    for (let at = 0; at < entries.length && found < limit; at += SCAN_SLICE) {
      const slice = entries.slice(at, at + SCAN_SLICE)
      const stored = await this.store.getMany(slice.map((e) => recordKey(e.uid))) as (StoredEndpoint | undefined)[]
      for (let i = 0; i < slice.length && found < limit; i++) {
        const s = stored[i]
        const path = slice[i]!.path
        if (s && wanted(s.status) && tenantOk(parentTenantPath(path))) { found++; each(s, path) }
      }
    }
  }

  private async uidsOf (keyid: string): Promise<string[]> {
    if (!isKeyId(keyid)) return []
    return (await this.store.get(keyidKey(keyid)) as string[] | undefined) ?? []
  }

  // ---- writes ------------------------------------------------------------------------------

  /**
   * Adds an endpoint under `parent` (a live customer or group): its tree node and its record in one
   * batch. ALREADY_EXISTS while the key has a record in quarantine or approved.
   */
  async create (input: NewEndpoint, wopts: WriteOptions = {}): Promise<EndpointRecord> {
    if (input === null || typeof input !== 'object') throw PatchswarmError.BAD_ARGUMENT('create needs { keyid, parent, hostname, platform, token }')
    const { keyid, hostname, token } = input
    if (!isKeyId(keyid)) throw PatchswarmError.BAD_ARGUMENT('keyid must be a 32-byte public key in lowercase hex')
    const parent = assertTenantPath(input.parent, 'parent')
    const hostProblem = checkHostname(hostname)
    if (hostProblem) throw PatchswarmError.BAD_ARGUMENT(hostProblem)
    const platform = assertSafeName(input.platform, 'platform')
    const site = input.site == null ? null : assertSafeName(input.site, 'site')
    if (typeof token !== 'string' || token === '') throw PatchswarmError.BAD_ARGUMENT('token must be the id of the enrollment token')
    const status = input.status ?? 'quarantine'
    if (status !== 'quarantine' && status !== 'approved') throw PatchswarmError.BAD_ARGUMENT('a new endpoint is in quarantine or approved')
    const certificate = status === 'approved' ? assertCertificateFor(keyid, input.certificate) : undefined
    return this.lock.run(async () => {
      const earlier = await this.uidsOf(keyid)
      const previous = earlier.length === 0 ? undefined : await this.byUid(earlier.at(-1)!)
      if (previous && (previous.status === 'quarantine' || previous.status === 'approved')) {
        throw PatchswarmError.ALREADY_EXISTS(`endpoint ${keyid.slice(0, 12)}… is enrolled already (${previous.status}, ${previous.path})`)
      }
      const uid = randomUUID()
      const at = this.clock().toISOString()
      const stored: StoredEndpoint = {
        keyid,
        uid,
        site,
        status,
        hostname,
        platform,
        token,
        enrolledAt: at,
        ...(certificate ? { approvedAt: at, certificate } : {}),
        updatedAt: at,
        history: [{ at, op: 'enroll', status }]
      }
      const uids = [...earlier, uid]
      const change = { keyid, tenant: parent, hostname, status, at }
      const extra = (): FleetOp[] => [this.put(recordKey(uid), stored), this.put(keyidKey(keyid), uids), ...this.changeOps(change), ...(wopts.extra?.() ?? [])]
      // The tree refuses a taken name before it calls `extra`, so trying the next one is safe.
      for (const name of nodeNames(hostname, keyid)) {
        try {
          const node = await this.tree.create({ parent, name, kind: 'endpoint', displayName: hostname.slice(0, MAX_DISPLAY_NAME) }, { uid, extra })
          this.changed(change)
          return withPath(stored, node.path)
        } catch (err) {
          if (!isPatchswarmError(err, 'ALREADY_EXISTS')) throw err
        }
      }
      throw PatchswarmError.ALREADY_EXISTS(`no free name for ${hostname} under ${parent}`)
    })
  }

  /**
   * Moves the key's current record to `to` (INVALID_TRANSITION unless allowed). Rejecting or
   * removing also marks its tree node removed, in the same batch.
   */
  async setStatus (keyid: string, to: EndpointStatus, opts: StatusOptions = {}): Promise<EndpointRecord> {
    if (!(ENDPOINT_STATUSES as readonly string[]).includes(to)) throw PatchswarmError.BAD_ARGUMENT(`unknown endpoint status ${JSON.stringify(to)?.slice(0, 40)}`)
    const certificate = to === 'approved' ? assertCertificateFor(keyid, opts.certificate) : undefined
    return this.lock.run(async () => {
      const record = await this.get(keyid)
      if (!TRANSITIONS[record.status].includes(to)) {
        throw PatchswarmError.INVALID_TRANSITION(`endpoint ${keyid.slice(0, 12)}… is ${record.status}; it cannot become ${to}`)
      }
      const at = this.clock().toISOString()
      const op = to === 'approved' ? 'approve' : to === 'rejected' ? 'reject' : 'remove'
      const next: EndpointRecord = {
        ...record,
        status: to,
        ...(certificate ? { approvedAt: at, certificate } : {}),
        updatedAt: at,
        history: [...record.history, { at, op, status: to }]
      }
      const change = { keyid, tenant: record.tenant, hostname: record.hostname, status: to, at }
      const ops = [this.put(recordKey(record.uid), stored(next)), ...this.changeOps(change)]
      const node = await this.tree.getByUid(record.uid)
      if ((to === 'rejected' || to === 'removed') && node) {
        await this.tree.remove(node.path, { extra: () => [...ops, ...(opts.extra?.() ?? [])] })
      } else {
        await commit(this.db, ops, opts.extra) // approving, or its node went with a removed ancestor
      }
      this.changed(change)
      return next
    })
  }

  /** Replaces an approved endpoint's certificate (renewal, or after a move changed its tenant). */
  async setCertificate (keyid: string, certificate: Envelope<CertificateDocument>, wopts: WriteOptions = {}): Promise<EndpointRecord> {
    assertCertificateFor(keyid, certificate)
    return this.lock.run(async () => {
      const record = await this.get(keyid)
      if (record.status !== 'approved') throw PatchswarmError.INVALID_TRANSITION(`endpoint ${keyid.slice(0, 12)}… is ${record.status}; only approved endpoints hold a certificate`)
      const at = this.clock().toISOString()
      const next: EndpointRecord = { ...record, certificate, updatedAt: at, history: [...record.history, { at, op: 'certificate', status: record.status }] }
      await commit(this.db, [this.put(recordKey(record.uid), stored(next))], wopts.extra)
      return next
    })
  }

  /** Marks the endpoint removed (its record and tree node stay, for history). */
  remove (keyid: string, wopts: WriteOptions = {}): Promise<EndpointRecord> {
    return this.setStatus(keyid, 'removed', wopts)
  }

  private put (key: string, value: unknown): FleetOp { return { type: 'put', sublevel: this.store, key, value } }
}

function withPath (s: StoredEndpoint, path: string): EndpointRecord {
  return { ...s, path, tenant: parentTenantPath(path) }
}

function stored (r: EndpointRecord): StoredEndpoint {
  const { path: _path, tenant: _tenant, ...rest } = r
  return rest
}
