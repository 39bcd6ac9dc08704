// FastCDC + SHA-256 through the real streaming chunker (lib/content/chunker.ts) against the same bytes
// cut into fixed 256 KiB chunks hashed with the same SHA-256 on one thread.
// Input: 256 MiB of random bytes generated in memory before timing, fed to both as 1 MiB buffers
// (the size chunkFile reads from disk), so disk speed does not enter the figures.
// Each variant runs ROUNDS times, interleaved; the median is reported.
import { createHash, randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { chunkStream } from '../lib/content/chunker.js'
import { HASHING_MODES, DEFAULT_HASHING, type HashingMode } from '../lib/content/hashers.js'
import { createCutter, nextCut } from '../lib/content/fastcdc.js'

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

async function timeFastcdc (input: Buffer[], hashing: HashingMode): Promise<number> {
  const t = performance.now()
  let n = 0
  for await (const c of chunkStream(input, { hashing })) n += c.size
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

const mbps = (ms: number) => Math.round((TOTAL / 1024 / 1024) / (ms / 1000))
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

export async function run (): Promise<Record<string, number | string>> {
  const data = randomBytes(TOTAL)
  const input = pieces(data)
  const times: Record<string, number[]> = { baseline: [], cuts: [] }
  for (const m of HASHING_MODES) times[m] = []
  await timeFastcdc(input.slice(0, 32), 'worker') // warm up the JIT and start the worker
  for (let r = 0; r < ROUNDS; r++) {
    times.baseline!.push(timeFixed(input))
    for (const m of HASHING_MODES) times[m]!.push(await timeFastcdc(input, m))
    times.cuts!.push(timeCutsOnly(data))
    console.error(`# round ${r + 1}: ` + Object.entries(times).map(([k, v]) => `${k} ${mbps(v.at(-1)!)} MB/s`).join(', '))
  }
  const fig = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, mbps(median(v))]))
  const ours = fig[DEFAULT_HASHING]!
  return {
    bench: 'chunking',
    mb_per_s: ours,
    baseline_mb_per_s: fig.baseline!,
    ratio: Math.round((ours / fig.baseline!) * 100) / 100,
    hashing: DEFAULT_HASHING,
    inline_mb_per_s: fig.inline!,
    threadpool_mb_per_s: fig.threadpool!,
    worker_mb_per_s: fig.worker!,
    cut_points_only_mb_per_s: fig.cuts!,
    input: '256 MiB random, in memory, 1 MiB buffers',
    rounds: ROUNDS
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  console.log(JSON.stringify(await run()))
}
