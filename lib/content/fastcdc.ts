// FastCDC content-defined chunking (Xia et al., USENIX ATC 2016 and IEEE TPDS 2020): a gear hash
// rolled over the bytes, normalized chunking at level 2 (a harder mask before the average size, an
// easier one after it), and the first `min` bytes of every chunk skipped without hashing.
//
// The gear table and the mask choice are part of the package format: a different table gives
// different cut points, so different chunk hashes, so no dedup across versions. They are fixed here
// forever ("patchswarm/fastcdc/gear/v1"); a change needs a new `spec` in the manifest.
import { createHash } from 'node:crypto'
import { PatchswarmError } from '../errors.js'

export interface ChunkingParams {
  min: number
  avg: number
  max: number
}

export const DEFAULT_CHUNKING: Readonly<ChunkingParams> = Object.freeze({ min: 64 * 1024, avg: 256 * 1024, max: 1024 * 1024 })

// Limits of what the format accepts: the average must be a power of two (its log2 picks the mask
// width), and chunks are held whole in memory, so the maximum is bounded.
export const MIN_CHUNK_FLOOR = 64
export const MAX_CHUNK_CEILING = 64 * 1024 * 1024
const NC_LEVEL = 2

const GEAR_LABEL = 'patchswarm/fastcdc/gear/v1'

/**
 * GEAR[i] = first 4 bytes (big-endian) of SHA-256("patchswarm/fastcdc/gear/v1" || byte i), as int32.
 * Derived, not pasted, so anyone can re-create and audit it.
 */
export const GEAR: Int32Array = deriveGear()

// GEAR shifted left by one: lets the loop roll two bytes per step (FastCDC 2020, "rolling two bytes").
const GEAR_LS: Int32Array = GEAR.map((g) => g << 1)

function deriveGear (): Int32Array {
  const table = new Int32Array(256)
  for (let i = 0; i < 256; i++) {
    table[i] = createHash('sha256').update(GEAR_LABEL).update(Uint8Array.of(i)).digest().readInt32BE(0)
  }
  return table
}

/**
 * Throws BAD_ARGUMENT unless the parameters are usable; returns them as a plain object.
 * Rules: integers, MIN_CHUNK_FLOOR <= min < avg < max <= MAX_CHUNK_CEILING, avg a power of two.
 */
export function validateChunking (p: Partial<ChunkingParams> = {}): ChunkingParams {
  const min = p.min ?? DEFAULT_CHUNKING.min
  const avg = p.avg ?? DEFAULT_CHUNKING.avg
  const max = p.max ?? DEFAULT_CHUNKING.max
  for (const [name, v] of [['min', min], ['avg', avg], ['max', max]] as const) {
    if (!Number.isSafeInteger(v) || v <= 0) throw PatchswarmError.BAD_ARGUMENT(`chunking.${name} must be a positive integer, got ${v}`)
  }
  if (min < MIN_CHUNK_FLOOR) throw PatchswarmError.BAD_ARGUMENT(`chunking.min must be at least ${MIN_CHUNK_FLOOR}, got ${min}`)
  if (max > MAX_CHUNK_CEILING) throw PatchswarmError.BAD_ARGUMENT(`chunking.max must be at most ${MAX_CHUNK_CEILING}, got ${max}`)
  if (!(min < avg && avg < max)) throw PatchswarmError.BAD_ARGUMENT(`chunking needs min < avg < max, got ${min} / ${avg} / ${max}`)
  if ((avg & (avg - 1)) !== 0) throw PatchswarmError.BAD_ARGUMENT(`chunking.avg must be a power of two, got ${avg}`)
  return { min, avg, max }
}

/**
 * The precomputed state of a chunker: parameters and masks. Mask bits sit at the top of the 32-bit
 * hash below bit 31 (bit k of a gear hash depends on the last k+1 bytes, so high bits see the
 * widest window; bit 31 is left out so the mask can be shifted left for the two-byte roll).
 * maskS has log2(avg)+2 bits (harder, before avg), maskL log2(avg)-2 bits (easier, after avg).
 */
export interface Cutter {
  readonly params: ChunkingParams
  readonly maskS: number
  readonly maskL: number
}

export function createCutter (params: Partial<ChunkingParams> = {}): Cutter {
  const p = validateChunking(params)
  const bits = Math.round(Math.log2(p.avg))
  return { params: p, maskS: topMask(bits + NC_LEVEL), maskL: topMask(bits - NC_LEVEL) }
}

function topMask (n: number): number {
  const width = Math.max(1, Math.min(30, n))
  return (((1 << width) - 1) << (31 - width)) | 0
}

/**
 * Length of the chunk that starts at `start` in `buf`, looking no further than `end`.
 * `end - start` must be at least `max` unless `final` (the input ends at `end`); a cut depends only
 * on the bytes from start+min to the cut, never on where the caller's buffers began or ended.
 */
export function nextCut (cutter: Cutter, buf: Uint8Array, start: number, end: number, final: boolean): number {
  const { min, avg, max } = cutter.params
  const available = end - start
  if (available <= min) {
    if (!final && available < max) throw PatchswarmError.BAD_ARGUMENT('nextCut needs max bytes or the end of the input')
    return available
  }
  if (available < max && !final) throw PatchswarmError.BAD_ARGUMENT('nextCut needs max bytes or the end of the input')
  const limit = available < max ? available : max
  const normal = limit < avg ? limit : avg
  return gearScan(buf, start, start + min, start + normal, start + limit, cutter.maskS, cutter.maskL) - start
}

// The hot loop. int32 arithmetic only (`| 0`), so V8 keeps every value in a register as a small
// integer; two bytes per step: h2 = (h << 2) + GEAR_LS[a] + GEAR[b], and the first byte's check is
// done on the shifted hash against the shifted mask, which is equivalent while bit 31 is unused.
function gearScan (buf: Uint8Array, from: number, i: number, normal: number, limit: number, maskS: number, maskL: number): number {
  const gear = GEAR
  const gearLs = GEAR_LS
  const maskSLs = maskS << 1
  const maskLLs = maskL << 1
  let h = 0
  // One single step first when the stretch is odd; the pair steps are exactly the one-byte roll, so
  // cut points are the same whichever way a stretch is split.
  if (((normal - i) & 1) === 1) {
    h = gear[buf[i++]!]! | 0
    if ((h & maskS) === 0) return i
  }
  while (i < normal) {
    h = ((h << 2) + gearLs[buf[i]!]!) | 0
    if ((h & maskSLs) === 0) return i + 1
    h = (h + gear[buf[i + 1]!]!) | 0
    if ((h & maskS) === 0) return i + 2
    i += 2
  }
  if (((limit - i) & 1) === 1) {
    h = ((h << 1) + gear[buf[i++]!]!) | 0
    if ((h & maskL) === 0) return i
  }
  while (i < limit) {
    h = ((h << 2) + gearLs[buf[i]!]!) | 0
    if ((h & maskLLs) === 0) return i + 1
    h = (h + gear[buf[i + 1]!]!) | 0
    if ((h & maskL) === 0) return i + 2
    i += 2
  }
  return limit
}
