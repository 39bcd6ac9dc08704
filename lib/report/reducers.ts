// The reducers of the reporting views: one function folds one log entry into the view state. They
// MUTATE the state in place and return it (copying maps of 100 000 records per event would cost
// more than the ingestion they follow); every object they change is named in `state.dirty`, so the
// snapshot writes only what changed. They are otherwise pure: no clock, no I/O, and the same log
// gives the same state. Entries are trusted (ingest verified the events, facts were validated), but
// nothing here throws on a surprising entry: it is skipped.
//
// Views:
//   endpoints   per endpoint: tenant, registry status, last event, agent state, job state per
//               release, bytes received by source (sum of its transfer events)
//   pairs       per endpoint × release: the PatchRecord (lib/report/records.ts); job events before
//               the assignment are kept and count once `patch.assigned` arrives
//   rollouts    per rollout: its state and phase, each member endpoint's job state, counts per job
//               state overall and per phase (what the rollout engine's thresholds read)
import type { AgentEvent, JobState, SignedEvent } from './event.js'
import type { ByteCounts, PatchRecord } from './records.js'
import type { ConsoleFact, PatchAssigned, ReportEntry } from './facts.js'

export interface EndpointView {
  keyid: string
  tenant: string
  /** From the console's endpoint facts. */
  status?: 'approved' | 'removed'
  /** The agent's time of its latest event, and the console's time of logging it. */
  lastEventAt?: string
  lastSeenAt?: string
  /** The endpoint's own seq of its latest event (0 before any). */
  lastSeq: number
  agent?: { state: string, version?: string, at: string }
  /** By release envelope hash: the latest job the agent reported. */
  jobs: Record<string, { state: JobState, action: 'install' | 'rollback', attempt: number, at: string, rollout?: string }>
  /** Bytes received, by source: the sum of its transfer events. */
  bytes: ByteCounts
  /** Log seq of the latest change. */
  position: number
}

/** A PatchRecord under construction: the assignment fields arrive with `patch.assigned`. */
export type PairState = Omit<PatchRecord, 'risk' | 'availableAt' | 'name' | 'version'> & Partial<Pick<PatchRecord, 'risk' | 'availableAt' | 'name' | 'version'>>

export type StateCounts = Partial<Record<JobState, number>>

export interface RolloutProgress {
  rollout: string
  /** From `rollout.changed`. */
  state?: string
  phase?: string
  release?: string
  reason?: string
  /** Member endpoints and their count per job state. */
  total: number
  counts: StateCounts
  /** The same per phase. */
  phases: Record<string, { total: number, counts: StateCounts }>
  /** Members the console ordered to roll back. */
  rollbackOrdered: number
  /** Console time and log seq of the latest change. */
  updatedAt: string
  position: number
}

export interface RolloutMember {
  state: JobState
  release: string
  phase?: string
  rollback?: true
}

export interface ViewState {
  /** The log seq of the last entry folded in. */
  position: number
  endpoints: Map<string, EndpointView>
  /** Key: pairKey(endpoint, release). */
  pairs: Map<string, PairState>
  rollouts: Map<string, RolloutProgress>
  /** Key: rollout, then endpoint. */
  members: Map<string, Map<string, RolloutMember>>
  /** Log seq of the latest change to each view, for cheap selectors. */
  changed: { endpoints: number, pairs: number, rollouts: number }
  /** Snapshot keys (see views.ts) of the objects changed since the last snapshot. */
  dirty: Set<string>
  /** Entries that could not be folded in (skipped). */
  skipped: number
}

export const pairKey = (endpoint: string, release: string): string => `${endpoint}!${release}`
export const dirtyKey = {
  endpoint: (keyid: string) => `e!${keyid}`,
  pair: (key: string) => `p!${key}`,
  rollout: (rollout: string) => `r!${rollout}`,
  member: (rollout: string, keyid: string) => `m!${rollout}!${keyid}`
}

export function emptyState (): ViewState {
  return {
    position: 0,
    endpoints: new Map(),
    pairs: new Map(),
    rollouts: new Map(),
    members: new Map(),
    changed: { endpoints: 0, pairs: 0, rollouts: 0 },
    dirty: new Set(),
    skipped: 0
  }
}

