// Policies: maintenance windows, risk-class SLAs, approval rules and courtesy limits, resolved down
// the tenant tree, and their LevelDB store.
export * from './windows.js'
export * from './policy.js'
export * from './store.js'
