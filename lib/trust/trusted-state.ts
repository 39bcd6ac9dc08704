// What one party (an agent, usually) trusts right now: the pinned and rotated root, the releases it
// has verified, the newest directive. Like python-tuf's TrustedMetadataSet and Uptane's director
// checks. Everything is verified in full before one atomic LevelDB batch persists it; rejected
// metadata never touch the database. Expiry is judged against one clock reading per cycle.
import { PatchswarmError } from '../errors.js'
import type { Database, Sublevel } from '../store/db.js'
import { type Envelope, parseEnvelope, serializeEnvelope, envelopeHash } from './envelope.js'
import { type RootDocument, parseRoot } from './root.js'
import { type ReleaseDocument, parseRelease, platformMatches, releaseKey } from './release.js'
import { type DirectiveDocument, type Assignment, type EndpointIdentity, parseDirective, assignmentApplies } from './directive.js'
import { isWithinTenant } from './fields.js'
import {
  type ReleaseSigner, verifySelfSignedRoot, verifyRootStep, authoriseRelease, authoriseDirective,
  checkNotRolledBack, checkNotExpired
} from './verify.js'
import { deepFreeze } from '../freeze.js'

export interface Clock { now (): Date }

export type EnvelopeInput = Envelope | Uint8Array | string

export interface VerifiedRelease {
  readonly release: ReleaseDocument
  readonly envelope: Envelope<ReleaseDocument>
  readonly envelopeHash: string
  readonly signer: ReleaseSigner
}

export interface VerifiedAssignment extends Assignment {
  readonly verifiedRelease: VerifiedRelease
}

export interface VerifiedDirective {
  readonly directive: DirectiveDocument
  readonly envelope: Envelope<DirectiveDocument>
  readonly envelopeHash: string
  /** The assignments that apply (all of them, or the endpoint's), each with its verified release. */
  readonly assignments: readonly VerifiedAssignment[]
}

export interface TrustedStateOptions {
  /** Where trusted metadata live; give it a sublevel of its own. */
  db: Database | Sublevel
  clock?: Clock
}

type BatchOp = { type: 'put', key: string, value: unknown } | { type: 'del', key: string }

// The few LevelDB calls used here; a Database and a Sublevel both have them.
interface Store {
  get (key: string): Promise<unknown>
  batch (ops: BatchOp[]): Promise<void>
  iterator (range: { gte: string, lt: string }): AsyncIterable<[string, unknown]>
}

const ROOT_KEY = 'root'
const DIRECTIVE_KEY = 'directive'
const RELEASE_PREFIX = 'release/'
const RELEASE_END = 'release0' // '0' sorts right after '/'

export class TrustedState {
  private readonly store: Store
  private readonly clock: Clock
  private cycleNow: Date | null = null
  private trustedRoot: { root: RootDocument, envelope: Envelope<RootDocument> } | null = null
  private trustedDirective: VerifiedDirective | null = null
  private readonly releasesByKey = new Map<string, VerifiedRelease>()
  private readonly releasesByHash = new Map<string, VerifiedRelease>()
  private opening: Promise<void> | null = null
  private closed = false
  private queue: Promise<unknown> = Promise.resolve()

  constructor (opts: TrustedStateOptions) {
    this.store = opts.db as unknown as Store
    this.clock = opts.clock ?? { now: () => new Date() }
  }

  /** Loads what an earlier run trusted. Idempotent. */
  ready (): Promise<void> {
    this.opening ??= this.load()
    return this.opening
  }

  /** Releases nothing but this object's view; the database belongs to whoever opened it. */
  async close (): Promise<void> {
    this.closed = true
    await this.queue.catch(() => {})
  }

  /** Takes the one clock reading that every expiry decision uses until the next cycle. */
  beginCycle (): Date {
    this.cycleNow = new Date(this.clock.now().getTime())
    return new Date(this.cycleNow.getTime())
  }

