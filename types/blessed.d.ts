// The parts of blessed 0.1 that tui/ui/backend.ts uses (blessed ships no types, and @types/blessed
// is not installed). Only the view layer's backend imports blessed.
declare module 'blessed' {
  import type { EventEmitter } from 'node:events'

  namespace blessed {
    /** One cell of the screen buffer: attributes and the character drawn. */
    type Cell = [number, string]

    interface KeyEvent {
      /** `a`, `enter`, `up`…; undefined for punctuation (then `ch` says which). */
      name?: string
      /** blessed's spelling with modifiers: `C-r`, `M-x`, `S-tab`, `?`. */
      full: string
      sequence?: string
      ctrl: boolean
      meta: boolean
      shift: boolean
    }

    interface MouseEvent {
      /** Zero-based screen column and row. */
      x: number
      y: number
      action: string
    }

    interface Position { xi: number, xl: number, yi: number, yl: number }

    interface Style {
      fg?: string | number
      bg?: string | number
      bold?: boolean
      inverse?: boolean
      underline?: boolean
    }

    interface ElementOptions {
      parent?: Screen | Element
      top?: number | string
      left?: number | string
      width?: number | string
      height?: number | string
      content?: string
      tags?: boolean
      wrap?: boolean
      hidden?: boolean
      style?: Style
      clickable?: boolean
    }

    interface Element extends EventEmitter {
      top: number | string
      left: number | string
      width: number | string
      height: number | string
      readonly visible: boolean
      /** Where the element was drawn by the last render; absent before. */
      lpos?: Position
      setContent (content: string): void
      hide (): void
      show (): void
      setFront (): void
      destroy (): void
      on (event: 'click' | 'wheelup' | 'wheeldown', listener: (data: MouseEvent) => void): this
      on (event: string, listener: (...args: any[]) => void): this
    }

    interface Program extends EventEmitter {
      cols: number
      rows: number
    }

    interface ScreenOptions {
      input?: NodeJS.ReadableStream
      output?: NodeJS.WritableStream
      terminal?: string
      smartCSR?: boolean
      fullUnicode?: boolean
      forceUnicode?: boolean
      autoPadding?: boolean
      warnings?: boolean
      title?: string
      resizeTimeout?: number
    }

    interface Screen extends EventEmitter {
      readonly width: number
      readonly height: number
      readonly program: Program
      /** The screen buffer as last rendered: rows of cells. */
      lines: Cell[][]
      title: string
      render (): void
      destroy (): void
      on (event: 'keypress', listener: (ch: string | undefined, key: KeyEvent) => void): this
      on (event: 'resize' | 'destroy', listener: () => void): this
      on (event: string, listener: (...args: any[]) => void): this
    }

    function screen (options?: ScreenOptions): Screen
    function box (options?: ElementOptions): Element
    /** Escapes `{` and `}` for elements with `tags: true`. */
    function escape (text: string): string
  }

  export = blessed
}
