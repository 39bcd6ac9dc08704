import t, { type Test } from 'tap'
import fs from 'node:fs/promises'
import path from 'node:path'
import { spawn } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { PatchswarmError } from '../../lib/errors.js'
import { retryDelay, boundProblem, JobStore, type CrashMarker } from '../../agent/jobs.js'
import { JobRunner, type StepResult } from '../../agent/job-runner.js'
import { processStartTime } from '../../agent/installers/run.js'
import { MAX_OUTPUT_CHARS, MAX_REASON_CHARS, MAX_EVENT_BYTES, type JobState } from '../../lib/report/event.js'
import { serializeEnvelope } from '../../lib/trust/envelope.js'
import { harness, checkEvents, windowAt, MINUTE, HOUR, DAY, type Harness, type HarnessOptions } from './helpers.js'
import { groupMembers } from './world.js'

const HAPPY: JobState[] = ['assigned', 'downloading', 'verified', 'installing', 'health-check', 'installed']
// cap 10 min, random 0.5: half the cap plus a quarter (see retryDelay).
const FIRST_RETRY = 7.5 * MINUTE

async function install (h: Harness, opts: Parameters<Harness['publish']>[0] = {}, a: Parameters<Harness['assignment']>[1] = {}) {
  const release = await h.publish(opts)
  const assignment = await h.assignment(release, a)
  const outcome = await h.runner.assign(assignment)
  if (outcome !== 'created') throw new Error(`assign: ${outcome}, expected created`)
  return { release, assignment }
}

const only = (h: Harness) => h.runner.status()[0]!

/**
 * step() until no download is in flight: downloads run in the background and a later step moves
 * their job on, so "everything that can happen now" takes a few steps. Their transitions together;
 * the rest of the result is the last step's.
 */
async function stepAll (h: Harness): Promise<StepResult> {
  const transitions: StepResult['transitions'] = []
  for (;;) {
    const r = await h.runner.step()
    transitions.push(...r.transitions)
    if (!r.downloading) return { ...r, transitions }
    await h.runner.downloadsEnded()
  }
}

/** A short grace between SIGTERM and SIGKILL for the process groups recover() ends. */
const GRACE = { orphanGraceMs: 300 } as HarnessOptions['runner']

t.test('happy path: every state once, in order, each a signed event with the next seq', async (t) => {
  const h = await harness(t, { start: '2026-03-04T10:00:00Z' })
  const { release, assignment } = await install(h, {}, { rollout: 'editor-2-4' })
  const r = await stepAll(h)
  t.same(r.transitions.map((x) => x.to), HAPPY.slice(1), 'assign() made the first; step() the rest')
  t.same(r.transitions.map((x) => x.seqs), [[2], [3], [4], [5], [6]], 'one event per transition, seqs contiguous')
  t.equal(r.rebooting, false)
  t.equal(r.nextWakeAt, undefined, 'nothing left to do')

  const { events, trail } = await checkEvents(t, h)
  t.same(trail, HAPPY)
  t.ok(events.every((e) => e.job!.release.envelopeHash === release.envelopeHash && e.job!.rollout === 'editor-2-4' && e.job!.action === 'install'))
  t.ok(events.every((e) => e.job!.code === undefined), 'no failure codes on the happy path')
  t.same(await h.scriptLog(), ['install', 'health'])
  t.equal((await fs.readFile(path.join(h.ctrl, 'installed'), 'utf8')).trim(), '2.4.1')
  t.match(only(h), { id: release.envelopeHash, name: 'editor', packageVersion: '2.4.1', state: 'installed', attempt: 1, failures: 0, breaker: 'closed', rollout: 'editor-2-4' })
  t.equal(only(h).inFlight, undefined, 'no crash marker once installed')
  t.equal(h.runner.job(release.envelopeHash)?.spec.type, 'exec')

  t.equal(await h.runner.assign(assignment), 'unchanged', 'the same assignment at the next check-in')
  t.same((await stepAll(h)).transitions, [])
  t.equal((await h.outbox.stats()).lastSeq, 6, 'no new event')
})

t.test('a changed deadline is noted without an event; a mismatched assignment is refused', async (t) => {
  const h = await harness(t, { start: '2026-03-04T10:00:00Z', policy: { windows: [] } })
  const { release, assignment } = await install(h)
  const later = await h.assignment(release, { deadline: '2026-03-10T00:00:00Z' })
  t.equal(await h.runner.assign(later), 'updated')
  t.equal(only(h).deadline, '2026-03-10T00:00:00Z')
  t.equal((await h.outbox.stats()).lastSeq, 1)
  const forged = { ...assignment, release: { ...assignment.release, envelopeHash: 'f'.repeat(64) } }
  await t.rejects(h.runner.assign(forged), { code: 'BAD_ARGUMENT' })
  await t.rejects(h.runner.assign({ ...assignment, action: 'explode' } as never), { code: 'BAD_ARGUMENT' })
})

t.test('window: assigned at 14:00 in Vienna, window "0 22 * * 1-5" for 120 min installs at 22:00 and not before', async (t) => {
  // Wednesday 4 March 2026, CET (UTC+1).
  const h = await harness(t, { start: '2026-03-04T13:00:00Z', policy: { windows: [windowAt('0 22 * * 1-5')] } })
  await install(h)
  let r = await stepAll(h)
  t.same(r.transitions.map((x) => x.to), ['downloading', 'verified', 'waiting-window'], 'downloaded at once, then waits')
  t.same(r.nextWakeAt, new Date('2026-03-04T21:00:00Z'), 'wake at 22:00 local')
  h.clock.set('2026-03-04T20:59:00Z')
  r = await stepAll(h)
  t.same(r.transitions, [], '21:59 local: nothing')
  t.same(await h.scriptLog(), [])
  h.clock.set('2026-03-04T21:00:00Z')
  r = await stepAll(h)
  t.same(r.transitions.map((x) => x.to), ['installing', 'health-check', 'installed'], '22:00 local: installed')
  const { events, trail } = await checkEvents(t, h)
  t.same(trail, ['assigned', 'downloading', 'verified', 'waiting-window', 'installing', 'health-check', 'installed'])
  t.equal(events[4]!.at, '2026-03-04T21:00:00.000Z')
})

