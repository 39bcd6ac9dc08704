// The screen as a whole, driven through blessed on PassThrough streams: dialogs, --readonly, the
// key table feeding help, hints and commands, the command line, resizes, the view stack.
import t, { type Test } from 'tap'
import { headless, KEY, type Headless } from '../../tui/ui/headless.js'
import { parseKeymap, type KeyAction } from '../../tui/ui/keys.js'
import type { Region } from '../../tui/ui/region.js'
import type { Table } from '../../tui/ui/table.js'
import type { View } from '../../tui/ui/view.js'

interface Rollout { id: string, state: string }
const ROLLOUTS: Rollout[] = [{ id: 'r-1', state: 'running' }, { id: 'r-2', state: 'halted' }, { id: 'r-3', state: 'running' }]

function session (t: Test, opts: Parameters<typeof headless>[0] = {}): Headless {
  const h = headless(opts)
  t.teardown(() => h.close())
  return h
}

/** A rollouts view with a dangerous abort on `x` and a safe pause on `p`. */
function rolloutsView (log: string[], extra: Partial<View> = {}): View & { table?: Table<Rollout> } {
  const v: View & { table?: Table<Rollout> } = {
    id: 'rollouts',
    title: 'Rollouts',
    mount (r: Region) {
      v.table = r.table<Rollout>({ key: (x) => x.id, columns: [{ title: 'Id', width: 10, value: (x) => x.id }, { title: 'State', value: (x) => x.state }] })
      v.table.setRows(ROLLOUTS)
    },
    unmount () { log.push('unmount rollouts') },
    keys: [
      { action: 'rollout.abort', key: 'x', hint: 'abort', dangerous: true, description: 'Abort the selected rollout', confirm: () => `Abort rollout ${v.table?.selected?.id}?`, run: () => { log.push(`abort ${v.table?.selected?.id}`) } },
      { action: 'rollout.pause', key: 'p', hint: 'pause', description: 'Pause the selected rollout', run: () => { log.push(`pause ${v.table?.selected?.id}`) } }
    ],
    ...extra
  }
  return v
}

const bodyText = (lines: string[]) => lines.join('\n')

t.test('a dangerous action asks first with Cancel focused: Enter right away does nothing', async (t) => {
  const h = session(t)
  const log: string[] = []
  h.ui.push(rolloutsView(log))
  await h.type('j', 'x')
  let screen = bodyText(h.text())
  t.ok(h.ui.modal, 'a dialog is open')
  t.match(screen, /Abort rollout r-2\?/)
  t.match(screen, />\[ Cancel \]<\s+\[ abort \]/, 'Cancel is the focused button')
  await h.type(KEY.enter)
  t.same(log, [], 'Enter on the default did not abort')
  t.notOk(h.ui.modal)

  await h.type('x', 'y')
  t.ok(h.ui.modal, 'no y shortcut on a dangerous question')
  await h.type(KEY.escape)
  t.same(log, [])
  t.notOk(h.ui.modal, 'esc cancels')

  await h.type('x', KEY.right)
  screen = bodyText(h.text())
  t.match(screen, /\[ Cancel \] \s+>\[ abort \]</, 'the arrow moves the focus to abort')
  await h.type(KEY.enter)
  t.same(log, ['abort r-2'], 'only a deliberate choice aborts')

  // The same question on the command line and on a footer click.
  await h.type(':', ...'rollout.abort', KEY.enter)
  t.ok(h.ui.modal, ':rollout.abort asks too')
  await h.type(KEY.enter)
  t.same(log, ['abort r-2'])
  const footer = h.text()[22]!
  await h.type(...KEY.click(footer.indexOf('<x>'), 22))
  t.ok(h.ui.modal, 'a click on the hint asks too')
  await h.type(KEY.tab, KEY.enter)
  t.same(log, ['abort r-2', 'abort r-2'])
})

