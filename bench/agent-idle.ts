// An enrolled agent doing nothing: its memory and CPU while idle, against a bare Node process.
//
// In this process: a local DHT testnet, a console (its ConsoleSwarm on the testnet), a tenant and an
// auto-approve token; an agent enrolled into a temporary folder. Then, as real child processes
// started at the same instant: `patchswarm agent run --data <folder>` (its check-in schedule is the
// config default, cron every 15 min with up to 5 min jitter, so the measured minute is idle with the
// console and DHT alive) and the baseline `node -e "setInterval(()=>{},1e3)"`. Once the console
// holds the agent's start-up events and SETTLE_SECONDS (10) have passed, both are sampled side by
// side for IDLE_SECONDS (60): RSS (/proc/<pid>/status VmRSS) every second, CPU time
// (/proc/<pid>/stat utime + stime, in clock ticks of `getconf CLK_TCK`) at the start and the end.
//
//   rss_mb  = highest VmRSS seen in the window, MiB         goal ≤ 80
//             (rss_mb_start, rss_mb_mean, rss_mb_end show the course: garbage from start-up is
//             collected during the window)
//   cpu_pct = CPU seconds in the window / idle_s × 100 (% of one core)   goal ≤ 0.5
//   ratio   = rss_mb / baseline_rss_mb
//
// The agent runs compiled, as installed (`dist/bin/patchswarm.js`, what `npm prepare` builds):
// tsx/esbuild would add their own memory to the figure. dist/ is used when it is complete and
// newer than every source file; otherwise the sources are compiled with tsconfig.build.json into a
// temporary folder (dist/ is left alone). AGENT_RUNTIME=tsx runs it from source instead, to see
// what that costs; AGENT_RUNTIME=build forces a fresh compile.
//
// It runs as deployed: with the node flags of the #! line of bin/patchswarm.ts and the Node options
// of the agent's systemd unit (deploy/patchswarm-agent.service, its `Environment=NODE_OPTIONS=`
// line); AGENT_NODE_OPTIONS= (empty) measures without the latter.
import { spawn, execFile, execFileSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { startTestnet, type LocalTestnet } from '../lib/swarm/transport.js'
import { ConsoleSwarm } from '../lib/console/console-swarm.js'
import { AdminApi } from '../lib/console/api.js'
import type { Console } from '../lib/console/console.js'
import { makeConsoleOrg, openConsole, OWNER } from '../fixtures/console-org.js'
import { enrollAgent } from '../agent/enroll.js'
import { DEFAULT_CHECK_IN_CRON, DEFAULT_CHECK_IN_JITTER_SECONDS } from '../agent/config.js'
import { sshKey } from '../fixtures/org.js'
import type { BenchResult } from './run.js'
import { deployedNodeArgs } from './_world.js'

export const summary = { figure: 'rss_mb', baseline: 'baseline_rss_mb', goal: 'rss_mb <= 80, cpu_pct <= 0.5' }

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const execFileP = promisify(execFile)
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits

interface Runtime {
  kind: 'dist' | 'build' | 'tsx'
  /** Node arguments before `agent run …`. */
  args: string[]
  cleanup (): Promise<void>
}

/** Every .ts (not .d.ts) under the folders tsconfig.build.json compiles. */
async function buildSources (): Promise<string[]> {
  const config = JSON.parse(await fs.readFile(path.join(root, 'tsconfig.build.json'), 'utf8')) as { include?: string[] }
  const out: string[] = []
  const walk = async (dir: string) => {
    let entries
    try { entries = await fs.readdir(dir, { withFileTypes: true }) } catch { return }
    for (const e of entries) {
      const p = path.join(dir, e.name)
      if (e.isDirectory()) await walk(p)
      else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(p)
    }
  }
  for (const d of config.include ?? []) await walk(path.join(root, d))
  return out
}

/** dist/ holds a .js for every source, none older than its source. */
async function distIsFresh (): Promise<boolean> {
  const sources = await buildSources()
  if (sources.length === 0) return false
  for (const src of sources) {
    const js = path.join(root, 'dist', path.relative(root, src)).replace(/\.ts$/, '.js')
    try {
      if ((await fs.stat(js)).mtimeMs < (await fs.stat(src)).mtimeMs) return false
    } catch {
      return false
    }
  }
  return true
}

async function agentRuntime (): Promise<Runtime> {
  const wanted = process.env.AGENT_RUNTIME
  if (wanted === 'tsx') return { kind: 'tsx', args: ['--import', import.meta.resolve('tsx'), path.join(root, 'bin/patchswarm.ts')], cleanup: async () => {} }
  if (wanted !== 'build' && await distIsFresh()) return { kind: 'dist', args: [path.join(root, 'dist/bin/patchswarm.js')], cleanup: async () => {} }
  // Compile into a temporary folder that resolves packages from this repository's node_modules.
  const out = await fs.mkdtemp(path.join(os.tmpdir(), 'patchswarm-agent-idle-build-'))
  const cleanup = () => fs.rm(out, { recursive: true, force: true })
  try {
    console.error('# agent-idle: dist/ is missing or older than the sources; compiling with tsconfig.build.json into a temporary folder …')
    await fs.writeFile(path.join(out, 'package.json'), JSON.stringify({ type: 'module' }))
    await fs.symlink(path.join(root, 'node_modules'), path.join(out, 'node_modules'), 'dir')
    try {
      await execFileP(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', path.join(root, 'tsconfig.build.json'), '--outDir', out], { cwd: root, maxBuffer: 16 * 1024 * 1024 })
    } catch (err) {
      // tsc emits despite type errors (someone's work in progress); the build is usable if it emitted.
      const text = String((err as { stdout?: string }).stdout ?? err).split('\n').slice(0, 5).join('\n')
      console.error(`# agent-idle: tsc reported errors (using its output anyway):\n${text}`)
    }
    const bin = path.join(out, 'bin/patchswarm.js')
    await fs.access(bin)
    return { kind: 'build', args: [bin], cleanup }
  } catch (err) {
    await cleanup()
    throw err
  }
}

/** NODE_OPTIONS as the agent's systemd unit sets them ('' when it sets none). */
async function deployedNodeOptions (): Promise<string> {
  if (process.env.AGENT_NODE_OPTIONS !== undefined) return process.env.AGENT_NODE_OPTIONS
  const unit = await fs.readFile(path.join(root, 'deploy/patchswarm-agent.service'), 'utf8')
  return /^Environment=NODE_OPTIONS=(.*)$/m.exec(unit)?.[1]?.trim().replace(/^"(.*)"$/, '$1') ?? ''
}

/** VmRSS in KiB. */
async function rssKiB (pid: number): Promise<number> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8')
  const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status)
  if (!m) throw new Error(`no VmRSS for pid ${pid}`)
  return Number(m[1])
}

