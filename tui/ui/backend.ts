// The only module that touches blessed. It gives the rest of the layer rectangles to draw lines of
// markup into, key presses, mouse hits and resizes, on whatever streams it is handed: a local TTY,
// an SSH channel, or PassThrough streams in tests. Nothing here assumes a TTY.
import blessed from 'blessed'
import { keyFromTerminal } from './keys.js'

export interface Rect {
  top: number
  left: number
  width: number
  height: number
}

export interface MouseHit {
  kind: 'click' | 'wheelup' | 'wheeldown'
  /** Column and row inside the surface, from 0. */
  x: number
  y: number
}

/** A rectangle of the screen with lines of markup (see style.ts) drawn into it. */
export interface Surface {
  place (rect: Rect): void
  setLines (lines: readonly string[]): void
  show (): void
  hide (): void
  /** Draws it above every other surface (dialogs). */
  front (): void
  onMouse (fn: (hit: MouseHit) => void): void
  destroy (): void
}

export interface BackendOptions {
  input: NodeJS.ReadableStream
  output: NodeJS.WritableStream
  /** The terminal type of the far end (`TERM`); xterm-256color when unknown. */
  terminal?: string
  /** Size to start with when the output does not know its own (a pipe, an SSH channel). */
  width?: number
  height?: number
  /** Whether the terminal draws UTF-8 (block and box characters); blessed guesses from LANG without it. */
  unicode?: boolean
  mouse?: boolean
  title?: string
}

export interface Backend {
  readonly width: number
  readonly height: number
  surface (): Surface
  render (): void
  /** The visible text, one string per row, trailing blanks trimmed. */
  snapshot (): string[]
  /** The far end's window changed (SSH window-change): re-read by blessed as a resize. */
  resize (width: number, height: number): void
  onKey (fn: (key: string, ch: string | undefined) => void): void
  onResize (fn: () => void): void
  destroy (): void
}

type SizedOutput = NodeJS.WritableStream & { columns?: number, rows?: number }

/**
 * blessed cannot parse `screen*` terminfo (it prints an error, see FIELD-NOTES) and draws such
 * terminals as xterm anyway; say so up front.
 */
function terminalName (term: string | undefined): string {
  if (!term || /^screen/.test(term)) return 'xterm-256color'
  return term
}

export function createBackend (opts: BackendOptions): Backend {
  const output = opts.output as SizedOutput
  // blessed reads the size from the output stream, as a TTY would have it.
  if (opts.width !== undefined || !output.columns) output.columns = opts.width ?? 80
  if (opts.height !== undefined || !output.rows) output.rows = opts.height ?? 24
  const mouse = opts.mouse !== false

  const screen = blessed.screen({
    input: opts.input,
    output: opts.output,
    terminal: terminalName(opts.terminal),
    smartCSR: true,
    autoPadding: false,
    warnings: false,
    ...(opts.unicode !== undefined ? { forceUnicode: opts.unicode } : {}),
    ...(opts.title !== undefined ? { title: opts.title } : {})
  })
  // Box and block characters go out as UTF-8, not as the terminal's line-drawing set: over SSH
  // the server's NCURSES_NO_UTF8_ACS says nothing about the client, and tmux garbles the set.
  const tput = (screen as unknown as { tput?: { unicode?: boolean, brokenACS?: boolean } }).tput
  if (tput?.unicode) tput.brokenACS = true

  const keyListeners: Array<(key: string, ch: string | undefined) => void> = []
  screen.on('keypress', (ch, key) => {
    const name = keyFromTerminal(ch, key)
    if (name !== undefined) for (const fn of keyListeners) fn(name, ch)
  })

  return {
    get width () { return screen.width },
    get height () { return screen.height },

    surface (): Surface {
      const box = blessed.box({ parent: screen, top: 0, left: 0, width: 1, height: 1, tags: true, wrap: false })
      return {
        place (r) {
          box.top = r.top
          box.left = r.left
          box.width = Math.max(0, r.width)
          box.height = Math.max(0, r.height)
        },
        setLines (lines) { box.setContent(lines.join('\n')) },
        show () { box.show() },
        hide () { box.hide() },
        front () { box.setFront() },
        onMouse (fn) {
          if (!mouse) return
          const at = (kind: MouseHit['kind']) => (data: blessed.MouseEvent) => {
            const pos = box.lpos
            if (pos) fn({ kind, x: data.x - pos.xi, y: data.y - pos.yi })
          }
          box.on('click', at('click'))
          box.on('wheelup', at('wheelup'))
          box.on('wheeldown', at('wheeldown'))
        },
        destroy () { box.destroy() }
      }
    },

    render () { screen.render() },

    snapshot () {
      return screen.lines.map((row) => row.map((cell) => cell[1]).join('').trimEnd())
    },

    resize (width, height) {
      output.columns = width
      output.rows = height
      output.emit('resize')
    },

    onKey (fn) { keyListeners.push(fn) },
    onResize (fn) { screen.on('resize', fn) },

    destroy () { screen.destroy() }
  }
}
