import t from 'tap'
import path from 'node:path'
import type { Test } from 'tap'
import { generateKeyPair, keySigner } from '../../lib/crypto/keys.js'
import { openDatabase, sublevel, type Database } from '../../lib/store/db.js'
import { serializeEnvelope } from '../../lib/trust/envelope.js'
import { MAX_EVENT_BYTES, verifyEvent, type SignedEvent } from '../../lib/report/event.js'
import { AgentOutbox, type OutboxFact } from '../../agent/outbox.js'
import { openAgentStore } from '../../agent/store.js'
import { Clock, ORG, TENANT } from './helpers.js'

const signer = keySigner(generateKeyPair(Buffer.alloc(32, 7)))
const RELEASE = { name: 'editor', packageVersion: '2.4.1', platform: 'linux-x64', manifest: 'a'.repeat(64), envelopeHash: 'b'.repeat(64) }

const jobFact = (state: 'assigned' | 'downloading' | 'installed', attempt = 1): OutboxFact =>
  ({ kind: 'job', job: { release: RELEASE, action: 'install', state, attempt } })
const agentFact = (state: 'started' | 'stopped'): OutboxFact => ({ kind: 'agent', agent: { state, version: '0.1.0' } })

async function open (t: Test, location = path.join(t.testdir(), 'db'), clock = new Clock('2030-01-01T00:00:00Z')) {
  let db = await openDatabase(location)
  let outbox = new AgentOutbox(db, { signer, org: ORG, tenant: TENANT, clock: clock.now })
  t.teardown(async () => { await outbox.close(); await db.close() })
  return {
    get db (): Database { return db },
    get outbox (): AgentOutbox { return outbox },
    clock,
    async reopen () {
      await outbox.close()
      await db.close()
      db = await openDatabase(location)
      outbox = new AgentOutbox(db, { signer, org: ORG, tenant: TENANT, clock: clock.now })
      return outbox
    }
  }
}

const seqsOf = (events: SignedEvent[]) => events.map((e) => e.signed.seq)
const bytes = (e: SignedEvent) => serializeEnvelope(e).toString('hex')

t.test('events are numbered 1, 2, 3…, signed by the endpoint, and kept byte for byte until acked', async (t) => {
  const { outbox, clock } = await open(t)
  const [first] = await outbox.append(agentFact('started'))
  clock.advance(1000)
  const more = await outbox.append([jobFact('assigned'), jobFact('downloading')])
  const pending = await outbox.pending()
  t.same(seqsOf(pending), [1, 2, 3])
  t.same(pending.map(bytes), [first!, ...more].map(bytes), 'what is pending is exactly what was signed')
  for (const e of pending) {
    const { event } = verifyEvent(serializeEnvelope(e))
    t.equal(event.endpoint, signer.keyid)
    t.equal(event.org, ORG)
    t.equal(event.tenant, TENANT)
  }
  t.equal(pending[0]!.signed.at, '2030-01-01T00:00:00.000Z')
  t.equal(pending[2]!.signed.at, '2030-01-01T00:00:01.000Z', 'one batch shares one clock reading')
  t.same(seqsOf(await outbox.pending({ limit: 2 })), [1, 2])
  t.same(await outbox.stats(), { pending: 3, lastSeq: 3, ackedSeq: 0, oldestSeq: 1, oldestAt: '2030-01-01T00:00:00.000Z' })
  await t.rejects(outbox.pending({ limit: 0 }), { code: 'BAD_ARGUMENT' })
})

t.test('ack removes everything up to the seq; repeats and lower acks change nothing; an ack beyond the last is ignored with a warning', async (t) => {
  const { outbox } = await open(t)
  await outbox.append([agentFact('started'), jobFact('assigned'), jobFact('downloading'), jobFact('installed')])
  const warnings: string[] = []
  outbox.on('warning', (err) => warnings.push(err.message))

  t.same(await outbox.ack(2), { removed: 2 })
  t.same(seqsOf(await outbox.pending()), [3, 4])
  t.same(await outbox.ack(2), { removed: 0 }, 'the same ack again')
  t.same(await outbox.ack(1), { removed: 0 }, 'an older ack')
  t.same(await outbox.ack(9), { removed: 0 }, 'beyond the last seq')
  t.equal(warnings.length, 1)
  t.match(warnings[0], /acknowledged seq 9, but the last event written is 4/)
  t.same(seqsOf(await outbox.pending()), [3, 4], 'an ack beyond the last removes nothing')
  t.match(await outbox.stats(), { pending: 2, lastSeq: 4, ackedSeq: 2, oldestSeq: 3 })

  t.same(await outbox.ack(4), { removed: 2 })
  t.same(await outbox.pending(), [])
  t.same(await outbox.stats(), { pending: 0, lastSeq: 4, ackedSeq: 4 }, 'no oldest when nothing is pending')
  const [next] = await outbox.append(agentFact('stopped'))
  t.equal(next!.signed.seq, 5, 'numbering goes on after everything was acked')
  await t.rejects(outbox.ack(-1), { code: 'BAD_ARGUMENT' })
  await t.rejects(outbox.ack(1.5), { code: 'BAD_ARGUMENT' })
})

