// The console app on a headless screen, over a real console in this process (inProcessAccess on
// the admin API): every view with live data, a scoped admin's view of the fleet, rollout actions
// through their dialogs, --readonly, extensions through the WindowApi (real extension modules),
// and closing.
import t, { type Test } from 'tap'
import fs from 'node:fs/promises'
import path from 'node:path'
import { headless, KEY, type Headless } from '../../tui/ui/headless.js'
import { inProcessAccess } from '../../tui/extensions/access.js'
import { createTuiApp, type TuiApp, type TuiAppOptions } from '../../tui/app/index.js'
import { tenantMatches, rootsOf, sumKpis } from '../../tui/app/data.js'
import { OWNER } from '../../fixtures/console-org.js'
import type { Envelope } from '../../lib/trust/envelope.js'
import type { ReleaseDocument } from '../../lib/trust/release.js'
import type { Kpis } from '../../lib/report/records.js'
import { world, A, B, MSP, type World } from '../console/helpers.js'

const FIXTURES = path.resolve(import.meta.dirname, 'fixtures/extensions')
const PILOT = `${A}/pilot`

interface Fleet { w: World, release: Envelope<ReleaseDocument>, hash: string }

/** world() (2 endpoints per group), a release approved for the MSP, rollout fix-1 over A (pilot first), fix-b over B. */
async function fleet (t: Test): Promise<Fleet> {
  const w = await world(t, { perGroup: 2 })
  const release = await w.org.release('agent-fix', '1.2.0', { risk: 'high' })
  const { hash } = await w.api.releases.add(OWNER, release)
  await w.api.releases.approve(OWNER, hash, MSP)
  await w.api.rollouts.create(OWNER, {
    id: 'fix-1',
    release: hash,
    target: { tenant: A },
    phases: [
      { name: 'pilot', select: { tenants: [PILOT] }, successThreshold: 1, errorThreshold: 0.5, minSoakMinutes: 0 },
      { name: 'broad', successThreshold: 1, errorThreshold: 0.5, minSoakMinutes: 0 }
    ]
  })
  await w.api.rollouts.create(OWNER, { id: 'fix-b', release: hash, target: { tenant: B }, phases: [{ name: 'all', successThreshold: 1, errorThreshold: 0.5, minSoakMinutes: 0 }] })
  return { w, release, hash }
}

async function app (t: Test, w: World, admin = OWNER, opts: Partial<TuiAppOptions> & { width?: number, height?: number } = {}): Promise<{ h: Headless, app: TuiApp }> {
  const h = headless({ width: opts.width ?? 100, height: opts.height ?? 30, readonly: opts.readonly === true, renderInterval: 10 })
  const a = await createTuiApp({ ui: h.ui, access: inProcessAccess(w.api, admin), admin, refreshMs: 50, ...opts })
  t.teardown(() => a.close())
  return { h, app: a }
}

