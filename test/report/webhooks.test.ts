import t from 'tap'
import http from 'node:http'
import path from 'node:path'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'
import { openDatabase, sublevel, type Database } from '../../lib/store/db.js'
import { commit } from '../../lib/fleet/common.js'
import { WebhookStore, type WebhookFact } from '../../lib/report/webhooks.js'
import { Outbox, backoffDelay, verifyWebhookSignature, webhookSignature, type DeliveryEvent, type OutboxOptions } from '../../lib/report/outbox.js'

type Answer = number | 'destroy' | 'hang'

interface Hit {
  n: number
  headers: http.IncomingHttpHeaders
  body: string
  answer: Answer
  verified: ReturnType<typeof verifyWebhookSignature>
}

/** Runs cleanups last-in first-out in one teardown: outboxes before servers before databases. */
function cleanups (t: Test): (fn: () => unknown) => void {
  const fns: Array<() => unknown> = []
  t.teardown(async () => { for (const fn of fns.reverse()) await fn() })
  return (fn) => { fns.push(fn) }
}

/** A receiver on 127.0.0.1 that answers the n-th request as `plan(n)` says and checks each signature. */
async function receiver (later: (fn: () => unknown) => void, secret: () => string, plan: (n: number) => Answer) {
  const hits: Hit[] = []
  const arrived = new EventTarget()
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks)
      const n = hits.length + 1
      const answer = plan(n)
      hits.push({ n, headers: req.headers, body: body.toString(), answer, verified: verifyWebhookSignature(secret(), req.headers, body) })
      arrived.dispatchEvent(new Event('hit'))
      if (answer === 'destroy') req.socket.destroy()
      else if (answer !== 'hang') res.writeHead(answer, { 'content-type': 'text/plain' }).end('ok')
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  later(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
  const { port } = server.address() as { port: number }
  const hitCount = (count: number) => new Promise<void>((resolve) => {
    if (hits.length >= count) return resolve()
    const on = () => { if (hits.length >= count) { arrived.removeEventListener('hit', on); resolve() } }
    arrived.addEventListener('hit', on)
  })
  return { url: `http://127.0.0.1:${port}/hooks/ticket`, hits, hitCount }
}

async function openStore (t: Test, later: (fn: () => unknown) => void, dir = path.join(t.testdir(), 'db')): Promise<{ db: Database, store: WebhookStore }> {
  const db = await openDatabase(dir)
  later(() => db.close())
  return { db, store: new WebhookStore(db) }
}

async function startOutbox (later: (fn: () => unknown) => void, opts: OutboxOptions): Promise<{ outbox: Outbox, seen: Array<[string, DeliveryEvent]> }> {
  const outbox = new Outbox({ baseDelayMs: 10, maxDelayMs: 100, pollIntervalMs: 50, ...opts })
  later(() => outbox.close())
  const seen: Array<[string, DeliveryEvent]> = []
  for (const name of ['delivered', 'failed', 'dead'] as const) outbox.on(name, (e) => seen.push([name, e]))
  await outbox.ready()
  return { outbox, seen }
}

const next = (outbox: Outbox, name: 'delivered' | 'dead', ms = 5000) =>
  once(outbox, name, { signal: AbortSignal.timeout(ms) }).then(([e]) => e as DeliveryEvent)

let factSeq = 0
function fact (over: Partial<WebhookFact> = {}): WebhookFact {
  return { type: 'rollout.halted', tenant: 'msp-1/acme', at: new Date().toISOString(), id: `fact-${++factSeq}`, data: { rollout: 'r-1', reason: 'error threshold tripped' }, ...over }
}

async function codeOf (p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p
    return undefined
  } catch (err) {
    return (err as { code?: string }).code ?? 'NO_CODE'
  }
}

async function until (what: string, check: () => Promise<boolean>, ms = 3000): Promise<void> {
  const end = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(10)
  }
}

