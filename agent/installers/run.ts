// Runs one command for an installer: argv without a shell, a minimal environment, a time limit that
// ends the whole process group (an install script's children too), and stdout+stderr kept as one
// bounded tail. A command that fails is a result, never an exception.
//
// A process group outlives the agent if the agent is killed (SIGKILL, OOM): watchSpawns() lets the
// job runner record each group as it starts, and endProcessGroup() lets the next run end what is
// left of it before it runs the step again.
import { spawn, type ChildProcess } from 'node:child_process'
import { AsyncLocalStorage } from 'node:async_hooks'
import { readFileSync } from 'node:fs'
import fs from 'node:fs/promises'
import { PatchswarmError, isPatchswarmError } from '../../lib/errors.js'

export const DEFAULT_OUTPUT_BYTES = 8 * 1024
export const DEFAULT_GRACE_MS = 5000
// After the command exits, how long to wait for output from children that still hold its pipes
// (a daemon it started): they are left running, we only stop listening.
export const DEFAULT_DRAIN_MS = 2000

// A fixed PATH rather than the agent's own: what an install runs must not depend on how the
// service that started the agent was set up.
export const SAFE_POSIX_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
// Windows programs fail in odd ways without these; none of them carries a secret.
const WINDOWS_KEEP = ['SystemRoot', 'windir', 'SystemDrive', 'ComSpec', 'PATHEXT', 'PATH', 'TEMP', 'TMP',
  'ProgramData', 'ProgramFiles', 'ProgramFiles(x86)', 'CommonProgramFiles', 'USERPROFILE', 'NUMBER_OF_PROCESSORS', 'PROCESSOR_ARCHITECTURE']

/**
 * The environment every command starts from: nothing of the agent's own environment (which may hold
 * tokens or proxies with passwords) except what programs need to start. POSIX: PATH (fixed), HOME,
 * LANG=C (stable, parseable output). Windows: the system variables above.
 */
export function baseEnv (): Record<string, string> {
  if (process.platform === 'win32') {
    const env: Record<string, string> = {}
    for (const k of WINDOWS_KEEP) if (process.env[k] !== undefined) env[k] = process.env[k]!
    return env
  }
  return { PATH: SAFE_POSIX_PATH, HOME: process.env.HOME ?? '/', LANG: 'C' }
}

export interface RunOptions {
  /** argv[0] is the program (a path, or a name looked up on the PATH of `env`). */
  argv: string[]
  /** Merged onto baseEnv(); these win. */
  env?: Record<string, string>
  cwd?: string
  timeoutMs?: number
  /** Exit codes that count as success; [0] when absent. */
  exitCodes?: number[]
  signal?: AbortSignal
  /** Between SIGTERM and SIGKILL to the process group. */
  graceMs?: number
  drainMs?: number
  maxOutputBytes?: number
  /** 'ignore' keeps stderr out of the output (for commands whose stdout is parsed). */
  stderr?: 'capture' | 'ignore'
  /** How reasons name the program (default argv[0]); e.g. its path inside the package. */
  name?: string
}

export interface RunResult {
  ok: boolean
  /** INSTALL_FAILED, TIMEOUT, or the code of the abort reason. */
  code?: string
  exitCode?: number
  /** The signal that ended the command, if one did. */
  exitSignal?: string
  reason?: string
  output: string
  /** Bytes of output that did not fit the bound (the head is dropped, the tail kept). */
  droppedBytes: number
  durationMs: number
}

/** The last `max` bytes of a stream of output, and how many came before them. */
export class OutputTail {
  private chunks: Buffer[] = []
  private size = 0
  dropped = 0

  constructor (readonly max: number) {}

  push (buf: Buffer) {
    if (buf.length >= this.max) {
      this.dropped += this.size + buf.length - this.max
      this.chunks = [Buffer.from(buf.subarray(buf.length - this.max))] // a copy: do not pin the big buffer
      this.size = this.max
      return
    }
    this.chunks.push(buf)
    this.size += buf.length
    while (this.size > this.max) {
      const first = this.chunks[0]!
      const excess = this.size - this.max
      if (first.length <= excess) {
        this.chunks.shift()
        this.size -= first.length
        this.dropped += first.length
      } else {
        this.chunks[0] = first.subarray(excess)
        this.size -= excess
        this.dropped += excess
      }
    }
  }