/** Waits until the rendered screen matches (and does not match `not`); returns it. */
async function until (h: Headless, what: string, re: RegExp | RegExp[], not?: RegExp, ms = 8000): Promise<string> {
  const end = Date.now() + ms
  const all = Array.isArray(re) ? re : [re]
  for (;;) {
    const s = h.text().join('\n')
    if (all.every((r) => r.test(s)) && !(not?.test(s))) return s
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}:\n${s}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

const command = (h: Headless, line: string) => h.type(':', ...line, KEY.enter)
/** The screen without its status line (where messages show). */
const view = (s: string) => s.split('\n').slice(0, -1).join('\n')

t.test('every view shows the console, and follows it live', async (t) => {
  const { w, release } = await fleet(t)
  const { h } = await app(t, w, OWNER, { width: 160, height: 34 })
  let s = await until(h, 'the dashboard', [/Dashboard/, /Endpoints 6/, /fix-1/, /fix-b/, /customer-a/, /customer-b/])
  t.match(s, /root @ msp-1/, 'the header names the admin and its scope')

  await command(h, 'endpoints')
  s = await until(h, 'endpoints', /Endpoints \[6\]/)
  const pilot = w.endpoints.get(PILOT)!
  await w.console.ingest([await pilot[0]!.job(release, 'downloading', w.clock.now(), { rollout: 'fix-1' }), await pilot[0]!.job(release, 'installed', w.clock.now(), { rollout: 'fix-1' })])
  await w.console.settled()
  s = await until(h, 'the installed job', /customer-a-pilot-pc0\s+msp-1\/customer-a\/pilot\s+approved.*agent-fix 1\.2\.0 installed/)

  await command(h, 'endpoints customer-b/')
  s = await until(h, 'endpoints of B', [/Endpoints in customer-b\/ \[2\]/, /› Endpoints customer-b\//])
  t.notMatch(s, /customer-a/, 'a tenant prefix keeps its endpoints only')

  await command(h, 'rollouts')
  s = await until(h, 'rollouts', [/Rollouts \[2\]/, /fix-1\s+agent-fix 1\.2\.0\s+msp-1\/customer-a\s+running\s+pilot 1\/2/])
  t.match(s, /1\/4/, 'fix-1 has one of four installed')

  await command(h, 'rollout fix-1')
  s = await until(h, 'rollout fix-1', [/Rollout fix-1/, /pilot\s+active\s+2/, /broad\s+pending\s+2/, /created with 4 endpoints/])
  await w.console.ingest([await pilot[1]!.job(release, 'downloading', w.clock.now(), { rollout: 'fix-1' }), await pilot[1]!.job(release, 'installed', w.clock.now(), { rollout: 'fix-1' })])
  await w.console.settled()
  s = await until(h, 'the next phase starting', [/pilot\s+succeeded/, /broad\s+active/, /phase broad started/])
  t.match(s, /installed 2/, 'the header counts both installs')

  await command(h, 'tenants')
  s = await until(h, 'tenants', [/▾ msp-1/, /customer-a\s+customer\s+not-set-up\s+4/, /customer-b/])
  await command(h, 'tenant msp-1/customer-a')
  s = await until(h, 'the scope', /root @ msp-1\/customer-a/)

  await command(h, 'releases')
  await until(h, 'releases', /agent-fix\s+1\.2\.0\s+linux\s+high/)

  await w.console.ingest([await pilot[1]!.transfer('ab'.repeat(32), { origin: 1e6, site: 2e6, peer: 1e6, local: 0 }, w.clock.now())])
  await w.console.settled()
  await command(h, 'swarm')
  s = await until(h, 'swarm', [/Bytes by source/, /pilot\s+4\.0 MB\s+1\.0 MB\s+2\.0 MB\s+1\.0 MB/])
  t.match(s, /The console is not on the swarm/, 'a console without a swarm says so')
  // The console's node as ConsoleSwarm reports it: one peer connected, one banned.
  w.console.swarmState = () => ({
    keyid: 'c'.repeat(64),
    peers: [{ keyid: pilot[0]!.keyid, role: 'endpoint', tenant: PILOT, site: 'vienna' }],
    bans: [{ keyid: pilot[1]!.keyid, until: new Date(Date.now() + 300_000).toISOString(), reason: 'sent a bad chunk' }]
  })
  s = await until(h, 'peers and bans', [/on the swarm as cccccccccccc…: 1 peer\(s\) connected, 1 banned/, new RegExp(`${pilot[0]!.hostname}\\s+msp-1/customer-a/pilot\\s+vienna\\s+endpoint`), new RegExp(`${pilot[1]!.hostname}\\s+in [45]m\\s+sent a bad chunk`)])

  await command(h, 'events')
  s = await until(h, 'events', [/Events \(live\)/, /received 4\.0 MB/, /install agent-fix 1\.2\.0: installed \[fix-1\]/, /rollout fix-1: running \(phase broad\)/])
  await command(h, 'audit')
  s = await until(h, 'audit', [/Audit \(live\)/, /rollout\.create/, /audit\.watch/])

  await command(h, 'dashboard')
  s = await until(h, 'the dashboard again', [/WAN savings 75%/, /Rollouts: 2 running/])
})

t.test("a customer's admin sees its own subtree only", async (t) => {
  const { w } = await fleet(t)
  const { h, app: a } = await app(t, w, 'alice')
  t.same(a.data.homes, [A])
  let s = await until(h, 'the dashboard', [/alice @ msp-1\/customer-a/, /Endpoints 4/, /fix-1/])
  t.notMatch(s, /fix-b|customer-b/)
  await command(h, 'endpoints')
  s = await until(h, 'endpoints', /Endpoints \[4\]/)
  t.notMatch(s, /customer-b/)
  await command(h, 'rollouts')
  s = await until(h, 'rollouts', /Rollouts \[1\]/)
  t.notMatch(s, /fix-b/)
  await command(h, 'tenant msp-1/customer-b')
  await until(h, 'the refusal', /NOT_FOUND|no tenant msp-1\/customer-b/)
  await command(h, 'rollout fix-b')
  await until(h, 'no such rollout for her', /No rollout fix-b that you may see/)
  await command(h, 'events')
  s = await until(h, 'events', /rollout fix-1: running/)
  t.notMatch(view(s), /fix-b|customer-b/)
})

t.test('an unknown admin gets no console', async (t) => {
  const { w } = await fleet(t)
  const h = headless()
  t.teardown(() => h.close())
  await t.rejects(createTuiApp({ ui: h.ui, access: inProcessAccess(w.api, 'mallory'), admin: 'mallory' }), { code: 'FORBIDDEN' })
})

t.test('pause, resume and rollback from the keys; rollback only through its dialog', async (t) => {
  const { w } = await fleet(t)
  const { h } = await app(t, w)
  await command(h, 'rollout fix-1')
  await until(h, 'fix-1', /state running/)
  await h.type('p')
  await until(h, 'paused', [/state paused/, /rollout fix-1: paused/])
  t.equal((await w.api.rollouts.get(OWNER, 'fix-1')).state, 'paused')
  await h.type('r')
  await until(h, 'resumed', /state running/)
  await h.type('b')
  let s = await until(h, 'the rollback question', [/Roll back rollout fix-1 \(agent-fix 1\.2\.0 → msp-1\/customer-a\)\?/, />\[ Cancel \]</])
  await h.type(KEY.enter)
  s = await until(h, 'the dialog gone', /state running/, /Roll back rollout/)
  t.equal((await w.api.rollouts.get(OWNER, 'fix-1')).state, 'running', 'Enter on Cancel changed nothing')
  await h.type('b', KEY.tab, KEY.enter)
  s = await until(h, 'rolled back', /state rolled-back/)
  t.equal((await w.api.rollouts.get(OWNER, 'fix-1')).state, 'rolled-back')
  t.notMatch(s.split('\n').slice(-2).join('\n'), /<b> rollback|<p> pause|<x> abort/, 'nothing more to offer on a rolled-back rollout')
  // `:rollout.abort <id>` where an abortable rollout is selected names the one given.
  await command(h, 'rollouts')
  await h.type('/', ...'customer-b', KEY.enter)
  await until(h, 'fix-b selected', /Rollouts \[1\/2\]/)
  await command(h, 'rollout.abort fix-b')
  s = await until(h, 'the question names the rollout given', /Abort rollout fix-b \(agent-fix 1\.2\.0 → msp-1\/customer-b\)\?/)
  await h.type(KEY.escape)
  t.equal((await w.api.rollouts.get(OWNER, 'fix-b')).state, 'running')
  // A refusal of the console shows in the status line.
  await command(h, 'rollout.pause fix-1')
  await until(h, 'the refusal', /pause fix-1: INVALID_TRANSITION/)
})

t.test('--readonly: no action that changes the console, by key, command, footer or help', async (t) => {
  const { w } = await fleet(t)
  const { h } = await app(t, w, OWNER, { readonly: true })
  await command(h, 'rollout fix-1')
  let s = await until(h, 'fix-1', [/state running/, /\[readonly\]/])
  for (const k of ['p', 'x', 'b']) await h.type(k)
  s = h.text().join('\n')
  t.notOk(h.ui.modal, 'no dialog')
  t.notMatch(s, /pause|abort|rollback/)
  await h.type('?')
  s = await until(h, 'help', /Keys and commands/)
  t.notMatch(s, /rollout\.(pause|resume|abort|rollback)/)
  await h.type(KEY.escape)
  await command(h, 'rollout.abort fix-1')
  await until(h, 'unknown', /unknown command :rollout\.abort/)
  t.equal((await w.api.rollouts.get(OWNER, 'fix-1')).state, 'running')
})

/** An extension (in a folder of the test) that asks through every kind of window dialog. */
async function askerExtension (dir: string): Promise<void> {
  await fs.mkdir(dir, { recursive: true })
  await fs.writeFile(path.join(dir, 'package.json'), JSON.stringify({
    name: 'asker', publisher: 'tests', version: '1.0.0', engines: { patchswarm: '*' }, main: 'main.mjs',
    activationEvents: ['onCommand:asker.ask'],
    contributes: { commands: [{ command: 'asker.ask', title: 'Ask things' }], keybindings: [{ command: 'asker.ask', key: 'A', when: 'view == dashboard' }] }
  }))
  await fs.writeFile(path.join(dir, 'main.mjs'), `
export function activate (ctx) {
  ctx.subscriptions.push(ctx.commands.registerCommand('asker.ask', async () => {
    const colour = await ctx.window.showQuickPick([{ label: 'red', description: 'warm' }, { label: 'green' }], { title: 'Colour?' })
    const why = await ctx.window.showInputBox({ title: 'Why?', prompt: 'a reason', validateInput: (v) => v.length < 3 ? 'longer, please' : undefined })
    const sure = await ctx.window.showWarningMessage('really ' + colour?.label + ' because ' + why + '?', 'Yes')
    const scope = await ctx.commands.executeCommand('patchswarm.scope')
    await ctx.window.showInformationMessage('done: ' + colour?.label + ' / ' + why + ' / ' + sure + ' in ' + scope)
  }))
}
`)
}

t.test('extensions: contributions become commands, keys and views; dialogs go through the screen; failures are shown, not fatal', async (t) => {
  const { w } = await fleet(t)
  const dir = t.testdir()
  const roots = path.join(dir, 'extensions')
  await fs.mkdir(roots)
  for (const n of ['good', 'throws', 'hangs']) await fs.symlink(path.join(FIXTURES, n), path.join(roots, n))
  await askerExtension(path.join(roots, 'asker'))
  const { h, app: a } = await app(t, w, OWNER, { extensions: { roots: [roots], stateDir: path.join(dir, 'state'), activationTimeoutMs: 300 } })
  await a.extensionsReady
  t.match(a.window.messages.map((m) => m.message).join('\n'), /Extension fixtures\.throws failed and is disabled/, 'a throwing extension is reported')
  t.match(a.window.messages.map((m) => m.message).join('\n'), /Extension fixtures\.hangs failed.*did not finish within 300 ms/, 'so is a hanging one')

  await command(h, 'extensions')
  let s = await until(h, 'the extension list', [/fixtures\.good\s+1\.2\.3\s+active/, /fixtures\.throws\s+1\.0\.0\s+failed/, /fixtures\.hangs\s+1\.0\.0\s+failed/, /tests\.asker\s+1\.0\.0\s+inactive/])
  t.notMatch(s, /throws\.registered/)

  await command(h, 'good.hello ann')
  await until(h, 'the command ran', /good\.hello: hello, ann/)
  t.ok(h.ui.keys.command('good.hello', h.ui.context()), ':good.hello is a command')
  t.notOk(h.ui.keys.command('throws.registered', h.ui.context()), "a failed extension's command is gone")

  // D: a dangerous contributed command asks first, Cancel focused.
  await h.type('D')
  s = await until(h, 'the question', [/Do something drastic/, />\[ Cancel \]</])
  await h.type(KEY.enter)
  t.notOk(h.ui.modal)

  await command(h, 'good.summary')
  s = await until(h, 'the extension view', [/Summary/, /scope msp-1/, /fixtures\.good · scope msp-1/])

  // A lazy extension: its key (when: view == dashboard) activates it; its dialogs are the screen's.
  await command(h, 'dashboard')
  await until(h, 'the dashboard', /Overview/)
  await h.type('A')
  s = await until(h, 'the quick pick', [/Colour\?/, /red\s+warm/])
  await h.type(KEY.down, KEY.enter)
  s = await until(h, 'the input box', [/Why\?/, /a reason/])
  await h.type('n', 'o', KEY.enter)
  s = await until(h, 'the validation', /longer, please/)
  await h.type('p', 'e', KEY.enter)
  s = await until(h, 'the warning with its action', [/really green because nope\?/, /\[ Yes \]/])
  await h.type(KEY.tab, KEY.enter)
  await until(h, 'the answer', /tests\.asker: done: green \/ nope \/ Yes in msp-1/)

  await a.close()
  t.ok(h.ui.closed, 'closing closes the screen')
  t.equal(a.host?.status('fixtures.good')?.state, 'inactive', 'and deactivates the extensions')
  await a.close()
})

t.test('extensions under --readonly: dangerous contributed commands are gone', async (t) => {
  const { w } = await fleet(t)
  const dir = t.testdir()
  await fs.mkdir(path.join(dir, 'extensions'))
  await fs.symlink(path.join(FIXTURES, 'good'), path.join(dir, 'extensions', 'good'))
  const { h, app: a } = await app(t, w, OWNER, { readonly: true, extensions: { roots: [path.join(dir, 'extensions')] } })
  await a.extensionsReady
  t.ok(h.ui.keys.command('good.hello', h.ui.context()), 'a harmless one is there')
  t.notOk(h.ui.keys.command('good.danger', h.ui.context()), 'the dangerous one is not')
  await h.type('D')
  t.notOk(h.ui.modal, 'and its key does nothing')
})

t.test('q quits: the screen, the extensions and the temporary state go', async (t) => {
  const { w } = await fleet(t)
  const dir = t.testdir()
  await fs.mkdir(path.join(dir, 'extensions'))
  await fs.symlink(path.join(FIXTURES, 'good'), path.join(dir, 'extensions', 'good'))
  const { h, app: a } = await app(t, w, OWNER, { extensions: { roots: [path.join(dir, 'extensions')] } })
  await a.extensionsReady
  let closed = false
  a.on('close', () => { closed = true })
  await command(h, 'q')
  await a.closed
  t.ok(closed && h.ui.closed)
  t.equal(a.host?.status('fixtures.good')?.state, 'inactive')
})

t.test('helpers: tenant prefixes, roots, summed KPIs', async (t) => {
  t.ok(tenantMatches('msp-1/acme/pilot', 'acme/'))
  t.ok(tenantMatches('msp-1/acme', 'msp-1/acme/'))
  t.ok(tenantMatches('msp-1/acme/pilot', 'msp-1'))
  t.notOk(tenantMatches('msp-1/acme-2', 'acme/'))
  t.notOk(tenantMatches('msp-1/globex', 'acme'))
  t.ok(tenantMatches('anything', ''))
  const node = (p: string, kind = 'customer') => ({ path: p, kind }) as never
  t.same(rootsOf([node('a', 'msp'), node('a/b'), node('c/d'), node('c/d/e', 'group')]), ['a', 'c/d'])
  const k = (endpoints: number, compliant: number, origin: number, delivered: number): Kpis => ({
    endpoints, compliant, compliance: compliant / endpoints, timeToPatch: { count: 1, medianHours: 1, p95Hours: 2 }, firstPassSuccess: 1, finalSuccess: 1, slaBreaches: 1,
    bytes: { origin, site: delivered - origin, peer: 0, local: 0, delivered }, wanSavings: 1 - origin / delivered
  })
  t.equal(sumKpis([]), null)
  t.match(sumKpis([k(2, 1, 10, 20), k(2, 2, 0, 20)]), { endpoints: 4, compliant: 3, compliance: 0.75, slaBreaches: 2, wanSavings: 0.75, timeToPatch: { count: 2, medianHours: null } })
})

t.test('durations read in the unit that fits them', async (t) => {
  const { hours } = await import('../../tui/views/dashboard.js')
  t.equal(hours(null), '–')
  t.equal(hours(14 / 3600), '14 s')
  t.equal(hours(0.3), '18 min')
  t.equal(hours(5.25), '5.3 h')
  t.equal(hours(30), '30 h')
  t.equal(hours(84), '3.5 d')
})

t.test('soak times read short', async (t) => {
  const { minutes } = await import('../../tui/views/format.js')
  t.equal(minutes(10 / 60), '10s')
  t.equal(minutes(0), '0s')
  t.equal(minutes(15), '15m')
  t.equal(minutes(90), '1.5h')
  t.equal(minutes(3 * 1440), '3d')
})
