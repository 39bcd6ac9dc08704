// The real TUI in a real terminal: `patchswarm console` runs as a child process on a data folder
// prepared through the admin API (tenants, endpoints, a release, two rollouts), and `patchswarm tui`
// runs inside tmux (a private server, -L) at 80×24 and at 200×50. The tests type keys with
// send-keys and read the screen with capture-pane; what the console did is checked over its socket.
import t, { type Test } from 'tap'
import { spawn, execFile } from 'node:child_process'
import { once } from 'node:events'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { promisify } from 'node:util'
import { fileURLToPath } from 'node:url'
import { writeSecretKeyFile } from '../../lib/crypto/keyfile.js'
import { serializeEnvelope } from '../../lib/trust/envelope.js'
import { RpcClient } from '../../lib/console/rpc.js'
import { AdminApi } from '../../lib/console/api.js'
import type { Rollout } from '../../lib/rollout/rollout.js'
import { makeConsoleOrg, openConsole, OWNER, SimEndpoint } from '../../fixtures/console-org.js'
import { sshKey } from '../fleet/helpers.js'

const execFileP = promisify(execFile)
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const PHASES = [
  { name: 'pilot', select: { tenants: ['msp-1/acme/pilot'] }, successThreshold: 0.5, errorThreshold: 0.5, minSoakMinutes: 0 },
  { name: 'broad', successThreshold: 1, errorThreshold: 0.5, minSoakMinutes: 0 }
]

/** A console's data folder: msp-1 › acme › {pilot, office}, msp-1 › globex › office, 2 endpoints each, rollouts fix-1 (acme) and fix-2 (globex). */
async function prepare (t: Test): Promise<string> {
  // Unix socket paths are short: keep the folder near /tmp.
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ps-tmux-'))
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }))
  const org = await makeConsoleOrg()
  await fs.writeFile(path.join(dir, 'root.json'), serializeEnvelope(org.rootEnvelope))
  await writeSecretKeyFile(path.join(dir, 'console.key'), org.consoleKey)
  const c = await openConsole(org, path.join(dir, 'data'))
  try {
    const api = new AdminApi(c)
    await c.fleet.bootstrapOwner({ id: OWNER, sshKey: sshKey() })
    await api.fleet.createTenant(OWNER, { parent: '', name: 'msp-1', kind: 'msp' })
    for (const [customer, groups] of [['acme', ['pilot', 'office']], ['globex', ['office']]] as const) {
      await api.fleet.createTenant(OWNER, { parent: 'msp-1', name: customer, kind: 'customer' })
      for (const g of groups) {
        const group = `msp-1/${customer}/${g}`
        await api.fleet.createTenant(OWNER, { parent: `msp-1/${customer}`, name: g, kind: 'group' })
        const { token } = await api.endpoints.createToken(OWNER, { scope: group, expiresAt: new Date(Date.now() + 86400_000), maxUses: 2, autoApprove: true })
        for (let i = 0; i < 2; i++) await new SimEndpoint(`${customer}-${g}-pc${i}`).enroll(c, token, new Date())
      }
    }
    const release = await api.releases.add(OWNER, await org.release('agent-fix', '1.2.0', { risk: 'high' }))
    await api.releases.approve(OWNER, release.hash, 'msp-1')
    await api.rollouts.create(OWNER, { id: 'fix-1', release: release.hash, target: { tenant: 'msp-1/acme' }, phases: PHASES })
    await api.rollouts.create(OWNER, { id: 'fix-2', release: release.hash, target: { tenant: 'msp-1/globex' }, phases: [PHASES[1]!] })
  } finally {
    await c.close()
  }
  return dir
}

/** `patchswarm console` on the folder, as a real child; resolves with its socket. */
async function startConsole (t: Test, dir: string): Promise<string> {
  const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), path.join(ROOT, 'bin/patchswarm.ts'), 'console', '--data', 'data', '--root', 'root.json', '--console-key', 'console.key', '--json'],
    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(async () => { if (child.exitCode === null && child.signalCode === null) { child.kill('SIGTERM'); await once(child, 'exit') } })
  let out = ''
  child.stdout.on('data', (d) => { out += d })
  child.stderr.on('data', (d) => { out += d })
  const end = Date.now() + 20_000
  while (!out.includes('"socket"')) {
    if (child.exitCode !== null || Date.now() > end) throw new Error(`console did not start: ${out}`)
    await sleep(50)
  }
  return JSON.parse(out.slice(out.indexOf('{'), out.indexOf('}', out.indexOf('"socket"')) + 1)).socket
}

