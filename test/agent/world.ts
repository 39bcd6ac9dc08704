// A world for tests that run the agent as a real child process: a local testnet, an in-process
// console with its ConsoleSwarm (which can be taken off the swarm, or restarted, mid-test), real
// `patchswarm agent run` processes whose JSON log lines the test can wait for, packages whose one
// step script obeys hold files, and readers for what the agent left in its data folder and of the
// process groups its steps run in. Everything it starts is stopped by the teardown it registers:
// agent processes, the swarm, the console and the testnet, and (a safety net: the restarted agent
// is the one that must end them) step scripts a SIGKILLed agent left behind.
import fs from 'node:fs/promises'
import path from 'node:path'
import os from 'node:os'
import { spawn, type ChildProcess } from 'node:child_process'
import type { Test } from 'tap'
import { startTestnet, type LocalTestnet } from '../../lib/swarm/transport.js'
import { ConsoleSwarm } from '../../lib/console/console-swarm.js'
import { AdminApi } from '../../lib/console/api.js'
import type { Console } from '../../lib/console/console.js'
import { keySigner } from '../../lib/crypto/keys.js'
import { readSecretKeyFile } from '../../lib/crypto/keyfile.js'
import type { AgentEvent } from '../../lib/report/event.js'
import { makeConsoleOrg, openConsole, OWNER, type ConsoleOrg } from '../../fixtures/console-org.js'
import { enrollAgent } from '../../agent/enroll.js'
import { agentPaths } from '../../agent/config.js'
import { openAgentStore } from '../../agent/store.js'
import { AgentOutbox, type OutboxStats } from '../../agent/outbox.js'
import { JobStore, type CrashMarker, type JobRecord } from '../../agent/jobs.js'
import { sshKey } from '../fleet/helpers.js'
import { cliArgs } from '../cli/helpers.js'

export { OWNER }
export const CUSTOMER = 'msp-1/acme'

