import t, { type Test } from 'tap'
import { windowState, nextWindowStart, parseWindow, type MaintenanceWindow, type WindowState } from '../../lib/policy/windows.js'

const VIENNA = 'Europe/Vienna'
const MINUTE = 60_000
const DAY = 86_400_000
const weeknights: MaintenanceWindow = { cron: '0 22 * * 1-5', durationMinutes: 120, timezone: VIENNA }

const at = (iso: string) => new Date(iso)
const iso = (d: Date | undefined) => d?.toISOString()

function codeOf (fn: () => unknown): string | undefined {
  try {
    fn()
    return undefined
  } catch (err) {
    return (err as { code?: string }).code ?? 'NO_CODE'
  }
}

function messageOf (fn: () => unknown): string {
  try {
    fn()
    return ''
  } catch (err) {
    return (err as Error).message
  }
}

t.test('weeknights 22:00 for 120 min in Vienna: closed on a Wednesday afternoon, opens at 22:00 local', async (t) => {
  // 2026-07-15 and 2026-01-14 are Wednesdays; 14:00 local is 12:00Z in summer, 13:00Z in winter.
  t.same(windowState([weeknights], at('2026-07-15T12:00:00Z')), { open: false, nextOpen: at('2026-07-15T20:00:00Z') }, 'summer: 22:00 CEST = 20:00Z')
  t.same(windowState([weeknights], at('2026-01-14T13:00:00Z')), { open: false, nextOpen: at('2026-01-14T21:00:00Z') }, 'winter: 22:00 CET = 21:00Z')
  t.equal(windowState([weeknights], at('2026-07-15T19:59:59.999Z')).open, false, 'a moment before')
  t.same(windowState([weeknights], at('2026-07-15T20:00:00Z')),
    { open: true, openedAt: at('2026-07-15T20:00:00Z'), closesAt: at('2026-07-15T22:00:00Z') }, 'open at 22:00 exactly')
  t.same(windowState([weeknights], at('2026-07-15T21:59:00Z')),
    { open: true, openedAt: at('2026-07-15T20:00:00Z'), closesAt: at('2026-07-15T22:00:00Z') }, 'open at 23:59 local')
  t.same(windowState([weeknights], at('2026-07-15T22:00:00Z')), { open: false, nextOpen: at('2026-07-16T20:00:00Z') }, 'closed at 00:00 local next day')
})

t.test('Friday 22:00 opens; Saturday and Sunday have none', async (t) => {
  // 2026-01-16 is a Friday.
  t.same(iso(windowState([weeknights], at('2026-01-16T20:59:00Z')).nextOpen), '2026-01-16T21:00:00.000Z')
  t.equal(windowState([weeknights], at('2026-01-16T21:00:00Z')).open, true, 'Friday 22:00')
  t.equal(windowState([weeknights], at('2026-01-16T22:59:00Z')).open, true, 'Friday 23:59')
  t.equal(windowState([weeknights], at('2026-01-16T23:00:00Z')).open, false, 'Saturday 00:00')
  for (const instant of ['2026-01-17T13:00:00Z', '2026-01-17T21:30:00Z', '2026-01-18T21:30:00Z']) {
    t.same(windowState([weeknights], at(instant)), { open: false, nextOpen: at('2026-01-19T21:00:00Z') }, `${instant}: next is Monday 22:00`)
  }
})

