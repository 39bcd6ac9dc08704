// The agent's core on real parts for the job tests: a LevelDB in the test's folder, the outbox signing
// with a real endpoint key, the real exec and files installers running shell scripts from a package
// imported into a real PackageStore (and checked out read-only for each step), releases and
// directives verified by a real TrustedState. The clock is injected; "crashes" close everything
// without letting the runner go on, and reopen on the same folder.
import fs from 'node:fs/promises'
import path from 'node:path'
import type { Test } from 'tap'
import { generateKeyPair, keySigner, type Signer } from '../../lib/crypto/keys.js'
import { openDatabase, sublevel, type Database } from '../../lib/store/db.js'
import { PackageStore } from '../../lib/content/package-store.js'
import { PatchswarmError } from '../../lib/errors.js'
import {
  TrustedState, newRoot, newRelease, newDirective, releaseRef, signEnvelope,
  type Assignment, type InstallSpec, type VerifiedAssignment, type VerifiedRelease
} from '../../lib/trust/index.js'
import { verifyEvent, type AgentEvent, type SignedEvent } from '../../lib/report/event.js'
import type { MaintenanceWindow } from '../../lib/policy/windows.js'
import { AgentOutbox } from '../../agent/outbox.js'
import { JobRunner, type JobRunnerOptions } from '../../agent/job-runner.js'
import type { JobPolicy, JobRecord } from '../../agent/jobs.js'
import { InstallerRegistry } from '../../agent/installers/installer.js'
import { createExecInstaller } from '../../agent/installers/exec.js'
import { createFilesInstaller } from '../../agent/installers/files.js'

export const ORG = 'acme'
export const TENANT = 'msp-1/customer-a'
export const MINUTE = 60_000
export const HOUR = 60 * MINUTE
export const DAY = 24 * HOUR

export class Clock {
  t: number
  constructor (start: string | number) { this.t = typeof start === 'number' ? start : Date.parse(start) }
  readonly now = (): Date => new Date(this.t)
  set (iso: string): void { this.t = Date.parse(iso) }
  advance (ms: number): void { this.t += ms }
}

/** One shell script for every step: it obeys files in $CTRL, and keeps the "system" in $CTRL/installed. */
export const STEP_SCRIPT = `#!/bin/sh
echo "$PATCHSWARM_STEP" >> "$CTRL/log"
case "$PATCHSWARM_STEP" in
  install)
    if [ -f "$CTRL/pause-install" ] && [ ! -f "$CTRL/started" ]; then
      echo half > "$CTRL/installed.partial"; echo started > "$CTRL/started"
      while [ -f "$CTRL/pause-install" ]; do sleep 0.05; done
    fi
    [ -f "$CTRL/hang-install" ] && { echo hanging; sleep 30; }
    if [ -f "$CTRL/noisy" ]; then i=0; while [ $i -lt 2000 ]; do echo "noise line $i"; i=$((i+1)); done; echo "the real cause"; fi
    [ -f "$CTRL/fail-install" ] && { echo "install broke" >&2; exit 3; }
    rm -f "$CTRL/installed.partial"
    echo "$VERSION" > "$CTRL/installed"
    echo "install ok";;
  health)
    [ -f "$CTRL/fail-health" ] && { echo "service down" >&2; exit 1; }
    [ -f "$CTRL/installed" ] || { echo "not installed"; exit 1; }
    echo healthy;;
  rollback)
    [ -f "$CTRL/fail-rollback" ] && { echo "rollback broke" >&2; exit 4; }
    rm -f "$CTRL/installed" "$CTRL/installed.partial"
    echo "rolled back";;
esac
`

export interface PublishOptions {
  name?: string
  version?: string
  /** Overrides of the exec spec, or a whole spec. */
  spec?: Partial<Extract<InstallSpec, { type: 'exec' }>> | InstallSpec
  /** Files of the package (default: the step script as bin/step.sh). */
  files?: Record<string, string>
}

export interface AssignOptions {
  action?: Assignment['action']
  deadline?: string
  rollout?: string
}

