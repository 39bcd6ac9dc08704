// The top-failures view extension through MemoryWindow: its provider's live model after signed job
// events go into a real console, as customer A's admin.
import t from 'tap'
import path from 'node:path'
import type { Observable } from 'rxjs'
import type { ViewModel } from '../../tui/extensions/window.js'
import { A, B, MSP, world } from '../console/helpers.js'
import { approvedRelease, report, rolloutTo, session, waitFor, MIN } from './helpers.js'

const COLUMNS = ['Package', 'Version', 'Failed', 'Rolled back', 'Recovered', 'Endpoints', 'Last failure', 'Reason']

t.test('the failing release comes first, with its counts and its latest failure reason, live', async (t) => {
  const w = await world(t, { perGroup: 3 })
  const pilot = w.endpoints.get(`${A}/pilot`)!
  const office = w.endpoints.get(`${A}/office`)!
  const fix = await approvedRelease(w, MSP, 'agent-fix', '1.2.0')
  const browser = await approvedRelease(w, MSP, 'browser', '2.0.0')
  const clean = await approvedRelease(w, MSP, 'clean', '1.0.0')
  const bTool = await approvedRelease(w, MSP, 'b-tool', '9.9.9')
  await rolloutTo(w, 'alice', 'fix', fix.hash, A)
  await rolloutTo(w, 'alice', 'browser', browser.hash, A)
  await rolloutTo(w, 'alice', 'clean', clean.hash, A)
  await rolloutTo(w, 'bob', 'b-tool', bTool.hash, B)

  const s = await session(t, w, 'alice', { dbDir: path.join(w.dataDir, '..', 'alice-ext') })
  t.equal(s.host.status('patchswarm.top-failures')?.state, 'inactive', 'lazy: nothing loaded before the view opens')
  t.same(s.host.contributions().views.map((v) => [v.id, v.name, v.extension]), [['topFailures', 'Top failing packages', 'patchswarm.top-failures']])
  await s.host.activateByEvent('onView:topFailures')
  t.equal(s.host.status('patchswarm.top-failures')?.state, 'active', 'activated when the view opens')

  const provider = s.window.views.get('topFailures')!
  const live = provider.resolve({ scope: A }) as Observable<ViewModel>
  t.equal(typeof live.subscribe, 'function', 'an Observable')
  const models: ViewModel[] = []
  const sub = live.subscribe((m) => models.push(m))
  t.teardown(() => sub.unsubscribe())
  await waitFor('the first model', () => models.length > 0)
  t.same(models.at(-1), { kind: 'text', lines: [`No failed or rolled-back installs under ${A}.`] })

  const at = (minutes: number) => { w.clock.t = Date.parse('2030-03-02T09:00:00Z') + minutes * MIN }
  at(1)
  await report(t, w, pilot.slice(0, 1), fix.release, 'fix', 'failed', { code: 'INSTALL_FAILED', reason: 'exit 1' })
  at(2)
  await report(t, w, pilot.slice(1, 2), fix.release, 'fix', 'failed', { code: 'INSTALL_FAILED', reason: 'exit 2\u001b[2J' })
  await report(t, w, pilot.slice(2, 3), fix.release, 'fix', 'installed')
  at(3)
  await report(t, w, office.slice(0, 1), fix.release, 'fix', 'rolled-back', { code: 'HEALTH_CHECK_FAILED', reason: 'service did not start' })
  await report(t, w, office.slice(1, 3), fix.release, 'fix', 'installed')
  at(4)
  await report(t, w, office.slice(0, 1), browser.release, 'browser', 'failed', { code: 'TIMEOUT', reason: 'installer hung' })
  at(5)
  await report(t, w, office.slice(1, 2), browser.release, 'browser', 'failed', { code: 'INSTALL_FAILED', reason: 'locked file' })
  at(6)
  await report(t, w, office.slice(1, 2), browser.release, 'browser', 'installed', { attempt: 2 })
  await report(t, w, [...pilot, office[2]!], browser.release, 'browser', 'installed')
  await report(t, w, [...pilot, ...office], clean.release, 'clean', 'installed')
  at(7)
  await report(t, w, w.endpoints.get(`${B}/office`)!, bTool.release, 'b-tool', 'failed', { code: 'INSTALL_FAILED', reason: 'B only' })

  const expected: ViewModel = {
    kind: 'table',
    columns: COLUMNS,
    rows: [
      ['agent-fix', '1.2.0', '2', '1', '0', '6', '2030-03-02 09:03', 'HEALTH_CHECK_FAILED: service did not start'],
      ['browser', '2.0.0', '1', '0', '1', '6', '2030-03-02 09:05', 'INSTALL_FAILED: locked file']
    ]
  }
  await waitFor('the model after the events', () => JSON.stringify(models.at(-1)) === JSON.stringify(expected)).catch(() => {})
  t.same(models.at(-1), expected, 'agent-fix first (3 failing now), then browser (1 failing, 1 recovered); clean and B\'s b-tool absent')
  t.ok(models.some((m) => m.kind === 'table' && m.rows[0]![0] === 'agent-fix'), 'a table was pushed while the view was open')

  // A narrower scope: the pilot group.
  const pilotModel = await first(provider.resolve({ scope: `${A}/pilot` }) as Observable<ViewModel>)
  t.same(pilotModel, { kind: 'table', columns: COLUMNS, rows: [['agent-fix', '1.2.0', '2', '0', '0', '3', '2030-03-02 09:02', 'INSTALL_FAILED: exit 2 [2J']] }, 'control characters from the endpoint are gone')

  // B is not alice's: the view says so instead of failing.
  const refused = await first(provider.resolve({ scope: B }) as Observable<ViewModel>)
  t.match(refused, { kind: 'text', lines: [/^Cannot show the failing packages under msp-1\/customer-b: /] })

  // The command: without a console command to open views, a pick list of the ranking.
  const shown = await s.host.executeCommand<ViewModel>('topFailures.show', A)
  t.same(shown, expected, 'the same ranking')
  // With one, it opens the view on the scope.
  const opened: unknown[][] = []
  s.host.registerCommand('patchswarm.openView', (...args: unknown[]) => { opened.push(args) })
  s.window.answers.push(`${A}/office`)
  t.equal(await s.host.executeCommand('topFailures.show'), undefined)
  t.same(opened, [['topFailures', { scope: `${A}/office` }]], 'asked for the picked scope')

  await s.host.deactivate('patchswarm.top-failures')
  t.notOk(s.window.views.has('topFailures'), 'the provider is gone when the extension stops')
})

t.test('the limit setting caps the rows', async (t) => {
  const w = await world(t, { perGroup: 1 })
  const ep = w.endpoints.get(`${A}/pilot`)!
  const s = await session(t, w, 'alice', { dbDir: path.join(w.dataDir, '..', 'alice-ext'), settings: { 'topFailures.limit': 2 } })
  for (const name of ['a', 'b', 'c']) {
    const r = await approvedRelease(w, A, `pkg-${name}`, '1.0.0')
    await rolloutTo(w, 'alice', `r-${name}`, r.hash, A)
    await report(t, w, ep, r.release, `r-${name}`, 'failed', { code: 'X' })
  }
  await s.host.activateByEvent('onView:topFailures')
  const model = await first(s.window.views.get('topFailures')!.resolve({ scope: A }) as Observable<ViewModel>)
  t.match(model, { kind: 'table' })
  t.equal(model.kind === 'table' && model.rows.length, 2, 'two of three')
})

function first<T> (o: Observable<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    const sub = o.subscribe({ next: (v) => { resolve(v); queueMicrotask(() => sub.unsubscribe()) }, error: reject })
  })
}
