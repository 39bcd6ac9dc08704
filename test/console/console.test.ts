// The console end to end in one process: enrollment, a release, a two-phase rollout fed by signed
// agent events through the real ingestion path, the directive it issues, and its KPIs.
import t from 'tap'
import { OWNER } from '../../fixtures/console-org.js'
import { parseDirective } from '../../lib/trust/directive.js'
import { verifyEnvelope } from '../../lib/trust/envelope.js'
import { A, world } from './helpers.js'

t.test('a rollout moves from pilot to broad as the pilot installs, and the directive follows', async (t) => {
  const w = await world(t, { perGroup: 3 })
  const release = await w.org.release('agent-fix', '1.2.0', { risk: 'critical' })
  const view = await w.api.releases.add(OWNER, release)
  const plan = {
    id: 'fix-1',
    release: view.hash,
    target: { tenant: A },
    phases: [
      { name: 'pilot', select: { tenants: [`${A}/pilot`] }, successThreshold: 1, errorThreshold: 0.5, minSoakMinutes: 30 },
      { name: 'broad', successThreshold: 0.9, errorThreshold: 0.2, minSoakMinutes: 0 }
    ]
  }
  await t.rejects(w.api.rollouts.create(OWNER, plan), { code: 'NOT_APPROVED' }, 'the default policy approves by hand')
  await w.api.releases.approve('alice', view.hash, A)
  const rollout = await w.api.rollouts.create('alice', plan)
  t.equal(rollout.state, 'running')
  t.same(rollout.phases.map((p) => p.endpoints.length), [3, 3])

  const first = (await w.console.latestDirective())!
  t.ok(verifyEnvelope(first, w.console.root.roles.console).ok, 'directive signed by the console key')
  const assigned = parseDirective(first.signed).assignments.flatMap((a) => a.target.endpoints ?? [])
  t.same(assigned.sort(), w.endpoints.get(`${A}/pilot`)!.map((e) => e.keyid).sort(), 'only the pilot is assigned')

  for (const ep of w.endpoints.get(`${A}/pilot`)!) {
    const events = [await ep.job(release, 'downloading', w.clock.now(), { rollout: 'fix-1' }), await ep.job(release, 'installed', w.clock.now(), { rollout: 'fix-1' })]
    const r = await w.console.ingest(events)
    await w.console.settled()
    t.same(r.results.map((x) => x.status), ['accepted', 'accepted'])
  }
  t.equal((await w.api.rollouts.get(OWNER, 'fix-1')).phases[1]!.state, 'pending', 'soak time not yet over')
  w.clock.advance(31 * 60_000)
  await w.console.tick()
  const after = await w.api.rollouts.get(OWNER, 'fix-1')
  t.same(after.phases.map((p) => p.state), ['succeeded', 'active'])
  const second = (await w.console.latestDirective())!
  t.ok(second.signed.version > first.signed.version, 'a new directive version')
  t.equal(parseDirective(second.signed).assignments.flatMap((a) => a.target.endpoints ?? []).length, 6, 'pilot and broad assigned')

  const kpis = await w.api.reports.kpis(OWNER, A)
  t.equal(kpis.endpoints, 6)
  t.equal(kpis.compliant, 3, 'the pilot is compliant; broad has its patch due and not installed')
})

t.test('an engine error after an ingest neither fails the ingest nor stops the other rollouts', async (t) => {
  const w = await world(t, { perGroup: 2 })
  const plan = async (id: string, version: string, tenant: string) => {
    const release = await w.org.release(`pkg-${id}`, version, { risk: 'low' })
    const view = await w.api.releases.add(OWNER, release)
    await w.api.releases.approve(OWNER, view.hash, tenant)
    await w.api.rollouts.create(OWNER, { id, release: view.hash, target: { tenant }, phases: [{ name: 'all', successThreshold: 1, errorThreshold: 1, minSoakMinutes: 0 }] })
    return release
  }
  const brokenRelease = await plan('broken', '1.0.0', `${A}/office`)
  const release = await plan('fine', '1.0.0', `${A}/pilot`)
  // Fault injection: evaluating one rollout fails (a storage error, say).
  const evaluate = w.console.rollouts.evaluate.bind(w.console.rollouts)
  w.console.rollouts.evaluate = (id, statusOf, wopts) => id === 'broken' ? Promise.reject(new Error('disk on fire')) : evaluate(id, statusOf, wopts)
  const warnings: unknown[] = []
  w.console.warnings.push((err) => warnings.push(err))

  // Both rollouts hear from their endpoints, so the engine evaluates both after the reports.
  const results = []
  const office = w.endpoints.get(`${A}/office`)![0]!
  results.push(...(await w.console.ingest([await office.job(brokenRelease, 'downloading', w.clock.now(), { rollout: 'broken' })])).results)
  for (const ep of w.endpoints.get(`${A}/pilot`)!) results.push(...(await w.console.ingest([await ep.job(release, 'installed', w.clock.now(), { rollout: 'fine' })])).results)
  await w.console.settled()
  t.same(results.map((r) => r.status), ['accepted', 'accepted', 'accepted'], 'the events are accepted (and acknowledged)')
  t.equal((await w.api.rollouts.get(OWNER, 'fine')).state, 'completed', 'the healthy rollout still moved on')
  t.match(String(warnings[0]), /disk on fire/, 'the error is reported to whoever listens')
})

t.test('reports that arrive together share one reaction; reports naming no rollout evaluate none', async (t) => {
  const w = await world(t, { perGroup: 6 })
  const release = await w.org.release('pkg-many', '1.0.0', { risk: 'low' })
  const view = await w.api.releases.add(OWNER, release)
  await w.api.releases.approve(OWNER, view.hash, `${A}/pilot`)
  await w.api.rollouts.create(OWNER, { id: 'many', release: view.hash, target: { tenant: `${A}/pilot` }, phases: [{ name: 'all', successThreshold: 1, errorThreshold: 1, minSoakMinutes: 0 }] })
  const evaluated: string[] = []
  const evaluate = w.console.rollouts.evaluate.bind(w.console.rollouts)
  w.console.rollouts.evaluate = (id, statusOf, wopts) => { evaluated.push(id); return evaluate(id, statusOf, wopts) }
  const pilot = w.endpoints.get(`${A}/pilot`)!

  // Inventory-like reports (no job): stored, nothing to evaluate.
  await w.console.ingest([await pilot[0]!.transfer('ab'.repeat(32), { origin: 1, site: 0, peer: 0, local: 0 }, w.clock.now())])
  await w.console.settled()
  t.same(evaluated, [], 'a report without job events evaluates no rollout')

  // Six agents report at once, as after a maintenance window opens.
  const reports = await Promise.all(pilot.map((ep) => ep.job(release, 'installed', w.clock.now(), { rollout: 'many' })))
  const results = await Promise.all(reports.map((r) => w.console.ingest([r])))
  t.ok(results.every((r) => r.results[0]!.status === 'accepted' && r.rollouts.includes('many')), 'each stored, naming its rollout')
  await w.console.settled()
  t.ok(evaluated.length >= 1 && evaluated.length < reports.length, `six reports, ${evaluated.length} evaluation(s)`)
  t.equal((await w.api.rollouts.get(OWNER, 'many')).state, 'completed', 'and the rollout completed')
})