t.test('across both 2026 clock changes in Vienna', async (t) => {
  // 29 March: 02:00 CET → 03:00 CEST (01:00Z). Friday before at 22:00 CET, Monday after at 22:00 CEST.
  t.same(iso(nextWindowStart(weeknights, at('2026-03-27T12:00:00Z'))), '2026-03-27T21:00:00.000Z')
  t.same(iso(nextWindowStart(weeknights, at('2026-03-27T21:00:00Z'))), '2026-03-30T20:00:00.000Z', 'strictly after: the start itself is not next')
  t.same(iso(windowState([weeknights], at('2026-03-28T12:00:00Z')).nextOpen), '2026-03-30T20:00:00.000Z')
  // 25 October: 03:00 CEST → 02:00 CET (01:00Z).
  t.same(iso(nextWindowStart(weeknights, at('2026-10-23T12:00:00Z'))), '2026-10-23T20:00:00.000Z')
  t.same(iso(windowState([weeknights], at('2026-10-24T12:00:00Z')).nextOpen), '2026-10-26T21:00:00.000Z')

  // A window lasts its duration in real time, across the change.
  const early: MaintenanceWindow = { cron: '30 1 * * *', durationMinutes: 120, timezone: VIENNA }
  t.same(windowState([early], at('2026-03-29T01:30:00Z')),
    { open: true, openedAt: at('2026-03-29T00:30:00Z'), closesAt: at('2026-03-29T02:30:00Z') }, 'spring: 01:30 CET to 04:30 CEST')
  t.same(windowState([early], at('2026-10-25T01:00:00Z')),
    { open: true, openedAt: at('2026-10-24T23:30:00Z'), closesAt: at('2026-10-25T01:30:00Z') }, 'autumn: 01:30 CEST to 02:30 CET')

  // A fixed start inside the skipped hour happens at the jump; inside the repeated hour, once.
  const gap: MaintenanceWindow = { cron: '30 2 * * *', durationMinutes: 30, timezone: VIENNA }
  t.same(iso(nextWindowStart(gap, at('2026-03-28T12:00:00Z'))), '2026-03-29T01:00:00.000Z', '02:30 does not exist: 03:00 CEST')
  t.same(iso(nextWindowStart(gap, at('2026-03-29T01:00:00Z'))), '2026-03-30T00:30:00.000Z', 'then 02:30 CEST as usual')
  t.same(iso(nextWindowStart(gap, at('2026-10-24T12:00:00Z'))), '2026-10-25T00:30:00.000Z', 'first 02:30 (CEST)')
  t.same(iso(nextWindowStart(gap, at('2026-10-25T00:30:00Z'))), '2026-10-26T01:30:00.000Z', 'not again at 02:30 CET')
  t.same(windowState([gap], at('2026-10-25T01:45:00Z')), { open: false, nextOpen: at('2026-10-26T01:30:00Z') }, 'closed in the second 02:30-03:00')

  // A cron that fires every hour follows the clock: the skipped hour has none, the repeated one two.
  const hourly: MaintenanceWindow = { cron: '30 * * * *', durationMinutes: 10, timezone: VIENNA }
  const starts = (w: MaintenanceWindow, from: string, n: number) => {
    const out: string[] = []
    let after = at(from)
    for (let i = 0; i < n; i++) {
      after = nextWindowStart(w, after)!
      out.push(after.toISOString())
    }
    return out
  }
  t.same(starts(hourly, '2026-03-28T23:00:00Z', 3), ['2026-03-28T23:30:00.000Z', '2026-03-29T00:30:00.000Z', '2026-03-29T01:30:00.000Z'],
    '00:30 CET, 01:30 CET, 03:30 CEST')
  t.same(starts(hourly, '2026-10-24T23:00:00Z', 4), ['2026-10-24T23:30:00.000Z', '2026-10-25T00:30:00.000Z', '2026-10-25T01:30:00.000Z', '2026-10-25T02:30:00.000Z'],
    '01:30 CEST, 02:30 CEST, 02:30 CET, 03:30 CET')
})

