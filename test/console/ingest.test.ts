// Ingestion through the console: events signed by simulated endpoints go through console.ingest
// (and the admin API's reports.ingest). Forged, unknown, replayed and misplaced events are refused
// with their codes without taking up a sequence number, duplicates are ignored and counted, and
// across a console restart every real event is accepted exactly once while the views come back
// from their snapshot, equal to what they were, without replaying the log.
import t, { type Test } from 'tap'
import { OWNER, SimEndpoint } from '../../fixtures/console-org.js'
import { keySigner, generateKeyPair } from '../../lib/crypto/keys.js'
import { serializeEnvelope, signEnvelope, type Envelope } from '../../lib/trust/envelope.js'
import type { ReleaseDocument } from '../../lib/trust/release.js'
import type { SignedEvent } from '../../lib/report/event.js'
import type { IngestResult } from '../../lib/report/ingest.js'
import { ReportViews } from '../../lib/report/views.js'
import { A, B, MSP, world, type World } from './helpers.js'

const PILOT = `${A}/pilot`
const OFFICE_A = `${A}/office`
const OFFICE_B = `${B}/office`

const statuses = (r: IngestResult) => r.results.map((x) => x.code ?? x.status)

async function withRollout (w: World, tenant: string, id = 'fix-1'): Promise<{ release: Envelope<ReleaseDocument>, hash: string }> {
  const release = await w.org.release('agent-fix', '1.2.0', { risk: 'high' })
  const { hash } = await w.api.releases.add(OWNER, release)
  await w.api.releases.approve(OWNER, hash, tenant)
  await w.api.rollouts.create(OWNER, {
    id,
    release: hash,
    target: { tenant },
    phases: [
      { name: 'pilot', select: { tenants: [PILOT] }, successThreshold: 1, errorThreshold: 0.5, minSoakMinutes: 0 },
      { name: 'broad', successThreshold: 1, errorThreshold: 0.5, minSoakMinutes: 0 }
    ]
  })
  return { release, hash }
}

async function agentEntries (w: World): Promise<Array<{ endpoint: string, seq: number }>> {
  return (await w.console.log.read()).flatMap((e) => e.source === 'agent' ? [{ endpoint: e.envelope.signed.endpoint, seq: e.envelope.signed.seq }] : [])
}

