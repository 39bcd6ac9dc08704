// A small organisation for swarm tests: a root whose console key certifies nodes, real package
// stores in the test's folder, and swarm nodes on a local DHT testnet.
import path from 'node:path'
import fs from 'node:fs/promises'
import type { Test } from 'tap'
import { generateKeyPair, type KeyPair } from '../../lib/crypto/keys.js'
import { openDatabase, sublevel } from '../../lib/store/db.js'
import { PackageStore, type Manifest } from '../../lib/content/index.js'
import type { PeerRole } from '../../lib/trust/index.js'
import { makeOrg, seededBytes, SMALL_CHUNKS, type Org } from '../../fixtures/org.js'
import { SwarmNode, type SwarmNodeOptions } from '../../lib/swarm/node.js'
import { startTestnet, type LocalTestnet } from '../../lib/swarm/transport.js'

export { makeOrg, seededBytes, SMALL_CHUNKS, MiB, type Org } from '../../fixtures/org.js'

export interface TestNode {
  node: SwarmNode
  store: PackageStore
  keyPair: KeyPair
  dir: string
  close (): Promise<void>
}

export interface NodeOptions {
  role?: PeerRole
  site?: string | null
  tenant?: string
  /** Reuse a node's folder (a restart). */
  dir?: string
  certificate?: Uint8Array
  keyPair?: KeyPair
  node?: Partial<SwarmNodeOptions>
}

/** One per test: its folder, a local testnet and an organisation. Everything is closed at teardown. */
export class Fleet {
  private count = 0
  private constructor (readonly t: Test, readonly base: string, readonly net: LocalTestnet, readonly org: Org) {}

  static async create (t: Test): Promise<Fleet> {
    const base = t.testdir()
    const net = await startTestnet(3)
    const fleet = new Fleet(t, base, net, await makeOrg())
    t.teardown(() => net.destroy())
    return fleet
  }

  async node (opts: NodeOptions = {}): Promise<TestNode> {
    const dir = opts.dir ?? path.join(this.base, `node-${this.count++}`)
    await fs.mkdir(dir, { recursive: true })
    const db = await openDatabase(path.join(dir, 'db'))
    const store = new PackageStore({ dir: path.join(dir, 'store'), db: sublevel(db, 'store') })
    await store.ready()
    const keyPair = opts.keyPair ?? generateKeyPair()
    const certificate = opts.certificate ?? await this.org.certify(keyPair, { role: opts.role ?? 'endpoint', site: opts.site ?? null, ...(opts.tenant ? { tenant: opts.tenant } : {}) })
    const node = new SwarmNode({ keyPair, certificate, root: () => this.org.root, store, bootstrap: this.net.bootstrap, host: '127.0.0.1', ...opts.node })
    let closed = false
    const close = async () => {
      if (closed) return
      closed = true
      await node.close()
      await store.close()
      await db.close()
    }
    this.t.teardown(close)
    await node.ready()
    return { node, store, keyPair, dir, close }
  }

  /** Waits until every node sees `peers` others (refreshing discovery now and then). */
  async mesh (nodes: TestNode[], peers: number, ms = 30_000): Promise<void> {
    const until = Date.now() + ms
    while (nodes.some((n) => n.node.connectedPeers().length < peers)) {
      if (Date.now() > until) throw new Error(`no full mesh within ${ms} ms: ${nodes.map((n) => n.node.connectedPeers().length).join(',')}`)
      await Promise.all(nodes.map((n) => n.node.refresh()))
      await new Promise((resolve) => setTimeout(resolve, 250))
    }
  }

  /** A one-file package of `size` bytes, imported into `store`. */
  async publish (store: PackageStore, size: number, seed = 1): Promise<{ manifest: Manifest, digest: string, bytes: Buffer }> {
    const dir = path.join(this.base, `src-${seed}-${size}`)
    await fs.mkdir(dir, { recursive: true })
    const bytes = seededBytes(size, seed)
    await fs.writeFile(path.join(dir, 'payload.bin'), bytes)
    const { manifest, digest } = await store.importSource(dir, SMALL_CHUNKS)
    return { manifest, digest, bytes }
  }

  async checkout (store: PackageStore, digest: string): Promise<Buffer> {
    const dest = path.join(this.base, `out-${this.count++}`)
    await store.checkout(digest, dest)
    return fs.readFile(path.join(dest, 'payload.bin'))
  }
}
