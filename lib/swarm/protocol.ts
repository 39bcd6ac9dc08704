// PeerChannel: the patchswarm wire protocol on one connection (one protomux channel, `patchswarm/1`).
//
// Each side opens the channel with its hello (version, enrollment certificate, its own limits) in
// the open frame; nothing is delivered before the remote's certificate verified, and nothing may be
// sent before then either (sends throw until `opened` resolved). Every rule a remote breaks closes
// the whole connection with a coded error:
//   MESSAGE_TOO_LARGE  a message over maxMessageBytes (checked on the raw size, before decoding)
//   PROTOCOL_ERROR     malformed bytes, trailing bytes, an index past an announced bitfield, a
//                      duplicate request id, a bitfield whose length changes
//   UNSOLICITED        data or reject for a request we never made or that was already answered
//   FLOOD              more than maxRemoteRequests outstanding, or more than maxPackagesAnnounced
//                      distinct package digests
//   HANDSHAKE_FAILED   no hello in time, a peer that does not speak patchswarm/1, a bad hello
//   (the verifier's own code) a certificate the verifier rejects
// Every per-connection map is bounded by those limits, so memory stays bounded whatever the remote
// sends. Data arriving for a request we cancelled a moment ago is dropped silently (the remote may
// have sent it before it saw the cancel) and counted in stats.discarded.
import { EventEmitter } from 'node:events'
import Protomux, { type Channel, type FramedStream, type Message } from 'protomux'
import type { Encoder, State } from 'compact-encoding'
import { PatchswarmError, isPatchswarmError } from '../errors.js'
import type { PeerIdentity } from '../trust/certificate.js'
import { Bitfield } from './bitfield.js'
import {
  MESSAGE_ENCODINGS, MAX_HELLO_BYTES, MESSAGE_TYPES, PROTOCOL, PROTOCOL_VERSION, decodeExact, encodedSize, helloEncoding, isDigest,
  type HelloMessage, type MessageMap, type MessageName
} from './messages.js'

export type { PeerIdentity }
export { PROTOCOL, PROTOCOL_VERSION }

export interface ProtocolLimits {
  /** Largest message accepted from the remote, in bytes (its body, after the protomux header). */
  maxMessageBytes: number
  /** Requests the remote may have outstanding with us. */
  maxRemoteRequests: number
  /** Distinct package digests the remote may talk about on this connection. */
  maxPackagesAnnounced: number
  /** Time for the remote's hello to arrive and verify. */
  handshakeTimeoutMs: number
  /** How long data for a request we cancelled is still dropped silently rather than closing. */
  cancelGraceMs: number
}

export const DEFAULT_LIMITS: Readonly<ProtocolLimits> = Object.freeze({
  maxMessageBytes: 1024 * 1024 + 4096,
  maxRemoteRequests: 64,
  maxPackagesAnnounced: 1024,
  handshakeTimeoutMs: 10_000,
  cancelGraceMs: 30_000
})

/** What the remote announced in its hello: the limits we must stay within. */
export interface RemoteLimits {
  version: number
  maxMessageBytes: number
  maxRequests: number
  maxPackages: number
}

/** A framed duplex stream: a hyperswarm connection or a NoiseSecretStream. */
export interface PeerStream extends FramedStream {
  remotePublicKey?: Uint8Array | null
  destroying?: boolean
}

export interface PeerChannelOptions {
  /** Our enrollment certificate (opaque bytes here). */
  certificate: Uint8Array
  /** Checks the remote's certificate against the key at the other end; throws a coded error to reject. */
  verifyCertificate (bytes: Uint8Array, remotePublicKey: Uint8Array): PeerIdentity
  limits?: Partial<ProtocolLimits>
}

export interface ChunkRequest { id: number, digest: string, index: number }
export interface ChunkData { id: number, digest: string, index: number, bytes: Uint8Array }

export interface Traffic { messages: number, bytes: number }
export type TrafficCounters = Record<MessageName | 'hello', Traffic>

export interface ChannelStats {
  /** Message bodies sent, by type (protomux and Noise framing not included). */
  sent: TrafficCounters
  /** Message bodies received, by type, counted before any check (so refused ones too). */
  received: TrafficCounters
  /** Data that arrived for requests we had cancelled, dropped. */
  discarded: Traffic
}

