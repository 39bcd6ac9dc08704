// The admin API over a local Unix socket: newline-delimited JSON frames, one session per
// connection, bound at `hello` to the admin it acts for. Calls are `{ id, method, params }` and get
// `{ id, result }` or `{ id, error: { code, message } }`; a method whose name ends in `$` is a live
// subscription: `{ id, next }` frames until `{ id, complete }` or `{ id, error }`, cancelled by
// `{ id, unsubscribe: true }`. The socket file is mode 0600 inside a 0700 folder: whoever can open it
// is the console's own OS user, so it may name any admin; remote admins come in over SSH instead.
import net from 'node:net'
import fs from 'node:fs/promises'
import path from 'node:path'
import { Observable, type Subscription } from 'rxjs'
import { PatchswarmError, isPatchswarmError } from '../errors.js'

export const RPC_VERSION = 1
/** Largest frame either side accepts; a longer line closes the connection. */
export const MAX_FRAME_BYTES = 8 * 1024 * 1024

export const MAX_SOCKET_PATH = 103

export type Dispatch = (admin: string, method: string, params: unknown[]) => Promise<unknown> | Observable<unknown>

interface Frame {
  id?: number
  hello?: { admin?: unknown, version?: unknown }
  method?: unknown
  params?: unknown
  unsubscribe?: boolean
  result?: unknown
  next?: unknown
  complete?: boolean
  error?: { code: string, message: string }
}

/** Splits a socket's bytes into JSON frames; calls onError (and stops) on a bad or huge frame. */
function frames (socket: net.Socket, onFrame: (f: Frame) => void, onError: (err: PatchswarmError) => void): void {
  let buffered = ''
  socket.setEncoding('utf8')
  socket.on('data', (chunk: string) => {
    buffered += chunk
    let nl: number
    while ((nl = buffered.indexOf('\n')) !== -1) {
      const line = buffered.slice(0, nl)
      buffered = buffered.slice(nl + 1)
      if (line.length === 0) continue
      let frame: unknown
      try { frame = JSON.parse(line) } catch { return onError(PatchswarmError.PROTOCOL_ERROR('frame is not JSON')) }
      if (typeof frame !== 'object' || frame === null || Array.isArray(frame)) return onError(PatchswarmError.PROTOCOL_ERROR('frame is not an object'))
      onFrame(frame as Frame)
    }
    if (buffered.length > MAX_FRAME_BYTES) onError(PatchswarmError.MESSAGE_TOO_LARGE(`frame longer than ${MAX_FRAME_BYTES} bytes`))
  })
}

function send (socket: net.Socket, frame: Frame): void {
  if (!socket.destroyed && socket.writable) socket.write(JSON.stringify(frame) + '\n')
}

function wireError (err: unknown): { code: string, message: string } {
  if (isPatchswarmError(err)) return { code: err.code, message: err.detail }
  return { code: 'INTERNAL', message: String((err as Error)?.message ?? err) }
}

export class RpcServer {
  readonly socketPath: string
  readonly #dispatch: Dispatch
  readonly #server: net.Server
  readonly #sockets = new Set<net.Socket>()
  #closing: Promise<void> | undefined

  constructor (socketPath: string, dispatch: Dispatch) {
    this.socketPath = socketPath
    this.#dispatch = dispatch
    this.#server = net.createServer((socket) => this.#session(socket))
  }

  async listen (): Promise<void> {
    // sockaddr_un holds 108 bytes on Linux (104 on macOS); a longer path would be cut silently.
    if (Buffer.byteLength(this.socketPath) > MAX_SOCKET_PATH) throw PatchswarmError.BAD_ARGUMENT(`socket path is ${Buffer.byteLength(this.socketPath)} bytes, Unix sockets allow ${MAX_SOCKET_PATH}: ${this.socketPath}`)
    const dir = path.dirname(this.socketPath)
    await fs.mkdir(dir, { recursive: true, mode: 0o700 })
    await fs.chmod(dir, 0o700)
    await fs.rm(this.socketPath, { force: true }) // a stale socket from a crash; the DB lock guards against a live console
    // The umask makes the socket 0600 from the moment it exists; chmod says so explicitly.
    const umask = process.umask(0o177)
    try {
      await new Promise<void>((resolve, reject) => {
        this.#server.once('error', reject)
        this.#server.listen(this.socketPath, () => { this.#server.off('error', reject); resolve() })
      })
    } finally {
      process.umask(umask)
    }
    await fs.chmod(this.socketPath, 0o600)
  }

  close (): Promise<void> {
    this.#closing ??= (async () => {
      for (const s of this.#sockets) s.destroy()
      await new Promise<void>((resolve) => this.#server.close(() => resolve()))
      await fs.rm(this.socketPath, { force: true })
    })()
    return this.#closing
  }

