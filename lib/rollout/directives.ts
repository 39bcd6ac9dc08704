// From rollouts to what agents obey: the assignments each rollout implies in its current state, and
// the issuer that puts them into a console-signed directive with a version that only goes up (an
// agent refuses a lower one as a rollback). The console issues a new directive after every rollout
// change; issuing the same assignments again just refreshes the expiry.
//
// What each state assigns, to the endpoints of every phase that has started:
//   running, paused, halted, completed → install (pausing or halting stops new phases; it does not
//                                         take back what was already assigned)
//   aborted                             → nothing: like hawkBit, aborting cancels open work, and an
//                                         agent with no assignment starts no new job
//   rolled-back                         → rollback
import { PatchswarmError } from '../errors.js'
import type { Signer } from '../crypto/keys.js'
import { isSafeName } from '../content/paths.js'
import { sublevel, type Database, type Sublevel } from '../store/db.js'
import { type Assignment, type DirectiveDocument, MAX_ASSIGNMENTS, MAX_TARGET_ENDPOINTS, newDirective } from '../trust/directive.js'
import { type Envelope, MAX_ENVELOPE_BYTES, serializeEnvelope, signEnvelope } from '../trust/envelope.js'
import { commit, Mutex, systemClock, type FleetClock, type WriteOptions } from '../fleet/common.js'
import { type Rollout, startedEndpoints } from './rollout.js'

const ACTION_BY_STATE: Readonly<Record<Rollout['state'], 'install' | 'rollback' | null>> = {
  running: 'install',
  paused: 'install',
  halted: 'install',
  completed: 'install',
  aborted: null,
  'rolled-back': 'rollback'
}

/**
 * The assignments of `rollouts`, each naming its rollout, in chunks of at most MAX_TARGET_ENDPOINTS
 * endpoints. The target tenant is the rollout's own target, not '': an agent checks that every
 * assignment's tenant lies inside the release's scope, and a release delegated to one customer
 * would make a '' assignment (and so the whole directive) fail that check. Which rollouts to pass
 * (e.g. leaving out completed ones whose release was superseded) is the caller's choice; more
 * assignments than one directive carries is BAD_ROLLOUT.
 */
export function assignmentsFor (rollouts: readonly Rollout[]): Assignment[] {
  const seen = new Set<string>()
  const out: Assignment[] = []
  for (const r of rollouts) {
    if (seen.has(r.id)) throw PatchswarmError.BAD_ARGUMENT(`rollout ${r.id} is listed twice`)
    seen.add(r.id)
    const action = ACTION_BY_STATE[r.state]
    if (action === null) continue
    const { risk: _, ...release } = r.spec.release
    const endpoints = startedEndpoints(r)
    for (let i = 0; i < endpoints.length; i += MAX_TARGET_ENDPOINTS) {
      out.push({
        target: { tenant: r.spec.target.tenant, endpoints: endpoints.slice(i, i + MAX_TARGET_ENDPOINTS) },
        release,
        action,
        // A deadline urges an install; a rollback follows the endpoint's windows like any job.
        ...(action === 'install' && r.spec.deadline !== undefined ? { deadline: r.spec.deadline } : {}),
        rollout: r.id
      })
    }
  }
  if (out.length > MAX_ASSIGNMENTS) {
    throw PatchswarmError.BAD_ROLLOUT(`${rollouts.length} rollouts need ${out.length} assignments, more than one directive carries (${MAX_ASSIGNMENTS}); leave finished rollouts out`)
  }
  return out
}

export interface DirectiveIssuerOptions {
  /** The organisation, as its root names it. */
  org: string
  /** The console key (the root's console role). */
  signer: Signer
  clock?: FleetClock
  /** How long a directive stays valid; the console must issue again before that. Default 7. */
  validDays?: number
  sublevelName?: string
}

const LATEST = 'latest'
const DAY = 24 * 60 * 60 * 1000
const MAX_VALID_DAYS = 366

export class DirectiveIssuer {
  readonly db: Database
  private readonly store: Sublevel
  private readonly org: string
  private readonly signer: Signer
  private readonly clock: FleetClock
  private readonly validDays: number
  private readonly lock = new Mutex()
  /** The latest directive once read (undefined: none issued); only this issuer writes it. */
  private cached: { latest: Envelope<DirectiveDocument> | undefined } | null = null

  constructor (db: Database, opts: DirectiveIssuerOptions) {
    if (!isSafeName(opts?.org)) throw PatchswarmError.BAD_ARGUMENT('org must be a safe name')
    if (typeof opts.signer?.sign !== 'function') throw PatchswarmError.BAD_ARGUMENT('a directive issuer needs the console signer')
    const validDays = opts.validDays ?? 7
    if (typeof validDays !== 'number' || !(validDays > 0 && validDays <= MAX_VALID_DAYS)) {
      throw PatchswarmError.BAD_ARGUMENT(`validDays must be more than 0 and at most ${MAX_VALID_DAYS}`)
    }
    this.db = db
    this.store = sublevel(db, opts.sublevelName ?? 'rollout-directives')
    this.org = opts.org
    this.signer = opts.signer
    this.clock = opts.clock ?? systemClock
    this.validDays = validDays
  }

  /** The directive issued last, if any. */
  async latest (): Promise<Envelope<DirectiveDocument> | undefined> {
    this.cached ??= { latest: await this.store.get(LATEST) as Envelope<DirectiveDocument> | undefined }
    return this.cached.latest
  }

  /**
   * Signs a directive with the next version (one more than the stored latest, so versions rise
   * across restarts) and stores it as the latest, with `wopts.extra` in the same batch. A directive
   * too big for an agent to accept (MAX_ENVELOPE_BYTES) is refused with BAD_DOCUMENT.
   */
  issue (assignments: readonly Assignment[], wopts: WriteOptions = {}): Promise<Envelope<DirectiveDocument>> {
    return this.lock.run(async () => {
      const previous = await this.latest()
      const now = this.clock()
      const doc = newDirective({
        org: this.org,
        version: (previous?.signed.version ?? 0) + 1,
        issued: now,
        expires: new Date(now.getTime() + this.validDays * DAY),
        assignments: [...assignments]
      })
      const envelope = await signEnvelope(doc, [this.signer])
      const size = serializeEnvelope(envelope).byteLength
      if (size > MAX_ENVELOPE_BYTES) {
        throw PatchswarmError.BAD_DOCUMENT(`directive v${doc.version} would be ${size} bytes, more than an agent accepts (${MAX_ENVELOPE_BYTES})`)
      }
      await commit(this.db, [{ type: 'put', sublevel: this.store, key: LATEST, value: envelope }], wopts.extra)
      this.cached = { latest: envelope }
      return envelope
    })
  }
}
