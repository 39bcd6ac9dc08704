// Pieces for the wire-protocol tests: real enrollment certificates from a real root, a pair of
// Noise secret streams piped into each other in-process, and a hostile peer that speaks protomux
// directly with our codecs (so it can break every rule PeerChannel itself would refuse to break).
import v8 from 'node:v8'
import vm from 'node:vm'
import NoiseSecretStream from '@hyperswarm/secret-stream'
import Protomux, { type Channel, type Message } from 'protomux'
import c from 'compact-encoding'
import { generateKeyPair, type KeyPair } from '../../lib/crypto/keys.js'
import { newCertificate, signEnvelope, serializeEnvelope, parseEnvelope, verifyCertificate } from '../../lib/trust/index.js'
import { PeerChannel, type PeerChannelOptions, type ProtocolLimits } from '../../lib/swarm/protocol.js'
import { MESSAGE_ENCODINGS, MESSAGE_TYPES, PROTOCOL, PROTOCOL_VERSION, helloEncoding, type MessageMap, type MessageName } from '../../lib/swarm/messages.js'
import { keys, baseRoot, T0, DAY } from '../trust/helpers.js'

export const ROOT = baseRoot()
export const NOW = new Date(T0.getTime() + DAY)
export const DIGEST = 'd'.repeat(64)
export const DIGEST2 = 'e'.repeat(64)

export interface Member { keyPair: KeyPair, certificate: Uint8Array }

let seed = 100
/** A key pair with a console-signed certificate binding it to acme (or `org`). */
export async function member (opts: { org?: string, holder?: Uint8Array, site?: string | null } = {}): Promise<Member> {
  const keyPair = generateKeyPair(Buffer.alloc(32, seed++))
  const cert = newCertificate({
    org: opts.org ?? ROOT.org,
    holder: opts.holder ?? keyPair.publicKey,
    tenant: 'msp-1/customer-a',
    site: opts.site ?? 'vienna',
    issued: T0,
    expires: new Date(T0.getTime() + 30 * DAY)
  })
  return { keyPair, certificate: serializeEnvelope(await signEnvelope(cert, keys.console)) }
}

/** The real verifier: a certificate of acme's console, for the key at the other end, not expired. */
export const verify: PeerChannelOptions['verifyCertificate'] = (bytes, remotePublicKey) =>
  verifyCertificate(ROOT, parseEnvelope(bytes), { now: NOW, remotePublicKey })

export function options (m: Member, limits?: Partial<ProtocolLimits>): PeerChannelOptions {
  return { certificate: m.certificate, verifyCertificate: verify, ...(limits ? { limits } : {}) }
}

/** Two Noise secret streams whose raw ends are piped into each other. */
export function streamPair (a: KeyPair, b: KeyPair): [NoiseSecretStream, NoiseSecretStream] {
  const sa = new NoiseSecretStream(true, null, { keyPair: a as never })
  const sb = new NoiseSecretStream(false, null, { keyPair: b as never })
  sa.rawStream.pipe(sb.rawStream).pipe(sa.rawStream)
  return [sa, sb]
}

/** Two members on an in-process connection, both with a PeerChannel attached. */
export async function channelPair (limitsA?: Partial<ProtocolLimits>, limitsB?: Partial<ProtocolLimits>) {
  const ma = await member()
  const mb = await member()
  const [sa, sb] = streamPair(ma.keyPair, mb.keyPair)
  const a = PeerChannel.attach(sa, options(ma, limitsA))
  const b = PeerChannel.attach(sb, options(mb, limitsB))
  return { a, b, sa, sb, ma, mb }
}

/** Resolves with the reason a channel's 'close' event carries. */
export function closed (ch: PeerChannel): Promise<Error | null> {
  return new Promise((resolve) => ch.once('close', resolve))
}

/** Resolves once a stream emitted 'close'. */
export function streamClosed (s: NoiseSecretStream): Promise<void> {
  if (s.destroyed) return Promise.resolve()
  return new Promise((resolve) => s.once('close', () => resolve()))
}

/**
 * A peer that speaks patchswarm/1 through protomux directly: it sends any message, valid or not,
 * without PeerChannel's own checks. Every message type is registered with the raw codec so that
 * malformed bodies can be sent too.
 */
export class Hostile {
  readonly channel: Channel
  private readonly raw: Array<Message<Uint8Array>>

  constructor (readonly stream: NoiseSecretStream, m: Member, opts: { protocol?: string, limits?: { maxMessageBytes?: number, maxRequests?: number, maxPackages?: number } } = {}) {
    const mux = Protomux.from(stream)
    const channel = mux.createChannel({ protocol: opts.protocol ?? PROTOCOL, handshake: helloEncoding })
    if (channel === null) throw new Error('could not create the hostile channel')
    this.channel = channel
    this.raw = MESSAGE_TYPES.map(() => channel.addMessage<Uint8Array>({ encoding: c.raw }))
    channel.open({
      version: PROTOCOL_VERSION,
      certificate: m.certificate,
      maxMessageBytes: opts.limits?.maxMessageBytes ?? 64 * 1024 * 1024,
      maxRequests: opts.limits?.maxRequests ?? 1_000_000,
      maxPackages: opts.limits?.maxPackages ?? 1_000_000
    })
  }

  send<K extends MessageName> (name: K, m: MessageMap[K]): boolean {
    return this.sendRaw(name, c.encode(MESSAGE_ENCODINGS[name], m))
  }

  sendRaw (name: MessageName, body: Uint8Array): boolean {
    return (this.raw[MESSAGE_TYPES.indexOf(name)] as Message<Uint8Array>).send(body)
  }
}

/** A hostile member against a real PeerChannel on an in-process connection. */
export async function hostilePair (limits?: Partial<ProtocolLimits>, hostileOpts?: ConstructorParameters<typeof Hostile>[2]) {
  const mv = await member()
  const mh = await member()
  const [sv, sh] = streamPair(mv.keyPair, mh.keyPair)
  const victim = PeerChannel.attach(sv, options(mv, limits))
  const hostile = new Hostile(sh, mh, hostileOpts)
  return { victim, hostile, sv, sh }
}

let gcFn: (() => void) | null = null
/** A full garbage collection (exposed at run time, so the test needs no node flag). */
export function collectGarbage (): void {
  if (gcFn === null) {
    v8.setFlagsFromString('--expose-gc')
    gcFn = vm.runInNewContext('gc') as () => void
  }
  gcFn()
}

export function delay (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
