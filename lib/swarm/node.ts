// A swarm node: joins its organisation's topic, checks every peer's enrollment certificate, serves
// the chunks it holds (complete packages and ones still arriving) and fetches packages chunk by
// chunk with the scheduler. Its store (a PackageStore) verifies every chunk against the manifest
// before keeping it and re-hashes it before it is served; a peer that sends a bad one is banned
// for a while.
import { EventEmitter } from 'node:events'
import type Hyperswarm from 'hyperswarm'
import type { SwarmConnection, PeerDiscovery } from 'hyperswarm'
import { PatchswarmError } from '../errors.js'
import { type KeyPair, keyIdOf } from '../crypto/keys.js'
import type { PackageReceive, PackageReader, Manifest } from '../content/index.js'
import { manifestDigest } from '../content/index.js'
import { type RootDocument, type PeerIdentity, parseEnvelope, verifyCertificate, isWithinTenant } from '../trust/index.js'
import { createSwarm, destroySwarm, organisationTopic, type Bootstrap } from './transport.js'
import { PeerChannel, type ProtocolLimits, type ChunkData } from './protocol.js'
import { Bitfield } from './bitfield.js'
import { ChunkScheduler, type SchedulerOptions } from './scheduler.js'
import { BanList } from './bans.js'
import { SuperSeeding } from './super-seeding.js'
import { BufferPool, Turns } from './buffer-pool.js'
import type { Courtesy } from './courtesy.js'
import type { Accounting, TrafficSource } from './accounting.js'

/**
 * What a node asks of its store. PackageStore is the one to use; bench/throughput also runs the
 * node over a store that verifies and keeps nothing, to show what the protocol alone costs.
 */
export interface NodeStore {
  has (digest: string): Promise<boolean>
  receive (manifest: Manifest): Promise<NodeReceive>
  reader (digest: string): Promise<NodeReader>
}
export type NodeReceive = Pick<PackageReceive, 'committed' | 'progress' | 'failure' | 'hasChunk' | 'readChunk' | 'putChunk' | 'commit'>
export type NodeReader = Pick<PackageReader, 'manifest' | 'readChunk' | 'close'>

export interface SwarmNodeOptions {
  /** This node's identity; its public key is what its certificate names. */
  keyPair: KeyPair
  /** Our console-signed enrollment certificate (a serialized envelope). */
  certificate: Uint8Array
  /** The root we trust right now (it may rotate while the node runs). */
  root: () => RootDocument
  store: NodeStore
  bootstrap: Bootstrap
  host?: string
  /** False when this node is directly reachable (no NAT): peers connect without hole-punching. */
  firewalled?: boolean
  courtesy?: Courtesy
  accounting?: Accounting
  now?: () => number
  /** How long a peer that sent a bad chunk stays banned. Default 10 minutes. */
  banMs?: number
  /** How long a peer dropped for timing out again and again stays away. Default 15 s. */
  slowBanMs?: number
  /** Origin only: how long a chunk it served is left to the peers before it serves it again. */
  originReserveMs?: number
  /** Origin only: a peer still asking for a chunk after this long gets it, even if others hold it. */
  originFallbackMs?: number
  limits?: Partial<ProtocolLimits>
  scheduler?: Partial<Pick<SchedulerOptions, 'requestTimeoutMs' | 'siteGraceMs' | 'rejectBackoffMs' | 'maxPipeline'>>
}

interface Peer {
  key: string
  identity: PeerIdentity
  channel: PeerChannel
  sameSite: boolean
  /** Packages the peer told us it wants: we tell it about new chunks of those. */
  interest: Set<string>
  /** Our requests to this peer: id → chunk. */
  requests: Map<number, { digest: string, index: number }>
  /** Its requests we are still working on; a cancel aborts the wait for upload budget. */
  serving: Map<number, AbortController>
  /** What it told us it has, per package. */
  has: Map<string, Bitfield>
  /** The last ping's round trip, for roundTrips(); null until the first pong. */
  rttMs: number | null
  /** Turns at reading a chunk and handing it to the connection, one at a time. */
  sending: Turns
}

/** What a fetch moved: bytes by source, and what was already on disk (earlier versions, a resume). */
export interface FetchResult {
  digest: string
  size: number
  /** Bytes copied from packages already in the store, or kept from an interrupted fetch. */
  local: number
  received: Record<TrafficSource, number>
}

