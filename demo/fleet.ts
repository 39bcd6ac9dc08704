// The fleet demo (`npm start`): patchswarm as an MSP runs it, on this machine. A console on a local
// DHT testnet; an MSP with two customers in several sites; agents enrolled with site tokens, each
// then running as its own `patchswarm agent run` process; a package released, approved and rolled
// out through a pilot ring and a broad ring, inside maintenance windows that open during the demo;
// one machine whose service breaks under the update, so its health check fails and the agent rolls
// the install back. Everything goes through the same APIs an admin and an agent use.
//
// The data folder keeps the organisation's keys and root between runs (as an organisation would);
// the fleet itself (console, agents, package) is rebuilt on every run under <data>/run.
import fs from 'node:fs/promises'
import path from 'node:path'
import type { Subscription } from 'rxjs'
import { generateKeyPair, keySigner, keyIdOf, type KeyPair } from '../lib/crypto/keys.js'
import { readSecretKeyFile, writeSecretKeyFile, writeAtomic } from '../lib/crypto/keyfile.js'
import { newRoot, newRelease, signEnvelope, serializeEnvelope, parseEnvelope, type Envelope } from '../lib/trust/index.js'
import { startTestnet, type LocalTestnet } from '../lib/swarm/transport.js'
import { Console } from '../lib/console/console.js'
import { ConsoleSwarm } from '../lib/console/console-swarm.js'
import { AdminApi, dispatcher, type EventLine } from '../lib/console/api.js'
import { RpcServer } from '../lib/console/rpc.js'
import type { Rollout } from '../lib/rollout/rollout.js'
import type { PatchRecord } from '../lib/report/records.js'
import { ERROR_STATES } from '../lib/rollout/engine.js'
import { enrollAgent } from '../agent/enroll.js'
import { generateSshKey } from '../tui/ssh/keys.js'
import { AgentProcesses } from './agents.js'
import { writeDemoPackage, BROKEN_MARKER } from './package.js'

export const ADMIN = 'demo'
export const MSP = 'northwind-it'
export const CUSTOMERS = ['acme', 'globex'] as const
const SITE_NAMES = ['vienna', 'graz', 'berlin', 'munich', 'zurich', 'prague', 'lyon', 'milan', 'oslo', 'porto']
export const MIN_AGENTS = 6
export const MAX_AGENTS = 64

export interface FleetDemoOptions {
  /** The data folder (absolute). */
  data: string
  agents: number
  /** Sites, spread over the two customers (the first customer gets the first, third … site). */
  sites: number
  packageMib: number
  /** Seconds after set-up at the earliest when the broad ring's maintenance window opens (at a whole minute). */
  windowDelayS: number
  /** Minimum soak of the pilot ring, seconds. */
  pilotSoakS: number
  /** Progress lines. */
  say: (line: string) => void
}

export interface DemoEndpoint {
  name: string
  keyid: string
  customer: string
  group: 'pilot' | 'staff'
  site: string
  ring: 'pilot' | 'broad'
  broken: boolean
  dir: string
}

export interface DemoSummary {
  org: string
  rollout: { id: string, state: string, phases: Array<{ name: string, state: string, endpoints: number }> }
  endpoints: number
  patched: number
  rolledBack: number
  /** Endpoints neither patched nor rolled back when the demo ended. */
  unfinished: number
  designedFailure: { endpoint: string, state: string, reason: string | null }
  wanSavings: number | null
  bytes: { origin: number, site: number, peer: number, delivered: number }
  timeToPatch: { count: number, medianSeconds: number | null, p95Seconds: number | null }
  seconds: number
  /** The agent processes the demo ran; none of them runs any more once the demo has ended. */
  agentPids: number[]
  data: string
}

/** A running demo fleet: its console API (for the TUI), progress, outcome and shutdown. */
export class FleetDemo {
  readonly opts: FleetDemoOptions
  readonly runDir: string
  readonly agents: AgentProcesses
  readonly endpoints: DemoEndpoint[] = []
  console: Console | null = null
  api: AdminApi | null = null
  socketPath: string | null = null
  rolloutId = 'demo-service-1.0.0'
  releaseHash = ''
  readonly #startedAt = Date.now()
  readonly #closers: Array<() => Promise<unknown>> = []
  #progress: Subscription | null = null

  constructor (opts: FleetDemoOptions) {
    this.opts = opts
    this.runDir = path.join(opts.data, 'run')
    this.agents = new AgentProcesses(path.join(opts.data, 'agents.json'))
  }

