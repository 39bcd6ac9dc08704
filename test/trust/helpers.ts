// Shared pieces of the trust tests: deterministic keys, an adjustable clock, a real LevelDB in the
// test's folder, and an assertion that a rejection carries its code and left the database untouched.
import path from 'node:path'
import type { Test } from 'tap'
import { generateKeyPair, keySigner, type Signer } from '../../lib/crypto/keys.js'
import { openDatabase, sublevel, type Database } from '../../lib/store/db.js'
import {
  TrustedState, newRoot, newRelease, signEnvelope, type Envelope, type RootDocument, type ReleaseDocument,
  type NewReleaseOptions, type EnvelopeInput
} from '../../lib/trust/index.js'

export const T0 = new Date('2030-01-01T00:00:00Z')
export const DAY = 24 * 60 * 60 * 1000
export const LATER = new Date(T0.getTime() + 365 * DAY)
export const DIGEST_A = 'a'.repeat(64)
export const DIGEST_B = 'b'.repeat(64)

/** The same key for the same number in every run. */
export function key (n: number): Signer {
  return keySigner(generateKeyPair(Buffer.alloc(32, n)))
}

export class TestClock {
  constructor (public t = T0) {}
  now (): Date { return this.t }
  advance (ms: number): void { this.t = new Date(this.t.getTime() + ms) }
}

export async function openState (t: Test, clock = new TestClock()) {
  const location = path.join(t.testdir(), 'db')
  let db = await openDatabase(location)
  let state = new TrustedState({ db: sublevel(db, 'trust'), clock })
  await state.ready()
  t.teardown(async () => { await state.close(); await db.close() })
  state.beginCycle()
  return {
    get db () { return db },
    get state () { return state },
    clock,
    /** Closes and reopens the database and a fresh state over it. */
    async reopen () {
      await state.close()
      await db.close()
      db = await openDatabase(location)
      state = new TrustedState({ db: sublevel(db, 'trust'), clock })
      await state.ready()
      state.beginCycle()
      return state
    }
  }
}

export async function dump (db: Database): Promise<Array<[string, unknown]>> {
  return db.iterator().all()
}

/** Asserts the operation is refused with `code` and that the database is byte-for-byte as before. */
export async function rejects (t: Test, db: Database, op: () => Promise<unknown>, code: string): Promise<void> {
  const before = await dump(db)
  try {
    await op()
    t.fail(`expected ${code}, but it was accepted`)
  } catch (err) {
    t.equal((err as { code?: string }).code, code, (err as Error).message)
  }
  t.same(await dump(db), before, 'nothing was persisted')
}

/** The cast of an organisation: root, release, console and delegated keys. */
export const keys = {
  root: [key(1), key(2), key(3)],
  release: [key(11), key(12)],
  console: [key(21), key(22)],
  custA: [key(31)],
  other: key(99)
}

export function baseRoot (overrides: Partial<Parameters<typeof newRoot>[0]> = {}): RootDocument {
  return newRoot({
    org: 'acme',
    keys: { root: [keys.root[0]!.keyid], release: keys.release.map((k) => k.keyid), console: keys.console.map((k) => k.keyid) },
    thresholds: { root: 1, release: 2, console: 1 },
    delegations: [{ name: 'customer-a', scope: 'msp-1/customer-a', keys: keys.custA.map((k) => k.keyid) }],
    expires: LATER,
    ...overrides
  })
}

export async function signedRoot (doc: RootDocument, signers: Signer[] = [keys.root[0]!]): Promise<Envelope<RootDocument>> {
  return signEnvelope(doc, signers)
}

export function release (overrides: Partial<NewReleaseOptions> = {}): ReleaseDocument {
  return newRelease({
    name: 'firefox',
    packageVersion: '128.0.1',
    platform: 'linux-x64',
    risk: 'high',
    scope: '',
    manifest: { digest: DIGEST_A, size: 1234 },
    install: { type: 'exec', argv: ['install.sh', '--quiet'] },
    expires: LATER,
    ...overrides
  })
}

export async function signedRelease (doc: ReleaseDocument = release(), signers: Signer[] = keys.release): Promise<Envelope<ReleaseDocument>> {
  return signEnvelope(doc, signers)
}

/** A state with the base root pinned. */
export async function enrolled (t: Test, clock = new TestClock()) {
  const s = await openState(t, clock)
  await s.state.pinRoot(await signedRoot(baseRoot()))
  return s
}

export type { EnvelopeInput }
