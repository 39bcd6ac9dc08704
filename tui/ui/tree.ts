// An expandable tree (the tenant tree): expanded nodes flattened into a virtualized list, with
// optional columns on the right (status, compliance). A filter shows the matching nodes with the
// path down to them, expanded, whatever the admin had collapsed.
import type { Filter } from './filter.js'
import { ListWidget } from './list.js'
import { fit, markup, plain, rule, spans, type Rich, type Span, type Tone } from './style.js'
import type { Column } from './table.js'
import type { Surface } from './backend.js'
import type { WidgetHost } from './widget.js'

export interface TreeOptions<T> {
  /** Unique among all nodes: keeps expansion and selection across setRoots() calls. */
  id: (node: T) => string
  label: (node: T) => Rich
  children: (node: T) => readonly T[] | undefined
  /** Columns right of the labels; each needs a width (8 without one). */
  columns?: ReadonlyArray<Column<T>>
  title?: string
  tone?: (node: T) => Tone | undefined
  /** Nodes shallower than this start expanded (1: the roots' children show). */
  expandDepth?: number
  /** What the filter matches; the label's text without it. */
  search?: (node: T) => string
  /** Enter on a node (without it, Enter expands or collapses). */
  onOpen?: (node: T) => void
  onSelect?: (node: T | undefined) => void
  empty?: string
}

interface Row<T> {
  node: T
  depth: number
  /** Index of the parent row; -1 for a root. */
  parent: number
  branch: boolean
  expanded: boolean
}

export class Tree<T> extends ListWidget<T> {
  readonly #opts: TreeOptions<T>
  #roots: readonly T[] = []
  #rows: Row<T>[] = []
  #stale = false
  #filter: Filter | null = null
  /** What the admin expanded or collapsed by hand; the depth rule decides the rest. */
  #expanded = new Map<string, boolean>()

  constructor (host: WidgetHost, surface: Surface, opts: TreeOptions<T>) {
    super(host, surface)
    this.#opts = opts
  }

