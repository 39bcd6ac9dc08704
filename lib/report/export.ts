// Exports of the KPIs and patch records for people and tools outside the console: JSON for tools,
// CSV for spreadsheets, a self-contained HTML audit report (html-report.ts) for auditors. All three
// are built from one Report value, so they always agree with each other.
//
// JSON shape ('patchswarm-report/1'), keys sorted at every level, 2-space indent:
//   {
//     "format": "patchswarm-report/1",
//     "generatedAt": ISO time; also the `now` every KPI was computed at,
//     "scope": tenant path the report covers ('' = the whole organisation),
//     "nodes": [ { "path", "kind", "name", "displayName", "depth", "kpis": Kpis } ]  pre-order,
//     "records": [ PatchRecord ]  sorted by tenant, endpoint, name, version, release
//   }
// Kpis and PatchRecord are documented in records.ts, the KPI definitions in kpis.ts. Absent
// optional fields are left out rather than written as null.
import { isWithinTenant } from '../trust/fields.js'
import { type KpiInput, type KpiNode, type NodeKpis, rollup, recordsInScope, isSlaBreach, hoursToPatch } from './kpis.js'
import type { PatchRecord } from './records.js'

export { renderHtmlReport } from './html-report.js'

export const REPORT_FORMAT = 'patchswarm-report/1'

export interface Report {
  format: typeof REPORT_FORMAT
  scope: string
  generatedAt: string
  nodes: NodeKpis[]
  records: PatchRecord[]
}

export interface ReportInput extends KpiInput {
  /** The tenant subtree the report covers ('' = the whole organisation); nothing outside it is shown. */
  scope: string
  nodes: readonly KpiNode[]
}

/** KPIs of every node in scope and the records of the endpoints in scope, as of `now`. */
export function buildReport (input: ReportInput): Report {
  const inScope = (path: string) => isWithinTenant(path, input.scope)
  // Defensive: a report leaves the console, so nothing outside the scope may slip into it even if
  // the caller passed a wider list.
  const endpoints = input.endpoints.filter((e) => inScope(e.tenant))
  const nodes = input.nodes.filter((n) => inScope(n.path))
  const records = recordsInScope({ records: input.records, endpoints }).sort(compareRecords)
  return {
    format: REPORT_FORMAT,
    scope: input.scope,
    generatedAt: input.now.toISOString(),
    nodes: rollup(nodes, { ...input, endpoints }),
    records
  }
}

/** The report as JSON: the same report always gives the same text. */
export function reportToJson (report: Report): string {
  return JSON.stringify(sortKeys(report), null, 2) + '\n'
}

/** Columns of the CSV, one row per patch record. */
export const CSV_COLUMNS = [
  'tenant', 'endpoint', 'name', 'version', 'risk', 'release', 'rollout', 'state', 'availableAt', 'slaDeadline',
  'installedAt', 'hoursToPatch', 'slaBreach', 'attempts', 'firstResult', 'failedAt', 'code', 'reason', 'updatedAt'
] as const

/**
 * The records as CSV after RFC 4180: CRLF line ends, a header row, and a field quoted (with its
 * quotes doubled) when it holds a comma, quote, CR or LF. hoursToPatch and slaBreach are derived
 * as of report.generatedAt (see kpis.ts).
 *
 * Formula injection: a spreadsheet runs a cell that starts with = + - @ as a formula, and an
 * endpoint controls some of these texts (a failure reason, an installer's message), so such a
 * cell would let an endpoint put a formula on the admin's screen (=HYPERLINK(…), DDE). A cell that
 * starts with one of them, or with TAB or CR (which some spreadsheets skip before looking), gets a
 * leading ' so it is shown as text. Our own numbers never start with these.
 */
export function reportToCsv (report: Report): string {
  const now = new Date(report.generatedAt)
  const rows = [CSV_COLUMNS.join(',')]
  for (const r of report.records) {
    const derived: Record<string, unknown> = { hoursToPatch: hoursToPatch(r) ?? '', slaBreach: isSlaBreach(r, now) ? 'yes' : 'no' }
    const fields = CSV_COLUMNS.map((c) => csvCell(c in derived ? derived[c] : (r as unknown as Record<string, unknown>)[c]))
    rows.push(fields.join(','))
  }
  return rows.join('\r\n') + '\r\n'
}

export function csvCell (value: unknown): string {
  let s = value === undefined || value === null ? '' : String(value)
  if (/^[=+\-@\t\r]/.test(s)) s = "'" + s
  return /[",\r\n]/.test(s) ? '"' + s.replaceAll('"', '""') + '"' : s
}

function compareRecords (a: PatchRecord, b: PatchRecord): number {
  return cmp(a.tenant, b.tenant) || cmp(a.endpoint, b.endpoint) || cmp(a.name, b.name) || cmp(a.version, b.version) ||
    cmp(a.release, b.release) || cmp(a.availableAt, b.availableAt)
}

function cmp (a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

function sortKeys (value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys)
  if (value === null || typeof value !== 'object') return value
  const out: Record<string, unknown> = {}
  for (const k of Object.keys(value).sort()) out[k] = sortKeys((value as Record<string, unknown>)[k])
  return out
}
