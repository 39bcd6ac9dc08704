// What a view is to the layer. A view gets a region when it is opened and builds its widgets in
// it; it never sees the screen. Its keys live in the key table while it is open, scoped to it.
import type { Filter } from './filter.js'
import type { KeyAction } from './keys.js'
import type { Region } from './region.js'

export interface View {
  /** A word (`rollouts`); `when` clauses see it as `view == rollouts`. */
  readonly id: string
  /** Shown in the header's breadcrumb; read at every render, so it may change. */
  readonly title: string
  /** Builds the view's widgets in `region` and starts feeding them. */
  mount (region: Region): void
  /** Stops feeding (unsubscribes); the layer removes the widgets. */
  unmount (): void
  /** Actions while the view is on top; their `when` is narrowed to `view == <id>`. */
  readonly keys?: readonly KeyAction[]
  /** Takes the `/` filter itself; without it the focused list filters its rows. */
  onFilter? (filter: Filter | null): void
  /** More context keys for `when` clauses (`{ selectedState: 'running' }`). */
  context? (): Readonly<Record<string, unknown>>
}
