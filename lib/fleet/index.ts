// The fleet: tenant tree, admins and RBAC, audit log, and the Fleet facade over them.
export * from './common.js'
export * from './tenants.js'
export * from './rbac.js'
export * from './admins.js'
export * from './audit.js'
export * from './gate.js'
export * from './fleet.js'
