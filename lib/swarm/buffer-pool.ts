// Buffers reused for reading chunks to send: the connection copies the bytes into a frame of its
// own the moment they are sent, so a fresh buffer per chunk would only be garbage.
export class BufferPool {
  private readonly spare: Buffer[] = []

  /** `keep` spare buffers at most; sizes rounded up to `step` so one buffer fits many chunks. */
  constructor (private readonly keep = 16, private readonly step = 64 * 1024) {}

  take (size: number): Buffer {
    for (let i = this.spare.length - 1; i >= 0; i--) {
      const b = this.spare[i]!
      if (b.length >= size) {
        this.spare[i] = this.spare[this.spare.length - 1]!
        this.spare.pop()
        return b
      }
    }
    return Buffer.allocUnsafeSlow(Math.ceil(size / this.step) * this.step)
  }

  give (b: Buffer): void {
    if (this.spare.length < this.keep) this.spare.push(b)
  }
}