interface Download {
  digest: string
  manifest: Manifest
  rx: NodeReceive
  /** What peers are served from while the package arrives (built once, not per request). */
  source: Source
  sched: ChunkScheduler
  result: FetchResult
  done: Promise<FetchResult>
  settle: { resolve: (r: FetchResult) => void, reject: (err: Error) => void }
  timer: NodeJS.Timeout
  /** A pump is queued for this turn of the event loop. */
  pumping: boolean
}

/** A package this node can serve chunks of. */
interface Source {
  manifest: Manifest
  hasChunk (index: number): boolean
  /** With `into` (at least the chunk's size), may read into it and return a view of it. */
  readChunk (index: number, into?: Buffer): Promise<Buffer>
  close? (): Promise<void>
}

const TICK_MS = 100
const QUEUE_SECONDS = 1
const PING_MS = 1000

/** Kinds of control messages. Releases, directives and reports (later) take kinds from 16 up. */
export const CONTROL = { PING: 0, PONG: 1 } as const

export class SwarmNode extends EventEmitter {
  readonly keyPair: KeyPair
  readonly keyid: string
  readonly bans: BanList
  private readonly opts: SwarmNodeOptions
  private readonly now: () => number
  private swarm: Hyperswarm | null = null
  private discovery: PeerDiscovery | null = null
  private identity: PeerIdentity | null = null
  private readonly peers = new Map<string, Peer>()
  private readonly downloads = new Map<string, Download>()
  private readonly complete = new Map<string, Source>()
  /** Packages this node offers whole (the origin keeps track of who else has them). */
  private readonly seeding = new Set<string>()
  private opening: Promise<void> | null = null
  private closing: Promise<void> | null = null
  private pinger: NodeJS.Timeout | null = null
  private readonly buffers = new BufferPool()
  private readonly superSeeding: SuperSeeding

  constructor (opts: SwarmNodeOptions) {
    super()
    this.opts = opts
    this.keyPair = opts.keyPair
    this.keyid = keyIdOf(opts.keyPair.publicKey)
    this.now = opts.now ?? Date.now
    this.bans = new BanList(this.now)
    this.superSeeding = new SuperSeeding({
      now: this.now,
      ...(opts.originReserveMs !== undefined ? { reserveMs: opts.originReserveMs } : {}),
      ...(opts.originFallbackMs !== undefined ? { fallbackMs: opts.originFallbackMs } : {})
    })
  }

  get role (): PeerIdentity['role'] { return this.requireIdentity().role }
  get site (): string | null { return this.requireIdentity().site }

  ready (): Promise<void> {
    this.opening ??= this.open()
    return this.opening
  }

  private async open (): Promise<void> {
    // Our own certificate must be one that peers will accept: fail here, clearly, if not.
    this.identity = verifyCertificate(this.opts.root(), parseEnvelope(this.opts.certificate), { now: new Date(this.now()), remotePublicKey: this.keyPair.publicKey })
    const swarm = createSwarm({
      keyPair: this.keyPair,
      bootstrap: this.opts.bootstrap,
      ...(this.opts.host ? { host: this.opts.host } : {}),
      ...(this.opts.firewalled !== undefined ? { firewalled: this.opts.firewalled } : {}),
      firewall: (remotePublicKey) => this.bans.isBanned(keyIdOf(remotePublicKey))
    })
    this.swarm = swarm
    swarm.on('connection', (conn) => this.onConnection(conn))
    this.discovery = swarm.join(organisationTopic(this.identity.org), { server: true, client: true })
    await this.discovery.flushed()
    // Round trips over every link feed the delay-based back-off: a queue building up on this
    // link (someone's video call suffering) shows as a growing round trip.
    this.pinger = setInterval(() => this.ping(), PING_MS)
    this.pinger.unref()
  }

  /**
   * Looks the topic up (and announces) again: peers that joined at the same instant may have
   * missed each other. Both flags stay on: a session's refresh() keeps the modes it is given, so
   * `server: false` would stop this node from being found at all.
   */
  async refresh (): Promise<void> {
    await this.discovery?.refresh({ client: true, server: true })
  }

  /** Connected peers that showed a valid certificate. */
  connectedPeers (): PeerIdentity[] {
    return [...this.peers.values()].map((p) => p.identity)
  }

