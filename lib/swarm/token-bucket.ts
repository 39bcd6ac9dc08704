// A token bucket for bytes: `take(n)` resolves when n bytes may pass. Waiters are served strictly
// first come, first served; a request larger than the burst is filled piece by piece as tokens
// accrue, so it waits in proportion to its size instead of never fitting. Tokens that accrue while
// someone waits go to the waiters first and are never lost to the burst cap, so a late timer does
// not lower the rate. Time comes from an injectable TimeSource: tests run on ManualTime, the
// swarm on the real clock.
import { PatchswarmError } from '../errors.js'

/** Milliseconds and timers. `realTime` in production, `ManualTime` in tests. */
export interface TimeSource {
  /** Milliseconds on a monotonic scale (not necessarily since the epoch). */
  now (): number
  /** Milliseconds since the Unix epoch, for wall-clock decisions (schedules). */
  wallNow (): number
  /** `unref`: the timer alone does not keep the process alive (background ticks). */
  setTimeout (fn: () => void, ms: number, options?: { unref?: boolean }): unknown
  clearTimeout (handle: unknown): void
}

export const realTime: TimeSource = {
  now: () => performance.now(),
  wallNow: () => Date.now(),
  setTimeout (fn, ms, options) {
    const handle = setTimeout(fn, ms)
    if (options?.unref === true) handle.unref()
    return handle
  },
  clearTimeout (handle) { clearTimeout(handle as ReturnType<typeof setTimeout>) }
}

interface ManualTimer { due: number, seq: number, fn: () => void }

/**
 * A clock that moves only when told: `advance(ms)` runs every timer that falls due, in order,
 * with `now()` set to each timer's due time. `now()` and `wallNow()` move together.
 */
export class ManualTime implements TimeSource {
  private current: number
  private readonly epoch: number
  private seq = 0
  private readonly timers = new Map<number, ManualTimer>()

  /** `start`: the wall-clock time to begin at (ms since the epoch, or a Date). */
  constructor (start: number | Date = 0) {
    this.epoch = typeof start === 'number' ? start : start.getTime()
    this.current = 0
  }

  now (): number { return this.current }
  wallNow (): number { return this.epoch + this.current }

  setTimeout (fn: () => void, ms: number): unknown {
    const seq = ++this.seq
    this.timers.set(seq, { due: this.current + Math.max(0, ms), seq, fn })
    return seq
  }

  clearTimeout (handle: unknown): void { this.timers.delete(handle as number) }

  /** How many timers are pending. */
  get pending (): number { return this.timers.size }

  /** Moves the clock forward by `ms`, firing due timers (including ones they set) in order. */
  advance (ms: number): void {
    const end = this.current + ms
    for (;;) {
      let next: ManualTimer | undefined
      for (const timer of this.timers.values()) {
        if (timer.due <= end && (next === undefined || timer.due < next.due || (timer.due === next.due && timer.seq < next.seq))) next = timer
      }
      if (next === undefined) break
      this.timers.delete(next.seq)
      this.current = Math.max(this.current, next.due)
      next.fn()
    }
    this.current = end
  }

  /** Moves the clock to a wall-clock time (must not be in the past). */
  advanceTo (wall: number | Date): void {
    const target = (typeof wall === 'number' ? wall : wall.getTime()) - this.epoch
    if (target < this.current) throw PatchswarmError.BAD_ARGUMENT('ManualTime cannot go backwards')
    this.advance(target - this.current)
  }
}

export interface TokenBucketOptions {
  /** Bytes per second; `Infinity` lets everything through at once, 0 lets nothing through. */
  rate: number
  /** Most bytes that may pass at once after an idle spell. Default: a tenth of a second at `rate`, within 16 KiB … 1 MiB. */
  burst?: number
  time?: TimeSource
}

interface Waiter {
  need: number
  readonly resolve: () => void
  readonly reject: (err: unknown) => void
  readonly signal: AbortSignal | undefined
  readonly onAbort: (() => void) | undefined
  readonly size: number
}

const EPSILON = 1e-6
const MIN_BURST = 16 * 1024
const MAX_BURST = 1024 * 1024

/** The burst used when none is given: a tenth of a second at `rate`, within 16 KiB … 1 MiB. */
export function defaultBurst (rate: number): number {
  return Math.min(MAX_BURST, Math.max(MIN_BURST, rate / 10))
}

function checkRate (rate: number): void {
  if (typeof rate !== 'number' || Number.isNaN(rate) || rate < 0) throw PatchswarmError.BAD_ARGUMENT(`a rate is bytes per second >= 0 or Infinity, not ${String(rate)}`)
}

function checkBytes (n: number): void {
  if (typeof n !== 'number' || !Number.isFinite(n) || n < 0) throw PatchswarmError.BAD_ARGUMENT(`a byte count is a finite number >= 0, not ${String(n)}`)
}

export class TokenBucket {
  private _rate: number
  private _burst: number
  private readonly fixedBurst: boolean
  private readonly time: TimeSource
  private tokens: number
  private last: number
  private readonly queue: Waiter[] = []
  private timer: unknown = undefined
  private closed = false

  constructor (options: TokenBucketOptions) {
    checkRate(options.rate)
    if (options.burst !== undefined && (!(options.burst > 0) || !Number.isFinite(options.burst))) {
      throw PatchswarmError.BAD_ARGUMENT(`a burst is a finite number of bytes > 0, not ${String(options.burst)}`)
    }
    this.time = options.time ?? realTime
    this._rate = options.rate
    this.fixedBurst = options.burst !== undefined
    this._burst = options.burst ?? defaultBurst(options.rate)
    this.tokens = this._burst
    this.last = this.time.now()
  }

