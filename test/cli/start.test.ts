// `npm start` as a new user runs it, headless (as CI runs it; start-terminal.test.ts runs it in a
// terminal): a console, agents as processes, a staged rollout with one designed failure. Run twice
// on one data folder: the second run reuses the keys and builds the fleet again. Afterwards no
// process of the demo may be left.
import t from 'tap'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { cli, processesUsing, root, type CliResult } from './helpers.js'

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

t.test('npm start -- --headless: the fleet demo plays out, twice on one data folder', async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ps-start-'))
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }))
  const data = path.join(dir, 'data')
  let rootBytes: Buffer | null = null
  for (const [run, args] of [[1, ['--agents', '8']], [2, ['--agents', '6', '--size-mib', '2']]] as const) {
    // The broad ring's window opens at a whole minute at least --window-in seconds away. In the
    // first run it must open after the broad ring has its package (~25 s in), or nobody waits;
    // the second run needs no waiting and keeps it short.
    const windowIn = run === 1 ? '40' : '5'
    const running = npmStart(['--headless', '--json', '--data', data, '--window-in', windowIn, '--soak', '3', ...args])
    if (run === 1) {
      // What the README suggests while the demo runs: the CLI on the demo's console, by its socket.
      let shown: CliResult | null = null
      const end = Date.now() + 120_000
      while (Date.now() < end && shown?.code !== 0) {
        shown = await cli(root, ['rollout', 'show', 'demo-service-1.0.0', '--data', path.join(data, 'run', 'console'), '--as', 'demo'])
        await new Promise((resolve) => setTimeout(resolve, 500))
      }
      t.equal(shown?.code, 0, `rollout show on the running demo's console\n${shown?.stderr ?? ''}`)
      t.match(shown?.stdout, /demo-service/)
    }
    const r = await running
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
    if (run === 1) t.match(r.stderr, /waiting-window/, 'the broad ring waited for its window')
    t.match(r.stderr, /rolled-back/, 'the progress shows the rollback')
    for (const pid of s.agentPids) t.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, `agent ${pid} has ended`)
    t.same(await processesUsing(data), [], 'no process of the demo is left')
    const bytes = await fs.readFile(path.join(data, 'keys', 'root.json'))
    if (rootBytes) t.ok(bytes.equals(rootBytes), 'the second run reused the keys and the root')
    else t.match(r.stderr, /new root, release and console keys/)
    rootBytes = bytes
  }
})
