// Rollouts: spec and state machine, the engine that advances phases, their store, and directives.
export * from './rollout.js'
export * from './engine.js'
export * from './store.js'
export * from './directives.js'
