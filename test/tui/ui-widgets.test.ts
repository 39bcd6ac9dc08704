// The widgets driven through a real blessed screen on PassThrough streams: keys are typed into the
// input stream as a terminal sends them, assertions are on the rendered screen text.
import t, { type Test } from 'tap'
import { headless, KEY, type Headless } from '../../tui/ui/headless.js'
import type { Region } from '../../tui/ui/region.js'
import type { Table } from '../../tui/ui/table.js'
import type { Tree } from '../../tui/ui/tree.js'
import type { View } from '../../tui/ui/view.js'

interface Ep { id: string, tenant: string, status: string, n: number }

const endpoints = (count: number): Ep[] => Array.from({ length: count }, (_, i) => ({
  id: `ep-${String(i).padStart(5, '0')}`,
  tenant: i % 3 === 0 ? 'acme/site-1' : 'globex/hq',
  status: i % 7 === 0 ? 'failed' : 'ok',
  n: i
}))

function view (id: string, mount: (r: Region) => void, extra: Partial<View> = {}): View {
  return { id, title: id[0]!.toUpperCase() + id.slice(1), mount, unmount () {}, ...extra }
}

function session (t: Test, opts: Parameters<typeof headless>[0] = {}): Headless {
  const h = headless(opts)
  t.teardown(() => h.close())
  return h
}

/** Opens an endpoints table; `formatted` counts the rows the table formatted. */
function endpointsTable (h: Headless, rows: Ep[]) {
  const counter = { formatted: 0 }
  let table!: Table<Ep>
  h.ui.push(view('endpoints', (r) => {
    table = r.table<Ep>({
      title: 'Endpoints',
      key: (e) => e.id,
      columns: [
        { title: 'Endpoint', width: 10, value: (e) => e.id, format: (e) => { counter.formatted++; return e.id } },
        { title: 'Tenant', value: (e) => e.tenant },
        { title: 'Status', width: 8, value: (e) => e.status },
        { title: 'N', width: 6, align: 'right', value: (e) => e.n }
      ]
    })
    table.setRows(rows)
  }))
  return { table, counter }
}

const rowsOf = (lines: string[]) => lines.filter((l) => /^ep-\d{5}/.test(l))

t.test('a 10 000-row table renders only the visible rows, quickly', async (t) => {
  const h = session(t)
  const rows = endpoints(10_000)
  const { table, counter } = endpointsTable(h, rows)
  const start = performance.now()
  for (let i = 0; i < 20; i++) table.setRows(rows.map((r) => r.n === i ? { ...r, status: 'failed' } : r))
  let lines = h.text()
  const ms = performance.now() - start
  t.ok(ms < 1000, `20 setRows of 10 000 rows and a render took ${ms.toFixed(0)} ms`)
  // 24 rows: header, title rule, column titles, 19 rows, footer, status line.
  t.equal(rowsOf(lines).length, 19)
  t.equal(lines[1], '── Endpoints [10000] ' + '─'.repeat(59))
  t.match(lines[2], /^ENDPOINT\s+TENANT\s+STATUS\s+N$/)
  t.ok(counter.formatted <= 19, `formatted ${counter.formatted} rows, not 10 000`)
  counter.formatted = 0
  await h.type(KEY.end)
  lines = h.text()
  t.equal(rowsOf(lines).at(-1)?.slice(0, 8), 'ep-09999')
  t.equal(table.selected?.id, 'ep-09999')
  t.ok(counter.formatted <= 19)
  await h.type(KEY.home, KEY.pagedown)
  t.equal(table.selected?.id, 'ep-00018', 'a page is the visible rows less one')
})

t.test('the selection follows its row across setRows', async (t) => {
  const h = session(t)
  const rows = endpoints(100)
  const { table } = endpointsTable(h, rows)
  await h.type('j', 'j', 'j')
  t.equal(table.selected?.id, 'ep-00003')
  table.setRows([...rows].reverse())
  h.text()
  t.equal(table.selected?.id, 'ep-00003')
  t.equal(table.cursor, 96)
})

