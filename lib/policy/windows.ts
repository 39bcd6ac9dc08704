// Maintenance windows: a cron expression says when a window opens (local wall-clock time in an IANA
// time zone), and it stays open for durationMinutes of real elapsed time. Pure and fast, so the
// endpoint agent can ask at every check-in: no LevelDB, no timers, no node-cron (which cannot
// compute a previous run).
//
// Cron: five fields, minute hour day-of-month month day-of-week, each `*`, a number, a range
// `a-b`, a step `*/n` or `a-b/n`, or a comma list of those; months and weekdays also by their
// three-letter English names; day-of-week 0-7 with 0 and 7 both Sunday. Day-of-month and
// day-of-week follow Vixie cron exactly: when either field starts with `*` a day must match both,
// otherwise (both restricted) it matches if either does. So `0 3 1 * 1` is "the 1st and every
// Monday", while `0 3 */2 * 1` is "odd days that are Mondays".
//
// Daylight saving time, as Vixie cron and cronie handle it:
// - A cron whose minute or hour field starts with `*` fires at least hourly and follows the
//   clock: no start in the skipped hour of the spring-forward night (the next one comes soon),
//   and starts in the repeated hour of the fall-back night happen twice, once per pass.
// - Any other cron is fixed-time: a start happens when the local wall clock first reaches its
//   time that day. One inside the spring-forward gap (02:30 in Europe/Vienna on 29 March 2026,
//   when clocks jump from 02:00 to 03:00) happens at the jump, 03:00 local, so a night's window
//   is moved, not lost; one inside the repeated hour (02:30 on 25 October 2026) happens once,
//   the first time.
// - A window lasts durationMinutes of real time, however the clock is moved meanwhile.
//
// Searches are bounded: the next start at most WINDOW_SEARCH_DAYS local days ahead, and the
// extent of an open period (overlapping windows merge) at most OPEN_SPAN_DAYS either way. They
// walk local days, and only days the cron can match cost a time zone lookup (two, plus a short
// bisection on the two days a year with a clock change).
import { z } from 'zod'
import { PatchswarmError, isPatchswarmError } from '../errors.js'
import { parseShape } from '../trust/fields.js'

export const MAX_WINDOW_MINUTES = 7 * 24 * 60
export const MAX_CRON_LENGTH = 256
export const MAX_WINDOWS = 64
/** How many local days ahead nextOpen / nextWindowStart look. */
export const WINDOW_SEARCH_DAYS = 400
/** How far openedAt / closesAt follow a chain of overlapping windows. */
export const OPEN_SPAN_DAYS = 31

export interface MaintenanceWindow {
  /** Five-field cron expression for the window's start, in `timezone`. */
  cron: string
  /** 1 … 10080 (a week). */
  durationMinutes: number
  /** IANA time zone name, e.g. "Europe/Vienna". */
  timezone: string
}

export interface WindowState {
  open: boolean
  /** When open: the start of the open period (overlapping windows count as one period). */
  openedAt?: Date
  /** When open: its end; absent if it is still open OPEN_SPAN_DAYS from now. */
  closesAt?: Date
  /** When closed: the next start, if there is one within WINDOW_SEARCH_DAYS. */
  nextOpen?: Date
}

const MINUTE = 60_000
const HOUR = 60 * MINUTE
const DAY = 24 * HOUR
const CACHE_LIMIT = 1024

// ---- time zones ----------------------------------------------------------------------------

/** Offsets around one local day: before (oA) and after (oB) the clock change at T, if any. */
interface DayInfo {
  readonly oA: number
  readonly oB: number
  /** First instant with offset oB; Infinity when the day has no clock change. */
  readonly T: number
}

class Zone {
  private readonly format: Intl.DateTimeFormat
  private readonly days = new Map<number, DayInfo>()

  constructor (name: string) {
    this.format = new Intl.DateTimeFormat('en-US', {
      timeZone: name,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric'
    })
  }

