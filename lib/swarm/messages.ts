// The patchswarm wire messages and their compact-encoding codecs. One protomux channel per
// connection; the major version is in the protocol name, so a peer speaking another major never
// pairs with us. The hello travels in the channel-open frame (protomux's handshake slot), so it is
// necessarily the first thing each side says. Message type ids are positions in MESSAGE_TYPES;
// new messages are only ever appended.
//
// The codecs here are strict and pure (no limits, no state): a message must be consumed exactly,
// ids and indexes must be safe integers, digests exactly 32 bytes. PeerChannel wraps each codec
// with the size limit and the counters. They are exported so tools and tests can speak the protocol
// directly.
import c, { type Encoder, type State } from 'compact-encoding'
import { PatchswarmError } from '../errors.js'
import { Bitfield, MAX_BITS } from './bitfield.js'

/** protomux protocol name; the number is the major version. */
export const PROTOCOL = 'patchswarm/1'
/** Minor version sent in the hello; a newer minor may append fields to hello, never change them. */
export const PROTOCOL_VERSION = 1

export const MESSAGE_TYPES = ['want', 'have', 'have-chunk', 'request', 'cancel', 'data', 'reject', 'control'] as const
export type MessageName = typeof MESSAGE_TYPES[number]

/** Largest hello accepted (certificates are a few hundred bytes). */
export const MAX_HELLO_BYTES = 64 * 1024
/** Largest request id (ids are per connection, ascending from 1). */
export const MAX_REQUEST_ID = Number.MAX_SAFE_INTEGER

export interface HelloMessage {
  version: number
  certificate: Uint8Array
  /** The sender's own limits, so the other side can stay within them. */
  maxMessageBytes: number
  maxRequests: number
  maxPackages: number
}
export interface WantMessage { digest: string }
export interface HaveMessage { digest: string, bitfield: Bitfield }
export interface HaveChunkMessage { digest: string, index: number }
export interface RequestMessage { id: number, digest: string, index: number }
export interface CancelMessage { id: number }
export interface DataMessage { id: number, digest: string, index: number, bytes: Uint8Array }
export interface RejectMessage { id: number }
export interface ControlMessage { kind: number, payload: Uint8Array }

export interface MessageMap {
  want: WantMessage
  have: HaveMessage
  'have-chunk': HaveChunkMessage
  request: RequestMessage
  cancel: CancelMessage
  data: DataMessage
  reject: RejectMessage
  control: ControlMessage
}

const DIGEST_HEX = /^[0-9a-f]{64}$/

export function isDigest (value: unknown): value is string {
  return typeof value === 'string' && DIGEST_HEX.test(value)
}

/** A package digest: lowercase hex in memory, 32 raw bytes on the wire. */
export const digestEncoding: Encoder<string> = {
  preencode (state, hex) {
    if (!isDigest(hex)) throw PatchswarmError.BAD_ARGUMENT(`a digest is 64 lowercase hex characters, got ${String(hex).slice(0, 80)}`)
    state.end += 32
  },
  encode (state, hex) {
    (state.buffer as Uint8Array).set(Buffer.from(hex, 'hex'), state.start)
    state.start += 32
  },
  decode (state) {
    const raw = c.fixed32.decode(state) // a view into the frame: read it in place, no copy
    return Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('hex')
  }
}

/** A non-negative safe integer (ids, indexes, kinds). */
function bounded (max: number, what: string): Encoder<number> {
  return {
    preencode (state, n) {
      if (!Number.isSafeInteger(n) || n < 0 || n > max) throw PatchswarmError.BAD_ARGUMENT(`${what} must be an integer in [0, ${max}], got ${n}`)
      c.uint.preencode(state, n)
    },
    encode: c.uint.encode,
    decode (state) {
      const n = c.uint.decode(state)
      if (!Number.isSafeInteger(n) || n > max) throw PatchswarmError.BAD_ENCODING(`${what} out of range`)
      return n
    }
  }
}

const id = bounded(MAX_REQUEST_ID, 'request id')
const index = bounded(MAX_BITS - 1, 'chunk index')
const count = bounded(MAX_REQUEST_ID, 'count')

/** Takes the rest of the message, as a view into the frame (zero copy). */
const rest: Encoder<Uint8Array> = {
  preencode (state, bytes) { state.end += bytes.byteLength },
  encode (state, bytes) { (state.buffer as Uint8Array).set(bytes, state.start); state.start += bytes.byteLength },
  decode (state) {
    const bytes = (state.buffer as Uint8Array).subarray(state.start, state.end)
    state.start = state.end
    return bytes
  }
}

