// The console's SSH front door against real clients: the ssh2 client in-process for every refusal
// and the TOTP rules, and OpenSSH's `ssh` inside tmux for the way an admin really comes in.
import t, { type Test } from 'tap'
import path from 'node:path'
import fs from 'node:fs/promises'
import { execFileSync } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import ssh2 from 'ssh2'
import { generate, generateSecret } from 'otplib'
import { Fleet } from '../../lib/fleet/index.js'
import {
  SshServer, base32Decode, buildAdminIndex, fleetAdminResolver, generateSshKey, loadOrCreateHostKey, sshFingerprint,
  type SshAuthEvent, type SshChannel, type SshKeyPair, type SshServerOptions, type SshSize
} from '../../tui/ssh/index.js'

// ---- a fleet of admins, a server in front of it, a tiny session ------------------------------

interface World {
  fleet: Fleet
  server: SshServer
  port: number
  hostFingerprint: string
  keys: Record<'owner' | 'bob' | 'alice' | 'mallory', SshKeyPair>
  aliceSecret: string
  events: SshAuthEvent[]
  opened: Array<{ admin: string, channel: SshChannel, sizes: SshSize[] }>
  /** Admin ids of sessions whose close() ran. */
  closed: string[]
  errors: Error[]
  /** The server's clock (ms); tests move it. */
  now: { ms: number }
}

async function makeWorld (t: Test, extra: Partial<SshServerOptions> = {}): Promise<World> {
  const dir = t.testdir()
  const fleet = await Fleet.open(path.join(dir, 'db'))
  t.teardown(() => fleet.close())
  const keys = { owner: generateSshKey('owner'), bob: generateSshKey('bob'), alice: generateSshKey('alice'), mallory: generateSshKey('mallory') }
  const aliceSecret = generateSecret()
  await fleet.bootstrapOwner({ id: 'owner', sshKey: keys.owner.publicKey })
  await fleet.createTenant('owner', { parent: '', name: 'msp-1', kind: 'msp' })
  await fleet.createAdmin('owner', { id: 'bob', sshKey: keys.bob.publicKey, bindings: [{ role: 'viewer', scope: 'msp-1' }] })
  await fleet.createAdmin('owner', { id: 'alice', sshKey: keys.alice.publicKey, totpSecret: aliceSecret, bindings: [{ role: 'operator', scope: 'msp-1' }] })

  const hostKey = await loadOrCreateHostKey(path.join(dir, 'host', 'ssh_host_ed25519_key'))
  const events: SshAuthEvent[] = []
  const opened: World['opened'] = []
  const closed: string[] = []
  const errors: Error[] = []
  const now = { ms: Date.parse('2030-01-01T00:00:05Z') }
  const server = new SshServer({
    hostKey: hostKey.privateKey,
    port: 0,
    resolveAdmin: fleetAdminResolver(fleet.admins),
    clock: () => new Date(now.ms),
    onAuth: (e) => events.push(e),
    onError: (err) => errors.push(err),
    session: (channel, admin) => {
      const entry = { admin: admin.id, channel, sizes: [] as SshSize[] }
      opened.push(entry)
      channel.output.write(`hello ${admin.id} ${channel.columns}x${channel.rows} ${channel.term}\r\n`)
      channel.input.on('data', (d: Buffer) => {
        const s = d.toString()
        if (s === 'q') channel.close(3)
        else channel.output.write(`echo:${s}\r\n`)
      })
      channel.onResize((size) => {
        entry.sizes.push(size)
        channel.output.write(`size ${size.columns}x${size.rows}\r\n`)
      })
      return { close () { closed.push(admin.id) } }
    },
    ...extra
  })
  const address = await server.listen()
  t.teardown(() => server.close())
  return { fleet, server, port: address.port, hostFingerprint: hostKey.fingerprint, keys, aliceSecret, events, opened, closed, errors, now }
}

// ---- ssh2 client helpers ------------------------------------------------------------------------

type Auth = ssh2.AnyAuthMethod

/** Connects trying exactly these methods in order; rejects with the client's error or on close. */
function connect (t: Test, port: number, auth: Auth[], opts: { onHostKey?: (key: Buffer) => void } = {}): Promise<ssh2.Client> {
  const client = new ssh2.Client()
  t.teardown(() => { client.end() })
  return new Promise((resolve, reject) => {
    let done = false
    client.on('ready', () => { done = true; resolve(client) })
    client.on('error', (err) => { if (!done) { done = true; reject(err) } })
    client.on('close', () => { if (!done) { done = true; reject(new Error('closed before ready')) } })
    const queue = [...auth]
    client.connect({
      host: '127.0.0.1',
      port,
      username: 'admin',
      readyTimeout: 10_000,
      hostVerifier: (key: Buffer) => { opts.onHostKey?.(key); return true },
      authHandler: (_left, _partial, next) => { next((queue.shift() ?? false) as Auth) }
    })
  })
}

