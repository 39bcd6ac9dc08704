// The patchswarm/1 wire protocol over real Noise secret streams (in-process) and real hyperswarm
// connections on a local DHT testnet, with real enrollment certificates. Hostile peers speak
// protomux directly so they can break every rule.
import t from 'tap'
import Hyperswarm, { type SwarmConnection } from 'hyperswarm'
import HyperDHT from 'hyperdht'
import createTestnet from 'hyperdht/testnet.js'
import { PatchswarmError } from '../../lib/errors.js'
import { Bitfield } from '../../lib/swarm/bitfield.js'
import { PeerChannel, DEFAULT_LIMITS, type ChunkData, type ChunkRequest } from '../../lib/swarm/protocol.js'
import {
  DIGEST, DIGEST2, Hostile, channelPair, closed, collectGarbage, delay, hostilePair, member, options, streamClosed, streamPair
} from './protocol-helpers.js'

function code (err: unknown): string | undefined {
  return (err as { code?: string } | null)?.code
}

function digestOf (n: number): string {
  return n.toString(16).padStart(64, '0')
}

t.test('Bitfield', async (t) => {
  const b = new Bitfield(21)
  t.equal(b.count(), 0)
  t.equal(b.firstMissing(), 0)
  t.equal(b.firstSet(), -1)
  t.equal(b.set(0), true)
  t.equal(b.set(0), false, 'setting twice changes nothing')
  b.set(9); b.set(20)
  t.same([...b], [0, 9, 20], 'iterates set bits in order')
  t.equal(b.count(), 3)
  t.equal(b.firstMissing(), 1)
  t.equal(b.firstSet(1), 9)
  t.equal(b.firstSet(10), 20)
  t.equal(b.get(9), true)
  t.equal(b.get(10), false)
  t.equal(b.set(9, false), true)
  t.equal(b.count(), 2)
  const bytes = b.toBytes()
  t.equal(bytes.byteLength, 3)
  const copy = Bitfield.fromBytes(bytes, 21)
  t.same([...copy], [0, 20])
  bytes[0] = 0xff
  t.same([...copy], [0, 20], 'fromBytes copies')
  t.throws(() => Bitfield.fromBytes(Uint8Array.of(0, 0, 0x20), 21), { code: 'BAD_ENCODING' }, 'garbage past the length')
  t.throws(() => Bitfield.fromBytes(Uint8Array.of(0, 0), 21), { code: 'BAD_ENCODING' }, 'too short')
  t.throws(() => Bitfield.fromBytes(Uint8Array.of(0, 0, 0, 0), 21), { code: 'BAD_ENCODING' }, 'too long')
  t.throws(() => b.get(21), { code: 'BAD_ARGUMENT' })
  t.throws(() => b.set(-1), { code: 'BAD_ARGUMENT' })
  t.throws(() => new Bitfield(1.5), { code: 'BAD_ARGUMENT' })

  const full = Bitfield.full(21)
  t.equal(full.count(), 21)
  t.ok(full.isFull())
  t.equal(full.firstMissing(), -1)
  t.same(full.toBytes(), Uint8Array.of(0xff, 0xff, 0x1f))
  full.set(17, false)
  t.equal(full.firstMissing(), 17)
  t.equal(full.firstMissing(18), -1)
  t.equal(new Bitfield(0).firstMissing(), -1)
  t.same([...Bitfield.full(8)], [0, 1, 2, 3, 4, 5, 6, 7])
  t.equal(Bitfield.full(8).clone().count(), 8)

  // a large one stays fast: 8 M bits, set every third, count and scan
  const big = new Bitfield(8 * 1024 * 1024)
  for (let i = 0; i < big.length; i += 3) big.set(i)
  t.equal(big.count(), Math.ceil(big.length / 3))
  t.equal(big.firstMissing(), 1)
  let n = 0
  for (const _ of big) n++ // eslint-disable-line @typescript-eslint/no-unused-vars
  t.equal(n, big.count())
})

