// Courtesy: how much of the link the swarm may use, per direction, so the person at the machine
// never notices. Three things decide the rate of each direction:
//   1. the schedule (business hours vs. night, in the endpoint's time zone), re-read every minute;
//   2. a metered link: no uploads at all;
//   3. delay-based back-off (LEDBAT-style): when our traffic builds a queue at the bottleneck, the
//      rate drops below the schedule's cap and climbs back once the queue is gone.
// Each direction is a token bucket the swarm node pushes bytes through:
//   await courtesy.upload.take(bytes)      before sending
//   await courtesy.download.take(bytes)    before requesting (or after receiving) a chunk
// and feeds it delay samples of its transfers: courtesy.upload.onDelaySample(ms).
import { Observable, Subject, defer, distinctUntilChanged, map, shareReplay, startWith } from 'rxjs'
import { PatchswarmError } from '../errors.js'
import { type TimeSource, TokenBucket, realTime } from './token-bucket.js'
import { type LedbatOptions, type LedbatState, LedbatController } from './ledbat.js'
import { type CourtesyDirectionName, type CourtesyScheduleSpec, type ScheduledLimits, type CourtesyLimits, CourtesySchedule } from './courtesy-schedule.js'

/**
 * Who this node is in the swarm. The origin's upload is the scarcest resource, asked last. The
 * swarm's scheduler does not read `role` or `sourcePriority` (it takes the origin from the peer's
 * certificate); they describe this node to views and tools.
 */
export type CourtesyRole = 'origin' | 'peer'

export interface CourtesyOptions {
  /** A schedule, or its spec. Default: unlimited at all times. */
  schedule?: CourtesySchedule | CourtesyScheduleSpec
  /** A metered link (mobile hotspot, …): no uploads at all. Default false. */
  metered?: boolean
  role?: CourtesyRole
  /** Token bucket bursts per direction, bytes. Default: a tenth of a second at the rate, 16 KiB … 1 MiB. */
  burst?: Partial<Record<CourtesyDirectionName, number>>
  /** Delay-based back-off settings, or false to turn it off. */
  ledbat?: LedbatOptions | false
  time?: TimeSource
}

export interface CourtesyRates {
  /** Effective limits in bytes/s (schedule, metered and back-off combined); Infinity = unlimited. */
  readonly upload: number
  readonly download: number
  /** False on a metered link or while the schedule allows no upload: do not serve requests. */
  readonly uploadAllowed: boolean
  readonly metered: boolean
  /** The schedule's caps in force (before back-off). */
  readonly cap: CourtesyLimits
  /** Index of the schedule window in force, -1 for the default. */
  readonly window: number
}

const METER_SLOT_MS = 250
const METER_SLOTS = 8

/** Bytes per second over the last two seconds. */
class RateMeter {
  private readonly slots = new Float64Array(METER_SLOTS)
  private slot = -1

  constructor (private readonly time: TimeSource) {}

  add (bytes: number): void {
    this.advance()
    this.slots[this.slot % METER_SLOTS]! += bytes
  }

  rate (): number {
    this.advance()
    let sum = 0
    for (const value of this.slots) sum += value
    return sum / (METER_SLOTS * METER_SLOT_MS / 1000)
  }

  private advance (): void {
    const slot = Math.floor(this.time.now() / METER_SLOT_MS)
    if (this.slot < 0) this.slot = slot
    for (let s = this.slot + 1; s <= slot && s <= this.slot + METER_SLOTS; s++) this.slots[s % METER_SLOTS] = 0
    this.slot = Math.max(this.slot, slot)
  }
}

/** One direction of the link: a token bucket whose rate follows the schedule and the back-off. */
export class CourtesyDirection {
  readonly name: CourtesyDirectionName
  private readonly bucket: TokenBucket
  private readonly ledbat: LedbatController | undefined
  private readonly meter: RateMeter
  private _cap = Infinity