t.test('the key table feeds the footer, ? help and : completion; --readonly removes dangerous actions from all', async (t) => {
  for (const readonly of [false, true]) {
    const h = session(t, { readonly })
    const log: string[] = []
    h.ui.push(rolloutsView(log))
    let lines = h.text()
    t.equal(/\[readonly\]$/.test(lines[0]!), readonly, `header, readonly=${readonly}`)
    t.match(lines[22], readonly ? /^<p> pause {2}<\?> help {2}<\/> filter/ : /^<x> abort! {2}<p> pause {2}<\?> help/)
    t.equal(lines[22]!.includes('abort'), !readonly, `footer, readonly=${readonly}`)

    await h.type(':', ...'rollout.', KEY.tab)
    lines = h.text()
    t.equal(lines[22]!.includes('rollout.abort'), !readonly, `completion candidates, readonly=${readonly}`)
    if (readonly) t.equal(lines[23], ':rollout.pause', 'the only candidate completes')
    await h.type(KEY.escape, ':', ...'rollout.abort', KEY.enter)
    t.equal(h.ui.modal, !readonly)
    if (!readonly) await h.type(KEY.escape)
    else t.match(h.text()[23], /unknown command :rollout\.abort/)

    await h.type('x')
    t.equal(h.ui.modal, !readonly, `key x, readonly=${readonly}`)
    if (!readonly) await h.type(KEY.escape)

    await h.type('?')
    lines = h.text()
    t.equal(h.ui.current?.id, 'help')
    t.match(lines[0], /Rollouts › Help: Rollouts/)
    const screen = bodyText(lines)
    t.match(screen, /p\s+:rollout\.pause\s+Pause the selected rollout/)
    t.match(screen, /\?\s+:help\s+Show the keys/)
    t.match(lines[1], /Keys and commands \(! asks first\)/)
    t.equal(/x\s+:rollout\.abort\s+Abort the selected rollout !/.test(screen), !readonly, `help, readonly=${readonly}`)
    t.equal(bodyText(lines.slice(0, 23)).includes('abort'), !readonly, 'nowhere in help or hints')
    await h.type('?')
    t.equal(h.ui.current?.id, 'rollouts', '? again closes help')
    t.same(log, [])
  }
})

t.test('a user keymap moves keys, and it shows in the footer and help', async (t) => {
  const h = session(t, { keymap: parseKeymap({ keys: { 'rollout.abort': 'X', 'rollout.pause': ['f2', 'P'], help: 'f1' } }) })
  const log: string[] = []
  h.ui.push(rolloutsView(log))
  await h.type('x', 'p', '?')
  t.notOk(h.ui.modal)
  t.same(log, [], 'the default keys no longer act')
  t.equal(h.ui.current?.id, 'rollouts')
  await h.type('P')
  t.same(log, ['pause r-1'])
  t.match(h.text()[22], /^<X> abort! {2}<f2> pause {2}<f1> help/)
  await h.type('X')
  t.ok(h.ui.modal, 'the user key reaches the action (and it still asks)')
  await h.type(KEY.escape, '\x1bOP') // F1
  t.equal(h.ui.current?.id, 'help')
  t.match(bodyText(h.text()), /f2 P\s+:rollout\.pause/)
  // Views cannot take the tmux prefixes either.
  const bad: KeyAction = { action: 'bad', key: 'C-b', description: 'x', run () {} }
  t.throws(() => h.ui.push({ id: 'bad', title: 'Bad', mount () {}, unmount () {}, keys: [bad] }), { code: 'BAD_ARGUMENT' })
  t.equal(h.ui.current?.id, 'help', 'the refused view was not opened')
  t.throws(() => h.ui.register(bad), { code: 'BAD_ARGUMENT' })
})

