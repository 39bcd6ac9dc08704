// The export extension end to end: a real console, the shipped extension in a real host as customer
// A's admin; the files it writes are parsed back.
import t, { type Test } from 'tap'
import fs from 'node:fs/promises'
import path from 'node:path'
import { CSV_COLUMNS } from '../../lib/report/export.js'
import { A, B, MSP, world, type World } from '../console/helpers.js'
import { approvedRelease, parseCsv, report, rolloutTo, session, MIN } from './helpers.js'

/** A rollout to the whole MSP; A's pilot installs, one of A's office fails (with a comma and a quote in its reason), B's office installs. */
async function fleetWithRecords (t: Test, w: World): Promise<void> {
  const { release, hash } = await approvedRelease(w, MSP, 'agent-fix', '1.2.0')
  await rolloutTo(w, 'mia', 'fix-1', hash, MSP)
  w.clock.advance(30 * MIN)
  await report(t, w, w.endpoints.get(`${A}/pilot`)!, release, 'fix-1', 'installed')
  await report(t, w, w.endpoints.get(`${A}/office`)!.slice(0, 1), release, 'fix-1', 'failed', { code: 'INSTALL_FAILED', reason: 'exit 1, "disk full"' })
  await report(t, w, w.endpoints.get(`${B}/office`)!, release, 'fix-1', 'installed')
}

const keyids = (w: World, ...groups: string[]) => groups.flatMap((g) => w.endpoints.get(g)!.map((e) => e.keyid)).sort()