  get root (): RootDocument | null { return this.trustedRoot?.root ?? null }
  get rootEnvelope (): Envelope<RootDocument> | null { return this.trustedRoot?.envelope ?? null }
  get directive (): VerifiedDirective | null { return this.trustedDirective }
  releases (): VerifiedRelease[] { return [...this.releasesByKey.values()] }
  releaseByHash (hash: string): VerifiedRelease | null { return this.releasesByHash.get(hash) ?? null }

  /** Enrollment: trust this root on first use (it came out of band). It must be self-signed. */
  pinRoot (input: EnvelopeInput): Promise<RootDocument> {
    return this.exclusive(async () => {
      const envelope = toEnvelope(input)
      const root = verifySelfSignedRoot(envelope)
      // An old root may be pinned and then walked forward, so its expiry is judged later.
      if (this.trustedRoot !== null) {
        if (envelopeHash(this.trustedRoot.envelope) === envelopeHash(envelope)) return this.trustedRoot.root
        throw PatchswarmError.ALREADY_EXISTS(`a root of ${this.trustedRoot.root.org} is already pinned; use updateRoot`)
      }
      const pinned = deepFreeze({ root, envelope: envelope as Envelope<RootDocument> })
      await this.store.batch([{ type: 'put', key: ROOT_KEY, value: { envelope: pinned.envelope } }])
      this.trustedRoot = pinned
      return root
    })
  }

  updateRoot (input: EnvelopeInput): Promise<RootDocument> {
    return this.updateRoots([input])
  }

  /**
   * Walks the chain N→N+1→…; only the last root must be unexpired. Releases and the directive that
   * the new root no longer authorises are dropped with it (as TUF does after a key rotation).
   */
  updateRoots (inputs: EnvelopeInput[]): Promise<RootDocument> {
    return this.exclusive(async () => {
      const now = this.now()
      let current = this.requireRoot()
      let last: Envelope<RootDocument> | null = null
      for (const input of inputs) {
        const envelope = toEnvelope(input)
        const next = verifyRootStep(current.root, envelope)
        last = envelope as Envelope<RootDocument>
        current = { root: next, envelope: last }
      }
      if (last === null) return current.root
      checkNotExpired(`root v${current.root.version}`, current.root.expires, now)

      const ops: BatchOp[] = [{ type: 'put', key: ROOT_KEY, value: { envelope: last } }]
      const dropped: VerifiedRelease[] = []
      for (const [key, r] of this.releasesByKey) {
        if (!stillAuthorised(() => authoriseRelease(current.root, r.envelope, r.release))) {
          ops.push({ type: 'del', key: RELEASE_PREFIX + key })
          dropped.push(r)
        }
      }
      const d = this.trustedDirective
      const dropDirective = d !== null && !stillAuthorised(() => authoriseDirective(current.root, d.envelope, d.directive.version))
      if (dropDirective) ops.push({ type: 'del', key: DIRECTIVE_KEY })

      await this.store.batch(ops)
      this.trustedRoot = deepFreeze(current)
      for (const r of dropped) this.forgetRelease(r)
      if (dropDirective) {
        this.trustedDirective = null
      } else if (d !== null && dropped.length > 0) {
        const gone = new Set(dropped.map((r) => r.envelopeHash))
        this.trustedDirective = deepFreeze({ ...d, assignments: d.assignments.filter((a) => !gone.has(a.verifiedRelease.envelopeHash)) })
      }
      return current.root
    })
  }

