import t from 'tap'
import { buildReport, reportToJson, reportToCsv, renderHtmlReport, csvCell, CSV_COLUMNS, REPORT_FORMAT } from '../../lib/report/export.js'
import { escapeHtml } from '../../lib/report/html-report.js'
import { kpiFleet, EXPECTED, PRE_ORDER, endpointId } from '../../fixtures/kpi-fleet.js'

const report = (over: Partial<ReturnType<typeof kpiFleet>> & { scope?: string } = {}) => buildReport({ scope: 'msp-1', ...kpiFleet(), ...over })

t.test('the JSON export: documented shape, stable text', async (t) => {
  const r = report()
  const text = reportToJson(r)
  const parsed = JSON.parse(text)
  t.same(Object.keys(parsed), ['format', 'generatedAt', 'nodes', 'records', 'scope'], 'keys sorted')
  t.equal(parsed.format, REPORT_FORMAT)
  t.equal(parsed.scope, 'msp-1')
  t.equal(parsed.generatedAt, '2025-03-10T00:00:00.000Z')
  t.same(parsed.nodes.map((n: { path: string }) => n.path), PRE_ORDER)
  for (const n of parsed.nodes) t.same(n.kpis, EXPECTED[n.path], `kpis of ${n.path}`)
  t.equal(parsed.records.length, 24, 'the 25 fixture records less the unapproved endpoint\'s')
  t.notOk(parsed.records.some((x: { endpoint: string }) => x.endpoint === endpointId(13)), 'no record of an endpoint not in scope')
  const tenants = parsed.records.map((x: { tenant: string, endpoint: string }) => x.tenant + ' ' + x.endpoint)
  t.same(tenants, [...tenants].sort(), 'records sorted by tenant and endpoint')
  const shuffled = buildReport({ scope: 'msp-1', ...kpiFleet(), records: [...kpiFleet().records].reverse(), nodes: [...kpiFleet().nodes].reverse() })
  t.equal(reportToJson(shuffled), text, 'the same facts in another order give the same bytes')
})

t.test('a narrower scope leaves out everything outside it', async (t) => {
  const r = report({ scope: 'msp-1/acme' })
  t.same(r.nodes.map((n) => n.path), ['msp-1/acme', 'msp-1/acme/dev', 'msp-1/acme/sales'])
  t.same(r.nodes[0]!.kpis, EXPECTED['msp-1/acme'])
  t.equal(r.nodes[0]!.depth, 0)
  t.ok(r.records.every((x) => x.tenant.startsWith('msp-1/acme')))
  t.equal(r.records.length, 14)
  const wrong = report({ scope: 'msp-1/acm' })
  t.same(wrong.nodes, [], 'scopes are matched by whole path segments')
})

function parseCsv (text: string): string[][] {
  // A strict RFC 4180 reader, enough to check what we write round-trips.
  const rows: string[][] = []
  let row: string[] = []
  let i = 0
  while (i < text.length) {
    let cell = ''
    if (text[i] === '"') {
      i++
      while (true) {
        if (text[i] === '"' && text[i + 1] === '"') { cell += '"'; i += 2 } else if (text[i] === '"') { i++; break } else cell += text[i++]
      }
    } else {
      while (i < text.length && text[i] !== ',' && text[i] !== '\r') cell += text[i++]
    }
    row.push(cell)
    if (text[i] === ',') { i++; continue }
    if (text.slice(i, i + 2) !== '\r\n') throw new Error(`expected CRLF at ${i}`)
    i += 2
    rows.push(row)
    row = []
  }
  return rows
}

