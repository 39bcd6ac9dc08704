// Roles, actions and the one permission question: may this admin do this action on this tenant
// path? A role binding grants its role on a subtree (segment-wise, via isWithinTenant: 'msp-1/cust'
// is not inside 'msp-1/customer-a'). Everything else (list filtering, admin management) is built
// on can() so there is exactly one place that decides.
import { checkTenantPath, isWithinTenant } from '../trust/fields.js'

export const ROLES = ['viewer', 'operator', 'release-manager', 'owner'] as const
export type Role = typeof ROLES[number]

export const ADMIN_ACTIONS = [
  'tenant.read', 'tenant.write',
  'endpoint.read', 'endpoint.approve',
  'rollout.read', 'rollout.write', 'rollout.abort',
  'release.approve',
  'admin.manage',
  'audit.read',
  'report.read',
  'webhook.write'
] as const
export type Action = typeof ADMIN_ACTIONS[number]

/** The permission table: for each action, the roles that have it. */
export const PERMISSIONS: Readonly<Record<Action, readonly Role[]>> = {
  'tenant.read': ['viewer', 'operator', 'release-manager', 'owner'],
  'tenant.write': ['operator', 'owner'],
  'endpoint.read': ['viewer', 'operator', 'release-manager', 'owner'],
  'endpoint.approve': ['operator', 'owner'],
  'rollout.read': ['viewer', 'operator', 'release-manager', 'owner'],
  'rollout.write': ['operator', 'release-manager', 'owner'],
  'rollout.abort': ['operator', 'release-manager', 'owner'],
  'release.approve': ['release-manager', 'owner'],
  'admin.manage': ['owner'],
  'audit.read': ['viewer', 'operator', 'release-manager', 'owner'],
  'report.read': ['viewer', 'operator', 'release-manager', 'owner'],
  'webhook.write': ['owner']
}

/** The same table the other way round: for each role, the actions it has. */
export const ROLE_ACTIONS: Readonly<Record<Role, ReadonlySet<Action>>> = {
  viewer: actionsOf('viewer'),
  operator: actionsOf('operator'),
  'release-manager': actionsOf('release-manager'),
  owner: actionsOf('owner')
}

function actionsOf (role: Role): ReadonlySet<Action> {
  return new Set(ADMIN_ACTIONS.filter((a) => PERMISSIONS[a].includes(role)))
}

export interface RoleBinding {
  role: Role
  /** A tenant path; the binding covers that subtree. '' is the whole organisation. */
  scope: string
}

export interface Principal {
  id: string
  bindings: readonly RoleBinding[]
}

export function isRole (r: unknown): r is Role {
  return typeof r === 'string' && (ROLES as readonly string[]).includes(r)
}

export function isAction (a: unknown): a is Action {
  return typeof a === 'string' && (ADMIN_ACTIONS as readonly string[]).includes(a)
}

export function roleHas (role: Role, action: Action): boolean {
  return ROLE_ACTIONS[role]?.has(action) ?? false
}

/** Does binding `b` (checked, since it may come from storage) grant `action` on its scope? */
function grants (b: RoleBinding, action: Action): boolean {
  return isRole(b.role) && roleHas(b.role, action) && typeof b.scope === 'string' && checkTenantPath(b.scope) === null
}

/** True if some binding's role has `action` and `path` lies within that binding's scope. */
export function can (admin: Principal | undefined, action: Action, path: string): boolean {
  if (!admin || !isAction(action) || typeof path !== 'string' || checkTenantPath(path) !== null) return false
  return admin.bindings.some((b) => grants(b, action) && isWithinTenant(path, b.scope))
}

/** The scopes in which `admin` has `action`, without those already covered by another one. */
export function scopesFor (admin: Principal | undefined, action: Action): string[] {
  if (!admin) return []
  const all = admin.bindings.filter((b) => grants(b, action)).map((b) => b.scope)
  return [...new Set(all)].filter((s, _, arr) => !arr.some((o) => o !== s && isWithinTenant(s, o))).sort()
}

/** True if `path` is a proper ancestor of a scope in which `admin` has `action` (so it can see part of it). */
export function reachesBelow (admin: Principal | undefined, action: Action, path: string): boolean {
  if (typeof path !== 'string' || checkTenantPath(path) !== null) return false
  return scopesFor(admin, action).some((s) => s !== path && isWithinTenant(s, path))
}

/** Keeps only the items whose tenant path lies within a scope where `admin` has `action`. */
export function filterByScope<T> (admin: Principal | undefined, action: Action, items: Iterable<T>, pathOf: (item: T) => string): T[] {
  const out: T[] = []
  for (const item of items) if (can(admin, action, pathOf(item))) out.push(item)
  return out
}
