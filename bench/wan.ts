// `npm run bench -- wan` (root): 10 home offices behind an emulated WAN (../shared/netsim/netsim.sh:
// 10 Mbit/s per access link each way, 20 ms and 0.5 % loss per link and direction, so 80 ms RTT and
// ~1 % loss home to home) and an origin in its own namespace publishing a 20 MB package. In one run:
//  (a) the swarm: one patchswarm peer per home (fixtures/swarm-peer.ts inside wsim-h<i>, each its own
//      site) fetches from the origin peer (inside wsim-origin) and from each other, over a DHT
//      bootstrap bound to 10.0.100.2;
//  (b) client–server: node:http in wsim-origin serves the same bytes; every home downloads all of it
//      at once (curl, or a tiny node client, inside its namespace), timed until the last home has it.
// Without root or without `ip` it prints why and returns {skipped: true}. The test bed is always
// torn down (finally, SIGINT/SIGTERM/SIGHUP, process exit) and every child is killed.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { randomBytes } from 'node:crypto'
import { existsSync, rmSync } from 'node:fs'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { generateKeyPair } from '../lib/crypto/keys.js'
import { buildManifest, manifestBytes, manifestDigest, DEFAULT_CHUNKING, type Manifest } from '../lib/content/index.js'
import type { PeerRole } from '../lib/trust/index.js'
import { startPeer, type PeerProcess, type PeerEvent } from '../fixtures/peers.js'
import { makeOrg, seededBytes } from '../fixtures/org.js'
import type { PeerConfig } from '../fixtures/swarm-peer.js'
import type { BenchResult } from './run.js'
import { nodeArgs } from './_world.js'

export const summary = { figure: 'swarm_seconds', baseline: 'client_server_seconds', goal: 'speedup > 1, origin_egress_ratio <= 1.1' }

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.join(here, '..')

const HOMES = 10
const RATE_MBIT = 10
const DELAY_MS = 20
const LOSS_PCT = 0.5
const PACKAGE_BYTES = 20_000_000 // 20 MB
const ORIGIN_HOST = '10.0.100.2'
const HTTP_PORT = 8080
const NETSIM_ENV = { N: String(HOMES), RATE: `${RATE_MBIT}mbit`, DELAY_MS: String(DELAY_MS), LOSS_PCT: String(LOSS_PCT) }
/** Overall limits, so a stuck run ends (and tears down) on its own. */
const SWARM_TIMEOUT_MS = 300_000
const CLIENT_SERVER_TIMEOUT_MS = 600_000

const homeNs = (i: number) => `wsim-h${i}`
const homeHost = (i: number) => `10.0.${i}.2`
const nsWrap = (ns: string) => ['ip', 'netns', 'exec', ns]
const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d

function netsimPath (): string {
  return process.env.NETSIM ?? path.resolve(root, '..', 'shared', 'netsim', 'netsim.sh')
}

function has (cmd: string, args: string[] = ['--version']): boolean {
  const r = spawnSync(cmd, args, { stdio: 'ignore' })
  return !r.error
}

/** Why the benchmark cannot run here, or null. */
function preflight (): string | null {
  if (process.platform !== 'linux') return 'needs Linux network namespaces'
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return 'needs root (network namespaces, tc); run it as root'
  if (!has('ip', ['-V'])) return "needs iproute2's `ip` on the PATH"
  for (const cmd of ['ethtool', 'python3']) if (!has(cmd)) return `netsim.sh needs \`${cmd}\` on the PATH`
  if (!existsSync('/dev/net/tun')) return 'netsim.sh needs /dev/net/tun'
  if (!existsSync(netsimPath())) return `netsim.sh not found at ${netsimPath()} (set NETSIM=…)`
  const list = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' })
  if (/^wsim-/m.test(list.stdout ?? '')) return 'wsim-* namespaces exist already (another run in progress?); if stale: bash netsim.sh down'
  return null
}

