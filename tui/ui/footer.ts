// Footer hints, read from the key table: `<x> abort!  <?> help  </> filter`. What does not fit is
// left out whole (the `?` help lists everything). Dangerous actions end in `!`.
import { displayKey, type Binding } from './keys.js'
import { markup, type Span } from './style.js'

/** Where a hint was drawn, so a click on it runs its action. */
export interface HintSpan {
  from: number
  to: number
  action: string
}

const SEP = '  '

export function renderHints (bindings: readonly Binding[], width: number): { line: string, spans: HintSpan[] } {
  const parts: Span[] = []
  const spans: HintSpan[] = []
  let used = 0
  for (const b of bindings) {
    if (b.hint === false || b.keys.length === 0) continue
    const key = `<${displayKey(b.keys[0]!)}>`
    const label = `${b.hint ?? b.description}${b.dangerous ? '!' : ''}`
    const text = `${used > 0 ? SEP : ''}${key} ${label}`
    const cells = [...text].length
    if (used + cells > width) continue
    const from = used + (used > 0 ? SEP.length : 0)
    if (used > 0) parts.push({ text: SEP })
    parts.push({ text: key, tone: 'accent' }, { text: ' ' }, { text: label, tone: b.dangerous ? 'bad' : undefined })
    used += cells
    spans.push({ from, to: used, action: b.action })
  }
  return { line: markup(parts), spans }
}

/** The candidates of an ambiguous `:` completion, as many as fit. */
export function renderCandidates (candidates: readonly string[], width: number): string {
  const shown: string[] = []
  let used = 0
  for (const c of candidates) {
    const cells = [...c].length + (shown.length > 0 ? SEP.length : 0)
    if (used + cells > width) break
    shown.push(c)
    used += cells
  }
  const more = candidates.length - shown.length
  return markup([{ text: shown.join(SEP), tone: 'accent' }, ...(more > 0 ? [{ text: ` +${more}`, tone: 'dim' as const }] : [])])
}
