// The view layer's pure parts: charts, the filter, throttling, region sizes, completion, text fitting.
import t from 'tap'
import { sparkline, bar, gauge, stackedBar, percent } from '../../tui/ui/charts.js'
import { compileFilter } from '../../tui/ui/filter.js'
import { throttle } from '../../tui/ui/throttle.js'
import { divide } from '../../tui/ui/region.js'
import { completeLine, parseCommand, History } from '../../tui/ui/command-line.js'
import { LineEditor } from '../../tui/ui/line-editor.js'
import { wrap } from '../../tui/ui/dialog.js'
import { fit, markup, plain } from '../../tui/ui/style.js'

const text = (spans: Array<{ text: string }>) => spans.map((s) => s.text).join('')

t.test('sparkline: one block per value, scaled to the range', async (t) => {
  t.equal(sparkline([1, 2, 3, 4, 5, 6, 7, 8]), '▁▂▃▄▅▆▇█')
  t.equal(sparkline([0, 10, 5]), '▁█▅')
  t.equal(sparkline([3, 3, 3]), '▁▁▁', 'a flat series stays on the floor')
  t.equal(sparkline([1, null, 8, Number.NaN]), '▁ █ ', 'gaps are blanks')
  t.equal(sparkline([1, 2, 3, 4, 5, 6, 7, 8], { width: 3 }), '▁▅█', 'the newest values, scaled to their own range')
  t.equal(sparkline([0.5], { min: 0, max: 1 }), '▅', 'a fixed range (WAN savings 0..1)')
  t.equal(sparkline([2], { min: 0, max: 1 }), '█', 'clamped')
  t.equal(sparkline([]), '')
})

t.test('bars, gauges and stacked phase bars', async (t) => {
  t.equal(bar(0.5, 10), '█████     ')
  t.equal(bar(0.55, 10), '█████▌    ', 'eighths of a cell')
  t.equal(bar(2, 4), '████')
  t.equal(bar(null, 4), '    ')
  t.equal(percent(0.971), '97%')
  t.equal(percent(null), '–')
  const g = gauge(0.4, 20, { warnBelow: 0.9, badBelow: 0.5 })
  t.equal(text(g), '[█████▎       ]  40%')
  t.equal(text(g).length, 20)
  t.equal(g[1]?.tone, 'bad')
  t.equal(gauge(0.95, 20, { warnBelow: 0.9 })[1]?.tone, 'ok')

  const phase = stackedBar([{ value: 600, tone: 'ok' }, { value: 1, tone: 'bad' }, { value: 100, tone: 'warn' }], 1000, 20)
  t.equal(text(phase).length, 20)
  t.same(phase.map((s) => [s.text.length, s.tone]), [[12, 'ok'], [1, 'bad'], [2, 'warn'], [5, 'dim']], 'one failure among 1000 still shows')
  t.equal(text(stackedBar([{ value: 0 }], 0, 5)), '░░░░░')
  const crowded = stackedBar(Array.from({ length: 8 }, () => ({ value: 1 })), 1000, 5)
  t.equal(text(crowded).length, 5, 'never wider than asked')
})

t.test('the filter: regex, case-insensitive, ! inverts, bad regex matched literally', async (t) => {
  t.equal(compileFilter(''), null)
  t.equal(compileFilter('!'), null)
  const f = compileFilter('^acme/(site-1|hq)')!
  t.ok(f.test('ACME/hq'))
  t.notOk(f.test('globex/acme/hq'))
  const inv = compileFilter('!acme')!
  t.ok(inv.inverted)
  t.notOk(inv.test('acme/site-1'))
  t.ok(inv.test('globex'))
  const lit = compileFilter('a(b')!
  t.ok(lit.literal)
  t.ok(lit.test('xa(by'))
  t.notOk(lit.test('ab'))
})

