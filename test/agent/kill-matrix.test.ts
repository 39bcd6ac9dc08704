// The kill matrix: a real `patchswarm agent run` child process is killed with SIGKILL while a job is
// in each of downloading, verified, waiting-window, installing, health-check and rolling-back, and
// while its reports wait in the outbox for a console that is gone ("reporting"). After a restart
// on the same data folder every case must end fully installed or fully rolled back, and the
// console's log must hold every event the agent's outbox numbered, once, as seq 1…N.
//
// One testnet and one in-process console (with its ConsoleSwarm) serve all cases; each case has
// its own endpoint (one group tenant each) and its own releases. How each state is held so that
// the kill lands in it for sure:
//   downloading     the origin cannot read one file of its copy (moved away): the agent gets the
//                   other file's chunks and waits for the rest
//   verified        three jobs; installs run one at a time, and a step moves on the jobs whose
//                   background download ended: the downloads of second and subject (held back at the
//                   origin until then) end while first installs, the next step makes both verified,
//                   second installs first and waits in its script, and subject waits in verified
//   waiting-window  the tenant's only maintenance window opens in 12 hours
//   installing      \
//   health-check     > the step script waits while a hold file exists
//   rolling-back    /  (the health check fails, so the install is rolled back)
//   reporting       the console is taken off the swarm before the install finishes
// A SIGKILL of the agent leaves its step script running in its own process group. The restarted
// agent must end that group (its crash marker names it) before it runs the step again, or two
// copies of one install would run side by side: the hold stays until the restart has run the step
// again, and the test checks that the first copy is gone by then.
//
// Which end is right: a crash before the install (downloading, verified, waiting-window) leaves
// nothing on the system, so the job carries on and installs. A crash inside a step re-runs that
// step (the crash marker names it; installer steps must be safe to run twice): an interrupted
// install or health check finishes forward to installed, an interrupted rollback (the health
// check had failed) finishes back to rolled-back, never forward. A crash while reports wait
// changes nothing on the system: installed, and the reports arrive late.
//
// Every story shows the restart where it happened ('started' is recorded before recovery runs an
// interrupted step again) and ends with 'stopped': the test stops each restarted agent with SIGTERM,
// and a clean stop is reported, before the agent lets go of the console.
//
// One case is no kill: a download that never completes must hold up nothing (other installs, a
// rollback the console orders, the agent's stop), and one that stalls fails with TIMEOUT and is
// tried again after a back-off. It runs the agent in-process, for a short stall timeout.
import t, { type Test } from 'tap'
import fs from 'node:fs/promises'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { execFile } from 'node:child_process'
import type { AgentEvent } from '../../lib/report/event.js'
import type { IngestCounters } from '../../lib/report/ingest.js'
import { Agent } from '../../agent/agent.js'
import { World, OWNER, sleep, exists, groupMembers, readAgentDisk, type AgentProcess, type Pkg } from './world.js'

interface Endpoint { tenant: string, dir: string, keyid: string }
type Final = 'installed' | 'rolled-back'

const MiB = 1024 * 1024

/** The events of one job, as a line of words: agent starts, its job states, its package's transfer. */
function story (events: AgentEvent[], pkg: Pkg): string[] {
  const out: string[] = []
  for (const e of events) {
    if (e.kind === 'agent') out.push(e.agent!.state === 'started' || e.agent!.state === 'stopped' ? e.agent!.state : `agent:${e.agent!.state}`)
    else if (e.kind === 'job' && e.job!.release.envelopeHash === pkg.hash) out.push(e.job!.attempt > 1 ? `${e.job!.state}#${e.job!.attempt}` : e.job!.state)
    else if (e.kind === 'transfer' && e.transfer!.manifest === pkg.digest) out.push('transfer')
  }
  return out
}

/** Every event of the endpoint, one word each (for the test's comments). */
function trail (events: AgentEvent[], pkgs: Pkg[]): string {
  return events.map((e) => {
    const name = (hash: string) => pkgs.find((p) => p.hash === hash || p.digest === hash)?.name ?? hash.slice(0, 8)
    if (e.kind === 'job') return `${e.seq}:${name(e.job!.release.envelopeHash)}:${e.job!.state}${e.job!.attempt > 1 ? `#${e.job!.attempt}` : ''}`
    if (e.kind === 'transfer') return `${e.seq}:transfer(${name(e.transfer!.manifest)})`
    if (e.kind === 'agent') return `${e.seq}:agent:${e.agent!.state}`
    return `${e.seq}:${e.kind}`
  }).join(' ')
}