t.test('window "0 22 * * *" opens at 22:00 local on the days around both clock changes of 2026', async (t) => {
  // 22:00 in Vienna: UTC+1 before 29 March and after 25 October, UTC+2 between.
  const days = [
    ['2026-03-28', '2026-03-28T21:00:00Z'],
    ['2026-03-29', '2026-03-29T20:00:00Z'],
    ['2026-03-30', '2026-03-30T20:00:00Z'],
    ['2026-10-24', '2026-10-24T20:00:00Z'],
    ['2026-10-25', '2026-10-25T21:00:00Z'],
    ['2026-10-26', '2026-10-26T21:00:00Z']
  ] as const
  for (const [day, opens] of days) {
    await t.test(day, async (t) => {
      const at22 = Date.parse(opens)
      // 14:00 local the same day: eight hours before (no clock change happens in between).
      const h = await harness(t, { start: at22 - 8 * HOUR, policy: { windows: [windowAt('0 22 * * *')] } })
      await install(h)
      const first = await stepAll(h)
      t.equal(only(h).state, 'waiting-window')
      t.same(first.nextWakeAt, new Date(at22))
      h.clock.t = at22 - MINUTE
      t.same((await stepAll(h)).transitions, [], '21:59 local: nothing')
      h.clock.t = at22
      t.same((await stepAll(h)).transitions.map((x) => x.to), ['installing', 'health-check', 'installed'])
      const { events } = await checkEvents(t, h)
      t.equal(Date.parse(events.find((e) => e.job!.state === 'installing')!.at), at22)
    })
  }
})

t.test('a download that finishes after the window closed waits for the next window', async (t) => {
  // Window 22:00–24:00 local; assigned 22:30 local (21:30Z); the download takes until 00:40 local.
  const h = await harness(t, { start: '2026-03-04T21:30:00Z', policy: { windows: [windowAt('0 22 * * *')] } })
  h.onDownload = () => { h.clock.set('2026-03-04T23:40:00Z') }
  await install(h)
  const r = await stepAll(h)
  t.same(r.transitions.map((x) => x.to), ['downloading', 'verified', 'waiting-window'])
  t.same(r.nextWakeAt, new Date('2026-03-05T21:00:00Z'), 'the next evening')
  h.onDownload = undefined
  h.clock.set('2026-03-05T20:59:00Z')
  t.same((await stepAll(h)).transitions, [])
  h.clock.set('2026-03-05T21:00:00Z')
  t.same((await stepAll(h)).transitions.map((x) => x.to), ['installing', 'health-check', 'installed'])
  t.equal(h.downloads, 1)
})

t.test('deadline with forceAfterDeadline installs outside any window; without it the job waits', async (t) => {
  const forced = await harness(t, { start: '2026-03-04T10:00:00Z', policy: { windows: [windowAt('0 22 * * *')], forceAfterDeadline: true } })
  await install(forced, {}, { deadline: '2026-03-04T12:00:00Z' })
  let r = await stepAll(forced)
  t.equal(only(forced).state, 'waiting-window')
  t.same(r.nextWakeAt, new Date('2026-03-04T12:00:00Z'), 'the deadline comes before the window')
  forced.clock.set('2026-03-04T11:59:00Z')
  t.same((await stepAll(forced)).transitions, [])
  forced.clock.set('2026-03-04T12:00:00Z')
  r = await stepAll(forced)
  t.same(r.transitions.map((x) => x.to), ['installing', 'health-check', 'installed'], 'installed at the deadline, at noon')

  const waits = await harness(t, { start: '2026-03-04T10:00:00Z', policy: { windows: [], forceAfterDeadline: false } })
  await install(waits, {}, { deadline: '2026-03-04T12:00:00Z' })
  r = await stepAll(waits)
  t.equal(r.nextWakeAt, undefined, 'no window and no forcing: nothing can open it')
  waits.clock.set('2026-03-05T12:00:00Z')
  t.same((await stepAll(waits)).transitions, [])
  t.equal(only(waits).state, 'waiting-window')
  waits.policy.forceAfterDeadline = true
  t.same((await stepAll(waits)).transitions.map((x) => x.to), ['installing', 'health-check', 'installed'], 'a policy change takes effect at the next step')
})

