// The rollout engine: given what every endpoint last reported, decide whether the active phase has
// succeeded (next phase starts) or tripped its error threshold (rollout halts). Pure and
// deterministic: the same rollout, statuses and clock reading always give the same step, and
// evaluating its result again at the same time changes nothing.
import type { JobState } from '../report/event.js'
import type { HaltInfo, Rollout, RolloutChange, RolloutPhase, RolloutStep } from './rollout.js'

/** Only a finished, healthy install counts; reboot-pending is not there yet. */
export const SUCCESS_STATES: ReadonlySet<JobState> = new Set(['installed'])
/** A failure, or an install undone after failing its health check (rolling-back is on its way there). */
export const ERROR_STATES: ReadonlySet<JobState> = new Set(['failed', 'rolling-back', 'rolled-back'])

/** The latest job state an endpoint reported for this rollout's release; undefined before any. */
export type StatusOf = (keyid: string) => JobState | undefined

export interface PhaseProgress {
  size: number
  installed: number
  errors: number
  /** Neither installed nor in error (including endpoints that never reported). */
  open: number
}

export function phaseProgress (phase: RolloutPhase, statusOf: StatusOf): PhaseProgress {
  let installed = 0
  let errors = 0
  for (const k of phase.endpoints) {
    const s = statusOf(k)
    if (s === undefined) continue
    if (SUCCESS_STATES.has(s)) installed++
    else if (ERROR_STATES.has(s)) errors++
  }
  const size = phase.endpoints.length
  return { size, installed, errors, open: size - installed - errors }
}

const MINUTE = 60_000

/**
 * Advances a running rollout as far as the statuses allow at `now` (several phases at once when
 * later ones are already satisfied, e.g. empty with no soak). Errors are checked before success,
 * so a phase that both succeeds and trips its error threshold halts. Other states do not move.
 */
export function evaluate (rollout: Rollout, statusOf: StatusOf, now: Date): RolloutStep {
  if (rollout.state !== 'running') return { rollout, changes: [] }
  const at = now.toISOString()
  const phases = [...rollout.phases]
  const changes: RolloutChange[] = []
  let state: Rollout['state'] = 'running'
  let halted: HaltInfo | undefined
  for (let i = phases.findIndex((p) => p.state === 'active'); i >= 0 && i < phases.length;) {
    const phase = phases[i]!
    const spec = rollout.spec.phases[i]!
    const { size, installed, errors } = phaseProgress(phase, statusOf)
    const errorRate = size === 0 ? 0 : errors / size
    // `errors > accepted` also keeps an errorThreshold of 0 from halting a phase with no errors.
    if (errors > (phase.acceptedErrors ?? 0) && errorRate >= spec.errorThreshold) {
      phases[i] = { ...phase, state: 'failed', endedAt: at }
      state = 'halted'
      halted = { phase: i, name: phase.name, errors, size, errorRate, threshold: spec.errorThreshold, at }
      changes.push({ type: 'rollout-halted', phase: i, name: phase.name, errors, size, errorRate, threshold: spec.errorThreshold })
      break
    }
    const successRate = size === 0 ? 1 : installed / size
    const soaked = now.getTime() - Date.parse(phase.startedAt!) >= spec.minSoakMinutes * MINUTE
    if (successRate < spec.successThreshold || !soaked) break
    phases[i] = { ...phase, state: 'succeeded', endedAt: at }
    changes.push({ type: 'phase-succeeded', phase: i, name: phase.name, installed, size })
    i++
    if (i === phases.length) {
      state = 'completed'
      changes.push({ type: 'rollout-completed' })
      break
    }
    phases[i] = { ...phases[i]!, state: 'active', startedAt: at }
    changes.push({ type: 'phase-started', phase: i, name: phases[i]!.name })
  }
  if (changes.length === 0) return { rollout, changes }
  return { rollout: { ...rollout, state, phases, ...(halted ? { halted } : {}), updatedAt: at }, changes }
}
