// The endpoints view of the console app with 10 000 endpoints while 200 events a second stream in,
// rendered to a headless terminal (tui/ui/headless.ts, 160×48), against the same view with nothing
// streaming in.
//
// In this process: a console (its LevelDB in a temporary folder) with 10 000 endpoints enrolled
// through the real token path (msp-1 › 4 customers › 5 groups × 500), a release, a rollout over
// all of them; the app on a headless screen through inProcessAccess, on `:endpoints`. Frames are
// driven at 10 per second (the screen's own renders are pushed out of the way), and each frame
// moves the cursor one row, so every frame redraws the table, as when an admin scrolls.
//
//   baseline  BASELINE_SECONDS (SECONDS / 4, at least 2): no events; the table only scrolls
//   ours      SECONDS (20): the same, while simulated endpoints sign 200 events a second (job
//             progress and transfer reports of random endpoints, 10 every 50 ms) that go through
//             console.ingest, the report views, endpoints.list$ (changed rows only, at most every
//             500 ms) into the table
//
//   frames  = frames rendered in `ours`          p95_ms = 95th percentile of one frame's render
//   ratio   = p95_ms / baseline_p95_ms           (render = the table's rows for the window, the
//   rss_mb  = highest RSS seen, MiB               screen's diff, the bytes to the terminal)
//   sorted_filtered_p95_ms: the same stream with the table sorted by host and `/customer-1` on
//             (BASELINE_SECONDS more): every update re-sorts and re-filters 10 000 rows
//   lag_p95_ms: how late frames started (the event loop busy with the console's own work)
//   updates: how many endpoint updates reached the table; rows_changed: rows they carried
// Goal: p95_ms ≤ 50.
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { headless, KEY } from '../tui/ui/headless.js'
import { inProcessAccess } from '../tui/extensions/access.js'
import { createTuiApp } from '../tui/app/index.js'
import { AdminApi } from '../lib/console/api.js'
import { makeConsoleOrg, openConsole, OWNER, SimEndpoint } from '../fixtures/console-org.js'
import type { SignedEvent } from '../lib/report/event.js'
import type { BenchResult } from './run.js'

export const summary = { figure: 'p95_ms', baseline: 'baseline_p95_ms', goal: 'p95_ms <= 50' }

const ENDPOINTS = 10_000
const EVENTS_PER_S = 200
const TICK_MS = 50
const FRAME_MS = 100

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits
const pct = (sorted: number[], p: number) => sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!

