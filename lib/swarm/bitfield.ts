// A fixed-length bitfield over the chunk indexes of one package: which chunks a peer has.
// Bit i lives in byte i >> 3 at mask 1 << (i & 7) (least significant bit first); the wire form is
// exactly those bytes, ceil(length / 8) of them, with the unused high bits of the last byte zero.
import { PatchswarmError } from '../errors.js'

/** Largest bitfield accepted: 2^31 chunks is far beyond any package (a 1 MiB message holds 2^23). */
export const MAX_BITS = 2 ** 31

const POPCOUNT = new Uint8Array(256)
for (let i = 1; i < 256; i++) POPCOUNT[i] = (i & 1) + (POPCOUNT[i >> 1] as number)

export class Bitfield {
  /** Number of bits (chunks). */
  readonly length: number
  private readonly bytes: Uint8Array
  private ones: number

  constructor (length: number) {
    if (!Number.isInteger(length) || length < 0 || length > MAX_BITS) throw PatchswarmError.BAD_ARGUMENT(`bitfield length must be an integer in [0, 2^31], got ${length}`)
    this.length = length
    this.bytes = new Uint8Array((length + 7) >>> 3)
    this.ones = 0
  }

  /** A bitfield with every bit set (a complete package). */
  static full (length: number): Bitfield {
    const b = new Bitfield(length)
    b.bytes.fill(0xff)
    const rest = length & 7
    if (rest !== 0) b.bytes[b.bytes.length - 1] = (1 << rest) - 1
    b.ones = length
    return b
  }

  /**
   * Reads the wire form. The bytes are copied (a view into a network frame is never kept). Refuses a
   * byte count other than ceil(length / 8) and set bits past `length`.
   */
  static fromBytes (bytes: Uint8Array, length: number): Bitfield {
    // check the size before allocating: a claimed length must not make us allocate more than was sent
    const size = Number.isInteger(length) && length >= 0 ? Math.ceil(length / 8) : -1
    if (bytes.byteLength !== size) throw PatchswarmError.BAD_ENCODING(`a bitfield of ${length} bits takes ${size} bytes, got ${bytes.byteLength}`)
    const b = new Bitfield(length)
    const rest = length & 7
    if (rest !== 0 && ((bytes[bytes.byteLength - 1] as number) >> rest) !== 0) throw PatchswarmError.BAD_ENCODING(`bitfield has bits set past its length ${length}`)
    b.bytes.set(bytes)
    let ones = 0
    for (let i = 0; i < bytes.byteLength; i++) ones += POPCOUNT[bytes[i] as number] as number
    b.ones = ones
    return b
  }

  /** The wire form (a copy). */
  toBytes (): Uint8Array {
    return this.bytes.slice()
  }

  get (index: number): boolean {
    this.check(index)
    return ((this.bytes[index >>> 3] as number) & (1 << (index & 7))) !== 0
  }

  /** Sets (or clears) one bit; returns true if it changed. */
  set (index: number, value = true): boolean {
    this.check(index)
    const i = index >>> 3
    const mask = 1 << (index & 7)
    const byte = this.bytes[i] as number
    if (((byte & mask) !== 0) === value) return false
    this.bytes[i] = value ? byte | mask : byte & ~mask
    this.ones += value ? 1 : -1
    return true
  }

  /** Number of set bits (kept up to date, O(1)). */
  count (): number {
    return this.ones
  }

  /** True when every bit is set. */
  isFull (): boolean {
    return this.ones === this.length
  }

  /** The first clear bit at or after `from`, or -1 if there is none. */
  firstMissing (from = 0): number {
    if (from < 0) from = 0
    if (from >= this.length || this.ones === this.length) return -1
    let i = from >>> 3
    let byte = (this.bytes[i] as number) | ((1 << (from & 7)) - 1)
    while (byte === 0xff) {
      if (++i >= this.bytes.length) return -1
      byte = this.bytes[i] as number
    }
    const index = (i << 3) + ctz(~byte & 0xff)
    return index < this.length ? index : -1
  }

  /** The first set bit at or after `from`, or -1 if there is none. */
  firstSet (from = 0): number {
    if (from < 0) from = 0
    if (from >= this.length || this.ones === 0) return -1
    let i = from >>> 3
    let byte = (this.bytes[i] as number) & ~((1 << (from & 7)) - 1) & 0xff
    while (byte === 0) {
      if (++i >= this.bytes.length) return -1
      byte = this.bytes[i] as number
    }
    return (i << 3) + ctz(byte)
  }

  /** Set bit indexes, ascending (skips empty bytes). */
  * [Symbol.iterator] (): IterableIterator<number> {
    const bytes = this.bytes
    for (let i = 0; i < bytes.length; i++) {
      let byte = bytes[i] as number
      while (byte !== 0) {
        const low = byte & -byte
        yield (i << 3) + ctz(low)
        byte ^= low
      }
    }
  }

  /** An independent copy. */
  clone (): Bitfield {
    return Bitfield.fromBytes(this.bytes, this.length)
  }

  private check (index: number): void {
    if (!Number.isInteger(index) || index < 0 || index >= this.length) throw PatchswarmError.BAD_ARGUMENT(`bit index ${index} outside [0, ${this.length})`)
  }
}

/** Count of trailing zero bits of a non-zero byte. */
function ctz (byte: number): number {
  return 31 - Math.clz32(byte & -byte)
}
