// The public API of patchswarm. Everything the CLI, the agent and the TUI use is exported here.
export * from './errors.js'
export * from './crypto/index.js'
export * from './store/index.js'
export * from './content/index.js'
export * from './trust/index.js'
export * from './swarm/index.js'
export * from './fleet/index.js'
