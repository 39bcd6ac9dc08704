// A virtualized table. setRows() only keeps the array; filtering and sorting happen once per
// frame, and only the rows in the window are formatted. Rows are values: give a changed row as a
// new object (the filter text of an unchanged object is cached). With `key`, the selection stays
// on the same row however the rows change.
import type { Filter } from './filter.js'
import { ListWidget } from './list.js'
import { fit, markup, plain, rule, type Align, type Rich, type Span, type Tone } from './style.js'
import type { Surface } from './backend.js'
import type { WidgetHost } from './widget.js'

export type CellValue = string | number | boolean | null | undefined

export interface Column<T> {
  title: string
  /** What sorts and filters. */
  value: (row: T) => CellValue
  /** What shows (a bar, coloured spans); the value as text without it. */
  format?: (row: T) => Rich
  /** Fixed width in cells; without it the column shares what the fixed ones leave. */
  width?: number
  /** Least width of a sharing column (6). */
  min?: number
  align?: Align
}

export interface TableOptions<T> {
  columns: ReadonlyArray<Column<T>>
  /** A rule above the column titles: `── Endpoints [12/10000] /acme ───`. */
  title?: string
  /** Identifies a row across setRows() calls, so the selection follows it. */
  key?: (row: T) => string
  /** A whole row's tone (a halted rollout in red). */
  tone?: (row: T) => Tone | undefined
  sort?: { column: number | string, descending?: boolean }
  /** Shown when there are no rows. */
  empty?: string
  /** The text the `/` filter matches; the cells' text (values, tab-separated) without it. */
  search?: (row: T) => string
  /** Enter on a row, or a click on the selected row. */
  onOpen?: (row: T) => void
  /** The admin moved the selection. */
  onSelect?: (row: T | undefined) => void
}

const GAP = 1

function compare (a: CellValue, b: CellValue): number {
  // Missing values sort last whatever the direction of the rest.
  if (a === null || a === undefined) return b === null || b === undefined ? 0 : 1
  if (b === null || b === undefined) return -1
  if (typeof a === 'number' && typeof b === 'number') return a - b
  const x = String(a).toLowerCase()
  const y = String(b).toLowerCase()
  return x < y ? -1 : x > y ? 1 : 0
}

export class Table<T> extends ListWidget<T> {
  readonly #opts: TableOptions<T>
  #rows: readonly T[] = []
  #shown: readonly T[] = []
  #stale = false
  #filter: Filter | null = null
  #sort: { column: number, descending: boolean } | null = null
  #searchCache = new WeakMap<object, string>()
  /** Column widths of the last render, for header clicks. */
  #widths: number[] = []

  constructor (host: WidgetHost, surface: Surface, opts: TableOptions<T>) {
    super(host, surface)
    if (!Array.isArray(opts.columns) || opts.columns.length === 0) throw new TypeError('a table needs at least one column')
    this.#opts = opts
    if (opts.sort) this.sortBy(opts.sort.column, opts.sort.descending)
  }

