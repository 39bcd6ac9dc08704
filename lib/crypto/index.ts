export * from './keys.js'
export * from './hash.js'
export * from './canonical.js'
export * from './keyfile.js'