  /** Local time minus UTC at instant `t`, ms. */
  offsetAt (t: number): number {
    const s = t - (((t % 1000) + 1000) % 1000)
    let y = 1970; let mo = 1; let d = 1; let h = 0; let mi = 0; let sec = 0
    for (const part of this.format.formatToParts(s)) {
      switch (part.type) {
        case 'year': y = Number(part.value); break
        case 'month': mo = Number(part.value); break
        case 'day': d = Number(part.value); break
        case 'hour': h = Number(part.value) % 24; break
        case 'minute': mi = Number(part.value); break
        case 'second': sec = Number(part.value); break
      }
    }
    return Date.UTC(y, mo - 1, d, h, mi, sec) - s
  }

  /** The local calendar day of instant `t`, as days since 1970-01-01. */
  localDay (t: number): number {
    return Math.floor((t + this.offsetAt(t)) / DAY)
  }

  /**
   * Offsets around local day `dn`. Every instant whose local time falls on that day lies within
   * 14 h before to 12 h after the day's wall-clock span (the extreme UTC offsets), so the offsets
   * just outside that range bracket it; we assume at most one clock change in those 52 hours.
   */
  day (dn: number): DayInfo {
    let info = this.days.get(dn)
    if (info !== undefined) return info
    let lo = dn * DAY - 15 * HOUR
    let hi = (dn + 1) * DAY + 13 * HOUR
    const oA = this.offsetAt(lo)
    const oB = this.offsetAt(hi)
    if (oA === oB) {
      info = { oA, oB, T: Infinity }
    } else {
      // Clock changes happen on whole seconds: bisect to the first second with the new offset.
      while (hi - lo > 1000) {
        const mid = lo + Math.floor((hi - lo) / 2000) * 1000
        if (this.offsetAt(mid) === oA) lo = mid
        else hi = mid
      }
      info = { oA, oB, T: hi }
    }
    if (this.days.size >= CACHE_LIMIT) this.days.clear()
    this.days.set(dn, info)
    return info
  }
}

const zones = new Map<string, Zone>()

function zoneNamed (name: string): Zone {
  let zone = zones.get(name)
  if (zone === undefined) {
    zone = new Zone(name) // throws RangeError for an unknown zone
    if (zones.size >= CACHE_LIMIT) zones.clear()
    zones.set(name, zone)
  }
  return zone
}

/** Null if `name` is a time zone this runtime knows, else what is wrong with it. */
export function checkTimeZone (name: string): string | null {
  if (name === '') return 'is empty; use an IANA time zone name like "Europe/Vienna"'
  try {
    zoneNamed(name)
    return null
  } catch {
    return `unknown time zone ${JSON.stringify(name).slice(0, 80)}; use an IANA name like "Europe/Vienna"`
  }
}

/**
 * The instants the local clock shows naive local time `w` (ms since 1970 as if local were UTC) on
 * a day described by `info`: w − oA before the change, w − oB after it; none in a gap, two in an
 * overlap. `firstOnly`: just the first instant the clock reaches `w` or later, which in a gap is
 * the jump itself (T).
 */
function instantsOf (info: DayInfo, w: number, firstOnly: boolean, out: number[]): void {
  const before = w - info.oA
  const after = w - info.oB
  if (before < info.T) {
    out.push(before)
    if (!firstOnly && after >= info.T) out.push(after) // the repeated hour, second pass
  } else if (after >= info.T) {
    out.push(after)
  } else if (firstOnly) {
    out.push(info.T) // in the gap: the jump is when the clock first passes w
  }
}

// ---- cron ----------------------------------------------------------------------------------

interface Cron {
  readonly minutes: readonly number[]
  readonly hours: readonly number[]
  readonly dom: readonly boolean[]
  readonly months: readonly boolean[]
  readonly dow: readonly boolean[]
  readonly domStar: boolean
  readonly dowStar: boolean
  /** Fires at least hourly (minute or hour field starts with `*`): follows the clock across DST. */
  readonly followsClock: boolean
}

interface FieldSpec {
  readonly name: string
  readonly min: number
  readonly max: number
  readonly names?: readonly string[]
  /** What the first name stands for. */
  readonly firstName?: number
}