t.test('the command line completes names and arguments, keeps a history, and says what is unknown', async (t) => {
  const h = session(t)
  const ran: string[] = []
  const tenants = ['acme/', 'acme/site-1', 'globex/']
  h.ui.push({ id: 'home', title: 'Home', mount () {}, unmount () {} })
  h.ui.register({ action: 'rollouts', description: 'Show rollouts', run: () => { ran.push('rollouts') } })
  h.ui.register({ action: 'releases', description: 'Show releases', run: () => { ran.push('releases') } })
  h.ui.register({
    action: 'endpoints',
    description: 'Show endpoints under a tenant',
    complete: (partial) => tenants.filter((x) => x.startsWith(partial)),
    run: (args) => { ran.push(`endpoints ${args.join(',')}`) }
  })
  await h.type(':', 'r', 'o', KEY.tab)
  t.equal(h.text()[23], ':rollouts', 'a unique prefix completes, with a space')
  await h.type(KEY.enter)
  t.same(ran, ['rollouts'])

  await h.type(':', 'r', KEY.tab)
  let lines = h.text()
  t.equal(lines[23], ':r')
  t.equal(lines[22], 'releases  rollouts', 'the candidates show in the footer')
  await h.type('e', KEY.tab, KEY.enter)
  t.same(ran, ['rollouts', 'releases'])

  await h.type(':', ...'endpoints a', KEY.tab)
  t.equal(h.text()[23], ':endpoints acme/', 'the argument completes to the common prefix')
  await h.type(KEY.tab)
  t.equal(h.text()[22], 'acme/  acme/site-1')
  await h.type(...'s', KEY.tab, KEY.enter)
  t.same(ran.at(-1), 'endpoints acme/site-1')

  await h.type(':', KEY.up)
  t.equal(h.text()[23], ':endpoints acme/site-1', 'as entered (the trailing space is the cursor)')
  await h.type(KEY.up, KEY.up, KEY.down)
  t.equal(h.text()[23], ':releases')
  await h.type(KEY.escape)
  t.same(ran.length, 3, 'esc runs nothing')

  await h.type(':', ...'nope', KEY.enter)
  lines = h.text()
  t.match(lines[23], /^unknown command :nope/)

  const quit = new Promise((resolve) => h.ui.once('quit', resolve))
  await h.type(':', 'q', KEY.enter)
  await quit
  t.pass(':q asks the host to quit')
})

t.test('esc goes back; a covered view keeps its state; unmount runs once per view', async (t) => {
  const h = session(t)
  const log: string[] = []
  const first = rolloutsView(log)
  h.ui.push(first)
  await h.type('j', 'j')
  h.ui.push({ id: 'detail', title: 'r-3', mount (r) { r.text().setLines(['phase 1 of 3']) }, unmount () { log.push('unmount detail') } })
  let lines = h.text()
  t.match(lines[0], / patchswarm › Rollouts › r-3/)
  t.equal(lines[1], 'phase 1 of 3')
  t.notOk(bodyText(lines).includes('r-1'), 'the covered view is hidden')
  await h.type('x')
  t.notOk(h.ui.modal, 'the covered view\'s keys are out of reach')
  await h.type(KEY.escape)
  lines = h.text()
  t.equal(h.ui.current, first)
  t.equal(first.table?.selected?.id, 'r-3', 'the selection is where it was')
  t.match(lines[2], /^r-1/)
  t.same(log, ['unmount detail'])
  await h.type(KEY.escape)
  t.equal(h.ui.views.length, 1, 'esc on the first view stays')
  h.ui.reset({ id: 'home', title: 'Home', mount () {}, unmount () {} })
  t.same(log, ['unmount detail', 'unmount rollouts'])
  h.close()
  h.close()
  t.same(log, ['unmount detail', 'unmount rollouts'], 'close unmounts what is open, once')
  t.ok(h.ui.closed)
})

