import t from 'tap'
import { firstValueFrom, skip, take, toArray } from 'rxjs'
import { appendFacts } from '../../lib/report/facts.js'
import { ReportViews, VIEWS_FORMAT } from '../../lib/report/views.js'
import type { RolloutProgress } from '../../lib/report/views.js'
import type { SignedEvent } from '../../lib/report/event.js'
import { Agent, bytesOf, openStack, openViews, register, RELEASE, type Stack } from './event-fixtures.js'

const R = RELEASE.envelopeHash
const release = { hash: R, name: RELEASE.name, version: RELEASE.packageVersion, risk: 'critical' as const }

async function assign (s: Stack, rollout: string, phase: string, agents: Agent[], availableAt = '2030-01-01T00:00:00Z', slaDeadline: string | null = '2030-01-04T00:00:00Z') {
  await appendFacts(s.log, [{
    type: 'patch.assigned', rollout, phase, release,
    endpoints: agents.map((a) => ({ keyid: a.keyid, tenant: a.tenant })),
    availableAt, ...(slaDeadline !== null ? { slaDeadline } : {})
  }])
}

async function send (s: Stack, ...events: Promise<SignedEvent>[]) {
  const r = await s.ingestor.ingest((await Promise.all(events)).map(bytesOf))
  if (r.results.some((x) => x.status !== 'accepted')) throw new Error(JSON.stringify(r.results))
}

t.test('views follow the log: patch records, rollout progress, endpoints, bytes', async (t) => {
  const s = await openStack(t)
  const views = await openViews(t, s)
  const a = new Agent('msp/customer-a')
  const b = new Agent('msp/customer-b')
  const c = new Agent('msp/customer-b')
  for (const x of [a, b, c]) register(s.registry, x)

  await assign(s, 'r1', 'pilot', [a])
  await appendFacts(s.log, [{ type: 'rollout.changed', rollout: 'r1', state: 'running', phase: 'pilot', release: R }])
  t.same(views.patchRecord(a.keyid, R), {
    endpoint: a.keyid, tenant: 'msp/customer-a', release: R, name: 'editor', version: '2.4.1', risk: 'critical', rollout: 'r1',
    availableAt: '2030-01-01T00:00:00Z', slaDeadline: '2030-01-04T00:00:00Z', state: 'assigned', attempts: 0, updatedAt: '2030-01-01T00:00:01.000Z'
  }, 'an assignment alone makes a record in state assigned')
  t.equal(views.statusOf('r1', a.keyid), 'assigned')

  // a: fails once, then installs on the second attempt.
  await send(s, a.job('downloading', { rollout: 'r1' }), a.job('installing', { rollout: 'r1' }),
    a.job('failed', { rollout: 'r1', code: 'INSTALL_FAILED', reason: 'exit 3' }), a.transfer({ origin: 100, site: 300, peer: 600, local: 0 }))
  t.match(views.patchRecord(a.keyid, R), { state: 'failed', attempts: 1, firstResult: 'failed', code: 'INSTALL_FAILED', reason: 'exit 3', failedAt: '2030-01-01T12:03:00.000Z' })
  await send(s, a.job('installing', { rollout: 'r1', attempt: 2 }), a.job('installed', { rollout: 'r1', attempt: 2 }))
  const ra = views.patchRecord(a.keyid, R)!
  t.match(ra, { state: 'installed', attempts: 2, firstResult: 'failed', installedAt: '2030-01-01T12:06:00.000Z', code: 'INSTALL_FAILED' })
  t.equal(views.position, s.log.last, 'the views include an append as soon as it resolves')

  // The next phase: b and c.
  await assign(s, 'r1', 'broad', [b, c], '2030-01-02T00:00:00Z')
  await send(s, b.job('installed', { rollout: 'r1' }), c.job('downloading', { rollout: 'r1' }), b.transfer({ origin: 0, site: 1000, peer: 0, local: 24 }))
  const progress = views.rollout('r1')!
  t.match(progress, {
    rollout: 'r1', state: 'running', phase: 'pilot', release: R, total: 3,
    counts: { installed: 2, downloading: 1 },
    phases: { pilot: { total: 1, counts: { installed: 1 } }, broad: { total: 2, counts: { installed: 1, downloading: 1 } } }
  })
  t.equal(views.statusOf('r1', c.keyid), 'downloading')
  t.equal(views.statusOf('r1', 'f'.repeat(64)), undefined)
  t.equal(views.statusOf('r2', a.keyid), undefined)

  t.same(views.patchRecords().map((r) => r.endpoint).sort(), [a.keyid, b.keyid, c.keyid].sort())
  t.same(views.patchRecords({ under: 'msp/customer-b' }).map((r) => r.endpoint).sort(), [b.keyid, c.keyid].sort())
  t.same(views.patchRecords({ under: 'msp/customer' }), [], 'scopes are whole path segments')
  t.same(views.bytes(), { origin: 100, site: 1300, peer: 600, local: 24 })
  t.same(views.bytes({ under: 'msp/customer-a' }), { origin: 100, site: 300, peer: 600, local: 0 })
  t.same(views.bytesByEndpoint({ under: 'msp/customer-b' }), { [b.keyid]: { origin: 0, site: 1000, peer: 0, local: 24 }, [c.keyid]: { origin: 0, site: 0, peer: 0, local: 0 } })

  const ep = views.endpoint(a.keyid)!
  t.match(ep, { keyid: a.keyid, tenant: 'msp/customer-a', lastSeq: 6, lastEventAt: '2030-01-01T12:06:00.000Z', jobs: { [R]: { state: 'installed', attempt: 2, rollout: 'r1' } } })
  t.equal(views.endpoints({ under: 'msp/customer-b' }).length, 2)

  // Results are copies: changing them changes nothing.
  ra.state = 'failed'
  progress.counts.installed = 99
  t.equal(views.patchRecord(a.keyid, R)!.state, 'installed')
  t.equal(views.rollout('r1')!.counts.installed, 2)
})