t.test('handshake, then every message type in both directions', async (t) => {
  const { a, b, ma, mb } = await channelPair()
  t.equal(a.remote, null, 'no identity before the hello verified')
  t.throws(() => a.want(DIGEST), { code: 'PROTOCOL_ERROR' }, 'nothing is sent before the remote hello verified')
  const opens: unknown[] = []
  b.on('open', (id) => opens.push(id))
  const [ia, ib] = await Promise.all([a.opened, b.opened])
  t.equal(ia.keyid, mb.keyPair.publicKey.toString('hex'), 'a sees b')
  t.equal(ib.keyid, ma.keyPair.publicKey.toString('hex'), 'b sees a')
  t.match(ia, { org: 'acme', tenant: 'msp-1/customer-a', site: 'vienna', role: 'endpoint' })
  t.same(opens, [ib], "'open' event carries the identity")
  t.equal(a.remote, ia)
  t.match(a.remoteLimits, { version: 1, maxMessageBytes: DEFAULT_LIMITS.maxMessageBytes, maxRequests: 64, maxPackages: 1024 })

  const seen: unknown[] = []
  for (const ev of ['want', 'have', 'have-chunk', 'request', 'data', 'reject', 'cancel', 'control'] as const) {
    a.on(ev, (...args: unknown[]) => seen.push(['a', ev, ...args]))
    b.on(ev, (...args: unknown[]) => seen.push(['b', ev, ...args]))
  }
  const chunk = Buffer.alloc(256 * 1024, 7)
  b.on('request', (r: ChunkRequest) => {
    if (r.index === 3) b.data(r.id, r.digest, r.index, chunk)
    else b.reject(r.id)
  })
  const gotData = new Promise<ChunkData>((resolve) => a.once('data', resolve))
  const gotReject = new Promise<number>((resolve) => a.once('reject', resolve))
  const gotControl = new Promise<[number, Uint8Array]>((resolve) => b.once('control', (k, p) => resolve([k, p])))

  const bits = new Bitfield(10)
  bits.set(1); bits.set(9)
  a.want(DIGEST)
  b.have(DIGEST, Bitfield.full(10))
  a.have(DIGEST, bits)
  a.haveChunk(DIGEST, 2)
  const id = a.request(DIGEST, 3)
  const id2 = a.request(DIGEST, 4)
  t.equal(a.outstanding(), 2, 'our requests are tracked')
  a.control(5, Buffer.from('{"ack":1}'))
  const data = await gotData
  t.equal(data.id, id)
  t.equal(data.index, 3)
  t.equal(data.digest, DIGEST)
  t.same(Buffer.from(data.bytes), chunk, 'the chunk arrived intact')
  t.equal(await gotReject, id2)
  t.equal(a.outstanding(), 0, 'answered requests are no longer outstanding')
  const [kind, payload] = await gotControl
  t.equal(kind, 5)
  t.equal(Buffer.from(payload).toString(), '{"ack":1}')

  // a cancel reaches the remote while it still holds the request
  b.removeAllListeners('request')
  const held = new Promise<ChunkRequest>((resolve) => b.once('request', resolve))
  const id3 = a.request(DIGEST2, 0)
  const r3 = await held
  t.equal(b.remoteOutstanding(), 1)
  const gotCancel = new Promise<number>((resolve) => b.once('cancel', resolve))
  t.equal(a.cancel(id3), true)
  t.equal(a.cancel(id3), false, 'a second cancel does nothing')
  t.equal(await gotCancel, id3)
  t.equal(b.remoteOutstanding(), 0, 'the cancel freed the slot')
  t.equal(b.data(r3.id, r3.digest, r3.index, chunk), false, 'answering a cancelled request sends nothing')
  t.throws(() => b.data(999, DIGEST, 0, chunk), { code: 'UNSOLICITED' }, 'answering a request never made throws')
  t.throws(() => b.reject(998), { code: 'UNSOLICITED' })

  const events = seen.map((e) => (e as unknown[]).slice(0, 2).join(' '))
  for (const e of ['b want', 'a have', 'b have', 'b have-chunk', 'b request', 'a data', 'a reject', 'b control']) {
    t.ok(events.includes(e), `delivered: ${e}`)
  }
  const haveOnB = seen.find((e) => (e as unknown[])[0] === 'b' && (e as unknown[])[1] === 'have') as [string, string, string, Bitfield]
  t.same([...haveOnB[3]], [1, 9], 'the bitfield arrived intact')
  const chunkOnB = seen.find((e) => (e as unknown[])[1] === 'have-chunk') as unknown[]
  t.same(chunkOnB.slice(2), [DIGEST, 2])

  // counters for accounting
  t.equal(a.stats.received.data.messages, 1)
  t.ok(a.stats.received.data.bytes > chunk.byteLength, 'data bytes counted on receipt')
  t.equal(b.stats.sent.data.bytes, a.stats.received.data.bytes, 'sent and received agree')
  t.equal(a.stats.sent.request.messages, 3)
  t.equal(b.stats.received.request.messages, 3)
  t.equal(a.stats.sent.hello.messages, 1)
  t.equal(b.stats.received.control.messages, 1)

  // local checks never reach the wire
  t.throws(() => a.request('nope', 0), { code: 'BAD_ARGUMENT' })
  t.throws(() => a.request(DIGEST, 10), { code: 'BAD_ARGUMENT' }, "past the remote's bitfield")
  t.throws(() => a.have(DIGEST, new Bitfield(11)), { code: 'BAD_ARGUMENT' }, 'a bitfield does not change length')
  t.throws(() => a.control(1, Buffer.alloc(2 * 1024 * 1024)), { code: 'MESSAGE_TOO_LARGE' }, 'we do not send what the remote refuses')
  t.equal(a.closed, false, 'local mistakes do not close the connection')

  const ca = closed(a)
  const cb = closed(b)
  await a.close()
  t.equal(await ca, null, 'a closed cleanly')
  t.equal(code(await cb), 'CLOSED', 'b saw the connection go')
  t.throws(() => a.want(DIGEST), { code: 'CLOSED' }, 'sending after close throws CLOSED')
  t.throws(() => b.request(DIGEST, 0), { code: 'CLOSED' })
  await a.close() // idempotent
})