  get rate (): number { return this._rate }
  get burst (): number { return this._burst }
  /** Requests waiting for tokens. */
  get waiting (): number { return this.queue.length }
  /** Bytes the waiting requests still need. */
  get queuedBytes (): number { return this.queue.reduce((sum, w) => sum + w.need, 0) }
  get isClosed (): boolean { return this.closed }

  /** Tokens available right now (0 while anyone waits). */
  get available (): number {
    this.refill()
    return this.tokens
  }

  /**
   * Resolves when `n` bytes may pass, after every earlier request. Rejects with CLOSED when the
   * bucket closes first, or with the signal's reason when `signal` aborts (tokens already set
   * aside for this request go to the next in line).
   */
  take (n: number, signal?: AbortSignal): Promise<void> {
    try {
      checkBytes(n)
    } catch (err) {
      return Promise.reject(err)
    }
    if (this.closed) return Promise.reject(PatchswarmError.CLOSED('the token bucket is closed'))
    if (signal?.aborted === true) return Promise.reject(signal.reason)
    if (this.queue.length === 0) {
      this.refill()
      if (this._rate === Infinity || this.tokens + EPSILON >= n) {
        this.tokens = Math.max(0, this.tokens - n)
        return Promise.resolve()
      }
    }
    return new Promise<void>((resolve, reject) => {
      let waiter: Waiter | undefined
      const onAbort = signal === undefined ? undefined : () => { if (waiter !== undefined) this.abort(waiter) }
      waiter = { need: n, size: n, resolve, reject, signal, onAbort }
      if (signal !== undefined && onAbort !== undefined) signal.addEventListener('abort', onAbort, { once: true })
      this.queue.push(waiter)
      this.pump()
    })
  }

  /** Takes `n` bytes if they may pass right now and nobody is waiting; never waits. */
  tryTake (n: number): boolean {
    checkBytes(n)
    if (this.closed || this.queue.length > 0) return false
    if (this._rate === Infinity) return true
    this.refill()
    if (this.tokens + EPSILON < n) return false
    this.tokens = Math.max(0, this.tokens - n)
    return true
  }

  /** Changes the rate; waiting requests are served at the new rate from now on. Rate 0 also empties the bucket. */
  setRate (rate: number, burst?: number): void {
    checkRate(rate)
    if (burst !== undefined && (!(burst > 0) || !Number.isFinite(burst))) throw PatchswarmError.BAD_ARGUMENT(`a burst is a finite number of bytes > 0, not ${String(burst)}`)
    if (this.closed) return
    this.refill()
    const wasUnlimited = this._rate === Infinity
    this._rate = rate
    if (burst !== undefined) this._burst = burst
    else if (!this.fixedBurst) this._burst = defaultBurst(rate)
    // Rate 0 means nothing passes, not even what was saved up.
    this.tokens = rate === 0 ? 0 : wasUnlimited ? this._burst : Math.min(this.tokens, this._burst)
    this.pump()
  }

  /** Rejects every waiting request with CLOSED; later `take()` calls reject too. Idempotent. */
  close (): void {
    if (this.closed) return
    this.closed = true
    this.clearTimer()
    const waiters = this.queue.splice(0)
    const err = PatchswarmError.CLOSED('the token bucket is closed')
    for (const waiter of waiters) {
      this.detach(waiter)
      waiter.reject(err)
    }
  }

  // Adds the tokens that accrued since the last call: first to the waiters, in order, then to the
  // bucket up to the burst.
  private refill (): void {
    const now = this.time.now()
    const elapsed = Math.max(0, now - this.last) / 1000
    this.last = now
    if (this._rate === Infinity) {
      this.tokens = this._burst
      return
    }
    let fresh = elapsed * this._rate
    for (const waiter of this.queue) {
      if (fresh <= 0) break
      const given = Math.min(fresh, waiter.need)
      waiter.need -= given
      fresh -= given
    }
    this.tokens = Math.min(this._burst, this.tokens + fresh)
  }

  // Serves what can be served, then sets a timer for when the head of the queue will be.
  private pump (): void {
    this.clearTimer()
    if (this.closed) return
    this.refill()
    while (this.queue.length > 0) {
      const head = this.queue[0]!
      if (this._rate === Infinity) {
        head.need = 0
      } else if (this.tokens > 0) {
        const given = Math.min(this.tokens, head.need)
        head.need -= given
        this.tokens -= given
      }
      if (head.need > EPSILON) break
      this.queue.shift()
      this.detach(head)
      head.resolve()
    }
    const head = this.queue[0]
    if (head === undefined || this._rate === 0) return
    const ms = Math.max(1, Math.ceil((head.need / this._rate) * 1000))
    this.timer = this.time.setTimeout(() => {
      this.timer = undefined
      this.pump()
    }, ms)
  }

  private abort (waiter: Waiter): void {
    const index = this.queue.indexOf(waiter)
    if (index < 0) return
    this.refill()
    this.queue.splice(index, 1)
    // Whatever was set aside for this request goes back into circulation.
    this.tokens += waiter.size - waiter.need
    this.detach(waiter)
    waiter.reject(waiter.signal?.reason)
    this.pump()
    if (this.queue.length === 0) this.tokens = Math.min(this.tokens, this._burst)
  }

  private detach (waiter: Waiter): void {
    if (waiter.signal !== undefined && waiter.onAbort !== undefined) waiter.signal.removeEventListener('abort', waiter.onAbort)
  }

  private clearTimer (): void {
    if (this.timer !== undefined) {
      this.time.clearTimeout(this.timer)
      this.timer = undefined
    }
  }
}
