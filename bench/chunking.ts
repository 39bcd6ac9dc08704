// FastCDC + SHA-256 through the real streaming chunker (lib/content/chunker.ts) against the same bytes
// cut into fixed 256 KiB chunks hashed with the same SHA-256 on one thread.
// Input: 256 MiB of random bytes generated in memory before timing, fed to both as 1 MiB buffers
// (the size chunkFile reads from disk), so disk speed does not enter the figures.
// Each variant runs ROUNDS times, interleaved; the median is reported.
//   mb_per_s              chunkStream as shipped: the parallel engine (WebAssembly cuts, SHA-256
//                         shared with a worker, lib/content/parallel.ts)
//   sequential_mb_per_s   the JavaScript cutter with the worker hasher (the engine before)
//   parallel_inline_…     the parallel engine hashing on the calling thread only (one core)
//   cut_points_only_…     cut finding alone, JavaScript and WebAssembly
import { createHash, randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { chunkStream, type ChunkOptions } from '../lib/content/chunker.js'
import { createCutter, nextCut } from '../lib/content/fastcdc.js'
import { createSharedMemory, instantiateGearScan, wasmCut, GEAR_TABLES_END } from '../lib/content/gear-wasm.js'

export const summary = { figure: 'mb_per_s', baseline: 'baseline_mb_per_s', goal: 'ratio >= 0.6' }

const TOTAL = 256 * 1024 * 1024
const PIECE = 1024 * 1024
const FIXED = 256 * 1024
const ROUNDS = 5

function pieces (data: Buffer): Buffer[] {
  const out: Buffer[] = []
  for (let p = 0; p < data.length; p += PIECE) out.push(data.subarray(p, p + PIECE))
  return out
}

async function timeFastcdc (input: Buffer[], opts: ChunkOptions): Promise<number> {
  const t = performance.now()
  let n = 0
  for await (const c of chunkStream(input, opts)) n += c.size
  if (n !== input.length * PIECE) throw new Error('lost bytes')
  return performance.now() - t
}

function timeFixed (input: Buffer[]): number {
  const t = performance.now()
  for (const piece of input) {
    for (let p = 0; p < piece.length; p += FIXED) createHash('sha256').update(piece.subarray(p, p + FIXED)).digest()
  }
  return performance.now() - t
}

// Cut finding alone, over the whole buffer: the ceiling the pipeline can reach.
function timeCutsOnly (data: Buffer): number {
  const cutter = createCutter()
  const t = performance.now()
  for (let p = 0; p < data.length;) p += nextCut(cutter, data, p, data.length, true)
  return performance.now() - t
}

// The same with the WebAssembly scan, the bytes already in its memory.
function wasmCutsOnly (data: Buffer): () => number {
  const cutter = createCutter()
  const memory = createSharedMemory(Math.ceil((GEAR_TABLES_END + data.length) / 65536))
  const scan = instantiateGearScan(memory)
  new Uint8Array(memory.buffer).set(data, GEAR_TABLES_END)
  const end = GEAR_TABLES_END + data.length
  return () => {
    const t = performance.now()
    for (let p = GEAR_TABLES_END; p < end;) p += wasmCut(scan, cutter, p, end)
    return performance.now() - t
  }
}

/** MiB/s: the JSON fields keep the issue's `mb_per_s` names, in MiB as every benchmark here. */
const mbps = (ms: number) => Math.round((TOTAL / 1024 / 1024) / (ms / 1000))
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

export async function run (): Promise<Record<string, number | string>> {
  const data = randomBytes(TOTAL)
  const input = pieces(data)
  const wasmCuts = wasmCutsOnly(data)
  const variants: Record<string, () => Promise<number> | number> = {
    baseline: () => timeFixed(input),
    parallel: () => timeFastcdc(input, {}),
    sequential: () => timeFastcdc(input, { engine: 'sequential', hashing: 'worker' }),
    parallel_inline: () => timeFastcdc(input, { hashing: 'inline' }),
    cuts: () => timeCutsOnly(data),
    wasm_cuts: wasmCuts
  }
  const times: Record<string, number[]> = Object.fromEntries(Object.keys(variants).map((k) => [k, []]))
  // Warm up the JIT (and the WebAssembly tier-up) and start the worker.
  await timeFastcdc(input.slice(0, 32), {})
  await timeFastcdc(input.slice(0, 32), { engine: 'sequential' })
  for (let r = 0; r < ROUNDS; r++) {
    for (const [k, f] of Object.entries(variants)) times[k]!.push(await f())
    console.error(`# round ${r + 1}: ` + Object.entries(times).map(([k, v]) => `${k} ${mbps(v.at(-1)!)} MiB/s`).join(', '))
  }
  const fig = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, mbps(median(v))]))
  const ours = fig.parallel!
  return {
    bench: 'chunking',
    mb_per_s: ours,
    baseline_mb_per_s: fig.baseline!,
    ratio: Math.round((ours / fig.baseline!) * 100) / 100,
    engine: 'parallel',
    sequential_mb_per_s: fig.sequential!,
    parallel_inline_mb_per_s: fig.parallel_inline!,
    cut_points_only_mb_per_s: fig.cuts!,
    wasm_cut_points_only_mb_per_s: fig.wasm_cuts!,
    input: '256 MiB random, in memory, 1 MiB buffers',
    rounds: ROUNDS
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  console.log(JSON.stringify(await run()))
}
