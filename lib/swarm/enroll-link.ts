// The one exchange a machine has with the console before it holds a certificate: enrollment.
// The organisation swarm drops peers without a certificate, so enrollment uses a separate, direct
// DHT connection to a key named in the enrollment token (Noise-encrypted like every link, and the
// agent knows it reached the right console because the Noise handshake proves that key). Each
// connection carries one JSON request and one JSON answer, both bounded.
import HyperDHT, { type DhtConnection, type DhtServer } from 'hyperdht'
import { PatchswarmError, isPatchswarmError } from '../errors.js'
import type { KeyPair } from '../crypto/keys.js'
import { publicKeyFromId } from '../crypto/keys.js'
import type { Bootstrap } from './transport.js'

export const MAX_ENROLL_FRAME = 256 * 1024
const DEFAULT_TIMEOUT_MS = 30_000

export interface LinkOptions {
  bootstrap: Bootstrap
  host?: string
  firewalled?: boolean
}

function newDht (opts: LinkOptions): HyperDHT {
  if (opts.bootstrap === undefined) throw PatchswarmError.BAD_ARGUMENT("an enrollment link needs a bootstrap: a local testnet's, or 'public'")
  const loopback = opts.host?.startsWith('127.') ?? false
  return new HyperDHT({
    ...(opts.bootstrap === 'public' ? {} : { bootstrap: opts.bootstrap }),
    ...(opts.host ? { host: opts.host } : {}),
    firewalled: opts.firewalled ?? !loopback
  })
}

/** Reads one newline-terminated JSON frame of at most MAX_ENROLL_FRAME bytes. */
function readFrame (conn: DhtConnection, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0)
    const done = (err: Error | null, value?: unknown) => {
      clearTimeout(timer)
      conn.off('data', onData)
      conn.off('error', onError)
      conn.off('close', onClose)
      if (err) reject(err); else resolve(value)
    }
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk])
      const nl = buffered.indexOf(10)
      if (nl === -1) {
        if (buffered.length > MAX_ENROLL_FRAME) done(PatchswarmError.MESSAGE_TOO_LARGE(`enrollment frame over ${MAX_ENROLL_FRAME} bytes`))
        return
      }
      try { done(null, JSON.parse(buffered.subarray(0, nl).toString('utf8'))) } catch { done(PatchswarmError.PROTOCOL_ERROR('enrollment frame is not JSON')) }
    }
    const onError = (err: Error) => done(PatchswarmError.UNAVAILABLE(`enrollment link: ${err.message}`, err))
    const onClose = () => done(PatchswarmError.UNAVAILABLE('enrollment link closed before an answer'))
    const timer = setTimeout(() => done(PatchswarmError.TIMEOUT(`no enrollment answer within ${timeoutMs} ms`)), timeoutMs)
    conn.on('data', onData)
    conn.on('error', onError)
    conn.on('close', onClose)
  })
}

export type EnrollmentHandler = (request: unknown, remoteKeyid: string) => Promise<unknown>

/** The console's side: answers each connection's one request with handle()'s result or its error code. */
export class EnrollmentListener {
  readonly #dht: HyperDHT
  readonly #keyPair: KeyPair
  readonly #handle: EnrollmentHandler
  #server: DhtServer | null = null
  readonly #conns = new Set<DhtConnection>()
  #opening: Promise<void> | undefined
  #closing: Promise<void> | undefined

  constructor (opts: LinkOptions & { keyPair: KeyPair, handle: EnrollmentHandler }) {
    this.#dht = newDht(opts)
    this.#keyPair = opts.keyPair
    this.#handle = opts.handle
  }

  ready (): Promise<void> {
    this.#opening ??= (async () => {
      this.#server = this.#dht.createServer((conn) => this.#serve(conn))
      await this.#server.listen({ publicKey: Buffer.from(this.#keyPair.publicKey), secretKey: Buffer.from(this.#keyPair.secretKey) })
    })()
    return this.#opening
  }

  async #serve (conn: DhtConnection): Promise<void> {
    this.#conns.add(conn)
    conn.on('close', () => this.#conns.delete(conn))
    conn.on('error', () => {})
    let answer: unknown
    try {
      const request = await readFrame(conn, DEFAULT_TIMEOUT_MS)
      answer = { ok: true, result: await this.#handle(request, conn.remotePublicKey.toString('hex')) }
    } catch (err) {
      answer = { ok: false, code: isPatchswarmError(err) ? err.code : 'INTERNAL', message: isPatchswarmError(err) ? err.detail : 'internal error' }
    }
    conn.end(JSON.stringify(answer) + '\n')
  }

  close (): Promise<void> {
    this.#closing ??= (async () => {
      await this.#opening?.catch(() => {})
      for (const c of this.#conns) c.destroy()
      await this.#server?.close()
      await this.#dht.destroy()
    })()
    return this.#closing
  }
}

/**
 * The agent's side: connects to the console's enrollment key, sends `request`, returns the answer.
 * Errors the console gave come back as PatchswarmErrors with the console's code.
 */
export async function enrollmentRequest (opts: LinkOptions & { consoleKey: string, keyPair: KeyPair, request: unknown, timeoutMs?: number }): Promise<unknown> {
  const dht = newDht(opts)
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS
  const deadline = Date.now() + timeoutMs
  try {
    let value: { ok?: unknown, result?: unknown, code?: unknown, message?: unknown }
    // A console that has just started may not be found on the DHT yet: nothing reached it, so
    // asking again (after 0.5 s, 1 s, 2 s …) until the time is up is safe.
    for (let wait = 500; ; wait = Math.min(wait * 2, 4000)) {
      const conn = dht.connect(publicKeyFromId(opts.consoleKey), { keyPair: { publicKey: Buffer.from(opts.keyPair.publicKey), secretKey: Buffer.from(opts.keyPair.secretKey) } })
      conn.on('error', () => {})
      const answer = readFrame(conn, Math.max(1000, deadline - Date.now()))
      conn.write(JSON.stringify(opts.request) + '\n')
      try {
        value = await answer as typeof value
        conn.destroy()
        break
      } catch (err) {
        conn.destroy()
        const notFound = (err as PatchswarmError).cause && ((err as PatchswarmError).cause as { code?: string }).code === 'PEER_NOT_FOUND'
        if (!notFound || Date.now() + wait >= deadline) throw err
        await new Promise((resolve) => setTimeout(resolve, wait))
      }
    }
    if (value?.ok === true) return value.result
    throw new PatchswarmError(typeof value?.code === 'string' ? value.code : 'PROTOCOL_ERROR', typeof value?.message === 'string' ? value.message : 'the console refused the enrollment')
  } finally {
    await dht.destroy()
  }
}
