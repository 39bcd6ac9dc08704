// Rollouts on a simulated fleet of 30 endpoints, driven through the console: events signed by the
// simulated endpoints go in through console.ingest (the real ingestion path), the engine advances
// or halts phases, the console projects rollout history into report facts, issues directives and
// queues webhooks that a real local HTTP receiver checks with verifyWebhookSignature.
import t, { type Test } from 'tap'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { OWNER, ORG, SimEndpoint } from '../../fixtures/console-org.js'
import { newEnrollmentRequest } from '../../lib/fleet/enrollment.js'
import { firstValueFrom } from 'rxjs'
import type { Envelope } from '../../lib/trust/envelope.js'
import type { DirectiveDocument } from '../../lib/trust/directive.js'
import type { ReleaseDocument } from '../../lib/trust/release.js'
import { releaseRef } from '../../lib/trust/directive.js'
import { signEvent, type JobState, type SignedEvent } from '../../lib/report/event.js'
import type { ConsoleFact } from '../../lib/report/facts.js'
import { verifyWebhookSignature } from '../../lib/report/outbox.js'
import type { CreateRolloutRequest } from '../../lib/console/api.js'
import { A, B, MSP, world, type ManualClock, type World } from './helpers.js'

const MIN = 60_000
const SECRET = 'a-webhook-secret-of-enough-bytes'

const PILOT = `${A}/pilot`
const OFFICE_A = `${A}/office`
const OFFICE_B = `${B}/office`

// ---- helpers ------------------------------------------------------------------------------------

const keys = (eps: SimEndpoint[]) => eps.map((e) => e.keyid).sort()
const group = (w: World, path: string) => w.endpoints.get(path)!

/** Key ids the directive assigns with `action`, sorted. */
function assigned (d: Envelope<DirectiveDocument> | undefined, action: 'install' | 'rollback' = 'install', rollout?: string): string[] {
  if (d === undefined) return []
  return d.signed.assignments
    .filter((a) => a.action === action && (rollout === undefined || a.rollout === rollout))
    .flatMap((a) => a.target.endpoints ?? []).sort()
}

async function consoleFacts (w: World): Promise<ConsoleFact[]> {
  return (await w.console.log.read()).flatMap((e) => e.source === 'console' ? [e.fact] : [])
}

/** A release added by the owner and approved for `tenant` (the default policy approves by hand). */
async function approvedRelease (w: World, tenant: string, name = 'agent-fix', version = '1.2.0'): Promise<{ release: Envelope<ReleaseDocument>, hash: string }> {
  const release = await w.org.release(name, version, { risk: 'high' })
  const view = await w.api.releases.add(OWNER, release)
  await w.api.releases.approve(OWNER, view.hash, tenant)
  return { release, hash: view.hash }
}

/** Each endpoint reports downloading, then `state`, all in one ingest call; every event accepted. */
async function report (t: Test, w: World, eps: SimEndpoint[], release: Envelope<ReleaseDocument>, rollout: string, state: JobState, extra: { code?: string, reason?: string } = {}): Promise<void> {
  const events: SignedEvent[] = []
  for (const ep of eps) {
    events.push(await ep.job(release, 'downloading', w.clock.now(), { rollout }))
    events.push(await ep.job(release, state, w.clock.now(), { rollout, ...extra }))
  }
  const result = await w.console.ingest(events)
  await w.console.settled()
  t.same(result.results.filter((r) => r.status !== 'accepted'), [], `${eps.length} × ${state}: every event accepted`)
}

/** A job event of an ordered rollback (SimEndpoint.job signs install jobs only). */
function rollbackEvent (ep: SimEndpoint, release: Envelope<ReleaseDocument>, state: JobState, at: Date, rollout: string): Promise<SignedEvent> {
  return signEvent({
    _type: 'event', spec: 1, org: ORG, endpoint: ep.keyid, tenant: ep.tenant, seq: ++ep.seq, at: at.toISOString(), kind: 'job',
    job: { release: releaseRef(release), rollout, action: 'rollback', state, attempt: 1 }
  }, ep.signer)
}