t.test('rollbacks, early job events, agent and endpoint facts', async (t) => {
  const s = await openStack(t)
  const views = await openViews(t, s)
  const a = new Agent()
  register(s.registry, a)

  // Job events before the assignment was logged count once it is.
  await send(s, a.job('downloading', { rollout: 'r1' }), a.job('installed', { rollout: 'r1' }), a.agentState('started'))
  t.equal(views.patchRecord(a.keyid, R), undefined, 'no record before the release is due')
  t.equal(views.patchRecords().length, 0)
  await assign(s, 'r1', 'pilot', [a], '2030-01-01T00:00:00Z', null)
  const record = views.patchRecord(a.keyid, R)!
  t.match(record, { state: 'installed', attempts: 1, firstResult: 'installed', installedAt: '2030-01-01T12:02:00.000Z', availableAt: '2030-01-01T00:00:00Z' })
  t.notOk('slaDeadline' in record)
  t.equal(views.statusOf('r1', a.keyid), 'installed')
  t.match(views.endpoint(a.keyid), { agent: { state: 'started', version: '1.0.0' } })

  // The console orders a rollback; the agent reports it.
  await appendFacts(s.log, [{ type: 'patch.rollback', rollout: 'r1', release: R, endpoints: [a.keyid] }])
  t.equal(views.rollout('r1')!.rollbackOrdered, 1)
  t.same(views.members('r1')[a.keyid], { state: 'installed', release: R, phase: 'pilot', rollback: true })
  await appendFacts(s.log, [{ type: 'patch.rollback', rollout: 'r1', release: R, endpoints: [a.keyid] }])
  t.equal(views.rollout('r1')!.rollbackOrdered, 1, 'ordering it again counts once')
  await send(s, a.job('rolling-back', { action: 'rollback', rollout: 'r1' }), a.job('rolled-back', { action: 'rollback', rollout: 'r1', code: 'HEALTH_CHECK_FAILED', reason: 'unhealthy' }))
  const after = views.patchRecord(a.keyid, R)!
  t.equal(after.state, 'rolled-back')
  t.notOk('installedAt' in after, 'a rollback clears installedAt')
  t.match(after, { failedAt: '2030-01-01T12:05:00.000Z', code: 'HEALTH_CHECK_FAILED', attempts: 1, firstResult: 'installed' })
  t.match(views.rollout('r1'), { total: 1, counts: { 'rolled-back': 1 } })

  await appendFacts(s.log, [{ type: 'endpoint.removed', keyid: a.keyid, tenant: a.tenant }])
  t.equal(views.endpoint(a.keyid)!.status, 'removed')
  await t.rejects(appendFacts(s.log, [{ type: 'patch.assigned', rollout: 'r1' }]), { code: 'BAD_ARGUMENT' }, 'facts are validated before they are logged')
  t.equal(views.skipped, 0)
})

