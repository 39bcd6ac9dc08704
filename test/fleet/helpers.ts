import path from 'node:path'
import { randomBytes } from 'node:crypto'
import type { Test } from 'tap'
import { Fleet } from '../../lib/fleet/index.js'

/** A well-formed ssh-ed25519 public key line (random key bytes). */
export function sshKey (comment = 'admin@test'): string {
  const type = Buffer.from('ssh-ed25519')
  const len = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32BE(n); return b }
  const blob = Buffer.concat([len(type.length), type, len(32), randomBytes(32)])
  return `ssh-ed25519 ${blob.toString('base64')} ${comment}`
}

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
