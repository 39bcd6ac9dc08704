// Disposables and events as in VS Code: every registration hands back something to undo it, and a
// store undoes a whole set in reverse order, each step on its own, so one throwing dispose() does
// not leave the rest registered.

export interface Disposable {
  dispose (): void
}

export function toDisposable (fn: () => void): Disposable {
  let done = false
  return { dispose () { if (!done) { done = true; fn() } } }
}

/** A Disposable whose work is already done (what a revoked extension gets from a registration). */
export const DISPOSED: Disposable = Object.freeze({ dispose () {} })

/**
 * Disposables owned together. `push` mirrors `ExtensionContext.subscriptions` in VS Code; once the
 * store is disposed, anything pushed later is disposed at once (a late, timed-out activation).
 */
export class DisposableStore implements Disposable {
  readonly #items: Disposable[] = []
  #disposed = false
  readonly #onError: (err: unknown) => void

  constructor (onError: (err: unknown) => void = () => {}) {
    this.#onError = onError
  }

  get disposed (): boolean { return this.#disposed }
  get length (): number { return this.#items.length }

  push (...items: Disposable[]): number {
    for (const d of items) {
      if (typeof d?.dispose !== 'function') throw new TypeError('subscriptions take objects with a dispose() method')
      if (this.#disposed) this.#disposeOne(d)
      else this.#items.push(d)
    }
    return this.#items.length
  }

  add<T extends Disposable> (d: T): T {
    this.push(d)
    return d
  }

  /** Forgets `d` without disposing it (it was disposed by its owner). */
  delete (d: Disposable): void {
    const i = this.#items.lastIndexOf(d)
    if (i !== -1) this.#items.splice(i, 1)
  }

  dispose (): void {
    this.#disposed = true
    while (this.#items.length > 0) this.#disposeOne(this.#items.pop()!)
  }

  #disposeOne (d: Disposable): void {
    try { d.dispose() } catch (err) { this.#onError(err) }
  }
}

export type Event<T> = (listener: (e: T) => void) => Disposable

/** A typed event source; a throwing listener does not keep the others from hearing the event. */
export class Emitter<T> implements Disposable {
  readonly #listeners = new Set<(e: T) => void>()
  readonly #onError: (err: unknown) => void

  constructor (onError: (err: unknown) => void = () => {}) {
    this.#onError = onError
  }

  readonly event: Event<T> = (listener) => {
    // A wrapper per subscription, so the same function subscribed twice is two subscriptions.
    const entry = (e: T) => listener(e)
    this.#listeners.add(entry)
    return toDisposable(() => this.#listeners.delete(entry))
  }

  fire (e: T): void {
    for (const l of [...this.#listeners]) {
      try { l(e) } catch (err) { this.#onError(err) }
    }
  }

  dispose (): void {
    this.#listeners.clear()
  }
}
