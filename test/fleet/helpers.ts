import path from 'node:path'
import type { Test } from 'tap'
import { Fleet } from '../../lib/fleet/index.js'

export { sshKey } from '../../fixtures/org.js'

/** A clock that moves one second per call, starting at a fixed instant. */
export function steppingClock (start = Date.parse('2030-01-01T00:00:00Z')): () => Date {
  let t = start
  return () => new Date((t += 1000))
}

export async function openFleet (t: Test, dir = path.join(t.testdir(), 'db')): Promise<Fleet> {
  const fleet = await Fleet.open(dir, { clock: steppingClock() })
  t.teardown(() => fleet.close())
  return fleet
}

/** Resolves to the error code the promise rejects with (fails the test if it resolves). */
export async function codeOf (p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p
    return undefined
  } catch (err) {
    return (err as { code?: string }).code ?? 'NO_CODE'
  }
}