t.test('our own request limit follows what the remote announced', async (t) => {
  const { a, b } = await channelPair({}, { maxRemoteRequests: 3 })
  await Promise.all([a.opened, b.opened])
  t.equal(a.requestCapacity, 3)
  for (let i = 0; i < 3; i++) a.request(DIGEST, i)
  t.throws(() => a.request(DIGEST, 3), { code: 'FLOOD' })
  t.equal(a.closed, false)
  await a.close()
})

t.test('a certificate the verifier rejects: both ends closed, nothing delivered, opened rejects with the code', async (t) => {
  for (const [label, make, expected] of [
    ['another organisation', () => member({ org: 'evil-corp' }), 'WRONG_ORGANISATION'],
    ['a stolen certificate', async () => ({ ...(await member()), keyPair: (await member()).keyPair }), 'WRONG_HOLDER']
  ] as const) {
    const good = await member()
    const bad = await make()
    const [sg, sb] = streamPair(good.keyPair, bad.keyPair)
    const g = PeerChannel.attach(sg, options(good))
    const intruder = PeerChannel.attach(sb, options(bad))
    const delivered: string[] = []
    for (const ev of ['want', 'have', 'request', 'control', 'open'] as const) g.on(ev, () => delivered.push(ev))
    // the intruder verifies us fine and starts talking at once
    intruder.opened.then(() => { intruder.want(DIGEST); intruder.request(DIGEST, 0); intruder.control(1, Buffer.from('x')) }).catch(() => {})
    const gClosed = closed(g)
    const iClosed = closed(intruder)
    await t.rejects(g.opened, { code: expected }, `${label}: opened rejects with ${expected}`)
    t.equal(code(await gClosed), expected, `${label}: closed with ${expected}`)
    await iClosed
    await Promise.all([streamClosed(sg), streamClosed(sb)])
    t.ok(sg.destroyed && sb.destroyed, `${label}: both ends of the connection are closed`)
    t.same(delivered, [], `${label}: nothing was delivered`)
    t.equal(g.remote, null)
  }
})

t.test('a hostile peer whose hello and messages arrive in one batch: nothing after the refused hello is delivered', async (t) => {
  const good = await member()
  const bad = await member({ org: 'evil-corp' })
  const [sg, sb] = streamPair(good.keyPair, bad.keyPair)
  const g = PeerChannel.attach(sg, options(good))
  const delivered: string[] = []
  for (const ev of ['want', 'have', 'request', 'control', 'open'] as const) g.on(ev, () => delivered.push(ev))
  const Protomux = (await import('protomux')).default
  const mux = Protomux.from(sb)
  mux.cork()
  const h = new Hostile(sb, bad)
  h.send('want', { digest: DIGEST })
  h.send('request', { id: 1, digest: DIGEST, index: 0 })
  h.send('control', { kind: 1, payload: Buffer.from('x') })
  mux.uncork()
  await t.rejects(g.opened, { code: 'WRONG_ORGANISATION' })
  await streamClosed(sb)
  t.same(delivered, [], 'nothing was delivered')
  t.equal(g.stats.received.want.messages, 1, 'the batch did arrive')
})