  /** Makes a package already in the store available to peers. */
  async seed (digest: string): Promise<void> {
    await this.ready()
    if (!await this.sourceOf(digest)) throw PatchswarmError.NOT_FOUND(`package ${digest.slice(0, 12)}… is not in the store`)
    if (this.seeding.has(digest)) return
    this.seeding.add(digest)
    // The origin listens to what peers hold so it can leave chunks to them (super-seeding).
    if (this.requireIdentity().role === 'origin') for (const peer of this.peers.values()) if (!peer.channel.closed) peer.channel.want(digest)
  }

  /**
   * Fetches a package into the store: chunks already held are kept (a restart resumes), the rest
   * come from peers (same site first) and the origin last. Resolves once it is committed.
   */
  async fetch (manifest: Manifest): Promise<FetchResult> {
    await this.ready()
    const digest = manifestDigest(manifest)
    const running = this.downloads.get(digest)
    if (running) return running.done
    const result: FetchResult = { digest, size: manifest.size, local: manifest.size, received: { origin: 0, site: 0, peer: 0 } }
    if (await this.opts.store.has(digest)) return result

    const rx = await this.opts.store.receive(manifest)
    if (rx.committed) return result
    const progress = rx.progress
    result.local = progress.bytesDone
    let settle!: Download['settle']
    const done = new Promise<FetchResult>((resolve, reject) => { settle = { resolve, reject } })
    const dl: Download = {
      digest, manifest, rx, done, settle, result,
      source: { manifest, hasChunk: (i) => rx.hasChunk(i), readChunk: (i, into) => rx.readChunk(i, into) },
      sched: this.newScheduler(manifest, rx),
      timer: setInterval(() => this.tick(dl), TICK_MS),
      pumping: false
    }
    dl.timer.unref()
    this.downloads.set(digest, dl)
    for (const peer of this.peers.values()) this.join(dl, peer)
    this.maybeFinish(dl)
    this.pump(dl)
    return done
  }

  close (): Promise<void> {
    this.closing ??= this.shutdown()
    return this.closing
  }

  private async shutdown (): Promise<void> {
    await this.opening?.catch(() => {})
    if (this.pinger) clearInterval(this.pinger)
    for (const dl of this.downloads.values()) this.endDownload(dl, PatchswarmError.CLOSED('the swarm node closed'))
    for (const peer of this.peers.values()) peer.channel.destroy()
    if (this.swarm) await destroySwarm(this.swarm)
    for (const source of this.complete.values()) await source.close?.()
    this.complete.clear()
  }

  // ── connections ─────────────────────────────────────────────────────────────────────────

  private onConnection (conn: SwarmConnection): void {
    conn.on('error', () => {}) // a peer going away is routine; the channel reports why
    const channel = PeerChannel.attach(conn, {
      certificate: this.opts.certificate,
      verifyCertificate: (bytes, remotePublicKey) => this.checkPeer(bytes, remotePublicKey),
      ...(this.opts.limits ? { limits: this.opts.limits } : {})
    })
    this.emit('connection', { remotePublicKey: conn.remotePublicKey })
    channel.opened.then((identity) => this.onOpen(channel, conn, identity), (err: Error) => {
      this.emit('handshake-failed', { remotePublicKey: conn.remotePublicKey, error: err })
    })
  }

  private checkPeer (bytes: Uint8Array, remotePublicKey: Uint8Array): PeerIdentity {
    const identity = verifyCertificate(this.opts.root(), parseEnvelope(bytes), { now: new Date(this.now()), remotePublicKey })
    if (this.bans.isBanned(identity.keyid)) throw PatchswarmError.BANNED(`peer ${identity.keyid.slice(0, 12)}… is banned`)
    const mine = this.requireIdentity()
    // Tenants keep to themselves; a peer above or below us in the tree (an origin, an MSP) may talk.
    if (!isWithinTenant(identity.tenant, mine.tenant) && !isWithinTenant(mine.tenant, identity.tenant)) {
      throw PatchswarmError.FORBIDDEN(`peer ${identity.keyid.slice(0, 12)}… of tenant ${identity.tenant} is outside ${mine.tenant}`)
    }
    return identity
  }