  text (): string {
    let buf = Buffer.concat(this.chunks, this.size)
    if (this.dropped === 0) return buf.toString('utf8')
    let skip = 0 // the cut may fall inside a UTF-8 character: drop its continuation bytes
    while (skip < 3 && skip < buf.length && (buf[skip]! & 0xc0) === 0x80) skip++
    buf = buf.subarray(skip)
    return `… ${this.dropped + skip} bytes dropped …\n${buf.toString('utf8')}`
  }
}

/** The result code for a step stopped through its AbortSignal. */
export function abortCode (reason: unknown): string {
  if (isPatchswarmError(reason)) return reason.code
  if ((reason as Error | undefined)?.name === 'TimeoutError') return 'TIMEOUT'
  return 'INSTALL_FAILED'
}

export function abortReason (reason: unknown): string {
  return `aborted: ${(reason as Error | undefined)?.message ?? String(reason)}`
}

/** Does `code` match an accepted exit code? Windows codes may be written signed or unsigned. */
export function exitCodeAccepted (code: number, accepted: readonly number[]): boolean {
  return accepted.some((c) => c === code || (c >>> 0) === (code >>> 0))
}

/** A command's process group, as recorded while it runs. */
export interface ProcessGroup {
  /** The group's id: the pid of the command, which leads its own group. */
  pgid: number
  /** Linux: when the leader started (clock ticks after boot); a reused pid has another. */
  startTime?: string
}

const spawnWatch = new AsyncLocalStorage<(group: ProcessGroup) => void>()

/**
 * Runs `fn`; every command run() starts within it (in its async context: installers need not pass
 * anything along) is reported to `onSpawn` at once, synchronously, right after it started.
 */
export function watchSpawns<T> (onSpawn: (group: ProcessGroup) => void, fn: () => T): T {
  return spawnWatch.run(onSpawn, fn)
}

