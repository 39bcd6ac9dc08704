// `npm start` as a new user runs it (headless, as CI runs it): a console, agents as processes, a
// staged rollout with one designed failure. Run twice on one data folder: the second run reuses
// the keys and builds the fleet again. Afterwards no process of the demo may be left.
import t from 'tap'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { root } from './helpers.js'

interface Run { code: number | null, stdout: string, stderr: string, summary: any }

async function npmStart (args: string[]): Promise<Run> {
  const child = spawn('npm', ['start', '--', ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, CI: 'true' } })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => { stdout += d })
  child.stderr.on('data', (d) => { stderr += d })
  const [code] = await once(child, 'exit') as [number | null]
  // npm prints its own lines first ("> patchswarm@… start"); the summary is the JSON after them.
  const at = stdout.indexOf('\n{')
  let summary: any = null
  try { summary = JSON.parse(at >= 0 ? stdout.slice(at) : stdout) } catch {}
  return { code, stdout, stderr, summary }
}

/** Processes whose command line mentions `dir`. */
async function processesUsing (dir: string): Promise<number[]> {
  const pids: number[] = []
  for (const entry of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const cmdline = await fs.readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')
    if (cmdline.includes(dir)) pids.push(Number(entry))
  }
  return pids
}

t.test('npm start -- --headless: the fleet demo plays out, twice on one data folder', async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ps-start-'))
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }))
  const data = path.join(dir, 'data')
  let rootBytes: Buffer | null = null
  for (const [run, args] of [[1, ['--agents', '8']], [2, ['--agents', '6', '--size-mib', '2']]] as const) {
    const r = await npmStart(['--headless', '--json', '--data', data, '--window-in', '5', '--soak', '3', ...args])
    t.equal(r.code, 0, `run ${run} exits 0\n${r.stderr.slice(-4000)}`)
    const s = r.summary
    t.ok(s, `run ${run} prints a JSON summary`)
    if (!s) return
    const endpoints = args[1] === '8' ? 8 : 6
    t.equal(s.endpoints, endpoints)
    t.equal(s.rollout.state, 'completed', 'the rollout completes')
    t.same(s.rollout.phases.map((p: any) => [p.name, p.state]), [['pilot', 'succeeded'], ['broad', 'succeeded']])
    t.equal(s.patched, endpoints - 1, 'every endpoint but the designed failure is patched')
    t.equal(s.rolledBack, 1, 'one endpoint rolled back')
    t.equal(s.designedFailure.state, 'rolled-back')
    t.match(s.designedFailure.reason, /^health: health\.sh exited with code 1/, 'the reason names the health check')
    t.equal(s.unfinished, 0)
    t.ok(s.wanSavings > 0, `WAN savings ${s.wanSavings} > 0`)
    t.ok(s.bytes.site + s.bytes.peer > 0, 'peers passed bytes on')
    t.equal(s.timeToPatch.count, endpoints - 1)
    t.match(r.stderr, /waiting-window/, 'the broad ring waited for its window')
    t.match(r.stderr, /rolled-back/, 'the progress shows the rollback')
    for (const pid of s.agentPids) t.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, `agent ${pid} has ended`)
    t.same(await processesUsing(data), [], 'no process of the demo is left')
    const bytes = await fs.readFile(path.join(data, 'keys', 'root.json'))
    if (rootBytes) t.ok(bytes.equals(rootBytes), 'the second run reused the keys and the root')
    else t.match(r.stderr, /new root, release and console keys/)
    rootBytes = bytes
  }
})
