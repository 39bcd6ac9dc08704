// The HTML audit report: one self-contained file an auditor can open offline and archive. KPIs per
// tenant, a compliance bar chart and a time-to-patch histogram as inline SVG, and the SLA breaches.
// It loads nothing (no URLs, scripts, links or fonts) and a Content-Security-Policy forbids it to,
// so it looks the same in ten years and cannot call home. Every text from the fleet (tenant
// names, package names, reasons) passes through escapeHtml: a display name is admin input and a
// reason is endpoint input, and neither may become markup.
import type { PatchRecord } from './records.js'
import type { NodeKpis } from './kpis.js'
import { isSlaBreach, hoursToPatch } from './kpis.js'
import type { Report } from './export.js'

/** At most this many bars and table rows; the JSON and CSV exports have everything. */
export const MAX_CHART_BARS = 200
export const MAX_BREACH_ROWS = 1000

/** Time-to-patch histogram bins: [from, to) in hours, chosen around common SLAs (1, 3, 7, 14 days). */
export const TTP_BINS: ReadonlyArray<{ label: string, from: number, to: number }> = [
  { label: '< 4 h', from: 0, to: 4 },
  { label: '4–24 h', from: 4, to: 24 },
  { label: '1–3 d', from: 24, to: 72 },
  { label: '3–7 d', from: 72, to: 168 },
  { label: '1–2 w', from: 168, to: 336 },
  { label: '2–4 w', from: 336, to: 672 },
  { label: '≥ 4 w', from: 672, to: Infinity }
]

export function escapeHtml (s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!)
}

const e = escapeHtml