t.test('a resize lays everything out again', async (t) => {
  const h = session(t)
  let sizes: Array<{ width: number, height: number }> = []
  h.ui.push({
    id: 'dash',
    title: 'Dash',
    mount (r) {
      const [a, b] = r.split('columns', ['50%', '*'])
      a!.text().setLines(['left'])
      const table = b!.table<number>({ columns: [{ title: 'N', value: (n) => n }] })
      table.setRows(Array.from({ length: 100 }, (_, i) => i))
      r.onResize((s) => sizes.push(s))
    },
    unmount () {}
  })
  let lines = h.text()
  t.equal(lines.length, 24)
  t.equal(lines[2]!.indexOf('0'), 40)
  sizes = []
  const resized = new Promise((resolve) => h.ui.once('resize', resolve))
  h.ui.resize(120, 40)
  t.same(await resized, { width: 120, height: 40 })
  lines = h.text()
  t.equal(lines.length, 40)
  t.equal(lines[2]!.indexOf('0'), 60, 'the columns split the new width')
  t.match(lines[38], /<\?> help/, 'the footer moved to the new bottom')
  t.equal(lines[1], 'left'.padEnd(60) + 'N')
  t.equal(lines[37], ' '.repeat(60) + '35', 'the table shows rows down to the footer')
  t.same(sizes, [{ width: 120, height: 37 }], 'the region heard of its new size')

  const asked = h.ui.confirm({ message: 'Still here?' })
  h.ui.resize(60, 20)
  lines = h.text()
  t.equal(lines.length, 20)
  t.ok(lines.some((l) => l.includes('Still here?')), 'an open dialog is laid out again')
  await h.type(KEY.escape)
  t.equal(await asked, false)
})