  private onOpen (channel: PeerChannel, conn: SwarmConnection, identity: PeerIdentity): void {
    if (this.closing || this.peers.has(identity.keyid)) return channel.destroy()
    const mine = this.requireIdentity()
    const sameSite = this.inMySite(identity, conn.rawStream.remoteHost)
    const peer: Peer = { key: identity.keyid, identity, channel, sameSite, interest: new Set(), requests: new Map(), serving: new Map(), has: new Map(), rttMs: null, sending: new Turns() }
    this.peers.set(peer.key, peer)
    channel.on('want', (digest: string) => { this.onWant(peer, digest).catch((err) => this.misbehaved(peer, err)) })
    channel.on('have', (digest: string, bits: Bitfield) => this.onHave(peer, digest, bits))
    channel.on('have-chunk', (digest: string, index: number) => this.onHaveChunk(peer, digest, index))
    channel.on('request', (r: { id: number, digest: string, index: number }) => { this.serve(peer, r.id, r.digest, r.index).catch(() => {}) })
    channel.on('cancel', (id: number) => this.stopServing(peer, id))
    channel.on('data', (d: ChunkData) => { this.onData(peer, d).catch((err) => this.emit('warning', err)) })
    channel.on('reject', (id: number) => this.onReject(peer, id))
    channel.on('close', () => this.onClose(peer))
    channel.on('control', (kind: number, payload: Uint8Array) => this.onControl(peer, kind, payload))
    for (const dl of this.downloads.values()) this.join(dl, peer)
    if (mine.role === 'origin') for (const digest of this.seeding) channel.want(digest)
    this.emit('peer-open', identity)
  }

  private onClose (peer: Peer): void {
    for (const id of [...peer.serving.keys()]) this.stopServing(peer, id)
    if (this.peers.get(peer.key) !== peer) return
    this.superSeeding.forgetPeer(peer.key)
    this.peers.delete(peer.key)
    for (const dl of this.downloads.values()) {
      dl.sched.removePeer(peer.key)
      this.pump(dl)
    }
    this.emit('peer-close', peer.identity)
  }

  private join (dl: Download, peer: Peer): void {
    dl.sched.addPeer({ id: peer.key, origin: peer.identity.role === 'origin', sameSite: peer.sameSite })
    peer.channel.want(dl.digest)
  }

  /**
   * Sites the console named are compared by name; without names, peers behind the same public
   * address share a site. The origin is in nobody's site: fetching from it always crosses the WAN.
   */
  private inMySite (identity: PeerIdentity, remoteHost: string): boolean {
    const mine = this.requireIdentity()
    if (identity.role === 'origin' || mine.role === 'origin') return false
    if (mine.site !== null || identity.site !== null) return mine.site === identity.site
    return remoteHost === this.publicHost()
  }

  private publicHost (): string | null {
    return (this.swarm?.dht as unknown as { host?: string | null } | undefined)?.host ?? null
  }

  private ping (): void {
    const stamp = Buffer.alloc(8)
    stamp.writeDoubleBE(performance.now())
    for (const peer of this.peers.values()) if (!peer.channel.closed) peer.channel.control(CONTROL.PING, stamp)
  }

  private onControl (peer: Peer, kind: number, payload: Uint8Array): void {
    if (kind === CONTROL.PING) {
      if (payload.byteLength === 8 && !peer.channel.closed) peer.channel.control(CONTROL.PONG, payload)
    } else if (kind === CONTROL.PONG && payload.byteLength === 8) {
      const rtt = performance.now() - Buffer.from(payload.buffer, payload.byteOffset, 8).readDoubleBE(0)
      if (!(rtt >= 0 && rtt < 60_000)) return // not a stamp of ours
      peer.rttMs = rtt
      this.opts.courtesy?.upload.onDelaySample(rtt)
      this.opts.courtesy?.download.onDelaySample(rtt)
    }
    this.emit('control', { from: peer.identity, kind, payload })
  }

  /**
   * Sends a control message (kind ≥ 16: directives, reports, acknowledgements) to a connected peer.
   * False when that peer is not connected; the caller's outbox keeps the message for later.
   */
  sendControl (keyid: string, kind: number, payload: Uint8Array): boolean {
    if (kind < 16) throw PatchswarmError.BAD_ARGUMENT('control kinds below 16 belong to the swarm itself')
    const peer = this.peers.get(keyid)
    if (!peer || peer.channel.closed) return false
    peer.channel.control(kind, payload)
    return true
  }

