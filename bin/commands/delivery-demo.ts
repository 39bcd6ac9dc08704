// `patchswarm delivery-demo`: the swarm's delivery path end to end on this machine, through the
// public library API only (no console, no agents: `patchswarm demo` shows the whole fleet).
// Keys, a root rotated v1 → v2, two signed releases of one package, an
// origin and endpoints in two sites on a local DHT; every endpoint verifies each release against
// its own trusted root and fetches it from the swarm (same site first, the origin last), and the
// update arrives as a delta: chunks already on disk are reused, only new ones move.
import type { Command } from 'commander'
import fs from 'node:fs/promises'
import path from 'node:path'
import {
  generateKeyPair, keySigner, keyIdOf, writeSecretKeyFile, openDatabase, sublevel,
  PackageStore, newRoot, rotateRoot, newRelease, newCertificate, signEnvelope, serializeEnvelope, TrustedState,
  SwarmNode, startTestnet, type KeyPair
} from '../../lib/index.js'
import type { CliContext } from '../cli.js'
import { parsePositiveInt } from './options.js'
import { formatBytes } from './release.js'

interface DemoOptions { data: string, sizeMib: number, endpoints: number, json?: boolean }

export function registerDeliveryDemoCommand (program: Command, ctx: CliContext): void {
  program.command('delivery-demo')
    .description('the library alone: publish two releases and deliver them over a local swarm to endpoints in two sites')
    .option('--data <dir>', 'data folder (emptied and reused on every run)', 'data/delivery-demo')
    .option('--size-mib <n>', 'size of the demo package in MiB', parsePositiveInt, 16)
    .option('--endpoints <n>', 'endpoints in the swarm, spread over two sites', parsePositiveInt, 6)
    .option('--json', 'print only a JSON summary')
    .action(async (opts: DemoOptions) => {
      const summary = await runDemo(ctx, opts)
      if (opts.json) ctx.io.stdout(JSON.stringify(summary, null, 2) + '\n')
    })
}

