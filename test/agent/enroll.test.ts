// `patchswarm agent enroll` and `agent status` through the CLI, against a real console answering on
// a local DHT testnet. After every refusal the folder must hold nothing that looks enrolled.
import t, { type Test } from 'tap'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { generateKeyPair, keyIdOf, keySigner } from '../../lib/crypto/keys.js'
import { readSecretKeyFile } from '../../lib/crypto/keyfile.js'
import { openDatabase, sublevel } from '../../lib/store/db.js'
import { isPatchswarmError } from '../../lib/errors.js'
import { AdminApi } from '../../lib/console/api.js'
import { EnrollmentListener } from '../../lib/swarm/enroll-link.js'
import { startTestnet } from '../../lib/swarm/transport.js'
import { decodeToken, encodeToken } from '../../lib/fleet/enrollment.js'
import { envelopeHash, signEnvelope } from '../../lib/trust/envelope.js'
import { newCertificate } from '../../lib/trust/certificate.js'
import { newRoot, rotateRoot } from '../../lib/trust/root.js'
import { makeConsoleOrg, openConsole, OWNER } from '../../fixtures/console-org.js'
import { agentPaths, loadConfig } from '../../agent/config.js'
import { agentTrust, readEnrollment } from '../../agent/enroll.js'
import { AGENT_SUBLEVELS } from '../../agent/store.js'
import { sshKey } from '../fleet/helpers.js'
import { ManualClock } from '../console/helpers.js'
import { cli, type CliResult } from '../cli/helpers.js'

const GROUP = 'msp-1/acme/pilot'

const testnet = await startTestnet(3)
t.teardown(() => testnet.destroy())
const work = await fs.mkdtemp(path.join(os.tmpdir(), 'ps-agent-'))
t.teardown(() => fs.rm(work, { recursive: true, force: true }))

const clock = new ManualClock(Date.now())
const org = await makeConsoleOrg(clock.now())
const console = await openConsole(org, path.join(work, 'console'), { clock: clock.now })
t.teardown(() => console.close())
const api = new AdminApi(console)
await console.fleet.bootstrapOwner({ id: OWNER, sshKey: sshKey() })
await console.fleet.createTenant(OWNER, { parent: '', name: 'msp-1', kind: 'msp' })
await console.fleet.createTenant(OWNER, { parent: 'msp-1', name: 'acme', kind: 'customer' })
await console.fleet.createTenant(OWNER, { parent: 'msp-1/acme', name: 'pilot', kind: 'group' })

// The console's enrollment handler as ConsoleSwarm wires it. With `answerKnownKeys` off, it
// behaves like a console without Enrollment.status (see the quarantine test).
let answerKnownKeys = false
const listener = new EnrollmentListener({
  bootstrap: testnet.bootstrap,
  host: '127.0.0.1',
  keyPair: console.enrollKeyPair,
  handle: async (request, remote) => {
    // Enrollment.status answers a key that enrolled already (as ConsoleSwarm does); without it,
    // the console refuses the second request with ALREADY_EXISTS.
    const known = answerKnownKeys ? await console.enrollment.status(request as never, remote) : null
    return { ...(known ?? await console.enrollment.enroll(request as never)), root: console.rootEnvelope }
  }
})
t.teardown(() => listener.close())
await listener.ready()

const bootstrap = testnet.bootstrap.map((b) => `${b.host}:${b.port}`).join(',')
const rootHash = envelopeHash(console.rootEnvelope)

async function token (opts: { autoApprove?: boolean, expiresInMs?: number } = {}): Promise<string> {
  const made = await api.endpoints.createToken(OWNER, { scope: GROUP, expiresAt: new Date(clock.t + (opts.expiresInMs ?? 86400_000)), maxUses: 5, autoApprove: opts.autoApprove ?? true })
  return made.token
}

function enroll (data: string, tokenString: string, ...extra: string[]): Promise<CliResult> {
  return cli(work, ['agent', 'enroll', '--token', tokenString, '--data', data, '--bootstrap', bootstrap, '--host', '127.0.0.1', '--timeout', '10s', ...extra])
}

function errorOf (r: CliResult): { code: string, message: string } {
  return JSON.parse(r.stderr).error
}

