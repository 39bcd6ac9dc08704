// One line of input (the `:` command line, the `/` filter, prompt dialogs), edited with the keys a
// shell user expects. The cursor is drawn as an inverse cell, so no terminal cursor is needed.
// Ctrl-A is not "start of line" here: it is tmux's; Home does that.
import { markup } from './style.js'

export type EditResult = 'changed' | 'moved' | 'submit' | 'cancel' | 'complete' | 'previous' | 'next'

export class LineEditor {
  #chars: string[]
  #cursor: number

  constructor (initial = '') {
    this.#chars = [...initial]
    this.#cursor = this.#chars.length
  }

  get text (): string { return this.#chars.join('') }
  get cursor (): number { return this.#cursor }

  set (text: string): void {
    this.#chars = [...text]
    this.#cursor = this.#chars.length
  }

  /** Applies a key (normalized, see keys.ts); undefined when the editor has no use for it. */
  key (key: string): EditResult | undefined {
    const c = this.#chars
    switch (key) {
      case 'enter': return 'submit'
      case 'escape': return 'cancel'
      case 'tab': return 'complete'
      case 'up': return 'previous'
      case 'down': return 'next'
      case 'left': return this.#move(this.#cursor - 1)
      case 'right': return this.#move(this.#cursor + 1)
      case 'home': return this.#move(0)
      case 'end': case 'ctrl+e': return this.#move(c.length)
      case 'backspace':
        if (this.#cursor === 0) return undefined
        c.splice(--this.#cursor, 1)
        return 'changed'
      case 'delete': case 'ctrl+d':
        if (this.#cursor >= c.length) return undefined
        c.splice(this.#cursor, 1)
        return 'changed'
      case 'ctrl+u':
        c.splice(0, this.#cursor)
        this.#cursor = 0
        return 'changed'
      case 'ctrl+k':
        c.splice(this.#cursor)
        return 'changed'
      case 'ctrl+w': {
        let i = this.#cursor
        while (i > 0 && c[i - 1] === ' ') i--
        while (i > 0 && c[i - 1] !== ' ') i--
        c.splice(i, this.#cursor - i)
        this.#cursor = i
        return 'changed'
      }
      case 'space': return this.insert(' ')
    }
    return [...key].length === 1 ? this.insert(key) : undefined
  }

  insert (text: string): EditResult {
    const add = [...text]
    this.#chars.splice(this.#cursor, 0, ...add)
    this.#cursor += add.length
    return 'changed'
  }

  #move (to: number): EditResult | undefined {
    const next = Math.max(0, Math.min(to, this.#chars.length))
    if (next === this.#cursor) return undefined
    this.#cursor = next
    return 'moved'
  }

  /** `prompt` and the text in `width` cells, scrolled so the cursor shows. */
  render (prompt: string, width: number): string {
    const room = Math.max(1, width - [...prompt].length)
    const start = Math.max(0, this.#cursor - room + 1)
    const shown = this.#chars.slice(start, start + room)
    const at = this.#cursor - start
    const before = shown.slice(0, at).join('')
    const under = shown[at] ?? ' '
    const after = shown.slice(at + 1).join('')
    const pad = ' '.repeat(Math.max(0, room - Math.max(shown.length, at + 1)))
    return markup(prompt) + markup(before) + markup(under, { inverse: true }) + markup(after) + pad
  }
}
