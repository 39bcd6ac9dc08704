// The extension host with real extension modules (test/tui/fixtures/extensions) and a real LevelDB:
// lazy activation, disposal on deactivate, isolation of a throwing and a hanging extension, and
// globalState across a restart.
import t, { type Test } from 'tap'
import fs from 'node:fs/promises'
import path from 'node:path'
import { openDatabase, type Database } from '../../lib/store/db.js'
import { defaultExtensionRoots, discoverExtensionFolders, patchswarmVersion } from '../../tui/extensions/discovery.js'
import { GlobalState, MAX_STATE_VALUE_BYTES } from '../../tui/extensions/global-state.js'
import { ExtensionHost, type ExtensionHostOptions } from '../../tui/extensions/host.js'
import { MemoryWindow } from '../../tui/extensions/window.js'

const FIXTURES = path.resolve(import.meta.dirname, 'fixtures/extensions')

// t.testdir() empties the folder on each call: one per test, parts of it below.
const scratch = new WeakMap<Test, string>()
async function folder (t: Test, name: string): Promise<string> {
  if (!scratch.has(t)) scratch.set(t, t.testdir())
  const dir = path.join(scratch.get(t)!, name)
  await fs.mkdir(dir, { recursive: true })
  return dir
}

let serial = 0
/** A folder of extensions holding only `names` (symlinks to the fixtures). */
async function root (t: Test, names: string[]): Promise<string> {
  const dir = await folder(t, `extensions-${++serial}`)
  for (const n of names) await fs.symlink(path.join(FIXTURES, n), path.join(dir, n))
  return dir
}

interface Setup { host: ExtensionHost, window: MemoryWindow, db: Database, events: string[] }

/** A host over `roots` whose `test.probe` command hands each fixture a recorder of events. */
async function setup (t: Test, roots: string[], opts: Partial<ExtensionHostOptions> = {}): Promise<Setup> {
  const db = opts.db ?? await openDatabase(await folder(t, `db-${++serial}`))
  const window = new MemoryWindow()
  const host = new ExtensionHost({ roots, window, db, patchswarmVersion: '0.1.0', ...opts })
  const events: string[] = []
  host.registerCommand('test.probe', (id: string) => (event: string) => { events.push(`${id}: ${event}`) })
  t.teardown(async () => { await host.close(); if (!opts.db) await db.close() })
  return { host, window, db, events }
}

t.test('the good extension activates on startup and contributes what its manifest says', async (t) => {
  const { host, window, events } = await setup(t, [await root(t, ['good'])], { settings: { 'good.greeting': 'hi' } })
  const seen: string[] = []
  host.onDidChangeStatus((s) => seen.push(`${s.id} ${s.state}`))
  await host.ready()
  await host.ready()
  t.same(seen, ['fixtures.good inactive', 'fixtures.good activating', 'fixtures.good active'])
  t.match(host.status('fixtures.good'), { state: 'active', version: '1.2.3', activatedBy: 'onStartup' })
  t.same(host.getCommands(), ['good.activations', 'good.danger', 'good.hello', 'good.untracked', 'test.probe'])
  t.equal(await host.executeCommand('good.hello', 'ann'), 'hi, ann', 'the user setting overrides the default')
  t.same(await window.views.get('good.summary')!.resolve({ scope: 'msp-1' }), { kind: 'text', lines: ['scope msp-1'] })
  t.equal(await host.export('good.csv', { scope: 'msp-1/acme' }), 'scope\nmsp-1/acme\n')
  const c = host.contributions()
  t.same(c.commands.map((x) => x.command), ['good.hello', 'good.activations', 'good.danger'])
  t.same(c.keybindings.map((k) => [k.key, k.command, k.when]), [['ctrl+g', 'good.hello', 'view == rollouts && !readonly'], ['D', 'good.danger', undefined]])
  t.same(c.keybindings[0]!.whenExpr, { op: 'and', left: { op: 'eq', key: 'view', value: 'rollouts' }, right: { op: 'not', expr: { op: 'key', key: 'readonly' } } })
  t.same(c.settings.map((s) => s.key), ['good.greeting', 'good.limit'])
  t.same(events, [], 'nothing disposed yet')
  await t.rejects(host.executeCommand('nobody.has.this'), { code: 'NOT_FOUND' })
})

