// The shipped extensions (extensions/) in a real extension host, reaching a real console through
// the in-process admin API as one admin, with a real LevelDB for globalState.
import http from 'node:http'
import path from 'node:path'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'
import { openDatabase, type Database } from '../../lib/store/db.js'
import type { Envelope } from '../../lib/trust/envelope.js'
import type { ReleaseDocument } from '../../lib/trust/release.js'
import type { JobState } from '../../lib/report/event.js'
import type { SimEndpoint } from '../../fixtures/console-org.js'
import { OWNER } from '../../fixtures/console-org.js'
import { inProcessAccess } from '../../tui/extensions/access.js'
import { ExtensionHost, type ExtensionHostOptions, type LogEntry } from '../../tui/extensions/host.js'
import { MemoryWindow } from '../../tui/extensions/window.js'
import type { World } from '../console/helpers.js'

export const SHIPPED = path.resolve(import.meta.dirname, '../../extensions')
export const MIN = 60_000

export interface Session {
  host: ExtensionHost
  window: MemoryWindow
  db: Database
  log: LogEntry[]
  /** Closes the host, then its database (what a console session does when it ends). */
  close (): Promise<void>
}

/**
 * A console session of `admin` with the shipped extensions. `dbDir` holds globalState: pass the
 * same folder again to restart the session with its state.
 */
export async function session (t: Test, w: World, admin: string, opts: Partial<ExtensionHostOptions> & { dbDir: string }): Promise<Session> {
  const { dbDir, ...rest } = opts
  const db = await openDatabase(dbDir)
  const window = new MemoryWindow()
  const log: LogEntry[] = []
  const host = new ExtensionHost({ roots: [SHIPPED], window, db, access: inProcessAccess(w.api, admin), log: (e) => log.push(e), ...rest })
  let closing: Promise<void> | undefined
  const close = () => { closing ??= host.close().then(() => db.close()); return closing }
  t.teardown(close)
  await host.ready()
  return { host, window, db, log, close }
}

/** A release added by the owner and approved for `tenant`. */
export async function approvedRelease (w: World, tenant: string, name: string, version: string, risk: 'critical' | 'high' = 'high'): Promise<{ release: Envelope<ReleaseDocument>, hash: string }> {
  const release = await w.org.release(name, version, { risk })
  const view = await w.api.releases.add(OWNER, release)
  await w.api.releases.approve(OWNER, view.hash, tenant)
  return { release, hash: view.hash }
}

/** A one-phase rollout of `hash` to every endpoint under `tenant`. */
export async function rolloutTo (w: World, admin: string, id: string, hash: string, tenant: string, errorThreshold = 1): Promise<void> {
  await w.api.rollouts.create(admin, {
    id,
    release: hash,
    target: { tenant },
    phases: [{ name: 'all', successThreshold: 1, errorThreshold, minSoakMinutes: 0 }]
  })
}

/** Each endpoint reports downloading, then `state`; fails the test unless every event is accepted. */
export async function report (t: Test, w: World, eps: SimEndpoint[], release: Envelope<ReleaseDocument>, rollout: string, state: JobState, extra: { code?: string, reason?: string, attempt?: number } = {}): Promise<void> {
  const events = []
  for (const ep of eps) {
    events.push(await ep.job(release, 'downloading', w.clock.now(), { rollout, ...(extra.attempt ? { attempt: extra.attempt } : {}) }))
    events.push(await ep.job(release, state, w.clock.now(), { rollout, ...extra }))
  }
  const result = await w.console.ingest(events)
  await w.console.settled()
  t.same(result.results.filter((r) => r.status !== 'accepted'), [], `${eps.length} × ${state}: every event accepted`)
}

export async function waitFor (what: string, cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms
  while (!await cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

export interface Received {
  headers: http.IncomingHttpHeaders
  body: string
  /** What the server answered. */
  status: number
}

/** A real HTTP server on 127.0.0.1; `answer` decides each response's status (default 204). */
export async function receiver (t: Test, answer: (r: Omit<Received, 'status'>, n: number) => number = () => 204): Promise<{ url: string, received: Received[] }> {
  const received: Received[] = []
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const r = { headers: req.headers, body: Buffer.concat(chunks).toString('utf8') }
      const status = answer(r, received.length)
      received.push({ ...r, status })
      res.statusCode = status
      res.end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/tickets`, received }
}

/** RFC 4180: rows of fields (quoted fields may hold commas, quotes and line ends). */
export function parseCsv (text: string): string[][] {
  const rows: string[][] = []
  let row: string[] = []
  let field = ''
  let quoted = false
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++ } else if (c === '"') quoted = false
      else field += c
    } else if (c === '"') quoted = true
    else if (c === ',') { row.push(field); field = '' } else if (c === '\r' && text[i + 1] === '\n') { row.push(field); rows.push(row); row = []; field = ''; i++ } else if (c === '\n') { row.push(field); rows.push(row); row = []; field = '' } else field += c
  }
  if (field !== '' || row.length > 0) { row.push(field); rows.push(row) }
  return rows
}