export async function run (): Promise<BenchResult> {
  const seconds = Math.max(1, Number(process.env.SECONDS ?? 20))
  const baselineSeconds = Math.max(3, Number(process.env.BASELINE_SECONDS ?? seconds / 4))
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ps-bench-tui-'))
  const org = await makeConsoleOrg()
  const c = await openConsole(org, path.join(dir, 'console'))
  let rss = 0
  const sampleRss = () => { rss = Math.max(rss, process.memoryUsage().rss) }
  try {
    const api = new AdminApi(c)
    await c.fleet.bootstrapOwner({ id: OWNER, sshKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJlbmNoYmVuY2hiZW5jaGJlbmNoYmVuY2hiZW5jaA bench' })
    await api.fleet.createTenant(OWNER, { parent: '', name: 'msp-1', kind: 'msp' })
    const eps: SimEndpoint[] = []
    const t0 = performance.now()
    for (let cu = 0; cu < 4; cu++) {
      const customer = `msp-1/customer-${cu}`
      await api.fleet.createTenant(OWNER, { parent: 'msp-1', name: `customer-${cu}`, kind: 'customer' })
      for (let g = 0; g < 5; g++) {
        const group = `${customer}/group-${g}`
        await api.fleet.createTenant(OWNER, { parent: customer, name: `group-${g}`, kind: 'group' })
        const n = ENDPOINTS / 20
        const { token } = await api.endpoints.createToken(OWNER, { scope: group, expiresAt: new Date(Date.now() + 86400_000), maxUses: n, autoApprove: true })
        const batch = Array.from({ length: n }, (_, i) => new SimEndpoint(`c${cu}-g${g}-pc${String(i).padStart(4, '0')}`))
        for (let i = 0; i < batch.length; i += 50) await Promise.all(batch.slice(i, i + 50).map((e) => e.enroll(c, token, new Date())))
        eps.push(...batch)
      }
    }
    const release = await org.release('agent-fix', '1.2.0', { risk: 'high' })
    const { hash, manifest } = await api.releases.add(OWNER, release)
    await api.releases.approve(OWNER, hash, 'msp-1')
    if (!process.env.NO_ROLLOUT) await api.rollouts.create(OWNER, { id: 'fix-all', release: hash, target: { tenant: 'msp-1' }, phases: [{ name: 'all', successThreshold: 1, errorThreshold: 0.9, minSoakMinutes: 0 }] })
    const setupMs = performance.now() - t0

    // The screen renders only when the benchmark says so: its own throttle is pushed out of the way.
    const h = headless({ width: 160, height: 48, renderInterval: 1e9 })
    const app = await createTuiApp({ ui: h.ui, access: inProcessAccess(api, OWNER), admin: OWNER, start: 'endpoints' })
    // Counted on the app's own (shared) stream: a row object that is new is a row that changed.
    let updates = 0
    let rowsChanged = 0
    let previous = new Set<object>()
    const counting = app.data.endpoints$().subscribe((rows) => {
      updates++
      for (const r of rows) if (!previous.has(r)) rowsChanged++
      previous = new Set(rows)
    })
    const loadStart = performance.now()
    while (!/Endpoints \[10000\]/.test(h.text().join('\n'))) {
      if (performance.now() - loadStart > 60_000) throw new Error('the endpoints view never showed 10 000 endpoints')
      await sleep(50)
    }
    const loadMs = performance.now() - loadStart

    const frames = async (ms: number) => {
      const times: number[] = []
      const lags: number[] = []
      const end = performance.now() + ms
      let next = performance.now()
      let down = true
      let moved = 0
      while (performance.now() < end) {
        next += FRAME_MS
        await sleep(Math.max(0, next - performance.now()))
        lags.push(Math.max(0, performance.now() - next))
        // Scroll: down the whole list and back, a row per frame.
        h.input.write(down ? KEY.down : KEY.up)
        await new Promise((resolve) => setImmediate(resolve))
        if (++moved % 300 === 0) down = !down
        const f0 = performance.now()
        h.ui.flush()
        times.push(performance.now() - f0)
        sampleRss()
      }
      times.sort((a, b) => a - b)
      lags.sort((a, b) => a - b)
      return { n: times.length, p50: pct(times, 0.5), p95: pct(times, 0.95), max: times[times.length - 1] ?? 0, lagP95: pct(lags, 0.95) }
    }

    // Let the set-up's own work (the views' snapshot, garbage) settle, then warm up uncounted.
    await c.views.snapshot()
    await frames(3000)
    const baseline = await frames(baselineSeconds * 1000)
    const updatesBefore = updates
    const rowsBefore = rowsChanged

    // 200 events a second: 10 every 50 ms, job progress or transfer reports of random endpoints.
    let sent = 0
    let streaming = true
    const states = ['downloading', 'verified', 'installing', 'installed'] as const
    const stream = (async () => {
      let next = performance.now()
      while (streaming) {
        next += TICK_MS
        const events: Promise<SignedEvent>[] = []
        for (let i = 0; i < EVENTS_PER_S * TICK_MS / 1000; i++) {
          const ep = eps[Math.floor(Math.random() * eps.length)]!
          const now = new Date()
          events.push(i % 4 === 3
            ? ep.transfer(manifest, { origin: Math.floor(Math.random() * 1e6), site: Math.floor(Math.random() * 4e6), peer: Math.floor(Math.random() * 2e6), local: 0 }, now)
            : ep.job(release, states[Math.floor(Math.random() * states.length)]!, now, { rollout: 'fix-all' }))
        }
        const result = await c.ingest(await Promise.all(events))
        sent += result.results.filter((r) => r.status === 'accepted').length
        await sleep(Math.max(0, next - performance.now()))
      }
    })()
    const streamStart = performance.now()
    const ours = await frames(seconds * 1000)
    const updatesOurs = updates - updatesBefore
    const rowsOurs = rowsChanged - rowsBefore
    // The same stream with the admin's sort (by host) and `/` filter on: each update re-sorts and
    // re-filters the 10 000 rows before the frame that shows it.
    for (const k of ['o', '/', ...'customer-1', KEY.enter]) { h.input.write(k); await new Promise((resolve) => setImmediate(resolve)) }
    const sorted = await frames(baselineSeconds * 1000)
    streaming = false
    await stream
    const streamedS = (performance.now() - streamStart) / 1000
    counting.unsubscribe()
    const shown = h.text().join('\n')
    if (!/Endpoints \[2500\/10000\] \/customer-1/.test(shown)) throw new Error(`the view lost endpoints:\n${shown}`)
    await app.close()

    return {
      name: 'tui-render',
      endpoints: ENDPOINTS,
      events_per_s: round(sent / streamedS),
      seconds,
      frames: ours.n,
      p50_ms: round(ours.p50, 2),
      p95_ms: round(ours.p95, 2),
      max_ms: round(ours.max, 2),
      lag_p95_ms: round(ours.lagP95, 1),
      updates: updatesOurs,
      rows_changed: rowsOurs,
      sorted_filtered_p95_ms: round(sorted.p95, 2),
      baseline_frames: baseline.n,
      baseline_p95_ms: round(baseline.p95, 2),
      baseline_lag_p95_ms: round(baseline.lagP95, 1),
      ratio: round(ours.p95 / Math.max(0.01, baseline.p95), 2),
      setup_s: round(setupMs / 1000),
      first_load_ms: Math.round(loadMs),
      rss_mb: round(rss / 1048576)
    }
  } finally {
    await c.close()
    await fs.rm(dir, { recursive: true, force: true })
  }
}