t.test('the CSV export: one row per record, RFC 4180 quoting, formulas defused', async (t) => {
  const f = kpiFleet()
  const records = f.records.map((r) => r.endpoint === endpointId(5) && r.name === 'firefox'
    ? { ...r, reason: '=HYPERLINK("http://evil","click"), then\r\na "quoted" line' }
    : r)
  const csv = reportToCsv(report({ records }))
  t.ok(csv.endsWith('\r\n'))
  const rows = parseCsv(csv)
  t.same(rows[0], [...CSV_COLUMNS])
  t.equal(rows.length, 1 + 24)
  t.ok(rows.every((r) => r.length === CSV_COLUMNS.length), 'every row has every column')
  const col = (name: string) => CSV_COLUMNS.indexOf(name as typeof CSV_COLUMNS[number])
  const evil = rows.find((r) => r[col('endpoint')] === endpointId(5) && r[col('name')] === 'firefox')!
  t.equal(evil[col('reason')], '\'=HYPERLINK("http://evil","click"), then\r\na "quoted" line', 'quoted, quotes doubled, formula prefixed')
  const e5 = rows.find((r) => r[col('endpoint')] === endpointId(5) && r[col('name')] === 'openssl')!
  t.equal(e5[col('hoursToPatch')], '96')
  t.equal(e5[col('slaBreach')], 'yes')
  const e1 = rows.find((r) => r[col('endpoint')] === endpointId(1) && r[col('name')] === 'openssl')!
  t.same([e1[col('hoursToPatch')], e1[col('slaBreach')], e1[col('attempts')], e1[col('rollout')]], ['6', 'no', '1', 'openssl-rollout'])
  t.equal(rows.filter((r) => r[col('slaBreach')] === 'yes').length, EXPECTED['msp-1']!.slaBreaches)
})

t.test('csv cells', async (t) => {
  t.equal(csvCell('plain'), 'plain')
  t.equal(csvCell(undefined), '')
  t.equal(csvCell(3), '3')
  t.equal(csvCell('a,b'), '"a,b"')
  t.equal(csvCell('say "hi"'), '"say ""hi"""')
  t.equal(csvCell('line\nbreak'), '"line\nbreak"')
  for (const lead of ['=', '+', '-', '@', '\t']) t.equal(csvCell(`${lead}1+1`), `'${lead}1+1`, `leading ${JSON.stringify(lead)}`)
  t.equal(csvCell('\r=1'), '"\'\r=1"', 'CR: prefixed and quoted')
  t.equal(csvCell('1-2'), '1-2', 'only a leading sign counts')
})

t.test('the HTML report is self-contained and escapes every text', async (t) => {
  const f = kpiFleet()
  const nodes = f.nodes.map((n) => n.path === 'msp-1/acme' ? { ...n, displayName: '<script>alert("acme")</script>' } : n)
  const records = f.records.map((r) => r.endpoint === endpointId(6) && r.name === 'openssl' ? { ...r, reason: '<img src=x onerror=alert(1)>' } : r)
  const html = renderHtmlReport(report({ nodes, records }))
  t.match(html, /^<!DOCTYPE html>/)
  t.notMatch(html, /<script/i, 'no script element, not even the tenant\'s')
  t.notMatch(html, /<img/i, 'no markup from a failure reason')
  t.match(html, '&lt;script&gt;alert(&quot;acme&quot;)&lt;/script&gt;', 'the display name shown as text')
  t.match(html, '&lt;img src=x onerror=alert(1)&gt;')
  t.notMatch(html, /https?:\/\//i, 'no URLs')
  t.notMatch(html, /<link|<iframe|<object|<embed|@import|url\(/i, 'no external assets')
  t.match(html, /Content-Security-Policy" content="default-src 'none'/)
  // One compliance bar per tenant, a histogram, the breaches.
  t.equal((html.match(/fill="#eee"/g) ?? []).length, PRE_ORDER.length, 'a bar per tenant')
  t.match(html, /aria-label="Time-to-patch histogram of 15 installed patches"/)
  t.match(html, 'SLA breaches (4)')
  t.equal((html.match(/not installed \(/g) ?? []).length, 3, 'e06 failed, e09 downloading, e12 rolled back')
  t.match(html, '58.3 %', 'MSP compliance 7/12')
  t.match(html, 'MSP One')
})

t.test('the HTML report of an empty scope still renders', async (t) => {
  const html = renderHtmlReport(report({ scope: 'msp-2' }))
  t.match(html, 'No tenants in scope.')
  t.match(html, 'No installed patches in scope.')
  t.match(html, 'SLA breaches (0)')
  t.equal(escapeHtml(`&<>"'`), '&amp;&lt;&gt;&quot;&#39;')
})
