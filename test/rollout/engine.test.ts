import t from 'tap'
import type { JobState } from '../../lib/report/event.js'
import {
  createRollout, evaluate, phaseProgress, pauseRollout, resumeRollout, abortRollout, type Rollout, type StatusOf
} from '../../lib/rollout/index.js'
import { MINUTE, T0, endpoints, spec } from './helpers.js'

const at = (minutes: number) => new Date(T0.getTime() + minutes * MINUTE)

/** Statuses from a map; everything else never reported. */
function statuses (entries: Iterable<[string, JobState]> = []): { map: Map<string, JobState>, of: StatusOf } {
  const map = new Map(entries)
  return { map, of: (k) => map.get(k) }
}

/** Sets the first `n` endpoints of `phase` to `state`. */
function report (s: Map<string, JobState>, r: Rollout, phase: number, n: number, state: JobState, skip = 0): void {
  for (const k of r.phases[phase]!.endpoints.slice(skip, skip + n)) s.set(k, state)
}

t.test('a phase advances only when the success threshold holds AND the soak time has passed', async (t) => {
  let r = createRollout(spec(), endpoints(100), T0).rollout // pilot 10, success 0.8, soak 60 min
  const s = statuses()

  report(s.map, r, 0, 7, 'installed')
  let step = evaluate(r, s.of, at(120))
  t.same(step.changes, [], '7 of 10 installed is below 0.8, even after the soak')
  t.equal(step.rollout, r, 'no change: the very same object')

  report(s.map, r, 0, 8, 'installed')
  t.same(evaluate(r, s.of, at(59)).changes, [], '8 of 10 installed, but only 59 of 60 minutes soaked')
  step = evaluate(r, s.of, at(60))
  t.same(step.changes, [
    { type: 'phase-succeeded', phase: 0, name: 'pilot', installed: 8, size: 10 },
    { type: 'phase-started', phase: 1, name: 'early' }
  ])
  r = step.rollout
  t.same(r.phases.map((p) => p.state), ['succeeded', 'active', 'pending'])
  t.equal(r.phases[0]!.endedAt, at(60).toISOString())
  t.equal(r.phases[1]!.startedAt, at(60).toISOString())
  t.same(evaluate(r, s.of, at(60)).changes, [], 'evaluating the result again changes nothing')

  report(s.map, r, 1, 45, 'installed')
  t.same(evaluate(r, s.of, at(119)).changes, [], 'the soak of phase 1 counts from its own start')
  step = evaluate(r, s.of, at(120))
  t.same(step.changes.map((c) => c.type), ['phase-succeeded', 'phase-started'])
  r = step.rollout

  report(s.map, r, 2, 35, 'installed')
  report(s.map, r, 2, 1, 'reboot-pending', 35)
  report(s.map, r, 2, 9, 'installing', 36)
  t.same(evaluate(r, s.of, at(121)).changes, [], '35 of 45 installed: reboot-pending and installing are not success yet')
  report(s.map, r, 2, 1, 'installed', 35)
  step = evaluate(r, s.of, at(121))
  t.same(step.changes, [{ type: 'phase-succeeded', phase: 2, name: 'broad', installed: 36, size: 45 }, { type: 'rollout-completed' }],
    '36 of 45 is 0.8; the last phase has no soak')
  t.equal(step.rollout.state, 'completed')
  t.same(evaluate(step.rollout, s.of, at(999)).changes, [], 'a completed rollout does not move')
})

t.test('the error threshold halts the rollout, and is checked before success', async (t) => {
  const r = createRollout(spec(), endpoints(100), T0).rollout // pilot of 10, error threshold 0.2
  const s = statuses()
  report(s.map, r, 0, 1, 'failed')
  report(s.map, r, 0, 8, 'installed', 1)
  t.same(evaluate(r, s.of, at(5)).changes, [], 'one error in ten is below 0.2')
  report(s.map, r, 0, 1, 'rolled-back', 9)
  const step = evaluate(r, s.of, at(90))
  t.same(step.changes, [{ type: 'rollout-halted', phase: 0, name: 'pilot', errors: 2, size: 10, errorRate: 0.2, threshold: 0.2 }],
    '2 errors of 10 trip 0.2 although 8 installed would have met the success threshold')
  t.equal(step.rollout.state, 'halted')
  t.equal(step.rollout.phases[0]!.state, 'failed')
  t.same(step.rollout.halted, { phase: 0, name: 'pilot', errors: 2, size: 10, errorRate: 0.2, threshold: 0.2, at: at(90).toISOString() })
  t.same(evaluate(step.rollout, s.of, at(200)).changes, [], 'a halted rollout does not advance')
  t.equal(r.state, 'running', 'the input is not modified')

  s.map.set(r.phases[0]!.endpoints[9]!, 'rolling-back')
  t.same(phaseProgress(r.phases[0]!, s.of), { size: 10, installed: 8, errors: 2, open: 0 }, 'rolling-back counts as an error')
})