/** Sizes of the per-connection state; each is bounded by a limit. */
export interface ChannelFootprint {
  outstanding: number
  remoteRequests: number
  remotePackages: number
  localPackages: number
  cancelled: number
}

export interface PeerChannelEvents {
  open: [PeerIdentity]
  want: [string]
  have: [string, Bitfield]
  'have-chunk': [string, number]
  request: [ChunkRequest]
  data: [ChunkData]
  reject: [number]
  cancel: [number]
  control: [number, Uint8Array]
  drain: []
  close: [Error | null]
}

interface Pending { digest: string, index: number }

/** Largest number of our own requests in flight, whatever the remote announces. */
const MAX_LOCAL_REQUESTS = 65_536
const IGNORED = Symbol('ignored')

export class PeerChannel extends EventEmitter<PeerChannelEvents> {
  readonly limits: Readonly<ProtocolLimits>
  readonly stats: ChannelStats
  /** Resolves with the remote's identity once its hello verified; rejects with the coded reason otherwise. */
  readonly opened: Promise<PeerIdentity>

  private readonly stream: PeerStream
  private readonly mux: Protomux
  private readonly channel: Channel | null
  private readonly senders = {} as { [K in MessageName]: Message<MessageMap[K]> }
  private readonly verify: PeerChannelOptions['verifyCertificate']
  private identity: PeerIdentity | null = null
  private announced: RemoteLimits | null = null
  private closing = false
  private finished = false
  private reason: Error | null = null
  private timer: NodeJS.Timeout | null = null
  private settle: { resolve (id: PeerIdentity): void, reject (err: Error): void } | null = null
  private nextId = 1

  private readonly ours = new Map<number, Pending>()
  private readonly theirs = new Map<number, Pending>()
  private readonly cancelledByUs = new Map<number, number>()
  private readonly cancelledByThem = new Map<number, number>()
  /** digest → bitfield length announced (-1 while unknown). */
  private readonly remoteDigests = new Map<string, number>()
  private readonly localDigests = new Map<string, number>()

  /** Attach to a fresh connection, synchronously in the connection handler (before any await). */
  static attach (stream: PeerStream, opts: PeerChannelOptions): PeerChannel {
    return new PeerChannel(stream, opts)
  }

  private constructor (stream: PeerStream, opts: PeerChannelOptions) {
    super()
    if (!(opts.certificate instanceof Uint8Array)) throw PatchswarmError.BAD_ARGUMENT('certificate must be bytes')
    if (typeof opts.verifyCertificate !== 'function') throw PatchswarmError.BAD_ARGUMENT('verifyCertificate must be a function')
    this.limits = resolveLimits(opts.limits)
    this.verify = opts.verifyCertificate
    this.stats = { sent: counters(), received: counters(), discarded: { messages: 0, bytes: 0 } }
    this.stream = stream
    this.opened = new Promise<PeerIdentity>((resolve, reject) => { this.settle = { resolve, reject } })
    this.opened.catch(noop) // a rejection nobody awaits is reported through 'close' instead

    this.mux = Protomux.from(stream)
    stream.on('error', (err: Error) => this.noteError(err))
    stream.on('close', () => this.finish())

    this.channel = this.mux.createChannel<HelloMessage | typeof IGNORED>({
      protocol: PROTOCOL,
      handshake: this.guard('hello', helloEncoding, Math.min(MAX_HELLO_BYTES, this.limits.maxMessageBytes)),
      onopen: (h) => { if (h !== IGNORED) this.onhello(h) },
      onclose: () => this.onchannelclose(),
      ondrain: () => { if (!this.closing) this.emit('drain') }
    })
    if (this.channel === null) {
      if (stream.destroyed === true || stream.destroying === true) {
        this.fail(PatchswarmError.CLOSED('connection closed before the protocol started'))
        queueMicrotask(() => this.finish())
        return
      }
      throw PatchswarmError.BAD_ARGUMENT(`a ${PROTOCOL} channel is already open on this connection`)
    }
    for (const name of MESSAGE_TYPES) { // type id = position in MESSAGE_TYPES
      this.senders[name] = this.channel.addMessage<unknown>({
        encoding: this.guard(name, MESSAGE_ENCODINGS[name] as Encoder<unknown>, this.limits.maxMessageBytes),
        onmessage: (m) => { if (m !== IGNORED && !this.closing) this.receive(name, m) }
      }) as never
    }
    this.channel.open({
      version: PROTOCOL_VERSION,
      certificate: opts.certificate,
      maxMessageBytes: this.limits.maxMessageBytes,
      maxRequests: this.limits.maxRemoteRequests,
      maxPackages: this.limits.maxPackagesAnnounced
    } satisfies HelloMessage)
    this.timer = setTimeout(() => {
      this.fail(PatchswarmError.HANDSHAKE_FAILED(`no verified ${PROTOCOL} hello within ${this.limits.handshakeTimeoutMs} ms`))
    }, this.limits.handshakeTimeoutMs)
  }