// ── the test bed, its children, and tearing both down whatever happens ───────────────────────

class Bed {
  up = false
  /** The run's scratch folder, removed on a signal too. */
  scratch: string | null = null
  readonly children = new Set<ChildProcess>()
  readonly peers: PeerProcess[] = []
  private onSignal = (sig: NodeJS.Signals) => {
    console.error(`# wan: ${sig}: tearing the test bed down`)
    this.teardownSync()
    process.exit(sig === 'SIGINT' ? 130 : 143)
  }

  private onExit = () => this.teardownSync()

  constructor () {
    for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(s, this.onSignal)
    process.on('exit', this.onExit)
  }

  netsim (cmd: 'up' | 'down'): number {
    const t = performance.now()
    const once = () => {
      // A half-made bed is torn down too: mark it up before trying.
      if (cmd === 'up') {
        this.up = true
        // netsim.sh waits for "ready" in delayline.out, which its background job truncates
        // asynchronously: a stale file from the last run can let `up` race ahead of the TUN.
        rmSync(path.join(process.env.DIR ?? '/tmp/netsim', 'delayline.out'), { force: true })
      }
      return spawnSync('bash', [netsimPath(), cmd], { env: { ...process.env, ...NETSIM_ENV }, encoding: 'utf8' })
    }
    let r = once()
    if (r.status !== 0 && cmd === 'up') {
      console.error(`# wan: netsim.sh up failed (${(r.stderr ?? '').trim().slice(-200)}); tearing down and retrying once`)
      spawnSync('bash', [netsimPath(), 'down'], { env: { ...process.env, ...NETSIM_ENV }, stdio: 'ignore' })
      r = once()
    }
    if (r.status !== 0) throw new Error(`netsim.sh ${cmd} failed (${r.status}): ${(r.stderr ?? '').slice(-2000)}`)
    this.up = cmd === 'up'
    return (performance.now() - t) / 1000
  }

  track (child: ChildProcess): ChildProcess {
    this.children.add(child)
    child.on('exit', () => this.children.delete(child))
    return child
  }

  /** Graceful: peers get SIGTERM (5 s, then SIGKILL), other children SIGTERM then SIGKILL. */
  async stopChildren (): Promise<void> {
    await Promise.all(this.peers.map((p) => p.stop().catch(() => p.kill())))
    await Promise.all([...this.children].map((c) => stopChild(c)))
  }

  async teardown (): Promise<number> {
    try {
      await this.stopChildren()
    } finally {
      this.killAll()
    }
    const seconds = this.up ? this.netsim('down') : 0
    this.dispose()
    return seconds
  }

  /** For signals and process exit: nothing asynchronous. */
  teardownSync (): void {
    this.killAll()
    if (this.up) {
      spawnSync('bash', [netsimPath(), 'down'], { env: { ...process.env, ...NETSIM_ENV }, stdio: 'ignore' })
      this.up = false
    }
    if (this.scratch) rmSync(this.scratch, { recursive: true, force: true })
  }

  private killAll (): void {
    for (const p of this.peers) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL')
    for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  }

  dispose (): void {
    for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.off(s, this.onSignal)
    process.off('exit', this.onExit)
  }
}

function stopChild (c: ChildProcess, ms = 3000): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => {
    const timer = setTimeout(() => c.kill('SIGKILL'), ms)
    c.once('exit', () => { clearTimeout(timer); resolve() })
    c.kill('SIGTERM')
  })
}

