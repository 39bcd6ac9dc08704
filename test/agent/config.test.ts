// The agent's data folder and agent.json: defaults, round trip, and every bad input coded.
import t from 'tap'
import fs from 'node:fs/promises'
import path from 'node:path'
import { generateKeyPair, keyIdOf } from '../../lib/crypto/keys.js'
import { agentPaths, assertWritableDir, createDataDir, loadConfig, readConfigIfAny, writeConfig, DEFAULT_CHECK_IN_CRON } from '../../agent/config.js'

const enrollKey = keyIdOf(generateKeyPair().publicKey)
const minimal = { org: 'acme', console: { enrollKey }, bootstrap: 'public' as const, installRoot: '/opt/acme' }

t.test('defaults fill in, a written config loads back, the file is 0600 and written atomically', async (t) => {
  const dir = t.testdir()
  await writeConfig(dir, minimal)
  const config = await loadConfig(dir)
  t.same(config.rebootCommand, ['systemctl', 'reboot'])
  t.same(config.checkIn, { cron: DEFAULT_CHECK_IN_CRON, jitterSeconds: 300 })
  t.equal(config.inventory.cron, '30 3 * * *')
  t.equal(config.logLevel, 'info')
  t.equal((await fs.stat(agentPaths(dir).config)).mode & 0o777, 0o600)
  t.same((await fs.readdir(dir)).filter((f) => f !== 'agent.json'), [], 'no temporary file left beside it')

  const full = { ...minimal, bootstrap: [{ host: '127.0.0.1', port: 49737 }], host: '127.0.0.1', firewalled: false, rebootCommand: ['/sbin/shutdown', '-r', '+1'], checkIn: { cron: '*/5 * * * *', jitterSeconds: 0 }, inventory: { cron: '0 4 * * 0' }, logLevel: 'debug' as const }
  await writeConfig(dir, full)
  t.same(await loadConfig(dir), full, 'every field round-trips')
})

t.test('a relative installRoot is taken from the data folder', async (t) => {
  const dir = t.testdir()
  await writeConfig(dir, { ...minimal, installRoot: 'install' })
  t.equal((await loadConfig(dir)).installRoot, path.join(path.resolve(dir), 'install'))
})

t.test('missing, unreadable, corrupt and misshapen configs are coded errors naming the problem', async (t) => {
  const dir = t.testdir({ 'agent.json': '{"org": "acme",' })
  const file = agentPaths(dir).config
  await t.rejects(loadConfig(dir), { code: 'BAD_CONFIG', message: /not valid JSON/ })

  const bad = async (value: unknown, field: RegExp) => {
    await fs.writeFile(file, JSON.stringify(value))
    await t.rejects(loadConfig(dir), { code: 'BAD_CONFIG', message: field }, String(field))
  }
  await bad([], /agent\.json: .*object/)
  await bad({ ...minimal, checkIn: { cron: '61 * * * *' } }, /checkIn\.cron: is not a cron expression/)
  await bad({ ...minimal, checkIn: { jitterSeconds: -1 } }, /checkIn\.jitterSeconds/)
  await bad({ ...minimal, bootstrap: [{ host: 'a', port: 70000 }] }, /bootstrap/)
  await bad({ ...minimal, bootstrap: 'private' }, /bootstrap/)
  await bad({ ...minimal, console: { enrollKey: 'abc' } }, /console\.enrollKey: must be a key id/)
  await bad({ ...minimal, org: '../etc' }, /org: is not a safe name/)
  await bad({ ...minimal, rebootCommand: [] }, /rebootCommand/)
  await bad({ ...minimal, rebootCommand: 'reboot now' }, /rebootCommand/)
  await bad({ ...minimal, logLevel: 'loud' }, /logLevel/)
  await bad({ ...minimal, colour: 'blue' }, /colour/)
  const { installRoot: _omit, ...noRoot } = minimal
  await bad(noRoot, /installRoot/)

  await t.rejects(writeConfig(dir, { ...minimal, checkIn: { cron: 'soon' } }), { code: 'BAD_CONFIG' }, 'nothing bad is written either')

  const empty = t.testdir()
  t.equal(await readConfigIfAny(empty), null, 'no agent.json: not enrolled')
  await t.rejects(loadConfig(empty), { code: 'NOT_FOUND', message: /enroll first/ })
  await fs.mkdir(path.join(empty, 'agent.json'))
  await t.rejects(loadConfig(empty), { code: 'IO_ERROR', message: /agent\.json is not a file/ })
})

t.test('the data folder: writable check writes nothing; under a file it is IO_ERROR with the path', async (t) => {
  const base = t.testdir({ 'a-file': 'x' })
  const fresh = path.join(base, 'x', 'y', 'agent')
  await assertWritableDir(fresh)
  await t.rejects(fs.stat(path.join(base, 'x')), { code: 'ENOENT' }, 'the check created nothing')
  await assertWritableDir(base)

  const underFile = path.join(base, 'a-file', 'agent')
  await t.rejects(assertWritableDir(underFile), { code: 'IO_ERROR', message: new RegExp(`${underFile}.*a-file is not a folder`) })
  await t.rejects(assertWritableDir(path.join(base, 'a-file')), { code: 'IO_ERROR', message: /is not a folder/ })
  await t.rejects(createDataDir(underFile), { code: 'IO_ERROR', message: new RegExp(underFile) })

  const p = await createDataDir(fresh)
  for (const sub of [p.packages, p.work, p.install]) t.ok((await fs.stat(sub)).isDirectory(), path.basename(sub))
  t.equal((await fs.stat(fresh)).mode & 0o777, 0o700, 'the folder holding the identity is private')
})