  /** The remote's verified identity; null until then. */
  get remote (): PeerIdentity | null { return this.identity }
  /** The limits the remote announced (we stay within them); null until its hello verified. */
  get remoteLimits (): Readonly<RemoteLimits> | null { return this.announced }
  /** True once closing started: nothing more is sent or delivered. */
  get closed (): boolean { return this.closing }
  /** False while the connection asks for backpressure; wait for 'drain'. */
  get drained (): boolean { return this.mux.drained }
  /** How many requests we may have in flight with this remote. */
  get requestCapacity (): number { return Math.min(this.announced?.maxRequests ?? 0, MAX_LOCAL_REQUESTS) }

  // ── sending ──────────────────────────────────────────────────────────────────────────────────

  /** "I am interested in this package." */
  want (digest: string): void {
    this.ready()
    this.noteLocal(digest, -1)
    this.send('want', { digest })
  }

  /** Our full bitfield for a package. */
  have (digest: string, bitfield: Bitfield): void {
    this.ready()
    if (!(bitfield instanceof Bitfield)) throw PatchswarmError.BAD_ARGUMENT('have needs a Bitfield')
    this.noteLocal(digest, bitfield.length)
    this.send('have', { digest, bitfield })
  }

  /** We now have one more chunk. */
  haveChunk (digest: string, index: number): void {
    this.ready()
    const bits = this.noteLocal(digest, -1)
    if (bits >= 0 && !(index < bits)) throw PatchswarmError.BAD_ARGUMENT(`chunk ${index} is past our bitfield of ${bits}`)
    this.send('have-chunk', { digest, index })
  }

  /** Asks for a chunk; returns the request id, outstanding until data, reject or our cancel. */
  request (digest: string, index: number): number {
    this.ready()
    if (this.ours.size >= this.requestCapacity) throw PatchswarmError.FLOOD(`${this.ours.size} requests already in flight, the remote allows ${this.requestCapacity}`)
    const bits = this.remoteDigests.get(digest) ?? -1
    if (bits >= 0 && !(index < bits)) throw PatchswarmError.BAD_ARGUMENT(`chunk ${index} is past the remote's bitfield of ${bits}`)
    this.noteLocal(digest, -1)
    const id = this.nextId++
    this.send('request', { id, digest, index })
    this.ours.set(id, { digest, index })
    return id
  }

  /** We no longer want it; returns false if the request was already answered. */
  cancel (id: number): boolean {
    this.ready()
    if (!this.ours.delete(id)) return false
    remember(this.cancelledByUs, id, this.limits.cancelGraceMs, 2 * this.requestCapacity)
    this.send('cancel', { id })
    return true
  }

  /**
   * Answers a remote request. Returns false (and sends nothing) if the remote cancelled it meanwhile;
   * throws UNSOLICITED for an id the remote never asked for or that was already answered.
   */
  data (id: number, digest: string, index: number, bytes: Uint8Array): boolean {
    this.ready()
    if (!this.pendingRemote(id)) return false
    const r = this.theirs.get(id) as Pending
    if (r.digest !== digest || r.index !== index) throw PatchswarmError.BAD_ARGUMENT(`request ${id} asked for chunk ${r.index} of ${r.digest.slice(0, 12)}…, not ${index} of ${String(digest).slice(0, 12)}…`)
    if (!(bytes instanceof Uint8Array)) throw PatchswarmError.BAD_ARGUMENT('data needs bytes')
    this.send('data', { id, digest, index, bytes })
    this.theirs.delete(id)
    return true
  }