t.test('no hello within the timeout, or a peer of another protocol version: closed', async (t) => {
  const ma = await member()
  const mb = await member()
  {
    const [sa, sb] = streamPair(ma.keyPair, mb.keyPair)
    sb.on('error', () => {})
    sb.resume() // a peer that completes Noise but never speaks
    const started = Date.now()
    const a = PeerChannel.attach(sa, options(ma, { handshakeTimeoutMs: 300 }))
    await t.rejects(a.opened, { code: 'HANDSHAKE_FAILED' })
    t.ok(Date.now() - started >= 280, 'after the timeout')
    await Promise.all([streamClosed(sa), streamClosed(sb)])
    t.ok(sb.destroyed, 'the silent peer was disconnected')
  }
  {
    const [sa, sb] = streamPair(ma.keyPair, mb.keyPair)
    const a = PeerChannel.attach(sa, options(ma))
    const other = new Hostile(sb, mb, { protocol: 'patchswarm/2' })
    t.ok(other)
    const started = Date.now()
    await t.rejects(a.opened, { code: 'HANDSHAKE_FAILED' }, 'a patchswarm/2 peer never pairs')
    t.ok(Date.now() - started < 5000, 'without waiting for the timeout')
  }
  {
    // a hello that does not even decode
    const [sa, sb] = streamPair(ma.keyPair, mb.keyPair)
    const a = PeerChannel.attach(sa, options(ma))
    const Protomux = (await import('protomux')).default
    const ch = Protomux.from(sb).createChannel({ protocol: 'patchswarm/1' })
    ch?.open()
    await t.rejects(a.opened, { code: 'HANDSHAKE_FAILED' }, 'an empty hello')
  }
})

t.test('unsolicited data closes the connection; data right after our own cancel is tolerated', async (t) => {
  {
    const { victim, hostile } = await hostilePair()
    await victim.opened
    const c = closed(victim)
    hostile.send('data', { id: 7, digest: DIGEST, index: 0, bytes: Buffer.alloc(100) })
    t.equal(code(await c), 'UNSOLICITED')
  }
  {
    // data for a request we made, but for another chunk
    const { victim, hostile } = await hostilePair()
    await victim.opened
    const id = victim.request(DIGEST, 1)
    const c = closed(victim)
    hostile.send('data', { id, digest: DIGEST, index: 2, bytes: Buffer.alloc(100) })
    t.equal(code(await c), 'UNSOLICITED', 'a chunk other than asked for')
  }
  {
    // answered twice
    const { victim, hostile } = await hostilePair()
    await victim.opened
    const id = victim.request(DIGEST, 1)
    let delivered = 0
    victim.on('data', () => delivered++)
    const c = closed(victim)
    hostile.send('data', { id, digest: DIGEST, index: 1, bytes: Buffer.alloc(100) })
    hostile.send('data', { id, digest: DIGEST, index: 1, bytes: Buffer.alloc(100) })
    t.equal(code(await c), 'UNSOLICITED', 'a second answer is unsolicited')
    t.equal(delivered, 1)
  }
  {
    // a real remote that answers at once: our cancel crosses its data
    const { a, b } = await channelPair()
    await Promise.all([a.opened, b.opened])
    const answered: number[] = []
    b.on('request', (r) => { answered.push(r.id); b.data(r.id, r.digest, r.index, Buffer.alloc(1000, 1)) })
    const late = a.request(DIGEST, 0)
    t.equal(a.cancel(late), true)
    t.equal(a.outstanding(), 0)
    const next = new Promise<ChunkData>((resolve) => a.once('data', resolve))
    let unexpected = 0
    a.on('data', (d) => { if (d.id === late) unexpected++ })
    const id = a.request(DIGEST, 1)
    const d = await next
    t.equal(d.id, id, 'the connection lives on')
    t.same(answered, [late, id], 'the remote had answered the cancelled request')
    t.equal(unexpected, 0, 'the late data was not delivered')
    t.equal(a.stats.discarded.messages, 1, 'but counted as discarded')
    t.equal(a.stats.discarded.bytes, 1000)
    t.equal(a.closed, false)
    await a.close()
  }
  {
    // the tolerance is one answer per cancelled request, within the grace period
    const { victim, hostile } = await hostilePair({ cancelGraceMs: 100 })
    await victim.opened
    const id1 = victim.request(DIGEST, 1)
    const id2 = victim.request(DIGEST, 2)
    victim.cancel(id1)
    victim.cancel(id2)
    hostile.send('data', { id: id1, digest: DIGEST, index: 1, bytes: Buffer.alloc(10) })
    await delay(200)
    t.equal(victim.closed, false, 'one late answer is fine')
    const c = closed(victim)
    hostile.send('reject', { id: id2 })
    t.equal(code(await c), 'UNSOLICITED', 'an answer after the grace period is not')
  }
  {
    // a reject crossing our cancel is tolerated too; the memory of cancelled ids is bounded
    const { victim, hostile } = await hostilePair({}, { limits: { maxRequests: 2 } })
    await victim.opened
    const ids: number[] = []
    for (let round = 0; round < 4; round++) {
      const pair = [victim.request(DIGEST, 0), victim.request(DIGEST, 1)]
      for (const id of pair) victim.cancel(id)
      ids.push(...pair)
    }
    t.equal(victim.footprint().cancelled, 4, 'at most twice the request capacity is remembered')
    hostile.send('reject', { id: ids[7]! })
    await delay(20)
    t.equal(victim.closed, false, 'a reject right after our cancel is fine')
    const c = closed(victim)
    hostile.send('data', { id: ids[0]!, digest: DIGEST, index: 0, bytes: Buffer.alloc(1) })
    t.equal(code(await c), 'UNSOLICITED', 'an answer to a long-forgotten request is not')
  }
})

