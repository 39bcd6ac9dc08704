// Event ingestion through the console against its floor, the signature check alone. 100 000 events
// of 1 000 endpoints are signed before timing starts. Each run opens a real Console (lib/console)
// on a LevelDB in a temporary folder, its report views on; the endpoints enroll through the
// console's own token path (auto-approve tokens: approved, with certificates, in the console's
// registry), a release is added and approved, and a rollout over all of them is running (one phase
// that soaks for an hour on a clock that stands still: the engine evaluates it after every report,
// it never moves). Then the events go as canonical bytes (as they arrive off the wire) through
// `console.ingest`, called as the swarm link calls it (lib/console/link.ts): one call per agent
// report, with that agent's tenant scope and key id. An agent reports everything pending, at most
// MAX_REPORT_BATCH events in at most MAX_LINK_BYTES (agent/agent.ts #flush); here each agent has
// PENDING events waiting at each report (BENCH_INGEST_PENDING, default 50: two reports of 50 per
// endpoint). Measured:
// the whole call, the ingestor's checks and batch (verifyEvent, registry, sequence, duplicates, log
// entries, hash index, counters), the views folding every entry in, and the console's reaction
// after storing (the engine evaluating the rollout the events name, the directive check, the
// webhook notifier), which runs while the next call waits on its I/O (timed with it) and, after
// the last call, until Console.settled().
// The baseline verifies the same events' signatures over their precomputed canonical signed bytes,
// nothing else, interleaved call by call with ingestion. A second pass, for comparison only, runs
// the bare Ingestor with a stub registry and no views on the same calls (`ingestor_only_*`).
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { publicKeyFromId, verify } from '../lib/crypto/keys.js'
import { serializeEnvelope, signedBytes, type Envelope } from '../lib/trust/envelope.js'
import { releaseRef } from '../lib/trust/directive.js'
import type { ReleaseDocument } from '../lib/trust/release.js'
import { openDatabase } from '../lib/store/db.js'
import { EventLog } from '../lib/store/event-log.js'
import { signEvent, type AgentEvent, type SignedEvent } from '../lib/report/event.js'
import type { ConsoleFact } from '../lib/report/facts.js'
import { Ingestor } from '../lib/report/ingest.js'
import { AdminApi } from '../lib/console/api.js'
import { MAX_LINK_BYTES, MAX_REPORT_BATCH } from '../lib/console/link.js'
import { makeConsoleOrg, openConsole, SimEndpoint, ORG, OWNER, type ConsoleOrg } from '../fixtures/console-org.js'
import { sshKey } from '../fixtures/org.js'
import type { BenchResult } from './run.js'

export const summary = { figure: 'events_per_s', baseline: 'baseline_per_s', goal: 'ratio >= 0.5' }

const ENDPOINTS = 1000
const PER_ENDPOINT = 100
/** Events waiting in an agent's outbox each time it reports. */
const PENDING = Number(process.env.BENCH_INGEST_PENDING ?? 50)
const MSP = 'msp'
const CUSTOMERS = 20
const ROLLOUT = 'r1'
/** The console's clock, standing still: the rollout's soak never ends, nothing expires. */
const NOW = new Date(Date.UTC(2030, 0, 1))
const clock = () => NOW

const STATES = ['assigned', 'downloading', 'verified', 'waiting-window', 'installing', 'health-check', 'installed'] as const

function eventOf (ep: SimEndpoint, tenant: string, release: Envelope<ReleaseDocument>, seq: number): AgentEvent {
  const at = new Date(NOW.getTime() - 86400_000 + seq * 1000).toISOString()
  const base = { _type: 'event' as const, spec: 1 as const, org: ORG, endpoint: ep.keyid, tenant, seq, at }
  if (seq % 10 === 0) {
    return { ...base, kind: 'transfer', transfer: { manifest: release.signed.manifest.digest, bytes: { origin: 1000 * seq, site: 5000, peer: 20000, local: 0 } } }
  }
  return { ...base, kind: 'job', job: { release: releaseRef(release), rollout: ROLLOUT, action: 'install', state: STATES[seq % STATES.length]!, attempt: 1 + Math.floor(seq / 50) } }
}

interface Check { message: Buffer, sig: Buffer, key: Buffer }

/** One agent report: what the link hands to console.ingest. */
interface Call { keyid: string, tenant: string, events: Buffer[], checks: Check[] }

interface Fleet {
  org: ConsoleOrg
  release: Envelope<ReleaseDocument>
  endpoints: SimEndpoint[]
  tenants: Map<string, string>
  calls: Call[]
  total: number
}