t.test('lazy activation on a command and on a view', async (t) => {
  const { host, window, events } = await setup(t, [await root(t, ['good', 'lazy'])])
  await host.ready()
  t.equal(host.status('fixtures.lazy')!.state, 'inactive')
  t.notOk(host.getCommands().includes('lazy.run'), 'its command is not registered')
  t.notOk(events.some((e) => e.startsWith('fixtures.lazy')), 'its code has not run')
  t.ok(host.contributions().commands.some((c) => c.command === 'lazy.run'), 'but its contributions are listed')

  // Two calls at once: one activation.
  const [a, b] = await Promise.all([host.executeCommand('lazy.run', 1), host.executeCommand('lazy.run', 2)])
  t.same([a, b], [{ ran: [1] }, { ran: [2] }])
  t.same(events.filter((e) => e.startsWith('fixtures.lazy')), ['fixtures.lazy: activated'])
  t.match(host.status('fixtures.lazy'), { state: 'active', activatedBy: 'onCommand:lazy.run' })
  t.ok(window.views.has('lazy.view'))

  const other = await setup(t, [await root(t, ['lazy'])])
  await other.host.ready()
  t.notOk(other.window.views.has('lazy.view'))
  await other.host.activateByEvent('onView:lazy.view')
  t.match(other.host.status('fixtures.lazy'), { state: 'active', activatedBy: 'onView:lazy.view' })
  t.same(await other.window.views.get('lazy.view')!.resolve({ scope: '' }), { kind: 'table', columns: ['a'], rows: [['1']] })
})

t.test('deactivate releases every Disposable, last first, after deactivate()', async (t) => {
  const { host, window, events } = await setup(t, [await root(t, ['good'])])
  await host.ready()
  await host.deactivate('fixtures.good')
  t.same(events, [
    'fixtures.good: deactivate',
    'fixtures.good: disposed third',
    'fixtures.good: disposed second',
    'fixtures.good: disposed first'
  ])
  t.same(host.getCommands(), ['test.probe'], 'its commands are gone, also the one it never pushed to subscriptions')
  t.equal(window.views.size, 0, 'its view provider is gone')
  t.equal(host.status('fixtures.good')!.state, 'inactive')

  // It comes back on its next event: a contributed command activates it implicitly.
  t.equal(await host.executeCommand('good.hello', 'bo'), 'hello, bo')
  t.match(host.status('fixtures.good'), { state: 'active', activatedBy: 'onCommand:good.hello' })
  await host.close()
  await host.close()
  t.equal(events.filter((e) => e.includes('disposed')).length, 6, 'closing the host disposed the second activation\'s three too')
  t.equal(host.status('fixtures.good')!.state, 'inactive')
  await t.rejects(host.executeCommand('good.hello', 'x'), { code: 'CLOSED' })
})

t.test('a throwing and a hanging extension are disabled; the others and the host keep running', async (t) => {
  const all = (await fs.readdir(FIXTURES)).filter((n) => n !== 'reader')
  let openGate!: () => void
  const gate = new Promise<void>((resolve) => { openGate = resolve })
  const { host, window, events } = await setup(t, [await root(t, all)], { activationTimeoutMs: 500 })
  host.registerCommand('fixture.hangs.gate', () => gate)

  const started = Date.now()
  await host.ready()
  t.ok(Date.now() - started < 3000, 'the hanging activation held ready() only until its time limit')

  const state = Object.fromEntries(host.statuses().map((s) => [s.id, s.state]))
  t.same(state, {
    'bad-engine': 'invalid', // the folder name: the manifest never produced an id
    'bad-fields': 'invalid',
    escape: 'invalid',
    'fixtures.good': 'active',
    'fixtures.hangs': 'failed',
    'fixtures.lazy': 'inactive',
    'fixtures.throws': 'failed'
  })
  t.match(host.status('fixtures.throws')!.error, { code: 'EXTENSION_FAILED', message: /activate\(\) threw: boom/ })
  t.match(host.status('fixtures.hangs')!.error, { code: 'TIMEOUT', message: /did not finish within 500 ms/ })
  t.match(host.status('bad-engine')!.error, { code: 'BAD_CONFIG', message: /bad-engine\/package\.json: engines\.patchswarm: ">=9\.0\.0" does not include patchswarm 0\.1\.0/ })
  t.match(host.status('escape')!.error, { code: 'BAD_CONFIG', message: /escape\/package\.json: main: / })

  // Reported on the screen, one message each.
  const errors = window.messages.filter((m) => m.severity === 'error').map((m) => m.message)
  t.equal(errors.length, 5)
  t.ok(errors.some((m) => /^Extension fixtures\.hangs failed and is disabled: TIMEOUT/.test(m)))
  t.ok(errors.some((m) => /^Extension fixtures\.throws failed and is disabled: EXTENSION_FAILED/.test(m)))

  t.notOk(host.getCommands().includes('throws.registered'), 'what the throwing one registered is undone')
  await t.rejects(host.executeCommand('throws.registered'), { code: 'UNAVAILABLE', message: /fixtures\.throws is failed: EXTENSION_FAILED/ })
  t.notOk(host.contributions().commands.some((c) => c.command === 'throws.registered'), 'and no longer offered')

  // The hanging one finishes long after: nothing it registers stays, its prompt is not shown.
  openGate()
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.same(events.filter((e) => e.startsWith('fixtures.hangs')), [
    'fixtures.hangs: late subscription disposed',
    'fixtures.hangs: registered late; the message answered undefined'
  ])
  t.notOk(host.getCommands().includes('hangs.late'))
  t.notOk(window.messages.some((m) => m.message === 'still there?'))
  t.equal(host.status('fixtures.hangs')!.state, 'failed', 'a late success does not revive it')

  // The rest works.
  t.equal(await host.executeCommand('good.hello', 'cy'), 'hello, cy')
  t.same(await host.executeCommand('lazy.run'), { ran: [] })
})

