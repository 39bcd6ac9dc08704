// The console node, its admin API (in-process and over a Unix socket) and its link to agents.
export * from './console.js'
export * from './api.js'
export * from './rpc.js'
export * from './link.js'
export * from './console-swarm.js'