export interface Harness {
  readonly dir: string
  readonly ctrl: string
  readonly clock: Clock
  readonly policy: JobPolicy
  readonly signer: Signer
  readonly db: Database
  readonly outbox: AgentOutbox
  readonly runner: JobRunner
  readonly store: PackageStore
  /** Times (ms) at which the runner asked for a reboot. */
  readonly reboots: number[]
  /** What the endpoint's boot id is now; change it to simulate a restart of the machine. */
  boot: string
  /** Runs inside download(); may advance the clock or throw. */
  onDownload?: (job: JobRecord, signal: AbortSignal) => Promise<void> | void
  downloads: number
  /** Runs inside reboot() before it is recorded; may throw. */
  onReboot?: () => Promise<void> | void
  publish (opts?: PublishOptions): Promise<VerifiedRelease>
  assignment (release: VerifiedRelease, opts?: AssignOptions): Promise<VerifiedAssignment>
  /** Closes runner, outbox and database as a dying process would leave them, then opens new ones. */
  restart (): Promise<void>
  /** The steps the script ran, in order. */
  scriptLog (): Promise<string[]>
  ctrlFile (name: string, on?: boolean): Promise<void>
  exists (name: string): Promise<boolean>
}

export interface HarnessOptions {
  start: string | number
  policy?: Partial<JobPolicy>
  runner?: Partial<Pick<JobRunnerOptions, 'breakerThreshold' | 'backoff' | 'maxRollbackAttempts' | 'rebootRetryMs' | 'random'>>
}

// t.testdir() is one folder per test: a test with two harnesses gives each its own inside it.
const testDirs = new WeakMap<Test, string>()

export async function harness (t: Test, opts: HarnessOptions): Promise<Harness> {
  let base = testDirs.get(t)
  if (base === undefined) testDirs.set(t, base = t.testdir())
  const dir = await fs.mkdtemp(path.join(base, 'h-'))
  const ctrl = path.join(dir, 'ctrl')
  const installRoot = path.join(dir, 'install-root')
  await fs.mkdir(ctrl)
  await fs.mkdir(installRoot)
  const clock = new Clock(opts.start)
  const policy: JobPolicy = { windows: null, forceAfterDeadline: false, rebootAllowed: false, ...opts.policy }
  const signer = keySigner(generateKeyPair())
  const trust = await trustFor(dir)
  let checkouts = 0
  let db!: Database
  let store!: PackageStore
  let outbox!: AgentOutbox
  let runner!: JobRunner
  let directiveVersion = 0
  let releaseVersion = 0

  const installers = new InstallerRegistry()
  installers.register(createExecInstaller({ graceMs: 200 }))
  installers.register(createFilesInstaller({ installRoot }))

  const h: Harness = {
    dir,
    ctrl,
    clock,
    policy,
    signer,
    get db () { return db },
    get outbox () { return outbox },
    get runner () { return runner },
    get store () { return store },
    reboots: [],
    boot: 'boot-1',
    downloads: 0,
    async publish (p = {}) {
      const src = path.join(dir, 'src', `${p.name ?? 'editor'}-${p.version ?? '2.4.1'}-${Math.random().toString(36).slice(2, 8)}`)
      for (const [rel, body] of Object.entries(p.files ?? { 'bin/step.sh': STEP_SCRIPT })) {
        await fs.mkdir(path.dirname(path.join(src, rel)), { recursive: true })
        await fs.writeFile(path.join(src, rel), body, { mode: rel.endsWith('.sh') ? 0o755 : 0o644 })
      }
      const { manifest, digest } = await store.importSource(src)
      const spec: InstallSpec = p.spec?.type === 'files'
        ? p.spec as InstallSpec
        : {
            type: 'exec',
            argv: ['bin/step.sh'],
            health: ['bin/step.sh'],
            rollback: ['bin/step.sh'],
            env: { CTRL: ctrl, VERSION: p.version ?? '2.4.1' },
            ...(p.spec as object)
          } as InstallSpec
      const doc = newRelease({
        version: ++releaseVersion,
        name: p.name ?? 'editor',
        packageVersion: p.version ?? '2.4.1',
        platform: 'linux-x64',
        risk: 'high',
        manifest: { digest, size: manifest.size },
        install: spec,
        expires: '2099-01-01T00:00:00Z'
      })
      trust.beginCycle()
      return trust.verifyRelease(await signEnvelope(doc, [RELEASE_KEY]), { platform: 'linux-x64' })
    },
    async assignment (release, a = {}) {
      const assignment: Assignment = { target: { tenant: TENANT }, release: releaseRef(release.envelope), action: a.action ?? 'install' }
      if (a.deadline !== undefined) assignment.deadline = a.deadline
      if (a.rollout !== undefined) assignment.rollout = a.rollout
      const d = newDirective({ org: ORG, version: ++directiveVersion, issued: '2026-01-01T00:00:00Z', expires: '2099-01-01T00:00:00Z', assignments: [assignment] })
      trust.beginCycle()
      const verified = await trust.verifyDirective(await signEnvelope(d, [CONSOLE_KEY]))
      return verified.assignments[0]!
    },
    restart: async () => {
      await close()
      await open()
    },
    async scriptLog () {
      try {
        return (await fs.readFile(path.join(ctrl, 'log'), 'utf8')).trim().split('\n').filter(Boolean)
      } catch {
        return []
      }
    },
    async ctrlFile (name, on = true) {
      if (on) await fs.writeFile(path.join(ctrl, name), '1')
      else await fs.rm(path.join(ctrl, name), { force: true })
    },
    async exists (name) {
      return fs.access(path.join(ctrl, name)).then(() => true, () => false)
    }
  }

  const open = async () => {
    db = await openDatabase(path.join(dir, 'agent-db'))
    store = new PackageStore({ dir: path.join(dir, 'packages'), db: sublevel(db, 'content') })
    await store.ready()
    outbox = new AgentOutbox(db, { signer, org: ORG, tenant: TENANT, clock: clock.now })
    runner = new JobRunner({
      db,
      outbox,
      installers,
      clock: clock.now,
      workRoot: path.join(dir, 'work'),
      // A fresh verified, read-only copy for every step, as the agent takes it from its store.
      packageDir: async (job) => {
        const dest = path.join(dir, 'checkouts', `${job.id.slice(0, 12)}-${++checkouts}`)
        await store.checkout(job.release.manifest, dest)
        return dest
      },
      download: async (job, signal) => {
        h.downloads++
        await h.onDownload?.(job, signal)
        if (!(await store.has(job.release.manifest))) throw PatchswarmError.NOT_FOUND('no peer has the package')
      },
      policy: () => policy,
      reboot: async () => {
        await h.onReboot?.()
        h.reboots.push(clock.t)
      },
      bootId: async () => h.boot,
      random: () => 0.5,
      backoff: { baseMs: 10 * MINUTE, maxMs: 4 * HOUR },
      ...opts.runner
    })
    await runner.ready()
  }
  const close = async () => {
    await runner.close()
    await outbox.close()
    await store.close()
    await db.close()
  }
  await open()
  t.teardown(async () => {
    await close()
    await trust.close()
  })
  return h
}

