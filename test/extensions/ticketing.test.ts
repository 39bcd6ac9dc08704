// The ticketing extension end to end: a real console whose rollout halts on signed failure events,
// the shipped extension in a real host as customer A's admin, and a real HTTP server on 127.0.0.1
// that checks every ticket's signature with the console's own verifier.
import t from 'tap'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { verifyWebhookSignature } from '../../lib/report/outbox.js'
import { A, B, world } from '../console/helpers.js'
import { approvedRelease, receiver, report, session, waitFor, MIN, type Received } from './helpers.js'

const SECRET = 'a-ticketing-secret-of-enough-bytes'
const PILOT = `${A}/pilot`

const verified = (r: Received) => verifyWebhookSignature(SECRET, r.headers, r.body).ok
const json = (r: Received) => JSON.parse(r.body) as { id: string, type: string, tenant: string, at: string, title: string, data: Record<string, unknown> }

t.test('a halted rollout becomes exactly one signed ticket, also across a restart', async (t) => {
  const w = await world(t, { perGroup: 10 })
  const { url, received } = await receiver(t)
  const { release, hash } = await approvedRelease(w, A, 'agent-fix', '1.2.0')
  await w.api.rollouts.create('alice', {
    id: 'fix-2',
    release: hash,
    target: { tenant: A },
    phases: [
      { name: 'pilot', select: { tenants: [PILOT] }, successThreshold: 1, errorThreshold: 0.2, minSoakMinutes: 0 },
      { name: 'broad', successThreshold: 1, errorThreshold: 0.2, minSoakMinutes: 0 }
    ]
  })
  // B's rollout halts too; alice's session must not ticket it.
  const b = await approvedRelease(w, B, 'b-tool', '3.0.0')
  await w.api.rollouts.create('bob', { id: 'b-1', release: b.hash, target: { tenant: B }, phases: [{ name: 'all', successThreshold: 1, errorThreshold: 0.1, minSoakMinutes: 0 }] })

  const dbDir = path.join(w.dataDir, '..', 'alice-ext')
  const settings = { 'ticketing.url': url, 'ticketing.secret': SECRET, 'ticketing.pollIntervalMs': 250 }
  const s1 = await session(t, w, 'alice', { dbDir, settings })
  t.equal(s1.host.status('patchswarm.ticketing')?.state, 'active', 'activated on startup')

  const pilot = w.endpoints.get(PILOT)!
  const failure = { code: 'INSTALL_FAILED', reason: 'install.sh exited with 1' }
  w.clock.advance(5 * MIN)
  await report(t, w, pilot.slice(0, 5), release, 'fix-2', 'installed')
  await report(t, w, [pilot[5]!], release, 'fix-2', 'failed', failure)
  await sleep(600)
  t.equal(received.length, 0, 'one failure of ten stays under the threshold: no ticket')
  await report(t, w, [pilot[6]!], release, 'fix-2', 'failed', failure)
  await report(t, w, w.endpoints.get(`${B}/office`)!.slice(0, 2), b.release, 'b-1', 'failed', failure)
  t.equal((await w.api.rollouts.get('alice', 'fix-2')).state, 'halted')
  t.equal((await w.api.rollouts.get('bob', 'b-1')).state, 'halted')

  await waitFor('the ticket', () => received.length >= 1)
  await sleep(800) // several more polls
  t.equal(received.length, 1, 'exactly one ticket')
  // The receiver has the request before the extension has its answer and has marked it sent.
  await waitFor('the ticket recorded as sent', async () => (await s1.host.executeCommand<{ sent: number }>('ticketing.status')).sent === 1)
  const ticket = received[0]!
  t.ok(verified(ticket), 'its HMAC verifies with the console\'s verifyWebhookSignature')
  t.notOk(verifyWebhookSignature('another-secret-of-enough-bytes', ticket.headers, ticket.body).ok, 'and not with another secret')
  const halted = await w.api.rollouts.get('alice', 'fix-2')
  t.match(json(ticket), {
    type: 'rollout.halted',
    tenant: A,
    at: halted.halted!.at,
    title: /^Rollout fix-2 of agent-fix 1\.2\.0 halted in phase pilot: 2 of 10 endpoints failed \(20\.0 % ≥ 20\.0 %\)$/,
    data: { rollout: 'fix-2', phase: 'pilot', errors: 2, size: 10, threshold: 0.2, release: { hash, name: 'agent-fix', version: '1.2.0' } }
  })
  t.equal(ticket.headers['x-patchswarm-event'], 'rollout.halted')
  t.equal(ticket.headers['x-patchswarm-delivery'], json(ticket).id, 'the delivery id is the ticket id')
  t.equal(ticket.headers['content-type'], 'application/json')
  t.same(await s1.host.executeCommand('ticketing.status'), { url, pending: 0, sent: 1, dead: 0 })

  // More failures while halted: still the same halt, no new ticket.
  await report(t, w, [pilot[7]!], release, 'fix-2', 'failed', failure)
  t.equal(await s1.host.executeCommand('ticketing.checkNow'), 0, 'nothing new')
  await sleep(600)
  t.equal(received.length, 1)

  // The session ends and a new one starts on the same state: nothing is sent again.
  await s1.close()
  const s2 = await session(t, w, 'alice', { dbDir, settings })
  t.equal(await s2.host.executeCommand('ticketing.checkNow'), 0, 'the halt is known after the restart')
  await sleep(800)
  t.equal(received.length, 1, 'no duplicate after the restart')

  // Resumed and halted again: a new incident, a new ticket.
  await w.api.rollouts.resume('alice', 'fix-2')
  w.clock.advance(5 * MIN)
  await report(t, w, pilot.slice(8, 10), release, 'fix-2', 'failed', failure)
  t.equal((await w.api.rollouts.get('alice', 'fix-2')).state, 'halted', 'halted again by errors beyond those accepted')
  await waitFor('the second ticket', () => received.length >= 2)
  await sleep(500)
  t.equal(received.length, 2, 'one ticket for the second halt')
  t.ok(verified(received[1]!))
  t.not(json(received[1]!).id, json(ticket).id, 'with its own id')
  t.ok(received.every((r) => json(r).tenant === A), 'B\'s halt never became a ticket in A\'s session')
})