  /** "Don't have it / won't serve it now": frees the remote's slot. False if it cancelled meanwhile. */
  reject (id: number): boolean {
    this.ready()
    if (!this.pendingRemote(id)) return false
    this.send('reject', { id })
    this.theirs.delete(id)
    return true
  }

  /** An envelope for releases, directives, reports, acks; bounded by the remote's maxMessageBytes. */
  control (kind: number, payload: Uint8Array): void {
    this.ready()
    if (!(payload instanceof Uint8Array)) throw PatchswarmError.BAD_ARGUMENT('control needs a byte payload')
    this.send('control', { kind, payload })
  }

  /** Closes the connection (with `err` as the reason, if given). Idempotent. */
  destroy (err?: Error): void {
    this.fail(err ?? null)
  }

  /** Closes the connection and waits until it is gone. Idempotent. */
  async close (): Promise<void> {
    if (this.finished) return
    const done = new Promise<void>((resolve) => this.once('close', () => resolve()))
    this.fail(null)
    await done
  }

  /** Our requests awaiting an answer. */
  outstanding (): number { return this.ours.size }

  /** The remote's requests awaiting our answer. */
  remoteOutstanding (): number { return this.theirs.size }

  footprint (): ChannelFootprint {
    return {
      outstanding: this.ours.size,
      remoteRequests: this.theirs.size,
      remotePackages: this.remoteDigests.size,
      localPackages: this.localDigests.size,
      cancelled: this.cancelledByUs.size + this.cancelledByThem.size
    }
  }

  private ready (): void {
    if (this.closing) throw PatchswarmError.CLOSED(`${PROTOCOL} channel is closed`)
    if (this.announced === null) throw PatchswarmError.PROTOCOL_ERROR(`${PROTOCOL} channel is not open yet: await channel.opened`)
  }

  private send<K extends MessageName> (name: K, m: MessageMap[K]): void {
    const size = encodedSize(name, m) // validates digests, ids and indexes too
    const max = (this.announced as RemoteLimits).maxMessageBytes
    if (size > max) throw PatchswarmError.MESSAGE_TOO_LARGE(`${name} of ${size} bytes, the remote accepts ${max}`)
    this.senders[name].send(m)
  }

  private noteLocal (digest: string, bits: number): number {
    if (!isDigest(digest)) throw PatchswarmError.BAD_ARGUMENT(`a digest is 64 lowercase hex characters, got ${String(digest).slice(0, 80)}`)
    const known = this.localDigests.get(digest)
    if (known === undefined) {
      const max = (this.announced as RemoteLimits).maxPackages
      if (this.localDigests.size >= max) throw PatchswarmError.FLOOD(`the remote accepts ${max} packages per connection`)
      this.localDigests.set(digest, bits)
      return bits
    }
    if (bits < 0) return known
    if (known >= 0 && known !== bits) throw PatchswarmError.BAD_ARGUMENT(`bitfield of ${digest.slice(0, 12)}… was announced with ${known} bits, not ${bits}`)
    this.localDigests.set(digest, bits)
    return bits
  }

  private pendingRemote (id: number): boolean {
    if (this.theirs.has(id)) return true
    if (this.cancelledByThem.has(id)) return false
    throw PatchswarmError.UNSOLICITED(`the remote has no outstanding request ${id}`)
  }

  // ── receiving ────────────────────────────────────────────────────────────────────────────────

  /** Wraps a codec: counts bytes both ways, refuses oversized messages before decoding, decodes strictly. */
  private guard<T> (name: MessageName | 'hello', enc: Encoder<T>, max: number): Encoder<T | typeof IGNORED> {
    const sent = this.stats.sent[name]
    const received = this.stats.received[name]
    return {
      preencode (state: State, m: T | typeof IGNORED) { enc.preencode(state, m as T) },
      encode (state: State, m: T | typeof IGNORED) {
        const start = state.start
        enc.encode(state, m as T)
        sent.messages++
        sent.bytes += state.start - start
      },
      decode: (state: State) => {
        const size = state.end - state.start
        received.messages++
        received.bytes += size
        if (this.closing) {
          state.start = state.end
          return IGNORED
        }
        if (size > max) throw this.fail(PatchswarmError.MESSAGE_TOO_LARGE(`${name} of ${size} bytes, limit ${max}`))
        try {
          return decodeExact(enc, state)
        } catch (err) {
          throw this.fail(name === 'hello'
            ? PatchswarmError.HANDSHAKE_FAILED('malformed hello', err)
            : PatchswarmError.PROTOCOL_ERROR(`malformed ${name}`, err))
        }
      }
    }
  }