/** A tmux server of our own with one pane running `command`; gone at teardown. */
class Tmux {
  readonly server = `ps-tui-${randomBytes(4).toString('hex')}`
  readonly #t: Test

  constructor (t: Test) {
    this.#t = t
    t.teardown(() => this.tmux('kill-server').catch(() => {}))
  }

  tmux (...args: string[]): Promise<{ stdout: string }> {
    return execFileP('tmux', ['-L', this.server, '-f', '/dev/null', ...args], { env: { ...process.env, TMUX: '' } })
  }

  async start (cwd: string, width: number, height: number, argv: string[]): Promise<void> {
    const quote = (s: string) => `'${s.replaceAll("'", "'\\''")}'`
    const cli = [process.execPath, '--import', import.meta.resolve('tsx'), path.join(ROOT, 'bin/patchswarm.ts'), ...argv].map(quote).join(' ')
    // The exit status stays on the screen after the console gave the terminal back.
    const shell = `cd ${quote(cwd)} && env TERM=xterm-256color NCURSES_NO_UTF8_ACS=1 LANG=C.UTF-8 PATCHSWARM_DEBUG= ${cli}; echo "EXIT:$?"; sleep 600`
    await this.tmux('new-session', '-d', '-s', 'main', '-x', String(width), '-y', String(height), shell)
    await this.tmux('set-option', '-g', 'escape-time', '0')
  }

  /** Types text as it is (-l), or named keys (Enter, Escape, Right). */
  async type (text: string): Promise<void> { await this.tmux('send-keys', '-t', 'main', '-l', text); await sleep(60) }
  async key (...names: string[]): Promise<void> { for (const n of names) { await this.tmux('send-keys', '-t', 'main', n); await sleep(120) } }

  async screen (): Promise<string> {
    return (await this.tmux('capture-pane', '-p', '-t', 'main')).stdout
  }

  /** Waits until the screen matches every pattern (and none of `not`); returns it. */
  async until (what: string, patterns: RegExp[], not: RegExp[] = [], ms = 10_000): Promise<string> {
    const end = Date.now() + ms
    let s = ''
    for (;;) {
      s = await this.screen()
      if (patterns.every((p) => p.test(s)) && !not.some((p) => p.test(s))) return s
      if (Date.now() > end) {
        this.#t.comment(s)
        throw new Error(`timed out waiting for ${what}`)
      }
      await sleep(100)
    }
  }
}

async function rolloutState (socket: string, id: string): Promise<string> {
  const client = await RpcClient.connect(socket, OWNER)
  try { return (await client.call('rollouts.get', [id]) as Rollout).state } finally { await client.close() }
}

/** The lines of the screen that belong to the view (between the header and the footer). */
const body = (screen: string) => screen.split('\n').slice(1, -3).join('\n')
const footer = (screen: string) => screen.split('\n').filter((l) => /<\?> help/.test(l)).join('\n')