t.test('a failed POST is retried with back-off, a pending ticket survives a restart, a given-up one is retried on demand', async (t) => {
  const w = await world(t, { perGroup: 10 })
  let healthy = false
  const { url, received } = await receiver(t, () => healthy ? 204 : 503)
  const { release, hash } = await approvedRelease(w, A, 'agent-fix', '1.2.0')
  await w.api.rollouts.create('alice', { id: 'fix-3', release: hash, target: { tenant: A }, phases: [{ name: 'all', successThreshold: 1, errorThreshold: 0.1, minSoakMinutes: 0 }] })
  await report(t, w, w.endpoints.get(PILOT)!.slice(0, 2), release, 'fix-3', 'failed', { code: 'INSTALL_FAILED' })
  t.equal((await w.api.rollouts.get('alice', 'fix-3')).state, 'halted')

  const dbDir = path.join(w.dataDir, '..', 'alice-ext')
  const settings = { 'ticketing.url': url, 'ticketing.secret': SECRET, 'ticketing.pollIntervalMs': 250, 'ticketing.retryBaseDelayMs': 20, 'ticketing.maxAttempts': 4 }

  // The receiver is down: attempts back off, then the ticket is given up and the user told.
  const s1 = await session(t, w, 'alice', { dbDir, settings })
  await waitFor('four attempts', () => received.length >= 4)
  await waitFor('given up', async () => (await s1.host.executeCommand<{ dead: number }>('ticketing.status')).dead === 1)
  await sleep(300)
  t.equal(received.length, 4, 'ticketing.maxAttempts attempts, then no more')
  t.ok(received.every(verified), 'every attempt signed')
  t.equal(new Set(received.map((r) => r.headers['x-patchswarm-delivery'])).size, 1, 'all with the same delivery id')
  t.equal(new Set(received.map((r) => r.body)).size, 1, 'and the same body')
  t.ok(s1.window.messages.some((m) => m.severity === 'error' && /could not be delivered after 4 attempts \(HTTP 503\)/.test(m.message)), 'the user is told')

  // The receiver is back: retry on demand delivers it once.
  healthy = true
  t.equal(await s1.host.executeCommand('ticketing.retryFailed'), 1)
  // The receiver records the POST before its answer reaches the extension, which only then marks
  // the ticket sent: wait for that record, not for the receiver, before reading the status.
  await waitFor('delivered', async () => (await s1.host.executeCommand<{ sent: number }>('ticketing.status')).sent === 1)
  t.match(await s1.host.executeCommand('ticketing.status'), { pending: 0, sent: 1, dead: 0 })
  t.equal(received.filter((r) => r.status === 204).length, 1, 'answered 2xx once')
  await s1.close()

  // A ticket still pending when the session ends goes out when the next one starts.
  healthy = false
  await report(t, w, w.endpoints.get(`${A}/office`)!.slice(0, 1), release, 'fix-3', 'failed', { code: 'INSTALL_FAILED' })
  w.clock.advance(169 * 60 * MIN) // past the 'high' SLA (168 h): the not-installed patches breach it
  const slow = { ...settings, 'ticketing.retryBaseDelayMs': 60_000, 'ticketing.events': ['sla.breached'] }
  const s2 = await session(t, w, 'alice', { dbDir, settings: slow })
  const before = received.length
  await waitFor('the first attempts at the SLA tickets', () => received.length >= before + 2)
  t.match(await s2.host.executeCommand('ticketing.status'), { pending: 2, sent: 1 }, 'two SLA tickets wait for their retry')
  await s2.close()
  healthy = true
  const s3 = await session(t, w, 'alice', { dbDir, settings: slow })
  await waitFor('both delivered', async () => (await s3.host.executeCommand<{ sent: number }>('ticketing.status')).sent === 3)
  const delivered = received.filter((r) => r.status === 204)
  t.equal(delivered.length, 3, 'each ticket answered 2xx exactly once')
  t.same(delivered.slice(1).map((r) => json(r).type), ['sla.breached', 'sla.breached'])
  t.ok(delivered.every(verified))
})

