// Modal dialogs: confirm, prompt and quick pick. A dialog takes every key until it closes. A
// confirm opens with the SAFE choice focused, so Enter right away cancels: a dangerous action needs
// a deliberate move to its button first, and has no y shortcut to slip onto.
import type { MouseHit, Surface } from './backend.js'
import { LineEditor } from './line-editor.js'
import { fit, markup, line, type Span } from './style.js'

export interface Modal {
  key (key: string): void
  /** Lays the dialog out for a screen of this size. */
  place (screenWidth: number, screenHeight: number): void
  draw (): void
  /** Closes as cancelled (Esc, or the layer closing). */
  cancel (): void
}

export interface ConfirmOptions {
  title?: string
  message: string
  /** The label of the doing button ("Abort rollout"); "OK" without one. */
  confirm?: string
  cancel?: string
  /** Draws the doing button in red and drops the `y` shortcut. */
  dangerous?: boolean
}

export interface PromptOptions {
  title?: string
  message?: string
  value?: string
  /** An error to show (the prompt stays open), or undefined to accept. */
  validate?: (text: string) => string | undefined
}

export interface PickItem<T> {
  label: string
  detail?: string
  value: T
}

export interface PickOptions {
  title?: string
  /** Lines of items shown at once (10). */
  rows?: number
}

/** Splits text into lines of at most `width` cells, at spaces where it can. */
export function wrap (text: string, width: number): string[] {
  const out: string[] = []
  for (const para of text.split('\n')) {
    let cur = ''
    for (const word of para.split(/ +/)) {
      let w = word
      while ([...w].length > width) {
        if (cur) { out.push(cur); cur = '' }
        out.push([...w].slice(0, width).join(''))
        w = [...w].slice(width).join('')
      }
      if (cur === '') cur = w
      else if ([...cur].length + 1 + [...w].length <= width) cur += ' ' + w
      else { out.push(cur); cur = w }
    }
    out.push(cur)
  }
  return out
}

abstract class Dialog<R> implements Modal {
  readonly #surface: Surface
  readonly #done: (result: R) => void
  readonly #onChange: () => void
  #closed = false
  protected inner = 40
  #top = 0

  constructor (surface: Surface, done: (result: R) => void, onChange: () => void) {
    this.#surface = surface
    this.#done = done
    this.#onChange = onChange
    surface.onMouse((hit) => this.mouse({ ...hit, x: hit.x - 2, y: hit.y - 1 }))
  }

  abstract key (key: string): void
  protected abstract title (): string
  /** The lines inside the frame, each `width` cells, as markup. */
  protected abstract body (width: number): string[]
  protected abstract readonly cancelled: R
  protected mouse (_hit: MouseHit): void {}

  cancel (): void { this.finish(this.cancelled) }