export function run (opts: RunOptions): Promise<RunResult> {
  const argv = opts?.argv
  if (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === 'string') || argv[0] === '') {
    throw PatchswarmError.BAD_ARGUMENT('run needs a non-empty argv of strings')
  }
  const timeoutMs = opts.timeoutMs ?? 0
  const graceMs = opts.graceMs ?? DEFAULT_GRACE_MS
  const drainMs = opts.drainMs ?? DEFAULT_DRAIN_MS
  const exitCodes = opts.exitCodes ?? [0]
  const tail = new OutputTail(opts.maxOutputBytes ?? DEFAULT_OUTPUT_BYTES)
  const started = Date.now()
  const signal = opts.signal

  const result = (r: Omit<RunResult, 'output' | 'droppedBytes' | 'durationMs'>): RunResult =>
    ({ ...r, output: tail.text(), droppedBytes: tail.dropped, durationMs: Date.now() - started })

  if (signal?.aborted) return Promise.resolve(result({ ok: false, code: abortCode(signal.reason), reason: abortReason(signal.reason) }))

  const shown = opts.name ?? argv[0]
  return new Promise((resolve) => {
    let child: ChildProcess
    try {
      child = spawn(argv[0]!, argv.slice(1), {
        cwd: opts.cwd,
        env: { ...baseEnv(), ...opts.env },
        stdio: ['ignore', 'pipe', opts.stderr === 'ignore' ? 'ignore' : 'pipe'],
        // Its own process group, so a timeout reaches everything the command started.
        detached: process.platform !== 'win32',
        windowsHide: true,
        shell: false
      })
    } catch (err) { // bad options (e.g. a NUL in an argument) throw here rather than emit 'error'
      resolve(result({ ok: false, code: 'INSTALL_FAILED', reason: `cannot start ${shown}: ${(err as Error).message}` }))
      return
    }

    const watcher = spawnWatch.getStore()
    if (watcher && child.pid !== undefined && process.platform !== 'win32') {
      const startTime = startTimeNow(child.pid)
      try { watcher({ pgid: child.pid, ...(startTime !== undefined ? { startTime } : {}) }) } catch { /* the watcher's problem */ }
    }

    let done = false
    let stopped: { code: string, reason: string } | null = null
    let exited: { code: number | null, signal: NodeJS.Signals | null } | null = null
    let spawnError: NodeJS.ErrnoException | null = null
    let timer: NodeJS.Timeout | undefined
    let killTimer: NodeJS.Timeout | undefined
    let drainTimer: NodeJS.Timeout | undefined

    const onData = (buf: Buffer) => tail.push(buf)
    child.stdout?.on('data', onData)
    child.stderr?.on('data', onData)

    const stop = (code: string, reason: string) => {
      if (stopped || exited || done) return
      stopped = { code, reason }
      killGroup(child, 'SIGTERM')
      killTimer = setTimeout(() => {
        killGroup(child, 'SIGKILL')
        drainTimer ??= setTimeout(finish, drainMs)
      }, graceMs)
    }
    const onAbort = () => stop(abortCode(signal!.reason), abortReason(signal!.reason))

    const finish = () => {
      if (done) return
      done = true
      clearTimeout(timer)
      clearTimeout(killTimer)
      clearTimeout(drainTimer)
      signal?.removeEventListener('abort', onAbort)
      if (stopped) killGroup(child, 'SIGKILL') // members that ignored SIGTERM and closed their pipes
      child.stdout?.destroy()
      child.stderr?.destroy()
      if (spawnError && child.pid === undefined) {
        const where = opts.cwd === undefined ? '' : ` in ${opts.cwd}`
        resolve(result({ ok: false, code: 'INSTALL_FAILED', reason: `cannot start ${shown}${where}: ${spawnError.code ?? spawnError.message}` }))
      } else if (stopped) {
        resolve(result({ ok: false, code: stopped.code, reason: stopped.reason, ...exitFields(exited) }))
      } else if (exited?.code != null) {
        const ok = exitCodeAccepted(exited.code, exitCodes)
        resolve(result(ok
          ? { ok, exitCode: exited.code }
          : { ok, code: 'INSTALL_FAILED', exitCode: exited.code, reason: `${shown} exited with code ${exited.code} (accepted: ${exitCodes.join(', ')})` }))
      } else {
        resolve(result({ ok: false, code: 'INSTALL_FAILED', ...exitFields(exited), reason: `${shown} was ended by ${exited?.signal ?? 'an unknown cause'}` }))
      }
    }

    child.on('error', (err) => {
      if (child.pid === undefined) {
        spawnError = err
        finish()
      }
    })
    child.on('exit', (code, sig) => {
      exited = { code, signal: sig }
      if (!stopped) {
        clearTimeout(timer)
        drainTimer = setTimeout(finish, drainMs)
      }
    })
    child.on('close', (code, sig) => {
      exited ??= { code, signal: sig }
      finish()
    })

    if (timeoutMs > 0) timer = setTimeout(() => stop('TIMEOUT', `${shown} timed out after ${timeoutMs} ms`), timeoutMs)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

function exitFields (exited: { code: number | null, signal: NodeJS.Signals | null } | null) {
  return {
    ...(exited?.code != null ? { exitCode: exited.code } : {}),
    ...(exited?.signal ? { exitSignal: exited.signal } : {})
  }
}

// POSIX: the negative pid names the group, which outlives its leader while any member runs.
// Windows has no groups: taskkill /T walks the tree of a still-running parent.
function killGroup (child: ChildProcess, sig: NodeJS.Signals) {
  const pid = child.pid
  if (pid === undefined) return
  if (process.platform === 'win32') {
    if (child.exitCode !== null || child.signalCode !== null) return
    spawn('taskkill', ['/pid', String(pid), '/T', '/F'], { stdio: 'ignore', windowsHide: true }).on('error', () => child.kill())
    return
  }
  try {
    process.kill(-pid, sig)
  } catch {
    // ESRCH: the group is gone already
  }
}

// --- process groups left behind -----------------------------------------------------------------

/** Linux: field 22 of /proc/<pid>/stat, the process's start time in clock ticks after boot. */
function startTimeNow (pid: number): string | undefined {
  if (process.platform !== 'linux') return undefined
  try {
    return parseStat(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.startTime
  } catch {
    return undefined
  }
}

/** The start time of process `pid` (Linux), or undefined if it is gone or unknown. */
export async function processStartTime (pid: number): Promise<string | undefined> {
  if (process.platform !== 'linux') return undefined
  return parseStat(await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => ''))?.startTime
}

// "pid (comm) state ppid pgrp …": comm may hold spaces and parentheses, so fields count from the last ')'.
function parseStat (stat: string): { state: string, pgrp: number, startTime: string } | undefined {
  const close = stat.lastIndexOf(')')
  if (close < 0) return undefined
  const f = stat.slice(close + 2).split(' ')
  if (f.length < 20) return undefined
  return { state: f[0]!, pgrp: Number(f[2]), startTime: f[19]! }
}

/**
 * Whether process group `pgid` has a member that is still running. On Linux zombies do not count:
 * a killed member stays one until whoever adopted it reaps it, which may take a while.
 */
export async function groupAlive (pgid: number): Promise<boolean> {
  try {
    process.kill(-pgid, 0)
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
  if (process.platform !== 'linux') return true
  for (const name of await fs.readdir('/proc').catch(() => [] as string[])) {
    if (name.charCodeAt(0) < 48 || name.charCodeAt(0) > 57) continue
    const s = parseStat(await fs.readFile(`/proc/${name}/stat`, 'utf8').catch(() => ''))
    if (s && s.pgrp === pgid && s.state !== 'Z' && s.state !== 'X') return true
  }
  return false
}

export const DEFAULT_LEFTOVER_GRACE_MS = 3000
/** After the SIGKILL, how long to wait for the group to be gone before going on. */
const KILL_WAIT_MS = 2000

/**
 * Ends a process group that an earlier run of the agent left running (it was killed while a step
 * ran): SIGTERM, SIGKILL after `graceMs` if anything is left, then waits (bounded) until nothing is.
 *   gone      nothing of the group runs any more
 *   ended     it ran, and was ended
 *   not-ours  the leader is another process now (a reused pid: its start time differs), or we may
 *             not signal the group: it is left alone
 * The caller checks that the group was recorded in this boot of the endpoint. POSIX only (Windows
 * has no process groups; the command's process alone is ended there).
 */
export async function endProcessGroup (group: ProcessGroup, opts: { graceMs?: number } = {}): Promise<'gone' | 'ended' | 'not-ours'> {
  const { pgid } = group
  if (!Number.isInteger(pgid) || pgid <= 1) return 'not-ours'
  if (process.platform === 'win32') {
    try { process.kill(pgid, 'SIGKILL'); return 'ended' } catch { return 'gone' }
  }
  if (!await groupAlive(pgid)) return 'gone'
  // A live process with the leader's pid but another start time took a freed pid: the old group is
  // gone (a pid is not handed out while a group of that id has members) and this one is not ours.
  if (group.startTime !== undefined) {
    const now = await processStartTime(pgid)
    if (now !== undefined && now !== group.startTime) return 'not-ours'
  }
  const signal = (sig: NodeJS.Signals): 'sent' | 'gone' | 'not-ours' => {
    try {
      process.kill(-pgid, sig)
      return 'sent'
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'EPERM' ? 'not-ours' : 'gone'
    }
  }
  const first = signal('SIGTERM')
  if (first !== 'sent') return first
  if (await waitGone(pgid, opts.graceMs ?? DEFAULT_LEFTOVER_GRACE_MS)) return 'ended'
  signal('SIGKILL')
  await waitGone(pgid, KILL_WAIT_MS)
  return 'ended'
}

async function waitGone (pgid: number, ms: number): Promise<boolean> {
  const end = Date.now() + ms
  for (;;) {
    if (!await groupAlive(pgid)) return true
    if (Date.now() >= end) return false
    await new Promise((resolve) => setTimeout(resolve, Math.min(50, Math.max(1, end - Date.now()))))
  }
}