async function scriptLog (pkg: Pkg): Promise<string[]> {
  return (await fs.readFile(path.join(pkg.ctrl, 'log'), 'utf8').catch(() => '')).split('\n').filter(Boolean)
}

const ctrlFile = (pkg: Pkg, name: string) => path.join(pkg.ctrl, name)
const hold = (pkg: Pkg, step: string) => fs.writeFile(ctrlFile(pkg, `hold-${step}`), '1')
const release = (pkg: Pkg, step: string) => fs.rm(ctrlFile(pkg, `hold-${step}`), { force: true })
const inStep = (agent: AgentProcess, pkg: Pkg, step: string) => agent.until(`${pkg.name}'s ${step} script to wait on its hold`, () => exists(ctrlFile(pkg, `${step}.pid`)))
const stepPid = async (pkg: Pkg, step: string) => Number((await fs.readFile(ctrlFile(pkg, `${step}.pid`), 'utf8').catch(() => '')).trim()) || 0

/**
 * Waits until `pkg`'s `step` script waits on its hold and the agent has noted its process group in
 * the crash marker (synced, a moment after the command started: a SIGKILL in between leaves a
 * marker without it, and nothing for the restart to end). Only then does a kill test the restart.
 */
async function inStepNoted (agent: AgentProcess, pkg: Pkg, step: string): Promise<void> {
  // The pid file exists a moment before the script's pid is in it (the shell creates it, then writes).
  let pgid = 0
  await agent.until(`${pkg.name}'s ${step} script to wait on its hold`, async () => (pgid = await stepPid(pkg, step)) > 0)
  await agent.waitFor(`${pkg.name} 1.0.0: its ${step} step runs as process group ${pgid}, noted in its crash marker`)
}

/**
 * The agent was just SIGKILLed while `pkg`'s `step` script waited on its hold: that script runs on
 * in its own process group. Returns the group (its leader's pid).
 */
async function orphaned (t: Test, pkg: Pkg, step: string): Promise<number> {
  const pgid = await stepPid(pkg, step)
  t.ok(pgid > 0 && (await groupMembers(pgid)).length > 0, `the ${step} script outlived the SIGKILLed agent (process group ${pgid})`)
  return pgid
}

/**
 * The restarted agent runs `step` again (the new run waits on the hold, which is still there): by
 * then the group the killed agent left behind must be gone, ended by the agent, not by the test.
 */
async function reran (t: Test, agent: AgentProcess, pkg: Pkg, step: string, orphan: number): Promise<void> {
  await agent.until(`${pkg.name}'s ${step} to run again`, async () => { const pid = await stepPid(pkg, step); return pid !== 0 && pid !== orphan })
  t.same(await groupMembers(orphan), [], `the restarted agent ended the ${step} the killed one left running (group ${orphan}) before running it again`)
  t.ok(agent.lines.some((l) => l.includes(`ended process group ${orphan} `)), 'and said so in its log')
}

/** Runs the package's own health check the way the agent does; true if it passes. */
function healthCheck (pkg: Pkg): Promise<boolean> {
  return new Promise((resolve) => {
    execFile(path.join(pkg.src, 'step.sh'), [], { env: { PATH: '/usr/bin:/bin', CTRL: pkg.ctrl, VERSION: pkg.version, PATCHSWARM_STEP: 'health' } }, (err) => resolve(err === null))
  })
}

/** Fully installed: the mark is complete (no half-written file) and the health check passes. */
async function assertInstalled (t: Test, pkg: Pkg): Promise<void> {
  t.equal(await fs.readFile(ctrlFile(pkg, 'installed'), 'utf8').catch(() => null), `${pkg.version}\n`, `${pkg.name}: the installed mark is complete`)
  t.notOk(await exists(ctrlFile(pkg, 'installed.partial')), `${pkg.name}: no half install left`)
  t.notOk(await exists(ctrlFile(pkg, 'rollback.partial')), `${pkg.name}: no half rollback left`)
  t.ok(await healthCheck(pkg), `${pkg.name}: the health check passes`)
}

