// The publisher's whole path through the real CLI: keys, root v1 → v2, release, verify, inspect,
// and every bad input answered with its code and nothing written.
import t, { type Test } from 'tap'
import fs from 'node:fs/promises'
import path from 'node:path'
import { cli, spawnCli, type CliResult } from './helpers.js'

const DAY = 86400_000

async function setup (t: Test) {
  const dir = t.testdir({
    pkg: { 'install.sh': '#!/bin/sh\necho installed\n', bin: { 'data': Buffer.alloc(700_000, 7) } }
  })
  await fs.chmod(path.join(dir, 'pkg/install.sh'), 0o755)
  for (const k of ['r1', 'r2', 'r3', 'rel1', 'rel2', 'con', 'cust']) {
    const r = await cli(dir, ['keygen', `${k}.key`])
    if (r.code !== 0) throw new Error(r.stderr)
  }
  const run = (args: string[], now?: () => Date) => cli(dir, args, now)
  return { dir, run }
}

function ok (t: Test, r: CliResult, what: string) {
  t.equal(r.code, 0, `${what}: ${r.stderr}`)
}

function fails (t: Test, r: CliResult, code: string, what: string) {
  t.equal(r.code, 1, what)
  t.match(r.stderr, new RegExp(`^patchswarm: ${code}: `), `${what} → ${code}`)
  t.notMatch(r.stderr, /\n\s+at /, `${what}: no stack trace`)
}

const ROOT_V1 = ['root', 'init', '--org', 'acme', '--root-key', 'r1.key', '--root-key', 'r2.key', '--root-key', 'r3.key.pub', '--root-threshold', '2',
  '--release-key', 'rel1.key.pub', '--release-key', 'rel2.key.pub', '--release-threshold', '2', '--console-key', 'con.key.pub',
  '--delegate', 'acme-customers:msp-1/customer-a:1:cust.key.pub', '--out', 'root.json']
const RELEASE = ['release', 'pkg', '--name', 'hello', '--version', '1.0.0', '--platform', 'linux', '--risk', 'high',
  '--exec', 'install.sh --quiet', '--root', 'root.json', '--out', 'out']

t.test('publish and verify a release through a root rotation', async (t) => {
  const { dir, run } = await setup(t)
  const init = await run([...ROOT_V1, '--json'])
  ok(t, init, 'root init')
  t.equal(init.json.version, 1)
  t.equal(init.json.complete, true)

  fails(t, await run(['root', 'rotate', '--root', 'root.json', '--root-threshold', '3', '--sign', 'r1.key', '--out', 'root2.json']), 'THRESHOLD_NOT_MET', 'rotate without enough signatures')
  await t.rejects(fs.access(path.join(dir, 'root2.json')), 'nothing written')
  const partial = await run(['root', 'rotate', '--root', 'root.json', '--root-threshold', '3', '--sign', 'r1.key', '--sign', 'r2.key', '--out', 'root2.json', '--partial', '--json'])
  ok(t, partial, 'partial rotate')
  t.equal(partial.json.complete, false)
  ok(t, await run(['sign', 'root2.json', '--key', 'r3.key']), 'third root key signs')

  const rel = await run([...RELEASE, '--key', 'rel1.key', '--key', 'rel2.key', '--store', 'store', '--json'])
  ok(t, rel, 'release')
  t.equal(rel.json.signer, 'release role')
  t.equal(rel.json.files, 2)

  const v = await run(['verify', 'out/hello-1.0.0.release.json', '--root', 'root.json', '--root', 'root2.json', '--platform', 'linux-x64',
    '--manifest', 'out/hello-1.0.0.manifest.json', '--source', 'pkg', '--json'])
  ok(t, v, 'verify through the chain')
  t.equal(v.json.root.version, 2)
  t.equal(v.json.digest, rel.json.digest)

  const pinV2 = await run(['verify', 'out/hello-1.0.0.release.json', '--root', 'root2.json', '--platform', 'linux', '--json'])
  ok(t, pinV2, 'an endpoint enrolled at v2 pins v2 directly')
})

t.test('verify refuses what an endpoint must refuse', async (t) => {
  const { dir, run } = await setup(t)
  ok(t, await run(ROOT_V1), 'root init')
  ok(t, await run([...RELEASE, '--key', 'rel1.key', '--key', 'rel2.key']), 'release')
  const release = 'out/hello-1.0.0.release.json'
  fails(t, await run(['verify', release, '--root', 'root.json', '--platform', 'win32-x64']), 'WRONG_PLATFORM', 'other platform')
  fails(t, await run(['verify', release, '--root', 'root.json', '--platform', 'linux-x64'], () => new Date(Date.now() + 100 * DAY)), 'EXPIRED', 'release after 90 days')
  fails(t, await run(['verify', release, '--root', 'root.json', '--root', 'root.json']), 'BAD_ROOT_VERSION', 'root v1 offered again')

  await fs.appendFile(path.join(dir, 'pkg/install.sh'), 'rm -rf /\n')
  fails(t, await run(['verify', release, '--root', 'root.json', '--platform', 'linux-x64', '--source', 'pkg']), 'HASH_MISMATCH', 'changed source')

  const text = await fs.readFile(path.join(dir, release), 'utf8')
  await fs.writeFile(path.join(dir, 'truncated.json'), text.slice(0, text.length / 2))
  fails(t, await run(['verify', 'truncated.json', '--root', 'root.json']), 'BAD_ENVELOPE', 'truncated envelope')
  await fs.writeFile(path.join(dir, 'pretty.json'), JSON.stringify(JSON.parse(text), null, 2))
  fails(t, await run(['verify', 'pretty.json', '--root', 'root.json']), 'NOT_CANONICAL', 'pretty-printed envelope')
  await fs.writeFile(path.join(dir, 'shape.json'), '{"signatures":[],"signed":1}')
  fails(t, await run(['verify', 'shape.json', '--root', 'root.json']), 'BAD_ENVELOPE', 'wrong shape')
  const forged = JSON.parse(text)
  forged.signed.risk = 'low'
  await fs.writeFile(path.join(dir, 'forged.json'), JSON.stringify(forged))
  ok(t, await run(['inspect', 'forged.json']), 'inspect shows it (it checks shape, not signatures)')
  fails(t, await run(['verify', 'forged.json', '--root', 'root.json', '--platform', 'linux-x64']), 'THRESHOLD_NOT_MET', 'risk changed after signing')
  fails(t, await run(['verify', 'missing.json', '--root', 'root.json']), 'NOT_FOUND', 'missing file')
})

