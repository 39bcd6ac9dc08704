// Event ingestion (lib/report/ingest.ts) against its floor, the signature check alone. 100 000
// events of 1 000 endpoints are signed before timing starts, then go as canonical bytes (as they
// arrive off the wire) through the whole ingestion path into a real LevelDB in a temporary folder:
// the checks of verifyEvent (size, canonical form, shape, signature, hash), registry, sequence and
// duplicate checks, and one batch per call with the log entries, hash index and counters. Calls
// carry 250 events, five agents' outbox flushes of 50 each. The baseline verifies the same events'
// signatures over their precomputed canonical signed bytes, nothing else, interleaved call by call
// with ingestion. A second pass runs the same ingestion with the report views attached (reducers
// folding every entry in).
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { generateKeyPair, keySigner, publicKeyFromId, verify } from '../lib/crypto/keys.js'
import { serializeEnvelope, signedBytes } from '../lib/trust/envelope.js'
import { openDatabase } from '../lib/store/db.js'
import { EventLog } from '../lib/store/event-log.js'
import { signEvent, type AgentEvent, type SignedEvent } from '../lib/report/event.js'
import type { ConsoleFact } from '../lib/report/facts.js'
import { Ingestor } from '../lib/report/ingest.js'
import { ReportViews } from '../lib/report/views.js'
import type { BenchResult } from './run.js'

export const summary = { figure: 'events_per_s', baseline: 'baseline_per_s', goal: 'ratio >= 0.5' }

const ENDPOINTS = 1000
const PER_ENDPOINT = 100
const FLUSH = 50
const AGENTS_PER_CALL = 5
const ORG = 'bench-org'

const release = {
  name: 'editor',
  packageVersion: '2.4.1',
  platform: 'linux-x64',
  manifest: 'a'.repeat(64),
  envelopeHash: 'b'.repeat(64)
}
const STATES = ['assigned', 'downloading', 'verified', 'waiting-window', 'installing', 'health-check', 'installed'] as const

function eventOf (endpoint: string, tenant: string, seq: number): AgentEvent {
  const at = new Date(Date.UTC(2030, 0, 1) + seq * 1000).toISOString()
  const base = { _type: 'event' as const, spec: 1 as const, org: ORG, endpoint, tenant, seq, at }
  if (seq % 10 === 0) {
    return { ...base, kind: 'transfer', transfer: { manifest: release.manifest, bytes: { origin: 1000 * seq, site: 5000, peer: 20000, local: 0 } } }
  }
  return { ...base, kind: 'job', job: { release, rollout: 'r1', action: 'install', state: STATES[seq % STATES.length]!, attempt: 1 + Math.floor(seq / 50) } }
}

interface Check { message: Buffer, sig: Buffer, key: Buffer }

interface Fleet {
  /** What each ingest call carries, as bytes off the wire. */
  calls: Buffer[][]
  /** The same events for the baseline: canonical signed bytes, signature, public key. */
  checks: Check[][]
  tenants: Map<string, string>
  total: number
}

async function prepare (): Promise<Fleet> {
  const signers = Array.from({ length: ENDPOINTS }, () => keySigner(generateKeyPair()))
  const tenants = new Map<string, string>()
  signers.forEach((s, i) => tenants.set(s.keyid, `msp/customer-${i % 20}`))
  const bySigner: SignedEvent[][] = []
  for (const s of signers) {
    const list: SignedEvent[] = []
    for (let seq = 1; seq <= PER_ENDPOINT; seq++) list.push(await signEvent(eventOf(s.keyid, tenants.get(s.keyid)!, seq), s))
    bySigner.push(list)
  }
  const calls: Buffer[][] = []
  const checks: Check[][] = []
  for (let from = 0; from < PER_ENDPOINT; from += FLUSH) {
    for (let g = 0; g < ENDPOINTS; g += AGENTS_PER_CALL) {
      const envelopes = bySigner.slice(g, g + AGENTS_PER_CALL).flatMap((list) => list.slice(from, from + FLUSH))
      calls.push(envelopes.map(serializeEnvelope))
      checks.push(envelopes.map((env) => ({
        message: signedBytes(env),
        sig: Buffer.from(env.signatures[0]!.sig, 'hex'),
        key: publicKeyFromId(env.signed.endpoint)
      })))
    }
  }
  return { calls, checks, tenants, total: ENDPOINTS * PER_ENDPOINT }
}

/**
 * Ingests every call into a fresh database. Before each call the baseline verifies the same
 * events' signatures, so both figures are taken under the same machine load (these machines are
 * shared: a baseline measured a minute apart can differ by 2×).
 */
async function measure (fleet: Fleet, withViews: boolean, calls = fleet.calls.length): Promise<{ ours: number, baseline: number }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'patchswarm-bench-ingest-'))
  const db = await openDatabase(dir)
  try {
    const log = new EventLog<SignedEvent, ConsoleFact>(db)
    const ingestor = new Ingestor(db, {
      log,
      org: ORG,
      endpoints: { lookup: async (keyid) => { const tenant = fleet.tenants.get(keyid); return tenant === undefined ? undefined : { keyid, tenant, status: 'approved' } } }
    })
    const views = withViews ? new ReportViews(db, { log }) : undefined
    await ingestor.ready()
    await views?.ready()
    let ours = 0
    let baseline = 0
    for (let c = 0; c < calls; c++) {
      const t0 = performance.now()
      for (const { message, sig, key } of fleet.checks[c]!) if (!verify(sig, message, key)) throw new Error('bad signature')
      const t1 = performance.now()
      const { results } = await ingestor.ingest(fleet.calls[c]!)
      ours += performance.now() - t1
      baseline += t1 - t0
      if (results.some((r) => r.status !== 'accepted')) throw new Error(`call ${c}: ${JSON.stringify(results.find((r) => r.status !== 'accepted'))}`)
    }
    const expected = calls * FLUSH * AGENTS_PER_CALL
    if (ingestor.counters.accepted !== expected || log.last !== expected) throw new Error(`${ingestor.counters.accepted} accepted, log at ${log.last}`)
    if (views !== undefined && views.position !== expected) throw new Error(`views at ${views.position}`)
    await views?.close()
    await ingestor.close()
    await log.close()
    return { ours: ours / 1000, baseline: baseline / 1000 }
  } finally {
    await db.close()
    await rm(dir, { recursive: true, force: true })
  }
}

export async function run (): Promise<BenchResult> {
  const fleet = await prepare()
  const total = fleet.total
  await measure(fleet, true, 40) // warm-up: the JIT, and the garbage of signing collected
  const plain = await measure(fleet, false)
  const viewed = await measure(fleet, true)
  const perS = (seconds: number) => Math.round(total / seconds)
  const ratio = (m: { ours: number, baseline: number }) => Math.round((m.baseline / m.ours) * 100) / 100
  return {
    bench: 'ingest',
    events: total,
    endpoints: ENDPOINTS,
    events_per_call: FLUSH * AGENTS_PER_CALL,
    events_per_s: perS(plain.ours),
    baseline_per_s: perS(plain.baseline),
    with_views_per_s: perS(viewed.ours),
    with_views_ratio: ratio(viewed),
    ratio: ratio(plain)
  }
}