async function waitFor (what: string, cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms
  while (!await cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

interface Received {
  path: string
  headers: http.IncomingHttpHeaders
  body: string
  verified: boolean
  json: { id: string, type: string, tenant: string, at: string, data: Record<string, unknown> }
}

/** A real HTTP receiver on 127.0.0.1 that checks every request's HMAC and answers 204 (401 if bad). */
async function receiver (t: Test, clock: ManualClock): Promise<{ url: string, received: Received[] }> {
  const received: Received[] = []
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8')
      // The outbox stamps its requests with the console's (manual) clock.
      const verified = verifyWebhookSignature(SECRET, req.headers, body, { now: clock.now() }).ok
      received.push({ path: req.url ?? '', headers: req.headers, body, verified, json: JSON.parse(body) })
      res.statusCode = verified ? 204 : 401
      res.end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, received }
}

// ---- phases advance on threshold AND soak --------------------------------------------------------

t.test('a phase starts only when the previous one met its success threshold and soaked long enough', async (t) => {
  const w = await world(t, { perGroup: 10 })
  const { release, hash } = await approvedRelease(w, MSP)
  const start = w.clock.t
  const plan: CreateRolloutRequest = {
    id: 'fix-1',
    release: hash,
    target: { tenant: MSP },
    phases: [
      { name: 'pilot', select: { tenants: [PILOT] }, successThreshold: 0.8, errorThreshold: 0.5, minSoakMinutes: 60 },
      { name: 'customer-a', select: { tenants: [OFFICE_A] }, successThreshold: 0.9, errorThreshold: 0.5, minSoakMinutes: 30 },
      { name: 'broad', successThreshold: 1, errorThreshold: 0.5, minSoakMinutes: 0 }
    ]
  }
  const created = await w.api.rollouts.create('mia', plan)
  t.same(created.phases.map((p) => p.endpoints), [keys(group(w, PILOT)), keys(group(w, OFFICE_A)), keys(group(w, OFFICE_B))], 'membership frozen by group, 10 each')
  const v1 = (await w.console.latestDirective())!
  t.same(assigned(v1), keys(group(w, PILOT)), 'the first directive assigns the pilot only')

  const phaseStates = async () => (await w.api.rollouts.get('mia', 'fix-1')).phases.map((p) => p.state)

  // Threshold met (8 of 10 at 0.8), soak not over.
  w.clock.advance(10 * MIN)
  await report(t, w, group(w, PILOT).slice(0, 8), release, 'fix-1', 'installed')
  t.same(await phaseStates(), ['active', 'pending', 'pending'], 'threshold met after 10 min of 60: the pilot soaks on')
  w.clock.advance(49 * MIN)
  await w.console.tick()
  t.same(await phaseStates(), ['active', 'pending', 'pending'], 'still soaking at 59 min')
  t.equal((await w.console.latestDirective())!.signed.version, v1.signed.version, 'no new directive while nothing changed')
  t.same(w.console.views.rollout('fix-1')!.phases.pilot, { total: 10, counts: { installed: 8, assigned: 2 } }, 'the views count the pilot')

  w.clock.advance(1 * MIN)
  await w.console.tick()
  t.same(await phaseStates(), ['succeeded', 'active', 'pending'], 'at 60 min the soak is over: customer-a starts')
  const v2 = (await w.console.latestDirective())!
  t.ok(v2.signed.version > v1.signed.version, 'a new directive')
  t.same(assigned(v2), [...keys(group(w, PILOT)), ...keys(group(w, OFFICE_A))].sort(), 'it assigns pilot and customer-a')
  const customerAStart = new Date(start + 60 * MIN).toISOString()
  for (const ep of group(w, OFFICE_A)) {
    const record = w.console.views.patchRecord(ep.keyid, hash)
    if (record?.availableAt !== customerAStart || record.state !== 'assigned' || record.rollout !== 'fix-1') {
      t.fail(`patch record of ${ep.hostname}: ${JSON.stringify(record)}`)
    }
  }
  t.pass('every customer-a patch record is due from the moment its phase started')

  // Soak over (2 h of 30 min), threshold not met (8 of 10 < 0.9).
  await report(t, w, group(w, OFFICE_A).slice(0, 8), release, 'fix-1', 'installed')
  w.clock.advance(120 * MIN)
  await w.console.tick()
  t.same(await phaseStates(), ['succeeded', 'active', 'pending'], 'soak over but 80 % < 90 %: customer-a stays active')
  t.equal((await w.console.latestDirective())!.signed.version, v2.signed.version, 'and the directive stays')

  // The 9th install meets the threshold; ingestion itself re-evaluates (no explicit tick).
  await report(t, w, group(w, OFFICE_A).slice(8, 9), release, 'fix-1', 'installed')
  t.same(await phaseStates(), ['succeeded', 'succeeded', 'active'], 'the 9th install moves customer-a on at once')
  t.same(assigned(await w.console.latestDirective()), keys([...group(w, PILOT), ...group(w, OFFICE_A), ...group(w, OFFICE_B)]), 'all 30 endpoints assigned')

  const history = await w.api.rollouts.history('mia', 'fix-1')
  t.same(history.filter((h) => h.change.type === 'phase-started').map((h) => [h.change.type === 'phase-started' && h.change.name, h.at, h.by]), [
    ['pilot', new Date(start).toISOString(), 'mia'],
    ['customer-a', customerAStart, 'engine'],
    ['broad', new Date(start + 180 * MIN).toISOString(), 'engine']
  ], 'the history records when each phase started and who started it')
  const assignedFacts = (await consoleFacts(w)).filter((f) => f.type === 'patch.assigned')
  t.same(assignedFacts.map((f) => f.type === 'patch.assigned' && [f.phase, f.endpoints.length]), [['pilot', 10], ['customer-a', 10], ['broad', 10]], 'one patch.assigned fact per started phase (one tenant each), never twice')

  const v3 = (await w.console.latestDirective())!
  await report(t, w, group(w, OFFICE_B), release, 'fix-1', 'installed')
  const done = await w.api.rollouts.get('mia', 'fix-1')
  t.equal(done.state, 'completed')
  t.equal(w.console.views.rollout('fix-1')!.state, 'completed', 'the views follow')
  t.equal((await w.console.latestDirective())!.signed.version, v3.signed.version, 'completing changes no assignment: no new directive')
  const kpis = await w.api.reports.kpis('mia', MSP)
  t.equal(kpis.endpoints, 30)
  t.equal(kpis.compliant, 27, 'all but the 2 pilot and 1 customer-a endpoints that never installed')
})

// ---- the error threshold halts and notifies ------------------------------------------------------

t.test('a tripped error threshold halts the rollout and fires rollout.halted once; failed installs fire job.failed', async (t) => {
  const w = await world(t, { perGroup: 10 })
  const { url, received } = await receiver(t, w.clock)
  await w.api.webhooks.create('alice', { id: 'halts', url: `${url}/halts`, secret: SECRET, events: ['rollout.halted'], tenant: A })
  await w.api.webhooks.create('alice', { id: 'jobs', url: `${url}/jobs`, secret: SECRET, events: ['job.failed'], tenant: A })
  await w.api.webhooks.create('bob', { id: 'b-all', url: `${url}/b`, secret: SECRET, events: ['*'], tenant: B })
  const { release, hash } = await approvedRelease(w, A)
  await w.api.rollouts.create('alice', {
    id: 'fix-2',
    release: hash,
    target: { tenant: A },
    phases: [
      { name: 'pilot', select: { tenants: [PILOT] }, successThreshold: 1, errorThreshold: 0.2, minSoakMinutes: 0 },
      { name: 'broad', successThreshold: 1, errorThreshold: 0.2, minSoakMinutes: 0 }
    ]
  })
  const v1 = (await w.console.latestDirective())!
  const pilot = group(w, PILOT)
  const failure = { code: 'INSTALL_FAILED', reason: 'install.sh exited with 1' }
  const of = (path: string) => received.filter((r) => r.path === path)

  await report(t, w, pilot.slice(0, 5), release, 'fix-2', 'installed')
  await report(t, w, [pilot[5]!], release, 'fix-2', 'failed', failure)
  t.equal((await w.api.rollouts.get('alice', 'fix-2')).state, 'running', '1 of 10 failed: 10 % < 20 %, still running')
  await report(t, w, [pilot[6]!], release, 'fix-2', 'failed', failure)
  const halted = await w.api.rollouts.get('alice', 'fix-2')
  t.equal(halted.state, 'halted', '2 of 10 failed: 20 % ≥ 20 % halts')
  t.match(halted.halted, { phase: 0, name: 'pilot', errors: 2, size: 10, threshold: 0.2 })
  t.same(halted.phases.map((p) => p.state), ['failed', 'pending'], 'the pilot failed, broad never starts')
  t.equal((await w.console.latestDirective())!.signed.version, v1.signed.version, 'halting takes nothing back and assigns nothing new')
  t.match(w.console.views.rollout('fix-2'), { state: 'halted', phase: 'pilot', reason: /2 of 10 endpoints failed/ }, 'the views show the halt and why')

  // Delivered: answered 2xx AND recorded by the outbox (a request still in flight is sent again).
  const delivered = async (webhook: string) => (await w.console.outbox.delivered({ webhook })).length
  await waitFor('the rollout.halted delivery', async () => await delivered('halts') >= 1)
  await waitFor('both job.failed deliveries', async () => await delivered('jobs') >= 2)
  const halt = of('/halts')[0]!
  t.ok(halt.verified, 'the halt notification carries a valid HMAC')
  t.notOk(verifyWebhookSignature('another-secret-of-enough-bytes', halt.headers, halt.body, { now: w.clock.now() }).ok, 'which another secret does not make')
  t.match(halt.json, { type: 'rollout.halted', tenant: A, data: { rollout: 'fix-2', state: 'halted', phase: 'pilot', release: hash, reason: /2 of 10/ } })
  t.equal(halt.headers['x-patchswarm-event'], 'rollout.halted')
  t.equal(halt.headers['x-patchswarm-delivery'], halt.json.id, 'the delivery id is the fact id')
  const jobs = of('/jobs')
  t.ok(jobs.every((r) => r.verified && r.json.type === 'job.failed'), 'job.failed notifications, signed')
  t.same(jobs.map((r) => r.json.data.endpoint).sort(), [pilot[5]!.keyid, pilot[6]!.keyid].sort(), 'one per failed install')
  t.match(jobs[0]!.json, { tenant: PILOT, data: { release: 'agent-fix', version: '1.2.0', attempt: 1, rollout: 'fix-2', code: 'INSTALL_FAILED', reason: 'install.sh exited with 1' } })

  // More failures and ticks while halted: more job.failed, never another halt.
  await report(t, w, [pilot[7]!], release, 'fix-2', 'failed', failure)
  await w.console.tick()
  await w.console.tick()
  await waitFor('the third job.failed delivery', async () => await delivered('jobs') >= 3)
  await sleep(300)
  t.equal(of('/halts').length, 1, 'rollout.halted delivered exactly once')
  t.equal(of('/jobs').length, 3, 'job.failed exactly once per failed install')
  t.equal(of('/b').length, 0, "B's webhook hears nothing of A")
  t.equal(received.filter((r) => !r.verified).length, 0, 'every request verified')
  t.same(await w.console.outbox.list(), [], 'nothing left in the queue')
  t.equal((await w.console.outbox.delivered({ webhook: 'halts' })).length, 1)

  // A restart derives nothing again.
  const { dataDir, org, clock, endpoints } = w
  await w.console.close()
  const w2 = await world(t, { dataDir, org, clock, endpoints })
  await w2.console.tick()
  await sleep(300)
  t.equal(of('/halts').length, 1, 'still once after a restart')
  t.equal(of('/jobs').length, 3)
  t.same(await w2.console.outbox.list(), [], 'nothing queued again')
})

t.test('a change projected by two callers at once is logged and notified once', async (t) => {
  const w = await world(t, { perGroup: 10 })
  const { url, received } = await receiver(t, w.clock)
  await w.api.webhooks.create('alice', { id: 'rollouts', url, secret: SECRET, events: ['rollout.*'], tenant: A })
  const { hash } = await approvedRelease(w, A)
  await w.api.rollouts.create('alice', { id: 'fix-3', release: hash, target: { tenant: A }, phases: [{ name: 'all', successThreshold: 1, errorThreshold: 0.5, minSoakMinutes: 0 }] })
  // The change commits; the API's projection and an ingestion tick race to project it.
  await w.console.rollouts.abort('fix-3', { by: 'alice' })
  await Promise.all([w.console.rolloutChanged('fix-3'), w.console.tick(), w.console.rolloutChanged('fix-3')])
  const aborted = (await consoleFacts(w)).filter((f) => f.type === 'rollout.changed' && f.state === 'aborted')
  t.equal(aborted.length, 1, 'one rollout.changed fact for the abort')
  await waitFor('the rollout.aborted delivery', async () => (await w.console.outbox.delivered()).length >= 1)
  await sleep(300)
  t.same(received.map((r) => [r.json.type, r.verified]), [['rollout.aborted', true]], 'delivered once')
})

t.test('an unchanged directive is signed again before it expires', async (t) => {
  const w = await world(t, { perGroup: 10 })
  const { hash } = await approvedRelease(w, A)
  await w.api.rollouts.create('alice', { id: 'fix-7', release: hash, target: { tenant: A }, phases: [{ name: 'all', successThreshold: 1, errorThreshold: 0.5, minSoakMinutes: 0 }] })
  const v1 = (await w.console.latestDirective())!
  const life = Date.parse(v1.signed.expires) - Date.parse(v1.signed.issued)
  t.ok(life > 0)
  w.clock.advance(life / 2 - MIN)
  await w.console.tick()
  t.equal((await w.console.latestDirective())!.signed.version, v1.signed.version, 'young enough: not signed again')
  w.clock.advance(MIN)
  await w.console.tick()
  const v2 = (await w.console.latestDirective())!
  t.equal(v2.signed.version, v1.signed.version + 1, 'half its life gone: signed again')
  t.same(v2.signed.assignments, v1.signed.assignments, 'with the same assignments')
  t.ok(Date.parse(v2.signed.expires) > Date.parse(v1.signed.expires), 'and a later expiry')
  w.clock.advance(life)
  t.ok(Date.parse(v1.signed.expires) < w.clock.t, 'the first one has expired by now')
  await w.console.tick()
  t.ok(Date.parse((await w.console.latestDirective())!.signed.expires) > w.clock.t, 'the one in force has not')
})

// ---- pause, resume, abort -------------------------------------------------------------------------

t.test('pause holds the next phase, resume lets it start, abort withdraws the assignments', async (t) => {
  const w = await world(t, { perGroup: 10 })
  const { release, hash } = await approvedRelease(w, A)
  await w.api.rollouts.create('alice', {
    id: 'fix-4',
    release: hash,
    target: { tenant: A },
    phases: [
      { name: 'pilot', select: { tenants: [PILOT] }, successThreshold: 1, errorThreshold: 0.5, minSoakMinutes: 0 },
      { name: 'broad', successThreshold: 1, errorThreshold: 0.5, minSoakMinutes: 0 }
    ]
  })
  const v1 = (await w.console.latestDirective())!
  await t.rejects(w.api.rollouts.pause('bob', 'fix-4'), { code: 'FORBIDDEN' }, "B's owner cannot touch A's rollout")

  const paused = await w.api.rollouts.pause('alice', 'fix-4')
  t.equal(paused.state, 'paused')
  t.equal(w.console.views.rollout('fix-4')!.state, 'paused', 'the views follow')
  t.equal((await w.console.latestDirective())!.signed.version, v1.signed.version, 'pausing takes back nothing: the same directive')
  await t.rejects(w.api.rollouts.pause('alice', 'fix-4'), { code: 'INVALID_TRANSITION' }, 'a paused rollout cannot be paused')

  await report(t, w, group(w, PILOT), release, 'fix-4', 'installed')
  w.clock.advance(10 * MIN)
  await w.console.tick()
  const still = await w.api.rollouts.get('alice', 'fix-4')
  t.same([still.state, still.phases.map((p) => p.state)], ['paused', ['active', 'pending']], 'the pilot succeeded, but a paused rollout starts no phase')
  t.same(assigned(await w.console.latestDirective()), keys(group(w, PILOT)), 'broad is not assigned')

  const resumed = await w.api.rollouts.resume('alice', 'fix-4')
  t.equal(resumed.state, 'running')
  await w.console.tick()
  t.same((await w.api.rollouts.get('alice', 'fix-4')).phases.map((p) => p.state), ['succeeded', 'active'], 'running again, broad starts at the next evaluation')
  t.same(assigned(await w.console.latestDirective()), keys([...group(w, PILOT), ...group(w, OFFICE_A)]), 'and is assigned')
  t.same((await w.api.rollouts.history('alice', 'fix-4')).map((h) => h.change.type),
    ['created', 'phase-started', 'paused', 'resumed', 'phase-succeeded', 'phase-started'])

  const before = (await w.console.latestDirective())!
  const aborted = await w.api.rollouts.abort('alice', 'fix-4')
  t.equal(aborted.state, 'aborted')
  const after = (await w.console.latestDirective())!
  t.ok(after.signed.version > before.signed.version, 'a new directive')
  t.same(after.signed.assignments.filter((a) => a.rollout === 'fix-4'), [], 'without the aborted rollout: no endpoint starts a new job for it')
  t.equal(w.console.views.rollout('fix-4')!.state, 'aborted')

  for (const op of ['pause', 'resume', 'abort'] as const) {
    await t.rejects(w.api.rollouts[op]('alice', 'fix-4'), { code: 'INVALID_TRANSITION' }, `${op} of an aborted rollout is INVALID_TRANSITION`)
  }
  const final = await w.api.rollouts.get('alice', 'fix-4')
  t.same([final.state, final.revision], ['aborted', aborted.revision], 'and changes nothing')
  t.equal((await w.console.latestDirective())!.signed.version, after.signed.version)
})

// ---- rollback -------------------------------------------------------------------------------------

t.test('rollback orders every endpoint of the started phases to roll back, and the views follow', async (t) => {
  const w = await world(t, { perGroup: 10 })
  const { release, hash } = await approvedRelease(w, MSP)
  await w.api.rollouts.create('mia', {
    id: 'fix-5',
    release: hash,
    target: { tenant: MSP },
    phases: [
      { name: 'pilot', select: { tenants: [PILOT] }, successThreshold: 1, errorThreshold: 0.5, minSoakMinutes: 0 },
      { name: 'customer-a', select: { tenants: [OFFICE_A] }, successThreshold: 1, errorThreshold: 0.5, minSoakMinutes: 0 },
      { name: 'broad', successThreshold: 1, errorThreshold: 0.5, minSoakMinutes: 0 }
    ]
  })
  await report(t, w, group(w, PILOT), release, 'fix-5', 'installed')
  await report(t, w, group(w, OFFICE_A).slice(0, 5), release, 'fix-5', 'installed')
  t.same((await w.api.rollouts.get('mia', 'fix-5')).phases.map((p) => p.state), ['succeeded', 'active', 'pending'])

  const started = keys([...group(w, PILOT), ...group(w, OFFICE_A)])
  const rolled = await w.api.rollouts.rollback('mia', 'fix-5')
  t.equal(rolled.state, 'rolled-back')
  const d = (await w.console.latestDirective())!
  t.same(assigned(d, 'rollback', 'fix-5'), started, 'a rollback assignment for all 20 endpoints of the started phases')
  t.same(assigned(d, 'install', 'fix-5'), [], 'and no install assignment any more')
  t.notOk(assigned(d, 'rollback').some((k) => keys(group(w, OFFICE_B)).includes(k)), 'the phase that never started is left alone')

  const facts = await consoleFacts(w)
  const rollbacks = facts.filter((f) => f.type === 'patch.rollback')
  t.same(rollbacks.flatMap((f) => f.type === 'patch.rollback' ? f.endpoints : []).sort(), started, 'patch.rollback facts name the same endpoints')
  t.ok(facts.some((f) => f.type === 'rollout.changed' && f.state === 'rolled-back'))

  const members = w.console.views.members('fix-5')
  t.same(Object.keys(members).sort(), started, 'the members are the started phases')
  t.ok(Object.values(members).every((m) => m.rollback === true), 'each one marked as ordered to roll back')
  t.match(w.console.views.rollout('fix-5'), { state: 'rolled-back', rollbackOrdered: 20 })
  t.same(w.console.views.patchRecords({ under: B }), [], "B's endpoints never had the patch")

  // The pilot rolls back.
  const events: SignedEvent[] = []
  for (const ep of group(w, PILOT)) {
    events.push(await rollbackEvent(ep, release, 'rolling-back', w.clock.now(), 'fix-5'))
    events.push(await rollbackEvent(ep, release, 'rolled-back', w.clock.now(), 'fix-5'))
  }
  t.same((await w.console.ingest(events)).results.filter((r) => r.status !== 'accepted'), [], 'rollback reports accepted')
  await w.console.settled()
  const pilotRecords = w.console.views.patchRecords({ under: PILOT })
  t.equal(pilotRecords.length, 10)
  t.ok(pilotRecords.every((r) => r.state === 'rolled-back' && r.installedAt === undefined && r.failedAt !== undefined), 'the pilot patch records say rolled back, no longer installed')
  t.ok(keys(group(w, PILOT)).every((k) => w.console.views.members('fix-5')[k]!.state === 'rolled-back' && w.console.views.members('fix-5')[k]!.rollback), 'members follow')
  t.match(w.console.views.rollout('fix-5')!.counts, { 'rolled-back': 10, installed: 5, assigned: 5 })
  t.equal((await w.api.reports.kpis('mia', PILOT)).compliant, 0, 'a rolled-back patch is not compliant')

  await t.rejects(w.api.rollouts.rollback('mia', 'fix-5'), { code: 'INVALID_TRANSITION' }, 'a rollout rolls back once')
  t.equal((await w.console.latestDirective())!.signed.version, d.signed.version)
})

// ---- crash between a change and its projection ----------------------------------------------------

t.test('a change committed but never projected is projected, notified and issued at the next start', async (t) => {
  const dataDir = t.testdir()
  let w = await world(t, { perGroup: 10, dataDir })
  const { url, received } = await receiver(t, w.clock)
  await w.api.webhooks.create('alice', { id: 'rollouts', url, secret: SECRET, events: ['rollout.*'], tenant: A })
  const { release, hash } = await approvedRelease(w, A)
  await w.api.rollouts.create('alice', {
    id: 'fix-6',
    release: hash,
    target: { tenant: A },
    phases: [
      { name: 'pilot', select: { tenants: [PILOT] }, successThreshold: 1, errorThreshold: 0.5, minSoakMinutes: 30 },
      { name: 'broad', successThreshold: 1, errorThreshold: 0.5, minSoakMinutes: 0 }
    ]
  })
  const v1 = (await w.console.latestDirective())!
  const reopen = async () => {
    const { org, clock, endpoints } = w
    await w.console.close()
    w = await world(t, { dataDir, org, clock, endpoints })
  }
  const changed = async (state: string) => (await consoleFacts(w)).filter((f) => f.type === 'rollout.changed' && f.state === state).length

  // 1. A pause that committed, then the console died before projecting it.
  await w.console.rollouts.pause('fix-6', { by: 'alice' })
  t.equal(await changed('paused'), 0, 'not projected yet')
  t.equal(w.console.views.rollout('fix-6')!.state, 'running', 'the views do not know yet')
  await reopen()
  t.equal(await changed('paused'), 1, 'the reopened console projected the pause')
  t.equal(w.console.views.rollout('fix-6')!.state, 'paused', 'and the views follow')
  const afterPause = (await w.console.latestDirective())!
  t.equal(afterPause.signed.version, v1.signed.version, 'a pause assigns the same: the directive in force stays')
  t.same(assigned(afterPause), keys(group(w, PILOT)))

  // 2. Resume and a phase advance committed by the engine, never projected.
  await report(t, w, group(w, PILOT), release, 'fix-6', 'installed')
  w.clock.advance(31 * MIN)
  await w.console.rollouts.resume('fix-6', { by: 'alice' })
  const step = await w.console.rollouts.evaluate('fix-6', (k) => w.console.views.statusOf('fix-6', k))
  t.same(step.changes.map((c) => c.type), ['phase-succeeded', 'phase-started'], 'the engine started broad')
  t.same(assigned(await w.console.latestDirective()), keys(group(w, PILOT)), 'but no directive was issued for it')
  await reopen()
  const v2 = (await w.console.latestDirective())!
  t.ok(v2.signed.version > v1.signed.version, 'the reopened console issued a directive')
  t.same(assigned(v2), keys([...group(w, PILOT), ...group(w, OFFICE_A)]), 'that assigns broad')
  const broadFacts = (await consoleFacts(w)).filter((f) => f.type === 'patch.assigned' && f.phase === 'broad')
  t.equal(broadFacts.length, 1, 'broad assigned once')
  t.equal(broadFacts[0]?.type === 'patch.assigned' && broadFacts[0].availableAt, w.clock.now().toISOString(), 'due from when the engine started it, not from the repair')
  t.match(w.console.views.rollout('fix-6'), { state: 'running', phase: 'broad' })

  // 3. A rollback, never projected: the directive orders it and the webhook fires after the repair.
  await w.console.rollouts.rollback('fix-6', { by: 'alice' })
  await reopen()
  const v3 = (await w.console.latestDirective())!
  t.same(assigned(v3, 'rollback'), keys([...group(w, PILOT), ...group(w, OFFICE_A)]), 'the repair issued the rollback')
  t.ok(Object.values(w.console.views.members('fix-6')).every((m) => m.rollback), 'and the views know')
  // Delivered and recorded before the next restart (close() aborts a request in flight: it is sent again).
  await waitFor('the rollout.rolled-back delivery', async () => (await w.console.outbox.delivered({ webhook: 'rollouts' })).length >= 1)

  // Nothing is projected twice.
  const last = w.console.log.last
  await reopen()
  t.equal(w.console.log.last, last, 'a clean restart appends nothing')
  t.equal(w.console.views.applied, 0, 'and the views replay nothing')
  t.equal((await w.console.latestDirective())!.signed.version, v3.signed.version, 'nor issue a directive')
  t.same({ paused: await changed('paused'), running: await changed('running'), 'rolled-back': await changed('rolled-back') },
    { paused: 1, running: 3, 'rolled-back': 1 }, 'each change projected once (running: pilot started, resumed, broad started)')
  await sleep(300)
  t.same(received.map((r) => [r.json.type, r.verified]), [['rollout.rolled-back', true]], 'the rollback notified exactly once')
})

// ---- enrollment changes and SLAs: facts in the log, webhooks from the console itself -----------

t.test('enrollment changes are logged as facts; an endpoint waiting in quarantine fires endpoint.quarantined', async (t) => {
  const w = await world(t, { perGroup: 1 })
  const { url, received } = await receiver(t, w.clock)
  await w.api.webhooks.create('alice', { id: 'waiting', url: `${url}/waiting`, secret: SECRET, events: ['endpoint.quarantined'], tenant: A })
  await w.api.webhooks.create('bob', { id: 'b-all', url: `${url}/b`, secret: SECRET, events: ['*'], tenant: B })
  const { token } = await w.api.endpoints.createToken('alice', { scope: OFFICE_A, expiresAt: new Date(w.clock.t + 86400_000), maxUses: 3, autoApprove: false })
  const eps = [new SimEndpoint('kiosk-1'), new SimEndpoint('kiosk-2'), new SimEndpoint('kiosk-3')]
  for (const ep of eps) await ep.enroll(w.console, token, w.clock.now())
  await w.api.endpoints.approve('alice', eps[0]!.keyid)
  await w.api.endpoints.reject('alice', eps[1]!.keyid)
  await w.api.endpoints.remove('alice', eps[0]!.keyid)

  const about = new Set(eps.map((e) => e.keyid))
  const facts = async () => (await consoleFacts(w)).flatMap((f) => f.type.startsWith('endpoint.') && about.has((f as { keyid: string }).keyid) ? [f] : [])
  await waitFor('six endpoint facts', async () => (await facts()).length === 6)
  const name = new Map(eps.map((e) => [e.keyid, e.hostname]))
  t.same((await facts()).map((f) => [f.type, name.get((f as { keyid: string }).keyid), (f as { tenant: string }).tenant]), [
    ['endpoint.quarantined', 'kiosk-1', OFFICE_A],
    ['endpoint.quarantined', 'kiosk-2', OFFICE_A],
    ['endpoint.quarantined', 'kiosk-3', OFFICE_A],
    ['endpoint.approved', 'kiosk-1', OFFICE_A],
    ['endpoint.rejected', 'kiosk-2', OFFICE_A],
    ['endpoint.removed', 'kiosk-1', OFFICE_A]
  ], 'every change, in order, as the console appended it')

  await waitFor('three quarantine deliveries', async () => (await w.console.outbox.delivered({ webhook: 'waiting' })).length >= 3)
  const waiting = received.filter((r) => r.path === '/waiting')
  t.ok(waiting.every((r) => r.verified && r.json.type === 'endpoint.quarantined' && r.json.tenant === OFFICE_A), 'signed, for the group they wait in')
  t.same(waiting.map((r) => r.json.data.hostname).sort(), ['kiosk-1', 'kiosk-2', 'kiosk-3'], 'one per endpoint, with its host name')
  // The facts that reached /waiting went through the notifier for every webhook at once.
  t.same([...await w.console.outbox.list({ webhook: 'b-all' }), ...await w.console.outbox.delivered({ webhook: 'b-all' })], [], 'nothing queued for B')
  t.equal(received.filter((r) => r.path === '/b').length, 0, "B's webhook hears nothing of A's enrollments")

  const feed = await firstValueFrom(w.api.reports.events$('alice', A, { last: 50 }))
  const lines = feed.filter((l) => l.endpoint !== undefined && about.has(l.endpoint)).map((l) => l.text)
  t.ok(lines.includes('endpoint kiosk-3 enrolled, waits in quarantine for approval') && lines.includes('endpoint kiosk-2 rejected') && lines.includes('endpoint kiosk-1 removed'), 'the activity feed tells them')
  const bFeed = await firstValueFrom(w.api.reports.events$('bob', B, { last: 50 }))
  t.notOk(bFeed.some((l) => l.endpoint !== undefined && about.has(l.endpoint)), "B's admin does not see them")
})

t.test('a change committed while the console closes is appended at the next start', async (t) => {
  const w = await world(t, { perGroup: 1 })
  const { token } = await w.api.endpoints.createToken('alice', { scope: OFFICE_A, expiresAt: new Date(w.clock.t + 86400_000), maxUses: 1, autoApprove: false })
  const ep = new SimEndpoint('late-1')
  const request = await newEnrollmentRequest({ token, signer: ep.signer, hostname: ep.hostname, platform: 'linux-x64', at: w.clock.now() })
  // close() begins before the change is appended (that waits for the next turn of the loop).
  await w.console.enrollment.enroll(request)
  await w.console.close()
  const { dataDir, org, clock, endpoints } = w
  const w2 = await world(t, { dataDir, org, clock, endpoints })
  const facts = (await consoleFacts(w2)).filter((f) => f.type === 'endpoint.quarantined' && f.keyid === ep.keyid)
  t.equal(facts.length, 1, 'the quarantine is in the log, once')
})

t.test('a patch past its SLA fires sla.breached from the console\'s own tick, once', async (t) => {
  const w = await world(t, { perGroup: 3 })
  const { url, received } = await receiver(t, w.clock)
  await w.api.webhooks.create('alice', { id: 'sla', url: `${url}/sla`, secret: SECRET, events: ['sla.breached'], tenant: A })
  const release = await w.org.release('openssl', '3.0.14', { risk: 'critical' })
  const { hash } = await w.api.releases.add(OWNER, release)
  await w.api.releases.approve(OWNER, hash, A)
  await w.api.rollouts.create('alice', { id: 'crit-1', release: hash, target: { tenant: A }, phases: [{ name: 'all', successThreshold: 1, errorThreshold: 1, minSoakMinutes: 0 }] })
  const fleet = [...group(w, PILOT), ...group(w, OFFICE_A)]
  await report(t, w, fleet.slice(0, 4), release, 'crit-1', 'installed')

  // tick() waits for the SLA check, and that for the notifier: what it sends is queued by now.
  const queuedOrSent = async () => [...await w.console.outbox.list({ webhook: 'sla' }), ...await w.console.outbox.delivered({ webhook: 'sla' })].length
  w.clock.advance(71 * 60 * MIN)
  await w.console.tick()
  t.equal(await queuedOrSent(), 0, 'nothing queued for it')
  t.equal(received.length, 0, 'within the 72 h of a critical patch: nothing')

  w.clock.advance(2 * 60 * MIN)
  await w.console.tick()
  await waitFor('two sla.breached deliveries', async () => (await w.console.outbox.delivered({ webhook: 'sla' })).length >= 2)
  t.same(received.map((r) => r.json.data.endpoint).sort(), keys(fleet.slice(4)), 'one per endpoint that did not install in time')
  t.ok(received.every((r) => r.verified && r.json.type === 'sla.breached'), 'signed')
  t.match(received[0]!.json.data, { release: 'openssl', version: '3.0.14', risk: 'critical' })

  w.clock.advance(10 * MIN)
  await w.console.tick()
  t.equal(await queuedOrSent(), 2, 'nothing more queued')
  t.equal(received.length, 2, 'a later check does not send them again')
})