t.test('reboot: recorded durably, done only inside a window when allowed, installed only after the post-reboot health check', async (t) => {
  const h = await harness(t, { start: '2026-03-04T21:00:00Z', policy: { windows: [windowAt('0 22 * * *')], rebootAllowed: false } })
  await install(h, { spec: { reboot: true } })
  let r = await stepAll(h)
  t.same(r.transitions.map((x) => x.to), ['downloading', 'verified', 'installing', 'reboot-pending'])
  t.same(h.reboots, [], 'the policy does not allow a reboot')
  t.equal(only(h).inFlight, 'reboot')

  h.clock.set('2026-03-04T23:30:00Z') // 00:30 local: the window has closed
  h.policy.rebootAllowed = true
  r = await stepAll(h)
  t.same(h.reboots, [], 'allowed now, but outside the window')
  t.same(r.nextWakeAt, new Date('2026-03-05T21:00:00Z'))

  await h.restart() // the agent restarts; the machine did not
  t.same((await h.runner.recover()).transitions, [])
  t.equal(only(h).state, 'reboot-pending', 'an agent restart is not a reboot')

  h.clock.set('2026-03-05T21:00:00Z')
  r = await stepAll(h)
  t.same(h.reboots, [Date.parse('2026-03-05T21:00:00Z')], 'rebooted when the window opened')
  t.equal(r.rebooting, true)
  t.ok(only(h).nextAttemptAt, 'the request is recorded with a time to ask again')
  h.clock.advance(MINUTE)
  r = await stepAll(h)
  t.equal(h.reboots.length, 1, 'no second reboot while the first is under way')
  t.equal(r.rebooting, true)
  t.same(await h.scriptLog(), ['install'], 'no health check before the reboot')

  h.boot = 'boot-2'
  await h.restart()
  t.equal(only(h).state, 'reboot-pending')
  r = await h.runner.recover()
  t.same(r.transitions.map((x) => x.to), ['health-check', 'installed'])
  t.same(await h.scriptLog(), ['install', 'health'])
  const { trail } = await checkEvents(t, h)
  t.same(trail, ['assigned', 'downloading', 'verified', 'installing', 'reboot-pending', 'health-check', 'installed'])
  t.equal(only(h).inFlight, undefined)
})

t.test('a reboot command that fails is recorded and asked again later', async (t) => {
  const h = await harness(t, { start: '2026-03-04T10:00:00Z', policy: { rebootAllowed: true }, runner: { rebootRetryMs: 20 * MINUTE } })
  await install(h, { spec: { reboot: true } })
  let fail = true
  h.onReboot = () => { if (fail) throw PatchswarmError.IO_ERROR('systemctl: not permitted') }
  let r = await stepAll(h)
  t.equal(only(h).state, 'reboot-pending')
  t.equal(r.rebooting, false)
  t.match(only(h), { lastCode: 'IO_ERROR', lastReason: /reboot: systemctl: not permitted/ })
  t.same(r.nextWakeAt, new Date(h.clock.t + 20 * MINUTE))
  fail = false
  t.same((await stepAll(h)).transitions, [])
  t.same(h.reboots, [], 'not again before the retry time')
  h.clock.advance(20 * MINUTE)
  r = await stepAll(h)
  t.equal(h.reboots.length, 1)
  t.equal(r.rebooting, true)
})

t.test('a failing health check is rolled back automatically, then retried after a back-off', async (t) => {
  const h = await harness(t, { start: '2026-03-04T10:00:00Z' })
  await h.ctrlFile('fail-health')
  await install(h)
  let r = await stepAll(h)
  t.same(r.transitions.map((x) => x.to), ['downloading', 'verified', 'installing', 'health-check', 'failed', 'rolling-back', 'rolled-back'])
  t.same(await h.scriptLog(), ['install', 'health', 'rollback'])
  t.notOk(await h.exists('installed'), 'the rollback undid the install')
  const { events } = await checkEvents(t, h)
  const failed = events.find((e) => e.job!.state === 'failed')!.job!
  t.match(failed, { code: 'INSTALL_FAILED', reason: /^health: .*exited with code 1/, output: /service down/, attempt: 1 })
  const rolledBack = events.at(-1)!.job!
  t.match(rolledBack, { state: 'rolled-back', code: 'INSTALL_FAILED', reason: /^health:/, output: /service down/ }, 'rolled-back says why')
  t.match(only(h), { state: 'rolled-back', failures: 1, breaker: 'closed', lastCode: 'INSTALL_FAILED' })
  t.same(r.nextWakeAt, new Date(h.clock.t + FIRST_RETRY))

  await h.ctrlFile('fail-health', false)
  t.same((await stepAll(h)).transitions, [], 'not before the back-off')
  h.clock.advance(FIRST_RETRY)
  r = await stepAll(h)
  t.same(r.transitions.map((x) => `${x.to}#${x.attempt}`), ['downloading#2', 'verified#2', 'installing#2', 'health-check#2', 'installed#2'])
  const { trail } = await checkEvents(t, h)
  t.same(trail.slice(-5), ['downloading#2', 'verified#2', 'installing#2', 'health-check#2', 'installed#2'])
  t.match(only(h), { state: 'installed', attempt: 2, failures: 0 })
})

t.test('a hanging install times out (TIMEOUT) and is rolled back', async (t) => {
  const h = await harness(t, { start: '2026-03-04T10:00:00Z' })
  await h.ctrlFile('hang-install')
  await install(h, { spec: { timeoutMs: 400 } })
  const started = Date.now()
  const r = await stepAll(h)
  t.ok(Date.now() - started < 10_000, 'the step did not wait for the hang')
  t.same(r.transitions.map((x) => x.to), ['downloading', 'verified', 'installing', 'failed', 'rolling-back', 'rolled-back'])
  const { events } = await checkEvents(t, h)
  t.match(events.find((e) => e.job!.state === 'failed')!.job!, { code: 'TIMEOUT', reason: /timed out after 400 ms/, output: /hanging/ })
  t.match(events.at(-1)!.job!, { state: 'rolled-back', code: 'TIMEOUT' })
  t.same(await h.scriptLog(), ['install', 'rollback'])
})

