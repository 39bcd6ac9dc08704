// The FastCDC gear scan of fastcdc.ts (gearScan) as a WebAssembly function, 3 to 4 times faster
// than the JavaScript loop. Same arithmetic (one-byte steps for the first (n mod 8) bytes of each
// stretch, then the two-bytes-per-step roll unrolled eight bytes a loop), so the same cut points;
// test/content/chunker.test.ts checks it against nextCut.
//
// The module imports a shared memory ("env" "mem"): GEAR at byte 0, GEAR << 1 at byte 1024 (written
// by writeGearTables), the data anywhere from GEAR_TABLES_END on. It was assembled with wabt
// (npm `wabt`, `parseWat(…, { threads: true, bulk_memory: true })`, not a dependency) from this text:
//
// (module
//   (import "env" "mem" (memory 1 65536 shared))
//   (func (export "scan") (param $i i32) (param $normal i32) (param $limit i32) (param $maskS i32) (param $maskL i32) (result i32)
//     (local $h i32) (local $mS2 i32) (local $mL2 i32) (local $r i32) (local $c1 i32) (local $c2 i32) (local $c3 i32) (local $c4 i32)
//     (local.set $mS2 (i32.shl (local.get $maskS) (i32.const 1)))
//     (local.set $mL2 (i32.shl (local.get $maskL) (i32.const 1)))
//     (local.set $r (i32.and (i32.sub (local.get $normal) (local.get $i)) (i32.const 7)))
//     (block $pd1 (loop $pl1
//       (br_if $pd1 (i32.eqz (local.get $r)))
//       (local.set $h (i32.add (i32.shl (local.get $h) (i32.const 1)) (i32.load (i32.shl (i32.load8_u (local.get $i)) (i32.const 2)))))
//       (local.set $i (i32.add (local.get $i) (i32.const 1)))
//       (if (i32.eqz (i32.and (local.get $h) (local.get $maskS))) (then (return (local.get $i))))
//       (local.set $r (i32.sub (local.get $r) (i32.const 1)))
//       (br $pl1)))
//     (block $d1 (loop $l1
//       (br_if $d1 (i32.ge_u (local.get $i) (local.get $normal)))
//       (local.set $h (i32.add (i32.shl (local.get $h) (i32.const 2)) (i32.load offset=1024 (i32.shl (i32.load8_u (local.get $i)) (i32.const 2)))))
//       (if (i32.eqz (i32.and (local.get $h) (local.get $mS2))) (then (return (i32.add (local.get $i) (i32.const 1)))))
//       (local.set $h (i32.add (local.get $h) (i32.load (i32.shl (i32.load8_u offset=1 (local.get $i)) (i32.const 2)))))
//       (if (i32.eqz (i32.and (local.get $h) (local.get $maskS))) (then (return (i32.add (local.get $i) (i32.const 2)))))
//       (local.set $h (i32.add (i32.shl (local.get $h) (i32.const 2)) (i32.load offset=1024 (i32.shl (i32.load8_u offset=2 (local.get $i)) (i32.const 2)))))
//       (if (i32.eqz (i32.and (local.get $h) (local.get $mS2))) (then (return (i32.add (local.get $i) (i32.const 3)))))
//       (local.set $h (i32.add (local.get $h) (i32.load (i32.shl (i32.load8_u offset=3 (local.get $i)) (i32.const 2)))))
//       (if (i32.eqz (i32.and (local.get $h) (local.get $maskS))) (then (return (i32.add (local.get $i) (i32.const 4)))))
//       (local.set $h (i32.add (i32.shl (local.get $h) (i32.const 2)) (i32.load offset=1024 (i32.shl (i32.load8_u offset=4 (local.get $i)) (i32.const 2)))))
//       (if (i32.eqz (i32.and (local.get $h) (local.get $mS2))) (then (return (i32.add (local.get $i) (i32.const 5)))))
//       (local.set $h (i32.add (local.get $h) (i32.load (i32.shl (i32.load8_u offset=5 (local.get $i)) (i32.const 2)))))
//       (if (i32.eqz (i32.and (local.get $h) (local.get $maskS))) (then (return (i32.add (local.get $i) (i32.const 6)))))
//       (local.set $h (i32.add (i32.shl (local.get $h) (i32.const 2)) (i32.load offset=1024 (i32.shl (i32.load8_u offset=6 (local.get $i)) (i32.const 2)))))
//       (if (i32.eqz (i32.and (local.get $h) (local.get $mS2))) (then (return (i32.add (local.get $i) (i32.const 7)))))
//       (local.set $h (i32.add (local.get $h) (i32.load (i32.shl (i32.load8_u offset=7 (local.get $i)) (i32.const 2)))))
//       (if (i32.eqz (i32.and (local.get $h) (local.get $maskS))) (then (return (i32.add (local.get $i) (i32.const 8)))))
//       (local.set $i (i32.add (local.get $i) (i32.const 8)))
//       (br $l1)))
//     (local.set $r (i32.and (i32.sub (local.get $limit) (local.get $i)) (i32.const 7)))
//     (block $pd2 (loop $pl2
//       (br_if $pd2 (i32.eqz (local.get $r)))
//       (local.set $h (i32.add (i32.shl (local.get $h) (i32.const 1)) (i32.load (i32.shl (i32.load8_u (local.get $i)) (i32.const 2)))))
//       (local.set $i (i32.add (local.get $i) (i32.const 1)))
//       (if (i32.eqz (i32.and (local.get $h) (local.get $maskL))) (then (return (local.get $i))))
//       (local.set $r (i32.sub (local.get $r) (i32.const 1)))
//       (br $pl2)))
//     (block $d2 (loop $l2
//       (br_if $d2 (i32.ge_u (local.get $i) (local.get $limit)))
//       (local.set $h (i32.add (i32.shl (local.get $h) (i32.const 2)) (i32.load offset=1024 (i32.shl (i32.load8_u (local.get $i)) (i32.const 2)))))
//       (if (i32.eqz (i32.and (local.get $h) (local.get $mL2))) (then (return (i32.add (local.get $i) (i32.const 1)))))
//       (local.set $h (i32.add (local.get $h) (i32.load (i32.shl (i32.load8_u offset=1 (local.get $i)) (i32.const 2)))))
//       (if (i32.eqz (i32.and (local.get $h) (local.get $maskL))) (then (return (i32.add (local.get $i) (i32.const 2)))))
//       (local.set $h (i32.add (i32.shl (local.get $h) (i32.const 2)) (i32.load offset=1024 (i32.shl (i32.load8_u offset=2 (local.get $i)) (i32.const 2)))))
//       (if (i32.eqz (i32.and (local.get $h) (local.get $mL2))) (then (return (i32.add (local.get $i) (i32.const 3)))))
//       (local.set $h (i32.add (local.get $h) (i32.load (i32.shl (i32.load8_u offset=3 (local.get $i)) (i32.const 2)))))
//       (if (i32.eqz (i32.and (local.get $h) (local.get $maskL))) (then (return (i32.add (local.get $i) (i32.const 4)))))
//       (local.set $h (i32.add (i32.shl (local.get $h) (i32.const 2)) (i32.load offset=1024 (i32.shl (i32.load8_u offset=4 (local.get $i)) (i32.const 2)))))
//       (if (i32.eqz (i32.and (local.get $h) (local.get $mL2))) (then (return (i32.add (local.get $i) (i32.const 5)))))
//       (local.set $h (i32.add (local.get $h) (i32.load (i32.shl (i32.load8_u offset=5 (local.get $i)) (i32.const 2)))))
//       (if (i32.eqz (i32.and (local.get $h) (local.get $maskL))) (then (return (i32.add (local.get $i) (i32.const 6)))))
//       (local.set $h (i32.add (i32.shl (local.get $h) (i32.const 2)) (i32.load offset=1024 (i32.shl (i32.load8_u offset=6 (local.get $i)) (i32.const 2)))))
//       (if (i32.eqz (i32.and (local.get $h) (local.get $mL2))) (then (return (i32.add (local.get $i) (i32.const 7)))))
//       (local.set $h (i32.add (local.get $h) (i32.load (i32.shl (i32.load8_u offset=7 (local.get $i)) (i32.const 2)))))
//       (if (i32.eqz (i32.and (local.get $h) (local.get $maskL))) (then (return (i32.add (local.get $i) (i32.const 8)))))
//       (local.set $i (i32.add (local.get $i) (i32.const 8)))
//       (br $l2)))
//     (local.get $limit))
//   (func (export "copy") (param $dst i32) (param $src i32) (param $n i32)
//     (memory.copy (local.get $dst) (local.get $src) (local.get $n)))
// )
import { GEAR, type Cutter } from './fastcdc.js'