  /** @internal Built by Courtesy. */
  constructor (name: CourtesyDirectionName, time: TimeSource, burst: number | undefined, ledbat: LedbatOptions | false | undefined, private readonly changed: () => void) {
    this.name = name
    this.bucket = new TokenBucket({ rate: Infinity, burst, time })
    this.ledbat = ledbat === false ? undefined : new LedbatController({ ...ledbat, time })
    this.meter = new RateMeter(time)
  }

  /** Resolves when `n` bytes may pass in this direction (FIFO). Rejects with CLOSED on close. */
  take (n: number, signal?: AbortSignal): Promise<void> {
    if (typeof n === 'number' && n > 0) this.meter.add(n)
    return this.bucket.take(n, signal)
  }

  /** Takes `n` bytes if they may pass right now; never waits. */
  tryTake (n: number): boolean {
    const ok = this.bucket.tryTake(n)
    if (ok && n > 0) this.meter.add(n)
    return ok
  }

  /** A one-way delay or round-trip sample (ms) of a transfer in this direction. */
  onDelaySample (ms: number): void {
    if (this.ledbat === undefined) {
      if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) throw PatchswarmError.BAD_ARGUMENT(`a delay sample is a finite number of ms >= 0, not ${String(ms)}`)
      return
    }
    if (this.ledbat.onDelaySample(ms, this.meter.rate())) this.apply()
  }

  /** The effective limit, bytes/s (Infinity = unlimited). */
  get rate (): number { return this.bucket.rate }
  /** The schedule's cap (0 for upload on a metered link). */
  get cap (): number { return this._cap }
  /** Bytes/s requested through this direction over the last two seconds. */
  get throughput (): number { return this.meter.rate() }
  /** The token bucket's burst, bytes. */
  get burst (): number { return this.bucket.burst }
  /** Requests waiting for tokens. */
  get waiting (): number { return this.bucket.waiting }
  /** Bytes that waiting takes still need. */
  get queuedBytes (): number { return this.bucket.queuedBytes }
  /** The back-off's view of the path, or undefined when back-off is off. */
  get delay (): LedbatState | undefined { return this.ledbat?.state }

  /** @internal */
  setCap (cap: number): void {
    this._cap = cap
    if (this.ledbat !== undefined) this.ledbat.cap = cap
    this.apply()
  }

  /** @internal */
  close (): void { this.bucket.close() }

  private apply (): void {
    const rate = this.ledbat === undefined ? this._cap : this.ledbat.rate
    if (rate === this.bucket.rate) return
    this.bucket.setRate(rate)
    this.changed()
  }
}

export class Courtesy {
  readonly role: CourtesyRole
  readonly upload: CourtesyDirection
  readonly download: CourtesyDirection
  /** Effective rates and flags; emits on subscribe and on every change. */
  readonly rates$: Observable<CourtesyRates>
  private _schedule: CourtesySchedule
  private _metered: boolean
  private limits: ScheduledLimits = { upload: Infinity, download: Infinity, window: -2 }
  private readonly time: TimeSource
  private readonly changes = new Subject<void>()
  private timer: unknown = undefined
  private closed = false
  private evaluating = false
  private changedWhileEvaluating = false

  constructor (options: CourtesyOptions = {}) {
    this.time = options.time ?? realTime
    this.role = options.role ?? 'peer'
    if (this.role !== 'origin' && this.role !== 'peer') throw PatchswarmError.BAD_ARGUMENT(`role is "origin" or "peer", not ${JSON.stringify(this.role)}`)
    this._schedule = toSchedule(options.schedule)
    this._metered = options.metered === true
    const changed = (): void => {
      if (this.evaluating) this.changedWhileEvaluating = true
      else this.changes.next()
    }
    this.upload = new CourtesyDirection('upload', this.time, options.burst?.upload, options.ledbat, changed)
    this.download = new CourtesyDirection('download', this.time, options.burst?.download, options.ledbat, changed)
    this.rates$ = defer(() => this.changes.pipe(startWith(undefined))).pipe(
      map(() => this.rates()),
      distinctUntilChanged(sameRates),
      shareReplay({ bufferSize: 1, refCount: true })
    )
    this.evaluate()
    this.arm()
  }