t.test('a rollback that keeps failing ends as failed after maxRollbackAttempts, with the breaker open', async (t) => {
  const h = await harness(t, { start: '2026-03-04T10:00:00Z', runner: { maxRollbackAttempts: 3 } })
  await h.ctrlFile('fail-install')
  await h.ctrlFile('fail-rollback')
  const { release } = await install(h)
  let r = await stepAll(h)
  let steps = 1
  t.same(r.transitions.map((x) => x.to), ['downloading', 'verified', 'installing', 'failed', 'rolling-back'])
  t.match(only(h), { state: 'rolling-back', lastCode: 'INSTALL_FAILED', lastReason: /^rollback: .*code 4/, inFlight: 'rollback' })
  while (only(h).state === 'rolling-back' && steps < 10) {
    t.ok(r.nextWakeAt, 'a rollback retry is scheduled')
    h.clock.t = r.nextWakeAt!.getTime()
    r = await stepAll(h)
    steps++
  }
  t.equal(steps, 3, 'three steps, one rollback run each')
  t.same(await h.scriptLog(), ['install', 'rollback', 'rollback', 'rollback'])
  t.match(only(h), { state: 'failed', breaker: 'open', breakerReason: /rollback failed 3 times/ })
  t.equal(only(h).inFlight, undefined, 'given up: nothing for a restart to resume')
  const { events, trail } = await checkEvents(t, h)
  t.same(trail, ['assigned', 'downloading', 'verified', 'installing', 'failed', 'rolling-back', 'failed', 'agent:breaker-open'])
  t.match(events.at(-2)!.job!, { state: 'failed', code: 'INSTALL_FAILED', reason: /^rollback: .*code 4/, output: /rollback broke/ })
  t.match(events.at(-1)!.agent!, { state: 'breaker-open', release: { envelopeHash: release.envelopeHash }, reason: /rollback failed 3 times/ })
  t.equal(r.nextWakeAt, undefined)
  h.clock.advance(30 * DAY)
  t.same((await stepAll(h)).transitions, [], 'it rests')
  await h.restart()
  t.same((await h.runner.recover()).transitions, [], 'and stays put after a restart')

  // Someone repaired the endpoint; the console resets the breaker: a new attempt from the start.
  await h.ctrlFile('fail-install', false)
  await h.ctrlFile('fail-rollback', false)
  t.equal(await h.runner.assign(await h.assignment(release, { action: 'reset-breaker' })), 'breaker-closed')
  r = await stepAll(h)
  t.same(r.transitions.map((x) => `${x.to}#${x.attempt}`), ['downloading#2', 'verified#2', 'installing#2', 'health-check#2', 'installed#2'])
  t.match(only(h), { state: 'installed', breaker: 'closed', failures: 0 })
})

t.test('breaker: three failed attempts open it and the event names the release; reset-breaker closes it', async (t) => {
  const h = await harness(t, { start: '2026-03-04T10:00:00Z', runner: { breakerThreshold: 3 } })
  await h.ctrlFile('fail-install')
  const { release } = await install(h)
  let r = await stepAll(h)
  let steps = 1
  while (r.nextWakeAt && steps < 10) {
    h.clock.t = r.nextWakeAt.getTime()
    r = await stepAll(h)
    steps++
  }
  t.equal(steps, 3, 'three attempts, then nothing more to wake for')
  t.match(only(h), { state: 'rolled-back', attempt: 3, failures: 3, breaker: 'open', breakerReason: /3 failed attempts; last: INSTALL_FAILED: install: .*code 3/ })
  t.same(await h.scriptLog(), ['install', 'rollback', 'install', 'rollback', 'install', 'rollback'])
  let { events } = await checkEvents(t, h)
  const open = events.at(-1)!
  t.equal(open.kind, 'agent')
  t.match(open.agent, { state: 'breaker-open', release: { name: 'editor', packageVersion: '2.4.1', envelopeHash: release.envelopeHash }, reason: /3 failed attempts/ })
  t.equal(events.at(-2)!.job!.state, 'rolled-back', 'the breaker opens in the batch of the last rollback')
  t.same(events.filter((e) => e.job?.state === 'failed').map((e) => e.job!.attempt), [1, 2, 3])

  h.clock.advance(7 * DAY)
  t.same((await stepAll(h)).transitions, [], 'no more tries')

  const openedAt = Date.parse(only(h).updatedAt)
  const reset = await h.assignment(release, { action: 'reset-breaker' })
  t.equal(await h.runner.assign(reset, { issued: new Date(openedAt - HOUR) }), 'unchanged', 'a reset issued before the breaker opened is an old one')
  t.equal(await h.runner.assign(reset, { issued: new Date(h.clock.t) }), 'breaker-closed')
  t.equal(await h.runner.assign(reset, { issued: new Date(h.clock.t) }), 'unchanged', 'closed already')
  t.match(only(h), { breaker: 'closed', failures: 0 })
  await h.ctrlFile('fail-install', false)
  r = await stepAll(h)
  t.same(r.transitions.map((x) => `${x.to}#${x.attempt}`), ['downloading#4', 'verified#4', 'installing#4', 'health-check#4', 'installed#4'])
  ;({ events } = await checkEvents(t, h))
  t.match(events.find((e) => e.agent?.state === 'breaker-closed')!.agent, { release: { envelopeHash: release.envelopeHash } })
})

t.test('a download that fails is retried after a back-off, without an event and without the breaker', async (t) => {
  const h = await harness(t, { start: '2026-03-04T10:00:00Z', runner: { breakerThreshold: 1 } })
  let failures = 2
  h.onDownload = () => { if (failures-- > 0) throw PatchswarmError.UNAVAILABLE('no peer and no origin') }
  await install(h)
  let r = await stepAll(h)
  t.same(r.transitions.map((x) => x.to), ['downloading'])
  t.match(only(h), { state: 'downloading', lastCode: 'UNAVAILABLE', lastReason: /download: no peer/, breaker: 'closed' })
  t.same(r.nextWakeAt, new Date(h.clock.t + FIRST_RETRY))
  t.same((await stepAll(h)).transitions, [])
  t.equal(h.downloads, 1, 'not again before the back-off')
  h.clock.t = r.nextWakeAt!.getTime()
  r = await stepAll(h)
  t.equal(h.downloads, 2)
  t.same(r.nextWakeAt, new Date(h.clock.t + 15 * MINUTE), 'the second back-off is longer')
  h.clock.t = r.nextWakeAt!.getTime()
  r = await stepAll(h)
  t.same(r.transitions.map((x) => x.to), ['verified', 'installing', 'health-check', 'installed'])
  const { trail } = await checkEvents(t, h)
  t.same(trail, HAPPY)
})