// The project's TypeScript libs (ES2023, node) do not declare WebAssembly: the little used here.
export interface WasmMemory { readonly buffer: SharedArrayBuffer }
declare const WebAssembly: {
  Module: new (bytes: Uint8Array) => object
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> }
  Memory: new (desc: { initial: number, maximum: number, shared: true }) => WasmMemory
}

/** A shared WebAssembly memory of `pages` 64 KiB pages (fixed size). */
export function createSharedMemory (pages: number): WasmMemory {
  return new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true })
}

const WASM_BASE64 = 'AGFzbQEAAAABEAJgBX9/f39/AX9gA39/fwACDwEDZW52A21lbQIDAYCABAMDAgABBw8CBHNjYW4AAARjb3B5AAEK6AUC2AUBCH8gA0EBdCEGIARBAXQhByABIABrQQdxIQgCQANAIAhFDQEgBUEBdCAALQAAQQJ0KAIAaiEFIABBAWohACAFIANxRQRAIAAPCyAIQQFrIQgMAAsLAkADQCAAIAFPDQEgBUECdCAALQAAQQJ0KAKACGohBSAFIAZxRQRAIABBAWoPCyAFIAAtAAFBAnQoAgBqIQUgBSADcUUEQCAAQQJqDwsgBUECdCAALQACQQJ0KAKACGohBSAFIAZxRQRAIABBA2oPCyAFIAAtAANBAnQoAgBqIQUgBSADcUUEQCAAQQRqDwsgBUECdCAALQAEQQJ0KAKACGohBSAFIAZxRQRAIABBBWoPCyAFIAAtAAVBAnQoAgBqIQUgBSADcUUEQCAAQQZqDwsgBUECdCAALQAGQQJ0KAKACGohBSAFIAZxRQRAIABBB2oPCyAFIAAtAAdBAnQoAgBqIQUgBSADcUUEQCAAQQhqDwsgAEEIaiEADAALCyACIABrQQdxIQgCQANAIAhFDQEgBUEBdCAALQAAQQJ0KAIAaiEFIABBAWohACAFIARxRQRAIAAPCyAIQQFrIQgMAAsLAkADQCAAIAJPDQEgBUECdCAALQAAQQJ0KAKACGohBSAFIAdxRQRAIABBAWoPCyAFIAAtAAFBAnQoAgBqIQUgBSAEcUUEQCAAQQJqDwsgBUECdCAALQACQQJ0KAKACGohBSAFIAdxRQRAIABBA2oPCyAFIAAtAANBAnQoAgBqIQUgBSAEcUUEQCAAQQRqDwsgBUECdCAALQAEQQJ0KAKACGohBSAFIAdxRQRAIABBBWoPCyAFIAAtAAVBAnQoAgBqIQUgBSAEcUUEQCAAQQZqDwsgBUECdCAALQAGQQJ0KAKACGohBSAFIAdxRQRAIABBB2oPCyAFIAAtAAdBAnQoAgBqIQUgBSAEcUUEQCAAQQhqDwsgAEEIaiEADAALCyACCwwAIAAgASAC/AoAAAs='

