// The extensions shipped in extensions/: found where the console looks, valid, lazy where they can
// be, and written only against the extension API (their code imports Node's built-ins and nothing else).
import t from 'tap'
import fs from 'node:fs/promises'
import path from 'node:path'
import { defaultExtensionRoots, discoverExtensionFolders } from '../../tui/extensions/discovery.js'
import { world } from '../console/helpers.js'
import { SHIPPED, session } from './helpers.js'

const IDS = ['patchswarm.export', 'patchswarm.ticketing', 'patchswarm.top-failures']

t.test('the console finds the three, validates them and activates only the ticketing watcher at start', async (t) => {
  t.equal((await defaultExtensionRoots({}))[0], SHIPPED, 'extensions/ is the first place the console looks')
  t.same((await discoverExtensionFolders([SHIPPED])).map((f) => path.basename(f)), ['export', 'ticketing', 'top-failures'])

  const w = await world(t, { perGroup: 1 })
  const s = await session(t, w, 'alice', { dbDir: path.join(w.dataDir, '..', 'ext') })
  t.same(s.host.statuses().map((x) => [x.id, x.state, x.version]), [
    ['patchswarm.export', 'inactive', '0.1.0'],
    ['patchswarm.ticketing', 'active', '0.1.0'],
    ['patchswarm.top-failures', 'inactive', '0.1.0']
  ])
  const c = s.host.contributions()
  t.same(c.commands.map((x) => x.command), ['export.csv', 'export.html', 'ticketing.status', 'ticketing.checkNow', 'ticketing.retryFailed', 'topFailures.show'])
  t.ok(c.commands.every((x) => !x.dangerous), 'none changes the fleet: all stay under --readonly')
  t.same(c.settings.map((x) => x.key), ['export.folder', 'ticketing.url', 'ticketing.secret', 'ticketing.events', 'ticketing.pollIntervalMs', 'ticketing.retryBaseDelayMs', 'ticketing.maxAttempts', 'topFailures.limit'])
  t.same(s.window.messages, [], 'no complaint')
})

t.test('their code imports nothing but Node built-ins', async (t) => {
  for (const name of ['export', 'ticketing', 'top-failures']) {
    const folder = path.join(SHIPPED, name)
    const manifest = JSON.parse(await fs.readFile(path.join(folder, 'package.json'), 'utf8')) as { main: string, publisher: string, name: string }
    t.ok(IDS.includes(`${manifest.publisher}.${manifest.name}`))
    t.equal(manifest.main, 'extension.mjs', 'plain ESM JavaScript: loads without tsx')
    const code = await fs.readFile(path.join(folder, manifest.main), 'utf8')
    // Comments out first: JSDoc `import('…')` types are types, not imports.
    const bare = code.replace(/\/\*[\s\S]*?\*\//g, '').split('\n').filter((l) => !l.trim().startsWith('//')).join('\n')
    const specifiers = [...bare.matchAll(/\bfrom\s*['"]([^'"]+)['"]|\bimport\s*\(?\s*['"]([^'"]+)['"]/g)].map((m) => m[1] ?? m[2]!)
    if (name === 'ticketing') t.same(specifiers, ['node:crypto'], 'the check sees imports')
    t.ok(specifiers.every((s) => s.startsWith('node:')), `${name}: ${specifiers.join(', ')}`)
    t.ok(await fs.stat(path.join(folder, 'README.md')), `${name} has a README`)
  }
})