t.test('rollback directive: an installed job is rolled back once, and stays rolled back', async (t) => {
  const h = await harness(t, { start: '2026-03-04T10:00:00Z' })
  const { release } = await install(h, {}, { rollout: 'r1' })
  await stepAll(h)
  const back = await h.assignment(release, { action: 'rollback', rollout: 'r1' })
  t.equal(await h.runner.assign(back), 'rollback-started')
  t.match(only(h), { state: 'rolling-back', action: 'rollback', inFlight: 'rollback' })
  const r = await stepAll(h)
  t.same(r.transitions.map((x) => x.to), ['rolled-back'])
  t.notOk(await h.exists('installed'))
  t.equal(await h.runner.assign(back), 'unchanged')
  t.equal(await h.runner.assign(await h.assignment(release, { rollout: 'r1' })), 'ignored', 'an install assignment does not undo the rollback')
  const { events, trail } = await checkEvents(t, h)
  t.same(trail, [...HAPPY, 'rolling-back', 'rolled-back'])
  t.same(events.slice(-2).map((e) => e.job!.action), ['rollback', 'rollback'])
  t.equal(events.at(-1)!.job!.code, undefined, 'an ordered rollback is no failure')
  t.same((await stepAll(h)).transitions, [])
  t.equal(r.nextWakeAt, undefined, 'no retry after an ordered rollback')
})

t.test('rollback directive: a job not installed yet is rolled back at once, without running anything', async (t) => {
  const h = await harness(t, { start: '2026-03-04T10:00:00Z', policy: { windows: [windowAt('0 22 * * *')] } })
  const { release } = await install(h)
  await stepAll(h)
  t.equal(only(h).state, 'waiting-window')
  t.equal(await h.runner.assign(await h.assignment(release, { action: 'rollback' })), 'rolled-back')
  h.clock.set('2026-03-04T21:00:00Z')
  t.same((await stepAll(h)).transitions, [])
  t.same(await h.scriptLog(), [])
  const { trail } = await checkEvents(t, h)
  t.same(trail, ['assigned', 'downloading', 'verified', 'waiting-window', 'rolled-back'])
  const unknown = await h.publish({ name: 'other' })
  t.equal(await h.runner.assign(await h.assignment(unknown, { action: 'rollback' })), 'ignored', 'nothing to roll back')
  t.equal(await h.runner.assign(await h.assignment(unknown, { action: 'reset-breaker' })), 'ignored')
})

t.test('rollback ordered while the install runs: the install finishes, then it is rolled back', async (t) => {
  const h = await harness(t, { start: '2026-03-04T10:00:00Z' })
  await h.ctrlFile('pause-install')
  const { release } = await install(h)
  const stepping = stepAll(h)
  while (!(await h.exists('started'))) await sleep(20)
  t.equal(await h.runner.assign(await h.assignment(release, { action: 'rollback' })), 'rollback-ordered')
  t.match(only(h), { state: 'installing', action: 'rollback' }, 'the running step is not interrupted')
  await h.ctrlFile('pause-install', false)
  await stepping
  t.equal(only(h).state, 'rolled-back')
  t.same(await h.scriptLog(), ['install', 'rollback'], 'no health check for an install that is being undone')
  const { trail, events } = await checkEvents(t, h)
  t.same(trail, ['assigned', 'downloading', 'verified', 'installing', 'rolling-back', 'rolled-back'])
  t.same(events.slice(-2).map((e) => e.job!.action), ['rollback', 'rollback'])
})

t.test('the files installer through the runner: v2 replaces v1, an ordered rollback of v2 brings v1 back', async (t) => {
  const h = await harness(t, { start: '2026-03-04T10:00:00Z' })
  const target = path.join(h.dir, 'install-root', 'apps', 'editor', 'README')
  await install(h, { version: '1.0.0', spec: { type: 'files', target: 'apps/editor' }, files: { README: 'v1\n' } })
  await stepAll(h)
  t.equal(await fs.readFile(target, 'utf8'), 'v1\n')
  h.clock.advance(DAY)
  const { release: v2 } = await install(h, { version: '2.0.0', spec: { type: 'files', target: 'apps/editor' }, files: { README: 'v2\n' } })
  await stepAll(h)
  t.equal(await fs.readFile(target, 'utf8'), 'v2\n')
  t.equal(await h.runner.assign(await h.assignment(v2, { action: 'rollback' })), 'rollback-started')
  await stepAll(h)
  t.equal(await fs.readFile(target, 'utf8'), 'v1\n', 'the previous version is back')
  t.same(h.runner.status().map((s) => [s.packageVersion, s.state]), [['1.0.0', 'installed'], ['2.0.0', 'rolled-back']])
  await checkEvents(t, h)
})

// --- crashes ----------------------------------------------------------------------------------

class Crash extends Error {}

// 'failed' too: between a failed step and its rollback.
const CRASH_STATES = ['downloading', 'verified', 'waiting-window', 'installing', 'health-check', 'failed', 'rolling-back'] as const