const FIELDS: readonly FieldSpec[] = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day-of-month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12, names: ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'], firstName: 1 },
  { name: 'day-of-week', min: 0, max: 7, names: ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'], firstName: 0 }
]

const ITEM = /^(?:(\*)|([0-9a-z]+)(?:-([0-9a-z]+))?)(?:\/(\d{1,2}))?$/i

/** Days per month, February in a leap year: the most a day-of-month can ever meet. */
const MONTH_DAYS = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]

function fieldValue (text: string, spec: FieldSpec): number | string {
  let value: number
  if (/^\d{1,2}$/.test(text)) {
    value = Number(text)
  } else {
    const i = spec.names?.indexOf(text.toLowerCase()) ?? -1
    if (i < 0) return `${JSON.stringify(text)} is not a number${spec.names ? ' or a name like ' + spec.names[0] : ''}`
    value = i + spec.firstName!
  }
  if (value < spec.min || value > spec.max) return `${value} is out of range ${spec.min}-${spec.max}`
  return value
}

/** The values a field allows (indexes spec.min … spec.max), or what is wrong with it. */
function parseField (text: string, spec: FieldSpec): boolean[] | string {
  const set = new Array<boolean>(spec.max + 1).fill(false)
  for (const item of text.split(',')) {
    const m = ITEM.exec(item)
    if (m === null) return `cannot read ${JSON.stringify(item)} (use *, 5, 1-5, */15, 0-30/10 or lists of these)`
    let lo = spec.min
    let hi = spec.max
    if (m[1] === undefined) {
      const a = fieldValue(m[2]!, spec)
      if (typeof a === 'string') return a
      lo = hi = a
      if (m[3] !== undefined) {
        const b = fieldValue(m[3], spec)
        if (typeof b === 'string') return b
        if (b < a) return `range ${item} runs backwards`
        hi = b
      } else if (m[4] !== undefined) {
        return `step ${JSON.stringify(item)} needs * or a range before the slash (like */15 or 0-30/15)`
      }
    }
    const step = m[4] === undefined ? 1 : Number(m[4])
    if (step < 1 || step > spec.max - spec.min + 1) return `step ${step} is out of range 1-${spec.max - spec.min + 1}`
    for (let v = lo; v <= hi; v += step) set[v] = true
  }
  return set
}

function compileCron (expr: string): Cron | string {
  const parts = expr.trim().split(/\s+/)
  if (parts.length !== 5 || parts[0] === '') {
    return `needs 5 fields (minute hour day-of-month month day-of-week), not ${parts[0] === '' ? 0 : parts.length}`
  }
  const sets: boolean[][] = []
  for (let i = 0; i < 5; i++) {
    const set = parseField(parts[i]!, FIELDS[i]!)
    if (typeof set === 'string') return `${FIELDS[i]!.name} field ${JSON.stringify(parts[i])}: ${set}`
    sets.push(set)
  }
  const [minute, hour, dom, month, dowWith7] = sets as [boolean[], boolean[], boolean[], boolean[], boolean[]]
  const dow = dowWith7.slice(0, 7)
  if (dowWith7[7]) dow[0] = true
  const cron: Cron = {
    minutes: indexesOf(minute),
    hours: indexesOf(hour),
    dom,
    months: month,
    dow,
    domStar: parts[2]!.startsWith('*'),
    dowStar: parts[4]!.startsWith('*'),
    followsClock: parts[0]!.startsWith('*') || parts[1]!.startsWith('*')
  }
  // Both matching means the day-of-month alone must meet a month: 31 * 2 never does.
  const both = cron.domStar || cron.dowStar
  if (both && !MONTH_DAYS.some((days, m) => month[m + 1] && dom.some((ok, d) => ok && d <= days))) {
    return 'day-of-month and month never meet (no such date)'
  }
  return cron
}

function indexesOf (set: readonly boolean[]): number[] {
  const out: number[] = []
  set.forEach((ok, i) => { if (ok) out.push(i) })
  return out
}

const crons = new Map<string, Cron | string>()