  /** Builds the fleet and starts the rollout; afterwards call outcome(), then close(). */
  async start (): Promise<void> {
    const { say } = this.opts
    const leftovers = await this.agents.endLeftovers()
    if (leftovers > 0) say(`cleanup   ended ${leftovers} agent process(es) an interrupted run left behind`)
    await fs.rm(this.runDir, { recursive: true, force: true })
    await fs.mkdir(path.join(this.runDir, 'logs'), { recursive: true })

    const keys = await organisationKeys(path.join(this.opts.data, 'keys'), say)

    const testnet: LocalTestnet = await startTestnet(3, { host: '127.0.0.1' })
    this.#closers.unshift(() => testnet.destroy())
    const bootstrap = testnet.bootstrap
    say(`dht       a local DHT testnet on ${bootstrap.map((b) => `${b.host}:${b.port}`).join(', ')} (the public DHT is never asked)`)

    // The console: its LevelDB, the swarm (origin, enrollment, reports), the admin socket.
    const consoleDir = path.join(this.runDir, 'console')
    const node = await Console.open({ dataDir: consoleDir, root: keys.root, consoleKey: keys.console, tickMs: 500 })
    this.#closers.unshift(() => node.close())
    this.console = node
    const swarm = new ConsoleSwarm(node, keys.console.secretKey, { dataDir: consoleDir, bootstrap, host: '127.0.0.1' })
    this.#closers.unshift(() => swarm.close())
    await swarm.ready()
    const api = this.api = new AdminApi(node)
    await node.fleet.bootstrapOwner({ id: ADMIN, sshKey: generateSshKey(`${ADMIN}@patchswarm-demo`).publicKey })
    const socketPath = path.join(consoleDir, 'console.sock')
    try {
      const rpc = new RpcServer(socketPath, dispatcher(api))
      await rpc.listen()
      this.#closers.unshift(() => rpc.close())
      this.socketPath = socketPath
      say(`console   running: LevelDB in ${rel(consoleDir)}, admin socket ${rel(socketPath)}`)
    } catch (err) {
      say(`console   running: LevelDB in ${rel(consoleDir)} (no admin socket: ${(err as Error).message})`)
    }

    await this.#buildTree()
    await this.#enrollAgents(bootstrap)
    await this.#release(swarm, keys)
    // Windows last: the broad ring's opens a set time after the rollout starts, however long
    // the agents took to start on this machine.
    await this.#setPolicies()
    this.#followProgress()
    await this.#rollOut()
  }