const tenantOf = (i: number) => `${MSP}/customer-${i % CUSTOMERS}`

/**
 * What is pending, in reports as agent/agent.ts #flush makes them: MAX_REPORT_BATCH events each.
 * (#flush also keeps a report within MAX_LINK_BYTES; events of this size never come near it.)
 */
function reports (pending: Buffer[]): Buffer[][] {
  const out: Buffer[][] = []
  for (let i = 0; i < pending.length; i += MAX_REPORT_BATCH) out.push(pending.slice(i, i + MAX_REPORT_BATCH))
  for (const batch of out) {
    if (batch.reduce((n, b) => n + b.length + 3, 64) > MAX_LINK_BYTES) throw new Error('a report over MAX_LINK_BYTES: split by bytes as #flush does')
  }
  return out
}

async function prepare (): Promise<Fleet> {
  if (!Number.isInteger(PENDING) || PENDING < 1) throw new Error('BENCH_INGEST_PENDING must be a whole number ≥ 1')
  const org = await makeConsoleOrg(NOW)
  const release = await org.release('editor', '2.4.1', { risk: 'high', platform: 'linux-x64' })
  const endpoints = Array.from({ length: ENDPOINTS }, (_, i) => new SimEndpoint(`pc-${i}`))
  const tenants = new Map<string, string>()
  endpoints.forEach((ep, i) => tenants.set(ep.keyid, tenantOf(i)))
  const signed: SignedEvent[][] = []
  for (const ep of endpoints) {
    const list: SignedEvent[] = []
    for (let seq = 1; seq <= PER_ENDPOINT; seq++) list.push(await signEvent(eventOf(ep, tenants.get(ep.keyid)!, release, seq), ep.signer))
    signed.push(list)
  }
  // Round by round, each agent reports what became pending since its last report.
  const calls: Call[] = []
  for (let from = 0; from < PER_ENDPOINT; from += PENDING) {
    endpoints.forEach((ep, i) => {
      const envelopes = signed[i]!.slice(from, from + PENDING)
      const bytes = envelopes.map(serializeEnvelope)
      let n = 0
      for (const batch of reports(bytes)) {
        const mine = envelopes.slice(n, n + batch.length)
        n += batch.length
        calls.push({
          keyid: ep.keyid,
          tenant: tenants.get(ep.keyid)!,
          events: batch,
          checks: mine.map((env) => ({ message: signedBytes(env), sig: Buffer.from(env.signatures[0]!.sig, 'hex'), key: publicKeyFromId(env.signed.endpoint) }))
        })
      }
    })
  }
  return { org, release, endpoints, tenants, calls, total: ENDPOINTS * PER_ENDPOINT }
}


interface Measured { ours: number, baseline: number, events: number }

/**
 * Runs `ingest` on every call (the first `calls`), timing it; before each call the baseline
 * verifies the same events' signatures, so both figures are taken under the same machine load
 * (these machines are shared: a baseline measured a minute apart can differ by 2×).
 */
async function timed (fleet: Fleet, calls: number, ingest: (c: Call) => Promise<{ results: Array<{ status: string }> }>, settle?: () => Promise<void>): Promise<Measured> {
  let ours = 0
  let baseline = 0
  let events = 0
  for (let c = 0; c < calls; c++) {
    const call = fleet.calls[c]!
    const t0 = performance.now()
    for (const { message, sig, key } of call.checks) if (!verify(sig, message, key)) throw new Error('bad signature')
    const t1 = performance.now()
    const { results } = await ingest(call)
    ours += performance.now() - t1
    baseline += t1 - t0
    events += call.events.length
    const bad = results.find((r) => r.status !== 'accepted')
    if (bad !== undefined) throw new Error(`call ${c}: ${JSON.stringify(bad)}`)
  }
  // What the console still does in reaction to the last reports is part of ours.
  const t2 = performance.now()
  await settle?.()
  ours += performance.now() - t2
  return { ours: ours / 1000, baseline: baseline / 1000, events }
}

