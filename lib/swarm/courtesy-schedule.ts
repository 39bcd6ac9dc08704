// Rate limits by local time of day: windows such as "Monday to Friday, 08:00 to 18:00, upload
// 256 kB/s" in an IANA time zone, and a default outside them. Local time comes from
// Intl.DateTimeFormat, so daylight saving time is the time zone database's business.
//
// Semantics:
// - `from` is inclusive, `to` exclusive: 08:00–18:00 covers 08:00:00 up to 17:59:59.999.
// - Times are wall-clock times "HH:MM"; `to` may be "24:00" (end of day). A window with `to`
//   before `from` runs overnight and belongs to the day it starts on: `fri 22:00–06:00` covers
//   Friday 22:00 to Saturday 06:00.
// - On a DST day the wall clock decides: a window 02:30–04:00 on the spring-forward day starts at
//   03:00 (02:30 never happens there); on the fall-back day 02:00–03:00 happens twice, and so does
//   a window inside it.
// - The first matching window wins; a window that leaves out a direction uses the default for it.
import { PatchswarmError } from '../errors.js'

export type CourtesyDirectionName = 'upload' | 'download'

/** Bytes per second per direction; `Infinity` means unlimited. */
export interface CourtesyLimits {
  readonly upload: number
  readonly download: number
}

export interface CourtesyWindow {
  /** "mon-fri", "sat,sun", "mon-wed,fri", "fri-mon", "daily" or "*"; default: every day. */
  days?: string
  /** "HH:MM", inclusive. */
  from: string
  /** "HH:MM" or "24:00", exclusive; before `from` means overnight. */
  to: string
  upload?: number
  download?: number
}

export interface CourtesyScheduleSpec {
  /** IANA time zone, e.g. "Europe/Vienna". Default: the machine's own. */
  timeZone?: string
  windows?: readonly CourtesyWindow[]
  /** Limits outside every window. Default: unlimited. */
  default?: Partial<CourtesyLimits>
}

export interface ScheduledLimits extends CourtesyLimits {
  /** Index of the window in force, or -1 for the default. */
  readonly window: number
}

export interface LocalTime {
  /** 0 = Sunday … 6 = Saturday. */
  readonly weekday: number
  /** Minutes since local midnight, 0 … 1439. */
  readonly minute: number
}

const DAY_NAMES = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat']

interface CompiledWindow {
  readonly days: readonly boolean[]
  readonly from: number
  readonly to: number
  readonly upload: number
  readonly download: number
}

export class CourtesySchedule {
  readonly timeZone: string
  readonly defaults: CourtesyLimits
  private readonly windows: readonly CompiledWindow[]
  private readonly format: Intl.DateTimeFormat

  constructor (spec: CourtesyScheduleSpec = {}) {
    const zone = spec.timeZone ?? new Intl.DateTimeFormat().resolvedOptions().timeZone
    try {
      this.format = new Intl.DateTimeFormat('en-US', { timeZone: zone, hourCycle: 'h23', weekday: 'short', hour: '2-digit', minute: '2-digit' })
    } catch (err) {
      throw PatchswarmError.BAD_ARGUMENT(`unknown time zone ${JSON.stringify(zone)}`, err)
    }
    this.timeZone = this.format.resolvedOptions().timeZone
    this.defaults = {
      upload: checkLimit(spec.default?.upload ?? Infinity, 'default.upload'),
      download: checkLimit(spec.default?.download ?? Infinity, 'default.download')
    }
    this.windows = (spec.windows ?? []).map((w, i) => compileWindow(w, i, this.defaults))
  }

  /** Local weekday and minute of a wall-clock instant in this schedule's time zone. */
  localTime (wall: number | Date): LocalTime {
    let weekday = -1
    let hour = 0
    let minute = 0
    for (const part of this.format.formatToParts(wall)) {
      if (part.type === 'weekday') weekday = DAY_NAMES.indexOf(part.value.slice(0, 3).toLowerCase())
      else if (part.type === 'hour') hour = Number(part.value) % 24
      else if (part.type === 'minute') minute = Number(part.value)
    }
    return { weekday, minute: hour * 60 + minute }
  }

