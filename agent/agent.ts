// The agent daemon: one enrolled endpoint. It joins the organisation swarm with its certificate,
// checks in with the console (SYNC) on a cron schedule with jitter and whenever the console comes
// online, verifies what the console sends (root → releases → directive, lib/trust), hands the
// assignments to the job runner, downloads packages from peers, and sends its signed events from
// the outbox until the console acknowledges them. The job runner decides what moves when
// (windows, retries, breaker, crash recovery); this file only wires and wakes it.
import fs from 'node:fs/promises'
import path from 'node:path'
import cron from 'node-cron'
import { PatchswarmError, isPatchswarmError } from '../lib/errors.js'
import { keySigner } from '../lib/crypto/keys.js'
import { readSecretKeyFile, writeAtomic } from '../lib/crypto/keyfile.js'
import { sublevel, type Sublevel } from '../lib/store/db.js'
import { PackageStore } from '../lib/content/package-store.js'
import { parseManifest, manifestDigest, type Manifest } from '../lib/content/manifest.js'
import { serializeEnvelope, type Envelope } from '../lib/trust/envelope.js'
import type { TrustedState } from '../lib/trust/trusted-state.js'
import { parseCertificate } from '../lib/trust/certificate.js'
import { SwarmNode, type FetchResult } from '../lib/swarm/node.js'
import { LINK, encodeLink, decodeLink, MAX_REPORT_BATCH, MAX_LINK_BYTES, type StateMessage, type AckMessage } from '../lib/console/link.js'
import type { PeerIdentity } from '../lib/trust/certificate.js'
import { agentPaths, loadConfig, type AgentConfig } from './config.js'
import { agentTrust, readEnrollment } from './enroll.js'
import { openAgentStore, type AgentStore } from './store.js'
import { AgentOutbox } from './outbox.js'
import { JobRunner } from './job-runner.js'
import type { JobPolicy, JobRecord } from './jobs.js'
import { InstallerRegistry } from './installers/installer.js'
import { execInstaller } from './installers/exec.js'
import { createFilesInstaller } from './installers/files.js'
import { run } from './installers/run.js'
import { collectInventory } from './inventory.js'
import { windowState } from '../lib/policy/windows.js'
import type { LiveStatus } from './status.js'

export const AGENT_VERSION = '0.1.0'
const MAX_SLEEP_MS = 60_000
/** Inventory events stay well inside MAX_EVENT_BYTES (64 KiB) with the envelope around them. */
const INVENTORY_BYTES = 40 * 1024
/** How long a report batch waits for its ack before it is sent again (the console ignores duplicates). */
const ACK_TIMEOUT_MS = 10_000
/** Least time between two DHT lookups for a console that is not connected. */
const REFRESH_MS = 5000
/** While the console is not connected, look for it after 2 s, then 4 s, 8 s … */
const SEEK_FIRST_MS = 2000
/** … and at least this often: check-ins may be 15 minutes apart. */
const SEEK_MAX_MS = 5 * 60_000
/** A download that receives no chunk for this long fails (TIMEOUT) and is tried again after a back-off. */
export const DEFAULT_DOWNLOAD_STALL_MS = 10 * 60_000
/** On a clean stop, how long the agent waits for the console to take its last reports ('stopped'). */
const FINAL_SEND_MS = 3000
const DEFAULT_POLICY: JobPolicy = { windows: null, forceAfterDeadline: false, rebootAllowed: false }

export interface AgentOptions {
  clock?: () => Date
  log?: (line: string) => void
  /** Overrides the config's check-in schedule with a fixed interval (tests, the demo). */
  checkInMs?: number
  /** Collect inventory at start (default true). */
  inventory?: boolean
  /** A download that gets no chunk for this long fails with TIMEOUT (default 10 minutes). */
  downloadStallMs?: number
}