  protected finish (result: R): void {
    if (this.#closed) return
    this.#closed = true
    this.#surface.destroy()
    this.#done(result)
  }

  protected changed (): void {
    if (!this.#closed) this.#onChange()
  }

  place (screenWidth: number, screenHeight: number): void {
    const width = Math.max(20, Math.min(screenWidth - 4, 72))
    this.inner = width - 4
    const height = Math.min(screenHeight, this.body(this.inner).length + 2)
    this.#top = Math.max(0, Math.floor((screenHeight - height) / 2))
    this.#surface.place({ top: this.#top, left: Math.max(0, Math.floor((screenWidth - width) / 2)), width, height })
    this.#surface.front()
  }

  draw (): void {
    if (this.#closed) return
    const w = this.inner
    const title = ` ${this.title()} `
    const label = fit(title, Math.min(w, [...title].length)).map((s) => s.text).join('')
    const top = markup([{ text: '┌─', tone: 'accent' }, { text: label, tone: 'bold' }, { text: '─'.repeat(Math.max(0, w - [...label].length)) + '─┐', tone: 'accent' }])
    const side = markup([{ text: '│ ', tone: 'accent' }])
    const right = markup([{ text: ' │', tone: 'accent' }])
    this.#surface.setLines([top, ...this.body(w).map((l) => side + l + right), markup([{ text: `└${'─'.repeat(w + 2)}┘`, tone: 'accent' }])])
  }
}

/** Resolves true only when the doing button was chosen. */
export class ConfirmDialog extends Dialog<boolean> {
  readonly #o: ConfirmOptions
  /** 0: cancel (the safe choice, focused first), 1: confirm. */
  #focus = 0
  #buttonsRow = 0
  #buttonAt: Array<[number, number]> = []
  protected readonly cancelled = false

  constructor (surface: Surface, opts: ConfirmOptions, done: (ok: boolean) => void, onChange: () => void) {
    super(surface, done, onChange)
    this.#o = opts
  }

  /** Which button Enter would press now. */
  get focused (): 'cancel' | 'confirm' { return this.#focus === 0 ? 'cancel' : 'confirm' }

  key (key: string): void {
    switch (key) {
      case 'left': case 'right': case 'tab': case 'shift+tab': case 'h': case 'l':
        this.#focus = 1 - this.#focus
        return this.changed()
      case 'enter': return this.finish(this.#focus === 1)
      case 'escape': case 'n': return this.finish(false)
      case 'y': if (!this.#o.dangerous) this.finish(true)
    }
  }

  protected title (): string { return this.#o.title ?? (this.#o.dangerous ? 'Are you sure?' : 'Confirm') }

  protected body (width: number): string[] {
    const room = Math.max(1, Math.floor((width - 13) / 2))
    const labels = [this.#o.cancel ?? 'Cancel', this.#o.confirm ?? 'OK'].map((l) => fit(l, Math.min(room, [...l].length)).map((s) => s.text).join(''))
    const buttons = labels.map((l, i) => i === this.#focus ? `>[ ${l} ]<` : ` [ ${l} ] `)
    const gap = '   '
    const x = Math.max(0, Math.floor((width - buttons[0]!.length - gap.length - buttons[1]!.length) / 2))
    const second = x + buttons[0]!.length + gap.length
    this.#buttonAt = [[x, x + buttons[0]!.length], [second, second + buttons[1]!.length]]
    const row = ' '.repeat(x) +
      markup(buttons[0]!, { inverse: this.#focus === 0 }) + gap +
      markup(buttons[1]!, { inverse: this.#focus === 1, tone: this.#o.dangerous ? 'bad' : undefined }) +
      ' '.repeat(Math.max(0, width - second - buttons[1]!.length))
    const lines = wrap(this.#o.message, width).map((l) => line(l, width))
    this.#buttonsRow = lines.length + 1
    return [...lines, line('', width), row]
  }

  protected override mouse (hit: MouseHit): void {
    if (hit.kind !== 'click' || hit.y !== this.#buttonsRow) return
    const i = this.#buttonAt.findIndex(([a, b]) => hit.x >= a && hit.x < b)
    if (i !== -1) this.finish(i === 1)
  }
}

/** Resolves to the text entered, or undefined when cancelled. */
export class PromptDialog extends Dialog<string | undefined> {
  readonly #o: PromptOptions
  readonly #editor: LineEditor
  #error: string | undefined
  protected readonly cancelled = undefined

  constructor (surface: Surface, opts: PromptOptions, done: (text: string | undefined) => void, onChange: () => void) {
    super(surface, done, onChange)
    this.#o = opts
    this.#editor = new LineEditor(opts.value ?? '')
  }

  key (key: string): void {
    const r = this.#editor.key(key)
    if (r === 'cancel') return this.finish(undefined)
    if (r === 'submit') {
      this.#error = this.#o.validate?.(this.#editor.text)
      if (this.#error === undefined) return this.finish(this.#editor.text)
    } else if (r === 'changed') this.#error = undefined
    this.changed()
  }

  protected title (): string { return this.#o.title ?? 'Input' }

  protected body (width: number): string[] {
    const lines = this.#o.message ? wrap(this.#o.message, width).map((l) => line(l, width)) : []
    lines.push(this.#editor.render('> ', width))
    lines.push(this.#error !== undefined ? line([{ text: this.#error, tone: 'bad' }], width) : line([{ text: 'enter: ok   esc: cancel', tone: 'dim' }], width))
    return lines
  }
}

/** A quick pick: type to narrow, up/down to choose, Enter to take; undefined when cancelled. */
export class PickDialog<T> extends Dialog<T | undefined> {
  readonly #o: PickOptions
  readonly #items: ReadonlyArray<PickItem<T>>
  readonly #editor = new LineEditor()
  #cursor = 0
  #offset = 0
  protected readonly cancelled = undefined

  constructor (surface: Surface, items: ReadonlyArray<PickItem<T>>, opts: PickOptions, done: (value: T | undefined) => void, onChange: () => void) {
    super(surface, done, onChange)
    this.#items = items
    this.#o = opts
  }

  /** The items the typed text leaves. */
  get matches (): ReadonlyArray<PickItem<T>> {
    const q = this.#editor.text.toLowerCase()
    return q === '' ? this.#items : this.#items.filter((i) => `${i.label} ${i.detail ?? ''}`.toLowerCase().includes(q))
  }

  key (key: string): void {
    const r = key === 'pagedown' || key === 'pageup' ? undefined : this.#editor.key(key)
    const n = this.matches.length
    if (r === 'cancel') return this.finish(undefined)
    if (r === 'submit') {
      const item = this.matches[this.#cursor]
      return item ? this.finish(item.value) : undefined
    }
    if (r === 'previous') this.#cursor = Math.max(0, this.#cursor - 1)
    else if (r === 'next') this.#cursor = Math.min(Math.max(0, n - 1), this.#cursor + 1)
    else if (r === 'changed') { this.#cursor = 0; this.#offset = 0 }
    this.changed()
  }

  protected title (): string { return this.#o.title ?? 'Pick' }

  get #rows (): number { return this.#o.rows ?? 10 }

  protected body (width: number): string[] {
    const items = this.matches
    if (this.#cursor < this.#offset) this.#offset = this.#cursor
    if (this.#cursor >= this.#offset + this.#rows) this.#offset = this.#cursor - this.#rows + 1
    const lines = [this.#editor.render('> ', width)]
    for (let i = this.#offset; i < Math.min(items.length, this.#offset + this.#rows); i++) {
      const it = items[i]!
      const text: Span[] = [{ text: i === this.#cursor ? '> ' : '  ' }, { text: it.label }, ...(it.detail ? [{ text: `  ${it.detail}`, tone: 'dim' as const }] : [])]
      lines.push(line(text, width, i === this.#cursor ? { inverse: true } : {}))
    }
    if (items.length === 0) lines.push(line([{ text: '  no match', tone: 'dim' }], width))
    return lines
  }

  protected override mouse (hit: MouseHit): void {
    if (hit.kind === 'wheeldown' || hit.kind === 'wheelup') return this.key(hit.kind === 'wheeldown' ? 'down' : 'up')
    const i = this.#offset + hit.y - 1
    const item = hit.y >= 1 ? this.matches[i] : undefined
    if (item) this.finish(item.value)
  }
}