/** A helper (bench/_wan-*.ts) inside a namespace; resolves with its first JSON event named `event`. */
async function startHelper (bed: Bed, ns: string, file: string, args: string[], event: string, ms = 30_000): Promise<{ child: ChildProcess, first: PeerEvent, events: PeerEvent[] }> {
  const child = bed.track(spawn('ip', ['netns', 'exec', ns, process.execPath, ...nodeArgs(), '--import', 'tsx', path.join(here, file), ...args], { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] }))
  const events: PeerEvent[] = []
  let stderr = ''
  child.stderr!.on('data', (d) => { stderr += d })
  const first = await new Promise<PeerEvent>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${file}: no '${event}' within ${ms} ms; stderr: ${stderr.slice(-2000)}`)), ms)
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`${file} exited (${code}); stderr: ${stderr.slice(-2000)}`)) })
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let e: PeerEvent
      try { e = JSON.parse(line) } catch { return }
      events.push(e)
      if (e.event === event) { clearTimeout(timer); resolve(e) }
    })
  })
  return { child, first, events }
}

/** Bytes the origin's access link has carried out of wsim-origin (its veth end in the core). */
function originWireBytes (): number {
  const r = spawnSync('ip', ['-n', 'wsim-core', '-s', '-j', 'link', 'show', 'dev', 'c100'], { encoding: 'utf8' })
  try {
    const j = JSON.parse(r.stdout) as Array<{ stats64?: { rx?: { bytes?: number } } }>
    return j[0]?.stats64?.rx?.bytes ?? NaN
  } catch {
    return NaN
  }
}

/** The origin uplink shaper's (tbf on ifb100 in the core) packet counters: sent and dropped. */
function originShaper (): { packets: number, drops: number } {
  const r = spawnSync('ip', ['netns', 'exec', 'wsim-core', 'tc', '-s', '-j', 'qdisc', 'show', 'dev', 'ifb100'], { encoding: 'utf8' })
  try {
    const q = (JSON.parse(r.stdout) as Array<{ kind?: string, packets?: number, drops?: number }>).find((x) => x.kind === 'tbf')
    return { packets: q?.packets ?? NaN, drops: q?.drops ?? NaN }
  } catch {
    return { packets: NaN, drops: NaN }
  }
}

const dropPct = (a: { packets: number, drops: number }, b: { packets: number, drops: number }) =>
  round(100 * (b.drops - a.drops) / Math.max(1, (b.packets - a.packets) + (b.drops - a.drops)), 2)

function sysctlIn (ns: string, key: string): string {
  return (spawnSync('ip', ['netns', 'exec', ns, 'sysctl', '-n', key], { encoding: 'utf8' }).stdout ?? '').trim()
}

// ── the organisation and the package ──────────────────────────────────────────────────────


function chunking () {
  // WAN_CHUNK_AVG=65536 tries smaller chunks; the default is what a publisher gets by default.
  const avg = Number(process.env.WAN_CHUNK_AVG ?? 0)
  return avg > 0 ? { min: Math.floor(avg / 4), avg, max: avg * 4 } : DEFAULT_CHUNKING
}

// The homes are directly reachable (netsim routes, it does not NAT), so the peers say so:
// `firewalled: false`, and they connect directly. Left firewalled (the default off loopback), a
// peer relies on hyperdht's hole-punching, which between two netsim namespaces never completes
// (connection, then no patchswarm/1 hello within 10 s); WAN_TRANSPORT=firewalled shows that.
function firewalled (): boolean {
  return process.env.WAN_TRANSPORT === 'firewalled'
}

function nodeTuning (): PeerConfig['node'] {
  const t: NonNullable<PeerConfig['node']> = {}
  const n = (k: string) => Number(process.env[k] ?? 0) || undefined
  if (n('WAN_SITE_GRACE_MS')) t.siteGraceMs = n('WAN_SITE_GRACE_MS')!
  if (n('WAN_REQUEST_TIMEOUT_MS')) t.requestTimeoutMs = n('WAN_REQUEST_TIMEOUT_MS')!
  if (n('WAN_ORIGIN_RESERVE_MS')) t.originReserveMs = n('WAN_ORIGIN_RESERVE_MS')!
  if (n('WAN_ORIGIN_FALLBACK_MS')) t.originFallbackMs = n('WAN_ORIGIN_FALLBACK_MS')!
  return Object.keys(t).length ? t : undefined
}

// ── (a) the swarm ─────────────────────────────────────────────────────────────────────────

interface Counters { [source: string]: { up: number, down: number } }
const sum = (c: Counters | undefined, dir: 'up' | 'down') => c ? Object.values(c).reduce((s, x) => s + (x?.[dir] ?? 0), 0) : 0

async function swarmPhase (bed: Bed, base: string, source: string, manifest: Manifest): Promise<BenchResult> {
  const org = await makeOrg()
  const digest = manifestDigest(manifest)
  const manifestText = manifestBytes(manifest).toString('utf8')
  const tuning = nodeTuning()

  let t = performance.now()
  const dht = await startHelper(bed, 'wsim-origin', '_wan-dht.ts', [ORIGIN_HOST], 'ready')
  const bootstrap = dht.first.bootstrap as Array<{ host: string, port: number }>
  const dhtSeconds = (performance.now() - t) / 1000

  const peerConfig = async (name: string, role: PeerRole, host: string, extra: Partial<PeerConfig>): Promise<PeerConfig> => {
    const seed = randomBytes(32).toString('hex')
    const cert = await org.certify(generateKeyPair(Buffer.from(seed, 'hex')), { role })
    return {
      dir: path.join(base, name), bootstrap, seed, certificate: Buffer.from(cert).toString('hex'), root: org.root,
      host, firewalled: firewalled(), manifest: manifestText, ...(tuning ? { node: tuning } : {}), ...extra
    }
  }

  t = performance.now()
  const origin = await startPeer('origin', await peerConfig('origin', 'origin', ORIGIN_HOST, { seedFrom: source }), { wrap: nsWrap('wsim-origin'), nodeArgs: nodeArgs() })
  bed.peers.push(origin)
  await origin.event('seeding', 60_000)
  const originSeconds = (performance.now() - t) / 1000

  const wire0 = originWireBytes()
  const shaper0 = originShaper()
  const configs = await Promise.all(Array.from({ length: HOMES }, (_, k) => peerConfig(`home-${k + 1}`, 'endpoint', homeHost(k + 1), { progressEvery: 1000 })))
  const t0 = performance.now()
  const homes: PeerProcess[] = []
  for (let k = 0; k < HOMES; k++) {
    const p = await startPeer(`home-${k + 1}`, configs[k]!, { wrap: nsWrap(homeNs(k + 1)), nodeArgs: nodeArgs() })
    bed.peers.push(p)
    homes.push(p)
  }
  // Parent-clock times of each home's milestones.
  const at = (p: PeerProcess, test: (e: PeerEvent) => boolean, ms: number) => p.waitFor(test, ms).then((e) => ({ e, t: performance.now() }))
  const firstConn = homes.map((p) => at(p, (e) => e.event === 'connection', 120_000).catch(() => null))
  const readies = homes.map((p) => at(p, (e) => e.event === 'ready', 120_000))
  const firstOpen = homes.map((p) => at(p, (e) => e.event === 'peer-open', SWARM_TIMEOUT_MS).catch(() => null))
  const originOpen = homes.map((p) => at(p, (e) => e.event === 'peer-open' && e.role === 'origin', SWARM_TIMEOUT_MS).catch(() => null))
  const dones = homes.map((p) => at(p, (e) => e.event === 'done', SWARM_TIMEOUT_MS))
  // Origin bytes over time (its accounting reports every second).
  const originSeries: Array<{ t: number, up: number }> = []
  origin.child.stdout!.on('data', () => {
    const last = origin.events[origin.events.length - 1]
    if (last?.event === 'traffic') {
      const up = sum(last.bytes as Counters, 'up')
      if (originSeries[originSeries.length - 1]?.up !== up) originSeries.push({ t: performance.now(), up })
    }
  })

  const ready = await Promise.all(readies)
  // Fail fast (not after SWARM_TIMEOUT_MS) when the homes cannot open a single swarm connection.
  await Promise.all(homes.map((p) => p.waitFor((e) => e.event === 'peer-open', 45_000).catch(() => {
    const failed = homes.reduce((s, h) => s + h.events.filter((e) => e.event === 'handshake-failed').length, 0)
    throw new Error(`${p.name}: no swarm connection opened within 45 s (${firewalled() ? "firewalled" : "direct"} transport; ${failed} handshake failures across the homes; last: ${JSON.stringify(p.events.slice(-2))})`)
  })))
  const done = await Promise.all(dones)
  const tDone = Math.max(...done.map((d) => d.t))
  const tFirstReady = Math.min(...ready.map((r) => r.t))
  // The origin's counters as of after the last home finished (it reports once a second).
  const seen = origin.events.length
  const after = await origin.waitFor((e) => e.event === 'traffic' && origin.events.indexOf(e) >= seen, 5000)
  // The origin books what it serves by the receiver's kind ('peer'), so its egress is all of 'up'.
  const originUp = sum(after.bytes as Counters, 'up')
  // What the homes served each other (their latest report) and what they accepted.
  const homeLast = await Promise.all(homes.map((p) => { const n = p.events.length; return p.waitFor((e) => e.event === 'traffic' && p.events.indexOf(e) >= n, 5000).catch(() => null) }))
  const homesUp = homeLast.reduce((s, e) => s + sum(e?.bytes as Counters | undefined, 'up'), 0)
  const wire = originWireBytes() - wire0
  const shaperDrop = dropPct(shaper0, originShaper())
  const opens = (await Promise.all(firstOpen)).map((x, k) => x === null ? NaN : x.t - ready[k]!.t)
  const originOpens = (await Promise.all(originOpen)).map((x, k) => x === null ? NaN : x.t - ready[k]!.t)
  const fromOrigin = done.reduce((s, d) => s + ((d.e.traffic as Counters).origin?.down ?? 0), 0)
  const connSeconds = (await Promise.all(firstConn)).map((x) => x === null ? NaN : (x.t - t0) / 1000)
  const fromPeers = done.reduce((s, d) => s + ((d.e.traffic as Counters).peer?.down ?? 0) + ((d.e.traffic as Counters).site?.down ?? 0), 0)
  const bans = homes.reduce((s, p) => s + p.events.filter((e) => e.event === 'ban').length, 0)
  const closes = homes.reduce((s, p) => s + p.events.filter((e) => e.event === 'peer-close').length, 0)
  // When did the origin have one whole copy out (its busiest part), from the series.
  const copyOut = originSeries.find((s) => s.up >= manifest.size)
  const median = (xs: number[]) => { const s = xs.filter(Number.isFinite).sort((a, b) => a - b); return s.length ? s[Math.floor(s.length / 2)]! : NaN }
  const swarmSeconds = (tDone - tFirstReady) / 1000

  t = performance.now()
  await Promise.all(bed.peers.map((p) => p.stop()))
  bed.peers.length = 0
  await stopChild(dht.child)
  const stopSeconds = (performance.now() - t) / 1000

  return {
    swarm_transport: firewalled() ? 'firewalled (hole-punching)' : 'direct (firewalled: false)',
    swarm_seconds: round(swarmSeconds),
    swarm_wall_seconds: round((tDone - t0) / 1000),
    swarm_join_seconds: round((Math.max(...ready.map((r) => r.t)) - t0) / 1000),
    swarm_first_connection_seconds_median: round(median(connSeconds)),
    swarm_join_spread_seconds: round((Math.max(...ready.map((r) => r.t)) - tFirstReady) / 1000),
    swarm_fetch_seconds_max: round(Math.max(...done.map((d) => d.e.ms as number)) / 1000),
    swarm_fetch_seconds_min: round(Math.min(...done.map((d) => d.e.ms as number)) / 1000),
    swarm_first_peer_open_ms_median: Math.round(median(opens)),
    swarm_origin_open_ms_median: Math.round(median(originOpens)),
    swarm_origin_open_ms_max: Math.round(Math.max(...originOpens.filter(Number.isFinite))),
    swarm_origin_copy_out_seconds: copyOut ? round((copyOut.t - tFirstReady) / 1000) : -1,
    origin_egress_ratio: round(originUp / manifest.size, 3),
    origin_wire_egress_ratio: round(wire / manifest.size, 3),
    origin_uplink_shaper_drop_pct: shaperDrop,
    swarm_bytes_from_origin_ratio: round(fromOrigin / manifest.size, 3),
    swarm_bytes_from_peers_ratio: round(fromPeers / manifest.size, 3),
    swarm_peers_served_ratio: round(homesUp / manifest.size, 3),
    swarm_bans: bans,
    swarm_peer_closes: closes,
    setup_dht_seconds: round(dhtSeconds),
    setup_origin_seconds: round(originSeconds),
    teardown_swarm_seconds: round(stopSeconds)
  }
}

// ── (b) client–server ─────────────────────────────────────────────────────────────────────

const NODE_CLIENT = `
import http from 'node:http'
const t = performance.now()
http.get(process.argv[1], (res) => {
  let n = 0
  res.on('data', (d) => { n += d.length })
  res.on('end', () => { process.stdout.write(n + ' ' + ((performance.now() - t) / 1000).toFixed(3)); process.exit(res.statusCode === 200 ? 0 : 1) })
}).on('error', (e) => { console.error(e.message); process.exit(1) })
`

async function clientServerPhase (bed: Bed, file: string, size: number): Promise<BenchResult> {
  let t = performance.now()
  const server = await startHelper(bed, 'wsim-origin', '_wan-http.ts', [ORIGIN_HOST, String(HTTP_PORT), file], 'listening')
  const serverSeconds = (performance.now() - t) / 1000
  const url = `http://${ORIGIN_HOST}:${HTTP_PORT}/payload`
  const useCurl = has('curl')
  const cmd = useCurl
    ? ['curl', '-sS', '--fail', '--max-time', String(CLIENT_SERVER_TIMEOUT_MS / 1000), '-o', '/dev/null', '-w', '%{size_download} %{time_total}', url]
    : [process.execPath, ...nodeArgs(), '--input-type=module', '-e', NODE_CLIENT, url]
  const wire0 = originWireBytes()
  const shaper0 = originShaper()
  const t0 = performance.now()
  const runs = Array.from({ length: HOMES }, (_, k) => new Promise<{ bytes: number, seconds: number, t: number }>((resolve, reject) => {
    const child = bed.track(spawn('ip', [...nsWrap(homeNs(k + 1)).slice(1), ...cmd], { stdio: ['ignore', 'pipe', 'pipe'] }))
    let out = ''
    let err = ''
    child.stdout!.on('data', (d) => { out += d })
    child.stderr!.on('data', (d) => { err += d })
    const timer = setTimeout(() => child.kill('SIGKILL'), CLIENT_SERVER_TIMEOUT_MS + 10_000)
    child.on('exit', (code) => {
      clearTimeout(timer)
      const tEnd = performance.now()
      const [bytes, seconds] = out.trim().split(/\s+/).map(Number)
      if (code !== 0 || bytes !== size) reject(new Error(`home ${k + 1}: download failed (exit ${code}, ${bytes} of ${size} bytes): ${err.slice(-500)}`))
      else resolve({ bytes: bytes!, seconds: seconds!, t: tEnd })
    })
  }))
  const results = await Promise.all(runs)
  const tLast = Math.max(...results.map((r) => r.t))
  const wire = originWireBytes() - wire0
  const shaperDrop = dropPct(shaper0, originShaper())
  t = performance.now()
  await stopChild(server.child)
  const served = server.events.find((e) => e.event === 'served')
  const servedBytes = (served?.bytes as number | undefined) ?? results.reduce((s, r) => s + r.bytes, 0)
  return {
    client_server_seconds: round((tLast - t0) / 1000),
    client_server_first_seconds: round((Math.min(...results.map((r) => r.t)) - t0) / 1000),
    client_server_origin_egress_ratio: round(servedBytes / size, 3),
    client_server_origin_wire_egress_ratio: round(wire / size, 3),
    client_server_origin_uplink_shaper_drop_pct: shaperDrop,
    client_server_client: useCurl ? 'curl' : 'node',
    setup_http_seconds: round(serverSeconds),
    teardown_http_seconds: round((performance.now() - t) / 1000)
  }
}