const publickey = (key: string | ssh2.ParsedKey): Auth => ({ type: 'publickey', username: 'admin', key })
const password = (pw: string): Auth => ({ type: 'password', username: 'admin', password: pw })
const code = (answer: string): Auth => ({
  type: 'keyboard-interactive',
  username: 'admin',
  prompt: (_name, _instructions, _lang, prompts, finish) => {
    promptsSeen.push(...prompts)
    finish(prompts.map(() => answer))
  }
})
const promptsSeen: Array<{ prompt: string, echo?: boolean }> = []

interface Shell {
  stream: ssh2.ClientChannel
  text (): string
  until (pattern: string | RegExp): Promise<string>
  /** The exit status (null without one), once the channel closed. */
  exit: Promise<number | null>
}

function shell (client: ssh2.Client, pty: { cols: number, rows: number, term: string } | false): Promise<Shell> {
  return new Promise((resolve, reject) => {
    const window = pty === false ? false : { ...pty, width: 0, height: 0 }
    client.shell(window, (err, stream) => {
      if (err) return reject(err)
      let out = ''
      stream.on('data', (d: Buffer) => { out += d.toString() })
      stream.stderr.on('data', (d: Buffer) => { out += d.toString() })
      let status: number | null = null
      stream.on('exit', (c: number | null) => { status = c })
      const exit = new Promise<number | null>((resolve) => stream.on('close', () => resolve(status)))
      resolve({ stream, text: () => out, until: (p) => until(() => out, p), exit })
    })
  })
}