t.test('several windows: the earliest next start, and overlapping or touching windows as one period', async (t) => {
  const sunday: MaintenanceWindow = { cron: '0 13 * * sun', durationMinutes: 180, timezone: VIENNA }
  const late: MaintenanceWindow = { cron: '30 23 * * 1-5', durationMinutes: 60, timezone: VIENNA }
  const windows = [weeknights, sunday, late]
  t.same(windowState(windows, at('2026-01-17T12:00:00Z')), { open: false, nextOpen: at('2026-01-18T12:00:00Z') }, 'Saturday: next is Sunday 13:00')
  t.same(windowState(windows, at('2026-01-18T14:00:00Z')),
    { open: true, openedAt: at('2026-01-18T12:00:00Z'), closesAt: at('2026-01-18T15:00:00Z') }, 'Sunday afternoon')
  t.same(windowState(windows, at('2026-01-19T21:15:00Z')),
    { open: true, openedAt: at('2026-01-19T21:00:00Z'), closesAt: at('2026-01-19T23:30:00Z') }, 'Monday 22:15: 22:00-00:00 and 23:30-00:30 merge')
  t.same(windowState(windows, at('2026-01-19T23:10:00Z')),
    { open: true, openedAt: at('2026-01-19T21:00:00Z'), closesAt: at('2026-01-19T23:30:00Z') }, 'after the first ended, the period still began at 22:00')

  // Touching windows (one ends as the next begins) are one period too.
  const chain: MaintenanceWindow[] = [
    { cron: '0 1 * * *', durationMinutes: 60, timezone: 'UTC' },
    { cron: '0 2 * * *', durationMinutes: 60, timezone: 'UTC' }
  ]
  t.same(windowState(chain, at('2026-05-05T01:30:00Z')),
    { open: true, openedAt: at('2026-05-05T01:00:00Z'), closesAt: at('2026-05-05T03:00:00Z') })
  t.same(windowState(chain, at('2026-05-05T02:30:00Z')),
    { open: true, openedAt: at('2026-05-05T01:00:00Z'), closesAt: at('2026-05-05T03:00:00Z') })

  // A window that never stops: open with no closing within the span searched.
  const always: MaintenanceWindow[] = [{ cron: '0 * * * *', durationMinutes: 90, timezone: 'UTC' }]
  const s = windowState(always, at('2026-05-05T01:30:00Z'))
  t.equal(s.open, true)
  t.equal(s.closesAt, undefined)

  t.same(windowState([], at('2026-05-05T01:30:00Z')), { open: false }, 'no windows: never open')
})

t.test('cron fields: lists, ranges, steps, names, 7 as Sunday, and the Vixie day rule', async (t) => {
  const seq = (cron: string, from: string, n: number, timezone = 'UTC') => {
    const out: string[] = []
    let after = at(from)
    for (let i = 0; i < n; i++) {
      after = nextWindowStart({ cron, durationMinutes: 1, timezone }, after)!
      out.push(after.toISOString().slice(0, 16))
    }
    return out
  }
  t.same(seq('*/20 8-9 * * *', '2026-05-05T00:00:00Z', 7),
    ['2026-05-05T08:00', '2026-05-05T08:20', '2026-05-05T08:40', '2026-05-05T09:00', '2026-05-05T09:20', '2026-05-05T09:40', '2026-05-06T08:00'])
  t.same(seq('5,10-20/5 0 * * *', '2026-05-05T00:00:00Z', 4), ['2026-05-05T00:05', '2026-05-05T00:10', '2026-05-05T00:15', '2026-05-05T00:20'])
  t.same(seq('0 12 * jan,JUL Sun', '2026-01-01T00:00:00Z', 6),
    ['2026-01-04T12:00', '2026-01-11T12:00', '2026-01-18T12:00', '2026-01-25T12:00', '2026-07-05T12:00', '2026-07-12T12:00'])
  t.same(seq('0 12 * * 7', '2026-05-05T00:00:00Z', 2), ['2026-05-10T12:00', '2026-05-17T12:00'], '7 is Sunday')
  t.same(seq('0 12 * * 5-7', '2026-05-05T00:00:00Z', 4), ['2026-05-08T12:00', '2026-05-09T12:00', '2026-05-10T12:00', '2026-05-15T12:00'])
  // Both restricted: the 1st OR a Monday (May 2026: Monday the 4th, 11th, …; June 1st is a Monday too).
  t.same(seq('0 3 1 * 1', '2026-04-30T00:00:00Z', 4), ['2026-05-01T03:00', '2026-05-04T03:00', '2026-05-11T03:00', '2026-05-18T03:00'])
  // Day-of-month starts with '*': both must match, so odd days that are Mondays.
  t.same(seq('0 3 */2 * 1', '2026-05-01T00:00:00Z', 3), ['2026-05-11T03:00', '2026-05-25T03:00', '2026-06-01T03:00'])
  t.same(seq('0 0 29 2 *', '2027-03-01T00:00:00Z', 1), ['2028-02-29T00:00'], 'a leap day, 365 days ahead')
  t.equal(nextWindowStart({ cron: '0 0 29 2 *', durationMinutes: 1, timezone: 'UTC' }, at('2028-03-01T00:00:00Z')), undefined,
    'nothing within 400 days')
})

