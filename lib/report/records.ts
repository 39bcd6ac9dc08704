// The shapes reporting is built on. Ingestion turns verified agent events into these records;
// KPIs, exports and the TUI read only these. One PatchRecord per (endpoint, release): everything
// an auditor asks about one patch on one machine.
import type { JobState } from './event.js'
import type { Risk } from '../trust/release.js'

export interface PatchRecord {
  /** Endpoint key id. */
  endpoint: string
  /** The endpoint's tenant path (its parent node in the tree: a customer or group). */
  tenant: string
  /** envelopeHash of the release. */
  release: string
  name: string
  version: string
  risk: Risk
  rollout?: string
  /** When the release became due for this endpoint (the rollout phase that included it started). */
  availableAt: string
  /** availableAt + the risk class's SLA, when the policy has one. */
  slaDeadline?: string
  /** The latest state the endpoint reported, or 'assigned' before it reported any. */
  state: JobState
  /** Install attempts that reached a final state. */
  attempts: number
  /** How the first finished attempt ended: first-pass success is firstResult === 'installed'. */
  firstResult?: 'installed' | 'failed'
  /** The agent's signed time of the latest 'installed' (cleared by a later rollback). */
  installedAt?: string
  /** The agent's signed time of the latest failure or rollback. */
  failedAt?: string
  /** Failure code and reason of the latest failure. */
  code?: string
  reason?: string
  /** Console time of the last event for this pair. */
  updatedAt: string
}

/** Bytes an endpoint received, by source (see lib/swarm/accounting.ts). */
export interface ByteCounts {
  origin: number
  site: number
  peer: number
  local: number
}

export interface Kpis {
  /** Approved endpoints in scope. */
  endpoints: number
  /** Endpoints whose every due patch is installed. */
  compliant: number
  /** compliant / endpoints, 0..1; null without endpoints. */
  compliance: number | null
  /** Installed patches: hours from availableAt to installedAt (nearest-rank percentiles). */
  timeToPatch: { count: number, medianHours: number | null, p95Hours: number | null }
  /** Patches with a finished attempt whose first attempt installed / patches with a finished attempt. */
  firstPassSuccess: number | null
  /** Patches installed now / patches with a finished attempt. */
  finalSuccess: number | null
  /** Patches installed after their SLA deadline, or not installed and past it. */
  slaBreaches: number
  bytes: ByteCounts & { delivered: number }
  /** 1 − origin / delivered (delivered = origin + site + peer); null when nothing was delivered. */
  wanSavings: number | null
}
