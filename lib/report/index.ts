// Reporting: signed agent events, their ingestion into the event log, views, KPIs, exports,
// evidence bundles and webhooks.
export * from './event.js'
export * from './records.js'
export * from './facts.js'
export * from './ingest.js'
export * from './views.js'
export * from './kpis.js'
export * from './export.js'
export * from './evidence.js'
export * from './webhooks.js'
export * from './outbox.js'
