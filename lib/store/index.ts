export * from './db.js'
export * from './event-log.js'
