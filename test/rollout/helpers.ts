// Shared pieces of the rollout tests: deterministic endpoint keys, a release reference, a spec
// builder, an adjustable clock and a real LevelDB in the test's folder.
import path from 'node:path'
import { createHash } from 'node:crypto'
import type { Test } from 'tap'
import { openDatabase, type Database } from '../../lib/store/db.js'
import type { TargetEndpoint, RolloutSpecInput } from '../../lib/rollout/index.js'

export const T0 = new Date('2030-01-01T00:00:00Z')
export const MINUTE = 60_000
export const CUSTOMER = 'msp-1/acme'

/** The key id of endpoint number n: the same in every run, valid in shape. */
export function endpointKey (n: number): string {
  return createHash('sha256').update(`endpoint ${n}`).digest('hex')
}

/** `count` endpoints spread over the groups of CUSTOMER, round robin. */
export function endpoints (count: number, groups = ['sales', 'dev', 'ops']): TargetEndpoint[] {
  return Array.from({ length: count }, (_, i) => ({ keyid: endpointKey(i), tenant: `${CUSTOMER}/${groups[i % groups.length]}` }))
}

export const RELEASE = {
  name: 'firefox',
  packageVersion: '128.0.1',
  platform: 'linux-x64',
  manifest: 'a'.repeat(64),
  envelopeHash: 'e'.repeat(64),
  risk: 'high' as const
}

/** pilot 10 % → early 50 % → broad (the rest): success 0.8, error 0.2, soak 60 min unless overridden. */
export function spec (overrides: Partial<RolloutSpecInput> = {}): RolloutSpecInput {
  return {
    id: 'ff-128',
    release: RELEASE,
    target: { tenant: CUSTOMER },
    phases: [
      { name: 'pilot', select: { percent: 10 }, successThreshold: 0.8, errorThreshold: 0.2, minSoakMinutes: 60 },
      { name: 'early', select: { percent: 50 }, successThreshold: 0.8, errorThreshold: 0.2, minSoakMinutes: 60 },
      { name: 'broad', successThreshold: 0.8, errorThreshold: 0.2, minSoakMinutes: 0 }
    ],
    ...overrides
  }
}

export class TestClock {
  constructor (public t = T0) {}
  readonly now = (): Date => this.t
  advance (ms: number): void { this.t = new Date(this.t.getTime() + ms) }
}

export async function openDb (t: Test, location = path.join(t.testdir(), 'db')): Promise<{ db: Database, location: string }> {
  const db = await openDatabase(location)
  t.teardown(() => db.close())
  return { db, location }
}

/** Resolves to the error code `fn` throws or rejects with, undefined when it succeeds. */
export async function codeOf (fn: () => unknown): Promise<string | undefined> {
  try {
    await fn()
    return undefined
  } catch (err) {
    return (err as { code?: string }).code ?? 'NO_CODE'
  }
}
