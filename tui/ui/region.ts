// Regions: the part of the screen a view owns, split into rows and columns. Sizes are computed here
// (not by blessed) so a resize lays every region out again exactly, with no rounding gaps. A region
// holds one widget or is split, never both.
import type { Rect, Surface } from './backend.js'
import type { Disposable } from './keys.js'
import { Table, type TableOptions } from './table.js'
import { Text, type TextOptions } from './text.js'
import { Tree, type TreeOptions } from './tree.js'
import type { Widget, WidgetHost } from './widget.js'
import { PatchswarmError } from '../../lib/errors.js'

/** Cells, a percentage of the region, or an equal share of what is left (`*`). */
export type Size = number | `${number}%` | '*'

export interface Region {
  readonly width: number
  readonly height: number
  /** Splits into regions stacked (`rows`) or side by side (`columns`). */
  split (direction: 'rows' | 'columns', sizes: readonly Size[]): Region[]
  table<T> (opts: TableOptions<T>): Table<T>
  tree<T> (opts: TreeOptions<T>): Tree<T>
  text (opts?: TextOptions): Text
  /** After every layout that changed the size (a terminal resize). */
  onResize (fn: (size: { width: number, height: number }) => void): Disposable
}

/** `total` cells divided by `sizes`; the shares (`*`) split what fixed sizes and percentages leave. */
export function divide (total: number, sizes: readonly Size[]): number[] {
  const out = sizes.map((s) => {
    if (typeof s === 'number') return Math.max(0, Math.floor(s))
    if (s === '*') return 0
    const pct = Number(s.slice(0, -1))
    return Math.max(0, Math.floor(total * pct / 100))
  })
  const shares = sizes.flatMap((s, i) => s === '*' ? [i] : [])
  let left = total - out.reduce((a, b) => a + b, 0)
  shares.forEach((i, n) => {
    const w = Math.max(0, Math.floor(left / (shares.length - n)))
    out[i] = w
    left -= w
  })
  // Asked for more than there is: the last regions give up cells first.
  let over = out.reduce((a, b) => a + b, 0) - total
  for (let i = out.length - 1; i >= 0 && over > 0; i--) {
    const take = Math.min(out[i]!, over)
    out[i]! -= take
    over -= take
  }
  return out
}

function validSize (s: unknown): s is Size {
  return (typeof s === 'number' && Number.isFinite(s) && s >= 0) || s === '*' ||
    (typeof s === 'string' && /^\d+(\.\d+)?%$/.test(s) && Number(s.slice(0, -1)) <= 100)
}

/** What regions need from the layer: surfaces, a host for widgets, and to hear of new widgets. */
export interface RegionContext {
  surface (): Surface
  host: WidgetHost
  adopt (widget: Widget): void
}

export class RegionNode implements Region {
  readonly #ctx: RegionContext
  #rect: Rect
  #widget: Widget | undefined
  #split: { direction: 'rows' | 'columns', parts: Array<{ size: Size, node: RegionNode }> } | undefined
  #listeners = new Set<(size: { width: number, height: number }) => void>()

  constructor (ctx: RegionContext, rect: Rect) {
    this.#ctx = ctx
    this.#rect = { ...rect }
  }

  get width (): number { return this.#rect.width }
  get height (): number { return this.#rect.height }

  split (direction: 'rows' | 'columns', sizes: readonly Size[]): Region[] {
    this.#claim()
    if (direction !== 'rows' && direction !== 'columns') throw PatchswarmError.BAD_ARGUMENT(`split direction must be rows or columns, not ${JSON.stringify(direction)}`)
    if (!Array.isArray(sizes) || sizes.length === 0) throw PatchswarmError.BAD_ARGUMENT('split needs at least one size')
    for (const [i, s] of sizes.entries()) if (!validSize(s)) throw PatchswarmError.BAD_ARGUMENT(`split size [${i}] ${JSON.stringify(s)} is not cells, a percentage or '*'`)
    this.#split = { direction, parts: sizes.map((size) => ({ size, node: new RegionNode(this.#ctx, this.#rect) })) }
    this.layout(this.#rect, true)
    return this.#split.parts.map((p) => p.node)
  }

  table<T> (opts: TableOptions<T>): Table<T> {
    return this.#make((s) => new Table<T>(this.#ctx.host, s, opts))
  }

  tree<T> (opts: TreeOptions<T>): Tree<T> {
    return this.#make((s) => new Tree<T>(this.#ctx.host, s, opts))
  }

  text (opts: TextOptions = {}): Text {
    return this.#make((s) => new Text(this.#ctx.host, s, opts))
  }

  onResize (fn: (size: { width: number, height: number }) => void): Disposable {
    const entry = (size: { width: number, height: number }) => fn(size)
    this.#listeners.add(entry)
    return { dispose: () => { this.#listeners.delete(entry) } }
  }

  layout (rect: Rect, force = false): void {
    const changed = rect.width !== this.#rect.width || rect.height !== this.#rect.height
    this.#rect = { ...rect }
    this.#widget?.place(rect)
    if (this.#split) {
      const rows = this.#split.direction === 'rows'
      const sizes = divide(rows ? rect.height : rect.width, this.#split.parts.map((p) => p.size))
      let at = rows ? rect.top : rect.left
      this.#split.parts.forEach((p, i) => {
        const n = sizes[i]!
        p.node.layout(rows ? { ...rect, top: at, height: n } : { ...rect, left: at, width: n }, force)
        at += n
      })
    }
    if (changed || force) for (const fn of [...this.#listeners]) fn({ width: rect.width, height: rect.height })
  }

  /** Every widget inside, in reading order (for focus). */
  widgets (): Widget[] {
    if (this.#widget) return [this.#widget]
    return this.#split?.parts.flatMap((p) => p.node.widgets()) ?? []
  }

  destroy (): void {
    for (const w of this.widgets()) w.destroy()
    this.#listeners.clear()
  }

  #claim (): void {
    if (this.#widget || this.#split) throw PatchswarmError.BAD_ARGUMENT('a region holds one widget or is split once; split it for more')
  }

  #make<W extends Widget> (build: (surface: Surface) => W): W {
    this.#claim()
    const surface = this.#ctx.surface()
    let w: W
    try { w = build(surface) } catch (err) { surface.destroy(); throw err }
    this.#widget = w
    w.place(this.#rect)
    this.#ctx.adopt(w)
    return w
  }
}