/** utime + stime in clock ticks. */
async function cpuTicks (pid: number): Promise<number> {
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8')
  // Fields after the command name (which may hold spaces): state is the first, utime the 12th.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return Number(rest[11]) + Number(rest[12])
}

function clockTicks (): number {
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim())
    return Number.isFinite(n) && n > 0 ? n : 100
  } catch {
    return 100
  }
}


async function until (what: string, fn: () => Promise<boolean> | boolean, ms: number, child?: ChildProcess): Promise<void> {
  const end = Date.now() + ms
  while (!await fn()) {
    if (child && child.exitCode !== null) throw new Error(`the agent exited (code ${child.exitCode}) while waiting for ${what}`)
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(200)
  }
}

/** SIGTERM, then SIGKILL after `ms`; resolves with the exit code (null if killed by a signal). */
async function stop (child: ChildProcess, ms = 15_000): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode
  const exited = once(child, 'exit') as Promise<[number | null, string | null]>
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), ms)
  const [code] = await exited
  clearTimeout(timer)
  return code
}

/**
 * Whether a check-in of the default schedule may have happened in [from, to]: a quarter hour passed
 * while the agent ran, no longer ago than the jitter before `from`.
 */
function checkInMayFire (started: number, from: number, to: number): boolean {
  if (DEFAULT_CHECK_IN_CRON !== '*/15 * * * *') return true
  const quarter = 15 * 60_000
  const firstBoundary = Math.ceil(Math.max(started, from - DEFAULT_CHECK_IN_JITTER_SECONDS * 1000) / quarter) * quarter
  return firstBoundary <= to
}