function cronOf (expr: string): Cron | string {
  let cron = crons.get(expr)
  if (cron === undefined) {
    cron = compileCron(expr)
    if (crons.size >= CACHE_LIMIT) crons.clear()
    crons.set(expr, cron)
  }
  return cron
}

function dayMatches (cron: Cron, dn: number): boolean {
  const date = new Date(dn * DAY)
  if (!cron.months[date.getUTCMonth() + 1]) return false
  const dom = cron.dom[date.getUTCDate()] === true
  const dow = cron.dow[date.getUTCDay()] === true
  return cron.domStar || cron.dowStar ? dom && dow : dom || dow
}

// ---- validation ----------------------------------------------------------------------------

export const windowSchema = z.strictObject({
  cron: z.string().max(MAX_CRON_LENGTH).check((ctx) => {
    const cron = cronOf(ctx.value)
    if (typeof cron === 'string') ctx.issues.push({ code: 'custom', message: cron, input: ctx.value })
  }),
  durationMinutes: z.int().min(1).max(MAX_WINDOW_MINUTES),
  timezone: z.string().max(128).check((ctx) => {
    const problem = checkTimeZone(ctx.value)
    if (problem) ctx.issues.push({ code: 'custom', message: problem, input: ctx.value })
  })
})

/** Validates a window; BAD_WINDOW names the field (`window.cron: day-of-week field …`). */
export function parseWindow (value: unknown, what = 'window'): MaintenanceWindow {
  try {
    return parseShape(windowSchema, value, what)
  } catch (err) {
    // The window's shape has no names or paths in it, so every problem is a BAD_DOCUMENT.
    throw isPatchswarmError(err, 'BAD_DOCUMENT') ? PatchswarmError.BAD_WINDOW(err.detail, err.cause) : err
  }
}

interface CompiledWindow {
  readonly cron: Cron
  readonly zone: Zone
  readonly duration: number
}

function compile (value: unknown, what: string): CompiledWindow {
  const w = parseWindow(value, what)
  return { cron: cronOf(w.cron) as Cron, zone: zoneNamed(w.timezone), duration: w.durationMinutes * MINUTE }
}

function compileAll (windows: readonly unknown[]): CompiledWindow[] {
  if (!Array.isArray(windows as unknown)) throw PatchswarmError.BAD_WINDOW('windows: must be a list of windows')
  if (windows.length > MAX_WINDOWS) throw PatchswarmError.BAD_WINDOW(`windows: at most ${MAX_WINDOWS}, not ${windows.length}`)
  return windows.map((w, i) => compile(w, `windows[${i}]`))
}

function instant (t: Date, what: string): number {
  const ms = t instanceof Date ? t.getTime() : NaN
  if (!Number.isFinite(ms)) throw PatchswarmError.BAD_ARGUMENT(`${what} must be a valid Date`)
  return ms
}

// ---- searching -----------------------------------------------------------------------------

const NONE: readonly number[] = []

/** The window's starts on local day `dn` as instants, ascending, each once. */
function startsOn (w: CompiledWindow, dn: number): readonly number[] {
  if (!dayMatches(w.cron, dn)) return NONE
  const info = w.zone.day(dn)
  const midnight = dn * DAY
  const out: number[] = []
  for (const h of w.cron.hours) {
    for (const m of w.cron.minutes) instantsOf(info, midnight + h * HOUR + m * MINUTE, !w.cron.followsClock, out)
  }
  if (info.T === Infinity) return out // one offset all day: already ascending and distinct
  // Around a clock change the second pass interleaves, and gap starts collapse onto the jump.
  out.sort((a, b) => a - b)
  return out.filter((t, i) => i === 0 || t !== out[i - 1])
}

/** Starts strictly after `after`, ascending, for `days` local days. */
function * startsAfter (w: CompiledWindow, after: number, days: number): Generator<number, undefined, void> {
  // From the day before: a clock change at midnight can put a start of that day after `after`.
  const first = w.zone.localDay(after) - 1
  for (let dn = first; dn <= first + days + 1; dn++) {
    for (const s of startsOn(w, dn)) if (s > after) yield s
  }
}

