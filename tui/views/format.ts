// Small formatting shared by the views: times, sizes, states with their tone, progress bars.
import { stackedBar, type BarPart, type Span, type Tone } from '../ui/index.js'
import type { StateCounts } from '../../lib/report/reducers.js'

/** `12:03:45` in UTC (the console's times are UTC; the header says so). */
export function clock (iso: string | undefined): string {
  return iso ? iso.slice(11, 19) : ''
}

/** `2030-03-02 08:00` */
export function minute (iso: string | undefined): string {
  return iso ? `${iso.slice(0, 10)} ${iso.slice(11, 16)}` : ''
}

/** How long ago: `4s`, `12m`, `3h`, `5d`; empty for never. */
export function ago (iso: string | undefined, now = Date.now()): string {
  if (!iso) return ''
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000))
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m`
  if (s < 86400) return `${Math.floor(s / 3600)}h`
  return `${Math.floor(s / 86400)}d`
}

/** `0 B`, `12.3 kB`, `4.5 MB`, `1.2 GB` (powers of 1000). */
export function bytes (n: number | undefined): string {
  const v = n ?? 0
  if (v < 1000) return `${v} B`
  const units = ['kB', 'MB', 'GB', 'TB', 'PB']
  let x = v
  let i = -1
  while (x >= 1000 && i < units.length - 1) { x /= 1000; i++ }
  return `${x.toFixed(x < 10 ? 1 : 0)} ${units[i]}`
}

/** The tone of a rollout, phase, job or endpoint state. */
export function stateTone (state: string | undefined): Tone | undefined {
  switch (state) {
    case 'completed': case 'installed': case 'succeeded': case 'approved': case 'set-up': case 'ok': case 'started': case 'active':
      return 'ok'
    case 'halted': case 'failed': case 'aborted': case 'rolled-back': case 'rejected': case 'removed': case 'breaker-open':
      return 'bad'
    case 'paused': case 'quarantine': case 'rolling-back': case 'reboot-pending': case 'not-set-up':
      return 'warn'
    case 'pending': case 'assigned': case 'stopped': case undefined:
      return 'dim'
    default:
      return 'accent'
  }
}

export function stateSpan (state: string | undefined, text = state ?? ''): Span[] {
  return [{ text, tone: stateTone(state) }]
}

const IN_FLIGHT = ['downloading', 'verified', 'waiting-window', 'installing', 'health-check', 'reboot-pending', 'rolling-back'] as const

/** Members by outcome: installed, failed (or rolled back), on their way, not started. */
export function outcome (counts: StateCounts, total: number): { installed: number, failed: number, running: number, waiting: number } {
  const n = (k: keyof StateCounts) => counts[k] ?? 0
  const installed = n('installed')
  const failed = n('failed') + n('rolled-back')
  const running = IN_FLIGHT.reduce((s, k) => s + n(k), 0)
  return { installed, failed, running, waiting: Math.max(0, total - installed - failed - running) }
}

/** A progress bar of a phase or rollout: installed green, failed red, in flight yellow, the rest dim. */
export function progressBar (counts: StateCounts, total: number, width: number): Span[] {
  const o = outcome(counts, total)
  const parts: BarPart[] = [{ value: o.installed, tone: 'ok' }, { value: o.failed, tone: 'bad' }, { value: o.running, tone: 'warn' }]
  return stackedBar(parts, total, width)
}

/** A soak time given in minutes, short: 10s, 15m, 1.5h, 2d. */
export function minutes (m: number): string {
  const trim = (x: number) => String(Math.round(x * 10) / 10)
  if (m < 1) return `${Math.round(m * 60)}s`
  if (m < 60) return `${trim(m)}m`
  if (m < 48 * 60) return `${trim(m / 60)}h`
  return `${trim(m / 1440)}d`
}

export function pct (x: number | null | undefined, digits = 0): string {
  return typeof x === 'number' && Number.isFinite(x) ? `${(x * 100).toFixed(digits)}%` : '–'
}

export function errorText (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