t.test('80×24: open, :rollouts, / filter, open a rollout, ? help, abort only through the confirm dialog, q', async (t) => {
  const started = Date.now()
  const dir = await prepare(t)
  const socket = await startConsole(t, dir)
  const tm = new Tmux(t)
  await tm.start(dir, 80, 24, ['tui', '--data', 'data', '--as', OWNER, '--no-extensions'])

  // The dashboard's feeds arrive one by one: the rollouts often before the KPIs and the tenants
  // (reports.tree$, computed by the console on the first ask), which read "waiting for the console…"
  // and "no tenants you may see" until then. Wait for those too before reading what they say.
  let s = await tm.until('the dashboard', [/patchswarm › Dashboard/, /Compliance by tenant \[[1-9]\d*\]/, /Endpoints \d+/, /fix-1/, /root @ msp-1/], [], 20_000)
  t.match(s, /Endpoints 6/, 'KPIs of the whole fleet')
  t.match(s, /acme/, 'compliance by tenant lists the customers')

  await tm.type(':rollouts')
  await tm.key('Enter')
  s = await tm.until(':rollouts', [/patchswarm › Rollouts/, /Rollouts \[2\]/, /fix-1\s+agent-fix 1\.2\.0\s+running/, /fix-2/])
  t.match(footer(s), /<x> abort!/, 'the footer offers abort, marked dangerous')

  await tm.type('/fix-2')
  s = await tm.until('the filter', [/Rollouts \[1\/2\] \/fix-2/])
  t.notMatch(body(s), /fix-1/, 'the filter leaves fix-2 alone')
  await tm.key('Escape')
  s = await tm.until('the filter cleared', [/Rollouts \[2\]/, /fix-1/, /fix-2/])

  await tm.type('/fix-1')
  await tm.key('Enter', 'Enter')
  s = await tm.until('rollout fix-1 opened', [/Rollouts › Rollout fix-1/, /Phases \[2\]/, /pilot\s+active/, /broad\s+pending/, /≥50%/, /History/])
  t.match(s, /state running/, 'its state')

  await tm.type('?')
  s = await tm.until('help', [/Help: Rollout fix-1/, /Keys and commands/])
  for (const row of [/x\s+:rollout\.abort\s+Abort the rollout/, /b\s+:rollout\.rollback/, /p\s+:rollout\.pause/, /\?\s+:help/, /\/\s+:filter/, /esc\s+:back/]) t.match(s, row, `help lists ${row.source}`)
  await tm.key('Escape')
  await tm.until('back from help', [/Rollouts › Rollout fix-1\s/], [/Help:/])

  await tm.type('x')
  s = await tm.until('the confirm dialog', [/Abort rollout fix-1/, />\[ Cancel \]<\s+\[ abort \]/])
  await tm.key('Enter')
  await tm.until('the dialog closed', [/state running/], [/Abort rollout fix-1/])
  await sleep(300)
  t.equal(await rolloutState(socket, 'fix-1'), 'running', 'Enter on the focused Cancel did not abort')

  await tm.type('x')
  await tm.until('the dialog again', [/>\[ Cancel \]</])
  await tm.key('Right')
  await tm.until('abort focused', [/\[ Cancel \]\s+>\[ abort \]</])
  await tm.key('Enter')
  s = await tm.until('aborted on screen', [/state aborted/, /rollout fix-1: aborted/], [/Abort rollout fix-1\?/])
  t.equal(await rolloutState(socket, 'fix-1'), 'aborted', 'choosing abort aborted it')
  t.equal(await rolloutState(socket, 'fix-2'), 'running', 'and nothing else')
  t.notMatch(footer(s), /abort!/, 'an aborted rollout offers no abort any more')

  await tm.type(':q')
  await tm.key('Enter')
  await tm.until('the shell again, the screen given back', [/EXIT:0/], [/patchswarm ›/])
  t.ok(Date.now() - started < 40_000, `took ${Date.now() - started} ms`)
})

t.test('200×50 --readonly: no pause, resume, abort or rollback in footer, help, keys or commands', async (t) => {
  const started = Date.now()
  const dir = await prepare(t)
  const socket = await startConsole(t, dir)
  const tm = new Tmux(t)
  await tm.start(dir, 200, 50, ['tui', '--data', 'data', '--as', OWNER, '--readonly', '--no-extensions', '--start', 'rollouts'])

  let s = await tm.until('the rollouts', [/patchswarm › Rollouts/, /\[readonly\]/, /fix-1/, /fix-2/, /TARGET/], [], 20_000)
  t.notMatch(footer(s), /abort|rollback|pause|resume/, 'the footer offers no change')
  await tm.type('/globex')
  await tm.key('Enter', 'Enter')
  s = await tm.until('fix-2 opened', [/Rollout fix-2/, /Phases \[1\]/])
  t.notMatch(footer(s), /abort|rollback|pause|resume/)

  await tm.type('?')
  s = await tm.until('help', [/Keys and commands/, /:help/])
  t.notMatch(s, /abort|rollback|rollout\.pause|rollout\.resume/, 'help lists none of them')
  await tm.key('Escape')
  await tm.until('back', [/Rollout fix-2/], [/Help:/])

  for (const k of ['x', 'b', 'p']) await tm.type(k)
  await sleep(500)
  s = await tm.screen()
  t.notMatch(s, /Abort rollout|Roll back rollout|Cancel/, 'x, b and p do nothing')
  await tm.type(':rollout.abort fix-2')
  await tm.key('Enter')
  await tm.until('the command refused', [/unknown command :rollout\.abort/])
  t.equal(await rolloutState(socket, 'fix-2'), 'running', 'fix-2 still runs')

  await tm.key('C-c')
  await tm.until('the shell again, the screen given back', [/EXIT:0/], [/patchswarm ›/])
  t.ok(Date.now() - started < 40_000, `took ${Date.now() - started} ms`)
})