  #session (socket: net.Socket): void {
    this.#sockets.add(socket)
    const subscriptions = new Map<number, Subscription>()
    let admin: string | undefined
    const fail = (err: PatchswarmError) => { send(socket, { error: wireError(err) }); socket.destroy() }
    socket.on('close', () => {
      this.#sockets.delete(socket)
      for (const s of subscriptions.values()) s.unsubscribe()
    })
    socket.on('error', () => {})
    frames(socket, (f) => {
      if (admin === undefined) {
        if (typeof f.hello?.admin !== 'string' || f.hello.version !== RPC_VERSION) return fail(PatchswarmError.PROTOCOL_ERROR(`first frame must be { hello: { admin, version: ${RPC_VERSION} } }`))
        admin = f.hello.admin
        return send(socket, { hello: { admin, version: RPC_VERSION } })
      }
      const id = f.id
      if (typeof id !== 'number' || !Number.isSafeInteger(id)) return fail(PatchswarmError.PROTOCOL_ERROR('frame without a numeric id'))
      if (f.unsubscribe === true) { subscriptions.get(id)?.unsubscribe(); subscriptions.delete(id); return }
      if (typeof f.method !== 'string' || (f.params !== undefined && !Array.isArray(f.params))) return send(socket, { id, error: { code: 'BAD_ARGUMENT', message: 'a call needs a method name and a params array' } })
      if (subscriptions.has(id)) return send(socket, { id, error: { code: 'BAD_ARGUMENT', message: `id ${id} is in use` } })
      let out: Promise<unknown> | Observable<unknown>
      try {
        out = this.#dispatch(admin, f.method, (f.params as unknown[] | undefined) ?? [])
      } catch (err) {
        return send(socket, { id, error: wireError(err) })
      }
      if (out instanceof Observable) {
        subscriptions.set(id, out.subscribe({
          next: (next) => send(socket, { id, next }),
          error: (err) => { subscriptions.delete(id); send(socket, { id, error: wireError(err) }) },
          complete: () => { subscriptions.delete(id); send(socket, { id, complete: true }) }
        }))
      } else {
        out.then((result) => send(socket, { id, result: result ?? null }), (err) => send(socket, { id, error: wireError(err) }))
      }
    }, fail)
  }
}

/** One connection to a console, acting as `admin`. */
export class RpcClient {
  readonly #socket: net.Socket
  readonly #pending = new Map<number, { resolve: (v: unknown) => void, reject: (e: unknown) => void }>()
  readonly #streams = new Map<number, { next: (v: unknown) => void, error: (e: unknown) => void, complete: () => void }>()
  #nextId = 1
  #closed: PatchswarmError | undefined

  private constructor (socket: net.Socket) {
    this.#socket = socket
  }

  static async connect (socketPath: string, admin: string): Promise<RpcClient> {
    const socket = net.connect(socketPath)
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve)
      socket.once('error', (err: NodeJS.ErrnoException) => reject(
        err.code === 'ENOENT' || err.code === 'ECONNREFUSED'
          ? PatchswarmError.UNAVAILABLE(`no console is listening on ${socketPath} (start one with: patchswarm console)`, err)
          : PatchswarmError.IO_ERROR(`cannot connect to ${socketPath}: ${err.message}`, err)))
    })
    const client = new RpcClient(socket)
    const hello = new Promise<void>((resolve, reject) => client.#pending.set(0, { resolve: () => resolve(), reject }))
    client.#listen()
    send(socket, { hello: { admin, version: RPC_VERSION } })
    await hello
    return client
  }

  #listen (): void {
    const end = (err: PatchswarmError) => {
      if (this.#closed) return
      this.#closed = err
      for (const p of this.#pending.values()) p.reject(err)
      for (const s of this.#streams.values()) s.error(err)
      this.#pending.clear()
      this.#streams.clear()
      this.#socket.destroy()
    }
    this.#socket.on('error', (err) => end(PatchswarmError.IO_ERROR(`console connection: ${err.message}`, err)))
    this.#socket.on('close', () => end(PatchswarmError.CLOSED('console connection closed')))
    frames(this.#socket, (f) => {
      if (f.hello !== undefined) { this.#pending.get(0)?.resolve(undefined); this.#pending.delete(0); return }
      const id = f.id ?? -1
      const error = f.error && new PatchswarmError(String(f.error.code), String(f.error.message))
      if (id === -1 && error) return end(error)
      const pending = this.#pending.get(id)
      if (pending) {
        this.#pending.delete(id)
        return error ? pending.reject(error) : pending.resolve(f.result)
      }
      const stream = this.#streams.get(id)
      if (!stream) return
      if (error) { this.#streams.delete(id); stream.error(error) } else if (f.complete) { this.#streams.delete(id); stream.complete() } else stream.next(f.next)
    }, end)
  }

  call (method: string, params: unknown[]): Promise<unknown> {
    if (this.#closed) return Promise.reject(this.#closed)
    const id = this.#nextId++
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject })
      send(this.#socket, { id, method, params })
    })
  }

  subscribe (method: string, params: unknown[]): Observable<unknown> {
    return new Observable((subscriber) => {
      if (this.#closed) { subscriber.error(this.#closed); return }
      const id = this.#nextId++
      this.#streams.set(id, { next: (v) => subscriber.next(v), error: (e) => subscriber.error(e), complete: () => subscriber.complete() })
      send(this.#socket, { id, method, params })
      return () => {
        if (this.#streams.delete(id)) send(this.#socket, { id, unsubscribe: true })
      }
    })
  }

  close (): Promise<void> {
    if (this.#socket.destroyed) return Promise.resolve()
    return new Promise((resolve) => { this.#socket.once('close', () => resolve()); this.#socket.end() })
  }
}