  /** The limits in force at a wall-clock instant. */
  limitsAt (wall: number | Date): ScheduledLimits {
    const { weekday, minute } = this.localTime(wall)
    const yesterday = (weekday + 6) % 7
    for (let i = 0; i < this.windows.length; i++) {
      const w = this.windows[i]!
      const inside = w.from < w.to
        ? w.days[weekday] === true && minute >= w.from && minute < w.to
        : (w.days[weekday] === true && minute >= w.from) || (w.days[yesterday] === true && minute < w.to)
      if (inside) return { upload: w.upload, download: w.download, window: i }
    }
    return { ...this.defaults, window: -1 }
  }
}

function compileWindow (w: CourtesyWindow, index: number, defaults: CourtesyLimits): CompiledWindow {
  const where = `windows[${index}]`
  if (w === null || typeof w !== 'object') throw PatchswarmError.BAD_ARGUMENT(`${where} is not an object`)
  const from = parseTime(w.from, `${where}.from`, false)
  const to = parseTime(w.to, `${where}.to`, true)
  if (from === to) throw PatchswarmError.BAD_ARGUMENT(`${where} is empty: from and to are both ${w.from}`)
  if (from === 24 * 60) throw PatchswarmError.BAD_ARGUMENT(`${where}.from cannot be 24:00`)
  return {
    days: parseDays(w.days, `${where}.days`),
    from,
    to,
    upload: checkLimit(w.upload ?? defaults.upload, `${where}.upload`),
    download: checkLimit(w.download ?? defaults.download, `${where}.download`)
  }
}

function parseTime (value: string, where: string, allow24: boolean): number {
  const match = typeof value === 'string' ? /^([01]\d|2[0-4]):([0-5]\d)$/.exec(value) : null
  if (match === null) throw PatchswarmError.BAD_ARGUMENT(`${where} is a time "HH:MM", not ${JSON.stringify(value)}`)
  const minutes = Number(match[1]) * 60 + Number(match[2])
  if (minutes > 24 * 60 || (minutes === 24 * 60 && !allow24)) throw PatchswarmError.BAD_ARGUMENT(`${where} is out of range: ${value}`)
  return minutes
}

/** "mon-fri", "sat,sun", "fri-mon", "daily", "*" → a flag per weekday (0 = Sunday). */
export function parseDays (spec: string | undefined, where = 'days'): boolean[] {
  const days = new Array<boolean>(7).fill(false)
  if (spec === undefined) return days.fill(true)
  if (typeof spec !== 'string') throw PatchswarmError.BAD_ARGUMENT(`${where} is a string like "mon-fri"`)
  const text = spec.trim().toLowerCase()
  if (text === '*' || text === 'daily') return days.fill(true)
  for (const item of text.split(',')) {
    const [first, last, extra] = item.trim().split('-').map((s) => s.trim())
    const a = DAY_NAMES.indexOf(first ?? '')
    const b = last === undefined ? a : DAY_NAMES.indexOf(last)
    if (a < 0 || b < 0 || extra !== undefined) throw PatchswarmError.BAD_ARGUMENT(`${where}: cannot read ${JSON.stringify(item)} in ${JSON.stringify(spec)} (use mon, tue, … sun, ranges and commas)`)
    for (let d = a; ; d = (d + 1) % 7) {
      days[d] = true
      if (d === b) break
    }
  }
  return days
}

function checkLimit (value: number, where: string): number {
  if (typeof value !== 'number' || Number.isNaN(value) || value < 0) throw PatchswarmError.BAD_ARGUMENT(`${where} is bytes per second >= 0 or Infinity, not ${String(value)}`)
  return value
}