  /** All rows, as last given. */
  get rows (): readonly T[] { return this.#rows }
  /** The rows shown, filtered and sorted. */
  get shownRows (): readonly T[] { return this.#view() }
  get filter (): Filter | null { return this.#filter }
  get sort (): { column: string, descending: boolean } | null {
    return this.#sort && { column: this.#opts.columns[this.#sort.column]!.title, descending: this.#sort.descending }
  }

  setRows (rows: readonly T[]): void {
    this.#rows = rows
    this.#stale = true
    this.invalidate()
  }

  override setFilter (filter: Filter | null): void {
    this.#filter = filter
    this.#stale = true
    this.invalidate()
  }

  /** Sorts by a column (index or title); the same column again keeps its direction unless given. */
  sortBy (column: number | string, descending?: boolean): void {
    const i = typeof column === 'number' ? column : this.#opts.columns.findIndex((c) => c.title === column)
    if (!this.#opts.columns[i]) throw new RangeError(`no column ${JSON.stringify(column)}`)
    this.#sort = { column: i, descending: descending ?? (this.#sort?.column === i ? this.#sort.descending : false) }
    this.#stale = true
    this.invalidate()
  }

  /** Sorts by the next column (the `o` key). */
  sortNext (): void {
    this.sortBy(this.#sort === null ? 0 : (this.#sort.column + 1) % this.#opts.columns.length, false)
  }

  reverseSort (): void {
    this.sortBy(this.#sort?.column ?? 0, !(this.#sort?.descending ?? false))
  }

  /** Selects the row with this key; false when it is not shown. */
  select (key: string): boolean {
    const k = this.#opts.key
    if (!k) throw new TypeError('select(key) needs the table\'s key option')
    const i = this.#view().findIndex((r) => k(r) === key)
    if (i === -1) return false
    this.setCursor(i)
    return true
  }

  override count (): number { return this.#view().length }
  override item (i: number): T | undefined { return this.#view()[i] }

  #view (): readonly T[] {
    if (!this.#stale) return this.#shown
    const k = this.#opts.key
    const old = this.#shown
    const before = k && old.length > 0 ? old[Math.min(this.cursorIndex, old.length - 1)] : undefined
    this.#stale = false
    let rows = this.#rows
    const f = this.#filter
    if (f) rows = rows.filter((r) => f.test(this.#search(r)))
    if (this.#sort) {
      const col = this.#opts.columns[this.#sort.column]!
      const sign = this.#sort.descending ? -1 : 1
      const keyed = rows.map((r) => [col.value(r), r] as const)
      keyed.sort((a, b) => {
        const c = compare(a[0], b[0])
        return c === 0 || a[0] === null || a[0] === undefined || b[0] === null || b[0] === undefined ? c : c * sign
      })
      rows = keyed.map((e) => e[1])
    }
    this.#shown = rows
    if (k && before !== undefined) {
      const wanted = k(before)
      const i = rows.findIndex((r) => k(r) === wanted)
      if (i !== -1) this.setCursor(i)
    }
    return rows
  }

  #search (row: T): string {
    const cacheable = typeof row === 'object' && row !== null
    if (cacheable) {
      const hit = this.#searchCache.get(row)
      if (hit !== undefined) return hit
    }
    const text = this.#opts.search
      ? this.#opts.search(row)
      : this.#opts.columns.map((c) => c.format ? plain(c.format(row)) : String(c.value(row) ?? '')).join('\t')
    if (cacheable) this.#searchCache.set(row, text)
    return text
  }

  #layout (width: number): number[] {
    const cols = this.#opts.columns
    const fixed = cols.reduce((n, c) => n + (c.width ?? 0), 0)
    const sharing = cols.filter((c) => c.width === undefined)
    let room = width - fixed - GAP * (cols.length - 1)
    const each = sharing.length > 0 ? Math.floor(Math.max(0, room) / sharing.length) : 0
    return cols.map((c) => {
      if (c.width !== undefined) return c.width
      const w = Math.max(c.min ?? 6, each)
      room -= w
      // The last sharing column takes what rounding left.
      return c === sharing[sharing.length - 1] ? w + Math.max(0, room) : w
    })
  }

  protected override head (width: number): string[] {
    this.#widths = this.#layout(width)
    const lines: string[] = []
    if (this.#opts.title !== undefined) {
      const n = this.count()
      const label: Span[] = [{ text: `${this.#opts.title} [${n === this.#rows.length ? n : `${n}/${this.#rows.length}`}]` }]
      if (this.#filter) label.push({ text: ` /${this.#filter.text}`, tone: 'accent' })
      lines.push(rule(label, width))
    }
    const titles = this.#opts.columns.map((c, i) => {
      const arrow = this.#sort?.column === i ? (this.#sort.descending ? '↓' : '↑') : ''
      return fit(c.title.toUpperCase() + arrow, this.#widths[i]!, c.align)
    })
    lines.push(markup(fit(this.#join(titles), width), { tone: 'bold' }))
    return lines
  }

  protected override row (i: number, width: number, selected: boolean): string {
    const r = this.item(i)!
    const cells = this.#opts.columns.map((c, j) => fit(c.format ? c.format(r) : String(c.value(r) ?? ''), this.#widths[j]!, c.align))
    const tone = this.#opts.tone?.(r)
    const spans = fit(this.#join(cells), width).map((s) => ({ text: s.text, tone: s.tone ?? tone }))
    return markup(spans, selected ? (this.focused ? { inverse: true } : { tone: 'bold' }) : {})
  }

  #join (cells: Span[][]): Span[] {
    return cells.flatMap((c, i) => i === 0 ? c : [{ text: ' '.repeat(GAP) }, ...c])
  }

  protected override emptyText (): string {
    return markup([{ text: this.#rows.length > 0 ? 'nothing matches the filter' : (this.#opts.empty ?? 'nothing here yet'), tone: 'dim' }])
  }

  protected override activate (row: T): void { this.#opts.onOpen?.(row) }
  protected override moved (row: T | undefined): void { this.#opts.onSelect?.(row) }

  protected override headClick (x: number, y: number): void {
    // Only the column titles (the last head line) sort.
    if (y !== (this.#opts.title !== undefined ? 1 : 0)) return
    let left = 0
    for (const [i, w] of this.#widths.entries()) {
      if (x < left + w + GAP) {
        const same = this.#sort?.column === i
        return this.sortBy(i, same ? !this.#sort!.descending : false)
      }
      left += w + GAP
    }
  }
}