export const helloEncoding: Encoder<HelloMessage> = {
  preencode (state, m) {
    count.preencode(state, m.version)
    c.buffer.preencode(state, m.certificate)
    count.preencode(state, m.maxMessageBytes)
    count.preencode(state, m.maxRequests)
    count.preencode(state, m.maxPackages)
  },
  encode (state, m) {
    count.encode(state, m.version)
    c.buffer.encode(state, m.certificate)
    count.encode(state, m.maxMessageBytes)
    count.encode(state, m.maxRequests)
    count.encode(state, m.maxPackages)
  },
  decode (state) {
    const version = count.decode(state)
    const certificate = c.buffer.decode(state)
    const m: HelloMessage = {
      version,
      certificate: certificate === null ? new Uint8Array(0) : Uint8Array.prototype.slice.call(certificate),
      maxMessageBytes: count.decode(state),
      maxRequests: count.decode(state),
      maxPackages: count.decode(state)
    }
    state.start = state.end // a later minor version may append fields
    return m
  }
}

const want: Encoder<WantMessage> = {
  preencode (state, m) { digestEncoding.preencode(state, m.digest) },
  encode (state, m) { digestEncoding.encode(state, m.digest) },
  decode (state) { return { digest: digestEncoding.decode(state) } }
}

const have: Encoder<HaveMessage> = {
  preencode (state, m) {
    digestEncoding.preencode(state, m.digest)
    count.preencode(state, m.bitfield.length)
    state.end += (m.bitfield.length + 7) >>> 3
  },
  encode (state, m) {
    digestEncoding.encode(state, m.digest)
    count.encode(state, m.bitfield.length)
    rest.encode(state, m.bitfield.toBytes())
  },
  decode (state) {
    const d = digestEncoding.decode(state)
    const bits = count.decode(state)
    if (bits > MAX_BITS) throw PatchswarmError.BAD_ENCODING('bitfield too long')
    return { digest: d, bitfield: Bitfield.fromBytes(rest.decode(state), bits) }
  }
}

const haveChunk: Encoder<HaveChunkMessage> = {
  preencode (state, m) { digestEncoding.preencode(state, m.digest); index.preencode(state, m.index) },
  encode (state, m) { digestEncoding.encode(state, m.digest); index.encode(state, m.index) },
  decode (state) { return { digest: digestEncoding.decode(state), index: index.decode(state) } }
}

const request: Encoder<RequestMessage> = {
  preencode (state, m) { id.preencode(state, m.id); digestEncoding.preencode(state, m.digest); index.preencode(state, m.index) },
  encode (state, m) { id.encode(state, m.id); digestEncoding.encode(state, m.digest); index.encode(state, m.index) },
  decode (state) { return { id: id.decode(state), digest: digestEncoding.decode(state), index: index.decode(state) } }
}

const idOnly: Encoder<{ id: number }> = {
  preencode (state, m) { id.preencode(state, m.id) },
  encode (state, m) { id.encode(state, m.id) },
  decode (state) { return { id: id.decode(state) } }
}

const data: Encoder<DataMessage> = {
  preencode (state, m) {
    id.preencode(state, m.id); digestEncoding.preencode(state, m.digest); index.preencode(state, m.index); rest.preencode(state, m.bytes)
  },
  encode (state, m) {
    id.encode(state, m.id); digestEncoding.encode(state, m.digest); index.encode(state, m.index); rest.encode(state, m.bytes)
  },
  decode (state) {
    return { id: id.decode(state), digest: digestEncoding.decode(state), index: index.decode(state), bytes: rest.decode(state) }
  }
}

const control: Encoder<ControlMessage> = {
  preencode (state, m) { count.preencode(state, m.kind); rest.preencode(state, m.payload) },
  encode (state, m) { count.encode(state, m.kind); rest.encode(state, m.payload) },
  decode (state) { return { kind: count.decode(state), payload: rest.decode(state) } }
}

/** The codec of each message, by name; the type id is the name's position in MESSAGE_TYPES. */
export const MESSAGE_ENCODINGS: { [K in MessageName]: Encoder<MessageMap[K]> } = {
  want,
  have,
  'have-chunk': haveChunk,
  request,
  cancel: idOnly,
  data,
  reject: idOnly,
  control
}

/** Encoded size of a message body (without protomux's channel and type prefix). */
export function encodedSize<K extends MessageName> (name: K, m: MessageMap[K]): number {
  const state: State = { start: 0, end: 0, buffer: null }
  MESSAGE_ENCODINGS[name].preencode(state, m)
  return state.end
}

/** Strict decode of a whole message body: it must be consumed exactly. Throws BAD_ENCODING. */
export function decodeExact<T> (enc: Encoder<T>, state: State): T {
  let m: T
  try {
    m = enc.decode(state)
  } catch (err) {
    throw PatchswarmError.BAD_ENCODING('malformed message', err)
  }
  if (state.start !== state.end) throw PatchswarmError.BAD_ENCODING(`${state.end - state.start} trailing bytes after message`)
  return m
}