t.test('invalid windows are BAD_WINDOW naming the field', async (t) => {
  const bad: Array<[unknown, RegExp]> = [
    [{ ...weeknights, timezone: 'Mars/Olympus_Mons' }, /window\.timezone: unknown time zone "Mars\/Olympus_Mons"/],
    [{ ...weeknights, timezone: '' }, /window\.timezone: is empty/],
    [{ ...weeknights, cron: '0 22 * *' }, /window\.cron: needs 5 fields .* not 4/],
    [{ ...weeknights, cron: '' }, /window\.cron: needs 5 fields .* not 0/],
    [{ ...weeknights, cron: '0 22 * * 1-8' }, /window\.cron: day-of-week field "1-8": 8 is out of range 0-7/],
    [{ ...weeknights, cron: '60 22 * * *' }, /window\.cron: minute field "60": 60 is out of range 0-59/],
    [{ ...weeknights, cron: '0 24 * * *' }, /hour field "24": 24 is out of range 0-23/],
    [{ ...weeknights, cron: '0 22 0 * *' }, /day-of-month field "0": 0 is out of range 1-31/],
    [{ ...weeknights, cron: '0 22 * 13 *' }, /month field "13": 13 is out of range 1-12/],
    [{ ...weeknights, cron: '0 22 * * 5-1' }, /range 5-1 runs backwards/],
    [{ ...weeknights, cron: '0/15 22 * * *' }, /step "0\/15" needs \* or a range/],
    [{ ...weeknights, cron: '*/0 22 * * *' }, /step 0 is out of range 1-60/],
    [{ ...weeknights, cron: '0 22 * * funday' }, /"funday" is not a number or a name like sun/],
    [{ ...weeknights, cron: '0 22 ? * *' }, /day-of-month field "\?": cannot read/],
    [{ ...weeknights, cron: '0,,5 22 * * *' }, /minute field "0,,5": cannot read ""/],
    [{ ...weeknights, cron: '0 0 31 2,4 *' }, /day-of-month and month never meet/],
    [{ ...weeknights, durationMinutes: 0 }, /window\.durationMinutes: Too small/],
    [{ ...weeknights, durationMinutes: 10081 }, /window\.durationMinutes: Too big/],
    [{ ...weeknights, durationMinutes: 1.5 }, /window\.durationMinutes: .*int/],
    [{ ...weeknights, extra: 1 }, /window: Unrecognized key/],
    [{ cron: '0 22 * * *', durationMinutes: 60 }, /window\.timezone/],
    ['0 22 * * *', /window: Invalid input: expected object/]
  ]
  for (const [value, message] of bad) {
    t.equal(codeOf(() => parseWindow(value)), 'BAD_WINDOW', JSON.stringify(value))
    t.match(messageOf(() => parseWindow(value)), message)
  }
  t.match(messageOf(() => windowState([weeknights, { ...weeknights, timezone: 'Nowhere' }], new Date())), /windows\[1\]\.timezone/)
  t.equal(codeOf(() => windowState('x' as never, new Date())), 'BAD_WINDOW')
  t.equal(codeOf(() => windowState([weeknights], new Date(NaN))), 'BAD_ARGUMENT')
  t.equal(codeOf(() => nextWindowStart(weeknights, 'tomorrow' as never)), 'BAD_ARGUMENT')
  // Valid ones come back as they are.
  t.same(parseWindow({ cron: '0 0 31 1-3 *', durationMinutes: 10080, timezone: 'utc' }), { cron: '0 0 31 1-3 *', durationMinutes: 10080, timezone: 'utc' })
  t.same(parseWindow({ cron: ' 0  0  1  *  mon-fri ', durationMinutes: 1, timezone: 'America/New_York' }).cron, ' 0  0  1  *  mon-fri ')
})

