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

/** Up to `size` holders at a time, first come first served; a waiter whose signal aborts leaves the queue. */
export class Turns {
  private held = 0
  private readonly waiting: Array<() => void> = []

  constructor (readonly size = 1) {}

  /** Resolves with the release function once it is the caller's turn; rejects if `signal` aborts first. */
  acquire (signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(signal.reason)
    if (this.held < this.size) {
      this.held++
      return Promise.resolve(this.releaser())
    }
    return new Promise((resolve, reject) => {
      const go = () => {
        signal?.removeEventListener('abort', aborted)
        resolve(this.releaser())
      }
      const aborted = () => {
        const i = this.waiting.indexOf(go)
        if (i >= 0) this.waiting.splice(i, 1)
        reject(signal!.reason)
      }
      this.waiting.push(go)
      signal?.addEventListener('abort', aborted, { once: true })
    })
  }

  private releaser (): () => void {
    let done = false
    return () => {
      if (done) return
      done = true
      const next = this.waiting.shift()
      if (next) next() // the turn passes straight on
      else this.held--
    }
  }
}
