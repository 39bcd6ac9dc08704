// Rollouts in LevelDB. Each rollout is one record carrying a `revision` that every stored change
// increments; a caller that read revision N (a TUI screen, a script) can make its change conditional
// on N so it never acts on a state someone else already changed. Every change also appends its facts
// to the rollout's history (who, what, when) in the same atomic batch, with the caller's extra
// operations (its audit entry), so a change is never stored without its record.
//
// Keys in the sublevel:  r!<id> → rollout,  h!<id>!<revision>!<n> → history entry
import { PatchswarmError } from '../errors.js'
import { checkTenantPath, isWithinTenant } from '../trust/fields.js'
import { sublevel, type Database, type Sublevel } from '../store/db.js'
import { commit, Mutex, systemClock, type FleetClock, type FleetOp, type WriteOptions } from '../fleet/common.js'
import {
  type Rollout, type RolloutChange, type RolloutState, type RolloutStep, type TargetEndpoint,
  createRollout, pauseRollout, resumeRollout, abortRollout, rollbackRollout
} from './rollout.js'
import { evaluate, type StatusOf } from './engine.js'
import { deepFreeze } from '../freeze.js'

export interface RolloutHistoryEntry {
  rollout: string
  /** The revision the change produced. */
  revision: number
  at: string
  /** Who made the change: an admin id, or 'engine' for phase progress. */
  by: string
  change: RolloutChange
}

export interface RolloutWriteOptions extends WriteOptions {
  /** Recorded in the history; defaults to 'console' ('engine' for evaluate). */
  by?: string
  /** When given, the change is refused unless the rollout is still at this revision. */
  revision?: number
}

export interface RolloutFilter {
  /** Only rollouts whose target lies in this tenant subtree ('' = all). */
  tenant?: string
  states?: readonly RolloutState[]
}

export interface HistoryRange {
  limit?: number
  /** Newest first. */
  reverse?: boolean
}

const REV_DIGITS = 12
const MAX_BY = 256
const rolloutKey = (id: string) => `r!${id}`
const historyPrefix = (id: string) => `h!${id}!`
const historyKey = (id: string, revision: number, n: number) => `${historyPrefix(id)}${String(revision).padStart(REV_DIGITS, '0')}!${String(n).padStart(2, '0')}`

function byOf (wopts: RolloutWriteOptions, fallback: string): string {
  const by = wopts.by ?? fallback
  if (typeof by !== 'string' || by === '' || by.length > MAX_BY) throw PatchswarmError.BAD_ARGUMENT(`by must be 1-${MAX_BY} characters`)
  return by
}

export class RolloutStore {
  readonly db: Database
  private readonly store: Sublevel
  private readonly clock: FleetClock
  private readonly lock = new Mutex()
  /**
   * Rollouts as last read or written, frozen: the engine reads one after every burst of reports,
   * and a large rollout's document (its frozen membership) costs more to parse than to evaluate.
   * Only this store writes them, so the cache is exact.
   */
  private readonly cache = new Map<string, Rollout>()
  /** Every rollout's state, read once, then kept by the writes: the engine's timer lists the running ones. */
  private states: Map<string, RolloutState> | null = null

  constructor (db: Database, opts: { clock?: FleetClock, sublevelName?: string } = {}) {
    this.db = db
    this.store = sublevel(db, opts.sublevelName ?? 'rollouts')
    this.clock = opts.clock ?? systemClock
  }

  // ---- reads -------------------------------------------------------------------------------

  /** The rollout `id` (frozen: the engine makes changed copies), or undefined. */
  async find (id: string): Promise<Rollout | undefined> {
    if (typeof id !== 'string' || id === '') return undefined
    const cached = this.cache.get(id)
    if (cached) return cached
    const stored = await this.store.get(rolloutKey(id)) as Rollout | undefined
    if (stored) this.cache.set(id, deepFreeze(stored))
    return stored
  }

  /** The rollout `id`; NOT_FOUND if there is none. */
  async get (id: string): Promise<Rollout> {
    const r = await this.find(id)
    if (!r) throw PatchswarmError.NOT_FOUND(`no rollout ${JSON.stringify(id)?.slice(0, 140)}`)
    return r
  }

  /** Rollouts ordered by id. */
  async list (filter: RolloutFilter = {}): Promise<Rollout[]> {
    const tenant = filter.tenant ?? ''
    const problem = typeof tenant === 'string' ? checkTenantPath(tenant) : 'is not a string'
    if (problem !== null) throw PatchswarmError.UNSAFE_PATH(`tenant filter: ${problem}`)
    const within = (r: Rollout) => isWithinTenant(r.spec.target.tenant, tenant)
    if (!filter.states) return (await this.readAll()).filter(within)
    // By state: only those rollouts are read (from the cache once found).
    const wanted = new Set(filter.states)
    const index = this.states ?? await this.lock.run(async () => {
      this.states ??= new Map((await this.readAll()).map((r) => [r.id, r.state]))
      return this.states
    })
    const out: Rollout[] = []
    for (const id of [...index.keys()].sort()) {
      if (!wanted.has(index.get(id)!)) continue
      const r = await this.find(id)
      if (r && within(r)) out.push(r)
    }
    return out
  }

