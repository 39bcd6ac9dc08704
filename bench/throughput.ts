// One pair on loopback, each end in its own process: our chunk exchange (a SwarmNode fetching a
// package with the default 256 KiB-average chunks from a seeding origin, no courtesy caps: the
// real path with protocol, scheduler, verification and store writes) against raw bytes over a
// plain hyperswarm connection between two processes (the same number of bytes, 256 KiB writes).
// Rates are MiB/s (2^20 bytes). `mb_per_s` is the whole fetch (until verified and committed);
// `chunks_mb_per_s` stops at the last chunk stored (before the commit re-hashes the package).
// `floor_mb_per_s` and `floor_ratio`: the same node, protocol and scheduler over stores that verify
// and keep nothing (fixtures/null-store.ts), from a second origin: what the exchange itself costs,
// apart from hashing, staging writes, LevelDB records and reads. All ratios use the best raw run.
//
// BENCH_MIB (default 256) sets the package size; BENCH_ROUNDS (default 2) how many times each side
// runs (the best is reported); BENCH_PROF=dir writes CPU profiles of the peers there. Experiments:
// BENCH_PIPELINE=n sets the receiver's maxPipeline (the scheduler's default is 32); BENCH_TMP=/dev/shm puts the stores
// on tmpfs (fsync is then free).
import { randomBytes } from 'node:crypto'
import path from 'node:path'
import os from 'node:os'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { BenchResult } from './run.js'
import type { PeerProcess } from '../fixtures/peers.js'
import { makeWorld, jsonLines, openPeers, until, round, MiB, nodeArgs, type World } from './_world.js'

export const summary = { figure: 'mb_per_s', baseline: 'baseline_mb_per_s', goal: 'ratio >= 0.8' }

const here = path.dirname(fileURLToPath(import.meta.url))

/** CPU time (user + system, ms) a child process used so far, from /proc (Linux); NaN elsewhere. */
function childCpuMs (pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) * 10 // clock ticks of 10 ms
  } catch {
    return NaN
  }
}

async function raw (w: World, bytes: number): Promise<{ ms: number, cpuMs: number }> {
  const topic = randomBytes(32).toString('hex')
  const common = { bootstrap: w.net.bootstrap, bytes, block: 256 * 1024, topic }
  const script = path.join(here, '_raw-peer.ts')
  const sender = w.spawnChild([...nodeArgs(), '--import', 'tsx', script, JSON.stringify({ ...common, role: 'send', seed: randomBytes(32).toString('hex') })])
  const s = jsonLines(sender)
  await s.next('ready', 30_000)
  const receiver = w.spawnChild([...nodeArgs(), '--import', 'tsx', script, JSON.stringify({ ...common, role: 'recv', seed: randomBytes(32).toString('hex') })])
  const r = jsonLines(receiver)
  // From the connection on, as the receiver's own timer: start-up and joining are not the transfer.
  await r.next('connected', 30_000)
  const cpu0 = childCpuMs(sender.pid) + childCpuMs(receiver.pid)
  const done = await r.next('done', 120_000)
  const cpuMs = childCpuMs(sender.pid) + childCpuMs(receiver.pid) - cpu0
  for (const c of [sender, receiver]) c.kill('SIGTERM')
  return { ms: done.ms as number, cpuMs }
}

interface Ours { ms: number, chunksMs: number, firstChunkMs: number, receiverCpuMs: number, originCpuMs: number, chunks: number }

async function ours (w: World, origin: PeerProcess, name: string, nullStore = false): Promise<Ours> {
  const pipeline = Number(process.env.BENCH_PIPELINE ?? 0) // an experiment: the scheduler's maxPipeline
  const rx = await w.peer(name, { control: true, progressEvery: 1e9, nullStore, ...(pipeline ? { node: { maxPipeline: pipeline } } : {}) })
  await rx.event('ready', 60_000)
  if (!await until(() => openPeers(rx) >= 1 && openPeers(origin) >= 1, 15_000)) throw new Error('the receiver did not connect to the origin')
  origin.events.length = 0
  origin.send('traffic')
  const before = await origin.waitFor((e) => e.event === 'traffic' && typeof e.cpuMs === 'number')
  rx.send('go')
  const done = await rx.event('done', 600_000)
  origin.events.length = 0
  origin.send('traffic')
  const after = await origin.waitFor((e) => e.event === 'traffic' && typeof e.cpuMs === 'number')
  await rx.stop()
  return {
    ms: done.ms as number,
    chunksMs: done.chunksMs as number,
    firstChunkMs: done.firstChunkMs as number,
    receiverCpuMs: done.cpuMs as number,
    originCpuMs: (after.cpuMs as number) - (before.cpuMs as number),
    chunks: done.received as number
  }
}

