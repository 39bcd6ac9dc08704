// `patchswarm console --ssh <port>` end to end: the real console process, set up through the CLI
// over its socket (customers A and B under msp-1, admins scoped to A, one with a TOTP secret), and
// real SSH clients: OpenSSH's `ssh` inside tmux (a private -L server) for the logins an admin
// really makes, the ssh2 client for the refusals. Asserted on `tmux capture-pane -p` text, on how
// the clients end, on the console still running afterwards and on its audit log.
import t from 'tap'
import { execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import fs from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { promisify } from 'node:util'
import ssh2 from 'ssh2'
import { generate } from 'otplib'
import { writeSecretKeyFile } from '../../lib/crypto/keyfile.js'
import { serializeEnvelope } from '../../lib/trust/envelope.js'
import { makeConsoleOrg } from '../../fixtures/console-org.js'
import { generateSshKey } from '../../tui/ssh/index.js'
import { cli, cliArgs } from '../cli/helpers.js'

const execFileP = promisify(execFile)
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP'
const A_NAME = 'Alpha Dental Practice'
const B_NAME = 'Bravo Logistics'
/** Anything of customer B: its path segment or its display name. */
const B = /customer-b|Bravo/

async function freePort (): Promise<number> {
  const srv = net.createServer()
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  const { port } = srv.address() as net.AddressInfo
  await new Promise((resolve) => srv.close(resolve))
  return port
}

async function until<T> (what: string, read: () => T | Promise<T>, ok: (v: T) => boolean, ms = 15_000): Promise<T> {
  const end = Date.now() + ms
  for (;;) {
    const v = await read()
    if (ok(v)) return v
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; last:\n${typeof v === 'string' ? v : JSON.stringify(v)}`)
    await sleep(100)
  }
}

const code = (ms: number) => generate({ secret: SECRET, epoch: Math.floor(ms / 1000) })

// ---- the ssh2 client ---------------------------------------------------------------------------

type Auth = ssh2.AnyAuthMethod
const publickey = (key: string, username: string): Auth => ({ type: 'publickey', username, key })
const answer = (text: string, username: string): Auth => ({
  type: 'keyboard-interactive', username, prompt: (_n, _i, _l, prompts, finish) => finish(prompts.map(() => text))
})

/** Connects trying exactly these methods in order; rejects with the client's error or on close. */
function connect (port: number, auth: Auth[]): Promise<ssh2.Client> {
  const client = new ssh2.Client()
  return new Promise((resolve, reject) => {
    let done = false
    client.on('ready', () => { done = true; resolve(client) })
    client.on('error', (err) => { if (!done) { done = true; reject(err) } })
    client.on('close', () => { if (!done) { done = true; reject(new Error('closed before ready')) } })
    const queue = [...auth]
    client.connect({
      host: '127.0.0.1', port, username: 'x', readyTimeout: 10_000, hostVerifier: () => true,
      authHandler: (_left, _partial, next) => { next((queue.shift() ?? false) as Auth) }
    })
  })
}

/** A shell with a pty on a connected client (writing `typed` at once); its output and exit status. */
function shell (client: ssh2.Client, typed?: string): Promise<{ text: () => string, exit: Promise<number | null> }> {
  return new Promise((resolve, reject) => {
    client.shell({ cols: 80, rows: 24, term: 'xterm-256color', width: 0, height: 0 }, (err, stream) => {
      if (err) return reject(err)
      if (typed) stream.write(typed)
      let out = ''
      let status: number | null = null
      stream.on('data', (d: Buffer) => { out += d.toString() })
      stream.stderr.on('data', (d: Buffer) => { out += d.toString() })
      stream.on('exit', (c: number | null) => { status = c })
      resolve({ text: () => out, exit: new Promise((resolve) => stream.on('close', () => resolve(status))) })
    })
  })
}

/** The reason the client gives up with, or 'connected'. */
async function refusal (p: Promise<ssh2.Client>): Promise<string> {
  try {
    (await p).end()
    return 'connected'
  } catch (err) {
    return (err as Error).message
  }
}

const has = async (cmd: string) => execFileP('sh', ['-c', `command -v ${cmd}`]).then(() => true, () => false)
const missing = !(await has('ssh') && await has('tmux'))

t.test('the console over SSH: scope, refusals, TOTP, resize, quit, audit', { skip: missing && 'needs OpenSSH ssh and tmux' }, async (t) => {
  const started = Date.now()
  // Unix socket paths are short: keep the folder near /tmp.
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ps-sshc-'))
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }))
  const org = await makeConsoleOrg()
  await fs.writeFile(path.join(dir, 'root.json'), serializeEnvelope(org.rootEnvelope))
  await writeSecretKeyFile(path.join(dir, 'console.key'), org.consoleKey)
  const keys = { root: generateSshKey('root@test'), alice: generateSshKey('alice@test'), bob: generateSshKey('bob@test'), carol: generateSshKey('carol@test'), mallory: generateSshKey('mallory@test') }
  for (const [name, k] of Object.entries(keys)) await fs.writeFile(path.join(dir, `id_${name}`), k.privateKey, { mode: 0o600 })

  // ---- the console, a real process with an SSH port -------------------------------------------
  const port = await freePort()
  const home = path.join(dir, 'home')
  await fs.mkdir(home)
  // As an admin runs it: without the extensions of this machine's user, and without tap's process
  // hooks, which tap puts back into NODE_OPTIONS of every child it sees spawned (env -u takes them
  // out): their signal-exit listeners would hide how the console behaves on SIGTERM on its own.
  const child = spawn('env', ['-u', 'NODE_OPTIONS', process.execPath, ...cliArgs('console', '--data', 'data', '--root', 'root.json', '--console-key', 'console.key',
    '--owner', 'root', '--owner-ssh-key', keys.root.publicKey, '--ssh', String(port), '--json')],
  { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HOME: home, PATCHSWARM_EXTENSIONS_DIR: path.join(home, 'extensions') } })
  t.teardown(async () => { if (child.exitCode === null && child.signalCode === null) { child.kill('SIGTERM'); await once(child, 'exit') } })
  let out = ''
  child.stdout.on('data', (d) => { out += d })
  child.stderr.on('data', (d) => { out += d })
  await until('the console to start', () => out, (s) => s.includes('"socket"') || child.exitCode !== null, 30_000)
  t.equal(child.exitCode, null, `the console runs: ${out}`)
  const alive = () => child.exitCode === null && child.signalCode === null

  const run = async (...args: string[]) => {
    const r = await cli(dir, [...args, '--as', 'root', '--data', 'data'])
    if (r.code !== 0) throw new Error(`patchswarm ${args.join(' ')}: ${r.stderr}`)
    return r
  }
  await run('tenant', 'create', '/', 'msp-1', '--kind', 'msp')
  await run('tenant', 'create', 'msp-1', 'customer-a', '--kind', 'customer', '--display-name', A_NAME)
  await run('tenant', 'create', 'msp-1', 'customer-b', '--kind', 'customer', '--display-name', B_NAME)
  await run('group', 'create', 'msp-1/customer-a', 'office-a')
  await run('group', 'create', 'msp-1/customer-b', 'office-b')
  await run('admin', 'create', 'alice', '--ssh-key', keys.alice.publicKey, '--role', 'owner:msp-1/customer-a')
  await run('admin', 'create', 'bob', '--ssh-key', keys.bob.publicKey, '--role', 'viewer:msp-1/customer-a')
  await run('api', 'fleet.setAdminTotpSecret', JSON.stringify(['bob', SECRET]))
  const admins = (await run('admin', 'list', '--json')).json as Array<{ id: string, hasTotp: boolean }>
  t.match(admins.find((a) => a.id === 'bob'), { hasTotp: true }, 'bob has a TOTP secret')

  // ---- tmux, a private server ------------------------------------------------------------------
  const server = `ps-sshc-${randomBytes(4).toString('hex')}`
  const env: NodeJS.ProcessEnv = { ...process.env, TMUX: '' }
  delete env.SSH_AUTH_SOCK
  const tmux = async (...args: string[]) => (await execFileP('tmux', ['-L', server, '-f', '/dev/null', ...args], { env })).stdout
  let tmuxSocket: string | undefined
  t.teardown(async () => {
    await tmux('kill-server').catch(() => {})
    if (tmuxSocket) await fs.rm(tmuxSocket, { force: true }) // tmux leaves its socket file behind
  })
  const q = (s: string) => `'${s.replaceAll("'", "'\\''")}'`
  const sshArgv = (user: string, key: string) => ['ssh', '-F', '/dev/null', '-i', path.join(dir, `id_${key}`), '-p', String(port),
    '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'IdentitiesOnly=yes', '-o', 'IdentityAgent=none',
    '-o', 'PreferredAuthentications=publickey,keyboard-interactive', '-o', 'LogLevel=ERROR', `${user}@127.0.0.1`]
  /** A tmux session `name` running OpenSSH as `user` with `key`; the exit status stays on the pane. */
  const login = async (name: string, user: string, key: string, width: number, height: number) => {
    const cmd = `env TERM=xterm-256color LANG=C.UTF-8 ${sshArgv(user, key).map(q).join(' ')}; echo "SSH-EXIT:$?"; sleep 600`
    await tmux('new-session', '-d', '-s', name, '-x', String(width), '-y', String(height), cmd)
    await tmux('set-option', '-g', 'escape-time', '0')
    tmuxSocket ??= (await tmux('display-message', '-p', '-t', name, '#{socket_path}')).trim()
    const pane = () => tmux('capture-pane', '-p', '-t', name)
    return {
      pane,
      until: (what: string, yes: RegExp[], no: RegExp[] = []) => until(what, pane, (s) => yes.every((p) => p.test(s)) && !no.some((p) => p.test(s))),
      type: async (text: string) => { await tmux('send-keys', '-t', name, '-l', text); await sleep(80) },
      key: async (k: string) => { await tmux('send-keys', '-t', name, k); await sleep(120) }
    }
  }

  /** 1 while a full-screen program holds the pane's alternate screen. */
  const alternate = async (name: string) => (await tmux('display-message', '-p', '-t', name, '#{alternate_on}')).trim()
  const geometry = (screen: string) => {
    const lines = screen.replace(/\n$/, '').split('\n')
    return {
      rows: lines.length,
      /** The tree's title rule runs the full width. */
      rule: lines.find((l) => /^── Tenants ─+$/.test(l))?.length,
      /** The header ends with `admin @ scope` flush right. */
      header: lines.find((l) => /patchswarm › /.test(l))?.trimEnd().length,
      footer: lines.findIndex((l) => /<\^C> quit/.test(l))
    }
  }

  const valid = new Set(await Promise.all([-30, 0, 30].map((d) => code(Date.now() + d * 1000))))
  const wrong = ['000000', '111111', '222222'].find((c) => !valid.has(c))!

  await t.test('a wrong key is refused (ssh2 and OpenSSH); a key with TOTP needs its code', async (t) => {
    t.match(await refusal(connect(port, [publickey(keys.mallory.privateKey, 'mallory')])), /authentication methods failed/, 'ssh2: a key no admin holds is refused')
    const batch = await execFileP('ssh', [...sshArgv('mallory', 'mallory').slice(1, -1), '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=10', 'mallory@127.0.0.1', 'true'], { env })
      .then(() => ({ code: 0, stderr: '' }), (err: { code: number, stderr: string }) => err)
    t.equal(batch.code, 255, 'OpenSSH: a key no admin holds is refused')
    t.match(batch.stderr, /Permission denied \(publickey\)/)
    t.match(await refusal(connect(port, [publickey(keys.bob.privateKey, 'bob')])), /authentication methods failed/, "bob's key alone is not enough")
    t.match(await refusal(connect(port, [publickey(keys.bob.privateKey, 'bob'), answer(wrong, 'bob')])), /authentication methods failed/, "bob's key and a wrong code are refused")
    t.ok(alive(), 'the console runs on')
  })

  const a = await login('alice', 'alice', 'alice', 100, 30)
  const r = await login('root', 'root', 'root', 100, 30)

  await t.test("OpenSSH: alice, scoped to customer A, sees only A's tenants; root, at the same time, sees B", async (t) => {
    let s = await a.until("alice's dashboard", [/patchswarm › Dashboard/, /alice @ msp-1\/customer-a/, /Alpha Dental Practice/])
    t.notMatch(s, B, 'her dashboard shows nothing of customer B')
    t.equal(await alternate('alice'), '1', 'the console holds the alternate screen')
    await a.type(':tenants')
    await a.key('Enter')
    s = await a.until('her tenants', [/patchswarm › Tenants/, /customer-a\s+Alpha Dental Practice\s+customer/, /office-a\s+group/])
    t.notMatch(s, B, 'her tenants view shows nothing of customer B')
    t.notMatch(s, /msp-1\s+msp/, 'nor msp-1 itself')

    // Its own screen and scope per session: B is there to see for whom may see it.
    await r.until("root's dashboard", [/patchswarm › Dashboard/, /root @ msp-1/])
    await r.type(':tenants')
    await r.key('Enter')
    await r.until("root's tenants", [/patchswarm › Tenants/, /customer-a\s+Alpha Dental Practice/, /customer-b\s+Bravo Logistics/])
    t.pass("root sees customer B, so its absence from alice's screen means something")
    t.notMatch(await a.pane(), B, "alice's screen is still without B")
  })

  await t.test('resizing the window redraws at the new size', async (t) => {
    const before = geometry(await a.pane())
    t.match(before, { rows: 30, rule: 100, header: 100 }, 'at 100×30 the frame is 100 wide')
    t.ok(before.footer > 20 && before.footer < 30, `the footer near the bottom (row ${before.footer})`)
    await tmux('resize-window', '-t', 'alice', '-x', '160', '-y', '45')
    const s = await a.until('the redraw at 160×45', [/^── Tenants ─{140,}$/m, /customer-a\s+Alpha Dental Practice/])
    const after = geometry(s)
    t.match(after, { rows: 45, rule: 160, header: 160 }, 'at 160×45 the frame is 160 wide')
    t.ok(after.footer > 35 && after.footer < 45, `the footer moved down with the bottom (row ${after.footer})`)
    t.notMatch(s, B)
    t.match(geometry(await r.pane()), { rows: 30, rule: 100, header: 100 }, "root's session kept its own size")
  })

  await t.test(':q and Ctrl-C end the SSH session cleanly; the console runs on', async (t) => {
    await a.type(':q')
    await a.key('Enter')
    await a.until("alice's ssh to end", [/SSH-EXIT:0/], [/patchswarm ›/])
    t.equal(await alternate('alice'), '0', ':q: ssh exits 0 and the terminal has its screen back')
    await r.key('C-c')
    await r.until("root's ssh to end", [/SSH-EXIT:0/], [/patchswarm ›/])
    t.equal(await alternate('root'), '0', 'Ctrl-C: the same')
    await sleep(200)
    t.ok(alive(), 'the console still runs')
  })

  await t.test('OpenSSH: bob with TOTP, a wrong code is refused, the right one lets him in', async (t) => {
    const b = await login('bob', 'bob', 'bob', 90, 28)
    await b.until('the code prompt', [/Verification code:/])
    await b.type(wrong)
    await b.key('Enter')
    let s = await b.until('the prompt again', [/Verification code:[^]*Verification code:/])
    t.notMatch(s, /patchswarm ›/, 'a wrong code does not let him in')
    await b.type(await code(Date.now()))
    await b.key('Enter')
    s = await b.until("bob's dashboard", [/patchswarm › Dashboard/, /bob @ msp-1\/customer-a/])
    t.notMatch(s, B, 'his scope too is customer A')
    await b.key('C-c')
    await b.until("bob's ssh to end", [/SSH-EXIT:0/], [/patchswarm ›/])
    t.equal(await alternate('bob'), '0', 'Ctrl-C: ssh exits 0 and the terminal has its screen back')
  })

  await t.test('Ctrl-C typed before the first view showed still ends the session', async (t) => {
    // It used to leave the SSH session open on a closed screen: the app was closed before
    // createTuiApp settled, and serveSsh only listened for its close once it had.
    for (let i = 0; i < 3; i++) {
      const c = await connect(port, [publickey(keys.alice.privateKey, 'alice')])
      const sh = await shell(c, '\x03')
      const how = await Promise.race([sh.exit.then((x) => `exit ${x}`), sleep(4000).then(() => 'still open')])
      c.end()
      t.equal(how, 'exit 0', `attempt ${i + 1}: the session ended with exit status 0`)
    }
  })

  await t.test('a console that cannot start for the admin gives the terminal back and says why', async (t) => {
    // carol's key is accepted, then she is removed before she asks for a shell: the app refuses.
    await run('admin', 'create', 'carol', '--ssh-key', keys.carol.publicKey, '--role', 'viewer:msp-1/customer-a')
    const c = await connect(port, [publickey(keys.carol.privateKey, 'carol')])
    await run('api', 'fleet.removeAdmin', '["carol"]')
    const sh = await shell(c)
    t.equal(await sh.exit, 1, 'exit status 1')
    c.end()
    const text = sh.text()
    const said = text.indexOf('could not start: FORBIDDEN')
    t.ok(said > 0, 'the client is told why')
    const left = text.lastIndexOf('\x1b[?1049l')
    t.ok(left > text.lastIndexOf('\x1b[?1049h'), 'the alternate screen is left')
    t.ok(text.lastIndexOf('\x1b[?1000l') > text.lastIndexOf('\x1b[?1000h'), 'mouse reporting is switched off')
    t.ok(left < said, 'before the message, which stays on the normal screen')
    t.ok(alive(), 'the console runs on')
  })

  const a2 = await login('alice2', 'alice', 'alice', 80, 24)

  await t.test('alice logs in again after her :q', async (t) => {
    const s = await a2.until('alice again', [/patchswarm › Dashboard/, /alice @ msp-1\/customer-a/, /Alpha Dental Practice/])
    t.match(geometry(s), { rows: 24, header: 80 }, 'at 80×24 this time')
    t.notMatch(s, B)
  })

  await t.test('the logins and refusals are in the audit log', async (t) => {
    const audit = await cli(dir, ['audit', 'list', '--json', '--as', 'root', '--data', 'data', '--limit', '500'])
    t.equal(audit.code, 0, audit.stderr)
    const logins = (audit.json as Array<{ admin: string, action: string, target: string, result: string }>)
      .filter((e) => e.action === 'ssh.login')
      .map((e) => `${e.admin} ${e.target} ${e.result}`)
    const count = (line: string) => logins.filter((l) => l === line).length
    t.equal(count('ssh:mallory ssh:publickey FORBIDDEN'), 2, 'the wrong key, from ssh2 and from OpenSSH, refused')
    t.equal(count('alice ssh:publickey ok'), 5, "alice's logins: two in tmux, three that quit at once")
    t.equal(count('root ssh:publickey ok'), 1, "root's login")
    t.equal(count('carol ssh:publickey ok'), 1, "carol's login (her console then refused)")
    t.equal(count('bob ssh:keyboard-interactive FORBIDDEN'), 2, "bob's wrong codes, from ssh2 and from OpenSSH")
    t.equal(count('bob ssh:keyboard-interactive ok'), 1, 'his login with the right code')
    t.equal(logins.filter((l) => l.startsWith('bob ssh:publickey')).length, 0, 'his key alone is no login, nor a refusal')
    t.equal(logins.length, 12, 'and nothing else')
  })

  await t.test('SIGTERM with a session open: the console shuts down to the end, the session ends', async (t) => {
    // It used to exit half way (status 0 all the same): with a session's screen open, blessed
    // exits the process on SIGTERM once the console's own once() listener has fired.
    child.kill('SIGTERM')
    const [exit] = await once(child, 'exit')
    t.equal(exit, 0, 'the console exits 0')
    t.notMatch(out, /Error|error/, 'and reports nothing on the way')
    await t.rejects(fs.stat(path.join(dir, 'data', 'console.sock')), { code: 'ENOENT' }, 'its shutdown ran to the end: the admin socket is removed')
    t.match(await refusal(connect(port, [publickey(keys.alice.privateKey, 'alice')])), /ECONNREFUSED/, 'nothing listens on the SSH port any more')
    const s = await a2.until('the session to end', [/SSH-EXIT:\d+/])
    // A session's end waits for the client to close its channel before the server disconnects,
    // so OpenSSH prints the last line and gives the terminal back before it exits.
    t.match(s, /patchswarm: the console is shutting down\s+SSH-EXIT:0/, 'ssh shows the last line and exits 0')
    t.equal(await alternate('alice2'), '0', 'the terminal has its screen back')
  })

  t.ok(Date.now() - started < 50_000, `took ${Date.now() - started} ms`)
})
