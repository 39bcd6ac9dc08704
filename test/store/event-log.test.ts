import t, { type Test } from 'tap'
import path from 'node:path'
import { openDatabase, sublevel } from '../../lib/store/db.js'
import { EventLog, seqKey, type LogEntry } from '../../lib/store/event-log.js'

type Fact = { n: number }
type Log = EventLog<{ signed: { n: number } }, Fact>

function clock (): () => Date {
  let t = Date.parse('2030-01-01T00:00:00Z')
  return () => new Date((t += 1000))
}

async function open (t: Test, dir = path.join(t.testdir(), 'db')) {
  const db = await openDatabase(dir)
  const log: Log = new EventLog(db, { clock: clock() })
  t.teardown(async () => { await log.close(); await db.close() })
  await log.ready()
  return { db, log, dir }
}

const facts = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => ({ source: 'console' as const, fact: { n: from + i } }))
const seqs = (entries: LogEntry[]) => entries.map((e) => e.seq)

t.test('append numbers entries without gaps, stamps them, and reads them back', async (t) => {
  const { log, db, dir } = await open(t)
  t.equal(log.last, 0)
  const first = await log.append(facts(1, 3))
  t.same(seqs(first), [1, 2, 3])
  t.same(first.map((e) => e.at), ['2030-01-01T00:00:01.000Z', '2030-01-01T00:00:01.000Z', '2030-01-01T00:00:01.000Z'], 'one clock reading per append')
  await log.append(facts(4, 5), { at: new Date('2031-01-01T00:00:00Z') })
  t.equal(log.last, 5)
  t.same(await log.get(4), { source: 'console', fact: { n: 4 }, seq: 4, at: '2031-01-01T00:00:00.000Z' })
  t.equal(await log.get(6), undefined)
  t.same(seqs(await log.read()), [1, 2, 3, 4, 5])
  t.same(seqs(await log.read({ from: 2, limit: 2 })), [2, 3])
  t.same(seqs(await log.read({ from: 3, to: 4 })), [3, 4])
  const iterated: number[] = []
  for await (const e of log.entries({ from: 4 })) iterated.push(e.seq)
  t.same(iterated, [4, 5])
  // Keys sort as numbers do.
  t.ok(seqKey(10) > seqKey(9) && seqKey(100) > seqKey(99))

  await log.close()
  await db.close()
  const again = await openDatabase(dir)
  const reopened: Log = new EventLog(again)
  t.teardown(async () => { await reopened.close(); await again.close() })
  await reopened.ready()
  t.equal(reopened.last, 5, 'the sequence continues after a restart')
  t.same(seqs(await reopened.append(facts(6, 6))), [6])
})

t.test('extra operations commit in the same batch; a failed batch uses no numbers', async (t) => {
  const { log, db } = await open(t)
  const side = sublevel(db, 'side')
  const entries = await log.append(facts(1, 2), { extra: (es) => es.map((e) => ({ type: 'put', sublevel: side, key: `k${e.seq}`, value: e.source === 'console' ? e.fact : null })) })
  t.same(seqs(entries), [1, 2])
  t.same(await side.get('k2'), { n: 2 })

  const emitted: number[] = []
  const sub = log.live$.subscribe((e) => emitted.push(e.seq))
  t.teardown(() => sub.unsubscribe())
  await t.rejects(log.append(facts(3, 3), { extra: () => { throw new Error('boom') } }), { message: 'boom' })
  await t.rejects(log.append(facts(3, 4), { extra: () => [{ type: 'put', sublevel: side, key: null as never, value: 1 }] }), { code: 'IO_ERROR' })
  t.equal(log.last, 2)
  t.same(seqs(await log.read()), [1, 2], 'nothing of the failed appends is stored')
  t.same(emitted, [], 'nor emitted')
  t.same(seqs(await log.append(facts(3, 3))), [3], 'the next append takes the next number')

  // No entries: only the extra operations are committed, nothing is emitted.
  t.same(await log.append([], { extra: () => [{ type: 'put', sublevel: side, key: 'only', value: true }] }), [])
  t.equal(await side.get('only'), true)
  t.same(emitted, [3])
})

