// A pane of text lines (KPIs, a phase list with bars): cut to the pane, never wrapped, so a narrow
// terminal loses the ends of lines rather than pushing everything below out of view.
import type { Surface } from './backend.js'
import { line, rule, type Rich } from './style.js'
import { Widget, type WidgetHost } from './widget.js'

export interface TextOptions {
  title?: string
}

export class Text extends Widget {
  readonly #title: string | undefined
  #lines: readonly Rich[] = []

  constructor (host: WidgetHost, surface: Surface, opts: TextOptions = {}) {
    super(host, surface)
    this.#title = opts.title
  }

  get lines (): readonly Rich[] { return this.#lines }

  setLines (lines: readonly Rich[]): void {
    this.#lines = lines
    this.invalidate()
  }

  protected override render (width: number, height: number): string[] {
    const out = this.#title !== undefined ? [rule(this.#title, width)] : []
    for (const l of this.#lines) {
      if (out.length >= height) break
      out.push(line(l, width))
    }
    return out
  }
}