export function sleep (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

export async function exists (p: string): Promise<boolean> {
  return fs.access(p).then(() => true, () => false)
}

/**
 * The live members of process group `pgid` (Linux, from /proc). A zombie does not count: a member
 * that was killed stays one until whoever adopted it (here, PID 1) reaps it, seconds later.
 */
export async function groupMembers (pgid: number): Promise<number[]> {
  const out: number[] = []
  for (const name of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const stat = await fs.readFile(`/proc/${name}/stat`, 'utf8').catch(() => '')
    // pid (comm) state ppid pgrp …: comm may hold spaces and parentheses, so split after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    if (Number(fields[2]) === pgid && fields[0] !== 'Z' && fields[0] !== 'X') out.push(Number(name))
  }
  return out
}

/**
 * One program for every step (install, health, rollback), driven by files in $CTRL:
 *   hold-<step>   the step waits while it exists (its pid, the leader of its process group, is in <step>.pid)
 *   fail-health   the health check fails
 * The "system" it changes is $CTRL/installed (complete, holding $VERSION). An install writes
 * installed.partial first and completes it by a rename; a rollback leaves rollback.partial until it
 * has removed everything. Every run appends its step to $CTRL/log.
 */
export const STEP_SCRIPT = `#!/bin/sh
step="$PATCHSWARM_STEP"
echo "$step" >> "$CTRL/log"
hold () {
  if [ -f "$CTRL/hold-$step" ]; then
    echo $$ > "$CTRL/$step.pid"
    while [ -f "$CTRL/hold-$step" ]; do sleep 0.05; done
    rm -f "$CTRL/$step.pid"
  fi
}
case "$step" in
  install)
    echo "$VERSION" > "$CTRL/installed.partial"
    hold
    mv "$CTRL/installed.partial" "$CTRL/installed"
    echo "installed $VERSION";;
  health)
    hold
    [ -f "$CTRL/fail-health" ] && { echo "service down" >&2; exit 1; }
    [ -f "$CTRL/installed" ] && [ ! -f "$CTRL/installed.partial" ] && [ "$(cat "$CTRL/installed")" = "$VERSION" ] || { echo "not installed" >&2; exit 1; }
    echo healthy;;
  rollback)
    echo rolling-back > "$CTRL/rollback.partial"
    rm -f "$CTRL/installed"
    hold
    rm -f "$CTRL/installed.partial" "$CTRL/rollback.partial"
    echo "rolled back";;
  *) echo "unknown step $step" >&2; exit 2;;
esac
`

/** A released package of the world, for one endpoint's test. */
export interface Pkg {
  name: string
  version: string
  /** The release's envelope hash. */
  hash: string
  /** The package's manifest digest. */
  digest: string
  size: number
  /** The package's source folder (step.sh is in it). */
  src: string
  /** The folder its script obeys and changes ($CTRL). */
  ctrl: string
}

export class World {
  readonly dir: string
  readonly testnet: LocalTestnet
  readonly org: ConsoleOrg
  console!: Console
  swarm: ConsoleSwarm | null = null
  api!: AdminApi
  readonly agents = new Set<AgentProcess>()
  readonly ctrls = new Set<string>()

  private constructor (dir: string, testnet: LocalTestnet, org: ConsoleOrg) {
    this.dir = dir
    this.testnet = testnet
    this.org = org
  }

  /**
   * The testnet, the console (with its owner and CUSTOMER) and its swarm; torn down with `t`. The
   * folder is a fresh temporary one rather than t.testdir(), whose fixed path two runs of the same
   * file at once (two sessions on one checkout) would share, console database and all.
   */
  static async create (t: Test): Promise<World> {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'patchswarm-world-'))
    t.teardown(() => fs.rm(dir, { recursive: true, force: true }))
    const testnet = await startTestnet(3)
    const world = new World(dir, testnet, await makeConsoleOrg())
    t.teardown(() => world.destroy())
    await world.openConsole()
    await world.openSwarm()
    await world.console.fleet.bootstrapOwner({ id: OWNER, sshKey: sshKey() })
    await world.console.fleet.createTenant(OWNER, { parent: '', name: 'msp-1', kind: 'msp' })
    await world.console.fleet.createTenant(OWNER, { parent: 'msp-1', name: 'acme', kind: 'customer' })
    return world
  }

  get consoleDir (): string { return path.join(this.dir, 'console') }

  async openConsole (): Promise<void> {
    this.console = await openConsole(this.org, this.consoleDir, { tickMs: 200 })
    this.api = new AdminApi(this.console)
  }

  async closeConsole (): Promise<void> {
    await this.closeSwarm()
    await this.console.close()
  }

  /** Puts the console on the swarm (again): the same keys, so enrolled agents find it. */
  async openSwarm (): Promise<ConsoleSwarm> {
    const swarm = new ConsoleSwarm(this.console, this.org.consoleKey.secretKey, { dataDir: this.consoleDir, bootstrap: this.testnet.bootstrap, host: '127.0.0.1' })
    this.swarm = swarm
    await swarm.ready()
    return swarm
  }

  /** Takes the console off the swarm: agents cannot reach it. */
  async closeSwarm (): Promise<void> {
    const swarm = this.swarm
    this.swarm = null
    await swarm?.close()
  }

  get origin (): ConsoleSwarm {
    if (!this.swarm) throw new Error('the console is off the swarm')
    return this.swarm
  }

  /** A group under CUSTOMER and one endpoint enrolled into it (in-process); returns its data folder and key id. */
  async endpoint (group: string): Promise<{ tenant: string, dir: string, keyid: string }> {
    await this.console.fleet.createTenant(OWNER, { parent: CUSTOMER, name: group, kind: 'group' })
    const tenant = `${CUSTOMER}/${group}`
    const { token } = await this.api.endpoints.createToken(OWNER, { scope: tenant, expiresAt: new Date(Date.now() + 3600_000), maxUses: 1, autoApprove: true })
    const dir = path.join(this.dir, group, 'agent')
    const enrolled = await enrollAgent({ dir, token, bootstrap: this.testnet.bootstrap, host: '127.0.0.1', hostname: group, timeoutMs: 10_000 })
    if (enrolled.status !== 'approved') throw new Error(`${group}: enrollment is ${enrolled.status}`)
    return { tenant, dir, keyid: enrolled.holder }
  }

  /**
   * Publishes a package of STEP_SCRIPT (plus `files`) as release `name` 1.0.0, approved for
   * CUSTOMER and seeded by the console's origin.
   */
  async publish (group: string, name: string, files: Record<string, string | Buffer> = {}): Promise<Pkg> {
    const version = '1.0.0'
    const base = path.join(this.dir, group, name)
    const src = path.join(base, 'pkg')
    const ctrl = path.join(base, 'ctrl')
    await fs.mkdir(src, { recursive: true })
    await fs.mkdir(ctrl, { recursive: true })
    this.ctrls.add(ctrl)
    await fs.writeFile(path.join(src, 'step.sh'), STEP_SCRIPT, { mode: 0o755 })
    await fs.writeFile(path.join(src, 'release.txt'), `${name} ${version}\n`)
    for (const [rel, body] of Object.entries(files)) await fs.writeFile(path.join(src, rel), body)
    const { manifest, digest } = await this.origin.store.importSource(src)
    const release = await this.org.release(name, version, {
      risk: 'high',
      manifest: { digest, size: manifest.size },
      install: { type: 'exec', argv: ['step.sh'], health: ['step.sh'], rollback: ['step.sh'], env: { CTRL: ctrl, VERSION: version }, timeoutMs: 60_000 },
      platform: 'linux'
    })
    const view = await this.api.releases.add(OWNER, release)
    await this.origin.publish(view.hash, src)
    await this.api.releases.approve(OWNER, view.hash, CUSTOMER)
    return { name, version, hash: view.hash, digest, size: manifest.size, src, ctrl }
  }

  /** A one-phase rollout of `pkg` to every endpoint of `tenant`. */
  async rollout (id: string, pkg: Pkg, tenant: string): Promise<void> {
    await this.api.rollouts.create(OWNER, { id, release: pkg.hash, target: { tenant }, phases: [{ name: 'all', successThreshold: 1, errorThreshold: 1, minSoakMinutes: 0 }] })
  }

  /** The job state the console's views hold for an endpoint and release. */
  consoleState (keyid: string, pkg: Pkg): string | undefined {
    return this.console.views.patchRecord(keyid, pkg.hash)?.state
  }

  /** Every agent event of one endpoint in the console's log, in log order. */
  async consoleEvents (keyid: string): Promise<AgentEvent[]> {
    const out: AgentEvent[] = []
    for await (const e of this.console.log.entries()) {
      if (e.source === 'agent' && e.envelope.signed.endpoint === keyid) out.push(e.envelope.signed)
    }
    return out
  }

  /** `patchswarm agent run --data <dir> --check-in 200 --verbose` as a child process. */
  startAgent (dir: string): AgentProcess {
    const agent = new AgentProcess(dir, path.dirname(dir))
    this.agents.add(agent)
    void agent.exited.then(() => this.agents.delete(agent))
    return agent
  }

  /**
   * Ends step scripts still running under `ctrl` (all packages when absent): the teardown's safety
   * net, so a failing test leaves no process behind. The agent itself must end what a SIGKILLed
   * run of it left (its crash marker names the step's process group); the tests assert that.
   */
  async killOrphans (ctrl?: string): Promise<number[]> {
    const killed: number[] = []
    for (const dir of ctrl === undefined ? this.ctrls : [ctrl]) {
      for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
        if (!name.endsWith('.pid')) continue
        const pid = Number((await fs.readFile(path.join(dir, name), 'utf8').catch(() => '')).trim())
        if (Number.isInteger(pid) && pid > 1) {
          try { process.kill(-pid, 'SIGKILL'); killed.push(pid) } catch { /* gone already */ }
        }
        await fs.rm(path.join(dir, name), { force: true })
      }
    }
    return killed
  }

  async destroy (): Promise<void> {
    for (const agent of [...this.agents]) await agent.kill('SIGKILL')
    await this.killOrphans()
    await this.closeSwarm().catch(() => {})
    await this.console?.close().catch(() => {})
    await this.testnet.destroy()
  }
}