t.test('failed attempts (500, a dropped connection, 503) are retried and the fact is delivered exactly once, signed', async (t) => {
  const later = cleanups(t)
  const { store } = await openStore(t, later)
  let secret = ''
  const rx = await receiver(later, () => secret, (n) => ([500, 'destroy', 503] as Answer[])[n - 1] ?? 200)
  secret = (await store.create({ id: 'itsm', url: rx.url, events: ['rollout.halted'], tenant: 'msp-1' })).secret
  const { outbox, seen } = await startOutbox(later, { store })

  const f = fact()
  const delivered = next(outbox, 'delivered')
  t.equal(await store.notify(f), 1, 'one delivery queued')
  const event = await delivered
  t.match(event, { webhook: 'itsm', delivery: f.id, type: 'rollout.halted', tenant: 'msp-1/acme', attempts: 4, status: 200 })
  t.same(seen.map(([name]) => name), ['failed', 'failed', 'failed', 'delivered'])
  t.match(seen.slice(0, 3).map(([, e]) => e), [{ status: 500, error: 'HTTP 500' }, { error: /other side closed|ECONNRESET|socket/i }, { status: 503 }])
  t.notOk('status' in seen[1]![1], 'the dropped connection has no status')

  t.same(rx.hits.map((h) => h.answer), [500, 'destroy', 503, 200], 'three failures, then one success')
  for (const h of rx.hits) {
    t.ok(h.verified.ok, `attempt ${h.n}: the receiver verifies the signature`)
    t.equal(h.headers['x-patchswarm-delivery'], f.id, 'the same delivery id on every attempt')
    t.equal(h.headers['x-patchswarm-event'], 'rollout.halted')
    t.equal(h.headers['content-type'], 'application/json')
    t.same(JSON.parse(h.body), { id: f.id, type: f.type, tenant: f.tenant, at: f.at, data: f.data })
  }
  t.equal(new Set(rx.hits.map((h) => h.body)).size, 1, 'the same body bytes on every attempt')

  await sleep(200)
  t.equal(rx.hits.length, 4, 'nothing is sent after the success')
  t.same(await outbox.list(), [], 'the queue is empty')
  t.match(await outbox.delivered(), [{ webhook: 'itsm', delivery: f.id, attempts: 4, status: 200 }])
  t.equal(await store.notify(f), 0, 'a delivered fact is not queued again')

  // The receiver's side of the signature.
  const h = rx.hits[3]!
  const headers = h.headers as Record<string, string>
  t.notOk(verifyWebhookSignature('another secret of 32 bytes......', headers, h.body).ok, 'wrong secret')
  t.match(verifyWebhookSignature(secret, headers, h.body.replace('r-1', 'r-2')), { ok: false, reason: 'signature mismatch' }, 'tampered body')
  t.match(verifyWebhookSignature(secret, headers, h.body, { now: new Date(Date.now() + 600_000) }), { ok: false, reason: /tolerance/ }, 'a replay after the window')
  t.ok(verifyWebhookSignature(secret, headers, h.body, { now: new Date(Date.now() + 600_000), toleranceSec: 900 }).ok, 'within a wider window')
  t.match(verifyWebhookSignature(secret, { ...headers, 'x-patchswarm-timestamp': String(Number(headers['x-patchswarm-timestamp']) - 1) }, h.body), { ok: false }, 'the timestamp is signed')
  t.match(verifyWebhookSignature(secret, { 'x-patchswarm-timestamp': headers['x-patchswarm-timestamp'] }, h.body), { ok: false, reason: 'missing signature' })
  t.match(verifyWebhookSignature(secret, new Headers(headers), Buffer.from(h.body)), { ok: true, delivery: f.id }, 'fetch Headers and raw bytes')
  t.ok(verifyWebhookSignature(['an old secret, 16+ bytes', secret], headers, h.body).ok, 'any of several secrets (rotation)')
  const ts = Number(headers['x-patchswarm-timestamp'])
  t.equal(headers['x-patchswarm-signature'], webhookSignature(secret, ts, h.body))
  t.match(headers['x-patchswarm-signature'], /^sha256=[0-9a-f]{64}$/)
})