t.test('sorting by key and by clicking a column title', async (t) => {
  const h = session(t)
  const { table } = endpointsTable(h, endpoints(50))
  await h.type('o', 'o', 'o', 'o') // ENDPOINT, TENANT, STATUS, N
  await h.type('O')
  let lines = h.text()
  t.match(lines[2], /N↓$/)
  t.equal(table.shownRows[0]?.id, 'ep-00049', 'N descending')
  t.same(table.sort, { column: 'N', descending: true })
  t.equal(table.selected?.id, 'ep-00000', 'the selection stayed on its row, now the last')
  t.equal(rowsOf(lines).at(-1)?.slice(0, 8), 'ep-00000', 'and in view')
  await h.type(...KEY.click(15, 2)) // the TENANT title
  lines = h.text()
  t.match(lines[2], /TENANT↑/)
  t.equal(table.shownRows[0]?.tenant, 'acme/site-1')
})

t.test('/ filters with a regular expression; ! inverts; esc clears, then goes back', async (t) => {
  const h = session(t)
  h.ui.push(view('home', (r) => { r.text().setLines(['home']) }))
  const { table } = endpointsTable(h, endpoints(300))
  await h.type('/', ...'acme')
  let lines = h.text()
  t.equal(table.shownRows.length, 100)
  t.ok(rowsOf(lines).every((l) => l.includes('acme/site-1')))
  t.match(lines[1], /Endpoints \[100\/300\] \/acme/)
  t.equal(lines[23], '/acme', 'the filter is edited in the status line')
  await h.type(KEY.enter)
  t.equal(h.ui.filter?.text, 'acme')

  await h.type('/', KEY.ctrl('u'), ...'!acme|fail')
  lines = h.text()
  t.ok(rowsOf(lines).length > 0)
  t.ok(rowsOf(lines).every((l) => l.includes('globex/hq') && !l.includes('failed')), '! keeps the rows that do not match')
  t.equal(table.shownRows.length, 300 - 100 - table.rows.filter((e) => e.tenant !== 'acme/site-1' && e.status === 'failed').length)

  await h.type(KEY.backspace, KEY.backspace, KEY.backspace, KEY.backspace, KEY.backspace, '(', KEY.enter)
  lines = h.text()
  t.equal(h.ui.filter?.literal, true, '"!acme(" is no regular expression: matched as text')
  t.equal(table.shownRows.length, 300, 'no endpoint contains "acme(", so all pass the inverted filter')
  t.match(lines[23], /not a regular expression/)

  await h.type('/', KEY.ctrl('u'), ...'^ep-0001[0-2]', KEY.enter)
  t.same(table.shownRows.map((e) => e.id), ['ep-00010', 'ep-00011', 'ep-00012'], 'anchored on the row text')

  await h.type(KEY.escape)
  t.equal(h.ui.filter, null, 'esc clears the filter first')
  t.equal(table.shownRows.length, 300)
  t.equal(h.ui.current?.id, 'endpoints')
  await h.type(KEY.escape)
  t.equal(h.ui.current?.id, 'home', 'then goes back')
})

