// The demo's agents as real processes: each one `patchswarm agent run` on its own data folder, its
// output in a log file. Their pids are written down, so a demo that was killed outright (SIGKILL,
// a closed terminal) leaves nothing running into the next one: the next run ends them first.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import path from 'node:path'

/** How to start this very program again: node, its loader flags (tsx from source), the script. */
export function selfCommand (): { command: string, args: string[] } {
  const script = process.argv[1]!
  const loader = script.endsWith('.ts') ? ['--import', import.meta.resolve('tsx')] : []
  return { command: process.execPath, args: [...loader, script] }
}

export interface AgentProcess {
  name: string
  dir: string
  child: ChildProcess
}

export class AgentProcesses {
  readonly #pidFile: string
  readonly #running: AgentProcess[] = []

  constructor (pidFile: string) {
    this.#pidFile = pidFile
  }

  get pids (): number[] { return this.#running.map((a) => a.child.pid!) }

  /** Ends agents a previous run left behind (only processes that still run an agent of this demo). */
  async endLeftovers (): Promise<number> {
    let listed: Array<{ pid: number, dir: string }>
    try { listed = JSON.parse(await fsp.readFile(this.#pidFile, 'utf8')) } catch { return 0 }
    let ended = 0
    for (const { pid, dir } of listed) {
      let cmdline: string
      try { cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8') } catch { continue }
      if (!cmdline.includes(dir)) continue // the pid was reused by something else
      try { process.kill(pid, 'SIGKILL'); ended++ } catch {}
    }
    await fsp.rm(this.#pidFile, { force: true })
    return ended
  }

  /** Starts `patchswarm agent run` on `dir`; resolves once it says it runs. */
  async start (name: string, dir: string, logFile: string, extra: string[] = []): Promise<AgentProcess> {
    const { command, args } = selfCommand()
    const log = fs.openSync(logFile, 'a')
    const child = spawn(command, [...args, 'agent', 'run', '--data', dir, ...extra], { stdio: ['ignore', 'pipe', log], env: { ...process.env, NO_COLOR: '1' } })
    fs.closeSync(log)
    const agent = { name, dir, child }
    this.#running.push(agent)
    await this.#writePids()
    let out = ''
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (d: Buffer) => {
        fs.appendFileSync(logFile, d)
        if (out.length < 4096) { out += d.toString(); if (out.includes('\n')) resolve() }
      })
      child.once('exit', (code) => reject(new Error(`agent ${name} exited with ${code} before it ran; see ${logFile}`)))
    })
    return agent
  }

  /** SIGTERM to every agent, SIGKILL to any still there after `graceMs`. */
  async stopAll (graceMs = 10_000): Promise<void> {
    await Promise.all(this.#running.map(async ({ child }) => {
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = once(child, 'exit')
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
      try { await exited } finally { clearTimeout(timer) }
    }))
    this.#running.length = 0
    await fsp.rm(this.#pidFile, { force: true })
  }

  async #writePids (): Promise<void> {
    const list = this.#running.map((a) => ({ pid: a.child.pid, dir: a.dir }))
    await fsp.mkdir(path.dirname(this.#pidFile), { recursive: true })
    await fsp.writeFile(this.#pidFile, JSON.stringify(list))
  }
}
