// The root document: an organisation's keys, its three top-level roles (root, release, console)
// and the tenant subtrees it delegates release authority for. Keyids are the public keys in hex.
import { z } from 'zod'
import { PatchswarmError } from '../errors.js'
import { keyIdOf } from '../crypto/keys.js'
import {
  SPEC_VERSION, keyid, metadataVersion, timestamp, safeName, tenantPath, roleKeys,
  type RoleKeys, checkRole, parseShape, toTimestamp
} from './fields.js'

export const ROLE_NAMES = ['root', 'release', 'console'] as const
export type RoleName = typeof ROLE_NAMES[number]
export const MAX_DELEGATIONS = 256

// A role (keys and threshold) with a name and the tenant subtree it may release for.
const delegation = z.strictObject({ name: safeName, scope: tenantPath, ...roleKeys.shape })

export const rootSchema = z.strictObject({
  _type: z.literal('root'),
  spec: z.literal(SPEC_VERSION),
  version: metadataVersion,
  expires: timestamp,
  org: safeName,
  keys: z.record(keyid, z.strictObject({ algorithm: z.literal('ed25519') })),
  roles: z.strictObject({ root: roleKeys, release: roleKeys, console: roleKeys }),
  delegations: z.array(delegation).max(MAX_DELEGATIONS)
})

export type RootDocument = z.output<typeof rootSchema>
export type Delegation = z.output<typeof delegation>

/** Shape, then meaning: thresholds reachable, keys declared, delegations distinct and scoped. */
export function parseRoot (value: unknown): RootDocument {
  const root = parseShape(rootSchema, value, 'root')
  for (const name of ROLE_NAMES) checkRole(root.roles[name], `root.roles.${name}`, root.keys)
  const names = new Set<string>()
  root.delegations.forEach((d, i) => {
    const at = `root.delegations[${i}]`
    checkRole(d, at, root.keys)
    if (d.scope === '') throw PatchswarmError.BAD_DOCUMENT(`${at}.scope: a delegation covers a tenant subtree, not the whole organisation (that is the release role)`)
    if (names.has(d.name)) throw PatchswarmError.BAD_DOCUMENT(`${at}.name: ${d.name} is delegated twice`)
    names.add(d.name)
  })
  return root
}

type KeyLike = string | Uint8Array

export interface DelegationInit {
  name: string
  scope: string
  keys: KeyLike[]
  threshold?: number
}

export interface NewRootOptions {
  org: string
  /** Keys of each role, as keyids (hex public keys) or public keys. */
  keys: Record<RoleName, KeyLike[]>
  /** Defaults to 1 for every role. */
  thresholds?: Partial<Record<RoleName, number>>
  delegations?: DelegationInit[]
  expires: Date | string
  version?: number
}

/** Builds (and validates) a first root, version 1 unless told otherwise. Sign it with the root keys. */
export function newRoot (opts: NewRootOptions): RootDocument {
  const roles = {} as Record<RoleName, RoleKeys>
  for (const name of ROLE_NAMES) {
    roles[name] = { keyids: opts.keys[name].map(toKeyId), threshold: opts.thresholds?.[name] ?? 1 }
  }
  const delegations = (opts.delegations ?? []).map(toDelegation)
  return parseRoot({
    _type: 'root',
    spec: SPEC_VERSION,
    version: opts.version ?? 1,
    expires: toTimestamp(opts.expires),
    org: opts.org,
    keys: keysOf(roles, delegations),
    roles,
    delegations
  })
}

export interface RootChanges {
  keys?: Partial<Record<RoleName, KeyLike[]>>
  thresholds?: Partial<Record<RoleName, number>>
  delegations?: DelegationInit[]
  expires?: Date | string
}

/**
 * The next root: version + 1 with the given changes. It must be signed by a threshold of the
 * previous root's root role AND of its own root role before an agent accepts it.
 */
export function rotateRoot (prev: RootDocument, changes: RootChanges = {}): RootDocument {
  const roles = {} as Record<RoleName, RoleKeys>
  for (const name of ROLE_NAMES) {
    const keyids = changes.keys?.[name]?.map(toKeyId) ?? prev.roles[name].keyids
    roles[name] = { keyids, threshold: changes.thresholds?.[name] ?? prev.roles[name].threshold }
  }
  const delegations = changes.delegations ? changes.delegations.map(toDelegation) : prev.delegations
  return parseRoot({
    ...prev,
    version: prev.version + 1,
    expires: changes.expires ? toTimestamp(changes.expires) : prev.expires,
    keys: keysOf(roles, delegations),
    roles,
    delegations
  })
}

function toKeyId (k: KeyLike): string {
  return typeof k === 'string' ? k : keyIdOf(k)
}

function toDelegation (d: DelegationInit): Delegation {
  return { name: d.name, scope: d.scope, keyids: d.keys.map(toKeyId), threshold: d.threshold ?? 1 }
}

function keysOf (roles: Record<RoleName, RoleKeys>, delegations: Delegation[]): RootDocument['keys'] {
  const keys: RootDocument['keys'] = {}
  for (const role of [...Object.values(roles), ...delegations]) {
    for (const k of role.keyids) keys[k] = { algorithm: 'ed25519' }
  }
  return keys
}