t.test('SLA breaches become one ticket per tenant, release and deadline, by the console\'s clock', async (t) => {
  const w = await world(t, { perGroup: 3 })
  const { url, received } = await receiver(t)
  const { release, hash } = await approvedRelease(w, A, 'openssl', '3.0.14', 'critical')
  await w.api.rollouts.create('alice', { id: 'ssl-1', release: hash, target: { tenant: A }, phases: [{ name: 'all', successThreshold: 1, errorThreshold: 1, minSoakMinutes: 0 }] })
  const pilot = w.endpoints.get(PILOT)!
  const office = w.endpoints.get(`${A}/office`)!
  w.clock.advance(10 * MIN)
  await report(t, w, pilot.slice(0, 2), release, 'ssl-1', 'installed')
  await report(t, w, office.slice(0, 1), release, 'ssl-1', 'failed', { code: 'INSTALL_FAILED' })
  const b = await approvedRelease(w, B, 'openssl-b', '3.0.14', 'critical')
  await w.api.rollouts.create('bob', { id: 'ssl-b', release: b.hash, target: { tenant: B }, phases: [{ name: 'all', successThreshold: 1, errorThreshold: 1, minSoakMinutes: 0 }] })

  const s = await session(t, w, 'alice', { dbDir: path.join(w.dataDir, '..', 'alice-ext'), settings: { 'ticketing.url': url, 'ticketing.secret': SECRET, 'ticketing.events': ['sla.breached'], 'ticketing.pollIntervalMs': 60_000 } })
  t.equal(await s.host.executeCommand('ticketing.checkNow'), 0, 'within the SLA (72 h for critical): nothing')

  w.clock.advance(73 * 60 * MIN)
  // Past it: the pilot's one and the office's three patches. (The periodic check that started with
  // the session may find them first; checkNow counts only what it found itself.)
  t.ok(await s.host.executeCommand<number>('ticketing.checkNow') <= 2)
  await waitFor('two tickets', () => received.length >= 2)
  t.equal(await s.host.executeCommand('ticketing.checkNow'), 0, 'asked again: nothing new')
  await sleep(300)
  t.equal(received.length, 2)
  t.ok(received.every(verified))
  const byTenant = new Map(received.map((r) => [json(r).tenant, json(r)]))
  t.same([...byTenant.keys()].sort(), [`${A}/office`, PILOT], 'one per group; nothing of B')
  const deadline = (await w.api.reports.records('alice', A))[0]!.slaDeadline
  t.match(byTenant.get(PILOT), {
    type: 'sla.breached',
    at: deadline,
    title: `SLA breached: openssl 3.0.14 (critical) is not installed on 1 endpoint in ${PILOT} (deadline ${deadline})`,
    data: { release: { hash, name: 'openssl', version: '3.0.14', risk: 'critical' }, endpoints: 1, keyids: [pilot[2]!.keyid], states: { assigned: 1 }, rollouts: ['ssl-1'] }
  })
  t.match(byTenant.get(`${A}/office`), { data: { endpoints: 3, keyids: office.map((e) => e.keyid).sort(), states: { failed: 1, assigned: 2 } } })
  t.match(received[0]!.headers, { 'x-patchswarm-event': 'sla.breached' })
})

