// A screen on in-memory streams: for tests and the render benchmark, and an example of how the
// SSH server feeds a session's channel. Keys are typed as the terminal would send them.
import { PassThrough } from 'node:stream'
import { createUi, type Ui, type UiOptions } from './screen.js'

/** What a terminal sends for the keys tests type. */
export const KEY = {
  enter: '\r',
  escape: '\x1b',
  tab: '\t',
  backtab: '\x1b[Z',
  backspace: '\x7f',
  up: '\x1b[A',
  down: '\x1b[B',
  right: '\x1b[C',
  left: '\x1b[D',
  home: '\x1b[H',
  end: '\x1b[F',
  pageup: '\x1b[5~',
  pagedown: '\x1b[6~',
  /** Ctrl + a letter. */
  ctrl: (letter: string) => String.fromCharCode(letter.toLowerCase().charCodeAt(0) - 96),
  /**
   * A left click at a zero-based screen column and row: press and release as SGR mouse reports,
   * two chunks (blessed reads one report per chunk of input, as terminals send them).
   */
  click: (x: number, y: number) => [`\x1b[<0;${x + 1};${y + 1}M`, `\x1b[<0;${x + 1};${y + 1}m`] as const,
  wheelDown: (x: number, y: number) => `\x1b[<65;${x + 1};${y + 1}M`
} as const

export interface Headless {
  ui: Ui
  input: PassThrough
  output: PassThrough
  /** Sends each string as its own chunk (as a person types) and lets the screen handle it. */
  type (...chunks: string[]): Promise<void>
  /** Renders now and returns the visible text, one string per row. */
  text (): string[]
  close (): void
}

export function headless (opts: Partial<UiOptions> = {}): Headless {
  const input = new PassThrough()
  const output = new PassThrough()
  // Nobody reads the bytes; drain them so the stream never holds a session's worth.
  output.resume()
  const ui = createUi({ terminal: 'xterm-256color', width: 80, height: 24, ...opts, input, output })
  return {
    ui,
    input,
    output,
    async type (...chunks) {
      for (const c of chunks) {
        input.write(c)
        await new Promise((resolve) => setImmediate(resolve))
      }
    },
    text () {
      ui.flush()
      return ui.snapshot()
    },
    close () { ui.close() }
  }
}