async function exists (file: string): Promise<boolean> {
  return fs.access(file).then(() => true, () => false)
}

/** The hash of the root pinned in the folder's DB, or null (no DB or nothing pinned). */
async function pinnedRoot (data: string): Promise<string | null> {
  const p = agentPaths(path.join(work, data))
  if (!await exists(p.db)) return null
  const db = await openDatabase(p.db)
  try {
    const trust = agentTrust(db)
    await trust.ready()
    return trust.rootEnvelope ? envelopeHash(trust.rootEnvelope) : null
  } finally {
    await db.close()
  }
}

async function assertNothingApplied (t: Test, data: string): Promise<void> {
  const p = agentPaths(path.join(work, data))
  t.notOk(await exists(p.config), 'no agent.json')
  t.notOk(await exists(p.enrollment), 'no enrollment.json')
  t.equal(await pinnedRoot(data), null, 'no pinned root')
}

t.test('an approving token: certificate stored, root pinned, config written; status shows it', async (t) => {
  const tok = await token()
  const r = await enroll('approved', tok, '--hostname', 'pc-approved', '--json')
  t.equal(r.code, 0, r.stderr)
  t.equal(r.json.status, 'approved')
  t.equal(r.json.tenant, GROUP)
  t.equal(r.json.org, 'acme')
  t.equal(r.json.alreadyEnrolled, false)

  const p = agentPaths(path.join(work, 'approved'))
  const key = await readSecretKeyFile(p.identity)
  t.equal(keyIdOf(key.publicKey), r.json.holder, 'the identity is the enrolled key')
  t.equal((await fs.stat(p.identity)).mode & 0o777, 0o600, 'identity.key is 0600')
  const state = await readEnrollment(p.dir)
  t.equal(state?.status, 'approved')
  t.equal(state?.certificate?.signed.holder, r.json.holder)
  t.equal(state?.certificate?.signed.tenant, GROUP)
  t.equal(await pinnedRoot('approved'), rootHash, 'the console root is pinned')
  t.equal(rootHash, decodeToken(tok).root, 'and it is the one the token named')

  const config = await loadConfig(p.dir)
  t.equal(config.org, 'acme')
  t.equal(config.console.enrollKey, keyIdOf(console.enrollKeyPair.publicKey))
  t.same(config.bootstrap, testnet.bootstrap)
  t.equal(config.host, '127.0.0.1')
  t.equal(config.installRoot, p.install)
  t.equal((await console.endpoints.get(r.json.holder)).status, 'approved', 'the console has it approved')

  const status = await cli(work, ['agent', 'status', '--data', 'approved', '--json'])
  t.equal(status.code, 0, status.stderr)
  t.match(status.json, { enrolled: true, database: 'read', enrollment: { status: 'approved', tenant: GROUP, org: 'acme', holder: r.json.holder }, root: { org: 'acme', version: 1, hash: rootHash }, jobs: [] })
  t.ok(Date.parse(status.json.enrollment.certificateExpires) > Date.now(), 'with its certificate expiry')
  const human = await cli(work, ['agent', 'status', '--data', 'approved'])
  t.match(human.stdout, /enrollment\s+approved/)
  t.match(human.stdout, new RegExp(`tenant\\s+${GROUP}`))
  t.match(human.stdout, /jobs\n\(none\)/)

  // Jobs come from the job state machine's sublevel, whatever else it keeps.
  const db = await openDatabase(p.db)
  await sublevel(db, AGENT_SUBLEVELS.jobs).put('a'.repeat(64), { release: { name: 'agent-fix', packageVersion: '1.0.0' }, state: 'downloading', attempt: 1 })
  await sublevel(db, AGENT_SUBLEVELS.jobs).put('b'.repeat(64), { release: { name: 'bad-fix', packageVersion: '2.0.0' }, state: 'failed', breaker: { openedAt: clock.now().toISOString(), reason: 'install failed 3 times' }, nextAttemptAt: '2031-01-01T00:00:00.000Z' })
  const busy = await cli(work, ['agent', 'status', '--data', 'approved', '--json'])
  t.match(busy.json, { database: 'in-use', enrollment: { status: 'approved' }, jobs: null }, 'a running agent holds the DB: enrollment still shows')
  t.equal(errorOf(await enroll('approved', tok, '--json')).code, 'IN_USE', 'a second agent on the folder is refused')
  await db.close()
  const withJobs = await cli(work, ['agent', 'status', '--data', 'approved', '--json'])
  t.match(withJobs.json.jobs, [
    { key: 'a'.repeat(64), release: 'agent-fix@1.0.0', state: 'downloading', breaker: null, nextAttemptAt: null },
    { release: 'bad-fix@2.0.0', state: 'failed', breaker: 'install failed 3 times', nextAttemptAt: '2031-01-01T00:00:00.000Z' }
  ])
  const humanJobs = (await cli(work, ['agent', 'status', '--data', 'approved'])).stdout
  t.match(humanJobs, /agent-fix@1\.0\.0\s+downloading/)
  t.match(humanJobs, /bad-fix@2\.0\.0\s+failed\s+2031-01-01T00:00:00\.000Z\s+open: install failed 3 times/)

  const again = await enroll('approved', tok, '--json')
  t.equal(again.code, 0, again.stderr)
  t.match(again.json, { status: 'approved', alreadyEnrolled: true, holder: r.json.holder }, 'enrolling again changes nothing')

  const otherOrg = encodeToken({ ...decodeToken(tok), org: 'globex' })
  const wrong = await enroll('approved', otherOrg, '--json')
  t.equal(errorOf(wrong).code, 'BAD_STATE', 'a token of another organisation does not reuse the folder')
})