t.test('the tree expands, collapses, and filters to the paths of matches', async (t) => {
  interface N { id: string, kids?: N[] }
  const roots: N[] = [{
    id: 'msp-1',
    kids: [
      { id: 'msp-1/acme', kids: [{ id: 'msp-1/acme/site-1' }, { id: 'msp-1/acme/site-2' }] },
      { id: 'msp-1/globex', kids: [{ id: 'msp-1/globex/hq' }] }
    ]
  }]
  const h = session(t)
  let tree!: Tree<N>
  const opened: string[] = []
  h.ui.push(view('tenants', (r) => {
    tree = r.tree<N>({
      id: (n) => n.id,
      label: (n) => n.id.split('/').pop()!,
      children: (n) => n.kids,
      columns: [{ title: 'Status', width: 8, value: (n) => n.kids ? '' : 'ok' }],
      onOpen: (n) => opened.push(n.id)
    })
    tree.setRoots(roots)
  }))
  let lines = h.text()
  t.same(lines.slice(2, 5), ['▾ msp-1', '  ▸ acme', '  ▸ globex'], 'roots expanded, one level shown')
  await h.type('j', 'l')
  lines = h.text()
  t.match(lines[4], /^ {6}site-1 +ok$/)
  await h.type('l', 'h')
  t.equal(tree.selected?.id, 'msp-1/acme', 'left on a leaf steps out to the parent')
  await h.type('h')
  t.equal(tree.shown.length, 3, 'collapsed again')
  await h.type(KEY.enter)
  t.same(opened, ['msp-1/acme'])

  await h.type('/', ...'hq', KEY.enter)
  t.same(tree.shown.map((r) => r.node.id), ['msp-1', 'msp-1/globex', 'msp-1/globex/hq'])
  t.ok(tree.select('msp-1/globex/hq'))
  await h.type(KEY.escape)
  t.equal(tree.selected?.id, 'msp-1/globex/hq', 'the selection survives clearing the filter')
  t.equal(tree.shown.length, 4, 'the path to it stays expanded')
})

t.test('split regions lay out text, a table and a tree together; tab moves the focus', async (t) => {
  const h = session(t)
  let a!: Table<Ep>
  let b!: Table<Ep>
  h.ui.push(view('dash', (r) => {
    const [top, bottom] = r.split('rows', [3, '*'])
    top!.text({ title: 'KPIs' }).setLines(['compliance 97%', [{ text: 'breaches ', tone: 'bold' }, { text: '3', tone: 'bad' }]])
    const [left, right] = bottom!.split('columns', ['50%', '*'])
    a = left!.table<Ep>({ title: 'Left', columns: [{ title: 'Id', value: (e) => e.id }] })
    b = right!.table<Ep>({ title: 'Right', columns: [{ title: 'Id', value: (e) => e.id }] })
    a.setRows(endpoints(5))
    b.setRows(endpoints(5))
    t.throws(() => top!.table({ columns: [{ title: 'x', value: () => 1 }] }), { code: 'BAD_ARGUMENT' }, 'one widget per region')
  }))
  const lines = h.text()
  t.match(lines[1], /^── KPIs ─+$/)
  t.equal(lines[2], 'compliance 97%')
  t.equal(lines[3], 'breaches 3')
  t.match(lines[4], /^── Left \[5\] ─+── Right \[5\] ─+$/)
  t.equal(lines[4]!.indexOf('── Right'), 40, 'the right column starts half-way')
  t.equal(h.ui.focused, a)
  await h.type(KEY.tab, 'j')
  t.equal(h.ui.focused, b)
  t.equal(b.selected?.id, 'ep-00001')
  t.equal(a.selected?.id, 'ep-00000')
  await h.type(...KEY.click(2, 7))
  t.equal(h.ui.focused, a, 'a click focuses')
  t.equal(a.selected?.id, 'ep-00001')
})

t.test('mouse: a click selects, a click on the selected row opens, the wheel scrolls', async (t) => {
  const h = session(t)
  const opened: string[] = []
  let table!: Table<Ep>
  h.ui.push(view('endpoints', (r) => {
    table = r.table<Ep>({ columns: [{ title: 'Id', value: (e) => e.id }], onOpen: (e) => opened.push(e.id) })
    table.setRows(endpoints(100))
  }))
  h.text()
  await h.type(...KEY.click(3, 5)) // header row 0, column titles row 1, rows from 2
  t.equal(table.selected?.id, 'ep-00003')
  await h.type(...KEY.click(3, 5))
  t.same(opened, ['ep-00003'])
  await h.type(KEY.wheelDown(3, 5))
  t.equal(table.selected?.id, 'ep-00006')
})
