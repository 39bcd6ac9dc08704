// Small pieces shared by the fleet stores: the injected clock, one write lock per store, and batch
// operations that name their sublevel so several stores (tree + audit) commit in one atomic batch.
import type { Database, Sublevel } from '../store/db.js'

export type FleetClock = () => Date

export const systemClock: FleetClock = () => new Date()

export type FleetOp =
  | { type: 'put', sublevel: Sublevel, key: string, value: unknown }
  | { type: 'del', sublevel: Sublevel, key: string }

/** Extra operations committed in the same batch as a change, built only once the change is valid. */
export type ExtraOps = () => FleetOp[]

export interface WriteOptions {
  extra?: ExtraOps
}

/** Commits operations on sublevels of `db` atomically (abstract-level's `sublevel` batch option). */
export async function commit (db: Database, ops: FleetOp[], extra?: ExtraOps): Promise<void> {
  const all = extra ? [...ops, ...extra()] : ops
  if (all.length === 0) return
  await db.batch(all as never)
}

/** Serialises async critical sections (read-validate-write) within one process. */
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve()

  run<T> (fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn, fn)
    this.tail = result.catch(() => {})
    return result
  }
}