  /** A release this endpoint (of `platform`) may install, once a directive assigns it. */
  verifyRelease (input: EnvelopeInput, opts: { platform: string }): Promise<VerifiedRelease> {
    return this.exclusive(async () => {
      const now = this.now()
      const { root } = this.requireFreshRoot(now)
      const envelope = toEnvelope(input)
      const release = parseRelease(envelope.signed)
      const label = `release ${release.name} ${release.packageVersion} (${release.platform})`
      const signer = authoriseRelease(root, envelope, release)
      const key = releaseKey(release)
      const trusted = this.releasesByKey.get(key) ?? null
      checkNotRolledBack(label, trusted && { version: trusted.release.version, envelope: trusted.envelope }, { version: release.version, envelope })
      checkNotExpired(label, release.expires, now)
      if (!platformMatches(release.platform, opts.platform)) {
        throw PatchswarmError.WRONG_PLATFORM(`${label} is not for platform ${opts.platform}`)
      }
      const signed = envelope as Envelope<ReleaseDocument>
      const verified = deepFreeze({ release, envelope: signed, envelopeHash: envelopeHash(signed), signer })
      await this.store.batch([{ type: 'put', key: RELEASE_PREFIX + key, value: { envelope: signed } }])
      if (trusted) this.forgetRelease(trusted)
      this.rememberRelease(verified)
      return verified
    })
  }

  /**
   * A console directive, checked against the releases this state verified: each assignment must name
   * one of them by manifest digest AND release envelope hash (mix-and-match protection), and target
   * tenants inside that release's scope. With `endpoint`, only the assignments for it are checked
   * and returned; `releases` narrows which verified releases may be named.
   */
  verifyDirective (input: EnvelopeInput, opts: { releases?: readonly VerifiedRelease[], endpoint?: EndpointIdentity } = {}): Promise<VerifiedDirective> {
    return this.exclusive(async () => {
      const now = this.now()
      const { root } = this.requireFreshRoot(now)
      const envelope = toEnvelope(input)
      const directive = parseDirective(envelope.signed)
      authoriseDirective(root, envelope, directive.version)
      if (directive.org !== root.org) throw PatchswarmError.BAD_DOCUMENT(`directive.org: ${directive.org} is not ${root.org}`)
      const trusted = this.trustedDirective
      checkNotRolledBack('directive', trusted && { version: trusted.directive.version, envelope: trusted.envelope }, { version: directive.version, envelope })
      checkNotExpired(`directive v${directive.version}`, directive.expires, now)

      const allowed = opts.releases ? new Set(opts.releases.map((r) => r.envelopeHash)) : null
      const endpoint = opts.endpoint
      const assignments: VerifiedAssignment[] = []
      const applies: number[] = []
      directive.assignments.forEach((a, i) => {
        if (endpoint && !assignmentApplies(a, endpoint, platformMatches)) return
        assignments.push({ ...a, verifiedRelease: this.matchRelease(a, `directive.assignments[${i}]`, allowed, now) })
        applies.push(i)
      })

      const signed = envelope as Envelope<DirectiveDocument>
      const verified = deepFreeze({ directive, envelope: signed, envelopeHash: envelopeHash(signed), assignments })
      await this.store.batch([{ type: 'put', key: DIRECTIVE_KEY, value: { envelope: signed, applies } }])
      this.trustedDirective = verified
      return verified
    })
  }

  private matchRelease (a: Assignment, at: string, allowed: Set<string> | null, now: Date): VerifiedRelease {
    const ref = a.release
    const r = this.releasesByHash.get(ref.envelopeHash)
    const same = r !== undefined && (allowed === null || allowed.has(r.envelopeHash)) &&
      r.release.manifest.digest === ref.manifest && r.release.name === ref.name &&
      r.release.packageVersion === ref.packageVersion && r.release.platform === ref.platform
    if (!same) {
      throw PatchswarmError.UNRELEASED(`${at}: ${ref.name} ${ref.packageVersion} with manifest ${ref.manifest.slice(0, 16)}… and envelope ${ref.envelopeHash.slice(0, 16)}… is not a verified release`)
    }
    checkNotExpired(`${at}: release ${ref.name} ${ref.packageVersion}`, r.release.expires, now)
    if (!isWithinTenant(a.target.tenant, r.release.scope)) {
      throw PatchswarmError.OUTSIDE_DELEGATION(`${at}: tenant '${a.target.tenant}' is outside the release's scope '${r.release.scope}'`)
    }
    return r
  }

