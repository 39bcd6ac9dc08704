// `patchswarm demo` (what `npm start` runs): the publisher's and an endpoint's side of patchswarm on
// a fresh data folder, through the public library API only. Keys, a root rotated v1 → v2, two
// signed releases of one package, and an endpoint that verifies them and receives the update
// as a delta: chunks it already holds are copied locally, only new ones are fetched.
import type { Command } from 'commander'
import fs from 'node:fs/promises'
import path from 'node:path'
import {
  generateKeyPair, keySigner, keyIdOf, writeSecretKeyFile, openDatabase, sublevel,
  PackageStore, newRoot, rotateRoot, newRelease, signEnvelope, serializeEnvelope, TrustedState,
  type KeyPair, type Database
} from '../../lib/index.js'
import type { CliContext } from '../cli.js'
import { parsePositiveInt } from './options.js'
import { formatBytes } from './release.js'

interface DemoOptions { data: string, sizeMib: number, json?: boolean }

export function registerDemoCommand (program: Command, ctx: CliContext): void {
  program.command('demo')
    .description('publish, verify and deliver a package update on this machine (what `npm start` runs)')
    .option('--data <dir>', 'data folder (emptied and reused on every run)', 'data/demo')
    .option('--size-mib <n>', 'size of the demo package in MiB', parsePositiveInt, 32)
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
  const publisherDb = await openDatabase(path.join(data, 'publisher', 'db'))
  const endpointDb = await openDatabase(path.join(data, 'endpoint', 'db'))
  const publisher = new PackageStore({ dir: path.join(data, 'publisher', 'store'), db: sublevel(publisherDb, 'store') })
  const endpoint = new PackageStore({ dir: path.join(data, 'endpoint', 'store'), db: sublevel(endpointDb, 'store') })
  try {
    const releases = []
    for (const [version, src] of [['1.0.0', src1], ['1.1.0', src2]] as const) {
      const started = performance.now()
      const { manifest, digest } = await publisher.importSource(src)
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

    // 4. The endpoint: pinned root v1 at enrollment, walks to v2, verifies each release.
    const trust = new TrustedState({ db: sublevel(endpointDb, 'trust') })
    await trust.ready()
    trust.beginCycle()
    await trust.pinRoot(root1)
    await trust.updateRoot(root2)
    say('endpoint  pinned root v1, walked to v2 (checked against old and new thresholds)')

    const deliveries = []
    for (const r of releases) {
      const verified = await trust.verifyRelease(r.envelope, { platform: 'linux-x64' })
      const rx = await endpoint.receive(r.manifest)
      // Fetch only what is missing; a later issue does this over the swarm instead of from the publisher's store.
      for (const hash of rx.missing()) await rx.putChunk(hash, await publisher.readChunk(hash))
      const p = rx.progress
      await rx.commit()
      const installDir = path.join(data, 'endpoint', 'install', `hello-${r.version}`)
      await endpoint.checkout(r.digest, installDir)
      deliveries.push({ version: r.version, size: p.bytes, fetched: p.bytesReceived, reused: p.bytesCopied })
      say(`endpoint  hello ${r.version}: verified (${verified.signer.role}); fetched ${formatBytes(p.bytesReceived)}, reused ${formatBytes(p.bytesCopied)} already on disk; checked out to ${installDir}`)
    }
    await trust.close()

    const update = deliveries[1]!
    const summary = {
      org: v2.org,
      root_version: v2.version,
      releases: releases.length,
      package_bytes: update.size,
      update_fetched_bytes: update.fetched,
      update_reused_bytes: update.reused,
      update_fetched_ratio: Math.round((update.fetched / update.size) * 1000) / 1000
    }
    say(`\nsummary   the 1.1.0 update moved ${formatBytes(update.fetched)} of ${formatBytes(update.size)} (${(summary.update_fetched_ratio * 100).toFixed(1)} %); everything verified.`)
    say(`          try: npm run patchswarm -- inspect ${path.relative(ctx.io.cwd, path.join(data, 'releases', 'hello-1.1.0.release.json'))}`)
    return summary
  } finally {
    await publisher.close()
    await endpoint.close()
    await closeAll(publisherDb, endpointDb)
  }
}

async function closeAll (...dbs: Database[]) {
  for (const db of dbs) await db.close()
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
