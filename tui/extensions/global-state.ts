// `ctx.globalState`: VS Code's Memento over a LevelDB sublevel per extension. Reads are synchronous
// (as in VS Code) from a copy loaded before activate(); updates write through and are durable when
// their promise resolves, so the state survives a restart of the console.
import { PatchswarmError } from '../../lib/errors.js'
import { sublevel, type Database, type Sublevel } from '../../lib/store/db.js'

/** A value larger than this as JSON is refused: the state is for small bookkeeping, not data. */
export const MAX_STATE_VALUE_BYTES = 256 * 1024

export interface Memento {
  keys (): readonly string[]
  get<T> (key: string): T | undefined
  get<T> (key: string, defaultValue: T): T
  /** Stores `value` (a JSON value); `undefined` deletes the key. */
  update (key: string, value: unknown): Promise<void>
}

export class GlobalState implements Memento {
  readonly #db: Sublevel
  readonly #cache: Map<string, unknown>
  #closed = false

  private constructor (db: Sublevel, cache: Map<string, unknown>) {
    this.#db = db
    this.#cache = cache
  }

  /** The state of `extensionId` in `db` (under the `extension-state` sublevel). */
  static async open (db: Database, extensionId: string): Promise<GlobalState> {
    const level = sublevel(db, 'extension-state').sublevel<string, unknown>(extensionId, { valueEncoding: 'json' }) as unknown as Sublevel
    const cache = new Map<string, unknown>()
    for await (const [k, v] of level.iterator()) cache.set(k, v)
    return new GlobalState(level, cache)
  }

  keys (): readonly string[] {
    return [...this.#cache.keys()]
  }

  get<T> (key: string, defaultValue?: T): T | undefined {
    return this.#cache.has(key) ? structuredClone(this.#cache.get(key)) as T : defaultValue
  }

  async update (key: string, value: unknown): Promise<void> {
    if (this.#closed) throw PatchswarmError.CLOSED('the extension is no longer active; its state is read-only')
    if (typeof key !== 'string' || key.length === 0 || key.length > 256) throw PatchswarmError.BAD_ARGUMENT('a state key is a string of 1 to 256 characters')
    if (value === undefined) {
      await this.#db.del(key)
      this.#cache.delete(key)
      return
    }
    let json: string | undefined
    try { json = JSON.stringify(value) } catch (err) { throw PatchswarmError.BAD_ARGUMENT(`state ${key}: not a JSON value`, err) }
    if (json === undefined) throw PatchswarmError.BAD_ARGUMENT(`state ${key}: not a JSON value`)
    if (Buffer.byteLength(json) > MAX_STATE_VALUE_BYTES) throw PatchswarmError.BAD_ARGUMENT(`state ${key}: ${Buffer.byteLength(json)} bytes as JSON, at most ${MAX_STATE_VALUE_BYTES}`)
    // Stored as it reads back from the database, so a later change to `value` changes nothing here.
    const stored: unknown = JSON.parse(json)
    await this.#db.put(key, stored)
    this.#cache.set(key, stored)
  }

  /** Refuses further updates (the extension was deactivated or failed); reads keep working. */
  close (): void {
    this.#closed = true
  }
}
