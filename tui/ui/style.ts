// Styled text for the view layer. Views hand over plain strings or spans with a tone; only this
// module knows the markup the backend draws (blessed tags), so data never gets parsed as markup:
// every piece of text is escaped here, after it was cut to width.

/** What a piece of text means; the palette turns it into colours. */
export type Tone = 'ok' | 'warn' | 'bad' | 'dim' | 'accent' | 'bold'

export interface Span {
  text: string
  tone?: Tone | undefined
}

/** Text as views give it: a plain string or spans of styled text. */
export type Rich = string | readonly Span[]

export type Align = 'left' | 'right'

const TAGS: Record<Tone, string> = {
  ok: 'green-fg',
  warn: 'yellow-fg',
  bad: 'red-fg',
  dim: 'gray-fg',
  accent: 'cyan-fg',
  bold: 'bold'
}

export function spans (text: Rich): readonly Span[] {
  return typeof text === 'string' ? [{ text }] : text
}

export function plain (text: Rich): string {
  return typeof text === 'string' ? text : text.map((s) => s.text).join('')
}

/** Cells a string takes: one per code point (the layer draws no double-width characters). */
export function cellWidth (text: string): number {
  let n = 0
  for (const _ of text) n++
  return n
}

/** Control characters would move the terminal's cursor: data shows them as `?`. */
function clean (text: string): string {
  return text.replace(/[\x00-\x1f\x7f-\x9f]/g, '?')
}

/**
 * Cuts or pads `text` to exactly `width` cells; a cut ends in `…` so a reader sees something is
 * missing. Tones are kept on the pieces that remain.
 */
export function fit (text: Rich, width: number, align: Align = 'left'): Span[] {
  if (width <= 0) return []
  const parts = spans(text).map((s) => ({ text: clean(s.text), tone: s.tone }))
  const total = parts.reduce((n, s) => n + cellWidth(s.text), 0)
  if (total > width) {
    const out: Span[] = []
    let room = width - 1
    for (const s of parts) {
      if (room <= 0) break
      const chars = [...s.text]
      const take = chars.slice(0, room)
      out.push({ text: take.join(''), tone: s.tone })
      room -= take.length
    }
    const last = out[out.length - 1]
    out.push({ text: '…', tone: last?.tone })
    return out
  }
  const pad = { text: ' '.repeat(width - total) }
  return align === 'right' ? [pad, ...parts] : [...parts, pad]
}

function escape (text: string): string {
  return text.replace(/[{}]/g, (ch) => ch === '{' ? '{open}' : '{close}')
}

/** The backend's markup for spans; `inverse` marks a selected row or a focused button. */
export function markup (text: Rich, opts: { inverse?: boolean, tone?: Tone | undefined } = {}): string {
  let out = ''
  for (const s of spans(text)) {
    const t = escape(clean(s.text))
    out += s.tone ? `{${TAGS[s.tone]}}${t}{/${TAGS[s.tone]}}` : t
  }
  if (opts.tone) out = `{${TAGS[opts.tone]}}${out}{/${TAGS[opts.tone]}}`
  return opts.inverse ? `{inverse}${out}{/inverse}` : out
}

/** A line of `width` cells: fit, then markup. */
export function line (text: Rich, width: number, opts: { align?: Align, inverse?: boolean, tone?: Tone | undefined } = {}): string {
  return markup(fit(text, width, opts.align), opts)
}

/** A rule across `width` cells with a label: `── Rollouts [3/12] ──────`. */
export function rule (label: Rich, width: number): string {
  const text = plain(label)
  if (text === '') return markup([{ text: '─'.repeat(Math.max(0, width)), tone: 'dim' }])
  const rest = Math.max(0, width - 4 - cellWidth(text))
  const head: Span[] = [{ text: '── ', tone: 'dim' }, ...spans(label).map((s) => ({ text: s.text, tone: s.tone ?? 'bold' as const }))]
  return markup(fit([...head, { text: ' ' + '─'.repeat(rest), tone: 'dim' }], width))
}
