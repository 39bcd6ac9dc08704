// KPIs over patch records: what the dashboard shows and the audit report proves. Pure functions of
// their input and one clock reading, so a report can be recomputed later and give the same numbers.
//
// Definitions (see Kpis in records.ts):
// - Only endpoints in `endpoints` count (approved and in the caller's scope); records and byte
//   counts of any other endpoint are ignored. A record is attributed to the tenant its endpoint is
//   in NOW (the `endpoints` list), not the one it was in when the record began.
// - A record is due when availableAt ≤ now. An endpoint is compliant when every one of its due
//   records is installed; an endpoint with nothing due is compliant.
// - Time-to-patch is over records installed now: hours from availableAt to installedAt, floored
//   at 0 (an agent clock running behind the console's would otherwise give negative durations).
//   Percentiles use the nearest-rank method: the p-th percentile of n sorted values is the value at
//   1-based rank ⌈p/100 · n⌉. It is always an observed value (no interpolation); the median is p50,
//   i.e. the lower middle value when n is even.
// - A record has a finished attempt when attempts > 0 (or firstResult is set). First-pass success =
//   such records whose firstResult is 'installed' / such records; final success = such records
//   installed now / such records.
// - An SLA breach is a record with a slaDeadline installed after it, or not installed and now past it.
// - Bytes are summed over endpoints; delivered = origin + site + peer (local copies moved nothing);
//   WAN savings = 1 − origin / delivered.
import { PatchswarmError } from '../errors.js'
import type { TenantKind } from '../fleet/tenants.js'
import type { ByteCounts, Kpis, PatchRecord } from './records.js'

const HOUR = 3_600_000

export interface KpiEndpoint {
  keyid: string
  /** The tenant path the endpoint is in (a customer or group). */
  tenant: string
}

export interface KpiInput {
  records: readonly PatchRecord[]
  /** Approved endpoints in scope; nothing else counts. */
  endpoints: readonly KpiEndpoint[]
  /** Bytes each endpoint received, by keyid; endpoints without an entry received nothing. */
  bytes: ReadonlyMap<string, ByteCounts> | Readonly<Record<string, ByteCounts>>
  now: Date
}

/** A tenant node to report on; a TenantNode fits. */
export interface KpiNode {
  path: string
  kind: TenantKind
  name: string
  displayName?: string
}

export interface NodeKpis {
  path: string
  kind: TenantKind
  name: string
  displayName: string
  /** Depth in the reported tree, 0 for the shallowest nodes given. */
  depth: number
  kpis: Kpis
}

/** The KPIs over everything in the input. */
export function computeKpis (input: KpiInput): Kpis {
  const acc = newAccumulator()
  const lookup = byteLookup(input.bytes)
  for (const c of contributions(input)) add(acc, c, lookup(c.keyid))
  return finish(acc)
}

/**
 * The KPIs of every node (of everything in its subtree), in pre-order with children by name.
 * Endpoint nodes are left out: endpoints are attributed to their tenant path, and one endpoint's
 * view is its records. One pass over the records; each endpoint's figures are then added to each
 * of its ancestors that was asked for, so the cost is records + endpoints × depth.
 */
export function rollup (nodes: readonly KpiNode[], input: KpiInput): NodeKpis[] {
  const accs = new Map<string, Accumulator>()
  const ordered = preOrder(nodes.filter((n) => n.kind !== 'endpoint'))
  for (const n of ordered) {
    if (accs.has(n.path)) throw PatchswarmError.BAD_ARGUMENT(`tenant ${n.path} is listed twice`)
    accs.set(n.path, newAccumulator())
  }
  const lookup = byteLookup(input.bytes)
  for (const c of contributions(input)) {
    const bytes = lookup(c.keyid)
    for (const path of ancestors(c.tenant)) {
      const acc = accs.get(path)
      if (acc) add(acc, c, bytes)
    }
  }
  const top = ordered.reduce((min, n) => Math.min(min, segments(n.path).length), Infinity)
  return ordered.map((n) => ({
    path: n.path,
    kind: n.kind,
    name: n.name,
    displayName: n.displayName ?? n.name,
    depth: segments(n.path).length - top,
    kpis: finish(accs.get(n.path)!)
  }))
}

/** True when the record breaks its SLA as of `now` (see the definitions above). */
export function isSlaBreach (r: PatchRecord, now: Date): boolean {
  if (r.slaDeadline === undefined) return false
  const deadline = Date.parse(r.slaDeadline)
  if (isInstalled(r)) return Date.parse(r.installedAt!) > deadline
  return now.getTime() > deadline
}

/** Hours from availableAt to installedAt for an installed record (≥ 0), else null. */
export function hoursToPatch (r: PatchRecord): number | null {
  if (!isInstalled(r)) return null
  return Math.max(0, (Date.parse(r.installedAt!) - Date.parse(r.availableAt)) / HOUR)
}

/** The p-th percentile (0 < p ≤ 100) of ascending `sorted` by nearest rank; null when empty. */
export function nearestRank (sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length))
  return sorted[rank - 1]!
}