t.test('a receiver that hangs is timed out and retried', async (t) => {
  const later = cleanups(t)
  const { store } = await openStore(t, later)
  let secret = ''
  const rx = await receiver(later, () => secret, (n) => n === 1 ? 'hang' : 200)
  secret = (await store.create({ id: 'slow', url: rx.url, events: ['*'], tenant: '' })).secret
  const { outbox, seen } = await startOutbox(later, { store, timeoutMs: 150 })
  const started = Date.now()
  const delivered = next(outbox, 'delivered')
  await store.notify(fact())
  t.match(await delivered, { attempts: 2, status: 200 })
  t.ok(Date.now() - started >= 150, 'waited for the timeout')
  t.match(seen[0], ['failed', { error: /timed out after 150 ms/ }])
  t.same(rx.hits.map((h) => h.answer), ['hang', 200])
  t.ok(rx.hits.every((h) => h.verified.ok))
})

t.test('a restart mid-retry (request aborted by close, database reopened) still delivers exactly once', async (t) => {
  const later = cleanups(t)
  const dir = path.join(t.testdir(), 'db')
  const db1 = await openDatabase(dir)
  const store1 = new WebhookStore(db1)
  let secret = ''
  const rx = await receiver(later, () => secret, (n) => n === 1 ? 500 : n === 2 ? 'hang' : 200)
  secret = (await store1.create({ id: 'itsm', url: rx.url, events: ['job.failed'], tenant: 'msp-1' })).secret
  const outbox1 = new Outbox({ store: store1, baseDelayMs: 10, maxDelayMs: 50, timeoutMs: 10_000 })
  await outbox1.ready()
  await outbox1.ready()
  const f = fact({ type: 'job.failed', data: { endpoint: 'e1', code: 'INSTALL_FAILED' } })
  await store1.notify(f)
  await rx.hitCount(2)

  const closing = Date.now()
  await outbox1.close()
  await outbox1.close()
  t.ok(Date.now() - closing < 2000, 'close() aborts the hanging request instead of waiting 10 s')
  t.equal(await codeOf(outbox1.ready()), 'CLOSED', 'a closed outbox does not start again')
  t.match(await store1.queue.items(), [{ delivery: f.id, state: 'pending', attempts: 1, lastStatus: 500 }], 'the aborted attempt is not counted')
  await db1.close()

  const { store } = await openStore(t, later, dir)
  const { outbox } = await startOutbox(later, { store })
  t.match(await next(outbox, 'delivered'), { delivery: f.id, attempts: 2, status: 200 })
  await sleep(150)
  t.same(rx.hits.map((h) => h.answer), [500, 'hang', 200], 'one success, no duplicate')
  t.ok(rx.hits.every((h) => h.verified.ok && h.headers['x-patchswarm-delivery'] === f.id))
})

t.test('after maxAttempts a delivery is dead-lettered, listed, and retry() requeues it', async (t) => {
  const later = cleanups(t)
  const { store } = await openStore(t, later)
  let secret = ''
  let healthy = false
  const rx = await receiver(later, () => secret, () => healthy ? 204 : 500)
  secret = (await store.create({ id: 'itsm', url: rx.url, events: ['sla.*'], tenant: '' })).secret
  const { outbox } = await startOutbox(later, { store, maxAttempts: 3 })
  const f = fact({ type: 'sla.breached', tenant: 'msp-2/beta' })
  const dead = next(outbox, 'dead')
  await store.notify(f)
  t.match(await dead, { delivery: f.id, attempts: 3, status: 500 })
  await sleep(150)
  t.equal(rx.hits.length, 3, 'no attempt after the last allowed one')
  t.match(await outbox.deadLetters(), [{ webhook: 'itsm', delivery: f.id, state: 'dead', attempts: 3, lastStatus: 500, lastError: 'HTTP 500' }])
  t.equal(await store.notify(f), 0, 'a dead-lettered fact is not queued twice')

  t.equal(await codeOf(outbox.retry('no-such-fact')), 'NOT_FOUND')
  healthy = true
  const delivered = next(outbox, 'delivered')
  t.equal(await outbox.retry(f.id), 1)
  t.match(await delivered, { delivery: f.id, attempts: 1, status: 204 })
  t.equal(rx.hits.length, 4)
  t.same(await outbox.deadLetters(), [])
  t.equal(await codeOf(outbox.retry(f.id, 'itsm')), 'NOT_FOUND', 'nothing left to retry')

  t.equal(await outbox.pruneDelivered(new Date(0)), 0, 'nothing older than 1970')
  t.equal(await outbox.pruneDelivered(new Date(Date.now() + 60_000)), 1)
  t.same(await outbox.delivered(), [])
})