t.test('the console refuses forged, unknown, replayed and misplaced events, and ignores duplicates', async (t) => {
  const w = await world(t, { perGroup: 10 })
  const { release, hash } = await withRollout(w, A)
  const [ep, ep2] = w.endpoints.get(PILOT)!
  const bEp = w.endpoints.get(OFFICE_B)![0]!
  const at = w.clock.now()

  const e1 = await ep!.job(release, 'downloading', at, { rollout: 'fix-1' })
  t.same(statuses(await w.console.ingest([e1])), ['accepted'])

  // Forged: seq 2 with its state changed after signing, and seq 2 signed by a key that is not the endpoint's.
  const e2 = await ep!.job(release, 'installing', at, { rollout: 'fix-1' })
  const tampered = { ...e2, signed: { ...e2.signed, job: { ...e2.signed.job!, state: 'installed' as const } } }
  const otherKey = await signEnvelope(e2.signed, [keySigner(generateKeyPair())])
  const forged = await w.console.ingest([tampered, otherKey])
  t.same(statuses(forged), ['BAD_SIGNATURE', 'BAD_SIGNATURE'], 'a changed or foreign-signed event is BAD_SIGNATURE')
  t.same(forged.acks, {}, 'and earns no ack')

  // Unknown: a well-signed event of a key the console never enrolled.
  const stranger = new SimEndpoint('stranger')
  stranger.tenant = PILOT
  t.same(statuses(await w.console.ingest([await stranger.job(release, 'installed', at)])), ['UNKNOWN_ENDPOINT'])

  // The real seq 2 still goes in: the refused ones took no sequence number.
  const ok2 = await w.console.ingest([e2])
  t.same(statuses(ok2), ['accepted'], 'the real seq 2 is accepted')
  t.same(ok2.acks, { [ep!.keyid]: 2 })

  // Replay: seq 2 again with other signed bytes (the key signed two events with one seq).
  ep!.seq = 1
  const other2 = await ep!.job(release, 'installed', at, { rollout: 'fix-1' })
  ep!.seq = 2
  t.same(statuses(await w.console.ingest([other2])), ['REPLAY'], 'same seq, other bytes: REPLAY')
  t.equal((await w.console.ingestor.endpointState(ep!.keyid)).replays, 1, 'counted against the endpoint')

  // A gap is refused too, so the agent re-sends from its ack.
  ep!.seq = 3
  const gap = await ep!.job(release, 'installed', at, { rollout: 'fix-1' })
  ep!.seq = 2
  t.same(statuses(await w.console.ingest([gap])), ['SEQUENCE_GAP'])

  // Claiming another tenant than the registry says.
  ep2!.tenant = OFFICE_B
  const claimsB = await ep2!.job(release, 'installed', at, { rollout: 'fix-1' })
  ep2!.tenant = PILOT
  ep2!.seq = 0
  t.same(statuses(await w.console.ingest([claimsB])), ['WRONG_TENANT'], "an event naming a tenant that is not the endpoint's")

  // B's endpoint handed in by A's admin, within A: WRONG_TENANT; outside her scope: FORBIDDEN.
  const bEvent = await bEp.job(release, 'downloading', at)
  const viaAlice = await w.api.reports.ingest('alice', A, [bEvent])
  t.same(statuses(viaAlice), ['WRONG_TENANT'], "alice cannot slip B's events in through A")
  await t.rejects(w.api.reports.ingest('alice', B, [bEvent]), { code: 'FORBIDDEN' }, 'nor hand in for B at all')
  t.same(statuses(await w.api.reports.ingest('bob', B, [bEvent])), ['accepted'], "B's owner may hand it in")
  t.same(statuses(await w.api.reports.ingest('alice', A, [await ep2!.job(release, 'downloading', at, { rollout: 'fix-1' })])), ['accepted'], "and alice her own endpoints' (seq 1 still free)")

  // Duplicates: the same signed bytes again, as objects or as the received bytes.
  const before = w.console.log.last
  const dup = await w.console.ingest([e1, serializeEnvelope(e2), bEvent])
  t.same(statuses(dup), ['duplicate', 'duplicate', 'duplicate'], 'resent events are duplicates, however they come')
  t.same(dup.acks, { [ep!.keyid]: 2, [bEp.keyid]: 1 }, 'acknowledged again, so the agent can drop them')
  t.equal(w.console.log.last, before, 'and not logged again')

  // An event arriving as bytes is stored exactly as received.
  const e3 = await ep!.job(release, 'installed', at, { rollout: 'fix-1' })
  const asBytes = await w.console.ingest([serializeEnvelope(e3)])
  t.same(statuses(asBytes), ['accepted'])
  const stored = await w.console.log.get(asBytes.results[0]!.logSeq!)
  t.same(stored?.source === 'agent' ? stored.envelope : undefined, e3, 'the logged envelope is the one signed')

  t.same(await w.api.reports.counters(OWNER), {
    accepted: 5,
    duplicate: 3,
    rejected: { BAD_SIGNATURE: 2, UNKNOWN_ENDPOINT: 1, REPLAY: 1, SEQUENCE_GAP: 1, WRONG_TENANT: 2 }
  }, 'the counters say what happened')
  const logged = await agentEntries(w)
  t.equal(logged.length, 5, 'only accepted events are in the log')
  t.equal(new Set(logged.map((e) => `${e.endpoint}:${e.seq}`)).size, 5, 'each once')
  t.match(w.console.views.patchRecord(ep!.keyid, hash), { state: 'installed', attempts: 1 }, 'the views saw only real events')
  t.equal(w.console.views.members('fix-1')[ep2!.keyid]!.state, 'downloading', "the refused 'installed' never reached the views")
})

/** Every endpoint's events for the release: downloading, a transfer, then installed (or failed: numbers 3, 10, 17, 24). */
async function fleetEvents (w: World, release: Envelope<ReleaseDocument>, groups: string[]): Promise<SignedEvent[]> {
  const out: SignedEvent[] = []
  let n = 0
  for (const g of groups) {
    for (const ep of w.endpoints.get(g)!) {
      const at = w.clock.now()
      out.push(await ep.job(release, 'downloading', at, { rollout: 'fix-2' }))
      out.push(await ep.transfer(release.signed.manifest.digest, { origin: 100 + n, site: 900, peer: 50 * (n % 3), local: 0 }, at))
      out.push(n % 7 === 3
        ? await ep.job(release, 'failed', at, { rollout: 'fix-2', code: 'INSTALL_FAILED' })
        : await ep.job(release, 'installed', at, { rollout: 'fix-2' }))
      n++
    }
  }
  return out
}

/** What the views hold, in a stable order. */
function viewsOf (w: World) {
  const v = w.console.views
  const byKey = <T>(list: T[], key: (x: T) => string) => list.slice().sort((a, b) => key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0)
  return {
    position: v.position,
    records: byKey(v.patchRecords(), (r) => `${r.endpoint}!${r.release}`),
    endpoints: byKey(v.endpoints(), (e) => e.keyid),
    rollouts: byKey(v.rollouts(), (r) => r.rollout),
    members: v.members('fix-2'),
    bytes: v.bytes()
  }
}

async function kpisOf (w: World) {
  return { all: await w.api.reports.kpis(OWNER, ''), a: await w.api.reports.kpis(OWNER, A), b: await w.api.reports.kpis(OWNER, B), counters: await w.api.reports.counters(OWNER) }
}