/** A running `patchswarm agent run`, its stderr log lines (the `msg` of each JSON line) kept in order. */
export class AgentProcess {
  readonly child: ChildProcess
  readonly dir: string
  /** The `msg` of every JSON log line, and any other stderr line as it came. */
  readonly lines: string[] = []
  readonly exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  /**
   * start() has returned (the command printed "agent … running"): recovery and inventory are done
   * and its SIGTERM handler is in place. A SIGTERM before that ends the process at once (`agent run`
   * listens for it only after start()), like a crash.
   */
  startedUp = false
  private readonly waiters = new Set<() => void>()
  private rest = ''

  constructor (dir: string, cwd: string) {
    this.dir = dir
    this.child = spawn(process.execPath, cliArgs('agent', 'run', '--data', dir, '--check-in', '200', '--verbose'), { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => { this.wake(); resolve({ code, signal }) }))
    this.child.stdout!.setEncoding('utf8')
    this.child.stdout!.on('data', (chunk: string) => {
      if (!this.startedUp && / running in /.test(chunk)) { this.startedUp = true; this.wake() }
    })
    this.child.stderr!.setEncoding('utf8')
    this.child.stderr!.on('data', (chunk: string) => {
      const parts = (this.rest + chunk).split('\n')
      this.rest = parts.pop()!
      for (const line of parts) {
        if (line === '') continue
        let msg = line
        try { msg = (JSON.parse(line) as { msg?: string }).msg ?? line } catch { /* not a log line */ }
        this.lines.push(msg)
      }
      this.wake()
    })
  }