  /** Round-trip time to each connected peer, from the last ping. */
  roundTrips (): Array<{ keyid: string, rttMs: number | null }> {
    return [...this.peers.values()].map((p) => ({ keyid: p.key, rttMs: p.rttMs }))
  }

  // ── serving ─────────────────────────────────────────────────────────────────────────────

  private async onWant (peer: Peer, digest: string): Promise<void> {
    peer.interest.add(digest)
    const source = await this.sourceOf(digest)
    if (!source) return
    const bits = new Bitfield(source.manifest.chunks.length)
    for (let i = 0; i < bits.length; i++) if (source.hasChunk(i)) bits.set(i)
    if (bits.count() > 0 && !peer.channel.closed) peer.channel.have(digest, bits)
  }

  private async sourceOf (digest: string): Promise<Source | null> {
    const dl = this.downloads.get(digest)
    if (dl) return dl.source
    let source = this.complete.get(digest)
    if (!source && await this.opts.store.has(digest)) {
      const reader = await this.opts.store.reader(digest)
      source = { manifest: reader.manifest, hasChunk: () => true, readChunk: (i, into) => reader.readChunk(i, into), close: () => reader.close() }
      this.complete.set(digest, source)
    }
    return source ?? null
  }

  private async serve (peer: Peer, id: number, digest: string, index: number): Promise<void> {
    const abort = new AbortController()
    const key = `${digest}:${index}`
    peer.serving.set(id, abort)
    let buffer: Buffer | null = null
    let release: (() => void) | null = null
    try {
      const courtesy = this.opts.courtesy
      const source = await this.sourceOf(digest)
      const size = source?.manifest.chunks[index]?.size
      if (!source || size === undefined || !source.hasChunk(index) || (courtesy && !courtesy.uploadAllowed) ||
          this.uploadQueueFull(size) || !this.originMayServe(peer, digest, index, key)) {
        if (peer.serving.has(id) && !peer.channel.closed) peer.channel.reject(id)
        return
      }
      await courtesy?.upload.take(size, abort.signal)
      // One request per peer at a time reads (and re-hashes) its chunk and hands it to the
      // connection once it has room: requests queued behind a full link hold no buffer, so a few
      // pooled ones serve every chunk, and the next chunk is read while the link still sends the
      // last. Bytes written are past recall, so a cancel can still stop what waits here, and the
      // link's own congestion control paces us.
      release = await peer.sending.acquire(abort.signal)
      if (!peer.serving.has(id) || peer.channel.closed) return // cancelled while it waited its turn
      buffer = this.buffers.take(size)
      const bytes = await source.readChunk(index, buffer)
      await this.writable(peer, abort.signal)
      if (!peer.serving.has(id) || peer.channel.closed) return // cancelled while we read or waited
      peer.channel.data(id, digest, index, bytes)
      this.superSeeding.sent(peer.key, key)
      this.opts.accounting?.record({ digest, source: this.sourceKind(peer), direction: 'up', bytes: bytes.length })
      this.emit('upload', { digest, index, bytes: bytes.length, to: peer.identity })
    } catch (err) {
      if (abort.signal.aborted) return // cancelled: the budget went back to the bucket
      if (peer.serving.has(id) && !peer.channel.closed) peer.channel.reject(id)
      if (!(err instanceof PatchswarmError)) throw err
    } finally {
      // data() copied the bytes into the outgoing frame: the buffer is free again.
      if (buffer) this.buffers.give(buffer)
      release?.()
      peer.serving.delete(id)
      this.superSeeding.released(peer.key, key)
    }
  }