t.test('selectors emit when their part changes', async (t) => {
  const s = await openStack(t)
  const views = await openViews(t, s)
  const a = new Agent()
  const b = new Agent('msp/customer-b')
  register(s.registry, a)
  register(s.registry, b)
  const rollout: (RolloutProgress | undefined)[] = []
  const bytes: unknown[] = []
  const records: number[] = []
  const subs = [
    views.rollout$('r1').subscribe((r) => rollout.push(r)),
    views.bytes$({ under: 'msp/customer-a' }).subscribe((x) => bytes.push(x)),
    views.patchRecords$().subscribe((x) => records.push(x.length))
  ]
  t.teardown(() => subs.forEach((x) => x.unsubscribe()))
  await assign(s, 'r1', 'pilot', [a])
  await send(s, a.job('downloading', { rollout: 'r1' }))
  await send(s, b.transfer({ origin: 1, site: 0, peer: 0, local: 0 })) // another tenant: a's bytes do not change
  await send(s, a.transfer({ origin: 5, site: 0, peer: 0, local: 0 }))
  t.same(rollout.map((r) => r?.counts), [undefined, { assigned: 1 }, { downloading: 1 }])
  t.same(bytes, [{ origin: 0, site: 0, peer: 0, local: 0 }, { origin: 5, site: 0, peer: 0, local: 0 }])
  t.same(records, [0, 1, 1], 'records$ re-emits only when a pair changed')

  const next = firstValueFrom(views.state$.pipe(skip(1), take(1)))
  await send(s, a.job('verified', { rollout: 'r1' }))
  t.equal((await next).position, s.log.last)
  const positions = firstValueFrom(views.select((st) => st.position).pipe(take(2), toArray()))
  await send(s, a.job('installed', { rollout: 'r1' }))
  t.same(await positions, [s.log.last - 1, s.log.last])
})

/** Restored maps are in key order, live ones in arrival order: compare sorted. */
const sorted = <T extends { endpoint?: string, keyid?: string }>(xs: T[]) => xs.slice().sort((x, y) => (x.endpoint ?? x.keyid)!.localeCompare((y.endpoint ?? y.keyid)!))

t.test('a restart loads the snapshot and replays only the tail', async (t) => {
  const dir = t.testdir()
  const registry = new Map()
  const agents = Array.from({ length: 10 }, (_, i) => new Agent(`msp/customer-${i % 3}`))
  for (const a of agents) register(registry, a)
  const s1 = await openStack(t, { dir, registry })
  const v1 = new ReportViews(s1.db, { log: s1.log, snapshotEvery: 100 })
  await v1.ready()
  t.equal(v1.loadedFrom, 0)
  await assign(s1, 'r1', 'pilot', agents)
  const states = ['downloading', 'verified', 'installing', 'installed'] as const
  for (let round = 0; round < 25; round++) {
    await s1.ingestor.ingest(await Promise.all(agents.map((a, i) => (i + round) % 5 === 0
      ? a.transfer({ origin: round, site: 2, peer: 3, local: 0 })
      : a.job(states[round % 4]!, { rollout: 'r1', attempt: 1 + Math.floor(round / 4) }))).then((es) => es.map(bytesOf)))
  }
  t.equal(s1.log.last, 251)
  // No close(): as after a crash, only the periodic snapshots are on disk.
  const crashed = new ReportViews(s1.db, { log: s1.log, snapshotEvery: 100 })
  await crashed.ready()
  t.ok(crashed.loadedFrom >= 200 && crashed.loadedFrom < 251, `a periodic snapshot covered ${crashed.loadedFrom}`)
  t.equal(crashed.applied, 251 - crashed.loadedFrom, 'only the entries after it were replayed')
  t.same(sorted(crashed.patchRecords()), sorted(v1.patchRecords()))
  await crashed.close()

  await v1.close() // writes the final snapshot
  await send(s1, agents[0]!.job('failed', { rollout: 'r1', attempt: 9, code: 'TIMEOUT' }), agents[1]!.agentState('stopped'))
  await appendFacts(s1.log, [{ type: 'rollout.changed', rollout: 'r1', state: 'paused' }])
  await s1.close()

  const s2 = await openStack(t, { dir, registry })
  const v2 = await openViews(t, s2, { snapshotEvery: 100 })
  t.equal(v2.loadedFrom, 251)
  t.equal(v2.applied, 3, 'three entries replayed, not 254')
  t.equal(v2.position, 254)

  // The same state as folding the whole log from scratch.
  const fresh = await openViews(t, s2, { sublevelName: 'report-views-fresh' })
  t.equal(fresh.applied, 254)
  t.same(sorted(v2.patchRecords()), sorted(fresh.patchRecords()))
  t.same(v2.rollouts(), fresh.rollouts())
  t.same(v2.members('r1'), fresh.members('r1'))
  t.same(sorted(v2.endpoints()), sorted(fresh.endpoints()))
  t.same(v2.bytes(), fresh.bytes())
  t.match(v2.rollout('r1'), { state: 'paused', total: 10 })
  t.match(v2.patchRecord(agents[0]!.keyid, R), { state: 'failed', code: 'TIMEOUT', attempts: 9 })

  // Live entries keep flowing into the restored views.
  await send(s2, agents[2]!.job('installed', { rollout: 'r1', attempt: 9 }))
  t.equal(v2.statusOf('r1', agents[2]!.keyid), 'installed')
  t.equal(v2.applied, 4)
})