// ── the benchmark ─────────────────────────────────────────────────────────────────────────

export async function run (): Promise<BenchResult> {
  const why = preflight()
  if (why) {
    console.error(`# wan: skipped: ${why}`)
    return { bench: 'wan', skipped: true, reason: why }
  }
  const base = await fs.mkdtemp(path.join(os.tmpdir(), 'patchswarm-wan-'))
  const bed = new Bed()
  bed.scratch = base
  try {
    let t = performance.now()
    const source = path.join(base, 'source')
    await fs.mkdir(source)
    const file = path.join(source, 'payload.bin')
    await fs.writeFile(file, seededBytes(PACKAGE_BYTES, 7))
    const manifest = await buildManifest(source, chunking())
    const packageSeconds = (performance.now() - t) / 1000

    const upSeconds = bed.netsim('up')
    const cc = sysctlIn('wsim-origin', 'net.ipv4.tcp_congestion_control')
    console.error(`# wan: test bed up in ${upSeconds.toFixed(2)} s (${HOMES} homes, ${RATE_MBIT} Mbit/s, ${DELAY_MS} ms + ${LOSS_PCT} % per link; origin TCP: ${cc})`)

    console.error(`# wan: (a) swarm, ${HOMES} peers, ${(manifest.size / 1e6).toFixed(1)} MB in ${manifest.chunks.length} chunks …`)
    const swarm = await swarmPhase(bed, base, source, manifest)
    console.error(`# wan: swarm ${swarm.swarm_seconds} s, origin egress ${swarm.origin_egress_ratio}×; (b) client–server …`)
    const cs = await clientServerPhase(bed, file, manifest.size)
    console.error(`# wan: client–server ${cs.client_server_seconds} s`)

    const downSeconds = await bed.teardown()
    // Fluid bound with 10 Mbit/s everywhere: max(F/u_s, F/d_min, N·F/(u_s + Σu_i)).
    const rate = RATE_MBIT * 1e6 / 8
    const F = manifest.size
    const bound = Math.max(F / rate, F / rate, HOMES * F / (rate + HOMES * rate))
    const speedup = (cs.client_server_seconds as number) / (swarm.swarm_seconds as number)
    return {
      bench: 'wan',
      homes: HOMES,
      package_bytes: F,
      chunks: manifest.chunks.length,
      rate_mbit: RATE_MBIT,
      rtt_ms: 4 * DELAY_MS,
      loss_pct_per_path: round(100 * (1 - (1 - LOSS_PCT / 100) ** 2), 2),
      tcp_congestion_control: cc,
      swarm_seconds: swarm.swarm_seconds!,
      client_server_seconds: cs.client_server_seconds!,
      bound_seconds: round(bound),
      speedup: round(speedup),
      ratio: round(speedup),
      swarm_bound_ratio: round((swarm.swarm_seconds as number) / bound),
      origin_egress_ratio: swarm.origin_egress_ratio!,
      client_server_origin_egress_ratio: cs.client_server_origin_egress_ratio!,
      ...swarm,
      ...cs,
      setup_package_seconds: round(packageSeconds),
      netsim_up_seconds: round(upSeconds),
      netsim_down_seconds: round(downSeconds)
    }
  } finally {
    await bed.teardown().catch((err) => { console.error(`# wan: teardown: ${(err as Error).message}`); bed.teardownSync() })
    bed.dispose()
    await fs.rm(base, { recursive: true, force: true })
  }
}
