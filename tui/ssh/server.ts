// The console's SSH front door (ssh2). Who may come in: an admin's public key (the signature
// checked, the key compared as algorithm + exact blob by `resolveAdmin`), then, when that admin has
// a TOTP secret, a verification code through keyboard-interactive (partial success, ±1 time step,
// no code twice, a few tries per connection). Nothing else authenticates. What they get: one
// `session(...)` per SSH session that asked for a pty and a shell, with its own streams, size and
// resize events, and whose close() runs exactly once however the session ends (the client leaves,
// the app calls channel.close(), idle timeout, server close). exec, subsystems, forwarding: refused.
import { Transform, type Readable, type Writable } from 'node:stream'
import type { AddressInfo, Socket } from 'node:net'
import ssh2 from 'ssh2'
import type { AuthContext, ClientInfo, Connection, KeyboardAuthContext, PseudoTtyInfo, PublicKeyAuthContext, ServerChannel, Session } from 'ssh2'
import { PatchswarmError } from '../../lib/errors.js'
import type { FleetClock } from '../../lib/fleet/common.js'
import { sshFingerprint } from './keys.js'
import { TotpVerifier } from './totp.js'

export interface SshPublicKey {
  /** The key's type as in its blob (`ssh-ed25519`, `ssh-rsa` also for rsa-sha2-* signatures). */
  algo: string
  /** The SSH wire-format public key blob. */
  data: Buffer
}

/** What `resolveAdmin` returns for a known key. */
export interface SshAdmin {
  id: string
  /** Base32; when present the admin must also type a current code. */
  totpSecret?: string
}

/** One TCP connection; the same object for all of its authentication attempts and sessions. */
export interface SshConnectionInfo {
  readonly id: number
  readonly remoteAddress: string
  readonly remotePort: number
}

export interface SshSize {
  columns: number
  rows: number
}

/** What a session gets: its terminal's streams and size. */
export interface SshChannel {
  /** Bytes the far terminal sends (keys, mouse reports); ends when the client leaves. */
  readonly input: Readable
  /** Bytes to draw; the terminal is in raw mode, so a new line is "\r\n". Has `columns`/`rows` too. */
  readonly output: Writable
  readonly columns: number
  readonly rows: number
  /** The client's TERM (from the pty request). */
  readonly term: string
  /** The few variables the client sent that say how to draw (LANG, LC_*, COLORTERM). */
  readonly env: Readonly<Record<string, string>>
  readonly connection: SshConnectionInfo
  /** Called on each window-change; returns a function that unsubscribes. */
  onResize (cb: (size: SshSize) => void): () => void
  /** Ends this SSH session (exit status `exitCode`, 0 by default); the handle's close() then runs. */
  close (exitCode?: number): void
}

export interface SshSessionHandle {
  close (): void | Promise<void>
}

/** One authentication attempt, for the audit log. */
export interface SshAuthEvent {
  /** The admin the key belongs to; null for an unknown key or a method tried before any key. */
  admin: string | null
  method: string
  ok: boolean
  /** The key was accepted but a verification code is still owed. */
  partial?: boolean
  reason: string
  /** The name the client logged in as (not used to pick the admin: the key does that). */
  username: string
  remoteAddress: string
  /** `SHA256:…` of the offered key, for publickey attempts. */
  key?: string
}

export interface SshServerOptions {
  /** The host private key (OpenSSH or PEM text), e.g. `(await loadOrCreateHostKey(file)).privateKey`. */
  hostKey: string | Buffer
  /** 127.0.0.1 unless told. */
  host?: string
  /** 0 picks a free port (see `port` after listen()). */
  port: number
  /** The admin holding exactly this key, or null. May throw to refuse (its message is audited). */
  resolveAdmin (key: SshPublicKey, conn: SshConnectionInfo): Promise<SshAdmin | null>
  /** Starts the console for one SSH session acting as `admin`. */
  session (channel: SshChannel, admin: { id: string }): SshSessionHandle | Promise<SshSessionHandle>
  onAuth? (event: SshAuthEvent): void
  /** Failures that are nobody's attempt: a session that would not start or close, a lookup that broke. */
  onError? (err: Error): void
  /** For TOTP time steps. */
  clock?: FleetClock
  /** A connection without input for this long is closed; 30 minutes by default, 0 never. */
  idleTimeoutMs?: number
  /** Time to finish authenticating; 60 s by default. */
  loginGraceMs?: number
  /** Wrong verification codes before the connection is dropped; 3 by default. */
  maxCodeTries?: number
  /** Refused keys and methods before the connection is dropped; 6 by default (OpenSSH's MaxAuthTries). */
  maxAuthFailures?: number
  maxSessionsPerConnection?: number
  maxConnections?: number
}