t.test('filters: by type pattern, tenant scope and enabled; queued in the same batch as the fact', async (t) => {
  const later = cleanups(t)
  const { db, store } = await openStore(t, later)
  const url = 'https://itsm.example/hook'
  await store.create({ id: 'a', url, events: ['rollout.halted'], tenant: 'msp-1/acme' })
  await store.create({ id: 'b', url, events: ['*'], tenant: '' })
  await store.create({ id: 'c', url, events: ['rollout.*'], tenant: 'msp-1' })
  await store.create({ id: 'd', url, events: ['sla.breached', 'endpoint.quarantined'], tenant: 'msp-1/acme-2' })
  await store.create({ id: 'e', url, events: ['*'], tenant: '', enabled: false })

  const recipients = async (f: WebhookFact) => (await store.enqueueOps(f))
    .filter((op) => op.type === 'put' && op.key.startsWith('q!'))
    .map((op) => (op as { value: { webhook: string } }).value.webhook).sort()
  t.same(await recipients(fact({ type: 'rollout.halted', tenant: 'msp-1/acme/sales' })), ['a', 'b', 'c'])
  t.same(await recipients(fact({ type: 'rollout.completed', tenant: 'msp-1/acme' })), ['b', 'c'])
  t.same(await recipients(fact({ type: 'sla.breached', tenant: 'msp-1/acme' })), ['b'], "msp-1/acme is not inside msp-1/acme-2")
  t.same(await recipients(fact({ type: 'endpoint.quarantined', tenant: 'msp-1/acme-2/g1' })), ['b', 'd'])
  t.same(await recipients(fact({ type: 'rollout.halted', tenant: '' })), ['b'], 'an organisation-wide fact reaches only organisation-wide hooks')
  t.same(await recipients(fact({ type: 'job.failed', tenant: 'msp-2/x' })), ['b'])
  t.same(await store.queue.items(), [], 'enqueueOps alone writes nothing')

  // The caller commits the fact and its deliveries in one batch.
  const facts = sublevel(db, 'test-facts')
  const f = fact({ tenant: 'msp-1/acme' })
  await commit(db, [{ type: 'put', sublevel: facts, key: f.id, value: f }, ...await store.enqueueOps(f)])
  t.same(await facts.get(f.id), f)
  t.same((await store.queue.items()).map((i) => i.webhook), ['a', 'b', 'c'])
  t.same(await store.enqueueOps(f), [], 'already queued: nothing more')

  // notify() does the same with WriteOptions.extra.
  const g = fact({ type: 'endpoint.quarantined', tenant: 'msp-1/acme-2' })
  t.equal(await store.notify(g, { extra: () => [{ type: 'put', sublevel: facts, key: g.id, value: g }] }), 2)
  t.same(await facts.get(g.id), g)
  const before = await store.queue.items()
  t.equal(await codeOf(store.notify(fact({ at: 'yesterday' }), { extra: () => [{ type: 'put', sublevel: facts, key: 'x', value: 1 }] })), 'BAD_WEBHOOK')
  t.equal(await facts.get('x'), undefined, 'a refused fact writes nothing, extra included')
  t.same(await store.queue.items(), before)

  t.same((await store.list()).map((h) => h.id), ['a', 'b', 'c', 'd', 'e'])
  t.same((await store.list({ under: 'msp-1' })).map((h) => h.id), ['a', 'c', 'd'])
  t.same((await store.list({ under: 'msp-1/acme' })).map((h) => h.id), ['a'])

  for (const [what, bad, code] of [
    ['type', { type: 'Rollout Halted' }, 'BAD_WEBHOOK'],
    ['type without a dot', { type: 'halted' }, 'BAD_WEBHOOK'],
    ['time', { at: '2030-02-30T00:00:00Z' }, 'BAD_WEBHOOK'],
    ['id with !', { id: 'a!b' }, 'BAD_WEBHOOK'],
    ['data', { data: [1, 2] }, 'BAD_WEBHOOK'],
    ['huge data', { data: { blob: 'x'.repeat(70_000) } }, 'BAD_WEBHOOK'],
    ['tenant', { tenant: 'msp-1/../x' }, 'UNSAFE_PATH']
  ] as const) {
    t.equal(await codeOf(store.enqueueOps(fact(bad as Partial<WebhookFact>))), code, `bad fact ${what}`)
  }
})

