// The parts of hyperswarm 4 and hyperdht 6 that patchswarm uses (neither ships types).
declare module 'hyperdht' {
  import type { EventEmitter } from 'node:events'
  import type { Duplex } from 'node:stream'
  export interface DhtKeyPair { publicKey: Buffer, secretKey: Buffer }
  export interface DhtOptions {
    bootstrap?: Array<string | { host: string, port: number }>
    host?: string
    port?: number
    firewalled?: boolean
    ephemeral?: boolean
  }
  export interface DhtConnection extends Duplex {
    readonly publicKey: Buffer
    readonly remotePublicKey: Buffer
  }
  export interface DhtServer extends EventEmitter {
    listen (keyPair: DhtKeyPair): Promise<void>
    close (): Promise<void>
  }
  export default class HyperDHT extends EventEmitter {
    constructor (opts?: DhtOptions)
    createServer (onconnection: (conn: DhtConnection) => void): DhtServer
    createServer (opts: { firewall? (remotePublicKey: Buffer): boolean }, onconnection: (conn: DhtConnection) => void): DhtServer
    connect (publicKey: Buffer, opts?: { keyPair?: DhtKeyPair }): DhtConnection
    static keyPair (seed?: Buffer): DhtKeyPair
    fullyBootstrapped (): Promise<void>
    address (): { host: string, port: number }
    destroy (opts?: { force?: boolean }): Promise<void>
    destroyed: boolean
  }
}

declare module 'hyperdht/testnet.js' {
  import type HyperDHT from 'hyperdht'
  export interface Testnet {
    nodes: HyperDHT[]
    bootstrap: Array<{ host: string, port: number }>
    destroy (): Promise<void>
  }
  export default function createTestnet (size?: number, opts?: { host?: string, port?: number, teardown?: (fn: () => Promise<void>) => void }): Promise<Testnet>
}

declare module 'hyperswarm' {
  import type { EventEmitter } from 'node:events'
  import type { Duplex } from 'node:stream'
  import type HyperDHT from 'hyperdht'
  import type { DhtKeyPair } from 'hyperdht'

  /** A Noise-encrypted, framed connection (@hyperswarm/secret-stream). */
  export interface SwarmConnection extends Duplex {
    readonly publicKey: Buffer
    readonly remotePublicKey: Buffer
    readonly isInitiator: boolean
    readonly rawStream: { remoteHost: string, remotePort: number }
  }

  export interface PeerInfo {
    publicKey: Buffer
    topics: Buffer[]
    client: boolean
    ban (val?: boolean): void
    reconnect (val: boolean): void
  }

  export interface PeerDiscovery {
    flushed (): Promise<void>
    refresh (opts?: { client?: boolean, server?: boolean }): Promise<void>
    destroy (): Promise<void>
  }

  export interface SwarmOptions {
    keyPair?: DhtKeyPair
    dht?: HyperDHT
    bootstrap?: Array<string | { host: string, port: number }>
    maxPeers?: number
    firewall? (remotePublicKey: Buffer): boolean
  }

  export default class Hyperswarm extends EventEmitter {
    constructor (opts?: SwarmOptions)
    readonly keyPair: DhtKeyPair
    readonly dht: HyperDHT
    readonly connections: Set<SwarmConnection>
    readonly peers: Map<string, PeerInfo>
    destroyed: boolean
    join (topic: Buffer, opts?: { server?: boolean, client?: boolean }): PeerDiscovery
    leave (topic: Buffer): Promise<void>
    joinPeer (publicKey: Buffer): void
    leavePeer (publicKey: Buffer): void
    listen (): Promise<void>
    flush (): Promise<void>
    destroy (opts?: { force?: boolean }): Promise<void>
    on (event: 'connection', listener: (conn: SwarmConnection, info: PeerInfo) => void): this
    on (event: 'update', listener: () => void): this
  }
}
