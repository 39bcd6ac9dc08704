// What every widget shares: a surface, a place on screen, and drawing only when something changed.
// Widgets compute their lines for the size they have; the layer calls draw() right before a render.
import type { MouseHit, Rect, Surface } from './backend.js'
import type { Filter } from './filter.js'

/** What a widget needs from the layer. */
export interface WidgetHost {
  /** Something changed: render soon (throttled). */
  invalidate (): void
  /** The widget was clicked: give it the keys. */
  focus (widget: Widget): void
  /** False while a dialog is open: clicks behind it do nothing. */
  interactive (): boolean
}

export abstract class Widget {
  readonly #surface: Surface
  readonly #host: WidgetHost
  #rect: Rect = { top: 0, left: 0, width: 0, height: 0 }
  #dirty = true
  #focused = false
  #destroyed = false

  constructor (host: WidgetHost, surface: Surface) {
    this.#host = host
    this.#surface = surface
    surface.onMouse((hit) => {
      if (!host.interactive()) return
      if (this.focusable) host.focus(this)
      this.mouse(hit)
    })
  }

  /** True for widgets that take keys (lists); tab moves between them. */
  get focusable (): boolean { return false }

  get width (): number { return this.#rect.width }
  get height (): number { return this.#rect.height }
  get focused (): boolean { return this.#focused }

  /** Called by the layer when focus moves. */
  setFocused (on: boolean): void {
    if (on === this.#focused) return
    this.#focused = on
    this.invalidate()
  }

  /** Only lists filter; the layer asks before it hands a filter over. */
  setFilter? (filter: Filter | null): void

  place (rect: Rect): void {
    this.#rect = { ...rect }
    this.#surface.place(rect)
    this.invalidate()
  }

  show (): void { this.#surface.show(); this.invalidate() }
  hide (): void { this.#surface.hide() }

  /** Marks the widget for redrawing and asks for a render. */
  invalidate (): void {
    if (this.#destroyed) return
    this.#dirty = true
    this.#host.invalidate()
  }

  /** Redraws if something changed since the last draw. */
  draw (): void {
    if (!this.#dirty || this.#destroyed) return
    this.#dirty = false
    this.#surface.setLines(this.render(this.#rect.width, this.#rect.height))
  }

  destroy (): void {
    if (this.#destroyed) return
    this.#destroyed = true
    this.#surface.destroy()
  }

  /** Lines of markup exactly `width` cells wide, at most `height` of them. */
  protected abstract render (width: number, height: number): string[]

  protected mouse (_hit: MouseHit): void {}
}