t.test('release refuses bad input and writes nothing', async (t) => {
  const { dir, run } = await setup(t)
  ok(t, await run(ROOT_V1), 'root init')
  const sign = ['--key', 'rel1.key', '--key', 'rel2.key']
  fails(t, await run([...RELEASE, '--key', 'rel1.key']), 'THRESHOLD_NOT_MET', 'one of two release keys')
  fails(t, await run([...RELEASE.map((a) => a === 'install.sh --quiet' ? '../evil.sh' : a), ...sign]), 'UNSAFE_PATH', 'exec outside the package')
  fails(t, await run([...RELEASE.map((a) => a === 'install.sh --quiet' ? '/bin/sh' : a), ...sign]), 'UNSAFE_PATH', 'absolute exec')
  fails(t, await run([...RELEASE.map((a) => a === 'hello' ? '../hello' : a), ...sign]), 'UNSAFE_PATH', 'bad package name')
  fails(t, await run([...RELEASE.map((a) => a === 'high' ? 'spicy' : a), ...sign]), 'BAD_ARGUMENT', 'unknown risk')
  fails(t, await run([...RELEASE, ...sign, '--files', 'opt/hello']), 'BAD_ARGUMENT', 'two install kinds')
  await t.rejects(fs.access(path.join(dir, 'out')), 'nothing written for any refusal')

  // The delegated customer key may release only inside msp-1/customer-a.
  fails(t, await run([...RELEASE, '--key', 'cust.key', '--scope', 'msp-1/customer-b']), 'OUTSIDE_DELEGATION', 'delegated key, other tenant')
  fails(t, await run([...RELEASE, '--key', 'cust.key', '--scope', 'msp-1/cust']), 'OUTSIDE_DELEGATION', 'prefix trap')
  const scoped = await run([...RELEASE, '--key', 'cust.key', '--scope', 'msp-1/customer-a/site-1', '--json'])
  ok(t, scoped, 'delegated key inside its subtree')
  t.match(scoped.json.signer, /^delegation acme-customers/)
})

t.test('key files: insecure and corrupt', async (t) => {
  const { dir, run } = await setup(t)
  await fs.chmod(path.join(dir, 'r1.key'), 0o644)
  fails(t, await run(ROOT_V1), 'INSECURE_KEY_FILE', 'root key readable by others')
  await fs.chmod(path.join(dir, 'r1.key'), 0o600)
  await fs.writeFile(path.join(dir, 'r2.key'), '{"type":"patchswarm-secret-key"', { mode: 0o600 })
  fails(t, await run(ROOT_V1), 'BAD_KEY_FILE', 'corrupt key')
  await t.rejects(fs.access(path.join(dir, 'root.json')), 'no root written')
})

t.test('inspect every kind of document', async (t) => {
  const { run } = await setup(t)
  ok(t, await run(ROOT_V1), 'root init')
  ok(t, await run([...RELEASE, '--key', 'rel1.key', '--key', 'rel2.key']), 'release')
  const root = await run(['inspect', 'root.json', '--json'])
  t.equal(root.json.type, 'root')
  t.equal(root.json.document.roles.root.threshold, 2)
  const rel = await run(['inspect', 'out/hello-1.0.0.release.json'])
  t.match(rel.stdout, /^release hello 1\.0\.0 v1 for linux, risk high/)
  const man = await run(['inspect', 'out/hello-1.0.0.manifest.json', '--json'])
  t.equal(man.json.type, 'manifest')
  t.equal(man.json.manifest.files.length, 2)
  fails(t, await run(['inspect', 'pkg/install.sh']), 'BAD_ENCODING', 'not JSON')
})

t.test('the real process answers corrupt input with one line', async (t) => {
  const dir = t.testdir({ 'bad.json': '{"signatures":[' })
  const r = await spawnCli(dir, ['inspect', 'bad.json'])
  t.equal(r.code, 1)
  t.match(r.stderr, /^patchswarm: BAD_ENCODING: bad\.json: not JSON/)
  t.equal(r.stderr.trim().split('\n').length, 1, 'one line, no stack trace')
})
