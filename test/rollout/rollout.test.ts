import t from 'tap'
import {
  createRollout, parseRolloutSpec, phaseMembers, pauseRollout, resumeRollout, abortRollout, rollbackRollout,
  startedEndpoints, type Rollout
} from '../../lib/rollout/index.js'
import { CUSTOMER, T0, codeOf, endpointKey, endpoints, spec } from './helpers.js'

const phase = (name: string, select?: object) => ({ name, ...(select ? { select } : {}), successThreshold: 1, errorThreshold: 0.5, minSoakMinutes: 0 })

t.test('a valid spec parses; every kind of bad input is BAD_ROLLOUT', async (t) => {
  const parsed = parseRolloutSpec(spec())
  t.same(parsed.phases[2]!.select, {}, 'select defaults to empty')
  t.equal(parsed.release.risk, 'high')
  const bad: Array<[string, unknown]> = [
    ['not an object', 42],
    ['unsafe id', spec({ id: '../x' })],
    ['unknown field', { ...spec(), extra: 1 }],
    ['release without risk', spec({ release: { ...spec().release, risk: undefined as never } })],
    ['bad manifest digest', spec({ release: { ...spec().release, manifest: 'xyz' } })],
    ['bad target tenant', spec({ target: { tenant: 'a//b' } })],
    ['target endpoint not a key id', spec({ target: { tenant: CUSTOMER, endpoints: ['pc-1'] } })],
    ['no phases', spec({ phases: [] })],
    ['21 phases', spec({ phases: [...Array.from({ length: 20 }, (_, i) => phase(`p${i}`, { percent: 5 })), phase('last')] })],
    ['success threshold above 1', spec({ phases: [{ ...phase('only'), successThreshold: 1.5 }] })],
    ['negative error threshold', spec({ phases: [{ ...phase('only'), errorThreshold: -0.1 }] })],
    ['negative soak', spec({ phases: [{ ...phase('only'), minSoakMinutes: -1 }] })],
    ['percent 0', spec({ phases: [phase('a', { percent: 0 }), phase('b')] })],
    ['percent 101', spec({ phases: [phase('a', { percent: 101 }), phase('b')] })],
    ['fractional percent', spec({ phases: [phase('a', { percent: 2.5 }), phase('b')] })],
    ['duplicate phase names', spec({ phases: [phase('a', { percent: 10 }), phase('a')] })],
    ['selector tenant outside the target', spec({ phases: [phase('a', { tenants: ['msp-1/other'] }), phase('b')] })],
    ['a selector on the last phase', spec({ phases: [phase('a', { percent: 10 }), phase('b', { percent: 50 })] })],
    ['bad deadline', spec({ deadline: '2030-02-30T00:00:00Z' })]
  ]
  for (const [what, value] of bad) t.equal(await codeOf(() => parseRolloutSpec(value)), 'BAD_ROLLOUT', what)
  t.throws(() => parseRolloutSpec(spec({ phases: [phase('a', { tenants: ['msp-1/other'] }), phase('b')] })),
    /rollout\.phases\[0\]\.select\.tenants\[0\]: 'msp-1\/other' is outside the target/, 'the message names the field')
})

t.test('percent selection is stable, exact and covers every endpoint exactly once', async (t) => {
  const fleet = endpoints(1000)
  const members = phaseMembers(parseRolloutSpec(spec()), fleet)
  t.same(members.map((m) => m.length), [100, 450, 450], '10 % of 1000, then 50 % of the 900 left, then the rest')
  const all = members.flat()
  t.equal(new Set(all).size, 1000, 'no endpoint in two phases')
  t.same([...all].sort(), fleet.map((e) => e.keyid).sort(), 'every endpoint in some phase')

  const shuffled = [...fleet].reverse()
  for (let i = 0; i < shuffled.length; i += 7) shuffled.push(shuffled.splice(i, 1)[0]!)
  t.same(phaseMembers(parseRolloutSpec(spec()), shuffled), members, 'the order the endpoints come in does not matter')
  t.same(phaseMembers(parseRolloutSpec(spec()), [...fleet, ...fleet.slice(0, 10)]), members, 'an endpoint offered twice counts once')

  const other = phaseMembers(parseRolloutSpec(spec({ id: 'ff-128-again' })), fleet)
  t.not(other[0]!.join(), members[0]!.join(), 'another rollout draws another pilot')
  t.equal(other[0]!.length, 100)

  const tiny = phaseMembers(parseRolloutSpec(spec()), endpoints(3))
  t.same(tiny.map((m) => m.length), [1, 1, 1], 'percentages round up: a pilot is never empty while endpoints remain')
})

