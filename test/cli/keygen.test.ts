import t from 'tap'
import fs from 'node:fs/promises'
import path from 'node:path'
import { cli, spawnCli } from './helpers.js'

t.test('keygen writes a 0600 secret and a public key', async (t) => {
  const dir = t.testdir()
  const r = await cli(dir, ['keygen', 'alice.key', '--name', 'alice', '--json'])
  t.equal(r.code, 0, r.stderr)
  t.match(r.json.keyid, /^[0-9a-f]{64}$/)
  t.equal((await fs.stat(path.join(dir, 'alice.key'))).mode & 0o777, 0o600)
  const pub = JSON.parse(await fs.readFile(path.join(dir, 'alice.key.pub'), 'utf8'))
  t.equal(pub.keyid, r.json.keyid)
  const again = await cli(dir, ['keygen', 'alice.key'])
  t.equal(again.code, 1)
  t.match(again.stderr, /^patchswarm: ALREADY_EXISTS: /)
})

t.test('usage errors exit 2; --json errors are JSON', async (t) => {
  const dir = t.testdir()
  t.equal((await cli(dir, ['keygen'])).code, 2)
  t.equal((await cli(dir, ['no-such-command'])).code, 2)
  await cli(dir, ['keygen', 'k'])
  const r = await cli(dir, ['keygen', 'k', '--json'])
  t.same(JSON.parse(r.stderr).error.code, 'ALREADY_EXISTS')
})

t.test('the real command prints a coded error and no stack trace', async (t) => {
  const dir = t.testdir({ 'k': 'x' })
  const r = await spawnCli(dir, ['keygen', 'k'])
  t.equal(r.code, 1)
  t.equal(r.stderr, `patchswarm: ALREADY_EXISTS: ${path.join(dir, 'k')} exists; refusing to overwrite it (use --force)\n`)
  t.same(await fs.readdir(dir), ['k'], 'nothing half-written')
  t.notMatch(r.stderr, /\n\s+at /, 'no stack trace')
})
