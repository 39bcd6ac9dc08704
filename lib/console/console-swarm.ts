// The console on the organisation swarm: an origin node that seeds released packages, the link that
// takes agents' reports and hands them their directives (link.ts), and the pre-certificate
// enrollment listener. Its keys are derived from the console key, so nothing more needs keeping.
import path from 'node:path'
import { createHash } from 'node:crypto'
import { PatchswarmError } from '../errors.js'
import { generateKeyPair, keyIdOf, type KeyPair } from '../crypto/keys.js'
import { sublevel } from '../store/db.js'
import { PackageStore } from '../content/package-store.js'
import { newCertificate } from '../trust/certificate.js'
import { serializeEnvelope, signEnvelope } from '../trust/envelope.js'
import { SwarmNode } from '../swarm/node.js'
import { EnrollmentListener } from '../swarm/enroll-link.js'
import type { Bootstrap } from '../swarm/transport.js'
import { ConsoleLink } from './link.js'
import type { Console } from './console.js'

export interface ConsoleSwarmOptions {
  dataDir: string
  bootstrap: Bootstrap
  host?: string
  firewalled?: boolean
}

/** A key derived from the console key for one purpose (the secret key's seed is its first 32 bytes). */
export function derivedKeyPair (consoleSecretKey: Uint8Array, purpose: string): KeyPair {
  return generateKeyPair(createHash('sha256').update(`patchswarm/${purpose}/v1\0`).update(consoleSecretKey.subarray(0, 32)).digest())
}

/** What the enrollment listener answers: the console's result, the root to pin, and the origin to report to. */
export interface EnrollAnswer {
  status: 'quarantine' | 'approved'
  certificate?: unknown
  root: unknown
  /** The key of the console's swarm node: agents send reports and check-ins to it. */
  console: string
}

export class ConsoleSwarm {
  readonly console: Console
  readonly store: PackageStore
  readonly node: SwarmNode
  readonly keyPair: KeyPair
  readonly listener: EnrollmentListener
  #link: ConsoleLink | null = null
  #opening: Promise<void> | undefined
  #closing: Promise<void> | undefined

  constructor (console: Console, consoleSecretKey: Uint8Array, opts: ConsoleSwarmOptions) {
    this.console = console
    this.keyPair = derivedKeyPair(consoleSecretKey, 'origin')
    this.store = new PackageStore({ dir: path.join(opts.dataDir, 'packages'), db: sublevel(console.db, 'console-packages') })
    const link = { bootstrap: opts.bootstrap, ...(opts.host ? { host: opts.host } : {}), ...(opts.firewalled !== undefined ? { firewalled: opts.firewalled } : {}) }
    let certificate: Uint8Array | null = null
    this.node = new SwarmNode({
      keyPair: this.keyPair,
      get certificate (): Uint8Array { if (!certificate) throw PatchswarmError.CLOSED('not ready'); return certificate },
      root: () => console.root,
      store: this.store,
      ...link
    })
    this.#certificate = async () => {
      const now = console.clock()
      const cert = newCertificate({ org: console.org, holder: this.keyPair.publicKey, role: 'origin', tenant: '', issued: new Date(now.getTime() - 60_000), expires: new Date(now.getTime() + 365 * 86400_000) })
      certificate = serializeEnvelope(await signEnvelope(cert, [console.signer]))
    }
    this.listener = new EnrollmentListener({
      ...link,
      keyPair: console.enrollKeyPair,
      handle: async (request, remoteKeyid): Promise<EnrollAnswer> => {
        // An endpoint asking again (e.g. from quarantine) gets its status; a new one enrolls.
        const result = await console.enrollment.status(request as never, remoteKeyid) ?? await console.enrollment.enroll(request as never)
        return { ...result, root: console.rootEnvelope, console: this.keyid }
      }
    })
  }

  readonly #certificate: () => Promise<void>

  get keyid (): string { return keyIdOf(this.keyPair.publicKey) }

  ready (): Promise<void> {
    this.#opening ??= (async () => {
      await this.store.ready()
      await this.#certificate()
      // The link listens before the node joins: agents connect (and report) during the join.
      this.#link = new ConsoleLink({ console: this.console, node: this.node, store: this.store })
      await this.node.ready()
      for (const r of this.console.trust.releases()) {
        if (await this.store.has(r.release.manifest.digest)) await this.node.seed(r.release.manifest.digest)
      }
      this.console.contentHost = (hash, dir) => this.publish(hash, dir)
      this.console.swarmState = () => ({
        keyid: this.keyid,
        peers: this.node.connectedPeers().map(({ keyid, role, tenant, site }) => ({ keyid, role, tenant, site })),
        bans: this.node.bans.list().map(({ keyid, until, reason }) => ({ keyid, until: new Date(until).toISOString(), reason }))
      })
      await this.listener.ready()
    })()
    return this.#opening
  }

  /** Imports a release's package from `dir` (it must chunk to the manifest the release signed) and seeds it. */
  async publish (hash: string, dir: string): Promise<void> {
    await this.ready()
    const r = this.console.release(hash)
    const { digest } = await this.store.importSource(dir)
    if (digest !== r.release.manifest.digest) {
      await this.store.remove(digest).catch(() => {})
      throw PatchswarmError.HASH_MISMATCH(`${dir} chunks to package ${digest.slice(0, 12)}…, but the release signed ${r.release.manifest.digest.slice(0, 12)}…`)
    }
    await this.node.seed(digest)
  }

  close (): Promise<void> {
    this.#closing ??= (async () => {
      await this.#opening?.catch(() => {})
      this.#link?.close()
      if (this.console.contentHost !== null) this.console.contentHost = null
      this.console.swarmState = null
      await this.listener.close()
      await this.node.close()
      await this.store.close()
    })()
    return this.#closing
  }
}