export function zeroBytes (): ByteCounts {
  return { origin: 0, site: 0, peer: 0, local: 0 }
}

/** Folds one entry into `state` (in place) and returns it. */
export function reduce (state: ViewState, entry: ReportEntry): ViewState {
  if (entry.seq <= state.position) return state // already folded in (e.g. covered by the snapshot)
  state.position = entry.seq
  try {
    if (entry.source === 'agent') agentEntry(state, entry.envelope, entry)
    else consoleFact(state, entry.fact, entry)
  } catch {
    state.skipped++
  }
  return state
}

function agentEntry (state: ViewState, envelope: SignedEvent, entry: ReportEntry): void {
  const e = envelope.signed
  const ep = endpoint(state, e.endpoint, e.tenant, entry.seq)
  ep.tenant = e.tenant
  ep.lastEventAt = e.at
  ep.lastSeenAt = entry.at
  ep.lastSeq = e.seq
  switch (e.kind) {
    case 'job': return jobEvent(state, e, ep, entry)
    case 'transfer': {
      const b = e.transfer!.bytes
      ep.bytes.origin += b.origin
      ep.bytes.site += b.site
      ep.bytes.peer += b.peer
      ep.bytes.local += b.local
      return
    }
    case 'agent': {
      const a = e.agent!
      ep.agent = { state: a.state, at: e.at, ...(a.version !== undefined ? { version: a.version } : {}) }
    }
  }
}

function jobEvent (state: ViewState, e: AgentEvent, ep: EndpointView, entry: ReportEntry): void {
  const job = e.job!
  const release = job.release.envelopeHash
  ep.jobs[release] = { state: job.state, action: job.action, attempt: job.attempt, at: e.at, ...(job.rollout !== undefined ? { rollout: job.rollout } : {}) }

  const pair = pairOf(state, e.endpoint, e.tenant, release, entry)
  pair.tenant = e.tenant
  pair.state = job.state
  pair.name ??= job.release.name
  pair.version ??= job.release.packageVersion
  if (job.action === 'install' && (job.state === 'installed' || job.state === 'failed')) {
    pair.attempts = Math.max(pair.attempts, job.attempt)
    pair.firstResult ??= job.state
  }
  if (job.state === 'installed') {
    pair.installedAt = e.at
  } else if (job.state === 'failed' || job.state === 'rolled-back') {
    if (job.state === 'rolled-back') delete pair.installedAt
    pair.failedAt = e.at
    if (job.code !== undefined || job.state === 'failed') {
      setOptional(pair, 'code', job.code)
      setOptional(pair, 'reason', job.reason)
    }
  }

  const rollout = job.rollout ?? pair.rollout
  if (rollout !== undefined) setMember(state, rollout, e.endpoint, { state: job.state, release }, entry)
}

function consoleFact (state: ViewState, fact: ConsoleFact, entry: ReportEntry): void {
  switch (fact.type) {
    case 'patch.assigned': return assigned(state, fact, entry)
    case 'patch.rollback': {
      const members = state.members.get(fact.rollout)
      for (const keyid of fact.endpoints) {
        const m = members?.get(keyid)
        if (m === undefined || m.rollback) continue
        m.rollback = true
        state.dirty.add(dirtyKey.member(fact.rollout, keyid))
        touchRollout(state, fact.rollout, entry).rollbackOrdered++
      }
      return
    }
    case 'rollout.changed': {
      const r = touchRollout(state, fact.rollout, entry)
      r.state = fact.state
      setOptional(r, 'phase', fact.phase ?? r.phase)
      setOptional(r, 'release', fact.release ?? r.release)
      setOptional(r, 'reason', fact.reason)
      return
    }
    case 'endpoint.approved':
    case 'endpoint.removed': {
      const ep = endpoint(state, fact.keyid, fact.tenant, entry.seq)
      ep.tenant = fact.tenant
      ep.status = fact.type === 'endpoint.approved' ? 'approved' : 'removed'
    }
  }
}