  private onhello (h: HelloMessage): void {
    if (this.closing) return
    const remotePublicKey = this.stream.remotePublicKey
    if (!(remotePublicKey instanceof Uint8Array)) throw this.fail(PatchswarmError.HANDSHAKE_FAILED('the connection has no remote public key'))
    if (h.version < 1) throw this.fail(PatchswarmError.HANDSHAKE_FAILED(`hello version ${h.version}`))
    let identity: PeerIdentity
    try {
      identity = this.verify(h.certificate, remotePublicKey)
    } catch (err) {
      // the verifier's own code says why; anything else is wrapped
      this.fail(isPatchswarmError(err) ? err : PatchswarmError.HANDSHAKE_FAILED('certificate rejected', err))
      return
    }
    if (this.closing) return
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    this.identity = identity
    this.announced = { version: h.version, maxMessageBytes: h.maxMessageBytes, maxRequests: h.maxRequests, maxPackages: h.maxPackages }
    this.settle?.resolve(identity)
    this.settle = null
    this.emit('open', identity)
  }

  private receive (name: MessageName, m: unknown): void {
    switch (name) {
      case 'want': {
        const { digest } = m as MessageMap['want']
        this.noteRemote(digest, -1)
        this.emit('want', digest)
        return
      }
      case 'have': {
        const { digest, bitfield } = m as MessageMap['have']
        this.noteRemote(digest, bitfield.length)
        this.emit('have', digest, bitfield)
        return
      }
      case 'have-chunk': {
        const { digest, index } = m as MessageMap['have-chunk']
        const bits = this.noteRemote(digest, -1)
        if (bits >= 0 && index >= bits) throw this.fail(PatchswarmError.PROTOCOL_ERROR(`have-chunk ${index} past a bitfield of ${bits}`))
        this.emit('have-chunk', digest, index)
        return
      }
      case 'request': {
        const r = m as MessageMap['request']
        if (this.theirs.has(r.id)) throw this.fail(PatchswarmError.PROTOCOL_ERROR(`request id ${r.id} is already outstanding`))
        if (this.theirs.size >= this.limits.maxRemoteRequests) throw this.fail(PatchswarmError.FLOOD(`more than ${this.limits.maxRemoteRequests} requests in flight`))
        const bits = this.localDigests.get(r.digest) ?? -1
        if (bits >= 0 && r.index >= bits) throw this.fail(PatchswarmError.PROTOCOL_ERROR(`request for chunk ${r.index} past our bitfield of ${bits}`))
        this.noteRemote(r.digest, -1)
        this.theirs.set(r.id, { digest: r.digest, index: r.index })
        this.emit('request', { id: r.id, digest: r.digest, index: r.index })
        return
      }
      case 'cancel': {
        const { id } = m as MessageMap['cancel']
        if (!this.theirs.delete(id)) return // already answered: the cancel crossed our answer
        remember(this.cancelledByThem, id, this.limits.cancelGraceMs, 2 * this.limits.maxRemoteRequests)
        this.emit('cancel', id)
        return
      }
      case 'data': {
        const d = m as MessageMap['data']
        const r = this.ours.get(d.id)
        if (r === undefined) {
          if (!forget(this.cancelledByUs, d.id)) throw this.fail(PatchswarmError.UNSOLICITED(`data for request ${d.id}, which is not outstanding`))
          this.stats.discarded.messages++
          this.stats.discarded.bytes += d.bytes.byteLength
          return
        }
        if (r.digest !== d.digest || r.index !== d.index) throw this.fail(PatchswarmError.UNSOLICITED(`data for request ${d.id} names another chunk than was asked for`))
        this.ours.delete(d.id)
        this.emit('data', d)
        return
      }
      case 'reject': {
        const { id } = m as MessageMap['reject']
        if (!this.ours.delete(id)) {
          if (!forget(this.cancelledByUs, id)) throw this.fail(PatchswarmError.UNSOLICITED(`reject of request ${id}, which is not outstanding`))
          return
        }
        this.emit('reject', id)
        return
      }
      case 'control': {
        const { kind, payload } = m as MessageMap['control']
        this.emit('control', kind, payload)
      }
    }
  }

