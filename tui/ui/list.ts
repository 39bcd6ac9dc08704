// A virtualized list: a cursor and a window onto `count()` items; only the rows in the window are
// ever formatted, so 10 000 endpoints cost what 20 do. Table and Tree build on it.
import type { MouseHit } from './backend.js'
import { Widget } from './widget.js'

export abstract class ListWidget<T> extends Widget {
  #cursor = 0
  #offset = 0
  /** Rows the last render had room for, for paging before the next one. */
  #page = 1
  #headLines = 0

  override get focusable (): boolean { return true }

  /** Items shown (after filtering). */
  abstract count (): number
  /** The i-th item shown. */
  abstract item (i: number): T | undefined
  /** Lines above the rows: a title rule, column titles. */
  protected abstract head (width: number): string[]
  /** The i-th row, exactly `width` cells. */
  protected abstract row (i: number, width: number, selected: boolean): string
  /** The line shown when there is nothing to show. */
  protected abstract emptyText (): string
  /** Enter or a click on the selected row. */
  protected abstract activate (item: T): void
  /** The cursor moved to another item by the admin's hand. */
  protected moved (_item: T | undefined): void {}
  /** A click on the head, at (x, y) inside it. */
  protected headClick (_x: number, _y: number): void {}

  get cursor (): number {
    // count() first: it may recompute the items and move the cursor to follow the selected one.
    const n = this.count()
    return Math.min(this.#cursor, Math.max(0, n - 1))
  }
  /** The cursor as set, not yet clamped to the items (for subclasses recomputing their items). */
  protected get cursorIndex (): number { return this.#cursor }
  /** The first row in the window. */
  get offset (): number { return this.#offset }
  get selected (): T | undefined { return this.item(this.cursor) }

  /** Puts the cursor on item `i` (clamped) without telling anyone: the program moved it. */
  protected setCursor (i: number): void {
    this.#cursor = Math.max(0, Math.min(i, this.count() - 1))
    this.invalidate()
  }

  move (delta: number): void {
    const before = this.selected
    this.setCursor(this.cursor + delta)
    if (this.selected !== before) this.moved(this.selected)
  }

  pageDown (): void { this.move(Math.max(1, this.#page - 1)) }
  pageUp (): void { this.move(-Math.max(1, this.#page - 1)) }
  top (): void { this.move(-this.count()) }
  bottom (): void { this.move(this.count()) }

  open (): void {
    const item = this.selected
    if (item !== undefined) this.activate(item)
  }

  protected override render (width: number, height: number): string[] {
    const lines = this.head(width).slice(0, height)
    this.#headLines = lines.length
    const page = Math.max(0, height - lines.length)
    this.#page = Math.max(1, page)
    const count = this.count()
    const cursor = this.cursor
    // Keep the cursor in the window, and the window full when the list shrank.
    if (cursor < this.#offset) this.#offset = cursor
    if (cursor >= this.#offset + page) this.#offset = cursor - page + 1
    this.#offset = Math.max(0, Math.min(this.#offset, count - page))
    if (count === 0 && page > 0) lines.push(this.emptyText())
    const end = Math.min(count, this.#offset + page)
    for (let i = this.#offset; i < end; i++) lines.push(this.row(i, width, i === cursor))
    return lines
  }

  protected override mouse (hit: MouseHit): void {
    if (hit.kind === 'wheeldown') return this.move(3)
    if (hit.kind === 'wheelup') return this.move(-3)
    if (hit.y < this.#headLines) return this.headClick(hit.x, hit.y)
    const i = this.#offset + hit.y - this.#headLines
    if (i >= this.count()) return
    // A click on the selected row opens it, as a double click would.
    if (i === this.cursor) this.open()
    else this.move(i - this.cursor)
  }
}
