// 20 peers and an origin on loopback, each in its own process, fetch a 32 MiB package (default
// 256 KiB-average chunks). Every upload, the origin's included, is capped at 2 MB/s, MB = 10^6
// bytes (courtesy `upload` = 2,000,000 B/s); downloads are uncapped. The clock starts when every
// peer is ready and connected to all the others (full mesh) and is told to go at the same instant;
// it stops at the last peer's `done` (package verified and committed).
//
//   bound_seconds = max(F/u_s, F/d_min, N·F/(u_s + Σu_i))   (d_min = ∞: downloads are uncapped)
//   ratio = seconds / bound_seconds                          goal ≤ 1.5
//   origin_egress_ratio = bytes the origin uploaded (its accounting) / F   goal ≤ 1.1
//
// BENCH_PEERS (20), BENCH_MIB (32), BENCH_UPLOAD (2e6 B/s) change the world; BENCH_PROF=dir
// writes CPU profiles of every peer there; BENCH_DUMP=file.json writes every event (with per-chunk
// upload/receive traces); BENCH_ORIGIN_RESERVE_MS sets the origin's originReserveMs (experiment).
import type { BenchResult } from './run.js'
import type { PeerProcess, PeerEvent } from '../fixtures/peers.js'
import { makeWorld, openPeers, until, sleep, round, eventsOf, MiB } from './_world.js'

export const summary = { figure: 'seconds', baseline: 'bound_seconds', goal: 'ratio <= 1.5, origin_egress_ratio <= 1.1' }

interface Counters { origin: { down: number, up: number }, site: { down: number, up: number }, peer: { down: number, up: number } }

const up = (c: Counters) => c.origin.up + c.site.up + c.peer.up

export async function run (): Promise<BenchResult> {
  const N = Number(process.env.BENCH_PEERS ?? 20)
  const size = Number(process.env.BENCH_MIB ?? 32) * MiB
  const u = Number(process.env.BENCH_UPLOAD ?? 2e6) // bytes/s, every upload
  const reserve = Number(process.env.BENCH_ORIGIN_RESERVE_MS ?? 0) // an experiment; default: the node's 3 s
  const w = await makeWorld(size)
  try {
    const F = w.manifest.size
    const tSetup = Date.now()
    const origin = await w.peer('origin', { role: 'origin', seedFrom: w.source, upload: u, control: true, trace: !!process.env.BENCH_DUMP, ...(reserve ? { node: { originReserveMs: reserve } } : {}) })
    await origin.event('seeding', 120_000)
    const peers: PeerProcess[] = []
    for (let i = 0; i < N; i++) peers.push(await w.peer(`peer-${i}`, { upload: u, control: true, progressEvery: 1e9, trace: !!process.env.BENCH_DUMP }))
    await Promise.all(peers.map((p) => p.event('ready', 120_000)))
    // Everyone connected to everyone (N peers + the origin) before the clock starts.
    const all = [origin, ...peers]
    let mesh = await until(() => all.every((p) => openPeers(p) >= N), 10_000)
    if (!mesh) {
      for (const p of all) p.send('refresh')
      mesh = await until(() => all.every((p) => openPeers(p) >= N), 10_000)
    }
    const minLinks = Math.min(...all.map(openPeers))
    await sleep(500) // let the have/want exchange of the connections settle
    const setupSeconds = (Date.now() - tSetup) / 1000

    origin.send('traffic')
    const before = await origin.waitFor((e) => e.event === 'traffic' && typeof e.cpuMs === 'number')
    const t0 = Date.now()
    for (const p of peers) p.send('go')
    const dones = await Promise.all(peers.map((p) => p.event('done', 300_000)))
    const tLast = Math.max(...dones.map((d) => d.at as number))
    const seconds = (tLast - t0) / 1000

    // The origin's own count of what it sent (payload bytes of the chunks it served).
    await sleep(200)
    const mark = origin.events.length
    origin.send('traffic')
    const after = await origin.waitFor((e) => e.event === 'traffic' && typeof e.cpuMs === 'number' && origin.events.indexOf(e) >= mark)
    const originUp = up(after.bytes as Counters) - up(before.bytes as Counters)

    if (process.env.BENCH_DUMP) {
      const { writeFile } = await import('node:fs/promises')
      await writeFile(process.env.BENCH_DUMP, JSON.stringify({ t0, F, procs: all.map((p) => ({ name: p.name, events: p.events })) }))
    }
    const uS = u
    const sumU = N * u
    const bound = Math.max(F / uS, N * F / (uS + sumU))
    const finish = dones.map((d) => ((d.at as number) - t0) / 1000).sort((a, b) => a - b)
    const sumDown = (k: 'origin' | 'site' | 'peer') => dones.reduce((s, d) => s + (d.traffic as Counters)[k].down, 0)
    const received = dones.reduce((s, d) => s + (d.receivedBytes as number), 0)
    const peerUp = peers.map((p) => eventsOf(p, 'done')[0]!).map((d: PeerEvent) => up(d.traffic as Counters))
    const commitMs = dones.map((d) => (d.ms as number) - (d.chunksMs as number))
    const banList = all.flatMap((p) => eventsOf(p, 'ban'))
    const bans = banList.length
    const banReasons = [...new Set(banList.map((b) => b.reason as string))].join('; ')
    const closes = all.reduce((s, p) => s + eventsOf(p, 'peer-close').length, 0)
    const cpu = dones.reduce((s, d) => s + (d.cpuMs as number), 0) + ((after.cpuMs as number) - (before.cpuMs as number))
    return {
      bench: 'swarm',
      peers: N,
      package_mib: round(F / MiB, 2),
      chunks: w.manifest.chunks.length,
      upload_cap_mb_per_s: u / 1e6,
      seconds: round(seconds),
      bound_seconds: round(bound),
      ratio: round(seconds / bound),
      origin_egress_ratio: round(originUp / F, 3),
      origin_seconds_at_cap: round(originUp / u),
      first_done_seconds: round(finish[0]!),
      median_done_seconds: round(finish[Math.floor(finish.length / 2)]!),
      last_done_seconds: round(finish[finish.length - 1]!),
      max_commit_ms: Math.max(...commitMs),
      down_from_origin_ratio: round(sumDown('origin') / F, 3),
      down_from_site_ratio: round(sumDown('site') / F, 3),
      down_from_peer_ratio: round(sumDown('peer') / F, 3),
      received_ratio: round(received / (N * F), 3),
      peer_up_min_mib: round(Math.min(...peerUp) / MiB),
      peer_up_max_mib: round(Math.max(...peerUp) / MiB),
      swarm_upload_utilisation: round((originUp + peerUp.reduce((a, b) => a + b, 0)) / ((uS + sumU) * seconds), 2),
      cpu_seconds_all_processes: round(cpu / 1000, 1),
      full_mesh: mesh,
      min_links: minLinks,
      bans,
      ban_reasons: banReasons,
      peer_closes: closes,
      setup_seconds: round(setupSeconds, 1)
    }
  } finally {
    await w.close()
  }
}
