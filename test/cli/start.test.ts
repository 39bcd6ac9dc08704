// `npm start` as a new user runs it: headless (as CI runs it), and in a terminal (tmux), where it
// opens the terminal console on the fleet. Headless: a console, agents as processes, a
// staged rollout with one designed failure. Run twice on one data folder: the second run reuses
// the keys and builds the fleet again. Afterwards no process of the demo may be left.
import t from 'tap'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { spawn, execFile, execFileSync } from 'node:child_process'
import { once } from 'node:events'
import { randomBytes } from 'node:crypto'
import { promisify } from 'node:util'
import { cli, root, type CliResult } from './helpers.js'

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

/** Processes whose command line mentions `dir` (but not the shell of the test's own terminal). */
async function processesUsing (dir: string): Promise<string[]> {
  const found: string[] = []
  for (const entry of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const argv = (await fs.readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).split('\0')
    if (['sh', 'bash', 'tmux'].includes(path.basename(argv[0] ?? ''))) continue
    if (argv.some((a) => a.includes(dir))) found.push(`${entry}: ${argv.join(' ')}`)
  }
  return found
}

t.test('npm start -- --headless: the fleet demo plays out, twice on one data folder', async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ps-start-'))
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }))
  const data = path.join(dir, 'data')
  let rootBytes: Buffer | null = null
  for (const [run, args] of [[1, ['--agents', '8']], [2, ['--agents', '6', '--size-mib', '2']]] as const) {
    const running = npmStart(['--headless', '--json', '--data', data, '--window-in', '5', '--soak', '3', ...args])
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

const execFileP = promisify(execFile)
const hasTmux = (() => { try { execFileSync('tmux', ['-V'], { stdio: 'ignore' }); return true } catch { return false } })()

t.test('npm start in a terminal: the terminal console shows the rollout; Ctrl-C ends the demo with its summary', { skip: !hasTmux && 'needs tmux' }, async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ps-start-tui-'))
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }))
  const server = `ps-start-${randomBytes(4).toString('hex')}`
  const tmux = (...args: string[]) => execFileP('tmux', ['-L', server, '-f', '/dev/null', ...args], { env: { ...process.env, TMUX: '' } })
  t.teardown(() => tmux('kill-server').catch(() => {}))
  const data = path.join(dir, 'data')
  // CI=true would make the demo headless: a person at a terminal does not have it set.
  const shell = `cd '${root}' && env -u CI TERM=xterm-256color LANG=C.UTF-8 npm start -- --data '${data}' --agents 6 --size-mib 1 --window-in 5 --soak 1 2>/dev/null; echo "EXIT:$?"; sleep 600`
  await tmux('new-session', '-d', '-s', 'main', '-x', '160', '-y', '36', shell)
  const screen = async () => (await tmux('capture-pane', '-p', '-t', 'main')).stdout
  const until = async (what: string, pattern: RegExp, ms: number) => {
    const end = Date.now() + ms
    for (;;) {
      const s = await screen()
      if (pattern.test(s)) return s
      if (Date.now() > end) { t.comment(s); throw new Error(`timed out waiting for ${what}`) }
      await new Promise((resolve) => setTimeout(resolve, 250))
    }
  }
  await until('the terminal console', /patchswarm › Rollouts[\s\S]*demo-service/, 90_000)
  const done = await until('the rollout to complete on screen', /demo-service\S*\s+demo-service 1\.0\.0\s+northwind-it\s+completed/, 150_000)
  t.match(done, /5\/6\s+1/, 'the rollouts view counts 5 installed and 1 failed')
  await tmux('send-keys', '-t', 'main', 'C-c')
  const summary = await until('the summary after the screen closed', /EXIT:\d+/, 30_000)
  t.match(summary, /patched\s+5 of 6 endpoints/)
  t.match(summary, /rolled back\s+1: pc-06/)
  t.match(summary, /EXIT:0/)
  t.same(await processesUsing(data), [], 'no process of the demo is left')
})
