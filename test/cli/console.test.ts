// `patchswarm console` as a real process, driven by the admin subcommands over its socket.
import t from 'tap'
import { spawn } from 'node:child_process'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { once } from 'node:events'
import { writeSecretKeyFile } from '../../lib/crypto/keyfile.js'
import { serializeEnvelope } from '../../lib/trust/envelope.js'
import { makeConsoleOrg } from '../../fixtures/console-org.js'
import { sshKey } from '../fleet/helpers.js'
import { cli, cliArgs } from './helpers.js'

t.test('a console process serves tenants, tokens, releases, rollouts and reports to the CLI', async (t) => {
  // Unix socket paths are short: keep the data folder near /tmp.
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ps-cli-'))
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }))
  const org = await makeConsoleOrg()
  await fs.writeFile(path.join(dir, 'root.json'), serializeEnvelope(org.rootEnvelope))
  await writeSecretKeyFile(path.join(dir, 'console.key'), org.consoleKey)
  const release = await org.release('agent-fix', '1.0.0', { risk: 'critical' })
  await fs.writeFile(path.join(dir, 'release.json'), serializeEnvelope(release))

  const child = spawn(process.execPath, cliArgs('console', '--data', 'data', '--root', 'root.json', '--console-key', 'console.key', '--owner', 'root', '--owner-ssh-key', sshKey(), '--json'), { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(async () => { if (child.exitCode === null) { child.kill('SIGTERM'); await once(child, 'exit') } })
  let out = ''
  child.stdout.on('data', (d) => { out += d })
  child.stderr.on('data', (d) => { out += d })
  while (!out.includes('"socket"')) {
    if (child.exitCode !== null) throw new Error(`console exited: ${out}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  t.equal(((await fs.stat(path.join(dir, 'data', 'console.sock'))).mode & 0o777), 0o600, 'the socket is 0600')

  const run = (...args: string[]) => cli(dir, [...args, '--as', 'root', '--data', 'data'])
  const first = await run('tenant', 'create', '/', 'msp-1', '--kind', 'msp')
  t.equal(first.code, 0, first.stderr)
  t.equal((await run('tenant', 'create', 'msp-1', 'acme', '--kind', 'customer')).code, 0)
  t.equal((await run('group', 'create', 'msp-1/acme', 'pilot')).code, 0)
  const tree = await run('tenant', 'list', '--json')
  t.same(tree.json.map((n: { path: string }) => n.path), ['msp-1', 'msp-1/acme', 'msp-1/acme/pilot'])
  t.match((await run('tenant', 'list')).stdout, /TREE\s+KIND/, 'human output is a table')

  const token = await run('token', 'create', 'msp-1/acme/pilot', '--uses', '5', '--auto-approve', '--json')
  t.match(token.json.token, /^pst1\./)
  const added = await run('releases', 'add', 'release.json', '--json')
  t.equal(added.json.name, 'agent-fix')
  t.equal((await run('releases', 'approve', added.json.hash, 'msp-1/acme')).code, 0)

  // No endpoints yet: a rollout has nobody to go to and says so.
  const spec = JSON.stringify({ id: 'fix-1', release: added.json.hash, target: { tenant: 'msp-1/acme' }, phases: [{ name: 'all', successThreshold: 1, errorThreshold: 0.5, minSoakMinutes: 0 }] })
  const refused = await run('rollout', 'create', spec)
  t.equal(refused.code, 1)
  t.match(refused.stderr, /BAD_ROLLOUT/)

  const kpis = await run('report', 'kpis', 'msp-1', '--json')
  t.equal(kpis.json.endpoints, 0)
  t.match((await run('report', 'export-csv', 'msp-1')).stdout, /^tenant,endpoint,/m, 'CSV with its header')
  t.equal((await run('api', 'fleet.getTenant', '["msp-1/acme"]')).code, 0, 'any method by name')

  const forbidden = await cli(dir, ['tenant', 'list', '--as', 'mallory', '--data', 'data'])
  t.equal(forbidden.code, 1)
  t.match(forbidden.stderr, /FORBIDDEN/, 'an unknown admin gets nothing')
  const audit = await run('audit', 'list', '--json')
  t.ok(audit.json.some((e: { admin: string, result: string }) => e.admin === 'mallory' && e.result === 'FORBIDDEN'), 'and is audited')

  child.kill('SIGTERM')
  const [code] = await once(child, 'exit')
  t.equal(code, 0, 'SIGTERM stops it cleanly')
  await t.rejects(fs.stat(path.join(dir, 'data', 'console.sock')), { code: 'ENOENT' }, 'and removes its socket')
})