export class Agent {
  readonly dir: string
  readonly config: AgentConfig
  readonly store: AgentStore
  readonly trust: TrustedState
  readonly packages: PackageStore
  readonly outbox: AgentOutbox
  readonly runner: JobRunner
  readonly node: SwarmNode
  readonly keyid: string
  readonly tenant: string
  readonly #state: Sublevel
  readonly #clock: () => Date
  readonly #log: (line: string) => void
  readonly #opts: AgentOptions
  #timer: NodeJS.Timeout | null = null
  #checkIn: { stop (): void, next (): Date | null } | null = null
  #stepping: Promise<void> = Promise.resolve()
  #again = false
  #closing: Promise<void> | undefined
  #sending = false
  /** close() sends the last reports: #flush works while it does. */
  #draining = false
  /** Downloads waiting on a package's chunks (for their stall timers): digest → their "progress" calls. */
  readonly #progress = new Map<string, Set<() => void>>()
  #listening = false
  #lastRefresh = 0
  #ackTimer: NodeJS.Timeout | null = null
  #seekTimer: NodeJS.Timeout | null = null
  #flushAgain = false

  private constructor (init: { dir: string, config: AgentConfig, store: AgentStore, trust: TrustedState, node: SwarmNode, packages: PackageStore, outbox: AgentOutbox, runner: JobRunner, keyid: string, tenant: string, state: Sublevel, opts: AgentOptions }) {
    this.dir = init.dir
    this.config = init.config
    this.store = init.store
    this.trust = init.trust
    this.node = init.node
    this.packages = init.packages
    this.outbox = init.outbox
    this.runner = init.runner
    this.keyid = init.keyid
    this.tenant = init.tenant
    this.#state = init.state
    this.#opts = init.opts
    this.#clock = init.opts.clock ?? (() => new Date())
    this.#log = init.opts.log ?? (() => {})
  }

  /** Opens an enrolled agent's data folder (IN_USE if another agent has it). Call start() to run. */
  static async open (dir: string, opts: AgentOptions = {}): Promise<Agent> {
    const paths = agentPaths(dir)
    const config = await loadConfig(dir)
    const enrollment = await readEnrollment(dir)
    if (enrollment === null) throw PatchswarmError.NOT_FOUND(`${dir} is not enrolled: run patchswarm agent enroll --token …`)
    if (enrollment.status !== 'approved' || !enrollment.certificate) throw PatchswarmError.NOT_APPROVED('the console has not approved this endpoint yet; run patchswarm agent enroll again once it has')
    const keyPair = await readSecretKeyFile(paths.identity)
    const signer = keySigner(keyPair)
    const cert = parseCertificate(enrollment.certificate.signed)
    const store = await openAgentStore(dir)
    try {
      const clock = opts.clock ?? (() => new Date())
      const trust = agentTrust(store.db)
      await trust.ready()
      if (!trust.root) throw PatchswarmError.BAD_STATE('no pinned root: enroll again')
      const state = sublevel(store.db, 'agent-state')
      const packages = new PackageStore({ dir: paths.packages, db: sublevel(store.db, 'packages') })
      const outbox = new AgentOutbox(store.db, { signer, org: config.org, tenant: cert.tenant, clock })
      const node = new SwarmNode({
        keyPair,
        certificate: serializeEnvelope(enrollment.certificate),
        root: () => trust.root!,
        store: packages,
        bootstrap: config.bootstrap,
        ...(config.host ? { host: config.host } : {}),
        ...(config.firewalled !== undefined ? { firewalled: config.firewalled } : {})
      })
      const installers = new InstallerRegistry()
      installers.register(execInstaller)
      installers.register(createFilesInstaller({ installRoot: path.resolve(dir, config.installRoot) }))
      let agent: Agent | undefined
      const runner = new JobRunner({
        db: store.db,
        outbox,
        installers,
        clock,
        workRoot: store.workRoot,
        packageDir: async (job) => {
          const dest = path.join(store.workRoot, job.id, 'package')
          if (!await exists(dest)) await packages.checkout(job.release.manifest, dest)
          return dest
        },
        download: (job, signal) => agent!.download(job, signal),
        policy: async () => (await state.get('policy') as JobPolicy | undefined) ?? DEFAULT_POLICY,
        reboot: async () => {
          const result = await run({ argv: [...config.rebootCommand], timeoutMs: 60_000 })
          if (!result.ok) throw PatchswarmError.INSTALL_FAILED(`reboot command failed: ${result.reason ?? result.code}`)
        },
        ...(opts.log ? { log: opts.log } : {})
      })
      agent = new Agent({ dir, config, store, trust, node, packages, outbox, runner, keyid: signer.keyid, tenant: cert.tenant, state, opts })
      // Downloads run in the background: when one ends, a step moves its job on.
      runner.on('download-ended', () => agent!.wake())
      return agent
    } catch (err) {
      await store.close()
      throw err
    }
  }