  private writable (peer: Peer, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.reject(signal.reason)
    if (peer.channel.drained || peer.channel.closed) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const done = () => {
        peer.channel.off('drain', check)
        peer.channel.off('close', done)
        signal.removeEventListener('abort', aborted)
        resolve()
      }
      const check = () => { if (peer.channel.drained) done() }
      const aborted = () => { done(); reject(signal.reason) }
      peer.channel.on('drain', check)
      peer.channel.on('close', done)
      signal.addEventListener('abort', aborted)
    })
  }

  private stopServing (peer: Peer, id: number): void {
    peer.serving.get(id)?.abort()
    peer.serving.delete(id)
  }

  /**
   * More than about a second of uploads already waiting: turn the request down at once, so the
   * asker goes to another peer instead of queueing behind everyone else.
   */
  private uploadQueueFull (size: number): boolean {
    const upload = this.opts.courtesy?.upload
    if (!upload || !Number.isFinite(upload.rate)) return false
    return upload.queuedBytes + size > Math.max(upload.rate * QUEUE_SECONDS, 2 * size)
  }

  /** The origin leaves to the swarm what it can (see super-seeding.ts); other nodes serve freely. */
  private originMayServe (peer: Peer, digest: string, index: number, key: string): boolean {
    if (this.requireIdentity().role !== 'origin') return true
    let heldElsewhere = false
    for (const other of this.peers.values()) {
      if (other === peer || other.identity.role === 'origin') continue
      // A peer's bitfield may be shorter than the package (it is only its word): past its end it
      // holds nothing, rather than Bitfield.get throwing and the request being turned down.
      const bits = other.has.get(digest)
      if (bits && index < bits.length && bits.get(index)) { heldElsewhere = true; break }
    }
    return this.superSeeding.mayServe(peer.key, key, heldElsewhere, (k) => this.peers.has(k))
  }

  // ── fetching ────────────────────────────────────────────────────────────────────────────

  private newScheduler (manifest: Manifest, rx: NodeReceive): ChunkScheduler {
    const missing: number[] = []
    manifest.chunks.forEach((_, i) => { if (!rx.hasChunk(i)) missing.push(i) })
    return new ChunkScheduler({ chunkSizes: manifest.chunks.map((c) => c.size), missing, selfId: this.keyid, now: this.now, ...this.opts.scheduler })
  }

  private onHave (peer: Peer, digest: string, bits: Bitfield): void {
    peer.has.set(digest, bits)
    const dl = this.downloads.get(digest)
    if (!dl || bits.length !== dl.manifest.chunks.length) return
    dl.sched.setHave(peer.key, (i) => bits.get(i))
    this.pump(dl)
  }

  private onHaveChunk (peer: Peer, digest: string, index: number): void {
    this.superSeeding.announced(peer.key, `${digest}:${index}`)
    const known = peer.has.get(digest)
    if (known && index < known.length) known.set(index)
    else if (!known && this.seeding.has(digest)) {
      const length = this.complete.get(digest)?.manifest.chunks.length
      if (length !== undefined && index < length) {
        const bits = new Bitfield(length)
        bits.set(index)
        peer.has.set(digest, bits)
      }
    }
    const dl = this.downloads.get(digest)
    if (!dl) return
    dl.sched.addHave(peer.key, index)
    this.pump(dl)
  }

  private async onData (peer: Peer, d: ChunkData): Promise<void> {
    peer.requests.delete(d.id)
    const dl = this.downloads.get(d.digest)
    if (!dl || !dl.sched.isMissing(d.index)) return
    dl.sched.arrived(peer.key, d.index, d.bytes.length)
    const chunk = dl.manifest.chunks[d.index]
    try {
      if (!chunk) throw PatchswarmError.HASH_MISMATCH(`chunk ${d.index} is not in the package`)
      await dl.rx.putChunk(chunk.hash, d.bytes)
    } catch (err) {
      if ((err as PatchswarmError).code !== 'HASH_MISMATCH') {
        // Staging could not be synced: this receive is over (a new fetch starts a new one).
        if (dl.rx.failure) return this.endDownload(dl, dl.rx.failure)
        // Our side failed (disk full, store closing): the chunk is needed again, from anyone.
        dl.sched.failed(peer.key, d.index, 'reject')
        this.pump(dl)
        throw err
      }
      dl.sched.failed(peer.key, d.index, 'bad')
      this.banPeer(peer, this.opts.banMs ?? 600_000, `sent a bad chunk of ${d.digest.slice(0, 12)}…`)
      this.pump(dl)
      return
    }
    const source = this.sourceKind(peer)
    dl.result.received[source] += d.bytes.length
    this.opts.accounting?.record({ digest: d.digest, source, direction: 'down', bytes: d.bytes.length })
    await this.opts.courtesy?.download.take(d.bytes.length)
    for (const other of dl.sched.received(peer.key, d.index, d.bytes.length)) this.cancelRequest(other.peer, d.digest, other.index)
    for (const p of this.peers.values()) if (p.interest.has(d.digest) && !p.channel.closed) p.channel.haveChunk(d.digest, d.index)
    this.emit('chunk', { digest: d.digest, index: d.index, bytes: d.bytes.length, from: peer.identity })
    this.maybeFinish(dl)
    this.pump(dl)
  }

  private onReject (peer: Peer, id: number): void {
    const req = peer.requests.get(id)
    if (!req) return
    peer.requests.delete(id)
    const dl = this.downloads.get(req.digest)
    if (!dl) return
    dl.sched.failed(peer.key, req.index, 'reject')
    this.pump(dl)
  }

  /** Many events (a have from every peer for every chunk) coalesce into one scheduling pass. */
  private pump (dl: Download): void {
    if (dl.pumping) return
    dl.pumping = true
    setImmediate(() => {
      dl.pumping = false
      this.pumpNow(dl)
    })
  }

  private pumpNow (dl: Download): void {
    if (this.downloads.get(dl.digest) !== dl) return
    for (const pick of dl.sched.pick()) {
      const peer = this.peers.get(pick.peer)
      if (!peer || peer.channel.closed) { dl.sched.removePeer(pick.peer); continue }
      // Each download's scheduler pipelines on its own; together they may ask more of one peer than
      // it accepts (request() would throw FLOOD here, outside any handler). Treat it as a "not now".
      if (peer.channel.outstanding() >= peer.channel.requestCapacity) { dl.sched.failed(pick.peer, pick.index, 'reject'); continue }
      const id = peer.channel.request(dl.digest, pick.index)
      peer.requests.set(id, { digest: dl.digest, index: pick.index })
    }
  }

  private tick (dl: Download): void {
    for (const late of dl.sched.overdue()) {
      this.cancelRequest(late.peer, dl.digest, late.index)
      dl.sched.failed(late.peer, late.index, 'timeout')
    }
    for (const slow of dl.sched.slowPeers()) {
      const peer = this.peers.get(slow)
      if (peer && peer.identity.role !== 'origin') this.banPeer(peer, this.opts.slowBanMs ?? 15_000, 'kept timing out')
    }
    this.pump(dl)
  }

  private cancelRequest (peerKey: string, digest: string, index: number): void {
    const peer = this.peers.get(peerKey)
    if (!peer) return
    for (const [id, r] of peer.requests) {
      if (r.digest === digest && r.index === index) {
        peer.requests.delete(id)
        if (!peer.channel.closed) peer.channel.cancel(id)
      }
    }
  }

  private maybeFinish (dl: Download): void {
    if (!dl.sched.done || this.downloads.get(dl.digest) !== dl) return
    dl.rx.commit().then(() => {
      this.endDownload(dl, null)
    }, (err: PatchswarmError) => {
      if (err.code !== 'HASH_MISMATCH') return this.endDownload(dl, err)
      // Chunks rotted on disk before commit: fetch them again.
      dl.sched = this.newScheduler(dl.manifest, dl.rx)
      for (const peer of this.peers.values()) this.join(dl, peer)
    })
  }

  private endDownload (dl: Download, err: Error | null): void {
    if (this.downloads.get(dl.digest) !== dl) return
    clearInterval(dl.timer)
    this.downloads.delete(dl.digest)
    for (const peer of this.peers.values()) {
      for (const [id, r] of peer.requests) if (r.digest === dl.digest) { peer.requests.delete(id); if (!peer.channel.closed) peer.channel.cancel(id) }
    }
    if (err) dl.settle.reject(err)
    else dl.settle.resolve(dl.result)
  }

  private banPeer (peer: Peer, ms: number, reason: string): void {
    this.bans.ban(peer.key, ms, reason)
    this.emit('ban', { keyid: peer.key, reason, ms })
    peer.channel.destroy(PatchswarmError.BANNED(`${peer.key.slice(0, 12)}… ${reason}`))
  }

  private misbehaved (peer: Peer, err: unknown): void {
    peer.channel.destroy(err instanceof Error ? err : new Error(String(err)))
  }

  private sourceKind (peer: Peer): TrafficSource {
    return peer.identity.role === 'origin' ? 'origin' : peer.sameSite ? 'site' : 'peer'
  }

  private requireIdentity (): PeerIdentity {
    if (!this.identity) throw PatchswarmError.CLOSED('the swarm node is not ready')
    return this.identity
  }
}