  private noteRemote (digest: string, bits: number): number {
    const known = this.remoteDigests.get(digest)
    if (known === undefined) {
      if (this.remoteDigests.size >= this.limits.maxPackagesAnnounced) throw this.fail(PatchswarmError.FLOOD(`more than ${this.limits.maxPackagesAnnounced} distinct packages`))
      this.remoteDigests.set(digest, bits)
      return bits
    }
    if (bits < 0) return known
    if (known >= 0 && known !== bits) throw this.fail(PatchswarmError.PROTOCOL_ERROR(`bitfield length changed from ${known} to ${bits}`))
    this.remoteDigests.set(digest, bits)
    return bits
  }

  // ── closing ──────────────────────────────────────────────────────────────────────────────────

  private onchannelclose (): void {
    // protomux also reports the channel closed when the stream closes; that case is finish()'s
    if (this.closing || this.stream.destroyed === true || this.stream.destroying === true) return
    this.fail(this.identity === null
      ? PatchswarmError.HANDSHAKE_FAILED(`the remote does not speak ${PROTOCOL}`)
      : null)
  }

  private noteError (err: Error): void {
    if (!this.closing) this.fail(coded(err))
  }

  /** Starts closing: records the reason, drops all state, destroys the connection. Returns the reason. */
  private fail (err: Error | null): Error {
    const reason = err ?? PatchswarmError.CLOSED('connection closed')
    if (this.closing) return this.reason ?? reason
    this.closing = true
    this.reason = err
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    this.settle?.reject(err ?? PatchswarmError.CLOSED('connection closed during the handshake'))
    this.settle = null
    this.clear()
    this.mux.destroy(err ?? undefined)
    return reason
  }

  private finish (): void {
    if (this.finished) return
    if (!this.closing) this.fail(this.reason)
    this.finished = true
    this.emit('close', this.reason)
  }

  private clear (): void {
    this.ours.clear()
    this.theirs.clear()
    this.cancelledByUs.clear()
    this.cancelledByThem.clear()
    this.remoteDigests.clear()
    this.localDigests.clear()
  }
}

function resolveLimits (given: Partial<ProtocolLimits> | undefined): Readonly<ProtocolLimits> {
  const limits = { ...DEFAULT_LIMITS }
  for (const [key, value] of Object.entries(given ?? {})) {
    if (value === undefined) continue
    if (!(key in DEFAULT_LIMITS)) throw PatchswarmError.BAD_ARGUMENT(`unknown protocol limit ${key}`)
    if (!Number.isSafeInteger(value) || value < 1) throw PatchswarmError.BAD_ARGUMENT(`protocol limit ${key} must be a positive integer, got ${value}`)
    limits[key as keyof ProtocolLimits] = value
  }
  return Object.freeze(limits)
}

function counters (): TrafficCounters {
  const c = { hello: { messages: 0, bytes: 0 } } as TrafficCounters
  for (const name of MESSAGE_TYPES) c[name] = { messages: 0, bytes: 0 }
  return c
}

/** Remembers an id until now + ttl; the map stays in expiry order and under `cap` entries. */
function remember (map: Map<number, number>, id: number, ttl: number, cap: number): void {
  const now = Date.now()
  for (const [key, expires] of map) {
    if (expires > now && map.size < cap) break
    map.delete(key)
  }
  map.set(id, now + ttl)
}

/** True (once) if the id was remembered and has not expired. */
function forget (map: Map<number, number>, id: number): boolean {
  const expires = map.get(id)
  if (expires === undefined) return false
  map.delete(id)
  return expires >= Date.now()
}

function coded (err: Error): Error {
  return isPatchswarmError(err) ? err : new PatchswarmError('CLOSED', `connection failed: ${err.message}`, { cause: err })
}

function noop (): void {}