t.test('an oversized message closes the connection before it is decoded, and is not retained', async (t) => {
  for (const name of ['control', 'data'] as const) {
    const { victim, hostile, sv } = await hostilePair()
    await victim.opened
    let ref: WeakRef<Uint8Array> | null = null
    sv.on('data', (frame: Uint8Array) => { if (frame.byteLength > 1024 * 1024) ref = new WeakRef(frame) })
    let delivered = 0
    victim.on(name, () => delivered++)
    const c = closed(victim)
    const big = Buffer.alloc(2 * 1024 * 1024, 1)
    if (name === 'control') hostile.send('control', { kind: 1, payload: big })
    else hostile.send('data', { id: victim.request(DIGEST, 0), digest: DIGEST, index: 0, bytes: big })
    t.equal(code(await c), 'MESSAGE_TOO_LARGE', `a 2 MiB ${name}`)
    t.equal(delivered, 0)
    t.ok(victim.stats.received[name].bytes >= big.byteLength, 'counted on arrival')
    t.ok(ref !== null, 'the frame did arrive')
    await delay(10)
    collectGarbage()
    await delay(10)
    collectGarbage()
    t.equal((ref as WeakRef<Uint8Array> | null)?.deref(), undefined, 'the 2 MiB frame was collected')
  }
})

t.test('a request flood closes the connection; the maps never exceed the limit', async (t) => {
  const { victim, hostile } = await hostilePair()
  await victim.opened
  let requests = 0
  let max = 0
  victim.on('request', () => {
    requests++
    max = Math.max(max, victim.footprint().remoteRequests)
  })
  const c = closed(victim)
  hostile.channel.cork()
  for (let i = 1; i <= 10_000; i++) hostile.send('request', { id: i, digest: DIGEST, index: i % 100 })
  hostile.channel.uncork()
  t.equal(code(await c), 'FLOOD')
  t.equal(requests, DEFAULT_LIMITS.maxRemoteRequests, 'closed at the first request over the limit')
  t.ok(max <= DEFAULT_LIMITS.maxRemoteRequests, `never more than the limit held (${max})`)
  t.same(victim.footprint(), { outstanding: 0, remoteRequests: 0, remotePackages: 0, localPackages: 0, cancelled: 0 }, 'everything released')
})

