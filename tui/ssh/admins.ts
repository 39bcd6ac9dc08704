// Finding the console admin who owns an offered SSH key. The fleet stores one public key line per
// admin and has no lookup by key, so this builds an index (algorithm + exact key blob → admin)
// from the admin list, once per SSH connection: a key revoked or a TOTP secret set takes effect
// on the next connection, and a connection's attempts see one consistent list.
import { PatchswarmError } from '../../lib/errors.js'
import type { Admin } from '../../lib/fleet/admins.js'
import type { SshAdmin, SshConnectionInfo, SshPublicKey } from './server.js'

/** The part of the fleet this needs: `fleet.admins` of a Fleet or Console. */
export interface AdminSource {
  list (): Promise<Admin[]>
}

/** Algorithm + the key blob; `ssh-rsa` stays `ssh-rsa` whatever hash (rsa-sha2-*) the client signs with. */
function indexKey (algo: string, blob: Buffer | string): string {
  return `${algo} ${typeof blob === 'string' ? blob : blob.toString('base64')}`
}

/** Parses `<type> <base64> [comment]`; undefined for a line that does not hold together. */
function keyOfLine (line: string): string | undefined {
  const m = /^(\S+) ([A-Za-z0-9+/]+={0,2})(?: .*)?$/.exec(line.trim())
  if (!m) return undefined
  const blob = Buffer.from(m[2]!, 'base64')
  const type = m[1]!
  if (blob.length < 4 || blob.readUInt32BE(0) !== type.length || blob.subarray(4, 4 + type.length).toString('latin1') !== type) return undefined
  return indexKey(type, blob)
}

type Index = Map<string, SshAdmin | 'ambiguous'>

export function buildAdminIndex (admins: readonly Admin[]): Index {
  const index: Index = new Map()
  for (const a of admins) {
    const k = keyOfLine(a.sshKey)
    if (!k) continue
    // One key held by two admins names nobody: refuse it rather than pick one.
    index.set(k, index.has(k) ? 'ambiguous' : { id: a.id, ...(a.totpSecret ? { totpSecret: a.totpSecret } : {}) })
  }
  return index
}

/**
 * A `resolveAdmin` for SshServer over the fleet's admins (`fleetAdminResolver(console.fleet.admins)`).
 * A key that two admins hold is refused with FORBIDDEN (the server puts the message in the audit).
 */
export function fleetAdminResolver (admins: AdminSource) {
  const perConnection = new WeakMap<SshConnectionInfo, Promise<Index>>()
  return async (key: SshPublicKey, conn: SshConnectionInfo): Promise<SshAdmin | null> => {
    let index = perConnection.get(conn)
    if (!index) {
      index = admins.list().then(buildAdminIndex)
      perConnection.set(conn, index)
      index.catch(() => perConnection.delete(conn)) // a failed read is retried on the next attempt
    }
    const found = (await index).get(indexKey(key.algo, key.data))
    if (found === 'ambiguous') throw PatchswarmError.FORBIDDEN('this key belongs to more than one admin')
    return found ?? null
  }
}