  private async readAll (): Promise<Rollout[]> {
    return await this.store.values({ gt: 'r!', lt: 'r!\xff' }).all() as Rollout[]
  }

  // After a write: the frozen rollout for find(), its state for list().
  private remember (r: Rollout): void {
    this.cache.set(r.id, deepFreeze(r))
    this.states?.set(r.id, r.state)
  }

  /** The rollout's changes, oldest first unless `reverse`. */
  async history (id: string, range: HistoryRange = {}): Promise<RolloutHistoryEntry[]> {
    const prefix = historyPrefix(id)
    return await this.store.values({
      gt: prefix,
      lt: prefix + '\xff',
      ...(range.reverse ? { reverse: true } : {}),
      ...(range.limit !== undefined ? { limit: Math.max(0, Math.floor(range.limit)) } : {})
    }).all() as RolloutHistoryEntry[]
  }

  // ---- writes ------------------------------------------------------------------------------

  /** Creates a rollout over `endpoints` (membership is frozen now); ALREADY_EXISTS for a taken id. */
  async create (spec: unknown, endpoints: readonly TargetEndpoint[], wopts: RolloutWriteOptions = {}): Promise<RolloutStep> {
    const by = byOf(wopts, 'console')
    return this.lock.run(async () => {
      const now = this.clock()
      const step = createRollout(spec, endpoints, now)
      if (await this.find(step.rollout.id) !== undefined) throw PatchswarmError.ALREADY_EXISTS(`rollout ${step.rollout.id} already exists`)
      await commit(this.db, this.writeOps(step, by, now), wopts.extra)
      this.remember(step.rollout)
      return step
    })
  }

  /**
   * Applies `fn` to the stored rollout and stores its result with revision + 1. A step without
   * changes writes nothing (and leaves `extra` uncalled).
   */
  async update (id: string, fn: (r: Rollout, now: Date) => RolloutStep, wopts: RolloutWriteOptions = {}, defaultBy = 'console'): Promise<RolloutStep> {
    const by = byOf(wopts, defaultBy)
    return this.lock.run(async () => {
      const current = await this.get(id)
      if (wopts.revision !== undefined && wopts.revision !== current.revision) {
        throw PatchswarmError.INVALID_TRANSITION(`rollout ${id} is at revision ${current.revision}, not ${wopts.revision}: it changed meanwhile; reload it and decide again`)
      }
      const now = this.clock()
      const step = fn(current, now)
      if (step.changes.length === 0) return { rollout: current, changes: [] }
      const next: RolloutStep = { rollout: { ...step.rollout, revision: current.revision + 1, updatedAt: now.toISOString() }, changes: step.changes }
      await commit(this.db, this.writeOps(next, by, now), wopts.extra)
      this.remember(next.rollout)
      return next
    })
  }

  pause (id: string, wopts: RolloutWriteOptions = {}): Promise<RolloutStep> { return this.update(id, pauseRollout, wopts) }
  resume (id: string, wopts: RolloutWriteOptions = {}): Promise<RolloutStep> { return this.update(id, resumeRollout, wopts) }
  abort (id: string, wopts: RolloutWriteOptions = {}): Promise<RolloutStep> { return this.update(id, abortRollout, wopts) }
  rollback (id: string, wopts: RolloutWriteOptions = {}): Promise<RolloutStep> { return this.update(id, rollbackRollout, wopts) }

  /** Runs the engine on the stored rollout at the store's clock; stores what it changed. */
  evaluate (id: string, statusOf: StatusOf, wopts: RolloutWriteOptions = {}): Promise<RolloutStep> {
    return this.update(id, (r, now) => evaluate(r, statusOf, now), wopts, 'engine')
  }

  private writeOps (step: RolloutStep, by: string, now: Date): FleetOp[] {
    const { rollout, changes } = step
    const at = now.toISOString()
    return [
      { type: 'put', sublevel: this.store, key: rolloutKey(rollout.id), value: rollout },
      ...changes.map((change, n): FleetOp => ({
        type: 'put',
        sublevel: this.store,
        key: historyKey(rollout.id, rollout.revision, n),
        value: { rollout: rollout.id, revision: rollout.revision, at, by, change } satisfies RolloutHistoryEntry
      }))
    ]
  }
}
