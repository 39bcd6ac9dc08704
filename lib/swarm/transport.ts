// Hyperswarm set-up in one place. A swarm is never created without an explicit bootstrap: tests,
// benchmarks and the demo pass a local testnet's, production passes 'public' on purpose.
import { createHash } from 'node:crypto'
import Hyperswarm from 'hyperswarm'
import HyperDHT from 'hyperdht'
import createTestnet from 'hyperdht/testnet.js'
import { PatchswarmError } from '../errors.js'
import type { KeyPair } from '../crypto/keys.js'

export type Bootstrap = Array<{ host: string, port: number }> | 'public'

export interface SwarmOptions {
  keyPair: KeyPair
  bootstrap: Bootstrap
  /** Address to bind; 127.0.0.1 for tests. Default: all interfaces. */
  host?: string
  /** False when the node is directly reachable (always so on loopback). */
  firewalled?: boolean
  maxPeers?: number
  /** Refuse a connection before its handshake, e.g. from a banned key. */
  firewall? (remotePublicKey: Buffer): boolean
}

export function createSwarm (opts: SwarmOptions): Hyperswarm {
  if (opts.bootstrap === undefined) throw PatchswarmError.BAD_ARGUMENT("a swarm needs a bootstrap: a local testnet's, or 'public'")
  const loopback = opts.host?.startsWith('127.') ?? false
  const dht = new HyperDHT({
    ...(opts.bootstrap === 'public' ? {} : { bootstrap: opts.bootstrap }),
    ...(opts.host ? { host: opts.host } : {}),
    firewalled: opts.firewalled ?? !loopback
  })
  return new Hyperswarm({
    dht,
    keyPair: opts.keyPair,
    ...(opts.maxPeers ? { maxPeers: opts.maxPeers } : {}),
    ...(opts.firewall ? { firewall: opts.firewall } : {})
  })
}

/** Destroys the swarm and the DHT node it made. */
export async function destroySwarm (swarm: Hyperswarm): Promise<void> {
  await swarm.destroy()
  if (!swarm.dht.destroyed) await swarm.dht.destroy()
}

/**
 * One topic per organisation: the DHT learns that a key takes part in some organisation's swarm,
 * never which packages it pulls (those are named only inside encrypted, certificate-checked links).
 */
export function organisationTopic (org: string): Buffer {
  return createHash('sha256').update('patchswarm/topic/v1\0').update(org).digest()
}

export interface LocalTestnet {
  bootstrap: Array<{ host: string, port: number }>
  destroy (): Promise<void>
}

/** A DHT of `size` nodes on 127.0.0.1 (or `host`, e.g. inside a test network namespace). */
export async function startTestnet (size = 3, opts: { host?: string, port?: number } = {}): Promise<LocalTestnet> {
  const testnet = await createTestnet(size, { host: opts.host ?? '127.0.0.1', ...(opts.port ? { port: opts.port } : {}) })
  return { bootstrap: testnet.bootstrap, destroy: () => testnet.destroy() }
}