for (const state of CRASH_STATES) {
  const undone = state === 'rolling-back' || state === 'failed'
  t.test(`crash right after entering ${state}: recover() + step() end fully ${undone ? 'rolled back' : 'installed'}`, async (t) => {
    const windowed = state === 'waiting-window'
    const inFlight = ['installing', 'health-check', 'failed', 'rolling-back'].includes(state)
    const h = await harness(t, { start: '2026-03-04T10:00:00Z', policy: windowed ? { windows: [windowAt('0 22 * * *')] } : {} })
    if (undone) await h.ctrlFile('fail-health')
    await install(h)
    let armed = true
    h.runner.on('transition', (tr) => {
      if (armed && tr.to === state) {
        armed = false
        throw new Crash(`crash in ${state}`) // nothing after the committed batch runs
      }
    })
    await t.rejects(stepAll(h), { message: `crash in ${state}` })
    const logBefore = await h.scriptLog()
    await h.restart()
    t.equal(only(h).state, state, 'the committed state survived')
    t.equal(only(h).inFlight, inFlight ? (state === 'health-check' ? 'health' : state === 'installing' ? 'install' : 'rollback') : undefined, 'the crash marker names the step')
    if (windowed) h.clock.set('2026-03-04T21:00:00Z')
    await h.runner.recover()
    if (inFlight) t.equal(only(h).state, undone ? 'rolled-back' : 'installed', 'recover() alone finished the step')
    else t.equal(only(h).state, state, 'recover() leaves jobs that were not in a step to step()')
    await stepAll(h)

    const { trail } = await checkEvents(t, h)
    const expected: string[] = undone
      ? ['assigned', 'downloading', 'verified', 'installing', 'health-check', 'failed', 'rolling-back', 'rolled-back']
      : windowed ? ['assigned', 'downloading', 'verified', 'waiting-window', 'installing', 'health-check', 'installed'] : HAPPY
    t.same(trail, expected, 'every state reported once, seqs contiguous')
    t.equal(only(h).state, undone ? 'rolled-back' : 'installed')
    t.equal(only(h).inFlight, undefined)
    t.equal(await h.exists('installed'), !undone, undone ? 'nothing left installed' : 'installed on disk')
    const log = await h.scriptLog()
    t.same(log, undone ? ['install', 'health', 'rollback'] : ['install', 'health'], `ran: ${logBefore.join(',')} before the crash`)
  })
}

t.test('stopped in the middle of the install script: the restart runs the install again and finishes it', async (t) => {
  const h = await harness(t, { start: '2026-03-04T10:00:00Z' })
  await h.ctrlFile('pause-install')
  await install(h)
  const stepping = stepAll(h)
  while (!(await h.exists('started'))) await sleep(20)
  t.ok(await h.exists('installed.partial'), 'the script did half its work')
  await h.restart() // close() aborts the script (SIGTERM to its process group)
  await stepping
  t.match(only(h), { state: 'installing', inFlight: 'install' })
  const r = await h.runner.recover()
  t.same(r.transitions.map((x) => x.to), ['health-check', 'installed'])
  t.notOk(await h.exists('installed.partial'))
  t.ok(await h.exists('installed'))
  t.same(await h.scriptLog(), ['install', 'install', 'health'])
  const { trail } = await checkEvents(t, h)
  t.same(trail, HAPPY, 'one installing event for the interrupted and the finished run')
})

t.test('an ordered rollback of a job whose rollback failed: tried again, bounded, and once more after a reset', async (t) => {
  const h = await harness(t, { start: '2026-03-04T10:00:00Z', runner: { maxRollbackAttempts: 2 } })
  await h.ctrlFile('fail-install')
  await h.ctrlFile('fail-rollback')
  const { release } = await install(h)
  let r = await stepAll(h)
  h.clock.t = r.nextWakeAt!.getTime()
  r = await stepAll(h)
  t.match(only(h), { state: 'failed', action: 'install', breaker: 'open' })

  t.equal(await h.runner.assign(await h.assignment(release, { action: 'rollback' })), 'rollback-started')
  t.match(only(h), { state: 'rolling-back', action: 'rollback', inFlight: 'rollback' })
  r = await stepAll(h)
  h.clock.t = r.nextWakeAt!.getTime()
  r = await stepAll(h)
  t.match(only(h), { state: 'failed', action: 'rollback', breaker: 'open' }, 'still failing: it rests again')
  t.equal(r.nextWakeAt, undefined)
  let { trail } = await checkEvents(t, h)
  t.equal(trail.filter((x) => x === 'agent:breaker-open').length, 1, 'an open breaker is announced once')

  await h.ctrlFile('fail-rollback', false)
  t.equal(await h.runner.assign(await h.assignment(release, { action: 'reset-breaker' })), 'breaker-closed')
  t.match(only(h), { state: 'rolling-back', action: 'rollback', breaker: 'closed' }, 'a reset retries the ordered rollback')
  r = await stepAll(h)
  t.same(r.transitions.map((x) => x.to), ['rolled-back'])
  t.notOk(await h.exists('installed'))
  let events
  ;({ trail, events } = await checkEvents(t, h))
  t.match(events.find((e) => e.job?.action === 'rollback' && e.job.state === 'failed')!.job, { code: 'INSTALL_FAILED', reason: /^rollback:/ }, 'the ordered rollback\'s own failure is reported')
  t.equal(events.at(-1)!.job!.code, undefined, 'the rollback that worked carries no failure code')
  t.same(trail, [
    'assigned', 'downloading', 'verified', 'installing', 'failed', 'rolling-back', 'failed', 'agent:breaker-open',
    'rolling-back', 'failed', // the ordered rollback, failing twice
    'rolling-back', 'agent:breaker-closed', 'rolled-back' // after the reset
  ])
})

t.test('a failure with a long output is reported with its tail, within the event\'s bounds', async (t) => {
  const h = await harness(t, { start: '2026-03-04T10:00:00Z' })
  await h.ctrlFile('noisy')
  await h.ctrlFile('fail-install')
  await install(h)
  await stepAll(h)
  const pending = await h.outbox.pending()
  const { events } = await checkEvents(t, h)
  const failed = events.find((e) => e.job!.state === 'failed')!.job!
  t.ok(failed.output!.length <= MAX_OUTPUT_CHARS)
  t.match(failed.output, /^…/, 'the head was cut')
  t.match(failed.output, /the real cause\ninstall broke\n$/, 'the tail, where the cause is, was kept')
  t.ok(pending.every((e) => serializeEnvelope(e).byteLength <= MAX_EVENT_BYTES))
})