t.test('prompt and quick pick', async (t) => {
  const h = session(t)
  h.ui.push({ id: 'home', title: 'Home', mount () {}, unmount () {} })
  const name = h.ui.prompt({ title: 'Tenant', message: 'New tenant path', validate: (s) => s.endsWith('/') ? undefined : 'a tenant path ends in /' })
  await h.type(...'acme', KEY.enter)
  t.match(bodyText(h.text()), /a tenant path ends in \//, 'the prompt stays open with the error')
  await h.type('/', KEY.enter)
  t.equal(await name, 'acme/')
  const none = h.ui.prompt({})
  await h.type('x', KEY.escape)
  t.equal(await none, undefined)

  const picked = h.ui.pick([{ label: 'acme', value: 1 }, { label: 'globex', detail: 'hq', value: 2 }, { label: 'initech', value: 3 }], { title: 'Tenant' })
  await h.type('i')
  let screen = bodyText(h.text())
  t.notOk(screen.includes('globex'), 'typing narrows the list')
  t.match(screen, /> initech/)
  await h.type(KEY.backspace, KEY.down, KEY.enter)
  t.equal(await picked, 2)
  const clicked = h.ui.pick([{ label: 'one', value: 'one' }, { label: 'two', value: 'two' }])
  const lines = h.text()
  const row = lines.findIndex((l) => l.includes('  two'))
  await h.type(...KEY.click(lines[row]!.indexOf('two'), row))
  t.equal(await clicked, 'two')
  screen = bodyText(h.text())
  t.notOk(screen.includes('one'), 'the dialog is gone')
})

t.test('a failing action is reported in the status line; the session goes on', async (t) => {
  const h = session(t)
  const log: string[] = []
  h.ui.push(rolloutsView(log))
  h.ui.register({ action: 'boom', key: 'b', description: 'Fails', run: async () => { throw new Error('console unreachable') } })
  await h.type('b')
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(h.text()[23], 'console unreachable')
  await h.type('p')
  t.same(log, ['pause r-1'])
  t.equal(await h.ui.run('rollout.pause'), true)
})

t.test('each session has its own screen on its own streams', async (t) => {
  const a = session(t)
  const b = session(t, { width: 100, height: 30 })
  const la: string[] = []
  const lb: string[] = []
  a.ui.push(rolloutsView(la))
  b.ui.push(rolloutsView(lb))
  await a.type('j', 'p')
  await b.type('p')
  t.same(la, ['pause r-2'])
  t.same(lb, ['pause r-1'])
  t.equal(a.text().length, 24)
  t.equal(b.text().length, 30)
  a.close()
  await b.type('j', 'p')
  t.same(lb, ['pause r-1', 'pause r-2'], 'closing one leaves the other working')
})

t.test('close cancels an open dialog and refuses new ones', async (t) => {
  const h = session(t)
  const asked = h.ui.confirm({ message: 'Sure?', dangerous: true })
  h.close()
  t.equal(await asked, false)
  await t.rejects(h.ui.confirm({ message: 'again?' }), { code: 'CLOSED' })
  t.throws(() => h.ui.push({ id: 'x', title: 'X', mount () {}, unmount () {} }), { code: 'CLOSED' })
})

t.test('when clauses see the view, the selection and the view\'s own context', async (t) => {
  const h = session(t)
  const log: string[] = []
  const v: ReturnType<typeof rolloutsView> = rolloutsView(log, {
    context: () => ({ state: v.table?.selected?.state }),
    keys: [{ action: 'rollout.resume', key: 'r', when: 'selected && state == halted', description: 'Resume the halted rollout', run: () => { log.push(`resume ${v.table?.selected?.id}`) } }]
  })
  h.ui.push(v)
  await h.type('r')
  t.same(log, [], 'r-1 is running: nothing to resume')
  t.notOk(h.text()[22]!.includes('resume'), 'and no hint for it')
  await h.type(':', ...'rollout.resume', KEY.enter)
  t.match(h.text()[23], /:rollout\.resume does not apply here/)
  await h.type('j', 'r')
  t.same(log, ['resume r-2'])
  t.match(h.text()[22], /^<r> Resume the halted rollout  <\?> help/, 'without a hint label the description shows')
  v.table!.setRows([])
  await h.type(':', ...'rollout.resume', KEY.enter)
  t.same(log, ['resume r-2'], 'nothing selected: does not apply')
})

t.test('the filter line: live, up/down walk the matches, esc clears; a view may take the filter itself', async (t) => {
  const h = session(t)
  const log: string[] = []
  const v = rolloutsView(log)
  h.ui.push(v)
  await h.type('/', ...'running')
  t.same(v.table!.shownRows.map((r) => r.id), ['r-1', 'r-3'], 'applied while typing')
  await h.type(KEY.down)
  t.equal(v.table!.selected?.id, 'r-3')
  t.equal(h.text()[23], '/running', 'still typing')
  await h.type(KEY.escape)
  t.equal(h.ui.filter, null)
  t.equal(v.table!.shownRows.length, 3)
  t.equal(h.ui.current, v, 'esc in the filter line does not go back')

  const seen: Array<string | null> = []
  h.ui.push({ id: 'events', title: 'Events', mount () {}, unmount () {}, onFilter: (f) => { seen.push(f?.text ?? null) } })
  await h.type('/', 'a', 'b', KEY.enter, KEY.escape)
  t.same(seen, ['a', 'ab', null])
  h.ui.setFilter('!x')
  t.same(seen.at(-1), '!x')
})

t.test('a view that fails to mount is not opened; a failing render is reported, not fatal', async (t) => {
  const h = session(t)
  const log: string[] = []
  h.ui.push(rolloutsView(log))
  t.throws(() => h.ui.push({ id: 'broken', title: 'Broken', mount () { throw new Error('no data') }, unmount () { log.push('unmount broken') } }), /no data/)
  t.equal(h.ui.current?.id, 'rollouts')
  t.match(h.text()[23], /Broken: no data/)
  t.match(h.text()[2], /^r-1/, 'the view below shows again')

  const errors: unknown[] = []
  h.ui.on('error', (err) => errors.push(err))
  let fail = true
  h.ui.push({
    id: 'flaky',
    title: 'Flaky',
    mount (r) { r.table<number>({ columns: [{ title: 'N', value: (n) => { if (fail) throw new Error('bad row'); return n } }] }).setRows([1]) },
    unmount () {}
  })
  h.text()
  t.match(errors, [/bad row/])
  fail = false
  h.ui.invalidate()
  await h.type('j')
  t.equal(h.text()[2], '1', 'the next render works')

  const asked = h.ui.confirm({ message: 'Sure?' })
  await h.type(...KEY.click(0, 2))
  t.ok(h.ui.modal, 'a click behind a dialog does nothing')
  await h.type('y')
  t.equal(await asked, true, 'a question that is not dangerous takes y')
})