t.test('throttle: a burst renders once; renders are at least an interval apart', async (t) => {
  let now = 0
  let calls = 0
  const th = throttle(() => { calls++ }, 100, () => now)
  for (let i = 0; i < 100; i++) th.schedule()
  t.equal(calls, 0, 'not synchronously')
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(calls, 1, 'a burst coalesces into one call on the next turn')
  now = 30
  th.schedule()
  th.schedule()
  t.ok(th.pending)
  await new Promise((resolve) => setTimeout(resolve, 20))
  t.equal(calls, 1, 'not before the interval is over')
  await new Promise((resolve) => setTimeout(resolve, 80))
  t.equal(calls, 2, 'then once')
  th.schedule()
  th.flush()
  t.equal(calls, 3, 'flush calls now')
  t.notOk(th.pending, 'and drops the pending call')
  th.schedule()
  th.cancel()
  await new Promise((resolve) => setTimeout(resolve, 120))
  t.equal(calls, 3, 'cancelled')
})

t.test('region sizes: cells, percentages and shares add up exactly', async (t) => {
  t.same(divide(21, [3, '*']), [3, 18])
  t.same(divide(80, ['50%', '*']), [40, 40])
  t.same(divide(81, ['*', '*']), [40, 41])
  t.same(divide(23, ['*', '*', '*']), [7, 8, 8])
  t.same(divide(10, [8, 8]), [8, 2], 'too much: the last gives way')
  t.same(divide(10, ['30%', 2, '*']), [3, 2, 5])
})

t.test('completion and command parsing', async (t) => {
  const names = ['releases', 'rollouts', 'rollout.abort', 'tenant']
  t.same(completeLine('te', names), { line: 'tenant ', candidates: [] })
  t.same(completeLine('r', names), { line: 'r', candidates: ['releases', 'rollout.abort', 'rollouts'] })
  t.same(completeLine('ro', names), { line: 'rollout', candidates: ['rollout.abort', 'rollouts'] })
  t.same(completeLine('x', names), { line: 'x', candidates: [] })
  const args = (cmd: string) => cmd === 'tenant' ? ['msp-1/', 'msp-2/'] : []
  t.same(completeLine('tenant msp-1', names, args), { line: 'tenant msp-1/', candidates: [] }, 'no space after a path')
  t.same(parseCommand('  endpoints acme/  "two words" x\\y '), { name: 'endpoints', args: ['acme/', 'two words', 'x\\y'] })
  t.equal(parseCommand('   '), undefined)
  const h = new History(2)
  h.add('a'); h.add('b'); h.add('b'); h.add('c')
  t.same(h.lines, ['b', 'c'], 'bounded, no repeats')
  t.equal(h.previous('draft'), 'c')
  t.equal(h.previous('c'), 'b')
  t.equal(h.previous('b'), undefined)
  t.equal(h.next(), 'c')
  t.equal(h.next(), 'draft', 'back to what was being typed')
})

t.test('the line editor edits like a shell (without Ctrl-A)', async (t) => {
  const e = new LineEditor('rollout abort')
  e.key('ctrl+w')
  t.equal(e.text, 'rollout ')
  e.key('home'); e.key('delete'); e.key('R')
  t.equal(e.text, 'Rollout ')
  e.key('end'); e.key('x'); e.key('left'); e.key('backspace')
  t.equal(e.text, 'Rolloutx')
  e.key('ctrl+u')
  t.equal(e.text, 'x')
  t.equal(e.key('ctrl+a'), undefined, 'ctrl+a is not ours')
  t.equal(e.key('enter'), 'submit')
  t.equal(e.key('space'), 'changed')
  t.equal(e.text, ' x')
})

t.test('text is cut to width with an ellipsis, and data never becomes markup', async (t) => {
  t.equal(plain(fit('acme/site-1', 6)), 'acme/…')
  t.equal(plain(fit('7', 4, 'right')), '   7')
  t.equal(plain(fit([{ text: 'ab', tone: 'bad' }, { text: 'cd' }], 3)), 'ab…')
  t.equal(markup('{bold}x{/bold}'), '{open}bold{close}x{open}/bold{close}')
  t.equal(plain(fit('a\x1b[2Jb', 8)), 'a?[2Jb  ', 'control characters cannot reach the terminal')
  t.same(wrap('abort the rollout now', 10), ['abort the', 'rollout', 'now'])
  t.same(wrap('abcdefghijkl', 5), ['abcde', 'fghij', 'kl'])
})