t.test('a flood of distinct packages closes the connection; the maps never exceed the limit', async (t) => {
  for (const via of ['want', 'have', 'have-chunk', 'request'] as const) {
    const { victim, hostile } = await hostilePair({ maxRemoteRequests: 100_000 })
    await victim.opened
    let events = 0
    let max = 0
    victim.on(via, () => {
      events++
      max = Math.max(max, victim.footprint().remotePackages)
    })
    const c = closed(victim)
    for (let i = 0; i < 10_000; i++) {
      const digest = digestOf(i)
      if (via === 'want') hostile.send('want', { digest })
      else if (via === 'have') hostile.send('have', { digest, bitfield: new Bitfield(8) })
      else if (via === 'have-chunk') hostile.send('have-chunk', { digest, index: 0 })
      else hostile.send('request', { id: i + 1, digest, index: 0 })
    }
    t.equal(code(await c), 'FLOOD', `10 000 digests by ${via}`)
    t.equal(events, DEFAULT_LIMITS.maxPackagesAnnounced, `${via}: closed at the first digest over the limit`)
    t.ok(max <= DEFAULT_LIMITS.maxPackagesAnnounced, `${via}: never more than the limit held (${max})`)
    t.equal(victim.footprint().remotePackages, 0)
  }
})

t.test('malformed messages close the connection', async (t) => {
  const cases: Array<[string, (h: Hostile) => void, string]> = [
    ['truncated request', (h) => h.sendRaw('request', Uint8Array.of(1, 2, 3)), 'PROTOCOL_ERROR'],
    ['empty want', (h) => h.sendRaw('want', new Uint8Array(0)), 'PROTOCOL_ERROR'],
    ['trailing bytes after a cancel', (h) => h.sendRaw('cancel', Uint8Array.of(1, 0)), 'PROTOCOL_ERROR'],
    ['a 9-byte varint id', (h) => h.sendRaw('cancel', Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)), 'PROTOCOL_ERROR'],
    ['bitfield with garbage past its length', (h) => h.sendRaw('have', Buffer.concat([Buffer.from(DIGEST, 'hex'), Uint8Array.of(3, 0xff)])), 'PROTOCOL_ERROR'],
    ['a huge claimed bitfield length', (h) => h.sendRaw('have', Buffer.concat([Buffer.from(DIGEST, 'hex'), Uint8Array.of(0xfe, 0, 0, 0, 0x80, 0xff)])), 'PROTOCOL_ERROR'],
    ['bitfield shorter than its length', (h) => h.sendRaw('have', Buffer.concat([Buffer.from(DIGEST, 'hex'), Uint8Array.of(20, 0xff)])), 'PROTOCOL_ERROR'],
    ['have-chunk past the bitfield', (h) => { h.send('have', { digest: DIGEST, bitfield: new Bitfield(10) }); h.send('have-chunk', { digest: DIGEST, index: 10 }) }, 'PROTOCOL_ERROR'],
    ['bitfield that changes length', (h) => { h.send('have', { digest: DIGEST, bitfield: new Bitfield(10) }); h.send('have', { digest: DIGEST, bitfield: new Bitfield(11) }) }, 'PROTOCOL_ERROR'],
    ['duplicate request id', (h) => { h.send('request', { id: 1, digest: DIGEST, index: 0 }); h.send('request', { id: 1, digest: DIGEST, index: 1 }) }, 'PROTOCOL_ERROR'],
    ['reject of nothing', (h) => h.send('reject', { id: 3 }), 'UNSOLICITED']
  ]
  for (const [label, misbehave, expected] of cases) {
    const { victim, hostile } = await hostilePair()
    await victim.opened
    const c = closed(victim)
    misbehave(hostile)
    t.equal(code(await c), expected, label)
  }
  {
    // a request for a chunk past the bitfield we announced
    const { victim, hostile } = await hostilePair()
    await victim.opened
    victim.have(DIGEST, new Bitfield(4))
    const c = closed(victim)
    hostile.send('request', { id: 1, digest: DIGEST, index: 4 })
    t.equal(code(await c), 'PROTOCOL_ERROR', 'request past our bitfield')
  }
})

