import t from 'tap'
import {
  newRoot, rotateRoot, parseRoot, parseRelease, newDirective, parseDirective, releaseRef, signEnvelope,
  platformMatches, isWithinTenant
} from '../../lib/trust/index.js'
import { baseRoot, release, enrolled, rejects, keys, LATER, DIGEST_A, T0 } from './helpers.js'

t.test('newRoot builds a valid version 1 with every role key declared', async (t) => {
  const root = baseRoot()
  t.equal(root.version, 1)
  t.equal(root._type, 'root')
  t.equal(root.expires, LATER.toISOString())
  for (const k of [...keys.release, ...keys.console, ...keys.custA]) t.ok(root.keys[k.keyid], 'declared')
  t.same(parseRoot(JSON.parse(JSON.stringify(root))), root)
})

t.test('rotateRoot bumps the version and keeps what did not change', async (t) => {
  const v1 = baseRoot()
  const v2 = rotateRoot(v1, { keys: { console: [keys.other.keyid] } })
  t.equal(v2.version, 2)
  t.same(v2.roles.console.keyids, [keys.other.keyid])
  t.same(v2.roles.release, v1.roles.release)
  t.notOk(v2.keys[keys.console[0]!.keyid], 'the retired console key is gone from keys')
})

t.test('root semantic errors are BAD_DOCUMENT and name the field', async (t) => {
  const r = baseRoot()
  t.throws(() => newRoot({ org: 'acme', keys: { root: [keys.root[0]!.keyid], release: [keys.release[0]!.keyid], console: [keys.console[0]!.keyid] }, thresholds: { release: 2 }, expires: LATER }),
    { code: 'BAD_DOCUMENT', message: /root\.roles\.release\.threshold/ })
  t.throws(() => parseRoot({ ...r, roles: { ...r.roles, root: { keyids: [keys.other.keyid], threshold: 1 } } }),
    { code: 'BAD_DOCUMENT', message: /root\.roles\.root\.keyids.*not in root\.keys/ })
  t.throws(() => parseRoot({ ...r, roles: { ...r.roles, root: { keyids: [], threshold: 1 } } }), { code: 'BAD_DOCUMENT', message: /root\.roles\.root\.keyids/ })
  t.throws(() => parseRoot({ ...r, roles: { ...r.roles, console: { keyids: r.roles.console.keyids, threshold: 0 } } }), { code: 'BAD_DOCUMENT', message: /threshold/ })
  t.throws(() => parseRoot({ ...r, version: 0 }), { code: 'BAD_DOCUMENT', message: /root\.version/ })
  t.throws(() => parseRoot({ ...r, version: 1.5 }), { code: 'BAD_DOCUMENT', message: /root\.version/ })
  t.throws(() => parseRoot({ ...r, spec: 2 }), { code: 'BAD_DOCUMENT', message: /root\.spec/ })
  t.throws(() => parseRoot({ ...r, expires: '2030-02-30T00:00:00Z' }), { code: 'BAD_DOCUMENT', message: /root\.expires/ })
  t.throws(() => parseRoot({ ...r, expires: '2030-01-01T00:00:00+01:00' }), { code: 'BAD_DOCUMENT', message: /root\.expires/ })
  t.throws(() => parseRoot({ ...r, surprise: 1 }), { code: 'BAD_DOCUMENT', message: /surprise/ })
  t.throws(() => parseRoot({ ...r, delegations: [...r.delegations, ...r.delegations] }), { code: 'BAD_DOCUMENT', message: /delegations\[1\]\.name/ })
  t.throws(() => parseRoot({ ...r, delegations: [{ ...r.delegations[0]!, scope: '' }] }), { code: 'BAD_DOCUMENT', message: /delegations\[0\]\.scope/ })
  t.throws(() => parseRoot({ ...r, delegations: [{ ...r.delegations[0]!, scope: 'msp-1/../x' }] }), { code: 'UNSAFE_PATH', message: /delegations\[0\]\.scope/ })
  t.throws(() => parseRoot({ ...r, org: '../acme' }), { code: 'UNSAFE_PATH', message: /root\.org/ })
  t.throws(() => parseRoot(null), { code: 'BAD_DOCUMENT' })
})

t.test('release fields are validated and named', async (t) => {
  const r = release()
  t.same(parseRelease(JSON.parse(JSON.stringify(r))), r)
  const bad: Array<[object, string, RegExp]> = [
    [{ packageVersion: 'latest' }, 'BAD_DOCUMENT', /release\.packageVersion/],
    [{ packageVersion: '1..2' }, 'BAD_DOCUMENT', /release\.packageVersion/],
    [{ platform: 'Linux x64' }, 'BAD_DOCUMENT', /release\.platform/],
    [{ risk: 'urgent' }, 'BAD_DOCUMENT', /release\.risk/],
    [{ manifest: { digest: 'A'.repeat(64), size: 1 } }, 'BAD_DOCUMENT', /release\.manifest\.digest/],
    [{ manifest: { digest: DIGEST_A, size: -1 } }, 'BAD_DOCUMENT', /release\.manifest\.size/],
    [{ name: 'a/b' }, 'UNSAFE_PATH', /release\.name/],
    [{ scope: 'msp-1//x' }, 'UNSAFE_PATH', /release\.scope/],
    [{ install: { type: 'msi', path: 'x.msi' } }, 'BAD_DOCUMENT', /release\.install\.type/]
  ]
  for (const [change, code, message] of bad) t.throws(() => parseRelease({ ...r, ...change }), { code, message }, JSON.stringify(change))
})