async function until (read: () => string, pattern: string | RegExp, ms = 8000): Promise<string> {
  const end = Date.now() + ms
  for (;;) {
    const s = read()
    if (typeof pattern === 'string' ? s.includes(pattern) : pattern.test(s)) return s
    if (Date.now() > end) throw new Error(`timed out waiting for ${pattern}; saw ${JSON.stringify(s.slice(-800))}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

async function eventually (what: string, check: () => boolean, ms = 8000): Promise<void> {
  const end = Date.now() + ms
  while (!check()) {
    if (Date.now() > end) throw new Error(`not reached in time: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

/** The reason the client gives up with, or 'connected'. */
async function refusal (p: Promise<ssh2.Client>): Promise<string> {
  try {
    const c = await p
    c.end()
    return 'connected'
  } catch (err) {
    return (err as Error).message
  }
}

const totpAt = (secret: string, ms: number) => generate({ secret, epoch: Math.floor(ms / 1000) })

function blobOf (publicKeyLine: string): Buffer {
  return Buffer.from(publicKeyLine.split(' ')[1]!, 'base64')
}

// ---- the tests ------------------------------------------------------------------------------------

const w = await makeWorld(t)

t.test('a known key gets its own session per SSH session, with the pty size, input and resizes', async (t) => {
  let hostKey: Buffer | undefined
  const c = await connect(t, w.port, [publickey(w.keys.bob.privateKey)], { onHostKey: (k) => { hostKey = k } })
  t.equal(sshFingerprint(hostKey!), w.hostFingerprint, 'the client sees the persisted host key')
  const bobEvents = w.events.filter((e) => e.admin === 'bob')
  t.match(bobEvents, [{ method: 'publickey', ok: true, reason: 'key accepted', key: w.keys.bob.fingerprint, username: 'admin', remoteAddress: '127.0.0.1' }],
    'one audit event for the login (the unsigned probe is not an attempt)')

  const a = await shell(c, { cols: 100, rows: 30, term: 'xterm-256color' })
  await a.until('hello bob 100x30 xterm-256color')
  a.stream.write('ping')
  await a.until('echo:ping')
  a.stream.setWindow(40, 120, 0, 0)
  await a.until('size 120x40')
  const first = w.opened.at(-1)!
  t.same(first.sizes, [{ columns: 120, rows: 40 }], 'onResize got the new size')
  t.equal(first.channel.columns, 120)
  t.equal((first.channel.output as unknown as { rows: number }).rows, 40, 'the output stream carries the size as a TTY would')

  const b = await shell(c, { cols: 80, rows: 24, term: 'vt100' })
  await b.until('hello bob 80x24 vt100')
  t.equal(w.opened.length, 2, 'a second SSH session is a second console session')
  t.not(w.opened[1]!.channel, w.opened[0]!.channel)
  t.equal(w.server.sessionCount, 2)
  b.stream.write('q')
  t.equal(await b.exit, 3, 'channel.close(3) ends that session with exit status 3')
  await eventually('one close', () => w.closed.length === 1)
  t.notOk(a.text().includes('echo:q'), 'the other session is untouched')

  c.end()
  await eventually('both closed', () => w.closed.length === 2)
  t.same(w.closed, ['bob', 'bob'], 'close() ran once per session')
  t.equal(w.server.sessionCount, 0)
})

t.test('RSA and ECDSA keys work too (RSA signs as rsa-sha2-*, the key stays ssh-rsa)', async (t) => {
  for (const [id, pem] of [
    ['rita', generateKeyPairSync('rsa', { modulusLength: 2048, privateKeyEncoding: { type: 'pkcs1', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } }).privateKey],
    ['emil', generateKeyPairSync('ec', { namedCurve: 'P-256', privateKeyEncoding: { type: 'sec1', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } }).privateKey]
  ] as const) {
    const parsed = ssh2.utils.parseKey(pem) as ssh2.ParsedKey
    await w.fleet.createAdmin('owner', { id, sshKey: `${parsed.type} ${parsed.getPublicSSH().toString('base64')} ${id}@test`, bindings: [{ role: 'viewer', scope: 'msp-1' }] })
    const n = w.events.length
    const c = await connect(t, w.port, [publickey(pem)])
    t.match(w.events.slice(n), [{ admin: id, ok: true, reason: 'key accepted' }], `${parsed.type} key accepted`)
    c.end()
  }
})

t.test('unknown keys, passwords, forged signatures and codes without a key are refused', async (t) => {
  const before = w.events.length
  t.match(await refusal(connect(t, w.port, [publickey(w.keys.mallory.privateKey)])), /authentication methods failed/)
  t.match(w.events.slice(before), [{ admin: null, method: 'publickey', ok: false, reason: 'unknown key', key: w.keys.mallory.fingerprint }])

  const n1 = w.events.length
  t.match(await refusal(connect(t, w.port, [password('hunter2')])), /authentication methods failed/)
  t.match(w.events.slice(n1), [{ admin: null, method: 'password', ok: false, reason: 'password authentication is not accepted' }])

  // Mallory offers Bob's public key but can only sign with her own private key.
  const n2 = w.events.length
  const forged = ssh2.utils.parseKey(w.keys.mallory.privateKey) as ssh2.ParsedKey
  const bobBlob = blobOf(w.keys.bob.publicKey)
  forged.getPublicSSH = () => bobBlob
  t.match(await refusal(connect(t, w.port, [publickey(forged)])), /authentication methods failed/)
  t.match(w.events.slice(n2), [{ admin: 'bob', method: 'publickey', ok: false, reason: 'bad signature' }])

  const n3 = w.events.length
  const prompts = promptsSeen.length
  t.match(await refusal(connect(t, w.port, [code('123456')])), /authentication methods failed/)
  t.equal(promptsSeen.length, prompts, 'no code is asked for before a key')
  t.equal(w.events.length, n3)

  // A client that keeps trying is cut off after six failures.
  const many = Array.from({ length: 8 }, () => password('x'))
  const n4 = w.events.length
  t.ok(await refusal(connect(t, w.port, many)))
  t.equal(w.events.length - n4, 6, 'six attempts, then the connection is dropped')
  t.equal(w.opened.filter((o) => o.admin !== 'bob').length, 0)
})

t.test('exec, subsystems, forwarding and a shell without a terminal are refused', async (t) => {
  const c = await connect(t, w.port, [publickey(w.keys.bob.privateKey)])
  const opened = w.opened.length
  const fails = (start: (cb: (err: Error | undefined) => void) => void) => new Promise<boolean>((resolve) => start((err) => resolve(!!err)))
  t.ok(await fails((cb) => c.exec('id', (err, s) => { s?.close(); cb(err) })), 'exec refused')
  t.ok(await fails((cb) => c.subsys('sftp', (err, s) => { s?.close(); cb(err) })), 'sftp refused')
  t.ok(await fails((cb) => c.subsys('netconf', (err, s) => { s?.close(); cb(err) })), 'other subsystems refused')
  t.ok(await fails((cb) => c.forwardOut('127.0.0.1', 1, '127.0.0.1', w.port, (err, s) => { s?.close(); cb(err) })), 'port forwarding refused')
  const plain = await shell(c, false)
  t.equal(await plain.exit, 1)
  t.match(plain.text(), /needs a terminal/)
  t.equal(w.opened.length, opened, 'no console session was started')
})

t.test('TOTP: the key alone is not enough; wrong codes are refused; the right code lets in once', async (t) => {
  const secret = w.aliceSecret
  const alice = publickey(w.keys.alice.privateKey)
  const valid = new Set(await Promise.all([-30_000, 0, 30_000].map((d) => totpAt(secret, w.now.ms + d))))
  const wrong = ['000000', '111111', '222222'].find((x) => !valid.has(x))!

  let n = w.events.length
  t.match(await refusal(connect(t, w.port, [alice])), /authentication methods failed/)
  t.match(w.events.slice(n), [{ admin: 'alice', method: 'publickey', ok: true, partial: true, reason: 'key accepted; verification code required' }])

  n = w.events.length
  t.match(await refusal(connect(t, w.port, [alice, code(wrong)])), /authentication methods failed/)
  t.match(w.events.slice(n), [{ partial: true }, { admin: 'alice', method: 'keyboard-interactive', ok: false, reason: 'wrong code' }])
  t.match(promptsSeen.at(-1), { prompt: 'Verification code: ', echo: false }, 'the code is asked for with echo off')

  n = w.events.length
  t.ok(await refusal(connect(t, w.port, [alice, code(wrong), code(wrong), code(wrong), code(wrong), code(wrong)])))
  const tries = w.events.slice(n).filter((e) => e.method === 'keyboard-interactive')
  t.equal(tries.length, 3, 'three codes per connection, then it is dropped')
  t.match(tries.at(-1), { ok: false, reason: /3 wrong codes, disconnected/ })

  const right = await totpAt(secret, w.now.ms)
  n = w.events.length
  const c = await connect(t, w.port, [alice, code(right)])
  t.match(w.events.slice(n), [{ partial: true }, { admin: 'alice', method: 'keyboard-interactive', ok: true, reason: 'verification code accepted' }])
  const s = await shell(c, { cols: 90, rows: 25, term: 'xterm' })
  await s.until('hello alice 90x25 xterm')
  c.end()

  n = w.events.length
  t.match(await refusal(connect(t, w.port, [alice, code(right)])), /authentication methods failed/)
  t.match(w.events.slice(n), [{ partial: true }, { ok: false, reason: 'code already used' }], 'a replayed code is refused')

  // Thirty seconds on: the next step's code (and one step ahead, the clock skew allowed) work once
  // each; a code of a step already passed does not, even inside the window.
  w.now.ms += 30_000
  const ahead = await totpAt(secret, w.now.ms + 30_000)
  const c2 = await connect(t, w.port, [alice, code(ahead)])
  c2.end()
  const current = await totpAt(secret, w.now.ms)
  n = w.events.length
  t.ok(await refusal(connect(t, w.port, [alice, code(current)])))
  t.match(w.events.slice(n), [{ partial: true }, { ok: false, reason: 'code already used' }])
  const stale = await totpAt(secret, w.now.ms - 90_000)
  n = w.events.length
  t.ok(await refusal(connect(t, w.port, [alice, code(stale)])))
  t.match(w.events.slice(n), [{ partial: true }, { ok: false, reason: 'wrong code' }], 'a code outside ±1 step is wrong')
})

t.test('a connection without input is closed after the idle timeout', async (t) => {
  const idle = await makeWorld(t, { idleTimeoutMs: 400 })
  const c = await connect(t, idle.port, [publickey(idle.keys.bob.privateKey)])
  const s = await shell(c, { cols: 80, rows: 24, term: 'xterm' })
  await s.until('hello bob')
  for (let i = 0; i < 6; i++) { // typing keeps it open past the timeout
    await new Promise((resolve) => setTimeout(resolve, 150))
    s.stream.write('k')
  }
  t.same(idle.closed, [], 'still open after 900 ms with input')
  await s.until('patchswarm: closed after 1 s without input')
  await s.exit
  await eventually('closed', () => idle.closed.length === 1)
  t.same(idle.closed, ['bob'])
})

t.test('a session that fails to start is reported; close() ends every session and connection', async (t) => {
  let fail = true
  const errors: Error[] = []
  const closed: string[] = []
  const x = await makeWorld(t, {
    onError: (err) => errors.push(err),
    session: (channel, admin) => {
      if (fail) throw new Error('no console for you')
      channel.output.write(`hi ${admin.id}\r\n`)
      return { close: async () => { await new Promise((resolve) => setTimeout(resolve, 50)); closed.push(admin.id) } }
    }
  })
  const c = await connect(t, x.port, [publickey(x.keys.bob.privateKey)])
  const broken = await shell(c, { cols: 80, rows: 24, term: 'xterm' })
  t.equal(await broken.exit, 1)
  t.match(broken.text(), /could not start: no console for you/)
  t.match(errors, [{ message: 'no console for you' }])

  fail = false
  const s1 = await shell(c, { cols: 80, rows: 24, term: 'xterm' })
  const c2 = await connect(t, x.port, [publickey(x.keys.owner.privateKey)])
  const s2 = await shell(c2, { cols: 80, rows: 24, term: 'xterm' })
  await s1.until('hi bob')
  await s2.until('hi owner')
  const gone = [c, c2].map((cl) => new Promise<void>((resolve) => cl.on('close', () => resolve())))
  await x.server.close()
  t.same(closed.sort(), ['bob', 'owner'], 'close() waited for every session to close')
  t.match(s1.text(), /shutting down/)
  t.equal(await s1.exit, 0)
  await Promise.all(gone)
  t.pass('both connections are gone')
  t.equal(await refusal(connect(t, x.port, [publickey(x.keys.bob.privateKey)])) !== 'connected', true, 'nothing listens any more')
  await x.server.close() // idempotent
})

t.test('a port in use is IN_USE; a bad host key is BAD_KEY_FILE', async (t) => {
  const session = () => ({ close () {} })
  const resolveAdmin = async () => null
  const hostKey = generateSshKey().privateKey
  const other = new SshServer({ hostKey, port: w.port, resolveAdmin, session })
  await t.rejects(other.listen(), { code: 'IN_USE' })
  await other.close()
  t.throws(() => new SshServer({ hostKey: 'nope', port: 0, resolveAdmin, session }), { code: 'BAD_KEY_FILE' })
})

t.test('host key: created 0600 once, reused, readable by OpenSSH, refused when others can read it', async (t) => {
  const dir = t.testdir()
  const file = path.join(dir, 'keys', 'host')
  const a = await loadOrCreateHostKey(file)
  t.equal(a.created, true)
  t.equal((await fs.stat(file)).mode & 0o777, 0o600)
  const b = await loadOrCreateHostKey(file)
  t.equal(b.created, false)
  t.equal(b.fingerprint, a.fingerprint)
  t.equal(b.publicKey, a.publicKey)
  t.equal(execFileSync('ssh-keygen', ['-y', '-f', file], { encoding: 'utf8' }).trim(), a.publicKey, 'ssh-keygen derives the same public key')
  t.match(execFileSync('ssh-keygen', ['-l', '-f', file], { encoding: 'utf8' }), a.fingerprint)
  await fs.chmod(file, 0o644)
  await t.rejects(loadOrCreateHostKey(file), { code: 'INSECURE_KEY_FILE' })
  await fs.writeFile(path.join(dir, 'junk'), 'not a key', { mode: 0o600 })
  await t.rejects(loadOrCreateHostKey(path.join(dir, 'junk')), { code: 'BAD_KEY_FILE' })
})

t.test('the key index: exact blob and algorithm, one index per connection, a key two admins share names nobody', async (t) => {
  const k = generateSshKey()
  const other = generateSshKey()
  const admin = (id: string, sshKey: string, totpSecret?: string) => ({ id, sshKey, bindings: [], createdAt: '', updatedAt: '', ...(totpSecret ? { totpSecret } : {}) })
  const index = buildAdminIndex([admin('a', k.publicKey, 'JBSWY3DPEHPK3PXP'), admin('b', other.publicKey)])
  t.same(index.get(`ssh-ed25519 ${blobOf(k.publicKey).toString('base64')}`), { id: 'a', totpSecret: 'JBSWY3DPEHPK3PXP' })
  const conn = { id: 1, remoteAddress: '127.0.0.1', remotePort: 1 }
  const list = [admin('a', k.publicKey), admin('c', `${k.publicKey.split(' ').slice(0, 2).join(' ')} another-comment`)]
  const resolve = fleetAdminResolver({ list: async () => list })
  await t.rejects(resolve({ algo: 'ssh-ed25519', data: blobOf(k.publicKey) }, conn), { code: 'FORBIDDEN' })
  t.equal(await resolve({ algo: 'ssh-rsa', data: blobOf(k.publicKey) }, conn), null, 'the algorithm must match too')
  const flipped = Buffer.from(blobOf(k.publicKey))
  flipped[flipped.length - 1]! ^= 1
  t.equal(await resolve({ algo: 'ssh-ed25519', data: flipped }, conn), null)
  list.pop()
  await t.rejects(resolve({ algo: 'ssh-ed25519', data: blobOf(k.publicKey) }, conn), { code: 'FORBIDDEN' }, 'one index per connection')
  t.same(await resolve({ algo: 'ssh-ed25519', data: blobOf(k.publicKey) }, { ...conn }), { id: 'a' }, 'a new connection sees the change')
  t.equal(Buffer.from(base32Decode('JBSWY3DPEHPK3PXP')).toString('hex'), '48656c6c6f21deadbeef', 'RFC 4648 base32')
  t.equal(base32Decode('jbsw y3dp ehpk 3pxp jbsw').length, 12, 'spaces, case and spare bits as authenticator apps take them')
})

// ---- OpenSSH inside tmux ----------------------------------------------------------------------

function has (cmd: string): boolean {
  try { execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }); return true } catch { return false }
}

t.test('OpenSSH in tmux: key + verification code, the pane shows the session, a resize follows', { skip: !(has('ssh') && has('tmux')) && 'needs ssh and tmux' }, async (t) => {
  const dir = t.testdir()
  const keyFile = path.join(dir, 'id_ed25519')
  await fs.writeFile(keyFile, w.keys.alice.privateKey, { mode: 0o600 })
  const socket = `patchswarm-ssh-test-${process.pid}`
  const env = { ...process.env }
  delete env.TMUX
  delete env.SSH_AUTH_SOCK
  const tmux = (...args: string[]) => execFileSync('tmux', ['-L', socket, '-f', '/dev/null', ...args], { encoding: 'utf8', env })
  let socketPath: string | undefined
  t.teardown(async () => {
    try { tmux('kill-server') } catch {}
    if (socketPath) await fs.rm(socketPath, { force: true }) // tmux leaves the socket file behind
  })
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`
  const ssh = ['ssh', '-F', '/dev/null', '-i', keyFile, '-p', String(w.port),
    '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'IdentitiesOnly=yes',
    '-o', 'IdentityAgent=none', '-o', 'LogLevel=ERROR', '-o', 'BatchMode=no', 'alice@127.0.0.1'].map(q).join(' ')
  tmux('new-session', '-d', '-s', 'ps', '-x', '80', '-y', '24', `${ssh}; echo "ssh exit=$?"; sleep 60`)
  socketPath = tmux('display-message', '-p', '-t', 'ps', '#{socket_path}').trim()
  const pane = () => tmux('capture-pane', '-p', '-t', 'ps')

  await until(pane, 'Verification code:')
  w.now.ms += 5 * 60_000 // past every step the other tests spent
  const opened = w.opened.length
  tmux('send-keys', '-t', 'ps', await totpAt(w.aliceSecret, w.now.ms), 'Enter')
  const shown = await until(pane, /hello alice 80x24 (screen|tmux)\S*/)
  t.match(shown, /hello alice 80x24/, 'the pane shows the session at the pane size')
  t.equal(w.opened.length, opened + 1)
  const session = w.opened.at(-1)!

  tmux('send-keys', '-t', 'ps', 'x')
  await until(pane, 'echo:x')
  tmux('resize-window', '-t', 'ps', '-x', '120', '-y', '40')
  await until(pane, 'size 120x40')
  t.same(session.sizes.at(-1), { columns: 120, rows: 40 }, 'the session saw the new size')
  t.equal(session.channel.columns, 120)

  const closedBefore = w.closed.length
  tmux('send-keys', '-t', 'ps', 'q')
  await until(pane, 'ssh exit=3')
  await eventually('session closed', () => w.closed.length === closedBefore + 1)
  t.equal(w.closed.at(-1), 'alice')
  t.match(w.events.filter((e) => e.admin === 'alice').slice(-2), [
    { method: 'publickey', ok: true, partial: true, username: 'alice' },
    { method: 'keyboard-interactive', ok: true, username: 'alice' }
  ])
})

t.test('nothing went wrong behind the scenes', async (t) => {
  t.same(w.errors, [], 'no session or lookup errors were reported')
})