  get running (): boolean { return this.child.exitCode === null && this.child.signalCode === null }

  /** Resolves with the first line from index `from` on that matches; rejects if the agent exits first. */
  async waitFor (match: RegExp | string, opts: { from?: number, ms?: number } = {}): Promise<string> {
    const test = (l: string) => typeof match === 'string' ? l.includes(match) : match.test(l)
    const end = Date.now() + (opts.ms ?? 30_000)
    for (;;) {
      const found = this.lines.slice(opts.from ?? 0).find(test)
      if (found !== undefined) return found
      if (!this.running) throw new Error(`the agent exited before logging ${String(match)}; its log:\n${this.lines.join('\n')}`)
      const left = end - Date.now()
      if (left <= 0) throw new Error(`timed out waiting for the agent to log ${String(match)}; its log:\n${this.lines.join('\n')}`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 1000))
        this.waiters.add(() => { clearTimeout(timer); resolve() })
      })
    }
  }

  /** Polls `fn` like until(); a timeout or the agent's exit rejects with the agent's log. */
  async until (what: string, fn: () => Promise<boolean> | boolean, ms = 30_000): Promise<void> {
    const end = Date.now() + ms
    while (!await fn()) {
      if (!this.running) throw new Error(`the agent exited before ${what}; its log:\n${this.lines.join('\n')}`)
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}; the agent's log:\n${this.lines.join('\n')}`)
      await sleep(50)
    }
  }

  /** Transition lines of a package: "<from> → <to>" pairs, in order (not its other log lines). */
  transitions (name: string, from = 0): string[] {
    const prefix = `${name} 1.0.0: `
    return this.lines.slice(from).filter((l) => l.startsWith(prefix)).map((l) => l.slice(prefix.length)).filter((l) => /^\S+ → \S+$/.test(l))
  }

  async kill (signal: NodeJS.Signals): Promise<{ code: number | null, signal: NodeJS.Signals | null }> {
    if (this.running) this.child.kill(signal)
    return this.exited
  }

  private wake () {
    for (const w of [...this.waiters]) w()
    this.waiters.clear()
  }
}

/** What an agent's data folder holds (read while no agent runs on it). */
export interface AgentDisk {
  jobs: JobRecord[]
  markers: CrashMarker[]
  outbox: OutboxStats
}

export async function readAgentDisk (dir: string): Promise<AgentDisk> {
  const store = await openAgentStore(dir)
  try {
    const { jobs, markers } = await new JobStore(store.db).load()
    const signer = keySigner(await readSecretKeyFile(agentPaths(dir).identity))
    const outbox = new AgentOutbox(store.db, { signer, org: 'read-only', tenant: '' })
    const stats = await outbox.stats()
    await outbox.close()
    return { jobs, markers, outbox: stats }
  } finally {
    await store.close()
  }
}