t.test('pending events and the counters survive a reopen', async (t) => {
  const o = await open(t)
  const sent = await o.outbox.append([agentFact('started'), jobFact('assigned'), jobFact('downloading')])
  await o.outbox.ack(1)
  const outbox = await o.reopen()
  const pending = await outbox.pending()
  t.same(pending.map(bytes), sent.slice(1).map(bytes), 'the same bytes after a reopen')
  const [next] = await outbox.append(jobFact('installed'))
  t.equal(next!.signed.seq, 4)
  t.match(await outbox.stats(), { pending: 3, lastSeq: 4, ackedSeq: 1 })
})

t.test('a failed batch does not use its seq: the next prepare gets the same one, and nothing of it is stored', async (t) => {
  const { outbox, db } = await open(t)
  await outbox.append(agentFact('started'))
  const other = sublevel(db, 'other')

  const p = await outbox.prepare(jobFact('assigned'))
  t.equal(p.event.signed.seq, 2)
  t.ok(p.ops.some((op) => op.type === 'put' && op.key === 'last' && op.value === 2), 'the counter is one of the operations')
  // An operation LevelDB refuses makes the whole batch fail, the outbox's part included.
  await t.rejects(p.commit([{ type: 'put', sublevel: other, key: 'x', value: undefined }]))
  t.equal(await other.get('x'), undefined)
  t.same(seqsOf(await outbox.pending()), [1], 'the failed event is not pending')
  t.equal(await outbox.sub.get('last'), 1, 'the stored counter did not move')

  const again = await outbox.prepare(jobFact('downloading'))
  t.equal(again.event.signed.seq, 2, 'the next prepare gets the seq the failed batch did not use')
  await again.commit([{ type: 'put', sublevel: other, key: 'x', value: 'with the event' }])
  t.equal(await other.get('x'), 'with the event', 'the caller\'s operations commit with the event')
  await t.rejects(again.commit(), { code: 'BAD_STATE' }, 'a prepared batch commits once')

  const cancelled = await outbox.prepare(jobFact('installed'))
  t.equal(cancelled.event.signed.seq, 3)
  cancelled.cancel()
  cancelled.cancel()
  const after = await outbox.append(jobFact('installed'))
  t.equal(after[0]!.signed.seq, 3, 'a cancelled prepare frees its seq')
  const pending = await outbox.pending()
  t.same(seqsOf(pending), [1, 2, 3])
  t.equal((pending[1]!.signed.job as { state: string }).state, 'downloading', 'seq 2 is the event that committed')
})

t.test('concurrent appends get distinct, contiguous seqs: a prepare waits for the batch before it', async (t) => {
  const { outbox } = await open(t)
  const first = await outbox.prepare(agentFact('started'))
  let secondDone = false
  const second = outbox.append(jobFact('assigned')).then((e) => { secondDone = true; return e })
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.notOk(secondDone, 'the second waits while the first batch is open')
  await first.commit()
  t.equal((await second)[0]!.signed.seq, 2)

  const results = await Promise.all(Array.from({ length: 20 }, (_, i) => outbox.append(jobFact('downloading', i + 1))))
  const seqs = results.map((r) => r[0]!.signed.seq).sort((a, b) => a - b)
  t.same(seqs, Array.from({ length: 20 }, (_, i) => i + 3))
  const pending = await outbox.pending()
  t.same(seqsOf(pending), Array.from({ length: 22 }, (_, i) => i + 1))
  const stored = new Map(pending.map((e) => [e.signed.seq, bytes(e)]))
  t.ok(results.every((r) => stored.get(r[0]!.signed.seq) === bytes(r[0]!)), 'each seq holds the event its caller got')
})

t.test('an event the console would refuse is refused here, and its seq stays free', async (t) => {
  const { outbox } = await open(t)
  await t.rejects(outbox.append({ kind: 'inventory', inventory: { blob: 'x'.repeat(MAX_EVENT_BYTES) } }), { code: 'BAD_EVENT' })
  await t.rejects(outbox.append({ kind: 'job', job: { ...(jobFact('assigned') as { job: object }).job, state: 'exploded' } } as never), { code: 'BAD_EVENT' })
  await t.rejects(outbox.append({ kind: 'agent', job: {} } as never), { code: 'BAD_EVENT' }, 'the fact must match its kind')
  await t.rejects(outbox.prepareAll([]), { code: 'BAD_ARGUMENT' })
  const [e] = await outbox.append({ kind: 'inventory', inventory: { os: 'Debian 12' } })
  t.equal(e!.signed.seq, 1)
})

t.test('a closed outbox refuses new events', async (t) => {
  const { outbox } = await open(t)
  await outbox.append(agentFact('started'))
  await outbox.close()
  await outbox.close()
  await t.rejects(outbox.append(agentFact('stopped')), { code: 'CLOSED' })
  await t.rejects(outbox.ack(1), { code: 'CLOSED' })
})

t.test('an outbox without a signer is refused at construction', async (t) => {
  const { db } = await open(t)
  t.throws(() => new AgentOutbox(db, { org: ORG, tenant: TENANT } as never), { code: 'BAD_ARGUMENT' })
})

t.test('the agent store: one agent per data folder, IN_USE for the second, free again after close', async (t) => {
  const dir = path.join(t.testdir(), 'agent')
  const a = await openAgentStore(dir)
  t.equal(a.workRoot, path.join(dir, 'work'))
  await t.rejects(openAgentStore(dir), { code: 'IN_USE', message: /another patchswarm agent is running/ })
  await a.db.put('k', 1)
  await a.close()
  await a.close()
  const b = await openAgentStore(dir)
  t.equal(await b.db.get('k'), 1)
  await b.close()
  await t.rejects(openAgentStore(''), { code: 'BAD_ARGUMENT' })
})