t.test('globalState survives a restart of the host and the database', async (t) => {
  const dbDir = await folder(t, 'db')
  const folders = [await root(t, ['good'])]
  for (const expected of [1, 2, 3]) {
    const db = await openDatabase(dbDir)
    const host = new ExtensionHost({ roots: folders, window: new MemoryWindow(), db, patchswarmVersion: '0.1.0' })
    await host.ready()
    t.equal(await host.executeCommand('good.activations'), expected, `activation ${expected} counted on top of the stored ones`)
    await host.close()
    await db.close()
  }
})

t.test('settings are checked against the contributed schema before the extension loads', async (t) => {
  const { host, events } = await setup(t, [await root(t, ['good'])], { settings: { 'good.limit': 50 } })
  await host.ready()
  t.match(host.status('fixtures.good'), { state: 'invalid', error: { code: 'BAD_CONFIG', message: /settings of fixtures\.good: good\.limit: Too big/ } })
  t.same(events, [], 'no code ran')
})

t.test('--readonly hides and refuses dangerous commands', async (t) => {
  const { host } = await setup(t, [await root(t, ['good'])], { readonly: true })
  await host.ready()
  t.notOk(host.contributions().commands.some((c) => c.command === 'good.danger'))
  t.notOk(host.contributions().keybindings.some((k) => k.command === 'good.danger'))
  await t.rejects(host.executeCommand('good.danger'), { code: 'FORBIDDEN' })
  t.equal(await host.executeCommand('good.hello', 'x'), 'hello, x')
})

t.test('a user-disabled extension loads nothing and holds no names', async (t) => {
  const { host, events } = await setup(t, [await root(t, ['good'])], { disabled: ['fixtures.good'] })
  await host.ready()
  t.equal(host.status('fixtures.good')!.state, 'disabled')
  t.same(events, [])
  await t.rejects(host.executeCommand('good.hello'), { code: 'UNAVAILABLE', message: /fixtures\.good is disabled/ })
})

t.test('an extension found twice, or contributing a name another has, is refused; the first keeps it', async (t) => {
  const copy = await folder(t, 'user')
  await fs.cp(path.join(FIXTURES, 'good'), path.join(copy, 'good'), { recursive: true })
  const clash = path.join(copy, 'clash')
  await fs.cp(path.join(FIXTURES, 'lazy'), clash, { recursive: true })
  const m = JSON.parse(await fs.readFile(path.join(clash, 'package.json'), 'utf8'))
  m.name = 'clash'
  m.contributes.commands.push({ command: 'good.hello', title: 'Mine' })
  await fs.writeFile(path.join(clash, 'package.json'), JSON.stringify(m))

  const { host } = await setup(t, [await root(t, ['good']), copy])
  await host.ready()
  const [first, second, third] = host.statuses()
  t.match(first, { id: 'fixtures.good', state: 'active' })
  t.match(second, { id: 'fixtures.clash', state: 'invalid', error: { message: /clash\/package\.json: contributes\.commands\[1\]\.command: good\.hello is already contributed by fixtures\.good/ } })
  t.match(third, { id: 'fixtures.good', state: 'invalid', error: { message: /good\/package\.json: name: fixtures\.good is already installed from / } })
})

