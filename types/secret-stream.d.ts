// The parts of @hyperswarm/secret-stream 6 that patchswarm uses (it ships no types).
declare module '@hyperswarm/secret-stream' {
  import type { Duplex } from 'node:stream'

  export interface NoiseKeyPair { publicKey: Buffer, secretKey: Buffer }

  export interface NoiseSecretStreamOptions {
    pattern?: string
    keyPair?: NoiseKeyPair
    remotePublicKey?: Uint8Array
    autoStart?: boolean
    keepAlive?: number
  }

  /** A Noise-encrypted, framed duplex stream (a streamx Duplex; typed as Node's for convenience). */
  export default class NoiseSecretStream extends Duplex {
    constructor (isInitiator: boolean, rawStream?: Duplex | null, opts?: NoiseSecretStreamOptions)
    static keyPair (seed?: Uint8Array): NoiseKeyPair
    readonly isInitiator: boolean
    /** Without a raw stream in the constructor: an in-memory end to pipe to another stream's. */
    readonly rawStream: Duplex
    readonly publicKey: Buffer | null
    /** Set once the Noise handshake completed. */
    readonly remotePublicKey: Buffer | null
    readonly handshakeHash: Buffer | null
    /** Resolves true once the handshake completed, false if the stream was destroyed first. */
    readonly opened: Promise<boolean>
    userData: unknown
    setTimeout (ms: number): void
    setKeepAlive (ms: number): void
  }
}