t.test('a snapshot of another format is dropped and the views rebuilt', async (t) => {
  const dir = t.testdir()
  const s1 = await openStack(t, { dir })
  const a = new Agent()
  register(s1.registry, a)
  const v1 = new ReportViews(s1.db, { log: s1.log })
  await v1.ready()
  await assign(s1, 'r1', 'pilot', [a])
  await send(s1, a.job('installed', { rollout: 'r1' }))
  await v1.close()
  const store = s1.db.sublevel<string, string>('report-views', { valueEncoding: 'utf8' })
  const meta = JSON.parse((await store.get('meta'))!)
  t.same(meta.position, 2)
  await store.put('meta', JSON.stringify({ ...meta, format: VIEWS_FORMAT + 1 }))
  await store.put('e!stale', JSON.stringify({ keyid: 'stale' }))
  const v2 = await openViews(t, s1)
  t.equal(v2.loadedFrom, 0)
  t.equal(v2.applied, 2)
  t.equal(v2.endpoint('stale'), undefined, 'nothing of the old snapshot is kept')
  t.equal(v2.statusOf('r1', a.keyid), 'installed')
})

t.test('20 000 events: ingestion and views in reasonable time and memory', async (t) => {
  const s = await openStack(t)
  const views = await openViews(t, s, { snapshotEvery: 5000 })
  const agents = Array.from({ length: 100 }, (_, i) => new Agent(`msp/customer-${i % 10}`))
  for (const a of agents) register(s.registry, a)
  await assign(s, 'big', 'all', agents)
  const states = ['downloading', 'verified', 'installing', 'installed'] as const
  const batches: Buffer[][] = []
  for (let round = 0; round < 200; round += 50) {
    for (let g = 0; g < 100; g += 5) {
      const batch: Buffer[] = []
      for (const a of agents.slice(g, g + 5)) {
        for (let k = round; k < round + 50; k++) {
          batch.push(bytesOf(k % 10 === 9
            ? await a.transfer({ origin: 10, site: 20, peer: 30, local: 0 })
            : await a.job(states[k % 4]!, { rollout: 'big', attempt: 1 + Math.floor(k / 4) })))
        }
      }
      batches.push(batch)
    }
  }
  global.gc?.()
  const heapBefore = process.memoryUsage().heapUsed
  const start = performance.now()
  let accepted = 0
  for (const batch of batches) accepted += (await s.ingestor.ingest(batch)).results.filter((r) => r.status === 'accepted').length
  const seconds = (performance.now() - start) / 1000
  const heapGrowth = (process.memoryUsage().heapUsed - heapBefore) / 1024 / 1024
  t.equal(accepted, 20_000)
  t.equal(views.position, 20_001)
  // Each agent's last job event is k = 198: states[198 % 4]; 20 transfers of 10/20/30 bytes each.
  t.same(views.rollout('big')!.counts, { installing: 100 })
  t.same(views.bytes(), { origin: 20_000, site: 40_000, peer: 60_000, local: 0 })
  t.equal(views.patchRecords().length, 100)
  t.ok(views.loadedFrom === 0 && views.applied === 20_001)
  t.comment(`20 000 events in ${seconds.toFixed(1)} s (${Math.round(20_000 / seconds)}/s), heap +${heapGrowth.toFixed(0)} MiB`)
  t.ok(seconds < 60, 'well under a minute even on a busy machine')
  t.ok(heapGrowth < 64, 'memory does not grow with the log (the entries alone would be ~40 MiB)')
})
