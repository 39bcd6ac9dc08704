// What a view of the console gets from the app: the screen (only through the view layer), the
// data streams, and ways to open other views and to act on the console.
import type { Subscription, Observable } from 'rxjs'
import type { Ui } from '../ui/index.js'
import type { ConsoleData } from '../app/data.js'
import { errorText } from './format.js'

export interface AppContext {
  readonly ui: Ui
  readonly data: ConsoleData
  readonly admin: string
  readonly readonly: boolean
  /** The tenant path the session looks at (extension views and exports use it). */
  readonly scope: string
  /** Opens a view as `:name args` would. */
  open (name: string, args?: readonly string[]): Promise<boolean>
  /** Calls an admin API method that changes something; a refusal is shown, and resolves undefined. */
  act<T> (what: string, method: string, ...params: unknown[]): Promise<T | undefined>
}

/** The subscriptions of one mounted view: `watch` shows errors in the status line; `stop` ends them all. */
export class Feeds {
  readonly #ctx: AppContext
  readonly #subs: Subscription[] = []
  readonly #title: () => string

  constructor (ctx: AppContext, title: () => string) {
    this.#ctx = ctx
    this.#title = title
  }

  watch<T> (source: Observable<T>, next: (value: T) => void, onError?: (err: unknown) => void): void {
    this.#subs.push(source.subscribe({
      next: (v) => {
        try { next(v) } catch (err) { this.#ctx.ui.message(`${this.#title()}: ${errorText(err)}`, 'error') }
      },
      error: (err) => {
        onError?.(err)
        this.#ctx.ui.message(`${this.#title()}: ${errorText(err)}`, 'error')
      }
    }))
  }

  stop (): void {
    for (const s of this.#subs.splice(0)) s.unsubscribe()
  }
}