const CODE_PROMPT = 'Verification code: '
const ENV_ALLOWED = /^(LANG|LC_[A-Z]+|COLORTERM)$/
const HANDLE_WAIT_MS = 5000
/** How long a session's end waits for the client to close its channel. */
const CHANNEL_CLOSE_WAIT_MS = 1000
const DRAIN_WAIT_MS = 2000

interface Live {
  end (message?: string, exitCode?: number): Promise<void>
}

interface Conn {
  readonly info: SshConnectionInfo
  readonly client: Connection
  readonly closed: Promise<void>
  /** Key verified, code owed. */
  pending?: SshAdmin
  admin?: SshAdmin
  failures: number
  codeTries: number
  /** Console sessions running. */
  sessions: Set<Live>
  /** SSH session channels open, with or without a shell yet. */
  channels: number
  lastInput: number
  timer?: NodeJS.Timeout
  dropping?: Promise<void>
}

const noop = () => {}

function wait<T> (p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([p, new Promise<undefined>((resolve) => { timer = setTimeout(() => resolve(undefined), ms).unref() })]).finally(() => clearTimeout(timer))
}

function clampSize (n: unknown, fallback: number): number {
  return typeof n === 'number' && Number.isInteger(n) && n > 0 ? Math.min(n, 10_000) : fallback
}

export class SshServer {
  readonly #opts: SshServerOptions
  readonly #server: ssh2.Server
  readonly #totp: TotpVerifier
  readonly #conns = new Set<Conn>()
  readonly #idleMs: number
  #nextId = 1
  #listening: Promise<AddressInfo> | undefined
  #closing: Promise<void> | undefined