t.test('disabling parks queued deliveries, enabling sends them; remove drops the queue', async (t) => {
  const later = cleanups(t)
  const { db, store } = await openStore(t, later)
  let secret = ''
  const rx = await receiver(later, () => secret, () => 200)
  secret = (await store.create({ id: 'itsm', url: rx.url, events: ['*'], tenant: 'msp-1' })).secret
  await store.create({ id: 'gone', url: rx.url, events: ['*'], tenant: 'msp-1' })
  await store.create({ id: 'late', url: rx.url, events: ['*'], tenant: 'msp-9' })

  // A caller's batch built before the hook was removed and committed after: the worker drops it.
  const stale = await store.enqueueOps(fact({ tenant: 'msp-9' }))
  await store.remove('late')
  await commit(db, stale)
  t.same((await store.queue.items()).map((i) => i.webhook), ['late'])

  const f = fact()
  t.equal(await store.notify(f), 2)
  await store.remove('gone')
  t.equal(await codeOf(store.get('gone')), 'NOT_FOUND')
  t.same((await store.queue.items()).map((i) => i.webhook), ['itsm', 'late'], "the removed hook's deliveries are gone")

  await store.setEnabled('itsm', false)
  t.equal(await store.notify(fact()), 0, 'a disabled hook gets no new deliveries')
  const { outbox } = await startOutbox(later, { store, pollIntervalMs: 20 })
  await until('the delivery to be parked', async () => (await outbox.list())[0]?.state === 'paused')
  t.same((await outbox.list()).map((i) => i.webhook), ['itsm'], 'the delivery to the removed hook was dropped unsent')
  t.equal(rx.hits.length, 0, 'nothing sent while disabled')

  const delivered = next(outbox, 'delivered')
  t.match(await store.setEnabled('itsm', true), { id: 'itsm', enabled: true })
  t.match(await delivered, { delivery: f.id, attempts: 1 })
  t.equal(rx.hits.length, 1)
  t.ok(rx.hits[0]!.verified.ok)
  t.equal(await codeOf(store.setEnabled('nope', true)), 'NOT_FOUND')
})