t.test('a quarantine token: pending, root pinned; re-sending picks up the certificate once approved', async (t) => {
  const tok = await token({ autoApprove: false })
  const r = await enroll('quarantine', tok, '--hostname', 'pc-quarantine', '--json')
  t.equal(r.code, 0, r.stderr)
  t.match(r.json, { status: 'pending', knownToConsole: false, tenant: null, certificateExpires: null })
  t.equal((await readEnrollment(path.join(work, 'quarantine')))?.status, 'pending')
  t.equal(await pinnedRoot('quarantine'), rootHash)
  t.ok(await exists(agentPaths(path.join(work, 'quarantine')).config), 'the folder is set up, waiting')
  t.equal((await console.endpoints.get(r.json.holder)).status, 'quarantine')

  // Today's console refuses a known key with ALREADY_EXISTS: the agent stays pending and says why.
  const human = await enroll('quarantine', tok)
  t.equal(human.code, 0, human.stderr)
  t.match(human.stdout, /pending: .*ALREADY_EXISTS/)
  await api.endpoints.approve(OWNER, r.json.holder)
  const still = await enroll('quarantine', tok, '--json')
  t.match(still.json, { status: 'pending', knownToConsole: true })
  t.equal((await cli(work, ['agent', 'status', '--data', 'quarantine', '--json'])).json.enrollment.status, 'pending')

  // With the proposed answer for known keys, the same command completes the enrollment.
  answerKnownKeys = true
  t.teardown(() => { answerKnownKeys = false })
  const done = await enroll('quarantine', tok, '--json')
  t.equal(done.code, 0, done.stderr)
  t.match(done.json, { status: 'approved', tenant: GROUP, holder: r.json.holder, alreadyEnrolled: false })
  t.equal((await readEnrollment(path.join(work, 'quarantine')))?.certificate?.signed.holder, r.json.holder)
})

t.test('an expired token: TOKEN_EXPIRED, nothing applied', async (t) => {
  const tok = await token({ expiresInMs: 3600_000 })
  clock.advance(2 * 3600_000)
  t.teardown(() => clock.advance(-2 * 3600_000))
  const r = await enroll('expired', tok, '--json')
  t.equal(r.code, 1)
  t.equal(errorOf(r).code, 'TOKEN_EXPIRED')
  await assertNothingApplied(t, 'expired')
})

