// Text charts: they return text or spans, so a view can put them in a table cell, a text pane or a
// dialog alike. Block characters are one cell wide in every terminal the console supports.
import type { Span, Tone } from './style.js'

const SPARKS = '▁▂▃▄▅▆▇█'
/** Eighths of a cell, for bars finer than one cell per step. */
const EIGHTHS = ['', '▏', '▎', '▍', '▌', '▋', '▊', '▉']

/**
 * One character per value, scaled between `min` and `max` (the values' own range unless given);
 * a missing value is a blank. With `width`, the last `width` values (the newest, on the right).
 */
export function sparkline (values: ReadonlyArray<number | null | undefined>, opts: { width?: number, min?: number, max?: number } = {}): string {
  const shown = opts.width !== undefined ? values.slice(Math.max(0, values.length - opts.width)) : values
  const finite = shown.filter((v): v is number => typeof v === 'number' && Number.isFinite(v))
  if (finite.length === 0) return ' '.repeat(shown.length)
  const lo = opts.min ?? Math.min(...finite)
  const hi = opts.max ?? Math.max(...finite)
  const span = hi - lo
  return shown.map((v) => {
    if (typeof v !== 'number' || !Number.isFinite(v)) return ' '
    // A flat series sits on the floor: nothing rose, nothing to show.
    if (span <= 0) return SPARKS[0]
    const level = Math.round((Math.min(hi, Math.max(lo, v)) - lo) / span * (SPARKS.length - 1))
    return SPARKS[level]
  }).join('')
}

/** `0.7` → `70%`; a missing fraction (nothing to measure yet) → `–`. */
export function percent (fraction: number | null | undefined, digits = 0): string {
  if (typeof fraction !== 'number' || !Number.isFinite(fraction)) return '–'
  return `${(fraction * 100).toFixed(digits)}%`
}

/** A bar `width` cells long filled to `fraction` (0..1), in eighths of a cell. */
export function bar (fraction: number | null | undefined, width: number): string {
  if (width <= 0) return ''
  const f = typeof fraction === 'number' && Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0
  const eighths = Math.round(f * width * 8)
  const full = Math.floor(eighths / 8)
  const part = EIGHTHS[eighths % 8]!
  return ('█'.repeat(full) + part).padEnd(width, ' ')
}

/** A labelled gauge: `[█████▌    ]  55%`; below `badBelow` it is toned bad, below `warnBelow` warn. */
export function gauge (fraction: number | null | undefined, width: number, opts: { warnBelow?: number, badBelow?: number, tone?: Tone } = {}): Span[] {
  const label = ` ${percent(fraction).padStart(4)}`
  const inner = Math.max(1, width - label.length - 2)
  const f = typeof fraction === 'number' && Number.isFinite(fraction) ? fraction : null
  const tone: Tone | undefined = opts.tone ?? (f === null
    ? 'dim'
    : f < (opts.badBelow ?? -Infinity) ? 'bad' : f < (opts.warnBelow ?? -Infinity) ? 'warn' : 'ok')
  return [{ text: '[' }, { text: bar(f, inner), tone }, { text: ']' }, { text: label }]
}

export interface BarPart {
  value: number
  tone?: Tone
}

/**
 * Parts of a whole side by side (a rollout phase: installed, failed, running), the rest as `░`.
 * A part that is not zero gets at least one cell, so a single failure among thousands shows.
 */
export function stackedBar (parts: readonly BarPart[], total: number, width: number): Span[] {
  if (width <= 0) return []
  const whole = Math.max(total, parts.reduce((n, p) => n + Math.max(0, p.value), 0))
  const cells = parts.map((p) => whole > 0 ? Math.max(0, p.value) / whole * width : 0)
  const sizes = cells.map((c, i) => parts[i]!.value > 0 ? Math.max(1, Math.floor(c)) : 0)
  // Hand out the cells rounding left over, largest remainder first, while room is left.
  let used = sizes.reduce((a, b) => a + b, 0)
  const order = cells.map((c, i) => [c - Math.floor(c), i] as const).sort((a, b) => b[0] - a[0])
  const filled = Math.round(cells.reduce((a, b) => a + b, 0))
  for (const [rem, i] of order) {
    if (used >= filled || rem <= 0) break
    if (parts[i]!.value > 0) { sizes[i]!++; used++ }
  }
  // Minimum cells can overshoot the width with many tiny parts: take back from the largest.
  while (used > width) {
    const i = sizes.indexOf(Math.max(...sizes))
    sizes[i]!--
    used--
  }
  const out: Span[] = parts.map((p, i) => ({ text: '█'.repeat(sizes[i]!), tone: p.tone })).filter((s) => s.text !== '')
  if (used < width) out.push({ text: '░'.repeat(width - used), tone: 'dim' })
  return out
}