  async #buildTree (): Promise<void> {
    const fleet = this.console!.fleet
    await fleet.createTenant(ADMIN, { parent: '', name: MSP, kind: 'msp' })
    const sites = Array.from({ length: this.opts.sites }, (_, i) => SITE_NAMES[i] ?? `site-${i + 1}`)
    const customerOf = (siteIndex: number) => CUSTOMERS[siteIndex % CUSTOMERS.length]!
    for (const customer of CUSTOMERS) {
      await fleet.createTenant(ADMIN, { parent: MSP, name: customer, kind: 'customer' })
      for (const group of ['pilot', 'staff']) await fleet.createTenant(ADMIN, { parent: `${MSP}/${customer}`, name: group, kind: 'group' })
    }
    // Agent k sits in site k mod sites; the first quarter of them form the pilot ring; the last is
    // the machine whose service the update breaks (in the broad ring).
    const pilots = Math.max(1, Math.round(this.opts.agents / 4))
    for (let k = 0; k < this.opts.agents; k++) {
      const siteIndex = k % sites.length
      const customer = customerOf(siteIndex)
      const pilot = k < pilots
      this.endpoints.push({
        name: `pc-${String(k + 1).padStart(2, '0')}`,
        keyid: '',
        customer,
        group: pilot ? 'pilot' : 'staff',
        site: sites[siteIndex]!,
        ring: pilot ? 'pilot' : 'broad',
        broken: k === this.opts.agents - 1,
        dir: path.join(this.runDir, 'agents', `pc-${String(k + 1).padStart(2, '0')}`)
      })
    }
    const lines = CUSTOMERS.map((c) => `${c} (sites ${sites.filter((_, i) => customerOf(i) === c).join(', ') || 'none'})`)
    this.opts.say(`tenants   MSP ${MSP} › customers ${lines.join(' and ')}, each with groups pilot and staff`)
  }

  /**
   * Maintenance windows: the pilot groups' window is open now; the MSP's (which every other group
   * inherits) opens at the first whole minute at least windowDelayS from now, for 30 minutes.
   */
  async #setPolicies (): Promise<void> {
    const api = this.api!
    const now = new Date()
    const current = new Date(Math.floor(now.getTime() / 60_000) * 60_000)
    const opens = new Date(Math.ceil((now.getTime() + this.opts.windowDelayS * 1000) / 60_000) * 60_000)
    const at = (d: Date) => `${d.getUTCMinutes()} ${d.getUTCHours()} * * *`
    await api.policies.set(ADMIN, MSP, { windows: [{ cron: at(opens), durationMinutes: 30, timezone: 'UTC' }] })
    for (const customer of CUSTOMERS) {
      await api.policies.set(ADMIN, `${MSP}/${customer}/pilot`, { windows: [{ cron: at(current), durationMinutes: 30, timezone: 'UTC' }] })
    }
    const hhmm = (d: Date) => d.toISOString().slice(11, 16)
    this.opts.say(`policy    windows: pilot groups ${hhmm(current)}–${hhmm(new Date(current.getTime() + 30 * 60_000))} UTC (open now); everyone else ${hhmm(opens)}–${hhmm(new Date(opens.getTime() + 30 * 60_000))} UTC (opens in ${Math.round((opens.getTime() - now.getTime()) / 1000)} s); downloads may start any time`)
  }

  /** One token per group and site (auto-approve); each agent enrolls, then runs as its own process. */
  async #enrollAgents (bootstrap: LocalTestnet['bootstrap']): Promise<void> {
    const api = this.api!
    const tokens = new Map<string, string>()
    for (const e of this.endpoints) {
      const scope = `${MSP}/${e.customer}/${e.group}`
      const key = `${scope}@${e.site}`
      if (tokens.has(key)) continue
      const uses = this.endpoints.filter((x) => `${MSP}/${x.customer}/${x.group}@${x.site}` === key).length
      const { token } = await api.endpoints.createToken(ADMIN, { scope, site: e.site, expiresAt: new Date(Date.now() + 3600_000), maxUses: uses, autoApprove: true })
      tokens.set(key, token)
    }
    await Promise.all(this.endpoints.map(async (e) => {
      const outcome = await enrollAgent({ dir: e.dir, token: tokens.get(`${MSP}/${e.customer}/${e.group}@${e.site}`)!, bootstrap, host: '127.0.0.1', hostname: e.name, timeoutMs: 30_000 })
      if (outcome.status !== 'approved') throw new Error(`${e.name} was not approved: ${outcome.status}`)
      e.keyid = outcome.holder
      if (e.broken) await fs.writeFile(path.join(e.dir, BROKEN_MARKER), 'the demo breaks this machine\'s service: its health check fails after the update\n')
    }))
    this.opts.say(`enroll    ${this.endpoints.length} agents enrolled with ${tokens.size} site tokens (auto-approve); ${this.endpoints.find((e) => e.broken)!.name}'s service will break under the update`)
    for (const e of this.endpoints) {
      await this.agents.start(e.name, e.dir, path.join(this.runDir, 'logs', `${e.name}.log`), ['--check-in', '1000', '--verbose', '--exit-with-parent'])
    }
    this.#closers.unshift(() => this.agents.stopAll())
    this.opts.say(`agents    ${this.endpoints.length} processes of \`patchswarm agent run\` (pids ${this.agents.pids.join(' ')}), logs in ${rel(path.join(this.runDir, 'logs'))}`)
  }

  async #release (swarm: ConsoleSwarm, keys: OrganisationKeys): Promise<void> {
    const api = this.api!
    const dir = path.join(this.runDir, 'package', 'demo-service-1.0.0')
    await writeDemoPackage(dir, '1.0.0', Math.round(this.opts.packageMib * 1024 * 1024))
    const { manifest, digest } = await swarm.store.importSource(dir)
    const release = newRelease({
      name: 'demo-service', packageVersion: '1.0.0', platform: 'linux', risk: 'high',
      manifest: { digest, size: manifest.size },
      install: { type: 'exec', argv: ['install.sh'], health: ['health.sh'], rollback: ['rollback.sh'], timeoutMs: 60_000 },
      expires: new Date(Date.now() + 30 * 86400_000)
    })
    const envelope = await signEnvelope(release, [keySigner(keys.release)])
    const view = await api.releases.add(ADMIN, serializeEnvelope(envelope).toString('utf8'), { content: dir })
    this.releaseHash = view.hash
    await api.releases.approve(ADMIN, view.hash, MSP)
    this.opts.say(`release   demo-service 1.0.0 (risk high): ${mib(manifest.size)}, ${manifest.chunks.length} chunks, signed by the release key, seeded by the console, approved for ${MSP}`)
  }

  async #rollOut (): Promise<void> {
    const broad = this.endpoints.filter((e) => e.ring === 'broad').length
    const rollout = await this.api!.rollouts.create(ADMIN, {
      id: this.rolloutId,
      release: this.releaseHash,
      target: { tenant: MSP },
      phases: [
        { name: 'pilot', select: { tenants: CUSTOMERS.map((c) => `${MSP}/${c}/pilot`) }, successThreshold: 1, errorThreshold: 0.5, minSoakMinutes: this.opts.pilotSoakS / 60 },
        { name: 'broad', successThreshold: 0.75, errorThreshold: 0.5, minSoakMinutes: 0 }
      ]
    })
    const sizes = rollout.phases.map((p) => p.endpoints.length)
    this.opts.say(`rollout   ${this.rolloutId}: pilot ring (${sizes[0]} endpoints, all must install, soak ${this.opts.pilotSoakS} s) → broad ring (${sizes[1] ?? broad}, 75 % must install, halts at 50 % errors)`)
  }

  /** Prints what the console hears: job steps, bytes by source, rollout changes. */
  #followProgress (): void {
    const names = new Map<string, string>()
    const width = Math.max(...this.endpoints.map((e) => e.name.length))
    this.#progress = this.api!.reports.events$(ADMIN, MSP, { last: 0, ms: 250 }).subscribe({
      next: (lines: EventLine[]) => {
        for (const line of lines) {
          if (!['job', 'transfer'].includes(line.kind) && !line.kind.startsWith('rollout.')) continue
          if (names.size === 0) for (const e of this.endpoints) names.set(e.keyid, e.name)
          const who = line.endpoint ? (names.get(line.endpoint) ?? line.endpoint.slice(0, 8)) : ''
          this.opts.say(`${`+${this.elapsed().toFixed(1)}s`.padStart(8)}  ${who.padEnd(width)}  ${line.text}`)
        }
      },
      error: (err: Error) => this.opts.say(`progress  stopped: ${err.message}`)
    })
  }

  elapsed (): number { return (Date.now() - this.#startedAt) / 1000 }

  /**
   * Waits until the demo has played out: the rollout left `running`, every healthy endpoint
   * installed, the broken one rolled back. Returns false on timeout (the summary says what is missing).
   */
  async outcome (timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    const end = Date.now() + timeoutMs
    while (Date.now() < end && !signal?.aborted) {
      const [rollout, records] = await Promise.all([this.api!.rollouts.get(ADMIN, this.rolloutId), this.#records()])
      const done = this.endpoints.every((e) => {
        const state = records.get(e.keyid)?.state
        return e.broken ? state !== undefined && ERROR_STATES.has(state) && state !== 'rolling-back' : state === 'installed'
      })
      if (done && rollout.state !== 'running') {
        // The progress feed hands over lines every 250 ms: let the last ones reach the screen.
        await new Promise((resolve) => setTimeout(resolve, 1000))
        return true
      }
      await new Promise((resolve) => setTimeout(resolve, 250))
    }
    return false
  }

  async #records (): Promise<Map<string, PatchRecord>> {
    const records = await this.api!.reports.records(ADMIN, MSP)
    return new Map(records.filter((r) => r.release === this.releaseHash).map((r) => [r.endpoint, r]))
  }

  async summary (): Promise<DemoSummary> {
    const api = this.api!
    const [rollout, records, kpis]: [Rollout, Map<string, PatchRecord>, Awaited<ReturnType<AdminApi['reports']['kpis']>>] =
      await Promise.all([api.rollouts.get(ADMIN, this.rolloutId), this.#records(), api.reports.kpis(ADMIN, MSP)])
    const states = this.endpoints.map((e) => records.get(e.keyid)?.state)
    const broken = this.endpoints.find((e) => e.broken)!
    const brokenRecord = records.get(broken.keyid)
    const seconds = (h: number | null) => h === null ? null : Math.round(h * 3600 * 10) / 10
    const patched = states.filter((s) => s === 'installed').length
    const rolledBack = states.filter((s) => s === 'rolled-back').length
    return {
      org: this.console!.org,
      rollout: { id: rollout.id, state: rollout.state, phases: rollout.phases.map((p) => ({ name: p.name, state: p.state, endpoints: p.endpoints.length })) },
      endpoints: this.endpoints.length,
      patched,
      rolledBack,
      unfinished: this.endpoints.length - patched - states.filter((s) => s !== undefined && ERROR_STATES.has(s)).length,
      designedFailure: { endpoint: broken.name, state: brokenRecord?.state ?? 'no report', reason: brokenRecord?.reason ?? null },
      wanSavings: kpis.wanSavings,
      bytes: { origin: kpis.bytes.origin, site: kpis.bytes.site, peer: kpis.bytes.peer, delivered: kpis.bytes.delivered },
      timeToPatch: { count: kpis.timeToPatch.count, medianSeconds: seconds(kpis.timeToPatch.medianHours), p95Seconds: seconds(kpis.timeToPatch.p95Hours) },
      seconds: Math.round(this.elapsed() * 10) / 10,
      agentPids: this.agents.pids,
      data: this.opts.data
    }
  }

  /** Stops the agents, the console, the swarm and the DHT; safe to call twice. */
  async close (): Promise<void> {
    this.#progress?.unsubscribe()
    this.#progress = null
    const closers = this.#closers.splice(0)
    for (const close of closers) await close().catch(() => {})
  }
}

export function summaryText (s: DemoSummary): string {
  const pct = (x: number | null) => x === null ? '—' : `${(x * 100).toFixed(1)} %`
  const secs = (x: number | null) => x === null ? '—' : `${x} s`
  return [
    `rollout        ${s.rollout.id}: ${s.rollout.state} (${s.rollout.phases.map((p) => `${p.name} ${p.state}, ${p.endpoints} endpoints`).join('; ')})`,
    `patched        ${s.patched} of ${s.endpoints} endpoints`,
    `rolled back    ${s.rolledBack}: ${s.designedFailure.endpoint} (${s.designedFailure.state}${s.designedFailure.reason ? `: ${s.designedFailure.reason}` : ''})`,
    ...(s.unfinished > 0 ? [`unfinished     ${s.unfinished}`] : []),
    `WAN savings    ${pct(s.wanSavings)} (origin ${mib(s.bytes.origin)}, same site ${mib(s.bytes.site)}, other peers ${mib(s.bytes.peer)} of ${mib(s.bytes.delivered)} delivered)`,
    `time to patch  median ${secs(s.timeToPatch.medianSeconds)}, p95 ${secs(s.timeToPatch.p95Seconds)} (${s.timeToPatch.count} installs, from the phase's start)`,
    `demo took      ${s.seconds} s; data in ${rel(s.data)}`
  ].join('\n')
}

interface OrganisationKeys { root: Envelope, release: KeyPair, console: KeyPair }

/**
 * The organisation's keys and its root, made on the first run and kept: root, release and console
 * keys (one each; a real organisation splits root and release keys over people, see the README).
 */
async function organisationKeys (dir: string, say: (line: string) => void): Promise<OrganisationKeys> {
  const rootFile = path.join(dir, 'root.json')
  try {
    const root = parseEnvelope(await fs.readFile(rootFile))
    const expires = Date.parse(String((root.signed as { expires?: string }).expires))
    if (expires > Date.now() + 7 * 86400_000) {
      const [release, consoleKey] = await Promise.all([readSecretKeyFile(path.join(dir, 'release.key')), readSecretKeyFile(path.join(dir, 'console.key'))])
      say(`keys      reused from ${rel(dir)}: root v${String((root.signed as { version?: number }).version)}, release and console keys`)
      return { root, release, console: consoleKey }
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') say(`keys      ${rel(dir)} unusable (${(err as Error).message}): making new ones`)
  }
  await fs.rm(dir, { recursive: true, force: true })
  await fs.mkdir(dir, { recursive: true, mode: 0o700 })
  const pairs = { root: generateKeyPair(), release: generateKeyPair(), console: generateKeyPair() }
  for (const [name, pair] of Object.entries(pairs)) await writeSecretKeyFile(path.join(dir, `${name}.key`), pair, { name })
  const doc = newRoot({
    org: 'northwind',
    keys: { root: [keyIdOf(pairs.root.publicKey)], release: [keyIdOf(pairs.release.publicKey)], console: [keyIdOf(pairs.console.publicKey)] },
    expires: new Date(Date.now() + 365 * 86400_000)
  })
  const root = await signEnvelope(doc, [keySigner(pairs.root)])
  await writeAtomic(rootFile, serializeEnvelope(root), 0o644)
  say(`keys      new root, release and console keys (Ed25519) and a signed root in ${rel(dir)}; kept for the next run`)
  return { root, release: pairs.release, console: pairs.console }
}

const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`
const rel = (p: string) => path.relative(process.cwd(), p) || '.'
