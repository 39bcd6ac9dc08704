// Delay-based back-off in the spirit of LEDBAT (RFC 6817), as a rate limit rather than a
// congestion window. Fed with one-way-delay or round-trip samples of our own transfers, it keeps a
// base delay (the minimum over the last few minutes: the empty-queue delay of the path) and a
// filtered current delay (the minimum of the last few samples). Their difference is the queueing
// delay our traffic adds at the bottleneck, usually the home router's upstream buffer. Above the
// target (100 ms, as in the RFC) the rate drops multiplicatively, at most once per round trip;
// below it the rate grows additively, faster the further below target, until it reaches the cap and
// stops limiting. It never drops below a floor, so a transfer never stalls for good.
import { PatchswarmError } from '../errors.js'
import { type TimeSource, realTime } from './token-bucket.js'

export interface LedbatOptions {
  /** Queueing delay to aim for, ms. Default 100 (RFC 6817). */
  targetMs?: number
  /** Minutes of history for the base delay. Default 10 (RFC 6817 BASE_HISTORY). */
  baseHistoryMinutes?: number
  /** Samples in the current-delay filter (their minimum counts). Default 3. */
  currentFilter?: number
  /** Factor applied on a decrease. Default 0.7. */
  decrease?: number
  /** Additive increase at zero queueing delay, as a share of the reference rate per second. Default 0.1 (cap reached from the floor in ~10 s). */
  gain?: number
  /** Lowest limit in bytes/s, whatever the cap: default 16 KiB/s … or 1 % of the cap if higher. */
  minRate?: number
  time?: TimeSource
}

const MINUTE = 60_000
const DEFAULT_MIN_RATE = 16 * 1024

export interface LedbatState {
  /** The limit in bytes/s; `Infinity` when the controller is not limiting. */
  readonly limit: number
  readonly baseDelayMs: number | undefined
  readonly currentDelayMs: number | undefined
  readonly queueingDelayMs: number | undefined
}

export class LedbatController {
  readonly targetMs: number
  private readonly baseHistory: number
  private readonly filterSize: number
  private readonly decreaseFactor: number
  private readonly gain: number
  private readonly minRate: number
  private readonly time: TimeSource
  /** Per-minute minima: [minute, min delay], oldest first. */
  private readonly baseBuckets: Array<[number, number]> = []
  private readonly recent: number[] = []
  private limit = Infinity
  /** The rate an increase is measured against when the cap is unlimited: the limit before the last decrease. */
  private reference = 0
  private lastSampleAt: number | undefined
  private lastDecreaseAt = -Infinity
  private _cap = Infinity

  constructor (options: LedbatOptions = {}) {
    this.targetMs = positive(options.targetMs ?? 100, 'targetMs')
    this.baseHistory = Math.max(1, Math.round(positive(options.baseHistoryMinutes ?? 10, 'baseHistoryMinutes')))
    this.filterSize = Math.max(1, Math.round(positive(options.currentFilter ?? 3, 'currentFilter')))
    this.decreaseFactor = options.decrease ?? 0.7
    if (!(this.decreaseFactor > 0 && this.decreaseFactor < 1)) throw PatchswarmError.BAD_ARGUMENT('decrease is a factor between 0 and 1')
    this.gain = positive(options.gain ?? 0.1, 'gain')
    this.minRate = positive(options.minRate ?? DEFAULT_MIN_RATE, 'minRate')
    this.time = options.time ?? realTime
  }

  /** The schedule's cap this controller works under (bytes/s, may be Infinity). */
  get cap (): number { return this._cap }
  set cap (cap: number) {
    this._cap = cap
    if (this.limit >= cap) this.limit = Infinity
    else this.limit = Math.max(this.limit, this.floor())
  }

  /** Lowest limit ever applied: 16 KiB/s or 1 % of the cap, whichever is higher, but never above the cap. */
  floor (): number {
    if (!Number.isFinite(this._cap)) return this.minRate
    return Math.min(this._cap, Math.max(this.minRate, this._cap / 100))
  }

  /** The rate to apply: min(cap, limit). */
  get rate (): number { return Math.min(this._cap, this.limit) }

  get state (): LedbatState {
    const base = this.baseDelay()
    const current = this.currentDelay()
    return {
      limit: this.limit,
      baseDelayMs: base,
      currentDelayMs: current,
      queueingDelayMs: base === undefined || current === undefined ? undefined : current - base
    }
  }

  /**
   * Feeds one delay sample (one-way delay or RTT of our own transfer, ms). `throughput`: what the
   * direction actually moves now (bytes/s), used as the starting point of the first decrease when
   * the cap is unlimited. Returns true when the rate changed.
   */
  onDelaySample (ms: number, throughput?: number): boolean {
    if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) throw PatchswarmError.BAD_ARGUMENT(`a delay sample is a finite number of ms >= 0, not ${String(ms)}`)
    const now = this.time.now()
    this.addBase(now, ms)
    this.recent.push(ms)
    if (this.recent.length > this.filterSize) this.recent.shift()
    const dt = this.lastSampleAt === undefined ? 0 : Math.min(1000, Math.max(0, now - this.lastSampleAt)) / 1000
    this.lastSampleAt = now
    if (this._cap === 0) return false

    const before = this.rate
    const current = this.currentDelay()!
    const queueing = current - this.baseDelay()!
    if (queueing > this.targetMs) {
      // At most one decrease per round trip (or per target, if the delay is short).
      if (now - this.lastDecreaseAt >= Math.max(this.targetMs, current)) {
        this.lastDecreaseAt = now
        const from = Number.isFinite(this.limit)
          ? Math.min(this.limit, this._cap)
          : Number.isFinite(this._cap) ? this._cap : Math.max(throughput ?? 0, this.floor())
        this.reference = from
        this.limit = Math.max(this.floor(), from * this.decreaseFactor)
      }
    } else if (Number.isFinite(this.limit)) {
      const offTarget = (this.targetMs - queueing) / this.targetMs
      const reference = Number.isFinite(this._cap) ? this._cap : Math.max(this.reference, this.floor())
      this.limit += this.gain * offTarget * reference * dt
      // Once at the cap, or well past the rate that caused the last back-off, stop limiting.
      if (this.limit >= this._cap || (!Number.isFinite(this._cap) && this.limit >= 2 * reference)) this.limit = Infinity
    }
    return this.rate !== before
  }

  private addBase (now: number, ms: number): void {
    const minute = Math.floor(now / MINUTE)
    const last = this.baseBuckets[this.baseBuckets.length - 1]
    if (last !== undefined && last[0] === minute) last[1] = Math.min(last[1], ms)
    else this.baseBuckets.push([minute, ms])
    while (this.baseBuckets.length > 0 && this.baseBuckets[0]![0] <= minute - this.baseHistory) this.baseBuckets.shift()
  }

  private baseDelay (): number | undefined {
    if (this.baseBuckets.length === 0) return undefined
    let min = Infinity
    for (const [, value] of this.baseBuckets) min = Math.min(min, value)
    return min
  }

  private currentDelay (): number | undefined {
    if (this.recent.length === 0) return undefined
    return Math.min(...this.recent)
  }
}

function positive (value: number, name: string): number {
  if (typeof value !== 'number' || !(value > 0) || !Number.isFinite(value)) throw PatchswarmError.BAD_ARGUMENT(`${name} is a finite number > 0, not ${String(value)}`)
  return value
}
