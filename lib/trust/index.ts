// Trust: signed envelopes, the root/release/directive documents, and the trusted state that walks
// root rotations and refuses rollback, expiry, wrong platforms and mix-and-match.
export * from './envelope.js'
export {
  SPEC_VERSION, type RoleKeys, isWithinTenant, checkTenantPath, isExpired
} from './fields.js'
export * from './root.js'
export * from './install-spec.js'
export * from './release.js'
export * from './directive.js'
export * from './verify.js'
export * from './trusted-state.js'
export * from './certificate.js'
