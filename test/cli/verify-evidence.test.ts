// An auditor's path: `patchswarm verify-evidence` on a good bundle, on a pinned root, and on a
// bundle with one flipped byte.
import t, { type Test } from 'tap'
import fs from 'node:fs/promises'
import path from 'node:path'
import { serializeEnvelope } from '../../lib/trust/index.js'
import { evidenceFleet } from '../../fixtures/evidence-fleet.js'
import { cli, spawnCli } from './helpers.js'

async function setup (t: Test) {
  const f = await evidenceFleet()
  const other = await evidenceFleet(2)
  const text = await f.bundle()
  const target = f.events.find((e) => e.signed.endpoint === f.endpoints[1]!.signer.keyid && e.signed.seq === 3)!
  const line = serializeEnvelope(target).toString()
  // One flipped bit in the event's time: '…T04:00…' becomes '…T05:00…'.
  const at = text.indexOf(line) + line.indexOf('"at":"') + '"at":"2025-03-01T0'.length
  const flipped = Buffer.from(text)
  flipped[at]! ^= 0x01
  const dir = t.testdir({
    'bundle.json': text,
    'flipped.json': flipped,
    'broken.json': text.replace(line, line.slice(1)),
    'root.json': serializeEnvelope(f.root),
    'other-root.json': serializeEnvelope(other.root)
  })
  return { dir, who: target.signed.endpoint.slice(0, 12) + '…' }
}

t.test('a good bundle verifies with a one-screen summary', async (t) => {
  const { dir } = await setup(t)
  const r = await cli(dir, ['verify-evidence', 'bundle.json'])
  t.equal(r.code, 0, r.stderr)
  t.equal(r.stderr, '')
  t.match(r.stdout, /^bundle\.json: evidence of acme VERIFIED\n/)
  t.match(r.stdout, 'NOT independently pinned (pass --root <file>)')
  t.match(r.stdout, 'complete: every event of these endpoints from seq 1')
  t.match(r.stdout, /\n  sealed +by console key [0-9a-f]{12}…\n/)
  t.match(r.stdout, /endpoints +3, 3 enrollment certificate\(s\)/)
  t.match(r.stdout, /events +12, 2025-03-01T01:00:00\.000Z → 2025-03-01T06:00:00\.000Z/)
  t.match(r.stdout, 'msp-1/acme/sales: 2 endpoint(s), 8 event(s)')
  t.ok(r.stdout.trimEnd().split('\n').length <= 24, 'fits one screen')

  const pinned = await cli(dir, ['verify-evidence', 'bundle.json', '--root', 'root.json'])
  t.equal(pinned.code, 0, pinned.stderr)
  t.match(pinned.stdout, 'pinned from root.json')
  t.notMatch(pinned.stdout, 'NOT independently pinned')

  const json = await cli(dir, ['verify-evidence', 'bundle.json', '--root', 'root.json', '--json'])
  t.equal(json.code, 0)
  t.same([json.json.ok, json.json.root.pinned, json.json.endpoints, json.json.events, json.json.problems], [true, true, 3, 12, []])
})

t.test('one flipped byte fails with BAD_EVIDENCE naming the endpoint and seq', async (t) => {
  const { dir, who } = await setup(t)
  const r = await cli(dir, ['verify-evidence', 'flipped.json', '--root', 'root.json'])
  t.equal(r.code, 1)
  const expected = `patchswarm: BAD_EVIDENCE: flipped.json: endpoint ${who} seq 3 (events[`
  t.ok(r.stderr.startsWith(expected), r.stderr)
  t.match(r.stderr, 'the signature does not match: the event was altered or not signed by that endpoint')
  t.equal(r.stderr.trimEnd().split('\n').length, 1, 'one line, no stack trace')
  t.match(r.stdout, 'does NOT verify')
  t.match(r.stdout, /sealed +by console key [0-9a-f]{12}…, but the bundle was changed after export/)

  const broken = await cli(dir, ['verify-evidence', 'broken.json'])
  t.equal(broken.code, 1)
  t.match(broken.stderr, new RegExp(`^patchswarm: BAD_EVIDENCE: broken\\.json: bundle is not valid JSON: events\\[\\d+\\] \\(endpoint ${who} seq 3, line \\d+\\) is damaged\\n$`))

  const json = await cli(dir, ['verify-evidence', 'flipped.json', '--json'])
  t.equal(json.code, 1)
  const result = JSON.parse(json.stdout)
  t.equal(result.ok, false)
  t.match(result.problems[0], `endpoint ${who} seq 3`)
  t.equal(JSON.parse(json.stderr).error.code, 'BAD_EVIDENCE')
})

t.test('another organisation\'s root, a missing file, no file', async (t) => {
  const { dir } = await setup(t)
  const other = await cli(dir, ['verify-evidence', 'bundle.json', '--root', 'other-root.json'])
  t.equal(other.code, 1)
  t.match(other.stderr, /^patchswarm: BAD_EVIDENCE: bundle\.json: certificates\[0\] \(endpoint [0-9a-f]{12}…\): not signed by the console role of acme/)
  t.match(other.stderr, /and \d+ more problem\(s\)/)
  const missing = await cli(dir, ['verify-evidence', 'nope.json'])
  t.equal(missing.code, 1)
  t.match(missing.stderr, /^patchswarm: NOT_FOUND: /)
  const notJson = await cli(dir, ['verify-evidence', 'root.json'])
  t.match(notJson.stderr, /^patchswarm: BAD_EVIDENCE: root\.json: not a patchswarm evidence bundle/)
  t.equal((await cli(dir, ['verify-evidence'])).code, 2, 'usage')
})

t.test('the real process: exit codes', async (t) => {
  const { dir, who } = await setup(t)
  const good = await spawnCli(dir, ['verify-evidence', 'bundle.json', '--root', 'root.json'])
  t.equal(good.code, 0, good.stderr)
  t.match(good.stdout, 'VERIFIED')
  const bad = await spawnCli(dir, ['verify-evidence', path.join(dir, 'flipped.json')])
  t.equal(bad.code, 1)
  t.match(bad.stderr, `seq 3`)
  t.match(bad.stderr, who)
  await fs.access(path.join(dir, 'bundle.json')) // nothing was touched
})