  get filter (): Filter | null { return this.#filter }
  /** The rows shown: nodes with their depth. */
  get shown (): ReadonlyArray<{ node: T, depth: number, expanded: boolean, branch: boolean }> { return this.#view() }

  setRoots (roots: readonly T[]): void {
    this.#roots = roots
    this.#stale = true
    this.invalidate()
  }

  override setFilter (filter: Filter | null): void {
    this.#filter = filter
    this.#stale = true
    this.invalidate()
  }

  isExpanded (node: T, depth = 0): boolean {
    return this.#expanded.get(this.#opts.id(node)) ?? depth < (this.#opts.expandDepth ?? 1)
  }

  /** Expands the selected node, or steps into it when already expanded. */
  expand (): void {
    const row = this.#view()[this.cursor]
    if (!row?.branch) return
    if (!row.expanded) this.#set(row.node, true)
    else this.move(1)
  }

  /** Collapses the selected node, or steps out to its parent. */
  collapse (): void {
    const row = this.#view()[this.cursor]
    if (!row) return
    if (row.branch && row.expanded && !this.#filter) this.#set(row.node, false)
    else if (row.parent >= 0) this.move(row.parent - this.cursor)
  }

  toggle (): void {
    const row = this.#view()[this.cursor]
    if (row?.branch && !this.#filter) this.#set(row.node, !row.expanded)
  }

  /** Selects the node with this id, expanding the path to it; false when there is none shown. */
  select (id: string): boolean {
    const path = this.#pathTo(id, this.#roots, [])
    if (!path) return false
    for (const n of path.slice(0, -1)) this.#expanded.set(this.#opts.id(n), true)
    this.#stale = true
    const i = this.#view().findIndex((r) => this.#opts.id(r.node) === id)
    if (i === -1) return false
    this.setCursor(i)
    return true
  }

  override count (): number { return this.#view().length }
  override item (i: number): T | undefined { return this.#view()[i]?.node }

  #set (node: T, expanded: boolean): void {
    this.#expanded.set(this.#opts.id(node), expanded)
    this.#stale = true
    this.invalidate()
  }

  #pathTo (id: string, nodes: readonly T[], above: T[]): T[] | undefined {
    for (const n of nodes) {
      const path = [...above, n]
      if (this.#opts.id(n) === id) return path
      const found = this.#pathTo(id, this.#opts.children(n) ?? [], path)
      if (found) return found
    }
    return undefined
  }

  #view (): Row<T>[] {
    if (!this.#stale) return this.#rows
    const old = this.#rows
    const before = old.length > 0 ? old[Math.min(this.cursorIndex, old.length - 1)]?.node : undefined
    this.#stale = false
    const rows: Row<T>[] = []
    const f = this.#filter
    const matches = (n: T) => f!.test(this.#opts.search ? this.#opts.search(n) : plain(this.#opts.label(n)))
    // With a filter: does this subtree hold a match? (memoized per node for this pass)
    const holds = new Map<T, boolean>()
    const hasMatch = (n: T): boolean => {
      let h = holds.get(n)
      if (h === undefined) {
        h = matches(n) || (this.#opts.children(n) ?? []).some(hasMatch)
        holds.set(n, h)
      }
      return h
    }
    const visit = (nodes: readonly T[], depth: number, parent: number) => {
      for (const n of nodes) {
        if (f && !hasMatch(n)) continue
        const kids = this.#opts.children(n) ?? []
        const expanded = kids.length > 0 && (f ? true : this.isExpanded(n, depth))
        const at = rows.push({ node: n, depth, parent, branch: kids.length > 0, expanded }) - 1
        if (expanded) visit(kids, depth + 1, at)
      }
    }
    visit(this.#roots, 0, -1)
    this.#rows = rows
    if (before !== undefined) {
      const id = this.#opts.id(before)
      const i = rows.findIndex((r) => this.#opts.id(r.node) === id)
      if (i !== -1) this.setCursor(i)
    }
    return rows
  }

  protected override head (width: number): string[] {
    const lines: string[] = []
    if (this.#opts.title !== undefined) {
      const label: Span[] = [{ text: this.#opts.title }]
      if (this.#filter) label.push({ text: ` /${this.#filter.text}`, tone: 'accent' })
      lines.push(rule(label, width))
    }
    const cols = this.#opts.columns ?? []
    if (cols.length > 0) {
      const right = cols.flatMap((c) => [{ text: ' ' }, ...fit(c.title.toUpperCase(), c.width ?? 8, c.align)])
      lines.push(markup(fit([...fit('', Math.max(0, width - plain(right).length)), ...right], width), { tone: 'bold' }))
    }
    return lines
  }

  protected override row (i: number, width: number, selected: boolean): string {
    const r = this.#view()[i]!
    const cols = this.#opts.columns ?? []
    const right = cols.flatMap((c) => [{ text: ' ' }, ...fit(c.format ? c.format(r.node) : String(c.value(r.node) ?? ''), c.width ?? 8, c.align)])
    const marker = r.branch ? (r.expanded ? '▾ ' : '▸ ') : '  '
    const labelWidth = Math.max(0, width - plain(right).length)
    const left = fit([{ text: '  '.repeat(r.depth) + marker, tone: 'dim' }, ...spans(this.#opts.label(r.node))], labelWidth)
    const tone = this.#opts.tone?.(r.node)
    const cells = fit([...left, ...right], width).map((s) => ({ text: s.text, tone: s.tone ?? tone }))
    return markup(cells, selected ? (this.focused ? { inverse: true } : { tone: 'bold' }) : {})
  }

  protected override emptyText (): string {
    return markup([{ text: this.#roots.length > 0 ? 'nothing matches the filter' : (this.#opts.empty ?? 'nothing here yet'), tone: 'dim' }])
  }

  protected override activate (node: T): void {
    if (this.#opts.onOpen) this.#opts.onOpen(node)
    else this.toggle()
  }

  protected override moved (node: T | undefined): void { this.#opts.onSelect?.(node) }
}
