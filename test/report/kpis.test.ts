import t from 'tap'
import { computeKpis, rollup, nearestRank, isSlaBreach, hoursToPatch, type KpiNode, type KpiEndpoint } from '../../lib/report/kpis.js'
import type { ByteCounts, PatchRecord } from '../../lib/report/records.js'
import { kpiFleet, EXPECTED, PRE_ORDER, NOW, RECORDS, endpointId } from '../../fixtures/kpi-fleet.js'

t.test('rollup matches the hand-computed KPIs at every node, in pre-order', async (t) => {
  const f = kpiFleet()
  // Shuffled input: the order of the result must not depend on it.
  const nodes = [...f.nodes].reverse()
  const result = rollup(nodes, f)
  t.same(result.map((n) => n.path), PRE_ORDER)
  t.same(result.map((n) => n.depth), [0, 1, 2, 2, 1, 2, 2])
  for (const n of result) t.same(n.kpis, EXPECTED[n.path], n.path)
  t.equal(result[1]!.displayName, 'Acme Ltd')
  t.equal(result[2]!.displayName, 'dev', 'the name when there is no display name')
})

t.test('a few of the fixture ratios, as decimals worked out by hand', async (t) => {
  const byPath = new Map(rollup(kpiFleet().nodes, kpiFleet()).map((n) => [n.path, n.kpis]))
  const msp = byPath.get('msp-1')!
  t.ok(Math.abs(msp.compliance! - 0.58333) < 1e-5, '7/12')
  t.ok(Math.abs(msp.firstPassSuccess! - 0.77778) < 1e-5, '14/18')
  t.ok(Math.abs(msp.finalSuccess! - 0.83333) < 1e-5, '15/18')
  t.equal(msp.wanSavings, 0.625)
  t.ok(Math.abs(byPath.get('msp-1/acme/sales')!.wanSavings! - 0.66667) < 1e-5, '1 − 100/300')
  t.equal(byPath.get('msp-1/acme/dev')!.firstPassSuccess, 0.5)
})

t.test('computeKpis over everything equals the top of the tree', async (t) => {
  const f = kpiFleet()
  t.same(computeKpis(f), EXPECTED['msp-1'])
  t.same(computeKpis({ ...f, bytes: new Map(Object.entries(f.bytes)) }), EXPECTED['msp-1'], 'bytes as a Map')
})

t.test('only endpoints in the list count, attributed to their tenant now', async (t) => {
  const f = kpiFleet()
  // e07 moved from acme to globex: its records follow it, whatever tenant the records name.
  const moved = f.endpoints.map((e) => e.keyid === endpointId(7) ? { ...e, tenant: 'msp-1/globex' } : e)
  const byPath = new Map(rollup(f.nodes, { ...f, endpoints: moved }).map((n) => [n.path, n.kpis]))
  t.equal(byPath.get('msp-1/acme')!.endpoints, 6)
  t.equal(byPath.get('msp-1/globex')!.endpoints, 6)
  t.equal(byPath.get('msp-1/globex')!.compliant, 4)
  t.same(byPath.get('msp-1'), EXPECTED['msp-1'], 'the total does not change')
  const none = computeKpis({ ...f, endpoints: [] })
  t.same([none.endpoints, none.compliance, none.firstPassSuccess, none.wanSavings, none.timeToPatch.medianHours], [0, null, null, null, null])
})

t.test('a record that is not due yet does not spoil compliance, and an endpoint with nothing due complies', async (t) => {
  const f = kpiFleet()
  const e8 = endpointId(8)
  const alone = computeKpis({ ...f, endpoints: [{ keyid: e8, tenant: 'msp-1/globex/hq' }] })
  t.equal(alone.compliant, 1, 'R3 is not due for e08 yet')
  const later = computeKpis({ ...f, endpoints: [{ keyid: e8, tenant: 'msp-1/globex/hq' }], now: new Date('2025-03-12T00:00:00Z') })
  t.equal(later.compliant, 0, 'once R3 is due and not installed, e08 is not compliant')
  const empty = computeKpis({ ...f, records: [], endpoints: [{ keyid: e8, tenant: 'x' }] })
  t.equal(empty.compliance, 1)
})

t.test('nearest-rank percentiles', async (t) => {
  t.equal(nearestRank([], 50), null)
  t.equal(nearestRank([7], 50), 7)
  t.equal(nearestRank([7], 95), 7)
  t.equal(nearestRank([1, 2, 3, 4], 50), 2, 'lower middle for an even count')
  t.equal(nearestRank([1, 2, 3, 4, 5], 50), 3)
  const hundred = Array.from({ length: 100 }, (_, i) => i + 1)
  t.equal(nearestRank(hundred, 95), 95)
  t.equal(nearestRank(hundred, 100), 100)
  t.equal(nearestRank([...hundred, 101], 95), 96, 'rank ⌈95.95⌉ = 96')
})