t.test('tenant and endpoint selectors, the first matching phase wins, the target filters', async (t) => {
  const fleet = [...endpoints(30), { keyid: endpointKey(500), tenant: 'msp-1/other' }]
  const it = parseRolloutSpec(spec({
    phases: [
      phase('it', { endpoints: [endpointKey(1), endpointKey(3)] }),
      phase('sales', { tenants: [`${CUSTOMER}/sales`] }),
      phase('half-dev', { tenants: [`${CUSTOMER}/dev`], percent: 50 }),
      phase('rest')
    ]
  }))
  const [a, b, c, d] = phaseMembers(it, fleet)
  t.same(a, [endpointKey(1), endpointKey(3)].sort())
  t.equal(b!.length, 9, 'the 10 sales endpoints (0, 3, …, 27) less endpoint 3, which phase "it" took')
  t.ok(b!.every((k) => fleet.find((e) => e.keyid === k)!.tenant.endsWith('/sales')))
  t.notOk(b!.includes(endpointKey(3)), 'an endpoint belongs to the first phase that selects it')
  t.equal(c!.length, 5, 'half of the 9 dev endpoints not yet taken (endpoint 1 is in "it"), rounded up')
  t.ok(c!.every((k) => fleet.find((e) => e.keyid === k)!.tenant.endsWith('/dev')))
  t.equal(a!.length + b!.length + c!.length + d!.length, 30, 'the endpoint outside the target is left out')
  t.notOk(d!.includes(endpointKey(500)))

  const listed = parseRolloutSpec(spec({ target: { tenant: CUSTOMER, endpoints: [endpointKey(3), endpointKey(4), endpointKey(500)] }, phases: [phase('all')] }))
  t.same(phaseMembers(listed, fleet), [[endpointKey(3), endpointKey(4)].sort()], 'target endpoints narrow the target; the tenant still applies')
})

t.test('create: running with phase 0 active; refuses bad endpoints, an empty target and a past deadline', async (t) => {
  const { rollout, changes } = createRollout(spec(), endpoints(100), T0)
  t.equal(rollout.state, 'running')
  t.equal(rollout.revision, 1)
  t.same(rollout.phases.map((p) => p.state), ['active', 'pending', 'pending'])
  t.equal(rollout.phases[0]!.startedAt, T0.toISOString())
  t.same(changes, [{ type: 'created', endpoints: 100 }, { type: 'phase-started', phase: 0, name: 'pilot' }])
  t.same(startedEndpoints(rollout), rollout.phases[0]!.endpoints)

  t.equal(await codeOf(() => createRollout(spec(), [{ keyid: 'nope', tenant: CUSTOMER }], T0)), 'BAD_ARGUMENT')
  t.equal(await codeOf(() => createRollout(spec(), [{ keyid: endpointKey(1), tenant: '../x' }], T0)), 'BAD_ARGUMENT')
  t.equal(await codeOf(() => createRollout(spec(), [{ keyid: endpointKey(1), tenant: CUSTOMER }, { keyid: endpointKey(1), tenant: `${CUSTOMER}/dev` }], T0)), 'BAD_ARGUMENT')
  t.equal(await codeOf(() => createRollout(spec(), [{ keyid: endpointKey(1), tenant: 'msp-1/other' }], T0)), 'BAD_ROLLOUT', 'nothing in the target')
  t.equal(await codeOf(() => createRollout(spec({ deadline: '2029-12-31T00:00:00Z' }), endpoints(5), T0)), 'BAD_ROLLOUT')
})

t.test('pause, resume, abort and rollback follow the state machine; the rest is INVALID_TRANSITION', async (t) => {
  const running = createRollout(spec(), endpoints(20), T0).rollout
  const at = new Date(T0.getTime() + 1000)
  const paused = pauseRollout(running, at)
  t.equal(paused.rollout.state, 'paused')
  t.same(paused.changes, [{ type: 'paused' }])
  t.equal(running.state, 'running', 'the input is not modified')
  t.equal(resumeRollout(paused.rollout, at).rollout.state, 'running')
  t.same(resumeRollout(paused.rollout, at).changes, [{ type: 'resumed', from: 'paused' }])
  t.equal(abortRollout(paused.rollout, at).rollout.state, 'aborted')
  t.equal(abortRollout(running, at).rollout.state, 'aborted')

  const with_ = (state: Rollout['state']): Rollout => ({ ...running, state })
  const expectations: Array<[string, (r: Rollout, now: Date) => unknown, Rollout['state'][]]> = [
    ['pause', pauseRollout, ['paused', 'halted', 'aborted', 'completed', 'rolled-back']],
    ['resume', resumeRollout, ['running', 'aborted', 'completed', 'rolled-back']],
    ['abort', abortRollout, ['aborted', 'completed', 'rolled-back']],
    ['rollback', rollbackRollout, ['rolled-back']]
  ]
  for (const [verb, fn, refused] of expectations) {
    for (const state of refused) t.equal(await codeOf(() => fn(with_(state), at)), 'INVALID_TRANSITION', `${verb} from ${state}`)
  }
  t.throws(() => pauseRollout(with_('completed'), at), /cannot pause rollout ff-128: it is completed \(pause needs running\)/)

  for (const state of ['running', 'paused', 'halted', 'aborted', 'completed'] as const) {
    const step = rollbackRollout(with_(state), at)
    t.equal(step.rollout.state, 'rolled-back', `rollback from ${state}`)
    t.same(step.changes, [{ type: 'rolled-back', endpoints: running.phases[0]!.endpoints.length }])
  }
})