t.test('a thrown verifier error without a code is wrapped; destroy(err) is the reason on both promises', async (t) => {
  const ma = await member()
  const mb = await member()
  const [sa, sb] = streamPair(ma.keyPair, mb.keyPair)
  const a = PeerChannel.attach(sa, { certificate: ma.certificate, verifyCertificate: () => { throw new Error('nope') } })
  PeerChannel.attach(sb, options(mb))
  await t.rejects(a.opened, { code: 'HANDSHAKE_FAILED' })

  const { a: x, b: y } = await channelPair()
  const cx = closed(x)
  const cy = closed(y)
  x.destroy(PatchswarmError.HASH_MISMATCH('peer sent a bad chunk'))
  await t.rejects(x.opened, { code: 'HASH_MISMATCH' })
  t.equal(code(await cx), 'HASH_MISMATCH')
  await cy

  const late = PeerChannel.attach(sa, options(ma))
  t.equal(code(await closed(late)), 'CLOSED', 'attaching to a closed connection gives a closed channel')
  await t.rejects(late.opened, { code: 'CLOSED' })

  const [s1, s2] = streamPair(ma.keyPair, mb.keyPair)
  t.throws(() => PeerChannel.attach(s1, { ...options(ma), limits: { maxRemoteRequests: 0 } }), { code: 'BAD_ARGUMENT' }, 'bad limits')
  t.throws(() => PeerChannel.attach(s1, { ...options(ma), certificate: 'x' as never }), { code: 'BAD_ARGUMENT' }, 'a certificate is bytes')
  const first = PeerChannel.attach(s1, options(ma))
  t.throws(() => PeerChannel.attach(s1, options(ma)), { code: 'BAD_ARGUMENT' }, 'one channel per connection')
  s2.on('error', () => {})
  await first.close()
})

t.test('over real hyperswarm connections on a local testnet', async (t) => {
  const testnet = await createTestnet(3, { host: '127.0.0.1' })
  t.teardown(() => testnet.destroy())
  const members = [await member(), await member(), await member({ org: 'evil-corp' })]
  const swarms = members.map((m) => {
    const swarm = new Hyperswarm({
      keyPair: m.keyPair,
      dht: new HyperDHT({ bootstrap: testnet.bootstrap, host: '127.0.0.1', firewalled: false })
    })
    t.teardown(async () => { await swarm.destroy(); if (!swarm.dht.destroyed) await swarm.dht.destroy() })
    return swarm
  })
  const channels: PeerChannel[][] = members.map(() => [])
  const heard: string[][] = members.map(() => [])
  swarms.forEach((swarm, i) => {
    swarm.on('connection', (conn: SwarmConnection) => {
      const ch = PeerChannel.attach(conn, options(members[i]!))
      channels[i]!.push(ch)
      for (const ev of ['want', 'have', 'have-chunk', 'request', 'data', 'control'] as const) ch.on(ev, () => heard[i]!.push(ev))
      // the origin tells every verified peer what it has
      if (i === 0) ch.opened.then(() => ch.have(DIGEST, Bitfield.full(4)), () => {})
    })
  })
  const topic = Buffer.alloc(32, 0x5a)
  const origin = swarms[0]!.join(topic, { server: true, client: false })
  await origin.flushed()
  for (const s of swarms.slice(1)) await s.join(topic, { server: false, client: true }).flushed()

  const waitFor = async (pred: () => boolean): Promise<void> => {
    const until = Date.now() + 20_000
    while (!pred()) {
      if (Date.now() > until) throw new Error('timed out')
      await delay(20)
    }
  }
  await waitFor(() => channels[1]!.length > 0 && channels[2]!.length > 0 && channels[0]!.length >= 2)

  // the member and the origin see each other and move a chunk
  const client = channels[1]![0]!
  const identity = await client.opened
  t.equal(identity.keyid, members[0]!.keyPair.publicKey.toString('hex'), 'the client sees the origin')
  const server = channels[0]!.find((ch) => ch.remote?.keyid === members[1]!.keyPair.publicKey.toString('hex'))
  t.ok(server, 'the origin sees the client')
  const chunk = Buffer.alloc(1024 * 1024, 3)
  server!.on('request', (r) => server!.data(r.id, r.digest, r.index, chunk))
  await waitFor(() => heard[1]!.includes('have'))
  const got = new Promise<ChunkData>((resolve) => client.once('data', resolve))
  client.request(DIGEST, 2)
  const d = await got
  t.same(Buffer.from(d.bytes), chunk, 'a 1 MiB chunk crossed a real connection')

  // the outsider is dropped by the origin with the verifier's code and never hears anything
  const outsider = channels[2]![0]!
  await waitFor(() => outsider.closed)
  const refused = channels[0]!.find((ch) => ch !== server)
  await t.rejects(refused!.opened, { code: 'WRONG_ORGANISATION' }, 'the origin refused the outsider')
  t.same(heard[2], [], 'the outsider heard nothing')
})