export async function run (): Promise<BenchResult> {
  const idleS = Number(process.env.IDLE_SECONDS ?? 60)
  const settleS = Number(process.env.SETTLE_SECONDS ?? 10)
  if (!(idleS > 0) || !(settleS >= 0)) throw new Error('IDLE_SECONDS must be > 0 and SETTLE_SECONDS ≥ 0')
  const hz = clockTicks()

  const runtime = await agentRuntime()
  const nodeOptions = await deployedNodeOptions()
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'patchswarm-agent-idle-'))
  let testnet: LocalTestnet | null = null
  let consoleNode: Console | null = null
  let swarm: ConsoleSwarm | null = null
  let agent: ChildProcess | null = null
  let baseline: ChildProcess | null = null
  const killChildren = () => { agent?.kill('SIGKILL'); baseline?.kill('SIGKILL') }
  process.once('exit', killChildren)
  let agentStderr = ''
  try {
    testnet = await startTestnet(3)
    const org = await makeConsoleOrg()
    const consoleDir = path.join(work, 'console')
    consoleNode = await openConsole(org, consoleDir, { tickMs: 5000 })
    swarm = new ConsoleSwarm(consoleNode, org.consoleKey.secretKey, { dataDir: consoleDir, bootstrap: testnet.bootstrap, host: '127.0.0.1' })
    await swarm.ready()
    const api = new AdminApi(consoleNode)
    await consoleNode.fleet.bootstrapOwner({ id: OWNER, sshKey: sshKey('bench@agent-idle') })
    await consoleNode.fleet.createTenant(OWNER, { parent: '', name: 'msp-1', kind: 'msp' })
    await consoleNode.fleet.createTenant(OWNER, { parent: 'msp-1', name: 'acme', kind: 'customer' })
    const { token } = await api.endpoints.createToken(OWNER, { scope: 'msp-1/acme', expiresAt: new Date(Date.now() + 3600_000), maxUses: 1, autoApprove: true })
    const agentDir = path.join(work, 'agent')
    const enrolled = await enrollAgent({ dir: agentDir, token, bootstrap: testnet.bootstrap, host: '127.0.0.1', hostname: 'idle-pc', timeoutMs: 20_000 })
    if (enrolled.status !== 'approved') throw new Error(`enrollment: ${enrolled.status}`)
    const keyid = enrolled.holder

    // Both processes start at the same instant and live through the same window.
    const started = Date.now()
    agent = spawn(process.execPath, [...deployedNodeArgs(), ...runtime.args, 'agent', 'run', '--data', agentDir], { cwd: work, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NODE_OPTIONS: nodeOptions } })
    baseline = spawn(process.execPath, [...deployedNodeArgs(), '-e', 'setInterval(()=>{},1e3)'], { cwd: work, stdio: 'ignore' })
    agent.stderr!.on('data', (d) => { if (agentStderr.length < 64 * 1024) agentStderr += d })
    const a = agent
    const b = baseline
    // Started, inventoried, and connected: the console holds its start-up events.
    const c = consoleNode
    await until('the agent to report to the console', async () => (await c.ingestor.endpointState(keyid)).last >= 2, 120_000, a)
    const startupEvents = (await c.ingestor.endpointState(keyid)).last
    await sleep(settleS * 1000)
    if (a.exitCode !== null) throw new Error(`the agent exited (code ${a.exitCode})`)

    const agentPid = a.pid!
    const basePid = b.pid!
    const t0 = Date.now()
    const [cpuA0, cpuB0] = [await cpuTicks(agentPid), await cpuTicks(basePid)]
    const rssA: number[] = []
    const rssB: number[] = []
    for (let i = 0; i < idleS; i++) {
      rssA.push(await rssKiB(agentPid))
      rssB.push(await rssKiB(basePid))
      // Sample on the second, whatever the reads cost.
      await sleep(Math.max(0, t0 + (i + 1) * 1000 - Date.now()))
    }
    const [cpuA1, cpuB1] = [await cpuTicks(agentPid), await cpuTicks(basePid)]
    const t1 = Date.now()
    rssA.push(await rssKiB(agentPid))
    rssB.push(await rssKiB(basePid))
    const seconds = (t1 - t0) / 1000
    const eventsInWindow = (await c.ingestor.endpointState(keyid)).last - startupEvents

    const mib = (kib: number) => kib / 1024
    const max = (xs: number[]) => Math.max(...xs)
    const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length
    const rssMb = round(mib(max(rssA)))
    const baseRssMb = round(mib(max(rssB)))
    const cpuPct = round(((cpuA1 - cpuA0) / hz) / seconds * 100, 2)
    const baseCpuPct = round(((cpuB1 - cpuB0) / hz) / seconds * 100, 2)

    const exitCode = await stop(a)
    agent = null
    await stop(b)
    baseline = null
    const record: BenchResult = {
      bench: 'agent-idle',
      idle_s: round(seconds, 1),
      settle_s: settleS,
      agent_runtime: runtime.kind,
      node_flags: deployedNodeArgs().join(' '),
      node_options: nodeOptions,
      clk_tck: hz,
      samples: rssA.length,
      check_in: DEFAULT_CHECK_IN_CRON,
      check_in_may_fire_in_window: checkInMayFire(started, t0, t1),
      events_in_window: eventsInWindow,
      agent_exit_code: exitCode ?? -1,
      rss_mb_start: round(mib(rssA[0]!)),
      rss_mb_mean: round(mib(mean(rssA))),
      rss_mb_end: round(mib(rssA[rssA.length - 1]!)),
      baseline_rss_mb: baseRssMb,
      baseline_cpu_pct: baseCpuPct,
      ratio: round(rssMb / baseRssMb, 2),
      goal_met: rssMb <= 80 && cpuPct <= 0.5,
      rss_mb: rssMb,
      cpu_pct: cpuPct
    }
    console.error(`# agent-idle (${runtime.kind}${nodeOptions ? `, NODE_OPTIONS=${nodeOptions}` : ''}): rss ${rssMb} MiB (baseline ${baseRssMb}), cpu ${cpuPct} % (baseline ${baseCpuPct} %) over ${round(seconds)} s`)
    return record
  } catch (err) {
    if (agentStderr) console.error(`# agent stderr:\n${agentStderr}`)
    throw err
  } finally {
    if (agent) await stop(agent, 5000).catch(() => {})
    if (baseline) await stop(baseline, 5000).catch(() => {})
    process.off('exit', killChildren)
    await swarm?.close().catch(() => {})
    await consoleNode?.close().catch(() => {})
    await testnet?.destroy().catch(() => {})
    await fs.rm(work, { recursive: true, force: true })
    await runtime.cleanup()
  }
}