  /** Nothing to wait for; here so that a node can treat all its parts alike. Idempotent. */
  async ready (): Promise<void> {
    if (this.closed) throw PatchswarmError.CLOSED('courtesy is closed')
  }

  /** Stops the schedule timer and rejects every waiting take() with CLOSED. Idempotent. */
  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    if (this.timer !== undefined) this.time.clearTimeout(this.timer)
    this.timer = undefined
    this.upload.close()
    this.download.close()
    this.changes.complete()
  }

  /** Lower number = ask first. The origin is the last resort. */
  get sourcePriority (): number { return this.role === 'origin' ? 2 : 1 }

  get metered (): boolean { return this._metered }
  get schedule (): CourtesySchedule { return this._schedule }

  /** False on a metered link, or while the schedule allows no upload. */
  get uploadAllowed (): boolean { return !this._metered && this.upload.cap > 0 }

  /** The effective limit of a direction, bytes/s (Infinity = unlimited). */
  effectiveRate (direction: CourtesyDirectionName): number {
    return this.direction(direction).rate
  }

  /** An Observable of one direction's effective limit. */
  effectiveRate$ (direction: CourtesyDirectionName): Observable<number> {
    this.direction(direction)
    return this.rates$.pipe(map((r) => r[direction]), distinctUntilChanged())
  }

  direction (name: CourtesyDirectionName): CourtesyDirection {
    if (name === 'upload') return this.upload
    if (name === 'download') return this.download
    throw PatchswarmError.BAD_ARGUMENT(`direction is "upload" or "download", not ${JSON.stringify(name)}`)
  }

  rates (): CourtesyRates {
    const limits = this.limits
    return {
      upload: this.upload.rate,
      download: this.download.rate,
      uploadAllowed: this.uploadAllowed,
      metered: this._metered,
      cap: { upload: limits.upload, download: limits.download },
      window: limits.window
    }
  }

  setMetered (metered: boolean): void {
    if (this.closed || this._metered === metered) return
    this._metered = metered
    this.evaluate()
    this.changes.next() // uploadAllowed and metered changed even if no rate did
  }

  setSchedule (schedule: CourtesySchedule | CourtesyScheduleSpec): void {
    const next = toSchedule(schedule)
    if (this.closed) return
    this._schedule = next
    this.evaluate()
  }

  // Applies the schedule's limits for now; rates$ emits once for the lot.
  private evaluate (): void {
    const limits = this._schedule.limitsAt(this.time.wallNow())
    const before = this.limits
    this.limits = limits
    this.evaluating = true
    this.changedWhileEvaluating = false
    try {
      this.upload.setCap(this._metered ? 0 : limits.upload)
      this.download.setCap(limits.download)
    } finally {
      this.evaluating = false
    }
    if (this.changedWhileEvaluating || limits.window !== before.window || limits.upload !== before.upload || limits.download !== before.download) this.changes.next()
  }

  // Re-reads the schedule just after every minute boundary (time zones are whole minutes apart
  // from UTC, so local minute boundaries fall on UTC ones).
  private arm (): void {
    if (this.closed) return
    const wall = this.time.wallNow()
    const ms = 60_000 - (((wall % 60_000) + 60_000) % 60_000) + 5
    this.timer = this.time.setTimeout(() => {
      this.timer = undefined
      if (this.closed) return
      this.evaluate()
      this.arm()
    }, ms, { unref: true })
  }
}

function toSchedule (schedule: CourtesySchedule | CourtesyScheduleSpec | undefined): CourtesySchedule {
  return schedule instanceof CourtesySchedule ? schedule : new CourtesySchedule(schedule ?? {})
}

function sameRates (a: CourtesyRates, b: CourtesyRates): boolean {
  return a.upload === b.upload && a.download === b.download && a.uploadAllowed === b.uploadAllowed &&
    a.metered === b.metered && a.window === b.window && a.cap.upload === b.cap.upload && a.cap.download === b.cap.download
}