/** A console with the fleet enrolled and a running rollout over it, fed the calls through console.ingest. */
async function measureConsole (fleet: Fleet, calls = fleet.calls.length): Promise<Measured> {
  const dir = await mkdtemp(path.join(tmpdir(), 'patchswarm-bench-ingest-'))
  try {
    const console = await openConsole(fleet.org, path.join(dir, 'console'), { clock })
    try {
      const warnings: unknown[] = []
      console.warnings.push((err) => warnings.push(err))
      const api = new AdminApi(console)
      await console.fleet.bootstrapOwner({ id: OWNER, sshKey: sshKey('bench@ingest') })
      await console.fleet.createTenant(OWNER, { parent: '', name: MSP, kind: 'msp' })
      const perCustomer = Math.ceil(ENDPOINTS / CUSTOMERS)
      for (let i = 0; i < CUSTOMERS; i++) {
        const tenant = tenantOf(i)
        await console.fleet.createTenant(OWNER, { parent: MSP, name: tenant.split('/')[1]!, kind: 'customer' })
        const { token } = await api.endpoints.createToken(OWNER, { scope: tenant, expiresAt: new Date(NOW.getTime() + 86400_000), maxUses: perCustomer, autoApprove: true })
        for (let e = i; e < ENDPOINTS; e += CUSTOMERS) {
          const ep = fleet.endpoints[e]!
          await ep.enroll(console, token, NOW)
          const record = await console.endpoints.get(ep.keyid)
          if (record.status !== 'approved' || !record.certificate || record.tenant !== tenant) throw new Error(`${ep.hostname}: ${record.status} in ${record.tenant}`)
        }
      }
      const { hash } = await api.releases.add(OWNER, fleet.release)
      await api.releases.approve(OWNER, hash, MSP)
      await api.rollouts.create(OWNER, {
        id: ROLLOUT,
        release: hash,
        target: { tenant: MSP },
        phases: [{ name: 'all', successThreshold: 1, errorThreshold: 0.5, minSoakMinutes: 60 }]
      })
      const rollout = await console.rollouts.get(ROLLOUT)
      if (rollout.state !== 'running' || rollout.phases[0]!.endpoints.length !== ENDPOINTS) throw new Error(`rollout ${rollout.state} over ${rollout.phases[0]?.endpoints.length}`)
      // Whatever the set-up left for the console's background work (enrollment facts, the first
      // SLA check) is done before timing starts: one tick, serialised behind it.
      await console.tick()
      const before = console.log.last

      const m = await timed(fleet, calls, (c) => console.ingest(c.events, { tenantScope: c.tenant, endpoint: c.keyid }), () => console.settled())

      if (warnings.length > 0) throw warnings[0]
      if (console.ingestor.counters.accepted !== m.events || console.log.last !== before + m.events) throw new Error(`${console.ingestor.counters.accepted} accepted, log at ${console.log.last}`)
      if (console.views.position !== console.log.last) throw new Error(`views at ${console.views.position}, log at ${console.log.last}`)
      if ((await console.rollouts.get(ROLLOUT)).revision !== rollout.revision) throw new Error('the rollout moved')
      return m
    } finally {
      await console.close()
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** The bare Ingestor, as before: a Map for the registry, no views, nothing after storing. */
async function measureIngestor (fleet: Fleet): Promise<Measured> {
  const dir = await mkdtemp(path.join(tmpdir(), 'patchswarm-bench-ingest-'))
  try {
    const db = await openDatabase(dir)
    try {
      const log = new EventLog<SignedEvent, ConsoleFact>(db)
      const ingestor = new Ingestor(db, {
        log,
        org: ORG,
        clock,
        endpoints: { lookup: async (keyid) => { const tenant = fleet.tenants.get(keyid); return tenant === undefined ? undefined : { keyid, tenant, status: 'approved' } } }
      })
      await ingestor.ready()
      const m = await timed(fleet, fleet.calls.length, (c) => ingestor.ingest(c.events, { tenantScope: c.tenant, endpoint: c.keyid }))
      if (ingestor.counters.accepted !== m.events || log.last !== m.events) throw new Error(`${ingestor.counters.accepted} accepted, log at ${log.last}`)
      await ingestor.close()
      await log.close()
      return m
    } finally {
      await db.close()
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

export async function run (): Promise<BenchResult> {
  const fleet = await prepare()
  const total = fleet.total
  await measureConsole(fleet, Math.ceil(fleet.calls.length / 25)) // warm-up: the JIT, and the garbage of signing collected
  const real = await measureConsole(fleet)
  const bare = await measureIngestor(fleet)
  const perS = (seconds: number) => Math.round(total / seconds)
  const ratio = (m: Measured) => Math.round((m.baseline / m.ours) * 100) / 100
  return {
    bench: 'ingest',
    events: total,
    endpoints: ENDPOINTS,
    calls: fleet.calls.length,
    events_per_call: Math.round(total / fleet.calls.length),
    events_per_s: perS(real.ours),
    baseline_per_s: perS(real.baseline),
    ingestor_only_events_per_s: perS(bare.ours),
    ingestor_only_ratio: ratio(bare),
    ratio: ratio(real)
  }
}