t.test('garbage tokens: BAD_TOKEN before anything is created', async (t) => {
  for (const bad of ['pst1.not!base64', 'hello', `pst1.${Buffer.from('{"org":"acme"}').toString('base64url')}`]) {
    const r = await enroll('garbage', bad, '--json')
    t.equal(r.code, 1)
    t.equal(errorOf(r).code, 'BAD_TOKEN', bad)
  }
  t.notOk(await exists(path.join(work, 'garbage')), 'no folder')
  const none = await cli(work, ['agent', 'enroll', '--data', 'garbage', '--json'])
  t.equal(errorOf(none).code, 'BAD_ARGUMENT', 'no token at all')
})

t.test('a console that is not there: UNAVAILABLE or TIMEOUT; the key is kept and reused', async (t) => {
  const real = decodeToken(await token())
  const nowhere = encodeToken({ ...real, console: keyIdOf(generateKeyPair().publicKey) })
  const started = Date.now()
  const r = await enroll('absent', nowhere, '--timeout', '3s', '--json')
  t.equal(r.code, 1)
  t.ok(['UNAVAILABLE', 'TIMEOUT'].includes(errorOf(r).code), errorOf(r).message)
  t.ok(Date.now() - started < 20_000, 'bounded by the timeout, roughly')
  await assertNothingApplied(t, 'absent')
  const p = agentPaths(path.join(work, 'absent'))
  const key = keyIdOf((await readSecretKeyFile(p.identity)).publicKey)

  const retry = await enroll('absent', encodeToken(real), '--json')
  t.equal(retry.code, 0, retry.stderr)
  t.equal(retry.json.holder, key, 'the later enrollment uses the same identity')
})

t.test('an unwritable data folder: IO_ERROR naming it, nothing written', async (t) => {
  await fs.writeFile(path.join(work, 'a-file'), 'not a folder')
  const r = await enroll('a-file/agent', await token(), '--json')
  t.equal(r.code, 1)
  t.equal(errorOf(r).code, 'IO_ERROR')
  t.match(errorOf(r).message, path.join(work, 'a-file', 'agent'))
  t.equal(await fs.readFile(path.join(work, 'a-file'), 'utf8'), 'not a folder')
})

t.test('a corrupt agent.json: BAD_CONFIG, nothing written', async (t) => {
  const dir = path.join(work, 'corrupt')
  await fs.mkdir(dir)
  await fs.writeFile(path.join(dir, 'agent.json'), '{"org": "acme", ')
  const r = await enroll('corrupt', await token(), '--json')
  t.equal(errorOf(r).code, 'BAD_CONFIG')
  t.match(errorOf(r).message, /agent\.json/)
  t.same(await fs.readdir(dir), ['agent.json'], 'no key, no DB')
  const status = await cli(work, ['agent', 'status', '--data', 'corrupt', '--json'])
  t.equal(errorOf(status).code, 'BAD_CONFIG', 'status says so too')

  const damaged = path.join(work, 'damaged')
  await fs.mkdir(damaged)
  await fs.writeFile(path.join(damaged, 'enrollment.json'), JSON.stringify({ status: 'approved' }))
  t.equal(errorOf(await enroll('damaged', await token(), '--json')).code, 'BAD_STATE', 'a damaged enrollment.json')
  t.equal(errorOf(await cli(work, ['agent', 'status', '--data', 'damaged', '--json'])).code, 'BAD_STATE')
  t.same(await fs.readdir(damaged), ['enrollment.json'])
})

t.test('a second agent holding the folder: IN_USE, nothing applied', async (t) => {
  const p = agentPaths(path.join(work, 'held'))
  const db = await openDatabase(p.db)
  const r = await enroll('held', await token(), '--json')
  await db.close()
  t.equal(errorOf(r).code, 'IN_USE')
  t.notOk(await exists(p.identity), 'no key made')
  await assertNothingApplied(t, 'held')
})

