// Swarm: hyperswarm transport, the patchswarm/1 wire protocol, the chunk scheduler, courtesy
// limits, byte accounting, and the node that composes them.
export * from './transport.js'
export * from './bitfield.js'
export { PeerChannel, PROTOCOL, PROTOCOL_VERSION, DEFAULT_LIMITS } from './protocol.js'
export type { ProtocolLimits, RemoteLimits, PeerChannelOptions, ChunkData, ChannelStats } from './protocol.js'
export * from './scheduler.js'
export * from './bans.js'
export * from './token-bucket.js'
export * from './ledbat.js'
export * from './courtesy-schedule.js'
export * from './courtesy.js'
export * from './accounting.js'
export * from './node.js'