function assigned (state: ViewState, fact: PatchAssigned, entry: ReportEntry): void {
  const { rollout, phase, release } = fact
  const r = touchRollout(state, rollout, entry)
  r.release ??= release.hash
  for (const { keyid, tenant } of fact.endpoints) {
    endpoint(state, keyid, tenant, entry.seq).tenant = tenant
    const pair = pairOf(state, keyid, tenant, release.hash, entry)
    pair.tenant = tenant
    pair.name = release.name
    pair.version = release.version
    pair.risk = release.risk
    pair.rollout = rollout
    // The release became due the first time a phase included the endpoint; the SLA runs from then.
    pair.availableAt ??= fact.availableAt
    if (fact.slaDeadline !== undefined) pair.slaDeadline ??= fact.slaDeadline
    // A member starts 'assigned', unless the endpoint already has this release installed.
    const start: JobState = pair.state === 'installed' ? 'installed' : 'assigned'
    const existing = state.members.get(rollout)?.get(keyid)
    setMember(state, rollout, keyid, { state: existing?.state ?? start, release: release.hash, ...(phase !== undefined ? { phase } : {}) }, entry)
  }
}

function endpoint (state: ViewState, keyid: string, tenant: string, seq: number): EndpointView {
  let ep = state.endpoints.get(keyid)
  if (ep === undefined) {
    ep = { keyid, tenant, lastSeq: 0, jobs: {}, bytes: zeroBytes(), position: seq }
    state.endpoints.set(keyid, ep)
  }
  ep.position = seq
  state.changed.endpoints = seq
  state.dirty.add(dirtyKey.endpoint(keyid))
  return ep
}

function pairOf (state: ViewState, keyid: string, tenant: string, release: string, entry: ReportEntry): PairState {
  const key = pairKey(keyid, release)
  let pair = state.pairs.get(key)
  if (pair === undefined) {
    pair = { endpoint: keyid, tenant, release, state: 'assigned', attempts: 0, updatedAt: entry.at }
    state.pairs.set(key, pair)
  }
  pair.updatedAt = entry.at
  state.changed.pairs = entry.seq
  state.dirty.add(dirtyKey.pair(key))
  return pair
}

function touchRollout (state: ViewState, rollout: string, entry: ReportEntry): RolloutProgress {
  let r = state.rollouts.get(rollout)
  if (r === undefined) {
    r = { rollout, total: 0, counts: {}, phases: {}, rollbackOrdered: 0, updatedAt: entry.at, position: entry.seq }
    state.rollouts.set(rollout, r)
  }
  r.updatedAt = entry.at
  r.position = entry.seq
  state.changed.rollouts = entry.seq
  state.dirty.add(dirtyKey.rollout(rollout))
  return r
}

/** Sets a member's state (and phase), moving it between the counts. */
function setMember (state: ViewState, rollout: string, keyid: string, next: RolloutMember, entry: ReportEntry): void {
  let members = state.members.get(rollout)
  if (members === undefined) state.members.set(rollout, members = new Map())
  const r = touchRollout(state, rollout, entry)
  const old = members.get(keyid)
  const phase = next.phase ?? old?.phase
  if (old !== undefined) count(r, old.phase, old.state, -1)
  count(r, phase, next.state, +1)
  const member: RolloutMember = { state: next.state, release: next.release }
  if (phase !== undefined) member.phase = phase
  if (old?.rollback) member.rollback = true
  members.set(keyid, member)
  state.dirty.add(dirtyKey.member(rollout, keyid))
}

function count (r: RolloutProgress, phase: string | undefined, s: JobState, delta: 1 | -1): void {
  r.total += delta
  bump(r.counts, s, delta)
  if (phase === undefined) return
  const p = r.phases[phase] ??= { total: 0, counts: {} }
  p.total += delta
  bump(p.counts, s, delta)
}

function bump (counts: StateCounts, s: JobState, delta: number): void {
  const n = (counts[s] ?? 0) + delta
  if (n === 0) delete counts[s]
  else counts[s] = n
}

function setOptional<T extends object, K extends keyof T> (obj: T, key: K, value: T[K] | undefined): void {
  if (value === undefined) delete obj[key]
  else obj[key] = value
}
