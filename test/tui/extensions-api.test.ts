// The fleet and reports namespaces against a real console: an extension reads as the session's
// admin (and sees only that admin's scope), and subscriptions it leaves open end when it stops.
import t, { type Test } from 'tap'
import path from 'node:path'
import { Subject } from 'rxjs'
import { openDatabase } from '../../lib/store/db.js'
import { inProcessAccess, type ConsoleAccess } from '../../tui/extensions/access.js'
import { ExtensionHost } from '../../tui/extensions/host.js'
import { MemoryWindow } from '../../tui/extensions/window.js'
import { A, B, world } from '../console/helpers.js'

const FIXTURES = path.resolve(import.meta.dirname, 'fixtures/extensions')

async function hostFor (t: Test, access: ConsoleAccess, dbDir: string): Promise<ExtensionHost> {
  const db = await openDatabase(dbDir)
  const host = new ExtensionHost({ roots: [FIXTURES], disabled: ['fixtures.hangs', 'fixtures.throws', 'fixtures.good'], window: new MemoryWindow(), db, access, patchswarmVersion: '0.1.0' })
  t.teardown(async () => { await host.close(); await db.close() })
  await host.ready()
  return host
}

t.test('an extension reads the fleet and the KPIs as its session\'s admin', async (t) => {
  const w = await world(t, { perGroup: 2 })
  const alice = await hostFor(t, inProcessAccess(w.api, 'alice'), path.join(w.dataDir, '..', 'alice-ext'))
  t.same(await alice.executeCommand('reader.tenants', ''), [A, `${A}/office`, `${A}/pilot`], 'only customer A, though asked for the whole organisation')
  t.match(await alice.executeCommand('reader.kpis', A), { endpoints: 4 })
  await t.rejects(alice.executeCommand('reader.kpis', B), { code: 'FORBIDDEN' }, 'customer B is not hers')
  t.same(await alice.executeCommand('reader.rollouts', { tenant: A }), [], 'no rollouts yet')
  await t.rejects(alice.executeCommand('reader.rollouts', { tenant: B }), { code: 'FORBIDDEN' })

  const bob = await hostFor(t, inProcessAccess(w.api, 'bob'), path.join(w.dataDir, '..', 'bob-ext'))
  t.same(await bob.executeCommand('reader.tenants', ''), [B, `${B}/office`])
})

t.test('a subscription the extension never ended ends when it stops', async (t) => {
  const kpis = new Subject<unknown>()
  // The console's side of a live subscription, as the socket client hands it over.
  const access: ConsoleAccess = {
    call: async (method) => { throw new Error(`unexpected call ${method}`) },
    subscribe: (method) => method === 'reports.kpis$' ? kpis : new Subject()
  }
  const host = await hostFor(t, access, path.join(t.testdir(), 'db'))
  await host.executeCommand('reader.watch', A)
  t.ok(kpis.observed, 'subscribed')
  await host.deactivate('fixtures.reader')
  t.notOk(kpis.observed, 'unsubscribed by the host')
})