t.test('the next start a year ahead is found by days, not by minutes', async (t) => {
  const yearly: MaintenanceWindow = { cron: '0 4 1 1 *', durationMinutes: 60, timezone: VIENNA }
  const start = performance.now()
  for (let i = 0; i < 20; i++) {
    t.equal(iso(windowState([yearly], new Date(Date.parse('2026-01-02T00:00:00Z') + i * DAY)).nextOpen), '2027-01-01T03:00:00.000Z')
  }
  // A minute-by-minute search would look at half a million minutes per call.
  t.ok(performance.now() - start < 1000, `20 searches took ${Math.round(performance.now() - start)} ms`)
})

// ---- brute force ---------------------------------------------------------------------------

interface Wall { minute: number, hour: number, day: number, month: number, weekday: number }
interface RefWindow { window: MaintenanceWindow, matches: (w: Wall) => boolean, followsClock: boolean }

/** Naive local time (local wall clock read as if it were UTC), straight from Intl, one instant at a time. */
function localClock (timeZone: string): (t: number) => number {
  const f = new Intl.DateTimeFormat('en-US', { timeZone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric' })
  return (t) => {
    const p = Object.fromEntries(f.formatToParts(t).map((x) => [x.type, x.value]))
    return Date.UTC(Number(p.year), Number(p.month) - 1, Number(p.day), Number(p.hour) % 24, Number(p.minute))
  }
}

function wall (naive: number): Wall {
  const d = new Date(naive)
  return { minute: d.getUTCMinutes(), hour: d.getUTCHours(), day: d.getUTCDate(), month: d.getUTCMonth() + 1, weekday: d.getUTCDay() }
}

/** The local clock at every minute from `from` (one Intl call per minute). */
function clockByMinute (timeZone: string, from: number, to: number): Float64Array {
  const clock = localClock(timeZone)
  const out = new Float64Array((to - from) / MINUTE + 1)
  for (let i = 0; i < out.length; i++) out[i] = clock(from + (i - 1) * MINUTE)
  return out
}

/**
 * Window starts by scanning every minute. A window that follows the clock starts at every minute
 * the clock shows a matching time; a fixed-time one at the first minute the clock shows a matching
 * time or a later one it had not shown before (so skipped times start at the jump, repeated ones
 * do not start again). `locals[i]` is the clock at from + (i - 1) minutes.
 */
function referenceStarts (ref: RefWindow, locals: Float64Array, from: number): number[] {
  const out: number[] = []
  let high = locals[0]!
  for (let i = 1; i < locals.length; i++) {
    const t = from + (i - 1) * MINUTE
    const local = locals[i]!
    if (ref.followsClock) {
      if (ref.matches(wall(local))) out.push(t)
    } else if (local > high) {
      for (let w = high + MINUTE; w <= local; w += MINUTE) {
        if (ref.matches(wall(w))) { out.push(t); break }
      }
    }
    high = Math.max(high, local)
  }
  return out
}

function referenceState (intervals: Array<[number, number]>, t: number): WindowState {
  const open = intervals.filter(([s, e]) => s <= t && t < e)
  if (open.length === 0) {
    const next = intervals.map(([s]) => s).filter((s) => s > t).sort((a, b) => a - b)[0]
    return next === undefined ? { open: false } : { open: false, nextOpen: new Date(next) }
  }
  let start = Math.min(...open.map(([s]) => s))
  let end = Math.max(...open.map(([, e]) => e))
  for (let changed = true; changed;) {
    changed = false
    for (const [s, e] of intervals) {
      if (s <= end && e >= start && (s < start || e > end)) {
        start = Math.min(start, s)
        end = Math.max(end, e)
        changed = true
      }
    }
  }
  return { open: true, openedAt: new Date(start), closesAt: new Date(end) }
}

function compareMonth (t: Test, timeZone: string, refs: RefWindow[], month: string): void {
  const from = Date.parse(`${month}-01T00:00:00Z`)
  const to = from + 31 * DAY
  // Scan well beyond the month: nextOpen and the period ends must be in the reference too.
  const locals = clockByMinute(timeZone, from - 10 * DAY, to + 10 * DAY)
  const intervals: Array<[number, number]> = []
  for (const ref of refs) {
    for (const s of referenceStarts(ref, locals, from - 10 * DAY)) intervals.push([s, s + ref.window.durationMinutes * MINUTE])
  }
  const windows = refs.map((r) => r.window)
  let mismatches = 0
  let opened = 0
  for (let now = from; now < to; now += 30 * MINUTE) {
    for (const instant of [now, now + 29 * MINUTE]) {
      const got = windowState(windows, new Date(instant))
      const want = referenceState(intervals, instant)
      if (got.open) opened++
      if (JSON.stringify(got) !== JSON.stringify(want) && mismatches++ < 5) {
        t.same(got, want, `${timeZone} at ${new Date(instant).toISOString()}`)
      }
    }
  }
  t.equal(mismatches, 0, `${timeZone} ${month}: every 30 minutes (and 29 after) as the minute scan says`)
  t.ok(opened > 50, `${timeZone} ${month}: windows were open ${opened} times`)
}

t.test('a month in 30-minute steps agrees with a minute-by-minute scan (Vienna, March and October 2026)', async (t) => {
  const refs: RefWindow[] = [
    { window: weeknights, matches: (w) => w.minute === 0 && w.hour === 22 && w.weekday >= 1 && w.weekday <= 5, followsClock: false },
    { window: { cron: '45 23 * * 5', durationMinutes: 60, timezone: VIENNA }, matches: (w) => w.minute === 45 && w.hour === 23 && w.weekday === 5, followsClock: false },
    { window: { cron: '30 2 * * *', durationMinutes: 45, timezone: VIENNA }, matches: (w) => w.minute === 30 && w.hour === 2, followsClock: false },
    { window: { cron: '*/20 2 * * 0', durationMinutes: 15, timezone: VIENNA }, matches: (w) => w.minute % 20 === 0 && w.hour === 2 && w.weekday === 0, followsClock: true },
    { window: { cron: '15 9 1,15 * wed', durationMinutes: 600, timezone: VIENNA }, matches: (w) => w.minute === 15 && w.hour === 9 && (w.day === 1 || w.day === 15 || w.weekday === 3), followsClock: false },
    { window: { cron: '0 1-3 * * 0', durationMinutes: 20, timezone: VIENNA }, matches: (w) => w.minute === 0 && w.hour >= 1 && w.hour <= 3 && w.weekday === 0, followsClock: false }
  ]
  compareMonth(t, VIENNA, refs, '2026-03')
  compareMonth(t, VIENNA, refs, '2026-10')
})

t.test('a month in 30-minute steps agrees with a minute-by-minute scan (Lord Howe: 30-minute clock changes)', async (t) => {
  const zone = 'Australia/Lord_Howe'
  const refs: RefWindow[] = [
    { window: { cron: '45 1 * * *', durationMinutes: 40, timezone: zone }, matches: (w) => w.minute === 45 && w.hour === 1, followsClock: false },
    { window: { cron: '10 2 * * *', durationMinutes: 30, timezone: zone }, matches: (w) => w.minute === 10 && w.hour === 2, followsClock: false },
    { window: { cron: '*/15 1-2 * * sun', durationMinutes: 10, timezone: zone }, matches: (w) => w.minute % 15 === 0 && (w.hour === 1 || w.hour === 2) && w.weekday === 0, followsClock: true }
  ]
  compareMonth(t, zone, refs, '2026-04')
  compareMonth(t, zone, refs, '2026-10')
})