t.test('agent entries keep the text they were given verbatim', async (t) => {
  const { log, db } = await open(t)
  const envelope = { signed: { n: 7 } }
  const text = '{"signed":{"n":7}}'
  const [entry] = await log.append([{ source: 'agent', hash: 'h'.repeat(64), envelope, text }, { source: 'agent', hash: 'i'.repeat(64), envelope: { signed: { n: 8 } } }])
  t.same(entry, { source: 'agent', hash: 'h'.repeat(64), envelope, seq: 1, at: '2030-01-01T00:00:01.000Z' }, 'text is not part of the entry')
  const raw = await db.sublevel<string, string>('report-log', { valueEncoding: 'utf8' }).get(seqKey(1))
  t.ok(raw!.includes(`"envelope":${text}`), 'the stored value contains the received text')
  t.same(await log.get(1), entry)
  t.match(await log.get(2), { source: 'agent', envelope: { signed: { n: 8 } } }, 'without text the envelope is encoded')
})

t.test('live$ emits committed entries in order; appends are serialised', async (t) => {
  const { log } = await open(t)
  const live: number[] = []
  const chunks: number[][] = []
  const a = log.live$.subscribe((e) => live.push(e.seq))
  const b = log.appended$.subscribe((es) => chunks.push(seqs(es)))
  t.teardown(() => { a.unsubscribe(); b.unsubscribe() })
  const results = await Promise.all([log.append(facts(1, 2)), log.append(facts(3, 3)), log.append(facts(4, 6))])
  t.same(results.map(seqs), [[1, 2], [3], [4, 5, 6]])
  t.same(live, [1, 2, 3, 4, 5, 6])
  t.same(chunks, [[1, 2], [3], [4, 5, 6]])
})

t.test('tail$ replays stored entries, then live ones, without gaps or repeats', async (t) => {
  const { log } = await open(t)
  for (let i = 0; i < 25; i++) await log.append(facts(i * 100 + 1, i * 100 + 100))
  const seen: number[] = []
  let chunks = 0
  const done = new Promise<void>((resolve, reject) => {
    const sub = log.tail$(51).subscribe({
      next: (es) => {
        chunks++
        for (const e of es) seen.push(e.seq)
        if (seen[seen.length - 1] === 3000) { sub.unsubscribe(); resolve() }
      },
      error: reject
    })
  })
  // Appends while the stored part is being read (it takes several chunks of 1000).
  for (let i = 25; i < 30; i++) await log.append(facts(i * 100 + 1, i * 100 + 100))
  await done
  t.same(seen, Array.from({ length: 2950 }, (_, i) => i + 51), 'every entry from 51 on, once, in order')
  t.ok(chunks >= 3, `read in chunks (${chunks})`)

  // A tail started at the end sees only live entries, and completes when the log closes.
  const later: number[] = []
  let completed = false
  log.tail$(log.last + 1).subscribe({ next: (es) => later.push(...seqs(es)), complete: () => { completed = true } })
  await new Promise((resolve) => setTimeout(resolve, 20))
  await log.append(facts(3001, 3001))
  t.same(later, [3001])
  await log.close()
  t.ok(completed)
})

t.test('close refuses new appends, finishes queued ones, completes live$', async (t) => {
  const { log } = await open(t)
  let completed = false
  log.live$.subscribe({ complete: () => { completed = true } })
  const queued = log.append(facts(1, 1))
  const closing = log.close()
  t.same(seqs(await queued), [1], 'an append asked for before close() is finished')
  await closing
  t.ok(completed)
  await t.rejects(log.append(facts(2, 2)), { code: 'CLOSED' })
  await log.close()
})