t.test('without a URL nothing is watched; a URL without a secret is refused and said so', async (t) => {
  const w = await world(t, { perGroup: 1 })
  const off = await session(t, w, 'alice', { dbDir: path.join(w.dataDir, '..', 'off') })
  t.equal(off.host.status('patchswarm.ticketing')?.state, 'active')
  t.ok(off.log.some((e) => e.extension === 'patchswarm.ticketing' && /ticketing\.url is not set/.test(e.message)))
  t.same(off.window.messages, [], 'no message: not configured is a normal state')
  t.same(await off.host.executeCommand('ticketing.status'), { url: null, pending: 0, sent: 0, dead: 0 })
  t.equal(await off.host.executeCommand('ticketing.checkNow'), 0)

  const unsigned = await session(t, w, 'alice', { dbDir: path.join(w.dataDir, '..', 'unsigned'), settings: { 'ticketing.url': 'http://127.0.0.1:9/x' } })
  t.match(unsigned.window.messages, [{ severity: 'error', source: 'patchswarm.ticketing', message: /Ticketing is off: ticketing\.secret is not set/ }])

  const tokened = await session(t, w, 'alice', { dbDir: path.join(w.dataDir, '..', 'tokened'), settings: { 'ticketing.url': 'http://127.0.0.1:9/hook?token=sesame', 'ticketing.secret': SECRET } })
  t.match(await tokened.host.executeCommand('ticketing.status'), { url: 'http://127.0.0.1:9/hook?…' }, 'a query string (often a token) is not shown')
  t.notOk(tokened.log.some((e) => e.message.includes('sesame')), 'nor logged')

  const bad = await session(t, w, 'alice', { dbDir: path.join(w.dataDir, '..', 'bad'), settings: { 'ticketing.url': 'ftp://example.org/x', 'ticketing.secret': SECRET } })
  t.match(bad.host.status('patchswarm.ticketing'), { state: 'invalid', error: { code: 'BAD_CONFIG', message: /ticketing\.url/ } }, 'the settings schema refuses a non-http URL; no code runs')
  t.equal(bad.host.status('patchswarm.export')?.state, 'inactive', 'the other extensions are not affected')
})