export async function run (): Promise<BenchResult> {
  const size = Number(process.env.BENCH_MIB ?? 256) * MiB
  const rounds = Number(process.env.BENCH_ROUNDS ?? 2)
  const w = await makeWorld(size)
  try {
    const size = w.manifest.size
    const rawMs: number[] = []
    const rawCpu: number[] = []
    const runs: Ours[] = []
    const origin = await w.peer('origin', { role: 'origin', seedFrom: w.source, control: true })
    await origin.event('seeding', 300_000)
    for (let i = 0; i < rounds; i++) {
      const r = await raw(w, size)
      rawMs.push(r.ms)
      rawCpu.push(r.cpuMs / r.ms)
      runs.push(await ours(w, origin, `rx-${i}`))
    }
    // The floor, from an origin with a null store (the real one leaves: both would serve).
    await origin.stop()
    const nullOrigin = await w.peer('null-origin', { role: 'origin', seedFrom: w.source, control: true, nullStore: true })
    await nullOrigin.event('seeding', 60_000)
    const floorRawMs: number[] = []
    const floors: Ours[] = []
    for (let i = 0; i < rounds; i++) {
      floorRawMs.push((await raw(w, size)).ms)
      floors.push(await ours(w, nullOrigin, `null-rx-${i}`, true))
    }
    const fastest = (list: Ours[]) => list.reduce((a, b) => (b.ms < a.ms ? b : a))
    const best = fastest(runs)
    const floor = fastest(floors)
    const baseMs = Math.min(...rawMs, ...floorRawMs)
    const mbps = (ms: number) => round(size / MiB / (ms / 1000), 1)
    return {
      bench: 'throughput',
      package_mib: round(size / MiB, 1),
      chunks: w.manifest.chunks.length,
      mb_per_s: mbps(best.ms),
      baseline_mb_per_s: mbps(baseMs),
      ratio: round(baseMs / best.ms, 2),
      chunks_mb_per_s: mbps(best.chunksMs),
      chunks_ratio: round(baseMs / best.chunksMs, 2),
      commit_ms: best.ms - best.chunksMs,
      first_chunk_ms: best.firstChunkMs,
      receiver_cpu_per_wall: round(best.receiverCpuMs / best.ms, 2),
      origin_cpu_per_wall: round(best.originCpuMs / best.ms, 2),
      // CPU of both ends per MiB moved (ms), every round: less exposed to other load than rates.
      cpu_ms_per_mib: runs.map((r) => round((r.receiverCpuMs + r.originCpuMs) / (size / MiB), 1)).join(' '),
      receiver_cpu_ms_per_mib: runs.map((r) => round(r.receiverCpuMs / (size / MiB), 1)).join(' '),
      baseline_cpu_ms_per_mib: rawCpu.map((x, i) => round(x * rawMs[i]! / (size / MiB), 1)).join(' '),
      // Both raw processes together, per wall second of the transfer (includes the request wait).
      baseline_cpu_per_wall: rawCpu.map((x) => round(x, 2)).join(' '),
      all_mb_per_s: runs.map((r) => mbps(r.ms)).join(' '),
      all_baseline_mb_per_s: rawMs.map(mbps).join(' '),
      // Each round runs the baseline right before ours: their ratio is less exposed to other load.
      paired_ratios: runs.map((r, i) => round(rawMs[i]! / r.ms, 2)).join(' '),
      floor_mb_per_s: mbps(floor.ms),
      floor_ratio: round(baseMs / floor.ms, 2),
      floor_paired_ratios: floors.map((r, i) => round(floorRawMs[i]! / r.ms, 2)).join(' '),
      floor_cpu_ms_per_mib: floors.map((r) => round((r.receiverCpuMs + r.originCpuMs) / (size / MiB), 1)).join(' '),
      load_avg_1m: round(os.loadavg()[0]!, 1)
    }
  } finally {
    await w.close()
  }
}