t.test('SLA breaches and time-to-patch of single records', async (t) => {
  const base = RECORDS[0]!
  const deadline = base.slaDeadline!
  t.notOk(isSlaBreach(base, NOW), 'installed in time')
  t.ok(isSlaBreach({ ...base, installedAt: '2025-03-04T00:00:01.000Z' }, NOW), 'installed a second late')
  t.notOk(isSlaBreach({ ...base, installedAt: deadline }, NOW), 'installed at the deadline')
  const pending: PatchRecord = { ...base, state: 'installing', installedAt: undefined }
  t.notOk(isSlaBreach(pending, new Date(deadline)), 'not installed, deadline not yet past')
  t.ok(isSlaBreach(pending, new Date(Date.parse(deadline) + 1)), 'not installed, deadline past')
  t.notOk(isSlaBreach({ ...pending, slaDeadline: undefined }, NOW), 'no SLA, no breach')
  t.equal(hoursToPatch(base), 6)
  t.equal(hoursToPatch(pending), null)
  t.equal(hoursToPatch({ ...base, installedAt: '2025-02-28T23:00:00.000Z' }), 0, 'an agent clock behind the console does not make it negative')
})

t.test('bad input is refused', async (t) => {
  const f = kpiFleet()
  t.throws(() => rollup([...f.nodes, f.nodes[0]!], f), { code: 'BAD_ARGUMENT' }, 'a node twice')
  t.throws(() => computeKpis({ ...f, endpoints: [...f.endpoints, f.endpoints[0]!] }), { code: 'BAD_ARGUMENT' }, 'an endpoint twice')
  const withEndpointNode = rollup([...f.nodes, { path: 'msp-1/acme/e1', kind: 'endpoint', name: 'e1' }], f)
  t.equal(withEndpointNode.length, f.nodes.length, 'endpoint nodes are not reported on')
})

t.test('10 000 endpoints × 3 releases roll up quickly over a deep tree', async (t) => {
  const nodes: KpiNode[] = [{ path: 'dist', kind: 'distributor', name: 'dist' }, { path: 'dist/msp', kind: 'msp', name: 'msp' }]
  const endpoints: KpiEndpoint[] = []
  const records: PatchRecord[] = []
  const bytes = new Map<string, ByteCounts>()
  const now = new Date('2025-03-10T00:00:00Z')
  for (let c = 0; c < 100; c++) {
    const customer = `dist/msp/c${c}`
    nodes.push({ path: customer, kind: 'customer', name: `c${c}` })
    for (let g = 0; g < 5; g++) nodes.push({ path: `${customer}/g${g}`, kind: 'group', name: `g${g}` })
  }
  for (let i = 0; i < 10_000; i++) {
    const keyid = i.toString(16).padStart(64, '0')
    const tenant = `dist/msp/c${i % 100}/g${Math.floor(i / 100) % 5}`
    endpoints.push({ keyid, tenant })
    bytes.set(keyid, { origin: i % 3, site: 2, peer: 1, local: 0 })
    for (let r = 0; r < 3; r++) {
      const installed = (i + r) % 4 !== 0
      records.push({
        endpoint: keyid, tenant, release: String(r).repeat(64), name: `p${r}`, version: '1', risk: 'high',
        availableAt: '2025-03-01T00:00:00.000Z', slaDeadline: '2025-03-08T00:00:00.000Z',
        state: installed ? 'installed' : 'failed', attempts: 1, firstResult: installed ? 'installed' : 'failed',
        ...(installed ? { installedAt: new Date(Date.parse('2025-03-01T00:00:00Z') + ((i * 7 + r) % 200) * 3_600_000).toISOString() } : {}),
        updatedAt: '2025-03-09T00:00:00.000Z'
      })
    }
  }
  const start = performance.now()
  const result = rollup(nodes, { records, endpoints, bytes, now })
  const ms = performance.now() - start
  t.equal(result.length, nodes.length)
  t.equal(result[0]!.kpis.endpoints, 10_000)
  t.same(result[0]!.kpis, computeKpis({ records, endpoints, bytes, now }), 'the top equals the whole')
  const groups = result.filter((n) => n.kind === 'group')
  t.equal(groups.reduce((s, n) => s + n.kpis.endpoints, 0), 10_000, 'every endpoint in exactly one group')
  t.ok(ms < 3000, `rollup of ${records.length} records over ${nodes.length} nodes took ${ms.toFixed(0)} ms`)
})