/** Records of endpoints in scope only (a filter shared by the exports). */
export function recordsInScope (input: Pick<KpiInput, 'records' | 'endpoints'>): PatchRecord[] {
  const keyids = new Set(input.endpoints.map((e) => e.keyid))
  return input.records.filter((r) => keyids.has(r.endpoint))
}

function isInstalled (r: PatchRecord): boolean {
  return r.state === 'installed' && r.installedAt !== undefined
}

/** One endpoint's share of the KPIs, computed once and added to every node above it. */
interface Contribution {
  keyid: string
  tenant: string
  compliant: boolean
  hours: number[]
  finished: number
  firstPass: number
  finalInstalled: number
  breaches: number
}

function * contributions (input: KpiInput): Generator<Contribution> {
  const byEndpoint = new Map<string, Contribution>()
  for (const e of input.endpoints) {
    if (byEndpoint.has(e.keyid)) throw PatchswarmError.BAD_ARGUMENT(`endpoint ${e.keyid.slice(0, 12)}… is listed twice`)
    byEndpoint.set(e.keyid, { keyid: e.keyid, tenant: e.tenant, compliant: true, hours: [], finished: 0, firstPass: 0, finalInstalled: 0, breaches: 0 })
  }
  const now = input.now.getTime()
  for (const r of input.records) {
    const c = byEndpoint.get(r.endpoint)
    if (c === undefined) continue
    const installed = isInstalled(r)
    if (!installed && Date.parse(r.availableAt) <= now) c.compliant = false
    const h = hoursToPatch(r)
    if (h !== null) c.hours.push(h)
    if (r.attempts > 0 || r.firstResult !== undefined) {
      c.finished++
      if (r.firstResult === 'installed') c.firstPass++
      if (installed) c.finalInstalled++
    }
    if (isSlaBreach(r, input.now)) c.breaches++
  }
  yield * byEndpoint.values()
}

interface Accumulator {
  endpoints: number
  compliant: number
  hours: number[]
  finished: number
  firstPass: number
  finalInstalled: number
  breaches: number
  bytes: ByteCounts
}

function newAccumulator (): Accumulator {
  return { endpoints: 0, compliant: 0, hours: [], finished: 0, firstPass: 0, finalInstalled: 0, breaches: 0, bytes: { origin: 0, site: 0, peer: 0, local: 0 } }
}

function add (acc: Accumulator, c: Contribution, bytes: ByteCounts | undefined): void {
  acc.endpoints++
  if (c.compliant) acc.compliant++
  for (const h of c.hours) acc.hours.push(h)
  acc.finished += c.finished
  acc.firstPass += c.firstPass
  acc.finalInstalled += c.finalInstalled
  acc.breaches += c.breaches
  if (bytes) {
    acc.bytes.origin += bytes.origin
    acc.bytes.site += bytes.site
    acc.bytes.peer += bytes.peer
    acc.bytes.local += bytes.local
  }
}

function finish (acc: Accumulator): Kpis {
  const hours = acc.hours.sort((a, b) => a - b)
  const delivered = acc.bytes.origin + acc.bytes.site + acc.bytes.peer
  return {
    endpoints: acc.endpoints,
    compliant: acc.compliant,
    compliance: ratio(acc.compliant, acc.endpoints),
    timeToPatch: { count: hours.length, medianHours: nearestRank(hours, 50), p95Hours: nearestRank(hours, 95) },
    firstPassSuccess: ratio(acc.firstPass, acc.finished),
    finalSuccess: ratio(acc.finalInstalled, acc.finished),
    slaBreaches: acc.breaches,
    bytes: { ...acc.bytes, delivered },
    wanSavings: delivered === 0 ? null : 1 - acc.bytes.origin / delivered
  }
}

function ratio (part: number, whole: number): number | null {
  return whole === 0 ? null : part / whole
}

function byteLookup (bytes: KpiInput['bytes']): (keyid: string) => ByteCounts | undefined {
  if (bytes instanceof Map) return (k) => bytes.get(k)
  const record = bytes as Readonly<Record<string, ByteCounts>>
  return (k) => Object.hasOwn(record, k) ? record[k] : undefined
}

function segments (path: string): string[] {
  return path === '' ? [] : path.split('/')
}

/** 'a/b/c' → 'a/b/c', 'a/b', 'a', '' (the whole organisation). */
function * ancestors (path: string): Generator<string> {
  let p = path
  while (true) {
    yield p
    if (p === '') return
    const i = p.lastIndexOf('/')
    p = i < 0 ? '' : p.slice(0, i)
  }
}

/** Pre-order with children by name is the order of the paths compared segment by segment. */
function preOrder (nodes: readonly KpiNode[]): KpiNode[] {
  const keyed = nodes.map((n) => ({ n, s: segments(n.path) }))
  keyed.sort((a, b) => {
    const len = Math.min(a.s.length, b.s.length)
    for (let i = 0; i < len; i++) {
      if (a.s[i] !== b.s[i]) return a.s[i]! < b.s[i]! ? -1 : 1
    }
    return a.s.length - b.s.length
  })
  return keyed.map((k) => k.n)
}