t.test('subscriptions: URLs, secrets, event patterns and names are checked; the secret is shown once', async (t) => {
  const later = cleanups(t)
  const { db, store } = await openStore(t, later)
  const ok = { id: 'hook', url: 'https://itsm.example/api/hook?token=abc', events: ['rollout.halted'], tenant: 'msp-1' }
  for (const url of [
    'ftp://itsm.example/hook', 'file:///etc/passwd', 'javascript:alert(1)', 'https://user:pw@itsm.example/hook',
    'https://:pw@itsm.example/', 'itsm.example/hook', 'not a url', '', 'https://itsm.example/hook\n',
    'https://itsm.example/#frag', `https://itsm.example/${'x'.repeat(2100)}`, 42
  ]) {
    t.equal(await codeOf(store.create({ ...ok, url: url as string })), 'BAD_WEBHOOK', `refused URL ${String(url).slice(0, 40)}`)
  }
  t.equal(await codeOf(store.create({ ...ok, secret: 'short' })), 'BAD_WEBHOOK', 'a secret under 16 bytes')
  for (const events of [[], ['Rollout.Halted'], ['**'], ['rollout.'], 'rollout.halted', [7]]) {
    t.equal(await codeOf(store.create({ ...ok, events: events as string[] })), 'BAD_WEBHOOK', `refused events ${JSON.stringify(events)}`)
  }
  t.equal(await codeOf(store.create({ ...ok, id: '../x' })), 'UNSAFE_PATH')
  t.equal(await codeOf(store.create({ ...ok, tenant: 'msp-1/../..' })), 'UNSAFE_PATH')
  t.same(await store.list(), [], 'nothing was written')

  const audit = sublevel(db, 'test-audit')
  const created = await store.create({ ...ok, url: 'HTTPS://ITSM.Example:443/api/hook', events: ['rollout.halted', 'rollout.halted'] }, { extra: () => [{ type: 'put', sublevel: audit, key: '1', value: 'created' }] })
  t.equal(await audit.get('1'), 'created', 'extra committed with the change')
  t.match(created.webhook, { id: 'hook', url: 'https://itsm.example/api/hook', events: ['rollout.halted'], tenant: 'msp-1', enabled: true })
  t.ok(Buffer.byteLength(created.secret) >= 16, 'a secret was generated')
  t.notOk('secret' in created.webhook)
  t.notOk('secret' in await store.get('hook'), 'get() does not show the secret')
  t.notOk((await store.list()).some((h) => 'secret' in h), 'list() does not show it')
  t.equal((await store.target('hook'))?.secret, created.secret, 'the worker reads it')
  t.equal(await codeOf(store.create({ ...ok }, { extra: () => [{ type: 'put', sublevel: audit, key: '2', value: 'dup' }] })), 'ALREADY_EXISTS')
  t.equal(await audit.get('2'), undefined, 'a refused change commits no extra')

  const given = await store.create({ ...ok, id: 'given', secret: 'a secret of exactly 32 bytes!!!!' })
  t.equal(given.secret, 'a secret of exactly 32 bytes!!!!')
  const rotated = await store.rotateSecret('given')
  t.not(rotated.secret, given.secret)
  t.equal((await store.target('given'))?.secret, rotated.secret)
  t.equal(await codeOf(store.rotateSecret('given', 'tiny')), 'BAD_WEBHOOK')
  t.equal(await codeOf(store.remove('nope')), 'NOT_FOUND')
  t.equal(await store.find('nope'), undefined)
})

t.test('back-off is exponential with full jitter, capped; outbox options are checked', async (t) => {
  t.equal(backoffDelay(1, 1000, 3_600_000, () => 0), 0)
  t.equal(backoffDelay(1, 1000, 3_600_000, () => 0.9999), 999)
  t.equal(backoffDelay(4, 1000, 3_600_000, () => 0.9999), 7999)
  t.equal(backoffDelay(40, 1000, 3_600_000, () => 0.9999), 3_599_640)
  t.equal(backoffDelay(5000, 1000, 3_600_000, () => 0.5), 1_800_000, 'no overflow for large attempt numbers')
  for (let i = 0; i < 100; i++) {
    const d = backoffDelay(3, 100, 10_000)
    if (d < 0 || d >= 400) t.fail(`delay ${d} outside [0, 400)`)
  }
  const later = cleanups(t)
  const { store } = await openStore(t, later)
  for (const bad of [{ baseDelayMs: 0 }, { maxAttempts: 1.5 }, { concurrency: -1 }, { timeoutMs: Number.NaN }]) {
    t.throws(() => new Outbox({ store, ...bad }), { code: 'BAD_ARGUMENT' }, JSON.stringify(bad))
  }
  await new Outbox({ store }).close() // close without ready is fine
})