/** First byte after the gear tables; data may start here. */
export const GEAR_TABLES_END = 2048

export type GearScan = (i: number, normal: number, limit: number, maskS: number, maskL: number) => number
/** memmove inside the memory. (A TypedArray copy into a SharedArrayBuffer goes byte by byte, about
 *  1.2 GB/s, when source and target are not equally aligned; memory.copy does not.) */
export type WasmCopy = (dst: number, src: number, n: number) => void

let compiled: object | null = null

/** Instantiates the scan over `memory` (shared, at least one page) and writes the gear tables into it. */
export function instantiateGearScan (memory: WasmMemory): GearScan {
  return instantiateGear(memory).scan
}

export function instantiateGear (memory: WasmMemory): { scan: GearScan, copy: WasmCopy } {
  compiled ??= new WebAssembly.Module(Buffer.from(WASM_BASE64, 'base64'))
  writeGearTables(memory)
  const instance = new WebAssembly.Instance(compiled, { env: { mem: memory } })
  return { scan: instance.exports.scan as GearScan, copy: instance.exports.copy as WasmCopy }
}

function writeGearTables (memory: WasmMemory) {
  const tables = new Int32Array(memory.buffer, 0, 512)
  for (let i = 0; i < 256; i++) {
    tables[i] = GEAR[i]!
    tables[256 + i] = GEAR[i]! << 1
  }
}

/**
 * nextCut of fastcdc.ts for bytes that lie in the scan's memory: the length of the chunk starting at
 * memory offset `start`, looking no further than `end` (same contract as nextCut, not re-checked).
 */
export function wasmCut (scan: GearScan, cutter: Cutter, start: number, end: number): number {
  const { min, avg, max } = cutter.params
  const available = end - start
  if (available <= min) return available
  const limit = available < max ? available : max
  const normal = limit < avg ? limit : avg
  return scan(start + min, start + normal, start + limit, cutter.maskS, cutter.maskL) - start
}