t.test('install specs refuse bad names and paths with UNSAFE_PATH', async (t) => {
  const r = release()
  const bad: Array<[object, RegExp]> = [
    [{ type: 'exec', argv: ['../a'] }, /install\.argv\[0\]/],
    [{ type: 'exec', argv: ['/etc/x'] }, /install\.argv\[0\].*absolute/],
    [{ type: 'exec', argv: ['run\u0000me'] }, /install\.argv\[0\]/],
    [{ type: 'exec', argv: ['install.sh', 'a\u0000b'] }, /install\.argv\[1\].*NUL/],
    [{ type: 'exec', argv: ['install.sh', 'x'.repeat(5000)] }, /install\.argv\[1\].*longer/],
    [{ type: 'exec', argv: ['x'.repeat(300)] }, /install\.argv\[0\].*longer/],
    [{ type: 'exec', argv: ['install.sh'], cwd: '../..' }, /install\.cwd/],
    [{ type: 'exec', argv: ['install.sh'], health: ['/bin/true'] }, /install\.health\[0\]/],
    [{ type: 'exec', argv: ['install.sh'], rollback: ['sub/../../x'] }, /install\.rollback\[0\]/],
    [{ type: 'exec', argv: ['install.sh'], env: { A: 'x\u0000' } }, /install\.env\.A/],
    [{ type: 'files', target: '/etc/x' }, /install\.target/],
    [{ type: 'files', target: '../a' }, /install\.target/],
    [{ type: 'files', target: 'opt/\u202eexe' }, /install\.target/]
  ]
  for (const [install, message] of bad) {
    t.throws(() => parseRelease({ ...r, install }), { code: 'UNSAFE_PATH', message }, JSON.stringify(install).slice(0, 60))
  }
  t.throws(() => parseRelease({ ...r, install: { type: 'exec', argv: [] } }), { code: 'BAD_DOCUMENT', message: /install\.argv/ })
  t.throws(() => parseRelease({ ...r, install: { type: 'exec', argv: ['a'], env: { 'A=B': '1' } } }), { code: 'BAD_DOCUMENT', message: /install\.env/ })
  t.throws(() => parseRelease({ ...r, install: { type: 'exec', argv: ['a'], timeoutMs: 0 } }), { code: 'BAD_DOCUMENT', message: /install\.timeoutMs/ })
  t.throws(() => parseRelease({ ...r, install: { type: 'exec', argv: ['a'], exitCodes: [2 ** 32] } }), { code: 'BAD_DOCUMENT', message: /install\.exitCodes/ })
  const full = { type: 'exec', argv: ['bin/setup', '--silent', '/var/log/x'], env: { LANG: 'C' }, cwd: 'bin', timeoutMs: 60000, exitCodes: [0, 3010], health: ['bin/check'], rollback: ['bin/undo'], reboot: true }
  t.same(parseRelease({ ...r, install: full }).install, full, 'later arguments may be absolute: they are data, not the program')
})

t.test('a release with a bad install path is refused by verifyRelease and not persisted', async (t) => {
  const { state, db } = await enrolled(t)
  const doc = { ...release(), install: { type: 'exec', argv: ['../a'] } }
  const env = await signEnvelope(doc, keys.release)
  await rejects(t, db, () => state.verifyRelease(env, { platform: 'linux-x64' }), 'UNSAFE_PATH')
})

t.test('directive fields are validated', async (t) => {
  const ref = releaseRef(await signEnvelope(release(), keys.release))
  const d = newDirective({ org: 'acme', version: 1, issued: T0, expires: LATER, assignments: [{ target: { tenant: 'msp-1' }, release: ref, action: 'install' }] })
  t.same(parseDirective(JSON.parse(JSON.stringify(d))), d)
  t.throws(() => parseDirective({ ...d, issued: LATER.toISOString(), expires: T0.toISOString() }), { code: 'BAD_DOCUMENT', message: /directive\.issued/ })
  t.throws(() => parseDirective({ ...d, assignments: [{ ...d.assignments[0]!, action: 'format-disk' }] }), { code: 'BAD_DOCUMENT', message: /assignments\[0\]\.action/ })
  t.throws(() => parseDirective({ ...d, assignments: [{ ...d.assignments[0]!, target: { tenant: '/abs' } }] }), { code: 'UNSAFE_PATH', message: /assignments\[0\]\.target\.tenant/ })
  t.throws(() => parseDirective({ ...d, assignments: [{ ...d.assignments[0]!, target: { tenant: 'x', endpoints: ['zz'] } }] }), { code: 'BAD_DOCUMENT', message: /target\.endpoints\[0\]/ })
})

t.test('platform and tenant matching', async (t) => {
  t.ok(platformMatches('any', 'win32-arm64'))
  t.ok(platformMatches('linux', 'linux-x64'))
  t.ok(platformMatches('linux-x64', 'linux-x64'))
  t.notOk(platformMatches('linux-x64', 'linux-arm64'))
  t.notOk(platformMatches('lin', 'linux-x64'))
  t.notOk(platformMatches('linux', 'win32-x64'))
  t.ok(isWithinTenant('msp-1/customer-a/site', 'msp-1/customer-a'))
  t.ok(isWithinTenant('msp-1/customer-a', 'msp-1/customer-a'))
  t.ok(isWithinTenant('anything', ''))
  t.notOk(isWithinTenant('msp-1/cust', 'msp-1/customer-a'))
  t.notOk(isWithinTenant('msp-1/customer-ab', 'msp-1/customer-a'))
  t.notOk(isWithinTenant('', 'msp-1'))
})