/** Fully rolled back: nothing of the new version is left, and the health check says so. */
async function assertRolledBack (t: Test, pkg: Pkg): Promise<void> {
  await fs.rm(ctrlFile(pkg, 'fail-health'), { force: true })
  for (const f of ['installed', 'installed.partial', 'rollback.partial']) t.notOk(await exists(ctrlFile(pkg, f)), `${pkg.name}: no ${f} left`)
  t.notOk(await healthCheck(pkg), `${pkg.name}: the health check finds nothing installed`)
}

/** Takes one file of `pkg` away from the origin's copy: its chunks are turned down. Returns the undo. */
async function withhold (world: World, pkg: Pkg, file: string): Promise<() => Promise<void>> {
  const files = path.join(world.origin.store.dir, 'packages', pkg.digest, 'files')
  const mode = (await fs.stat(files)).mode & 0o7777
  const away = path.join(world.dir, `${pkg.name}-${file}.away`)
  await fs.chmod(files, 0o755)
  await fs.rename(path.join(files, file), away)
  let undone = false
  return async () => {
    if (undone) return
    undone = true
    await fs.rename(away, path.join(files, file))
    await fs.chmod(files, mode)
  }
}

async function until (what: string, fn: () => Promise<boolean> | boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms
  while (!await fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}

function countersDelta (before: IngestCounters, after: IngestCounters) {
  const rejected: Record<string, number> = {}
  for (const [code, n] of Object.entries(after.rejected)) if (n - (before.rejected[code] ?? 0) > 0) rejected[code] = n - (before.rejected[code] ?? 0)
  return { accepted: after.accepted - before.accepted, duplicate: after.duplicate - before.duplicate, rejected }
}

/**
 * After the restart: waits until the console sees every job's final state, stops the agent
 * (SIGTERM), and checks the agent's folder against the console's log: no marker left, each job
 * final, every seq the outbox numbered is in the log exactly once as 1…N, nothing rejected.
 */
async function settle (t: Test, world: World, ep: Endpoint, agent: AgentProcess, finals: Array<[Pkg, Final]>, before: IngestCounters): Promise<AgentEvent[]> {
  for (const [pkg, final] of finals) {
    await agent.until(`the console to see ${pkg.name} ${final}`, () => world.consoleState(ep.keyid, pkg) === final)
  }
  await agent.until('the agent to finish starting', () => agent.startedUp)
  const stopping = Date.now()
  const exit = await agent.kill('SIGTERM')
  t.equal(exit.code, 0, 'the restarted agent stops cleanly')
  t.ok(Date.now() - stopping < 10_000, `and promptly (${Date.now() - stopping} ms)`)
  const disk = await readAgentDisk(ep.dir)
  t.same(disk.markers, [], 'no crash marker is left')
  for (const [pkg, final] of finals) t.equal(disk.jobs.find((j) => j.id === pkg.hash)?.state, final, `the agent's job ${pkg.name} is ${final}`)

  const events = await world.consoleEvents(ep.keyid)
  const seqs = events.map((e) => e.seq)
  t.same(seqs, seqs.map((_, i) => i + 1), `the console's log holds seq 1…${seqs.length} of this endpoint, each once, in order`)
  const position = await world.console.ingestor.endpointState(ep.keyid)
  t.equal(position.last, seqs.length, 'the console\'s position is the end of that run')
  t.equal(position.replays, 0, 'no seq ever named two different events (no REPLAY)')
  t.equal(disk.outbox.lastSeq, seqs.length, `every event the agent's outbox numbered (1…${disk.outbox.lastSeq}) reached the console, 'stopped' too`)
  t.equal(events.at(-1)?.agent?.state, 'stopped', 'the last of them says the agent stopped cleanly')
  const delta = countersDelta(before, world.console.ingestor.counters)
  t.same(delta.rejected, {}, 'the console rejected nothing')
  t.equal(delta.accepted, seqs.length, 'each event was accepted once')
  t.comment(`events: ${trail(events, finals.map(([p]) => p))}`)
  t.comment(`ingest: ${delta.accepted} accepted, ${delta.duplicate} duplicate (re-sent after a lost ack: fine)`)
  return events
}

t.test('kill matrix: SIGKILL the agent in every state, restart, and it ends whole', async (t) => {
  const started = Date.now()
  const world = await World.create(t)
  t.teardown(() => { t.comment(`kill matrix took ${((Date.now() - started) / 1000).toFixed(1)} s`) })

  await t.test('downloading: the download resumes and the install completes', async (t) => {
    const ep = await world.endpoint('downloading')
    const pkg = await world.publish('downloading', 'kill-downloading', { 'payload-a.bin': randomBytes(4 * MiB), 'payload-b.bin': randomBytes(4 * MiB) })
    const before = world.console.ingestor.counters
    // The origin cannot read payload-b: its chunks are turned down, and the agent keeps asking.
    const giveBack = await withhold(world, pkg, 'payload-b.bin')
    let uploaded = 0
    const onUpload = (u: { digest: string, bytes: number }) => { if (u.digest === pkg.digest) uploaded += u.bytes }
    world.origin.node.on('upload', onUpload)

    const a1 = world.startAgent(ep.dir)
    await world.rollout('kill-downloading', pkg, ep.tenant)
    await a1.waitFor('kill-downloading 1.0.0: assigned → downloading')
    await a1.until('payload-a to reach the agent', () => uploaded >= 3 * MiB)
    await sleep(500) // the agent records received chunks in synced batches
    await a1.kill('SIGKILL')
    world.origin.node.off('upload', onUpload)
    t.same(a1.transitions(pkg.name), ['assigned → assigned', 'assigned → downloading'], 'killed while downloading')
    const disk = await readAgentDisk(ep.dir)
    t.equal(disk.jobs[0]?.state, 'downloading', 'the job was downloading when the agent died')

    await giveBack()
    const a2 = world.startAgent(ep.dir)
    const events = await settle(t, world, ep, a2, [[pkg, 'installed']], before)
    t.same(story(events, pkg), ['started', 'assigned', 'downloading', 'started', 'transfer', 'verified', 'installing', 'health-check', 'installed', 'stopped'])
    const transfer = events.find((e) => e.kind === 'transfer')!.transfer!
    t.ok(transfer.bytes.local > 0, `the restart kept what the first run received (${transfer.bytes.local} of ${pkg.size} bytes)`)
    t.ok(transfer.bytes.origin < pkg.size, `and fetched only the rest (${transfer.bytes.origin} bytes from the origin)`)
    t.same(await scriptLog(pkg), ['install', 'health'])
    await assertInstalled(t, pkg)
  })

  await t.test('verified: the job waits its turn across the crash and installs', async (t) => {
    const ep = await world.endpoint('verified')
    const first = await world.publish('verified', 'kill-verified-first')
    const second = await world.publish('verified', 'kill-verified-second')
    const subject = await world.publish('verified', 'kill-verified-subject')
    const before = world.console.ingestor.counters
    await hold(first, 'install')
    await hold(second, 'install')
    // Downloads run in the background and a step applies those that ended: second and subject must
    // end theirs while a step is busy, so that the next one makes both verified before it installs.
    const giveBack = [await withhold(world, second, 'release.txt'), await withhold(world, subject, 'release.txt')]
    t.teardown(async () => { for (const g of giveBack) await g() })
    const a1 = world.startAgent(ep.dir)
    await world.rollout('kill-verified-second', second, ep.tenant)
    await a1.waitFor('kill-verified-second 1.0.0: assigned → downloading')
    await world.rollout('kill-verified-subject', subject, ep.tenant)
    await a1.waitFor('kill-verified-subject 1.0.0: assigned → downloading')
    // first blocks the runner in its install, while the other two downloads finish.
    await world.rollout('kill-verified-first', first, ep.tenant)
    await inStep(a1, first, 'install')
    for (const g of giveBack) await g()
    const transferred = async (pkg: Pkg) => (await world.consoleEvents(ep.keyid)).some((e) => e.kind === 'transfer' && e.transfer!.manifest === pkg.digest)
    await a1.until('second and subject to be downloaded', async () => await transferred(second) && await transferred(subject))
    // The next step makes both verified; second (assigned earlier) installs first, and holds.
    await release(first, 'install')
    await inStepNoted(a1, second, 'install')
    await a1.waitFor('kill-verified-subject 1.0.0: downloading → verified')
    await a1.kill('SIGKILL')
    const orphan = await orphaned(t, second, 'install')
    t.same(a1.transitions(subject.name), ['assigned → assigned', 'assigned → downloading', 'downloading → verified'], 'killed while verified')
    const disk = await readAgentDisk(ep.dir)
    t.equal(disk.jobs.find((j) => j.id === subject.hash)?.state, 'verified', 'the subject was verified when the agent died')
    t.equal(disk.jobs.find((j) => j.id === second.hash)?.state, 'installing', '… while the job before it was installing')
    t.same(disk.markers.map((m) => [m.job, m.step]), [[second.hash, 'install']], 'the only crash marker is the install under way')

    const a2 = world.startAgent(ep.dir)
    await reran(t, a2, second, 'install', orphan)
    await release(second, 'install')
    const events = await settle(t, world, ep, a2, [[first, 'installed'], [second, 'installed'], [subject, 'installed']], before)
    t.same(story(events, subject), ['started', 'assigned', 'downloading', 'transfer', 'verified', 'started', 'installing', 'health-check', 'installed', 'stopped'])
    t.same(story(events, second), ['started', 'assigned', 'downloading', 'transfer', 'verified', 'installing', 'started', 'health-check', 'installed', 'stopped'])
    t.same(await scriptLog(first), ['install', 'health'])
    t.same(await scriptLog(second), ['install', 'install', 'health'], 'the interrupted install ran again')
    t.same(await scriptLog(subject), ['install', 'health'])
    for (const p of [first, second, subject]) await assertInstalled(t, p)
  })

  await t.test('waiting-window: no install outside the window after the restart; it installs once the window opens', async (t) => {
    const ep = await world.endpoint('window')
    const pkg = await world.publish('window', 'kill-window')
    const before = world.console.ingestor.counters
    const opens = (new Date().getUTCHours() + 12) % 24
    await world.api.policies.set(OWNER, ep.tenant, { windows: [{ cron: `0 ${opens} * * *`, durationMinutes: 60, timezone: 'UTC' }] })
    const a1 = world.startAgent(ep.dir)
    await world.rollout('kill-window', pkg, ep.tenant)
    await a1.waitFor('kill-window 1.0.0: verified → waiting-window')
    await a1.kill('SIGKILL')
    const disk = await readAgentDisk(ep.dir)
    t.equal(disk.jobs[0]?.state, 'waiting-window', 'the job was waiting for its window when the agent died')
    t.same(disk.markers, [])

    const a2 = world.startAgent(ep.dir)
    // Its start and inventory events reached the console: it is connected and has checked in.
    await a2.until('the restarted agent to report', async () => (await world.console.ingestor.endpointState(ep.keyid)).last >= disk.outbox.lastSeq + 2)
    await sleep(1000) // five check-ins with the window still closed
    t.same(a2.transitions(pkg.name), [], 'the restarted agent does not install outside the window')
    t.same(await scriptLog(pkg), [], 'no step ran')
    await world.api.policies.clear(OWNER, ep.tenant) // no window anywhere: installs may run now
    const events = await settle(t, world, ep, a2, [[pkg, 'installed']], before)
    t.same(story(events, pkg), ['started', 'assigned', 'downloading', 'transfer', 'verified', 'waiting-window', 'started', 'installing', 'health-check', 'installed', 'stopped'])
    t.same(await scriptLog(pkg), ['install', 'health'])
    await assertInstalled(t, pkg)
  })

  await t.test('installing: the interrupted install runs again and completes', async (t) => {
    const ep = await world.endpoint('installing')
    const pkg = await world.publish('installing', 'kill-installing')
    const before = world.console.ingestor.counters
    await hold(pkg, 'install')
    const a1 = world.startAgent(ep.dir)
    await world.rollout('kill-installing', pkg, ep.tenant)
    await inStepNoted(a1, pkg, 'install')
    await a1.kill('SIGKILL')
    const orphan = await orphaned(t, pkg, 'install')
    const disk = await readAgentDisk(ep.dir)
    t.equal(disk.jobs[0]?.state, 'installing', 'the job was installing when the agent died')
    t.same(disk.markers.map((m) => m.step), ['install'])
    t.ok(await exists(ctrlFile(pkg, 'installed.partial')), 'the install was half done')

    const a2 = world.startAgent(ep.dir)
    await reran(t, a2, pkg, 'install', orphan)
    await release(pkg, 'install')
    const events = await settle(t, world, ep, a2, [[pkg, 'installed']], before)
    t.same(story(events, pkg), ['started', 'assigned', 'downloading', 'transfer', 'verified', 'installing', 'started', 'health-check', 'installed', 'stopped'],
      'the story shows the crash before the re-run')
    t.same(await scriptLog(pkg), ['install', 'install', 'health'], 'the interrupted install ran again')
    await assertInstalled(t, pkg)
  })

  await t.test('health-check: the interrupted health check runs again and the job is installed', async (t) => {
    const ep = await world.endpoint('health')
    const pkg = await world.publish('health', 'kill-health')
    const before = world.console.ingestor.counters
    await hold(pkg, 'health')
    const a1 = world.startAgent(ep.dir)
    await world.rollout('kill-health', pkg, ep.tenant)
    await inStepNoted(a1, pkg, 'health')
    await a1.kill('SIGKILL')
    const orphan = await orphaned(t, pkg, 'health')
    const disk = await readAgentDisk(ep.dir)
    t.equal(disk.jobs[0]?.state, 'health-check', 'the job was in its health check when the agent died')
    t.same(disk.markers.map((m) => m.step), ['health'])

    const a2 = world.startAgent(ep.dir)
    await reran(t, a2, pkg, 'health', orphan)
    await release(pkg, 'health')
    const events = await settle(t, world, ep, a2, [[pkg, 'installed']], before)
    t.same(story(events, pkg), ['started', 'assigned', 'downloading', 'transfer', 'verified', 'installing', 'health-check', 'started', 'installed', 'stopped'],
      'the story shows the crash before the re-run')
    t.same(await scriptLog(pkg), ['install', 'health', 'health'], 'the interrupted health check ran again, the install did not')
    await assertInstalled(t, pkg)
  })

  await t.test('rolling-back: the interrupted rollback runs again and nothing of the release is left', async (t) => {
    const ep = await world.endpoint('rollback')
    const pkg = await world.publish('rollback', 'kill-rollback')
    const before = world.console.ingestor.counters
    await fs.writeFile(ctrlFile(pkg, 'fail-health'), '1')
    await hold(pkg, 'rollback')
    const a1 = world.startAgent(ep.dir)
    await world.rollout('kill-rollback', pkg, ep.tenant)
    await inStepNoted(a1, pkg, 'rollback')
    await a1.kill('SIGKILL')
    const orphan = await orphaned(t, pkg, 'rollback')
    const disk = await readAgentDisk(ep.dir)
    t.equal(disk.jobs[0]?.state, 'rolling-back', 'the job was rolling back when the agent died')
    t.same(disk.markers.map((m) => m.step), ['rollback'])
    t.ok(await exists(ctrlFile(pkg, 'rollback.partial')), 'the rollback was half done')

    const a2 = world.startAgent(ep.dir)
    await reran(t, a2, pkg, 'rollback', orphan)
    await release(pkg, 'rollback')
    const events = await settle(t, world, ep, a2, [[pkg, 'rolled-back']], before)
    t.same(story(events, pkg), ['started', 'assigned', 'downloading', 'transfer', 'verified', 'installing', 'health-check', 'failed', 'rolling-back', 'started', 'rolled-back', 'stopped'])
    const failed = events.find((e) => e.kind === 'job' && e.job!.state === 'failed')!.job!
    t.equal(failed.code, 'INSTALL_FAILED', 'the failure says why')
    t.match(failed.reason, /health/)
    t.same(await scriptLog(pkg), ['install', 'health', 'rollback', 'rollback'], 'the interrupted rollback ran again')
    await assertRolledBack(t, pkg)
  })

  await t.test('a stuck download holds up nothing: other installs, an ordered rollback, the stop; a stall times out', async (t) => {
    const ep = await world.endpoint('stuck')
    const kept = await world.publish('stuck', 'stuck-kept')
    const stuck = await world.publish('stuck', 'stuck-download', { 'payload-a.bin': randomBytes(MiB), 'payload-b.bin': randomBytes(MiB) })
    const other = await world.publish('stuck', 'stuck-other')
    const giveBack = await withhold(world, stuck, 'payload-b.bin')
    t.teardown(giveBack)
    const job = (agent: Agent, pkg: Pkg) => agent.runner.status().find((j) => j.id === pkg.hash)
    const open = async (opts: { downloadStallMs?: number } = {}) => {
      const agent = await Agent.open(ep.dir, { checkInMs: 200, inventory: false, ...opts })
      t.teardown(() => agent.close())
      await agent.start()
      return agent
    }

    // The default stall timeout (minutes): the stuck download stays in flight all along.
    const a1 = await open()
    await world.rollout('stuck-kept', kept, ep.tenant)
    await until('stuck-kept to install', () => job(a1, kept)?.state === 'installed')
    await world.rollout('stuck-download', stuck, ep.tenant)
    await until('stuck-download to start downloading', () => job(a1, stuck)?.state === 'downloading')
    await world.rollout('stuck-other', other, ep.tenant)
    await until('stuck-other to install while stuck-download downloads', () => job(a1, other)?.state === 'installed')
    await world.api.rollouts.rollback(OWNER, 'stuck-kept')
    await until('the ordered rollback of stuck-kept to run while stuck-download downloads', () => job(a1, kept)?.state === 'rolled-back')
    t.match(job(a1, stuck), { state: 'downloading', attempt: 1 }, 'stuck-download is still downloading')
    t.equal(job(a1, stuck)?.lastCode, undefined, 'and its download has not failed: it was in flight all along')
    const stopping = Date.now()
    await a1.close()
    t.ok(Date.now() - stopping < 5000, `close() did not wait for the download (${Date.now() - stopping} ms)`)
    await assertInstalled(t, other)
    await assertRolledBack(t, kept)

    // A short stall timeout: a download that makes no progress for that long fails (TIMEOUT) and is
    // tried again after a back-off, like any failed download.
    const a2 = await open({ downloadStallMs: 1000 })
    const restarted = Date.now()
    await until('the stalled download to time out', () => job(a2, stuck)?.lastCode === 'TIMEOUT')
    t.ok(Date.now() - restarted >= 1000, 'not before the stall timeout')
    const s = job(a2, stuck)!
    t.match(s, { state: 'downloading', attempt: 1, breaker: 'closed', lastReason: /no progress/ })
    t.ok(s.nextAttemptAt !== undefined && Date.parse(s.nextAttemptAt) > Date.now() + 60_000, `retried after a back-off (at ${s.nextAttemptAt})`)
    await a2.close()
    t.same(await scriptLog(stuck), [], 'nothing of the stuck release ran')
  })

  // Last: it restarts the console.
  await t.test('reporting: events wait in the outbox through a crash and a console restart, and arrive once', async (t) => {
    const ep = await world.endpoint('reporting')
    const pkg = await world.publish('reporting', 'kill-reporting')
    const before = world.console.ingestor.counters
    await hold(pkg, 'install')
    const a1 = world.startAgent(ep.dir)
    await world.rollout('kill-reporting', pkg, ep.tenant)
    await inStep(a1, pkg, 'install')
    await a1.until('the console to see the install start', () => world.consoleState(ep.keyid, pkg) === 'installing')
    await world.closeSwarm() // the console is out of reach
    await release(pkg, 'install')
    await a1.waitFor('kill-reporting 1.0.0: health-check → installed')
    await a1.kill('SIGKILL')
    const disk = await readAgentDisk(ep.dir)
    t.equal(disk.jobs[0]?.state, 'installed')
    t.same(disk.markers, [])
    const seen = (await world.console.ingestor.endpointState(ep.keyid)).last
    t.ok(disk.outbox.lastSeq - seen >= 2, `the health-check and installed events wait in the outbox (${disk.outbox.lastSeq - seen} unseen)`)
    t.equal(world.consoleState(ep.keyid, pkg), 'installing', 'the console has not heard of them')

    await world.closeConsole()
    await world.openConsole()
    await world.openSwarm()
    const a2 = world.startAgent(ep.dir)
    const events = await settle(t, world, ep, a2, [[pkg, 'installed']], before)
    t.same(story(events, pkg), ['started', 'assigned', 'downloading', 'transfer', 'verified', 'installing', 'health-check', 'installed', 'started', 'stopped'])
    t.same(await scriptLog(pkg), ['install', 'health'])
    await assertInstalled(t, pkg)
  })
})