async function runDemo (ctx: CliContext, opts: DemoOptions) {
  const say = (line: string) => { if (!opts.json) ctx.io.stdout(line + '\n') }
  const data = ctx.resolve(opts.data)
  await fs.rm(data, { recursive: true, force: true })
  await fs.mkdir(data, { recursive: true })
  const now = ctx.io.now()
  const inDays = (d: number) => new Date(now.getTime() + d * 86400_000)

  // 1. Keys: root 2-of-3, release 2-of-2 (offline), console 1 (online).
  const keys: Record<string, KeyPair> = {}
  await fs.mkdir(path.join(data, 'keys'), { recursive: true })
  for (const name of ['root-1', 'root-2', 'root-3', 'root-4', 'release-1', 'release-2', 'console']) {
    keys[name] = generateKeyPair()
    await writeSecretKeyFile(path.join(data, 'keys', `${name}.key`), keys[name]!, { name })
  }
  const ids = (...names: string[]) => names.map((n) => keyIdOf(keys[n]!.publicKey))
  const signers = (...names: string[]) => names.map((n) => keySigner(keys[n]!))
  say(`keys      7 Ed25519 key pairs in ${path.join(data, 'keys')} (mode 0600)`)

  // 2. Root v1, then v2: root-3 retired for root-4, and all three root keys needed from now on.
  const v1 = newRoot({
    org: 'acme-msp',
    keys: { root: ids('root-1', 'root-2', 'root-3'), release: ids('release-1', 'release-2'), console: ids('console') },
    thresholds: { root: 2, release: 2, console: 1 },
    expires: inDays(365)
  })
  const root1 = await signEnvelope(v1, signers('root-1', 'root-2'))
  const v2 = rotateRoot(v1, { keys: { root: ids('root-1', 'root-2', 'root-4') }, thresholds: { root: 3 } })
  const root2 = await signEnvelope(v2, signers('root-1', 'root-2', 'root-4'))
  await writeFile(path.join(data, 'root', '1.root.json'), serializeEnvelope(root1))
  await writeFile(path.join(data, 'root', '2.root.json'), serializeEnvelope(root2))
  say('root      v1 (root 2-of-3) → v2 (root 3-of-3, a key replaced), signed by old and new keys')

  // 3. Two versions of one package; 1.1.0 changes 1 MiB in the middle.
  const size = opts.sizeMib * 1024 * 1024
  const src1 = await writePackage(path.join(data, 'src', 'hello-1.0.0'), size, null)
  const src2 = await writePackage(path.join(data, 'src', 'hello-1.1.0'), size, Math.floor(size / 2))
  const closers: Array<() => Promise<unknown>> = []
  try {
    const originDb = await openDatabase(path.join(data, 'origin', 'db'))
    closers.push(() => originDb.close())
    const origin = new PackageStore({ dir: path.join(data, 'origin', 'store'), db: sublevel(originDb, 'store') })
    closers.push(() => origin.close())
    const releases = []
    for (const [version, src] of [['1.0.0', src1], ['1.1.0', src2]] as const) {
      const started = performance.now()
      const { manifest, digest } = await origin.importSource(src)
      const seconds = (performance.now() - started) / 1000
      const release = newRelease({
        name: 'hello', packageVersion: version, platform: 'linux', risk: 'high',
        manifest: { digest, size: manifest.size },
        install: { type: 'exec', argv: ['install.sh'], health: ['install.sh', '--check'] },
        expires: inDays(90)
      })
      const envelope = await signEnvelope(release, signers('release-1', 'release-2'))
      await writeFile(path.join(data, 'releases', `hello-${version}.release.json`), serializeEnvelope(envelope))
      releases.push({ version, manifest, digest, envelope })
      say(`release   hello ${version}: ${formatBytes(manifest.size)}, ${manifest.chunks.length} chunks, chunked and hashed in ${seconds.toFixed(2)} s, signed 2-of-2`)
    }

    // 4. A local DHT and a swarm: the origin, and endpoints in two sites (home offices).
    const testnet = await startTestnet(3)
    closers.push(() => testnet.destroy())
    const certify = async (keyPair: KeyPair, role: 'origin' | 'endpoint', tenant: string, site: string | null) => serializeEnvelope(await signEnvelope(
      newCertificate({ org: v2.org, holder: keyPair.publicKey, role, tenant, site, issued: now, expires: inDays(30) }), signers('console')))
    const originKey = generateKeyPair()
    const originNode = new SwarmNode({ keyPair: originKey, certificate: await certify(originKey, 'origin', '', null), root: () => v2, store: origin, bootstrap: testnet.bootstrap, host: '127.0.0.1' })
    closers.push(() => originNode.close())
    await originNode.ready()
    for (const r of releases) await originNode.seed(r.digest)

    const sites = ['vienna', 'graz']
    const endpoints = []
    for (let i = 0; i < opts.endpoints; i++) {
      const site = sites[i % sites.length]!
      const db = await openDatabase(path.join(data, 'endpoints', `ep-${i + 1}`, 'db'))
      closers.push(() => db.close())
      const store = new PackageStore({ dir: path.join(data, 'endpoints', `ep-${i + 1}`, 'store'), db: sublevel(db, 'store') })
      closers.push(() => store.close())
      // Enrollment pinned root v1; the endpoint walks to v2 before it trusts anything else.
      const trust = new TrustedState({ db: sublevel(db, 'trust') })
      closers.push(() => trust.close())
      await trust.ready()
      trust.beginCycle()
      await trust.pinRoot(root1)
      await trust.updateRoot(root2)
      const keyPair = generateKeyPair()
      const node = new SwarmNode({ keyPair, certificate: await certify(keyPair, 'endpoint', 'acme-msp/customer-a', site), root: () => trust.root!, store, bootstrap: testnet.bootstrap, host: '127.0.0.1' })
      closers.push(() => node.close())
      await node.ready()
      endpoints.push({ name: `ep-${i + 1}`, site, store, trust, node })
    }
    await Promise.all(endpoints.map((e) => e.node.refresh()))
    say(`swarm     origin + ${endpoints.length} endpoints in sites ${sites.join(' and ')}, on a local DHT; each endpoint pinned root v1 and walked to v2`)

    // 5. Each endpoint verifies each release, fetches it from the swarm, checks it out verified.
    const deliveries = []
    for (const r of releases) {
      const started = performance.now()
      const results = await Promise.all(endpoints.map(async (e) => {
        await e.trust.verifyRelease(r.envelope, { platform: 'linux-x64' })
        const result = await e.node.fetch(r.manifest)
        await e.store.checkout(r.digest, path.join(data, 'endpoints', e.name, 'install', `hello-${r.version}`))
        return result
      }))
      const seconds = (performance.now() - started) / 1000
      const sum = (f: (x: typeof results[number]) => number) => results.reduce((a, x) => a + f(x), 0)
      const fromOrigin = sum((x) => x.received.origin)
      const fromPeers = sum((x) => x.received.site + x.received.peer)
      const reused = sum((x) => x.local)
      deliveries.push({ version: r.version, seconds, fromOrigin, fromPeers, reused, delivered: fromOrigin + fromPeers })
      say(`deliver   hello ${r.version} to ${endpoints.length} endpoints in ${seconds.toFixed(1)} s: ${formatBytes(fromOrigin)} from the origin, ${formatBytes(fromPeers)} between peers, ${formatBytes(reused)} reused from disk; every byte verified`)
    }

    const delivered = deliveries.reduce((a, d) => a + d.delivered, 0)
    const fromOrigin = deliveries.reduce((a, d) => a + d.fromOrigin, 0)
    const update = deliveries[1]!
    const summary = {
      org: v2.org,
      root_version: v2.version,
      endpoints: endpoints.length,
      package_bytes: releases[1]!.manifest.size,
      delivered_bytes: delivered,
      origin_bytes: fromOrigin,
      wan_savings: Math.round((1 - fromOrigin / delivered) * 1000) / 1000,
      update_moved_bytes: update.delivered,
      update_reused_bytes: update.reused
    }
    say(`\nsummary   ${formatBytes(delivered)} delivered, ${formatBytes(fromOrigin)} of it from the origin: WAN savings ${(summary.wan_savings * 100).toFixed(1)} %.`)
    say(`          the 1.1.0 update moved ${formatBytes(update.delivered)} in all; ${formatBytes(update.reused)} came from 1.0.0 already on disk.`)
    say(`          try: npm run patchswarm -- inspect ${path.relative(ctx.io.cwd, path.join(data, 'releases', 'hello-1.1.0.release.json'))}`)
    return summary
  } finally {
    for (const close of closers.reverse()) await close()
  }
}

async function writeFile (file: string, bytes: Uint8Array) {
  await fs.mkdir(path.dirname(file), { recursive: true })
  await fs.writeFile(file, bytes)
}

/** A package folder: an install script and `size` bytes of seeded pseudo-random data, optionally with 1 MiB changed at `changeAt`. */
async function writePackage (dir: string, size: number, changeAt: number | null): Promise<string> {
  const data = seededBytes(size, 42)
  if (changeAt !== null) data.set(seededBytes(1024 * 1024, 7), changeAt)
  await fs.mkdir(path.join(dir, 'lib'), { recursive: true })
  await fs.writeFile(path.join(dir, 'install.sh'), '#!/bin/sh\n# installs hello\nexit 0\n', { mode: 0o755 })
  await fs.writeFile(path.join(dir, 'lib', 'hello.bin'), data)
  return dir
}

function seededBytes (n: number, seed: number): Buffer {
  // xorshift32: fast, deterministic, good enough to look random to a chunker
  const out = Buffer.allocUnsafe(n + 3)
  let x = seed >>> 0 || 1
  for (let i = 0; i < n; i += 4) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0
    out.writeUInt32LE(x, i)
  }
  return out.subarray(0, n)
}