const RELEASE_KEY = keySigner(generateKeyPair(Buffer.alloc(32, 11)))
const CONSOLE_KEY = keySigner(generateKeyPair(Buffer.alloc(32, 21)))
const ROOT_KEY = keySigner(generateKeyPair(Buffer.alloc(32, 1)))

/** A trusted state with the test organisation's root pinned, in its own database. */
async function trustFor (dir: string): Promise<TrustedState> {
  const db = await openDatabase(path.join(dir, 'trust-db'))
  const state = new TrustedState({ db: sublevel(db, 'trust'), clock: { now: () => new Date('2026-01-02T00:00:00Z') } })
  await state.ready()
  const root = newRoot({ org: ORG, keys: { root: [ROOT_KEY.keyid], release: [RELEASE_KEY.keyid], console: [CONSOLE_KEY.keyid] }, expires: '2099-01-01T00:00:00Z' })
  await state.pinRoot(await signEnvelope(root, [ROOT_KEY]))
  const close = state.close.bind(state)
  state.close = async () => { await close(); await db.close() }
  return state
}

export interface CheckedEvents {
  events: AgentEvent[]
  /** job events as "state" or "state#attempt" when attempt > 1; agent events as "agent:<state>". */
  trail: string[]
}

/** Every pending event verifies, seqs run 1…N without a gap or a repeat. */
export async function checkEvents (t: Test, h: Harness): Promise<CheckedEvents> {
  const pending: SignedEvent[] = await h.outbox.pending({ limit: 10_000 })
  const events = pending.map((e) => verifyEvent(e).event)
  const seqs = events.map((e) => e.seq)
  t.same(seqs, seqs.map((_, i) => i + 1), 'seqs run 1…N without gaps or repeats')
  t.ok(events.every((e) => e.endpoint === h.signer.keyid && e.org === ORG && e.tenant === TENANT), 'every event names this endpoint')
  const trail = events.map((e) => e.kind === 'job'
    ? (e.job!.attempt > 1 ? `${e.job!.state}#${e.job!.attempt}` : e.job!.state)
    : `${e.kind}:${e.agent?.state ?? ''}`)
  return { events, trail }
}

export function windowAt (cron: string, durationMinutes = 120, timezone = 'Europe/Vienna'): MaintenanceWindow {
  return { cron, durationMinutes, timezone }
}