  private now (): Date {
    if (this.cycleNow === null) throw PatchswarmError.BAD_ARGUMENT('call beginCycle() before verifying metadata: expiry needs the cycle\'s clock reading')
    return this.cycleNow
  }

  private requireRoot () {
    if (this.trustedRoot === null) throw PatchswarmError.NOT_FOUND('no root is pinned; enroll with pinRoot first')
    return this.trustedRoot
  }

  private requireFreshRoot (now: Date) {
    const t = this.requireRoot()
    checkNotExpired(`trusted root v${t.root.version}`, t.root.expires, now)
    return t
  }

  private rememberRelease (r: VerifiedRelease): void {
    this.releasesByKey.set(releaseKey(r.release), r)
    this.releasesByHash.set(r.envelopeHash, r)
  }

  private forgetRelease (r: VerifiedRelease): void {
    this.releasesByKey.delete(releaseKey(r.release))
    this.releasesByHash.delete(r.envelopeHash)
  }

  // One operation at a time: each reads trusted versions, then writes; interleaving would race.
  private exclusive<T> (fn: () => Promise<T>): Promise<T> {
    const run = async () => {
      if (this.closed) throw PatchswarmError.CLOSED('the trusted state is closed')
      await this.ready()
      return fn()
    }
    const result = this.queue.then(run, run)
    this.queue = result.catch(() => {})
    return result
  }

  // Our own database held only verified documents; their shapes are checked again in case it was damaged.
  private async load (): Promise<void> {
    const root = await this.store.get(ROOT_KEY) as { envelope?: Envelope } | undefined
    if (root !== undefined) {
      const envelope = toEnvelope(root.envelope) as Envelope<RootDocument>
      this.trustedRoot = deepFreeze({ root: parseRoot(envelope.signed), envelope })
    }
    for await (const [, value] of this.store.iterator({ gte: RELEASE_PREFIX, lt: RELEASE_END })) {
      const envelope = toEnvelope((value as { envelope?: Envelope })?.envelope) as Envelope<ReleaseDocument>
      const release = parseRelease(envelope.signed)
      const signer = this.trustedRoot ? authoriseRelease(this.trustedRoot.root, envelope, release) : { role: 'release' as const }
      this.rememberRelease(deepFreeze({ release, envelope, envelopeHash: envelopeHash(envelope), signer }))
    }
    const stored = await this.store.get(DIRECTIVE_KEY) as { envelope?: Envelope, applies?: number[] } | undefined
    if (stored !== undefined) {
      const envelope = toEnvelope(stored.envelope) as Envelope<DirectiveDocument>
      const directive = parseDirective(envelope.signed)
      const assignments = (stored.applies ?? []).flatMap((i) => {
        const a = directive.assignments[i]
        const r = a && this.releasesByHash.get(a.release.envelopeHash)
        return a && r ? [{ ...a, verifiedRelease: r }] : []
      })
      this.trustedDirective = deepFreeze({ directive, envelope, envelopeHash: envelopeHash(envelope), assignments })
    }
  }
}

// An envelope given as a value is copied through its canonical bytes: what we verify and keep can
// then not be changed behind our back by whoever holds the original object.
function toEnvelope (input: EnvelopeInput | undefined): Envelope {
  if (typeof input === 'string' || input instanceof Uint8Array) return parseEnvelope(input)
  let bytes: Buffer
  try {
    bytes = serializeEnvelope(input as Envelope)
  } catch (err) {
    throw PatchswarmError.BAD_ENVELOPE('envelope is not JSON: ' + (err as Error).message, err)
  }
  return parseEnvelope(bytes)
}

function stillAuthorised (check: () => unknown): boolean {
  try {
    check()
    return true
  } catch {
    return false
  }
}