/** Starts at or before `t`, descending, for `days` local days back. */
function * startsUpTo (w: CompiledWindow, t: number, days: number): Generator<number, undefined, void> {
  const first = w.zone.localDay(t) + 1
  for (let dn = first; dn >= first - days - 1; dn--) {
    const list = startsOn(w, dn)
    for (let i = list.length - 1; i >= 0; i--) if (list[i]! <= t) yield list[i]!
  }
}

/** The first start of `window` strictly after `after`, or undefined within WINDOW_SEARCH_DAYS. */
export function nextWindowStart (window: MaintenanceWindow, after: Date): Date | undefined {
  const w = compile(window, 'window')
  const t = instant(after, 'after')
  for (const s of startsAfter(w, t, WINDOW_SEARCH_DAYS)) return new Date(s)
  return undefined
}

/**
 * Whether any of `windows` is open at `now` (a window is open from its start, inclusive, for its
 * duration, exclusive). Open: the period's start and end, overlapping or touching windows taken
 * as one. Closed: the next start. No windows: closed for good.
 */
export function windowState (windows: readonly MaintenanceWindow[], now: Date): WindowState {
  const ws = compileAll(windows)
  const t = instant(now, 'now')
  if (ws.length === 0) return { open: false }
  const maxDuration = Math.max(...ws.map((w) => w.duration))
  const spanDays = OPEN_SPAN_DAYS + Math.ceil(maxDuration / DAY) + 1

  // The latest start of each window decides whether it is open (all its starts last as long).
  const back = ws.map((w) => startsUpTo(w, t, spanDays))
  const backHeads = back.map((g) => g.next().value)
  let openedAt = Infinity
  let end = -Infinity
  backHeads.forEach((s, i) => {
    if (s !== undefined && s + ws[i]!.duration > t) {
      openedAt = Math.min(openedAt, s)
      end = Math.max(end, s + ws[i]!.duration)
    }
  })

  if (end === -Infinity) {
    let next = Infinity
    for (const w of ws) {
      for (const s of startsAfter(w, t, WINDOW_SEARCH_DAYS)) { next = Math.min(next, s); break }
    }
    return next === Infinity ? { open: false } : { open: false, nextOpen: new Date(next) }
  }

  // Backwards, latest start first: a window that ends at or after the period's start joins it.
  // Nothing that starts more than the longest duration before the period's start can reach it.
  const floor = t - OPEN_SPAN_DAYS * DAY
  for (;;) {
    const i = pick(backHeads, (a, b) => a > b)
    if (i < 0) break
    const s = backHeads[i]!
    if (s + maxDuration < openedAt || s < floor) break
    if (s + ws[i]!.duration >= openedAt) openedAt = Math.min(openedAt, s)
    backHeads[i] = back[i]!.next().value
  }

  // Forwards, earliest start first: a start at or before the period's end extends it.
  const ceiling = t + OPEN_SPAN_DAYS * DAY
  const fwd = ws.map((w) => startsAfter(w, t, spanDays))
  const fwdHeads = fwd.map((g) => g.next().value)
  let closesAt: number | undefined
  for (;;) {
    const i = pick(fwdHeads, (a, b) => a < b)
    const s = i < 0 ? undefined : fwdHeads[i]!
    if (s === undefined || s > end) { closesAt = end; break }
    if (s > ceiling) break
    end = Math.max(end, s + ws[i]!.duration)
    fwdHeads[i] = fwd[i]!.next().value
  }
  return closesAt === undefined
    ? { open: true, openedAt: new Date(openedAt) }
    : { open: true, openedAt: new Date(openedAt), closesAt: new Date(closesAt) }
}

/** Index of the head that `better` prefers, -1 when all are exhausted. */
function pick (heads: readonly (number | undefined)[], better: (a: number, b: number) => boolean): number {
  let best = -1
  heads.forEach((s, i) => {
    if (s !== undefined && (best < 0 || better(s, heads[best]!))) best = i
  })
  return best
}