t.test('a stopped extension reaches nothing through a context it kept', async (t) => {
  const dir = await folder(t, 'user')
  await fs.mkdir(path.join(dir, 'leaky'))
  await fs.writeFile(path.join(dir, 'leaky', 'package.json'), JSON.stringify({ name: 'leaky', publisher: 'x', version: '1.0.0', engines: { patchswarm: '*' }, main: 'main.mjs', activationEvents: ['onStartup'] }))
  await fs.writeFile(path.join(dir, 'leaky', 'main.mjs'), "export async function activate (ctx) { await ctx.commands.executeCommand('test.capture', ctx) }")
  const { host } = await setup(t, [dir])
  let ctx: any
  host.registerCommand('test.capture', (c: unknown) => { ctx = c })
  await host.ready()
  t.equal(host.status('x.leaky')!.state, 'active')
  await ctx.globalState.update('k', 1)
  await host.deactivate('x.leaky')

  ctx.commands.registerCommand('leaky.late', () => 1)
  t.notOk(host.getCommands().includes('leaky.late'), 'a registration does nothing')
  await t.rejects(ctx.globalState.update('k', 2), { code: 'CLOSED' })
  t.equal(ctx.globalState.get('k'), 1, 'reads still work')
  await t.rejects(ctx.commands.executeCommand('test.probe'), { code: 'CLOSED' })
  await t.rejects(ctx.fleet.tenants(), { code: 'CLOSED' })
  t.equal(await ctx.window.showInputBox({}), undefined, 'a prompt is dismissed, not rejected')
})

t.test('discovery: shipped extensions, then the user folder; missing folders are empty', async (t) => {
  const pkg = JSON.parse(await fs.readFile(path.resolve(import.meta.dirname, '../../package.json'), 'utf8'))
  t.equal(await patchswarmVersion(), pkg.version)
  const user = await folder(t, 'home-extensions')
  t.same(await defaultExtensionRoots({ PATCHSWARM_EXTENSIONS_DIR: user }), [path.resolve(import.meta.dirname, '../../extensions'), user])
  await fs.mkdir(path.join(user, '.git'))
  await fs.writeFile(path.join(user, 'notes.txt'), 'not an extension')
  await fs.symlink(path.join(FIXTURES, 'lazy'), path.join(user, 'b-lazy'))
  await fs.mkdir(path.join(user, 'a-empty'))
  t.same(await discoverExtensionFolders([path.join(user, 'missing'), user]), [path.join(user, 'a-empty'), path.join(user, 'b-lazy')])

  // A folder without a package.json is reported, and the rest load.
  const { host, window } = await setup(t, [path.join(user, 'missing'), user])
  await host.ready()
  t.same(host.statuses().map((s) => [s.id, s.state]), [['a-empty', 'invalid'], ['fixtures.lazy', 'inactive']])
  t.match(window.messages, [{ severity: 'error', source: 'extensions', message: /^Extension a-empty was not loaded: BAD_CONFIG: .*a-empty\/package\.json: missing$/ }])
})

t.test('globalState keeps JSON values per extension', async (t) => {
  const db = await openDatabase(await folder(t, 'state'))
  t.teardown(() => db.close())
  const a = await GlobalState.open(db, 'acme.a')
  const b = await GlobalState.open(db, 'acme.b')
  const value = { list: [1, 2] }
  await a.update('k', value)
  value.list.push(3)
  t.same(a.get('k'), { list: [1, 2] }, 'a later change to the value changes nothing stored')
  a.get<{ list: number[] }>('k')!.list.push(4)
  t.same(a.get('k'), { list: [1, 2] }, 'nor does a change to what get() returned')
  t.equal(b.get('k'), undefined, 'each extension has its own keys')
  t.equal(b.get('k', 7), 7)
  await t.rejects(a.update('big', 'x'.repeat(MAX_STATE_VALUE_BYTES)), { code: 'BAD_ARGUMENT' })
  await t.rejects(a.update('n', 10n), { code: 'BAD_ARGUMENT', message: /not a JSON value/ })
  await t.rejects(a.update('f', () => 1), { code: 'BAD_ARGUMENT' })
  await a.update('gone', 1)
  await a.update('gone', undefined)
  t.same(a.keys(), ['k'])
  t.same((await GlobalState.open(db, 'acme.a')).keys(), ['k'], 'as stored')
})