t.test('a console key answering with another root or a forged certificate: refused, nothing applied', async (t) => {
  const rogueKeys = generateKeyPair()
  let answer: (request: unknown) => Promise<unknown> = async () => ({})
  const rogue = new EnrollmentListener({ bootstrap: testnet.bootstrap, host: '127.0.0.1', keyPair: rogueKeys, handle: (req) => answer(req) })
  t.teardown(() => rogue.close())
  await rogue.ready()
  const tok = encodeToken({ ...decodeToken(await token()), console: keyIdOf(rogueKeys.publicKey) })

  const otherOrg = await makeConsoleOrg()
  answer = async () => ({ status: 'quarantine', root: otherOrg.rootEnvelope })
  const r = await enroll('rogue', tok, '--json')
  t.equal(errorOf(r).code, 'BAD_TOKEN')
  t.match(errorOf(r).message, /another root/)
  await assertNothingApplied(t, 'rogue')

  // The right root, but a certificate the console role never signed.
  answer = async (req) => {
    const holder = (req as { signed: { holder: string } }).signed.holder
    const cert = newCertificate({ org: 'acme', holder, tenant: GROUP, issued: clock.now(), expires: new Date(clock.t + 86400_000) })
    return { status: 'approved', certificate: await signEnvelope(cert, [keySigner(generateKeyPair())]), root: console.rootEnvelope }
  }
  const forged = await enroll('rogue', tok, '--json')
  t.equal(errorOf(forged).code, 'THRESHOLD_NOT_MET')
  await assertNothingApplied(t, 'rogue')

  answer = async () => ({ status: 'approved', root: console.rootEnvelope })
  t.equal(errorOf(await enroll('rogue', tok, '--json')).code, 'PROTOCOL_ERROR', 'approved without a certificate')
  answer = async () => ({ status: 'maybe', root: console.rootEnvelope })
  t.equal(errorOf(await enroll('rogue', tok, '--json')).code, 'PROTOCOL_ERROR', 'an answer of the wrong shape')
  await assertNothingApplied(t, 'rogue')
})

t.test('a folder that pinned an older root walks to the newer one a later token names; an unrelated root is refused', async (t) => {
  const rootKey = keySigner(generateKeyPair())
  const keys = { root: [rootKey.keyid], release: [rootKey.keyid], console: [rootKey.keyid] }
  const v1 = await signEnvelope(newRoot({ org: 'acme', keys, expires: new Date(clock.t + 365 * 86400_000) }), [rootKey])
  const v2 = await signEnvelope(rotateRoot(v1.signed), [rootKey])
  const stranger = keySigner(generateKeyPair())
  const unrelated = await signEnvelope(newRoot({ org: 'acme', keys: { root: [stranger.keyid], release: [stranger.keyid], console: [stranger.keyid] }, version: 2, expires: new Date(clock.t + 365 * 86400_000) }), [stranger])

  const consoleKeys = generateKeyPair()
  let root = v1
  const other = new EnrollmentListener({ bootstrap: testnet.bootstrap, host: '127.0.0.1', keyPair: consoleKeys, handle: async () => ({ status: 'quarantine', root }) })
  t.teardown(() => other.close())
  await other.ready()
  const tokenFor = (r: typeof v1) => encodeToken({ org: 'acme', id: '0123456789abcdef', secret: Buffer.alloc(32, 7).toString('base64url'), root: envelopeHash(r), console: keyIdOf(consoleKeys.publicKey) })

  t.equal((await enroll('rotated', tokenFor(v1), '--json')).json?.status, 'pending')
  t.equal(await pinnedRoot('rotated'), envelopeHash(v1))
  root = v2
  const walked = await enroll('rotated', tokenFor(v2), '--json')
  t.equal(walked.code, 0, walked.stderr)
  t.equal(await pinnedRoot('rotated'), envelopeHash(v2), 'v1 → v2, checked against both')

  root = unrelated
  const refused = await enroll('rotated', tokenFor(unrelated), '--json')
  t.equal(errorOf(refused).code, 'BAD_ROOT_VERSION', errorOf(refused).message)
  t.equal(await pinnedRoot('rotated'), envelopeHash(v2), 'the pinned root stays')
})

t.test('status of a folder that was never enrolled creates nothing', async (t) => {
  const r = await cli(work, ['agent', 'status', '--data', 'never', '--json'])
  t.equal(r.code, 0, r.stderr)
  t.match(r.json, { enrolled: false, enrollment: null, database: 'absent', root: null, jobs: null })
  t.match((await cli(work, ['agent', 'status', '--data', 'never'])).stdout, /enrollment\s+not enrolled/)
  t.notOk(await exists(path.join(work, 'never')))
})