t.test('boundProblem: a valid code, the head of the reason and the tail of the output, never half a character', async (t) => {
  t.same(boundProblem({ code: 'TIMEOUT', reason: 'r', output: 'o' }), { code: 'TIMEOUT', reason: 'r', output: 'o' })
  t.equal(boundProblem({ code: 'not a code' }).code, 'INSTALL_FAILED')
  t.equal(boundProblem({}).code, 'INSTALL_FAILED')
  const reason = boundProblem({ reason: 'a'.repeat(MAX_REASON_CHARS - 2) + '😀' + 'b'.repeat(10) }).reason!
  t.ok(reason.length <= MAX_REASON_CHARS)
  t.notMatch(reason, /[\ud800-\udbff](?![\udc00-\udfff])/, 'no lone high surrogate')
  t.match(reason, /…$/)
  const output = boundProblem({ output: 'a'.repeat(10) + '😀' + 'b'.repeat(MAX_OUTPUT_CHARS - 2) }).output!
  t.ok(output.length <= MAX_OUTPUT_CHARS)
  t.notMatch(output, /(?<![\ud800-\udbff])[\udc00-\udfff]/, 'no lone low surrogate')
  t.match(output, /^…b+$/)
})

t.test('a runner is refused without its parts or with bad limits', async (t) => {
  const h = await harness(t, { start: '2026-03-04T10:00:00Z' })
  const base = { db: h.db, outbox: h.outbox, installers: {} as never, workRoot: h.dir, packageDir: async () => h.dir, download: async () => {}, policy: () => h.policy, reboot: async () => {} }
  t.throws(() => new JobRunner({ ...base, reboot: undefined } as never), { code: 'BAD_ARGUMENT' })
  t.throws(() => new JobRunner({ ...base, breakerThreshold: 0 }), { code: 'BAD_CONFIG' })
  t.throws(() => new JobRunner({ ...base, maxRollbackAttempts: 1.5 }), { code: 'BAD_CONFIG' })
  t.throws(() => new JobRunner({ ...base, backoff: { baseMs: 10, maxMs: 5 } }), { code: 'BAD_CONFIG' })
})

t.test('a closed runner refuses work', async (t) => {
  const h = await harness(t, { start: '2026-03-04T10:00:00Z' })
  const release = await h.publish()
  await h.runner.close()
  await t.rejects(stepAll(h), { code: 'CLOSED' })
  await t.rejects(h.runner.assign(await h.assignment(release)), { code: 'CLOSED' })
})

t.test('retryDelay: exponential, capped, with up to half taken off at random', async (t) => {
  const b = { baseMs: 1000, maxMs: 8000 }
  t.equal(retryDelay(1, b, () => 0), 500)
  t.equal(retryDelay(1, b, () => 0.999999), 1000)
  t.equal(retryDelay(2, b, () => 0), 1000)
  t.equal(retryDelay(3, b, () => 0.5), 3000)
  t.equal(retryDelay(4, b, () => 1), 8000)
  t.equal(retryDelay(50, b, () => 0), 4000, 'capped at maxMs')
  t.equal(retryDelay(5000, b, () => 1), 8000, 'no overflow')
})

// --- downloads in the background ---------------------------------------------------------------

/** `p`, or a failure after `ms`: a step that blocks fails the test instead of hanging it. */
async function within<T> (ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms) })
  try {
    return await Promise.race([p, late])
  } finally {
    clearTimeout(timer)
  }
}

t.test('a download that never ends holds up nothing: another release installs, an ordered rollback runs, close() is prompt', async (t) => {
  const h = await harness(t, { start: '2026-03-04T10:00:00Z' })
  // The "stuck" release's download never ends by itself; like Agent.download, it honours its signal.
  const signals: AbortSignal[] = []
  h.onDownload = (job, signal) => {
    if (!job.release.name.startsWith('stuck')) return
    signals.push(signal)
    return new Promise<void>((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }))
  }
  const state = (name: string) => h.runner.status().find((j) => j.name === name)?.state
  const stepUntil = async (what: string, done: () => boolean) => {
    for (let i = 0; i < 50 && !done(); i++) {
      await within(3000, 'a step', h.runner.step())
      await sleep(10)
    }
    t.ok(done(), what)
  }
  const { release: kept } = await install(h, { name: 'kept' })
  await stepUntil('kept is installed', () => state('kept') === 'installed')

  await install(h, { name: 'stuck' })
  await stepUntil('stuck is downloading', () => state('stuck') === 'downloading' && signals.length === 1)
  // Its own $CTRL: kept's rollback must not undo what other installs.
  const otherCtrl = path.join(h.dir, 'ctrl-other')
  await fs.mkdir(otherCtrl)
  await install(h, { name: 'other', version: '1.0.0', spec: { env: { CTRL: otherCtrl, VERSION: '1.0.0' } } })
  t.equal(await h.runner.assign(await h.assignment(kept, { action: 'rollback' })), 'rollback-started')
  await stepUntil('other installs and kept is rolled back while stuck downloads', () => state('other') === 'installed' && state('kept') === 'rolled-back')
  t.equal(state('stuck'), 'downloading')
  t.equal(signals.length, 1, 'the stuck download was started once, not again at every step')
  t.notOk(signals[0]!.aborted)
  t.match(h.runner.status().find((j) => j.name === 'stuck'), { lastCode: undefined, nextAttemptAt: undefined }, 'and it has not failed')

  // A rollback ordered while a download runs ends the job at once, and its download.
  const { release: dropped } = await install(h, { name: 'stuck-dropped' })
  await stepUntil('stuck-dropped is downloading', () => state('stuck-dropped') === 'downloading' && signals.length === 2)
  t.equal(await h.runner.assign(await h.assignment(dropped, { action: 'rollback' })), 'rolled-back')
  t.ok(signals[1]!.aborted, 'its download was aborted')
  await within(3000, 'a step', h.runner.step())
  t.equal(state('stuck-dropped'), 'rolled-back', 'the aborted download changes nothing')

  const stopping = Date.now()
  await within(2000, 'close()', h.runner.close())
  t.ok(signals[0]!.aborted, 'close() aborted the download')
  t.comment(`close() took ${Date.now() - stopping} ms`)
  await h.restart()
  t.equal(state('stuck'), 'downloading', 'an aborted download is no failure: the next start downloads again')
  t.equal(h.runner.status().find((j) => j.name === 'stuck')?.lastCode, undefined)
})