export function renderHtmlReport (report: Report): string {
  const now = new Date(report.generatedAt)
  const scope = report.scope === '' ? 'the whole organisation' : report.scope
  const breaches = report.records.filter((r) => isSlaBreach(r, now))
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Patch audit report: ${e(scope)}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; } th, td { padding: .25em .6em; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child, td.text { text-align: left; }
.path { color: #777; font-size: .85em; } .muted { color: #777; }
svg text { font: 12px system-ui, sans-serif; fill: #222; }
</style>
</head>
<body>
<h1>Patch audit report</h1>
<p>Scope: <strong>${e(scope)}</strong>. Generated ${e(report.generatedAt)}; every figure is as of that time.
${report.nodes.length} tenant(s), ${report.records.length} patch record(s). Format ${e(report.format)}.</p>
<h2>KPIs per tenant</h2>
${kpiTable(report.nodes)}
<p class="muted">Compliant: every patch due for the endpoint is installed. Time-to-patch: hours from availability to
installation, median and 95th percentile by nearest rank. First-pass and final success: of the patches with a finished
attempt. WAN savings: 1 − origin bytes / delivered bytes.</p>
<h2>Compliance per tenant</h2>
${complianceChart(report.nodes)}
<h2>Time to patch</h2>
${ttpHistogram(report.records)}
<h2>SLA breaches (${breaches.length})</h2>
${breachTable(breaches, now)}
</body>
</html>
`
}

function kpiTable (nodes: NodeKpis[]): string {
  const head = '<tr><th>Tenant</th><th>Kind</th><th>Endpoints</th><th>Compliant</th><th>Compliance</th><th>TTP median</th><th>TTP p95</th>' +
    '<th>First-pass</th><th>Final</th><th>SLA breaches</th><th>Delivered</th><th>WAN savings</th></tr>'
  const rows = nodes.map((n) => {
    const k = n.kpis
    const indent = `padding-left: ${0.6 + 1.2 * n.depth}em`
    return `<tr><td style="${indent}">${e(n.displayName)} <span class="path">${e(n.path)}</span></td><td class="text">${e(n.kind)}</td>` +
      `<td>${k.endpoints}</td><td>${k.compliant}</td><td>${pct(k.compliance)}</td><td>${hours(k.timeToPatch.medianHours)}</td>` +
      `<td>${hours(k.timeToPatch.p95Hours)}</td><td>${pct(k.firstPassSuccess)}</td><td>${pct(k.finalSuccess)}</td>` +
      `<td>${k.slaBreaches}</td><td>${formatBytes(k.bytes.delivered)}</td><td>${pct(k.wanSavings)}</td></tr>`
  })
  return `<table>\n${head}\n${rows.join('\n')}\n</table>`
}

function complianceChart (nodes: NodeKpis[]): string {
  const shown = nodes.slice(0, MAX_CHART_BARS)
  if (shown.length === 0) return '<p class="muted">No tenants in scope.</p>'
  const label = 260
  const width = 400
  const row = 20
  const height = shown.length * row + 10
  const bars = shown.map((n, i) => {
    const y = i * row + 5
    const c = n.kpis.compliance
    const w = c === null ? 0 : Math.round(c * width)
    const name = '\u00a0'.repeat(2 * n.depth) + n.displayName
    return `<text x="${label - 6}" y="${y + 13}" text-anchor="end">${e(truncate(name, 40))}</text>` +
      `<rect x="${label}" y="${y + 2}" width="${width}" height="${row - 6}" fill="#eee"/>` +
      `<rect x="${label}" y="${y + 2}" width="${w}" height="${row - 6}" fill="${barColour(c)}"/>` +
      `<text x="${label + width + 6}" y="${y + 13}">${pct(c)}</text>`
  })
  const more = nodes.length > shown.length ? `<p class="muted">${nodes.length - shown.length} more tenant(s) in the table above.</p>` : ''
  return `<svg role="img" aria-label="Compliance per tenant" width="${label + width + 70}" height="${height}" viewBox="0 0 ${label + width + 70} ${height}">\n${bars.join('\n')}\n</svg>${more}`
}

function ttpHistogram (records: PatchRecord[]): string {
  const counts = TTP_BINS.map(() => 0)
  for (const r of records) {
    const h = hoursToPatch(r)
    if (h === null) continue
    counts[TTP_BINS.findIndex((b) => h >= b.from && h < b.to)]!++
  }
  const total = counts.reduce((a, b) => a + b, 0)
  if (total === 0) return '<p class="muted">No installed patches in scope.</p>'
  const max = Math.max(...counts)
  const col = 70
  const chart = 160
  const top = 20
  const bars = counts.map((n, i) => {
    const h = Math.round((n / max) * chart)
    const x = 10 + i * col
    return `<rect x="${x}" y="${top + chart - h}" width="${col - 12}" height="${h}" fill="#4a7ab5"/>` +
      `<text x="${x + (col - 12) / 2}" y="${top + chart - h - 4}" text-anchor="middle">${n}</text>` +
      `<text x="${x + (col - 12) / 2}" y="${top + chart + 16}" text-anchor="middle">${e(TTP_BINS[i]!.label)}</text>`
  })
  const width = 20 + TTP_BINS.length * col
  const height = top + chart + 26
  return `<svg role="img" aria-label="Time-to-patch histogram of ${total} installed patches" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">\n${bars.join('\n')}\n</svg>`
}

function breachTable (breaches: PatchRecord[], now: Date): string {
  if (breaches.length === 0) return '<p>None.</p>'
  const head = '<tr><th>Tenant</th><th>Endpoint</th><th>Package</th><th>Risk</th><th>Deadline</th><th>Installed</th><th>Overdue</th><th>Reason</th></tr>'
  const rows = breaches.slice(0, MAX_BREACH_ROWS).map((r) => {
    const end = r.state === 'installed' && r.installedAt ? Date.parse(r.installedAt) : now.getTime()
    const overdue = (end - Date.parse(r.slaDeadline!)) / 3_600_000
    const installed = r.state === 'installed' && r.installedAt ? e(r.installedAt) : `not installed (${e(r.state)})`
    const reason = r.code ? `${r.code}${r.reason ? ': ' + r.reason : ''}` : ''
    return `<tr><td>${e(r.tenant)}</td><td class="text" title="${e(r.endpoint)}">${e(r.endpoint.slice(0, 12))}…</td>` +
      `<td class="text">${e(r.name)} ${e(r.version)}</td><td class="text">${e(r.risk)}</td><td class="text">${e(r.slaDeadline!)}</td>` +
      `<td class="text">${installed}</td><td>${hours(overdue)}</td><td class="text">${e(truncate(reason, 200))}</td></tr>`
  })
  const more = breaches.length > MAX_BREACH_ROWS ? `<p class="muted">${breaches.length - MAX_BREACH_ROWS} more in the CSV and JSON exports.</p>` : ''
  return `<table>\n${head}\n${rows.join('\n')}\n</table>${more}`
}

function barColour (c: number | null): string {
  if (c === null) return '#ccc'
  return c >= 0.95 ? '#3a8a3a' : c >= 0.8 ? '#c9a227' : '#c0392b'
}

function pct (x: number | null): string {
  return x === null ? '—' : `${(x * 100).toFixed(1)} %`
}

function hours (h: number | null): string {
  if (h === null) return '—'
  return h < 48 ? `${Number(h.toFixed(1))} h` : `${Number((h / 24).toFixed(1))} d`
}

function truncate (s: string, n: number): string {
  return s.length <= n ? s : s.slice(0, n - 1) + '…'
}

function formatBytes (n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  let v = n
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++ }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`
}