  constructor (opts: SshServerOptions) {
    if (typeof opts?.resolveAdmin !== 'function' || typeof opts.session !== 'function') throw PatchswarmError.BAD_ARGUMENT('SshServer needs resolveAdmin and session')
    if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) throw PatchswarmError.BAD_ARGUMENT(`bad SSH port ${JSON.stringify(opts.port)}`)
    this.#opts = opts
    this.#idleMs = opts.idleTimeoutMs ?? 30 * 60_000
    this.#totp = new TotpVerifier(opts.clock ? { clock: opts.clock } : {})
    try {
      this.#server = new ssh2.Server({ hostKeys: [opts.hostKey], ident: 'patchswarm' }, (client, info) => this.#accept(client, info))
    } catch (err) {
      throw PatchswarmError.BAD_KEY_FILE(`the SSH host key is unusable: ${(err as Error).message}`, err)
    }
    this.#server.maxConnections = opts.maxConnections ?? 64
  }

  /** Starts listening (idempotent); resolves with the address. */
  listen (): Promise<AddressInfo> {
    if (this.#closing) return Promise.reject(PatchswarmError.CLOSED('SSH server is closed'))
    this.#listening ??= new Promise<AddressInfo>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        reject(err.code === 'EADDRINUSE'
          ? PatchswarmError.IN_USE(`SSH port ${this.#opts.port} is in use`, err)
          : PatchswarmError.IO_ERROR(`cannot listen for SSH: ${err.code ?? err.message}`, err))
      }
      this.#server.once('error', onError)
      this.#server.listen(this.#opts.port, this.#opts.host ?? '127.0.0.1', () => {
        this.#server.off('error', onError)
        this.#server.on('error', (err: Error) => this.#error(err))
        resolve(this.#server.address() as AddressInfo)
      })
    })
    return this.#listening
  }

  /** The port listened on (after listen()). */
  get port (): number {
    return (this.#server.address() as AddressInfo | null)?.port ?? this.#opts.port
  }

  /** Live SSH sessions over all connections. */
  get sessionCount (): number {
    let n = 0
    for (const c of this.#conns) n += c.sessions.size
    return n
  }

  /** Stops listening, closes every session (their close() runs) and every connection. Idempotent. */
  close (): Promise<void> {
    this.#closing ??= (async () => {
      await this.#listening?.catch(noop)
      const stopped = this.#listening
        ? new Promise<void>((resolve) => this.#server.close(() => resolve()))
        : Promise.resolve()
      await Promise.all([...this.#conns].map((c) => this.#drop(c, 'patchswarm: the console is shutting down')))
      await stopped
    })()
    return this.#closing
  }

  // ---- connections ---------------------------------------------------------------------------

  #accept (client: Connection, info: ClientInfo): void {
    let onClosed!: () => void
    const conn: Conn = {
      info: Object.freeze({ id: this.#nextId++, remoteAddress: info.ip, remotePort: info.port }),
      client,
      closed: new Promise<void>((resolve) => { onClosed = resolve }),
      failures: 0,
      codeTries: 0,
      sessions: new Set(),
      channels: 0,
      lastInput: Date.now()
    }
    if (this.#closing) {
      client.on('error', noop)
      client.end()
      return
    }
    this.#conns.add(conn)
    conn.timer = setTimeout(() => { if (!conn.admin) void this.#drop(conn) }, this.#opts.loginGraceMs ?? 60_000).unref()

    client.on('error', noop) // resets and protocol errors end the connection; 'close' cleans up
    client.on('authentication', (ctx) => {
      this.#authenticate(conn, ctx).catch((err) => {
        this.#error(err)
        try { ctx.reject() } catch {}
      })
    })
    client.on('ready', () => {
      clearTimeout(conn.timer)
      conn.lastInput = Date.now()
      this.#armIdle(conn)
    })
    client.on('session', (accept, reject) => {
      if (!conn.admin || this.#closing || conn.channels >= (this.#opts.maxSessionsPerConnection ?? 10)) return reject()
      const session = accept()
      conn.channels++
      session.once('close', () => { conn.channels-- })
      this.#session(conn, session)
    })
    client.on('tcpip', (_accept, reject) => reject())
    client.on('openssh.streamlocal', (_accept, reject) => reject())
    client.on('request', (_accept, reject) => reject?.())
    client.on('close', () => {
      clearTimeout(conn.timer)
      this.#conns.delete(conn)
      for (const s of conn.sessions) void s.end()
      onClosed()
    })
  }

  /** Ends the sessions (with a last line to each), then the connection; resolves once it is gone. */
  #drop (conn: Conn, message?: string): Promise<void> {
    conn.dropping ??= (async () => {
      clearTimeout(conn.timer)
      await Promise.all([...conn.sessions].map((s) => s.end(message)))
      try { conn.client.end() } catch {}
      if (await wait(conn.closed.then(() => true as const), DRAIN_WAIT_MS) === undefined) {
        (conn.client as unknown as { _sock?: Socket })._sock?.destroy()
        await conn.closed
      }
    })()
    return conn.dropping
  }

  #armIdle (conn: Conn): void {
    if (this.#idleMs <= 0) return
    clearTimeout(conn.timer)
    const due = conn.lastInput + this.#idleMs - Date.now()
    conn.timer = setTimeout(() => {
      if (Date.now() - conn.lastInput >= this.#idleMs) {
        const ms = this.#idleMs
        void this.#drop(conn, `patchswarm: closed after ${ms >= 60_000 ? `${Math.round(ms / 60_000)} min` : `${Math.ceil(ms / 1000)} s`} without input`)
      } else {
        this.#armIdle(conn)
      }
    }, Math.max(due, 0)).unref()
  }

  // ---- authentication -----------------------------------------------------------------------

  async #authenticate (conn: Conn, ctx: AuthContext): Promise<void> {
    const left = (): ['keyboard-interactive'] | ['publickey'] => conn.pending ? ['keyboard-interactive'] : ['publickey']
    if (this.#closing || conn.dropping) return ctx.reject()
    switch (ctx.method) {
      case 'none':
        return ctx.reject(left())
      case 'publickey':
        return await this.#publickey(conn, ctx)
      case 'keyboard-interactive':
        if (!conn.pending) return this.#refuse(conn, ctx, left()) // the key comes first
        return this.#code(conn, ctx, conn.pending)
      default:
        this.#audit(conn, ctx, { admin: conn.pending?.id ?? null, ok: false, reason: `${ctx.method} authentication is not accepted` })
        return this.#refuse(conn, ctx, left())
    }
  }

  async #publickey (conn: Conn, ctx: PublicKeyAuthContext): Promise<void> {
    const key = sshFingerprint(ctx.key.data)
    if (conn.pending) return ctx.reject(['keyboard-interactive']) // the key factor is done; the code is owed
    let admin: SshAdmin | null
    try {
      admin = await this.#opts.resolveAdmin({ algo: ctx.key.algo, data: ctx.key.data }, conn.info)
    } catch (err) {
      const mine = err instanceof PatchswarmError && err.code === 'FORBIDDEN'
      if (!mine) this.#error(err)
      this.#audit(conn, ctx, { admin: null, key, ok: false, reason: mine ? err.detail : 'the admin lookup failed' })
      return this.#refuse(conn, ctx, ['publickey'])
    }
    if (!admin) {
      this.#audit(conn, ctx, { admin: null, key, ok: false, reason: 'unknown key' })
      return this.#refuse(conn, ctx, ['publickey'])
    }
    // The probe ("would you take this key?") is answered for known keys only; it proves nothing yet.
    if (!ctx.signature) return ctx.accept()
    let parsed = ssh2.utils.parseKey(ctx.key.data)
    if (Array.isArray(parsed)) parsed = parsed[0]!
    const valid = !(parsed instanceof Error) && parsed.type === ctx.key.algo && ctx.blob !== undefined &&
      parsed.verify(ctx.blob, ctx.signature, ctx.hashAlgo) === true
    if (!valid) {
      this.#audit(conn, ctx, { admin: admin.id, key, ok: false, reason: 'bad signature' })
      return this.#refuse(conn, ctx, ['publickey'])
    }
    if (admin.totpSecret) {
      conn.pending = admin
      this.#audit(conn, ctx, { admin: admin.id, key, ok: true, partial: true, reason: 'key accepted; verification code required' })
      return ctx.reject(['keyboard-interactive'], true)
    }
    conn.admin = { id: admin.id }
    this.#audit(conn, ctx, { admin: admin.id, key, ok: true, reason: 'key accepted' })
    ctx.accept()
  }

  #code (conn: Conn, ctx: KeyboardAuthContext, admin: SshAdmin): void {
    ctx.prompt([{ prompt: CODE_PROMPT, echo: false }], 'patchswarm', '', (answers) => {
      void (async () => {
        const result = await this.#totp.verify(admin.id, admin.totpSecret!, answers?.[0] ?? '')
        if (conn.dropping || this.#closing) return ctx.reject()
        if (result.ok) {
          conn.pending = undefined
          conn.admin = { id: admin.id }
          this.#audit(conn, ctx, { admin: admin.id, ok: true, reason: 'verification code accepted' })
          return ctx.accept()
        }
        conn.codeTries++
        const max = this.#opts.maxCodeTries ?? 3
        const last = conn.codeTries >= max
        this.#audit(conn, ctx, { admin: admin.id, ok: false, reason: last ? `${result.reason}; ${max} wrong codes, disconnected` : result.reason })
        ctx.reject(['keyboard-interactive'])
        if (last) void this.#drop(conn)
      })().catch((err) => {
        this.#error(err)
        try { ctx.reject() } catch {}
      })
    })
  }

  /** Rejects and counts the failure; too many drop the connection. */
  #refuse (conn: Conn, ctx: AuthContext, left: Array<'publickey' | 'keyboard-interactive'>): void {
    conn.failures++
    ctx.reject(left)
    if (conn.failures >= (this.#opts.maxAuthFailures ?? 6)) void this.#drop(conn)
  }

  #audit (conn: Conn, ctx: AuthContext, e: Omit<SshAuthEvent, 'method' | 'username' | 'remoteAddress'>): void {
    if (!this.#opts.onAuth) return
    try {
      this.#opts.onAuth({ ...e, method: ctx.method, username: ctx.username, remoteAddress: conn.info.remoteAddress })
    } catch (err) {
      this.#error(err)
    }
  }

  #error (err: unknown): void {
    try { this.#opts.onError?.(err instanceof Error ? err : new Error(String(err))) } catch {}
  }

  // ---- sessions -------------------------------------------------------------------------------

  #session (conn: Conn, session: Session): void {
    let pty: PseudoTtyInfo | undefined
    let started = false
    /** Set once the shell runs: takes window changes from then on. */
    let onWindow: ((cols: unknown, rows: unknown) => void) | undefined
    const env: Record<string, string> = {}
    session.on('env', (accept, reject, info: { key: string, val: string }) => {
      if (!started && ENV_ALLOWED.test(info.key) && Object.keys(env).length < 16) {
        env[info.key] = String(info.val).slice(0, 128)
        accept?.()
      } else reject?.()
    })
    session.on('pty', (accept, reject, info) => {
      if (started) return reject?.()
      pty = info
      accept?.()
    })
    session.on('window-change', (accept, _reject, info) => {
      accept?.()
      if (onWindow) onWindow(info.cols, info.rows)
      else if (pty) pty = { ...pty, cols: info.cols, rows: info.rows }
    })
    session.on('shell', (accept, _reject) => {
      const ch = accept()
      if (!ch) return
      started = true
      ch.on('error', noop)
      if (!pty) {
        ch.stderr.write('patchswarm: the console needs a terminal; connect with ssh -t\r\n')
        ch.exit(1)
        ch.end()
        return
      }
      onWindow = this.#shell(conn, ch, pty, env)
    })
    session.on('exec', (_accept, reject) => reject?.())
    session.on('subsystem', (_accept, reject) => reject?.())
    session.on('sftp', (_accept, reject) => reject?.())
    session.on('x11', (_accept, reject) => reject?.())
    session.on('auth-agent', (_accept, reject) => reject?.())
  }

  /** Starts one console session on a shell channel; returns what to do on a window change. */
  #shell (conn: Conn, ch: ServerChannel, pty: PseudoTtyInfo, env: Record<string, string>): (cols: unknown, rows: unknown) => void {
    const admin = conn.admin!
    const size: SshSize = { columns: clampSize(pty.cols, 80), rows: clampSize(pty.rows, 24) }
    const sized = ch as ServerChannel & { columns: number, rows: number }
    sized.columns = size.columns
    sized.rows = size.rows
    const resizeListeners = new Set<(s: SshSize) => void>()
    // Input passes through here to count as activity; it buffers until the app reads.
    const input = new Transform({
      transform (chunk, _enc, cb) { conn.lastInput = Date.now(); cb(null, chunk) }
    })
    input.on('error', noop)
    ch.pipe(input)
    let channelClosed = false
    let finishing: Promise<void> | undefined
    let handle: Promise<SshSessionHandle | undefined> = Promise.resolve(undefined)

    const end = (message?: string, exitCode = 0): Promise<void> => {
      finishing ??= (async () => {
        conn.sessions.delete(live)
        resizeListeners.clear()
        const h = await wait(handle, HANDLE_WAIT_MS)
        try {
          // A session that will not close must not hold up the server's close().
          const done = await wait(Promise.resolve(h?.close()).then(() => true as const), HANDLE_WAIT_MS)
          if (!done) this.#error(PatchswarmError.IO_ERROR(`a console session of ${admin.id} did not close within ${HANDLE_WAIT_MS} ms`))
        } catch (err) {
          this.#error(err)
        }
        if (!channelClosed) {
          const closed = new Promise<true>((resolve) => ch.once('close', () => resolve(true)))
          try {
            if (message) ch.write(`\r\n${message}\r\n`)
            ch.exit(exitCode)
            ch.end()
          } catch {}
          // Let the client take the last bytes and close its side before a disconnect may follow:
          // otherwise OpenSSH can drop what it had not printed yet (the message, the screen reset).
          await wait(closed, CHANNEL_CLOSE_WAIT_MS)
        }
        ch.unpipe(input)
        input.end()
      })()
      return finishing
    }
    const live: Live = { end }
    conn.sessions.add(live)

    ch.once('close', () => {
      channelClosed = true
      void end()
    })

    const channel: SshChannel = {
      input,
      output: ch,
      get columns () { return size.columns },
      get rows () { return size.rows },
      term: typeof pty.term === 'string' && pty.term ? pty.term : 'xterm-256color',
      env: Object.freeze({ ...env }),
      connection: conn.info,
      onResize (cb) {
        resizeListeners.add(cb)
        return () => { resizeListeners.delete(cb) }
      },
      close (exitCode = 0) { void end(undefined, exitCode) }
    }
    handle = Promise.resolve()
      .then(() => this.#opts.session(channel, { id: admin.id }))
      .then((h) => h, (err) => {
        this.#error(err)
        if (!channelClosed) {
          try { ch.stderr.write(`patchswarm: the console could not start: ${(err as Error)?.message ?? err}\r\n`) } catch {}
        }
        void end(undefined, 1)
        return undefined
      })

    return (cols, rows) => {
      if (finishing) return
      size.columns = clampSize(cols, size.columns)
      size.rows = clampSize(rows, size.rows)
      sized.columns = size.columns
      sized.rows = size.rows
      for (const cb of [...resizeListeners]) {
        try { cb({ ...size }) } catch (err) { this.#error(err) }
      }
    }
  }
}