t.test('CSV and HTML of the current scope, written as customer A\'s admin, hold only customer A', async (t) => {
  const w = await world(t, { perGroup: 2 })
  await fleetWithRecords(t, w)
  const out = path.join(t.testdir(), 'out')
  const s = await session(t, w, 'alice', { dbDir: path.join(w.dataDir, '..', 'alice-ext'), settings: { 'export.folder': out } })
  t.equal(s.host.status('patchswarm.export')?.state, 'inactive', 'not loaded before it is used')

  const csvFile = await s.host.executeCommand<string>('export.csv', A)
  t.match(path.basename(csvFile), /^msp-1_customer-a-\d{4}-\d{2}-\d{2}\.csv$/, '<scope>-<date>.csv')
  t.equal(path.dirname(csvFile), out, 'in the configured folder (created)')
  t.equal((await fs.stat(csvFile)).mode & 0o777, 0o600, 'readable by its owner only')
  t.match(s.window.messages.at(-1), { severity: 'info', source: 'patchswarm.export', message: `Exported the CSV of the patch records of ${A} to ${csvFile}` })

  const csvText = await fs.readFile(csvFile, 'utf8')
  const [header, ...rows] = parseCsv(csvText.trimEnd())
  t.same(header, [...CSV_COLUMNS], 'the header row')
  const col = (name: typeof CSV_COLUMNS[number]) => CSV_COLUMNS.indexOf(name)
  t.equal(rows.length, 4, 'one row per patch of A\'s 4 endpoints')
  t.ok(rows.every((r) => r.length === CSV_COLUMNS.length), 'every row complete')
  t.same(rows.map((r) => r[col('endpoint')]).sort(), keyids(w, `${A}/pilot`, `${A}/office`), 'exactly A\'s endpoints')
  t.ok(rows.every((r) => r[col('tenant')]!.startsWith(`${A}/`)), 'all under A')
  t.same(rows.map((r) => r[col('state')]).sort(), ['assigned', 'failed', 'installed', 'installed'])
  const failed = rows.find((r) => r[col('state')] === 'failed')!
  t.equal(failed[col('reason')], 'exit 1, "disk full"', 'a quoted field with a comma and quotes reads back')
  t.equal(failed[col('code')], 'INSTALL_FAILED')
  t.notMatch(csvText, /customer-b/, 'nothing of B')
  for (const k of keyids(w, `${B}/office`)) t.notOk(csvText.includes(k), 'no endpoint of B')

  const htmlFile = await s.host.executeCommand<string>('export.html', { scope: A, view: 'endpoints' })
  t.match(path.basename(htmlFile), /^msp-1_customer-a-\d{4}-\d{2}-\d{2}\.html$/)
  const html = await fs.readFile(htmlFile, 'utf8')
  t.match(html, /^<!DOCTYPE html>/)
  t.match(html, /<meta http-equiv="Content-Security-Policy" content="[^"]*default-src 'none'/, 'a CSP forbids loading anything')
  t.notMatch(html, /<script|<link|<iframe|<img|<object|\ssrc=|@import|url\(/i, 'self-contained: no scripts, links, images or imports')
  t.notMatch(html, /https?:\/\//, 'no URL at all')
  t.match(html, /<svg/, 'the charts are inline SVG')
  t.match(html, /msp-1\/customer-a/)
  t.notMatch(html, /customer-b/, 'nothing of B')
  t.match(html, /4 patch record\(s\)/, 'A\'s 4 patch records')

  // The same export again the same day: a new file, the first one untouched.
  const again = await s.host.executeCommand<string>('export.csv', A)
  t.match(path.basename(again), /^msp-1_customer-a-\d{4}-\d{2}-\d{2}-2\.csv$/, 'a second file, numbered')
  t.equal(await fs.readFile(csvFile, 'utf8'), csvText, 'the first file is not overwritten')

  // The exporters give the same text to the view layer.
  t.equal(await s.host.export('export.csv', { scope: A }), csvText, 'the csv exporter')
  t.equal(await s.host.export('export.html', { scope: A }), html, 'the html exporter')
  t.same(s.host.contributions().exporters.map((x) => [x.id, x.fileExtension]), [['export.csv', '.csv'], ['export.html', '.html']])
})

t.test('without an argument the scope is picked among the admin\'s tenants; escape writes nothing', async (t) => {
  const w = await world(t, { perGroup: 2 })
  await fleetWithRecords(t, w)
  const out = path.join(t.testdir(), 'out')
  const s = await session(t, w, 'alice', { dbDir: path.join(w.dataDir, '..', 'alice-ext'), settings: { 'export.folder': out } })

  s.window.answers.push(`${A}/office`)
  const file = await s.host.executeCommand<string>('export.csv')
  t.match(path.basename(file), /^msp-1_customer-a_office-\d{4}-\d{2}-\d{2}\.csv$/)
  const rows = parseCsv((await fs.readFile(file, 'utf8')).trimEnd()).slice(1)
  t.same(rows.map((r) => r[CSV_COLUMNS.indexOf('endpoint')]).sort(), keyids(w, `${A}/office`), 'the picked group only')

  t.equal(await s.host.executeCommand('export.html'), undefined, 'escape (no answer) cancels')
  t.same((await fs.readdir(out)).sort(), [path.basename(file)], 'and writes nothing')
})

t.test('a scope the admin may not read is refused and said so; nothing is written', async (t) => {
  const w = await world(t, { perGroup: 1 })
  const out = path.join(t.testdir(), 'out')
  const s = await session(t, w, 'alice', { dbDir: path.join(w.dataDir, '..', 'alice-ext'), settings: { 'export.folder': out } })
  t.equal(await s.host.executeCommand('export.csv', B), undefined)
  t.match(s.window.messages.at(-1), { severity: 'error', message: /^Export of msp-1\/customer-b failed: / })
  t.ok(s.log.some((e) => e.extension === 'patchswarm.export' && e.level === 'error'), 'and logged')
  await t.rejects(fs.readdir(out), { code: 'ENOENT' }, 'no folder, no file')
  await t.rejects(s.host.export('export.csv', { scope: B }), { code: 'FORBIDDEN' }, 'the exporter refuses too')
})

t.test('a relative folder is taken from the working directory; the default is exports/', async (t) => {
  const w = await world(t, { perGroup: 1 })
  const cwd = process.cwd()
  const dir = t.testdir()
  process.chdir(dir)
  t.teardown(() => process.chdir(cwd))
  const s = await session(t, w, 'root', { dbDir: path.join(w.dataDir, '..', 'root-ext') })
  const file = await s.host.executeCommand<string>('export.csv', '')
  t.equal(file, path.join(await fs.realpath(dir), 'exports', path.basename(file)))
  t.match(path.basename(file), /^organisation-\d{4}-\d{2}-\d{2}\.csv$/, 'the whole organisation is "organisation"')
  t.ok((await fs.readFile(file, 'utf8')).startsWith(CSV_COLUMNS.join(',')))
})