// --- a step's process group across a crash -------------------------------------------------------

const linux = process.platform === 'linux'

/** A process group standing in for a step a killed agent left running; ignores SIGTERM if asked. */
function orphan (t: Test, ignoreTerm: boolean): number {
  const child = spawn('/bin/sh', ['-c', `${ignoreTerm ? 'trap "" TERM; ' : ''}while :; do sleep 0.05; done`], { detached: true, stdio: 'ignore' })
  child.unref()
  const pgid = child.pid!
  t.teardown(() => { try { process.kill(-pgid, 'SIGKILL') } catch { /* gone */ } })
  return pgid
}

/** Crashes the runner right after it entered `installing`, before the install started. */
async function crashIntoInstalling (t: Test, h: Harness) {
  await install(h)
  let armed = true
  h.runner.on('transition', (tr) => {
    if (armed && tr.to === 'installing') { armed = false; throw new Error('crash') }
  })
  await t.rejects(stepAll(h), { message: 'crash' })
}

/** Puts `group` into the job's crash marker on disk, as a run that was killed in its step left it. */
async function recordGroup (h: Harness, group: Record<string, unknown>) {
  const store = new JobStore(h.db)
  const [marker] = (await store.load()).markers
  await h.db.batch(store.markerOps(marker!.job, { ...marker!, ...group } as CrashMarker) as never, { sync: true })
}

t.test('while a step runs, its crash marker names the step\'s process group', { skip: !linux && 'Linux /proc' }, async (t) => {
  const h = await harness(t, { start: '2026-03-04T10:00:00Z' })
  await h.ctrlFile('pause-install')
  await install(h)
  const stepping = stepAll(h)
  while (!(await h.exists('started'))) await sleep(20)
  const markers = async () => (await new JobStore(h.db).load()).markers
  // Written right after the command started (a crash in between leaves a marker without it).
  for (let i = 0; i < 200 && !(await markers())[0]?.process; i++) await sleep(10)
  const [marker] = await markers()
  t.match(marker, { step: 'install', process: { pgid: Number, bootId: 'boot-1', startTime: String } }, 'on disk, while the step runs')
  const pgid = marker!.process!.pgid
  t.match(await fs.readFile(`/proc/${pgid}/cmdline`, 'utf8'), /step\.sh/, 'the group is the install script\'s (its leader)')
  t.not(await groupMembers(pgid), [])
  await h.ctrlFile('pause-install', false)
  await stepping
  t.equal(only(h).state, 'installed')
  t.same(await markers(), [], 'no marker once installed')
})

t.test('recover() ends the process group a killed run left in its step (SIGTERM, then SIGKILL) before running the step again', { skip: !linux && 'Linux /proc' }, async (t) => {
  const h = await harness(t, { start: '2026-03-04T10:00:00Z', runner: GRACE })
  await crashIntoInstalling(t, h)
  const pgid = orphan(t, true) // it ignores SIGTERM: only the SIGKILL after the grace ends it
  await recordGroup(h, { process: { pgid, bootId: h.boot, startTime: await processStartTime(pgid) } })
  await h.restart()
  const started = Date.now()
  const recovering = h.runner.recover()
  // The install must not run again while the leftover group lives.
  for (let i = 0; i < 2000 && !(await h.exists('log')); i++) await sleep(5)
  const aliveAtInstall = await groupMembers(pgid)
  const r = await recovering
  t.same(aliveAtInstall, [], 'the leftover group was gone before the install ran again')
  t.ok(Date.now() - started >= 300, 'it got the SIGTERM grace first')
  t.same(r.transitions.map((x) => x.to), ['health-check', 'installed'])
  t.same(await h.scriptLog(), ['install', 'health'])
  t.equal(only(h).inFlight, undefined)
})

t.test('recover() leaves alone a group that is not the step\'s: another boot, or a reused pid', { skip: !linux && 'Linux /proc' }, async (t) => {
  for (const [what, group] of [
    ['recorded in another boot', (pgid: number, startTime: string | undefined) => ({ pgid, bootId: 'boot-0', startTime })],
    ['whose leader started at another time (the pid was reused)', (pgid: number) => ({ pgid, bootId: 'boot-1', startTime: '1' })]
  ] as const) {
    await t.test(what, async (t) => {
      const h = await harness(t, { start: '2026-03-04T10:00:00Z', runner: GRACE })
      await crashIntoInstalling(t, h)
      const pgid = orphan(t, false)
      await recordGroup(h, { process: group(pgid, await processStartTime(pgid)) })
      await h.restart()
      const r = await h.runner.recover()
      t.not(await groupMembers(pgid), [], 'the group still runs')
      t.same(r.transitions.map((x) => x.to), ['health-check', 'installed'], 'the step ran again all the same')
    })
  }
})