async function reopen (t: Test, w: World): Promise<World> {
  const { dataDir, org, clock, endpoints } = w
  await w.console.close()
  return world(t, { dataDir, org, clock, endpoints })
}

t.test('across a restart every real event is accepted exactly once, and the views come back from their snapshot', async (t) => {
  let w = await world(t, { perGroup: 10, dataDir: t.testdir() })
  const release = await w.org.release('agent-fix', '1.2.0', { risk: 'high' })
  const { hash } = await w.api.releases.add(OWNER, release)
  await w.api.releases.approve(OWNER, hash, MSP)
  await w.api.rollouts.create('mia', {
    id: 'fix-2',
    release: hash,
    target: { tenant: MSP },
    phases: [
      { name: 'pilot', select: { tenants: [PILOT] }, successThreshold: 0.8, errorThreshold: 0.5, minSoakMinutes: 0 },
      { name: 'broad', successThreshold: 1, errorThreshold: 0.5, minSoakMinutes: 0 }
    ]
  })
  const pilot = await fleetEvents(w, release, [PILOT])
  const rest = await fleetEvents(w, release, [OFFICE_A, OFFICE_B])
  const all = [...pilot, ...rest]
  t.equal(all.length, 90, '30 endpoints, 3 events each')

  t.same(statuses(await w.console.ingest(pilot)), pilot.map(() => 'accepted'))
  await w.console.settled()
  t.equal((await w.api.rollouts.get('mia', 'fix-2')).phases[1]!.state, 'active', 'the pilot passed: broad started')
  const sent = 37 // part of the rest, stopping in the middle of an endpoint's events
  t.same(statuses(await w.console.ingest(rest.slice(0, sent))), rest.slice(0, sent).map(() => 'accepted'))
  await w.console.settled()

  const before = { views: viewsOf(w), kpis: await kpisOf(w), last: w.console.log.last }
  t.ok(before.views.records.length === 30 && before.kpis.all.endpoints === 30, 'a fleet of 30 with a patch record each')

  w = await reopen(t, w)
  t.equal(w.console.views.loadedFrom, before.last, 'the views loaded their snapshot at the end of the log')
  t.equal(w.console.views.applied, 0, 'and replayed nothing')
  t.equal(w.console.log.last, before.last, 'the restart appended nothing')
  t.same(viewsOf(w), before.views, 'the views are what they were')
  t.same(await kpisOf(w), before.kpis, 'the KPIs and counters too')

  // The same views, rebuilt from the whole log, agree with the snapshot.
  const rebuilt = new ReportViews(w.console.db, { log: w.console.log, sublevelName: 'test-rebuild' })
  await rebuilt.ready()
  t.equal(rebuilt.applied, before.last, 'a rebuild folds in the whole log')
  t.same(rebuilt.patchRecords().sort((a, b) => a.endpoint < b.endpoint ? -1 : 1), before.views.records, 'and arrives at the same records')
  await rebuilt.close()

  // The agents re-send everything they were not sure about: all 90 events.
  const again = await w.console.ingest(all)
  await w.console.settled()
  const expected = [...pilot.map(() => 'duplicate'), ...rest.map((_, i) => i < sent ? 'duplicate' : 'accepted')]
  t.same(statuses(again), expected, 'what was stored before the restart is a duplicate, the rest is accepted')
  t.equal(Object.keys(again.acks).length, 30, 'every endpoint acknowledged')
  t.ok(Object.entries(again.acks).every(([, last]) => last === 3), 'up to its last event')
  const logged = await agentEntries(w)
  t.equal(logged.length, 90, 'the log holds each of the 90 events')
  t.equal(new Set(logged.map((e) => `${e.endpoint}:${e.seq}`)).size, 90, 'exactly once')
  t.same(await w.api.reports.counters(OWNER), { accepted: 90, duplicate: 10 * 3 + sent, rejected: {} }, 'and the counters agree')
  t.equal(w.console.views.applied, w.console.log.last - before.last, 'the views folded in only the new entries')

  const done = { views: viewsOf(w), kpis: await kpisOf(w) }
  t.equal(done.kpis.all.compliant, 30 - 4, 'the 4 endpoints that failed are not compliant, the rest is')
  t.equal(done.kpis.all.bytes.delivered, done.views.bytes.origin + done.views.bytes.site + done.views.bytes.peer)

  // Once more: a restart and a full re-send change nothing.
  w = await reopen(t, w)
  t.same(viewsOf(w), done.views)
  t.same(await kpisOf(w), done.kpis)
  const last = w.console.log.last
  t.same(statuses(await w.console.ingest(all)), all.map(() => 'duplicate'), 'after the second restart everything is a duplicate')
  t.equal(w.console.log.last, last, 'nothing appended')
  t.equal(w.console.views.applied, 0)
})