  /** Recovers interrupted jobs, joins the swarm, and starts the schedule. */
  async start (): Promise<void> {
    await this.packages.ready()
    await this.outbox.ready()
    await this.runner.ready()
    // 'started' comes first, so a step that a crash interrupted and recovery runs again shows in
    // the story: … installing, started, health-check …
    await this.outbox.append({ kind: 'agent', agent: { state: 'started', version: AGENT_VERSION } })
    // On the swarm before recovery, which may run a long install again: reports keep flowing.
    this.node.on('peer-open', (peer: PeerIdentity) => { if (this.#isConsole(peer)) { this.#sync(); this.#flush() } })
    this.node.on('peer-close', (peer: PeerIdentity) => { if (this.#isConsole(peer)) this.#seekConsole() })
    this.node.on('control', (m: { from: PeerIdentity, kind: number, payload: Uint8Array }) => { this.#onControl(m).catch((err) => this.#log(`link: ${(err as Error).message}`)) })
    // Whatever stored an event (a job's step, a transfer, the inventory), it goes out now, not at
    // the next check-in: a flush with a batch already in flight does nothing, the ack sends on.
    this.outbox.on('appended', () => this.#flush())
    await this.node.ready()
    this.#seekConsole()
    await this.runner.recover()
    if (this.#opts.inventory !== false) await this.#inventory()
    if (this.#opts.checkInMs !== undefined) {
      const t = setInterval(() => this.#sync(), this.#opts.checkInMs)
      t.unref()
      const every = this.#opts.checkInMs
      this.#checkIn = { stop: () => clearInterval(t), next: () => new Date(this.#clock().getTime() + every) }
    } else {
      const jitter = this.config.checkIn.jitterSeconds * 1000
      const task = cron.schedule(this.config.checkIn.cron, () => { setTimeout(() => this.#sync(), Math.random() * jitter).unref() })
      this.#checkIn = { stop: () => { task.stop(); void task.destroy() }, next: () => task.getNextRun() }
    }
    this.wake()
  }

  /** Runs the job runner now (and again when it says something will be due). */
  wake (): void {
    if (this.#closing) return
    this.#again = true
    this.#stepping = this.#stepping.then(async () => {
      while (this.#again && !this.#closing) {
        this.#again = false
        if (this.#timer) clearTimeout(this.#timer)
        try {
          const result = await this.runner.step()
          await this.#publishStatus(result.nextWakeAt).catch((err) => this.#log(`status: ${(err as Error).message}`))
          const next = result.nextWakeAt ? Math.max(0, result.nextWakeAt.getTime() - this.#clock().getTime()) : MAX_SLEEP_MS
          if (!this.#closing) {
            this.#timer = setTimeout(() => this.wake(), Math.min(next, MAX_SLEEP_MS))
            this.#timer.unref()
          }
        } catch (err) {
          this.#log(`step: ${(err as Error).message}`)
        }
      }
    })
  }

  close (): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#timer) clearTimeout(this.#timer)
      if (this.#seekTimer) clearTimeout(this.#seekTimer)
      this.#checkIn?.stop()
      // The runner aborts a running step (it keeps its crash marker: the next start runs it again)
      // and the downloads in flight (what arrived is kept: the next fetch resumes).
      await this.runner.close()
      await this.#stepping.catch(() => {})
      // A clean stop says so (a crash does not): the console can tell the two apart. Last, so that
      // nothing the stop itself changed comes after it.
      await this.outbox.append({ kind: 'agent', agent: { state: 'stopped', version: AGENT_VERSION } }).catch(() => {})
      await this.#sendLast(FINAL_SEND_MS).catch((err) => this.#log(`final send: ${(err as Error).message}`))
      if (this.#ackTimer) clearTimeout(this.#ackTimer)
      await this.node.close()
      await this.outbox.close()
      await this.packages.close()
      await this.store.close()
    })()
    return this.#closing
  }

  /** While the console is connected, sends what is pending and waits (at most `ms`) for its acks. */
  async #sendLast (ms: number): Promise<void> {
    if (this.#consolePeers().length === 0 || (await this.outbox.stats()).pending === 0) return
    const end = Date.now() + ms
    this.#draining = true
    try {
      this.#sending = false // a batch in flight is sent again with the rest (the console ignores duplicates)
      this.#flush()
      while (Date.now() < end && this.#consolePeers().length > 0 && (await this.outbox.stats()).pending > 0) {
        await new Promise((resolve) => setTimeout(resolve, 25))
      }
    } finally {
      this.#draining = false
    }
  }

  /**
   * Fetches a job's package from the swarm and reports where its bytes came from. Ends at once when
   * `signal` aborts, and with TIMEOUT when no chunk arrived for downloadStallMs. Either way only the
   * wait ends: the swarm node's download goes on and keeps what arrives, so the next fetch of the
   * package resumes it (or finds it complete).
   */
  async download (job: JobRecord, signal: AbortSignal): Promise<void> {
    const manifest = await this.#state.get(`manifest!${job.release.manifest}`) as Manifest | undefined
    if (!manifest) throw PatchswarmError.UNAVAILABLE(`no manifest for ${job.release.name} ${job.release.packageVersion} yet; it comes with the console's next state`)
    if (signal.aborted) throw PatchswarmError.CLOSED('download aborted')
    const parsed = parseManifest(manifest)
    const stallMs = this.#opts.downloadStallMs ?? DEFAULT_DOWNLOAD_STALL_MS
    const fetching = this.node.fetch(parsed)
    fetching.catch(() => {}) // a wait given up: the node closing ends its download later
    const result = await new Promise<FetchResult>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined
      const arm = () => {
        clearTimeout(timer)
        timer = setTimeout(() => finish(PatchswarmError.TIMEOUT(`no progress for ${Math.round(stallMs / 1000)} s`)), stallMs)
        timer.unref()
      }
      const digest = job.release.manifest
      const onAbort = () => finish(isPatchswarmError(signal.reason) ? signal.reason : PatchswarmError.CLOSED('download aborted'))
      const finish = (err: Error | null, r?: FetchResult) => {
        clearTimeout(timer)
        const waiting = this.#progress.get(digest)
        waiting?.delete(arm)
        if (waiting?.size === 0) this.#progress.delete(digest)
        signal.removeEventListener('abort', onAbort)
        if (err) reject(err)
        else resolve(r!)
      }
      arm()
      // One listener for all downloads (there may be many at once).
      if (!this.#listening) {
        this.#listening = true
        this.node.on('chunk', (c: { digest: string }) => { for (const progress of this.#progress.get(c.digest) ?? []) progress() })
      }
      let waiting = this.#progress.get(digest)
      if (!waiting) this.#progress.set(digest, waiting = new Set())
      waiting.add(arm)
      signal.addEventListener('abort', onAbort, { once: true })
      fetching.then((r) => finish(null, r), (err: Error) => finish(err))
    })
    await this.outbox.append({ kind: 'transfer', transfer: { manifest: result.digest, bytes: { origin: result.received.origin, site: result.received.site, peer: result.received.peer, local: result.local } } })
  }

  #isConsole (peer: PeerIdentity): boolean {
    const key = this.config.console.consoleKey
    return key !== undefined ? peer.keyid === key : peer.role === 'origin'
  }

  #consolePeers (): string[] {
    return this.node.connectedPeers().filter((p) => this.#isConsole(p)).map((p) => p.keyid)
  }

  #sync (): void {
    const directive = this.trust.directive?.directive.version ?? 0
    const consoles = this.#consolePeers()
    for (const key of consoles) this.node.sendControl(key, LINK.SYNC, encodeLink({ directive }))
    this.#flush() // a check-in also carries what is still waiting for an ack
    // Not connected to the console: look the topic up again (two nodes that joined at the same
    // moment can miss each other until the DHT's next refresh, minutes later).
    const now = Date.now()
    if (consoles.length === 0 && now - this.#lastRefresh > REFRESH_MS) {
      this.#lastRefresh = now
      this.node.refresh().catch((err) => this.#log(`refresh: ${(err as Error).message}`))
    }
  }

  /**
   * Until the console is connected, looks for it again and again, backing off: the DHT lookup at
   * the start can miss it (both just joined), and reports should not wait for the next check-in.
   */
  #seekConsole (delay = SEEK_FIRST_MS): void {
    if (this.#closing || this.#seekTimer) return
    this.#seekTimer = setTimeout(() => {
      this.#seekTimer = null
      if (this.#closing || this.#consolePeers().length > 0) return
      this.#sync()
      this.#seekConsole(Math.min(delay * 2, SEEK_MAX_MS))
    }, delay)
    this.#seekTimer.unref()
  }

  /** Sends pending events (one batch in flight at a time); the ack triggers the next batch. */
  #flush (): void {
    if (this.#closing && !this.#draining) return
    // One at a time; an event stored meanwhile is looked for once this one is done.
    if (this.#sending) { this.#flushAgain = true; return }
    const consoles = this.#consolePeers()
    if (consoles.length === 0) return
    this.#sending = true
    this.#flushAgain = false
    // The outbox keeps each event's canonical bytes: they go out as stored, not parsed and re-serialised.
    this.outbox.pendingSerialized({ limit: MAX_REPORT_BATCH }).then((events) => {
      if (events.length === 0) {
        this.#sending = false
        if (this.#flushAgain) this.#flush()
        return
      }
      const out: string[] = []
      let size = 64
      for (const text of events) {
        if (size + text.length + 3 > MAX_LINK_BYTES) break
        size += text.length + 3
        out.push(text)
      }
      for (const key of consoles) this.node.sendControl(key, LINK.REPORTS, encodeLink({ events: out }))
      // No ack within a while (lost, or the console is busy or restarting): send again.
      if (this.#ackTimer) clearTimeout(this.#ackTimer)
      this.#ackTimer = setTimeout(() => { this.#ackTimer = null; this.#sending = false; this.#flush() }, ACK_TIMEOUT_MS)
      this.#ackTimer.unref()
    }, () => { this.#sending = false })
  }

  async #onControl ({ from, kind, payload }: { from: PeerIdentity, kind: number, payload: Uint8Array }): Promise<void> {
    if (!this.#isConsole(from)) return
    if (kind === LINK.ACK) {
      const ack = decodeLink<AckMessage>(payload)
      if (this.#ackTimer) { clearTimeout(this.#ackTimer); this.#ackTimer = null }
      if (typeof ack.last === 'number') await this.outbox.ack(ack.last)
      for (const r of ack.rejected ?? []) this.#log(`console rejected event ${r.seq ?? '?'}: ${r.code}`)
      this.#sending = false
      if ((await this.outbox.stats()).pending > 0) this.#flush()
    } else if (kind === LINK.STATE) {
      await this.#applyState(decodeLink<StateMessage>(payload))
    }
  }

  /** Verifies the console's state top-down and hands the assignments to the runner. */
  async #applyState (s: StateMessage): Promise<void> {
    this.trust.beginCycle()
    const platform = `${process.platform}-${process.arch}`
    if (s.root && s.root.signed && (s.root.signed as { version?: number }).version !== this.trust.root?.version) await this.trust.updateRoot(s.root as Envelope)
    const releases = []
    for (const r of s.releases ?? []) {
      try { releases.push(await this.trust.verifyRelease(r, { platform })) } catch (err) { this.#log(`release refused: ${(err as Error).message}`) }
    }
    for (const [digest, m] of Object.entries(s.manifests ?? {})) {
      const manifest = parseManifest(m)
      if (manifestDigest(manifest) === digest) await this.#state.put(`manifest!${digest}`, manifest)
    }
    if (s.policy) await this.#state.put('policy', { windows: s.policy.windows, forceAfterDeadline: s.policy.forceAfterDeadline, rebootAllowed: s.policy.rebootAllowed } satisfies JobPolicy)
    if (s.directive) {
      const verified = await this.trust.verifyDirective(s.directive, { releases, endpoint: { keyid: this.keyid, tenant: this.tenant, platform } })
      for (const a of verified.assignments) {
        try {
          await this.runner.assign(a, { issued: verified.directive.issued })
        } catch (err) {
          if (!isPatchswarmError(err)) throw err
          this.#log(`assignment of ${a.release.name}: ${err.message}`)
        }
      }
    }
    this.wake()
  }

  /**
   * Writes status.json for `patchswarm agent status`, which cannot open the database while the
   * agent holds it: jobs, breakers, the maintenance window, the next check-in, the outbox.
   */
  async #publishStatus (nextWakeAt: Date | undefined): Promise<void> {
    const now = this.#clock()
    const policy = (await this.#state.get('policy') as JobPolicy | undefined) ?? DEFAULT_POLICY
    const window = policy.windows === null ? null : windowState(policy.windows, now)
    const live: LiveStatus = {
      at: now.toISOString(),
      pid: process.pid,
      endpoint: this.keyid,
      jobs: this.runner.status(),
      windows: policy.windows,
      window: window === null
        ? null
        : { open: window.open, ...(window.closesAt ? { closesAt: window.closesAt.toISOString() } : {}), ...(window.nextOpen ? { nextOpen: window.nextOpen.toISOString() } : {}) },
      forceAfterDeadline: policy.forceAfterDeadline,
      rebootAllowed: policy.rebootAllowed,
      nextStep: nextWakeAt?.toISOString() ?? null,
      nextCheckIn: this.#checkIn?.next()?.toISOString() ?? null,
      outbox: await this.outbox.stats(),
      consoleConnected: this.#consolePeers().length > 0
    }
    await writeAtomic(agentPaths(this.dir).status, JSON.stringify(live, null, 2) + '\n', 0o600)
  }

  async #inventory (): Promise<void> {
    const installed = this.runner.status().filter((j) => j.state === 'installed').map((j) => ({ name: j.name, version: j.packageVersion }))
    const inventory = await collectInventory({ agentVersion: AGENT_VERSION, installed, commandTimeoutMs: 10_000 }) as unknown as Record<string, unknown>
    // An event is bounded (MAX_EVENT_BYTES): a long OS package list is cut, its count kept.
    const os = inventory.osPackages as { items?: unknown[], truncated?: boolean } | undefined
    while (os?.items && os.items.length > 0 && Buffer.byteLength(JSON.stringify(inventory)) > INVENTORY_BYTES) {
      os.items = os.items.slice(0, Math.floor(os.items.length / 2))
      os.truncated = true
    }
    await this.outbox.append({ kind: 'inventory', inventory })
  }
}

async function exists (p: string): Promise<boolean> {
  try { await fs.access(p); return true } catch { return false }
}