t.test('resuming a halted rollout accepts the errors so far; one more error halts it again', async (t) => {
  const created = createRollout(spec({
    phases: [
      { name: 'pilot', select: { percent: 20 }, successThreshold: 0.9, errorThreshold: 0.1, minSoakMinutes: 0 },
      { name: 'rest', successThreshold: 0.9, errorThreshold: 0.1, minSoakMinutes: 0 }
    ]
  }), endpoints(100), T0).rollout
  const s = statuses()
  report(s.map, created, 0, 2, 'failed')
  const halted = evaluate(created, s.of, at(1)).rollout
  t.equal(halted.state, 'halted')
  const resumed = resumeRollout(halted, at(2))
  t.same(resumed.changes, [{ type: 'resumed', from: 'halted' }])
  t.equal(resumed.rollout.state, 'running')
  t.equal(resumed.rollout.halted, undefined)
  const { endedAt: _, ...pilot } = halted.phases[0]!
  t.same(resumed.rollout.phases[0], { ...pilot, state: 'active', acceptedErrors: 2 }, 'the phase is active again, its start kept')
  t.equal(resumed.rollout.phases[0]!.startedAt, T0.toISOString())
  t.same(evaluate(resumed.rollout, s.of, at(3)).changes, [], 'the accepted errors do not halt it again')
  report(s.map, created, 0, 1, 'failed', 2)
  const again = evaluate(resumed.rollout, s.of, at(4))
  t.same(again.changes.map((c) => c.type), ['rollout-halted'], 'a new error does')
  t.equal(again.rollout.halted?.errors, 3)
})

t.test('paused and aborted rollouts do not advance; an error threshold of 0 halts on the first error only', async (t) => {
  const r = createRollout(spec(), endpoints(50), T0).rollout
  const s = statuses()
  report(s.map, r, 0, r.phases[0]!.endpoints.length, 'installed')
  t.same(evaluate(pauseRollout(r, at(1)).rollout, s.of, at(100)).changes, [])
  t.same(evaluate(abortRollout(r, at(1)).rollout, s.of, at(100)).changes, [])
  t.same(evaluate(r, s.of, at(100)).changes.map((c) => c.type), ['phase-succeeded', 'phase-started'], 'running, the same statuses advance it')

  const strict = createRollout(spec({ phases: [{ name: 'all', successThreshold: 1, errorThreshold: 0, minSoakMinutes: 0 }] }), endpoints(10), T0).rollout
  t.same(evaluate(strict, statuses().of, at(1)).changes, [], 'no errors: no halt')
  const one = statuses([[strict.phases[0]!.endpoints[0]!, 'failed']])
  t.same(evaluate(strict, one.of, at(1)).changes.map((c) => c.type), ['rollout-halted'])
})

t.test('an empty phase succeeds as soon as its soak has passed; later phases may follow at once', async (t) => {
  const fleet = endpoints(12) // sales: 0,3,6,9 — dev: 1,4,7,10 — ops: 2,5,8,11
  const r = createRollout(spec({
    phases: [
      { name: 'sales', select: { tenants: ['msp-1/acme/sales'] }, successThreshold: 1, errorThreshold: 0.5, minSoakMinutes: 10 },
      { name: 'sales-again', select: { tenants: ['msp-1/acme/sales'] }, successThreshold: 1, errorThreshold: 0.5, minSoakMinutes: 30 },
      { name: 'nobody', select: { tenants: ['msp-1/acme/none'] }, successThreshold: 1, errorThreshold: 0.5, minSoakMinutes: 0 },
      { name: 'rest', successThreshold: 1, errorThreshold: 0.5, minSoakMinutes: 0 }
    ]
  }), fleet, T0).rollout
  t.same(r.phases.map((p) => p.endpoints.length), [4, 0, 0, 8])
  const s = statuses()
  report(s.map, r, 0, 4, 'installed')
  let step = evaluate(r, s.of, at(10))
  t.same(step.changes.map((c) => c.type), ['phase-succeeded', 'phase-started'], 'the empty phase starts, its soak ahead')
  step = evaluate(step.rollout, s.of, at(39))
  t.same(step.changes, [], 'empty, but 29 of 30 minutes')
  step = evaluate(step.rollout, s.of, at(40))
  t.same(step.changes, [
    { type: 'phase-succeeded', phase: 1, name: 'sales-again', installed: 0, size: 0 },
    { type: 'phase-started', phase: 2, name: 'nobody' },
    { type: 'phase-succeeded', phase: 2, name: 'nobody', installed: 0, size: 0 },
    { type: 'phase-started', phase: 3, name: 'rest' }
  ], 'an empty phase without soak succeeds in the same evaluation')
  t.same(step.rollout.phases.map((p) => p.state), ['succeeded', 'succeeded', 'succeeded', 'active'])
})
