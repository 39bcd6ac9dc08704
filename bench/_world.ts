// A world of swarm peers for the benchmarks (bench/throughput.ts, bench/swarm.ts): a local
// testnet, an organisation, a package in a source folder, and peers in their own processes
// (fixtures/swarm-peer.ts). close() kills every process it started and removes the folder; it is
// also run on SIGINT/SIGTERM and on exit, so no peer outlives the benchmark.
import fs from 'node:fs/promises'
import { readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { generateKeyPair } from '../lib/crypto/keys.js'
import { buildManifest, manifestBytes, manifestDigest, type Manifest, type ChunkingParams } from '../lib/content/index.js'
import { startTestnet, type LocalTestnet } from '../lib/swarm/transport.js'
import { startPeer, type PeerProcess, type PeerEvent } from '../fixtures/peers.js'
import type { PeerConfig } from '../fixtures/swarm-peer.js'
import { makeOrg, seededBytes, type Org } from '../fixtures/org.js'

export const MiB = 1024 * 1024

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

export interface World {
  base: string
  net: LocalTestnet
  org: Org
  manifest: Manifest
  digest: string
  source: string
  procs: PeerProcess[]
  peer (name: string, opts?: Partial<PeerConfig> & { role?: 'origin' | 'endpoint' }): Promise<PeerProcess>
  /** A child process that is not a swarm peer (e.g. the raw baseline); killed on close too. */
  spawnChild (args: string[]): ChildProcess
  close (): Promise<void>
}

/**
 * The node flags of `patchswarm` as installed: those on the #! line of bin/patchswarm.ts, for every
 * process a benchmark starts, ours and the baselines alike. BENCH_DEPLOYED_FLAGS=0 leaves them out.
 */
export function deployedNodeArgs (): string[] {
  if (process.env.BENCH_DEPLOYED_FLAGS === '0') return []
  const first = readFileSync(path.join(root, 'bin/patchswarm.ts'), 'utf8').split('\n', 1)[0]!
  const words = first.replace(/^#!/, '').trim().split(/\s+/)
  if (!words.includes('node')) throw new Error(`bin/patchswarm.ts: its #! line does not run node: ${first}`)
  return words.slice(words.indexOf('node') + 1)
}

/**
 * Node flags for every process a benchmark starts: the deployed ones; BENCH_PROF=dir →
 * `--cpu-prof --cpu-prof-dir dir`; BENCH_NODE_ARGS (space-separated) for others, e.g.
 * `--trace-gc`, which NODE_OPTIONS refuses.
 */
export function nodeArgs (): string[] {
  const dir = process.env.BENCH_PROF
  const extra = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean)
  return [...deployedNodeArgs(), ...(dir ? ['--cpu-prof', '--cpu-prof-dir', path.resolve(dir)] : []), ...extra]
}

export async function makeWorld (size: number, chunking: Partial<ChunkingParams> = {}): Promise<World> {
  const base = await fs.mkdtemp(path.join(process.env.BENCH_TMP ?? os.tmpdir(), 'patchswarm-bench-'))
  const children: ChildProcess[] = []
  const procs: PeerProcess[] = []
  let net: LocalTestnet | null = null
  const killAll = () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL')
  }
  const onSignal = () => { killAll(); rmSync(base, { recursive: true, force: true }); process.exit(130) }
  process.on('exit', killAll)
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  let closed = false
  const close = async () => {
    if (closed) return
    closed = true
    // SIGTERM first (peers close cleanly, profiles get written), SIGKILL after 5 s.
    await Promise.all(procs.map((p) => p.stop()))
    await Promise.all(children.map((c) => c.exitCode !== null || c.signalCode !== null ? null : new Promise((resolve) => { c.once('exit', resolve); c.kill('SIGTERM'); setTimeout(() => c.kill('SIGKILL'), 5000).unref() })))
    killAll()
    await net?.destroy()
    process.off('exit', killAll)
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    await fs.rm(base, { recursive: true, force: true })
  }
  try {
    net = await startTestnet(3)
    const org = await makeOrg()
    const source = path.join(base, 'source')
    await fs.mkdir(source)
    await fs.writeFile(path.join(source, 'payload.bin'), seededBytes(size, 7))
    const manifest = await buildManifest(source, chunking)
    const world: World = {
      base, net, org, manifest, digest: manifestDigest(manifest), source, procs, close,
      async peer (name, opts = {}) {
        const seed = randomBytes(32).toString('hex')
        const keyPair = generateKeyPair(Buffer.from(seed, 'hex'))
        const certificate = await org.certify(keyPair, { role: opts.role ?? 'endpoint', tenant: opts.role === 'origin' ? '' : 'msp-1/customer-a' })
        const { role: _r, ...rest } = opts
        const p = await startPeer(name, {
          dir: path.join(base, name), bootstrap: net!.bootstrap, seed, certificate: Buffer.from(certificate).toString('hex'),
          root: org.root, manifest: manifestBytes(manifest).toString('utf8'), ...rest
        }, { nodeArgs: nodeArgs() })
        procs.push(p)
        return p
      },
      spawnChild (args) {
        const c = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
        children.push(c)
        return c
      }
    }
    return world
  } catch (err) {
    await close()
    throw err
  }
}

/** JSON-line events of a plain child process. */
export function jsonLines (child: ChildProcess): { next (name: string, ms?: number): Promise<PeerEvent> } {
  const events: PeerEvent[] = []
  const waiters: Array<{ name: string, resolve: (e: PeerEvent) => void }> = []
  let stderr = ''
  child.stderr?.on('data', (d) => { stderr += d })
  createInterface({ input: child.stdout! }).on('line', (line) => {
    let e: PeerEvent
    try { e = JSON.parse(line) } catch { return }
    const w = waiters.findIndex((x) => x.name === e.event)
    if (w >= 0) waiters.splice(w, 1)[0]!.resolve(e)
    else events.push(e)
  })
  return {
    next (name, ms = 120_000) {
      const i = events.findIndex((e) => e.event === name)
      if (i >= 0) return Promise.resolve(events.splice(i, 1)[0]!)
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no '${name}' within ${ms} ms; stderr: ${stderr.slice(-2000)}`)), ms)
        child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`child exited (${code}) before '${name}'; stderr: ${stderr.slice(-2000)}`)) })
        waiters.push({ name, resolve: (e) => { clearTimeout(timer); resolve(e) } })
      })
    }
  }
}

/** Events of one kind a peer reported so far. */
export function eventsOf (p: PeerProcess, name: string): PeerEvent[] {
  return p.events.filter((e) => e.event === name)
}

/** Peers a process has an open channel with (peer-open minus peer-close). */
export function openPeers (p: PeerProcess): number {
  const open = new Set<string>()
  for (const e of p.events) {
    if (e.event === 'peer-open') open.add(e.keyid as string)
    else if (e.event === 'peer-close') open.delete(e.keyid as string)
  }
  return open.size
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

export const round = (x: number, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits

/** Polls `test` every 50 ms until it holds or `ms` passed; returns whether it held. */
export async function until (test: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms
  while (!test()) {
    if (Date.now() > end) return false
    await sleep(50)
  }
  return true
}
