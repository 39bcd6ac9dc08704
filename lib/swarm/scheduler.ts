// Which chunk to ask which peer for, and when. Pure bookkeeping with an injected clock: the swarm
// node feeds it what peers have and what arrived, and sends the requests it picks.
//
// Policy, in order of preference for every missing chunk:
//  1. a peer of our own site (LAN), then any other peer, rarest chunks first;
//  2. across the site boundary only the site member "responsible" for a chunk (rendezvous hashing
//     over the site's members) fetches it, so each chunk crosses into a site about once; the
//     others take over its chunks only when it stalls (announces nothing new for `siteGraceMs`),
//     or, as a last resort, when we ourselves stored nothing for SITE_LAST_RESORT × `siteGraceMs`
//     (so a member that never gets round to a chunk cannot stall the site);
//  3. the origin only for chunks no peer can serve (its upload is the scarcest resource);
//  4. endgame: when every missing chunk is in flight, a second copy is asked from another peer
//     and the loser is cancelled.
// Each chunk goes to the allowed peer expected to deliver it first (its queue over its measured
// rate), so requests do not pile up behind one busy uploader and a slow peer is replaced by faster
// ones. How many requests a peer gets at once is an AIMD window, as in TCP: one more for every
// chunk it delivers, halved when it turns one down (its upload queue is full), one after a
// timeout. Late requests time out and move on.
import { createHash } from 'node:crypto'

export interface SchedulerPeer {
  id: string
  origin: boolean
  sameSite: boolean
}

export interface ChunkRequest {
  peer: string
  index: number
}

export interface SchedulerOptions {
  /** Size of every chunk of the package, by index. */
  chunkSizes: readonly number[]
  /** Indexes still needed. */
  missing: Iterable<number>
  /** Our own id, for the site's rendezvous hashing. */
  selfId: string
  now?: () => number
  /** The least time a request may take before it is given up on. */
  requestTimeoutMs?: number
  /** How long a site member may announce nothing new before others bring its chunks in themselves. */
  siteGraceMs?: number
  /** How long to leave a peer alone about a chunk it turned down (not now: choked, metered, busy). */
  rejectBackoffMs?: number
  maxPipeline?: number
  /** Copies of one chunk in flight during endgame. */
  endgameCopies?: number
  /** Chunks that arrived and are still being verified and stored: no new requests past this. */
  maxStoring?: number
}

interface PeerState {
  info: SchedulerPeer
  have: Set<number> | 'all'
  /** `expectedMs`: what its measured rate predicts for this request, behind those queued before it. */
  inFlight: Map<number, { sentAt: number, expectedMs: number, deadline: number, arrived: boolean }>
  /** Requests it may have in flight (AIMD); chunks that arrived no longer count. */
  window: number
  arrivedCount: number
  /** Throughput estimate, bytes/s, null until the first chunk: decayed bytes over decayed busy time. */
  rate: number | null
  decayedBytes: number
  decayedMs: number
  /** When the pipeline last went from empty to busy, and when the last chunk came. */
  busySince: number
  lastDelivery: number
  received: number
  timeouts: number
  /** When it last announced a chunk new to us (or joined): a site member that stalls loses its chunks. */
  lastProgress: number
  /** Its usual time between announcements (EWMA, ms): a slow member is not a stalled one. */
  progressInterval: number
  /** Chunks it turned down: until when we leave it alone about them, and the last wait (it doubles). */
  backoff: Map<number, { until: number, ms: number }>
}

const DECAY = 0.7
const INITIAL_WINDOW = 2
/** A rate to assume for a peer not measured yet, when no peer is. */
const UNKNOWN_RATE = 1024 * 1024
const MAX_BACKOFF_MS = 5000
const ENDGAME_MIN_MS = 1000
/** A site member is stalled after this many of its usual intervals without an announcement. */
const STALL_INTERVALS = 4
/** After this many grace times without storing anything, we bring in any chunk ourselves. */
const SITE_LAST_RESORT = 4

export class ChunkScheduler {
  private readonly sizes: readonly number[]
  private readonly missing = new Set<number>()
  private readonly peers = new Map<string, PeerState>()
  /** Non-origin peers that have a chunk, and those of them in our site. */
  private readonly availability = new Map<number, number>()
  private readonly siteAvailability = new Map<number, number>()
  /** When we last stored a chunk (or started). */
  private lastOwnProgress: number
  /** Arrived chunks not yet stored, over all peers. */
  private storing = 0
  /** index → peers it is being fetched from. */
  private readonly inFlight = new Map<number, Set<string>>()
  private readonly now: () => number
  private readonly opts: Required<Omit<SchedulerOptions, 'chunkSizes' | 'missing' | 'now'>>
  private readonly tieBreaks: number[] = []
  /** Chunks this node must bring into its site; recomputed when the site's members change. */
  private readonly responsible = new Map<number, string>()
  /**
   * Missing chunks, rarest first (then our tie-break order), kept between picks: sorting every
   * missing chunk on every pick cost more than the rest of a pick. Rebuilt only when availability
   * changes; chunks that arrived since are skipped.
   */
  private order: number[] | null = null

  constructor (opts: SchedulerOptions) {
    this.sizes = opts.chunkSizes
    for (const i of opts.missing) this.missing.add(i)
    this.now = opts.now ?? Date.now
    this.lastOwnProgress = this.now()
    this.opts = {
      selfId: opts.selfId,
      requestTimeoutMs: opts.requestTimeoutMs ?? 10_000,
      siteGraceMs: opts.siteGraceMs ?? 3000,
      rejectBackoffMs: opts.rejectBackoffMs ?? 250,
      maxPipeline: opts.maxPipeline ?? 32,
      endgameCopies: opts.endgameCopies ?? 2,
      maxStoring: opts.maxStoring ?? 64
    }
  }

  get done (): boolean { return this.missing.size === 0 }
  get remaining (): number { return this.missing.size }
  isMissing (index: number): boolean { return this.missing.has(index) }

  addPeer (info: SchedulerPeer): void {
    if (this.peers.has(info.id)) return
    if (info.sameSite) this.responsible.clear()
    this.peers.set(info.id, { info, have: info.origin ? 'all' : new Set(), inFlight: new Map(), window: INITIAL_WINDOW, arrivedCount: 0, rate: null, decayedBytes: 0, decayedMs: 0, busySince: this.now(), lastDelivery: this.now(), received: 0, timeouts: 0, lastProgress: this.now(), progressInterval: 0, backoff: new Map() })
  }

  /** Forgets a peer; what was in flight there becomes schedulable again. */
  removePeer (id: string): number[] {
    const p = this.peers.get(id)
    if (!p) return []
    if (p.have !== 'all' && !p.info.origin) for (const i of p.have) this.bump(p, i, -1)
    if (p.info.sameSite) this.responsible.clear()
    const lost = [...p.inFlight.keys()]
    for (const i of lost) { this.forgetRequest(p, i); this.inFlight.get(i)?.delete(id) }
    this.peers.delete(id)
    return lost
  }

  /** A peer's whole bitfield (replaces what we knew). */
  setHave (id: string, has: (index: number) => boolean): void {
    const p = this.peers.get(id)
    if (!p || p.have === 'all') return
    const before = p.have.size
    for (const i of p.have) this.bump(p, i, -1)
    p.have = new Set()
    for (let i = 0; i < this.sizes.length; i++) if (has(i)) { p.have.add(i); this.bump(p, i, 1) }
    if (p.have.size > before) this.progressed(p)
  }

  addHave (id: string, index: number): void {
    const p = this.peers.get(id)
    if (!p || p.have === 'all' || p.have.has(index) || index < 0 || index >= this.sizes.length) return
    p.have.add(index)
    this.progressed(p)
    this.bump(p, index, 1)
  }

  /** New requests to send now; they are recorded as in flight. */
  pick (): ChunkRequest[] {
    const now = this.now()
    const picks: ChunkRequest[] = []
    if (this.storing >= this.opts.maxStoring) return picks // our disk is behind: let it catch up
    const peers = [...this.peers.values()]
    const typical = this.typicalRate()
    for (const i of this.rarestFirst()) {
      if (!this.missing.has(i) || this.inFlight.get(i)?.size) continue
      let best: PeerState | null = null
      let bestFinish = Infinity
      let anyFree = false
      for (const p of peers) {
        if (p.inFlight.size - p.arrivedCount >= this.pipeline(p)) continue
        anyFree = true
        if (!this.allowed(p, i, now)) continue
        const finish = ((p.inFlight.size - p.arrivedCount + 1) * this.sizes[i]!) / (p.rate ?? typical)
        if (finish < bestFinish) { best = p; bestFinish = finish }
      }
      if (!anyFree) break
      if (best) picks.push(this.record(best, i, now))
    }
    return picks.concat(this.endgame(now, peers))
  }

  /**
   * The bytes of a requested chunk are here (not yet verified and stored): the link did its part,
   * so the request can no longer time out and the delivery counts for the peer's rate now, not
   * after our own disk got round to it.
   */
  arrived (peer: string, index: number, bytes: number): void {
    const p = this.peers.get(peer)
    const r = p?.inFlight.get(index)
    if (!p || !r || r.arrived) return
    r.arrived = true
    r.deadline = Infinity
    p.arrivedCount++
    this.storing++
    this.measure(p, bytes, this.now())
  }

  /**
   * A chunk arrived and verified. Returns duplicate requests (endgame) to cancel.
   * A chunk that failed verification is `failed(peer, index, 'bad')`, and the caller bans the peer.
   */
  received (peer: string, index: number, bytes: number): ChunkRequest[] {
    const now = this.now()
    const p = this.peers.get(peer)
    if (p) {
      const r = p.inFlight.get(index)
      if (r && !r.arrived) this.measure(p, bytes, now)
      this.forgetRequest(p, index)
      p.received += bytes
      p.timeouts = 0
      p.window = Math.min(this.opts.maxPipeline, p.window + 1)
    }
    if (this.missing.delete(index)) this.lastOwnProgress = now
    for (const q of this.peers.values()) q.backoff.delete(index)
    const others = [...(this.inFlight.get(index) ?? [])].filter((id) => id !== peer)
    for (const id of others) { const q = this.peers.get(id); if (q) this.forgetRequest(q, index) }
    this.inFlight.delete(index)
    return others.map((id) => ({ peer: id, index }))
  }

  /** A request ended without a chunk: turned down, timed out, or the bytes were bad. */
  failed (peer: string, index: number, reason: 'reject' | 'timeout' | 'bad'): void {
    const p = this.peers.get(peer)
    if (!p) return
    this.forgetRequest(p, index)
    this.inFlight.get(index)?.delete(peer)
    if (reason === 'timeout') { p.timeouts++; p.window = 1 }
    if (reason === 'reject') {
      // A refusal says "not now" (its queue is full, the link metered): a smaller window, and this
      // chunk asked again later, the wait doubling. The peer still has the chunk.
      p.window = Math.max(1, p.window / 2)
      const ms = Math.min(MAX_BACKOFF_MS, (p.backoff.get(index)?.ms ?? this.opts.rejectBackoffMs / 2) * 2)
      p.backoff.set(index, { until: this.now() + ms, ms })
    }
  }

  /** Requests past their deadline; the caller cancels them and reports `failed(…, 'timeout')`. */
  overdue (): ChunkRequest[] {
    const now = this.now()
    const out: ChunkRequest[] = []
    for (const p of this.peers.values()) for (const [i, r] of p.inFlight) if (r.deadline <= now) out.push({ peer: p.info.id, index: i })
    return out
  }

  /**
   * Peers that keep timing out, to be dropped. A peer that is merely slow is not dropped: it just
   * gets few requests, since each chunk goes to whoever is expected to deliver it first.
   */
  slowPeers (): string[] {
    return [...this.peers.values()].filter((p) => p.timeouts >= 3).map((p) => p.info.id)
  }

  /** The earliest deadline or back-off end in the future, so the caller knows when to look again. */
  nextWake (): number | null {
    let t: number | null = null
    for (const p of this.peers.values()) for (const r of p.inFlight.values()) if (!r.arrived) t = t === null ? r.deadline : Math.min(t, r.deadline)
    for (const p of this.peers.values()) for (const { until } of p.backoff.values()) if (until > this.now()) t = t === null ? until : Math.min(t, until)
    return t
  }

  stats (id: string): { rate: number | null, inFlight: number, received: number } | null {
    const p = this.peers.get(id)
    return p ? { rate: p.rate, inFlight: p.inFlight.size, received: p.received } : null
  }

  private allowed (p: PeerState, i: number, now: number): boolean {
    if (!this.missing.has(i)) return false
    if ((p.backoff.get(i)?.until ?? 0) > now) return false
    if (p.info.sameSite) return p.have !== 'all' && p.have.has(i)
    if (p.info.origin) {
      if ((this.availability.get(i) ?? 0) > 0) return false // some peer can serve it
    } else {
      if (p.have === 'all' || !p.have.has(i)) return false
      if ((this.siteAvailability.get(i) ?? 0) > 0) return false // wait for our site to pass it on
    }
    // Crossing the site boundary: the responsible member, or anyone once it stalled.
    const owner = this.responsibleForChunk(i)
    if (owner === this.opts.selfId) return true
    const member = this.peers.get(owner)
    const stalled = !member || now - member.lastProgress >= Math.max(this.opts.siteGraceMs, STALL_INTERVALS * member.progressInterval)
    return stalled || now - this.lastOwnProgress >= SITE_LAST_RESORT * this.opts.siteGraceMs
  }

  private progressed (p: PeerState): void {
    const now = this.now()
    const interval = now - p.lastProgress
    p.progressInterval = p.progressInterval === 0 ? interval : p.progressInterval * 0.8 + interval * 0.2
    p.lastProgress = now
  }

  /** Rendezvous hashing over the site's members we know of (ourselves included). */
  private responsibleForChunk (i: number): string {
    let owner = this.responsible.get(i)
    if (owner === undefined) {
      owner = this.opts.selfId
      let best = rendezvous(owner, i)
      for (const p of this.peers.values()) {
        if (!p.info.sameSite || p.info.origin) continue
        const score = rendezvous(p.info.id, i)
        if (score > best) { best = score; owner = p.info.id }
      }
      this.responsible.set(i, owner)
    }
    return owner
  }

  /** Missing chunks in the order `pick` considers them: rarest first, then by tie-break. */
  private rarestFirst (): number[] {
    let order = this.order
    if (order === null || order.length > 2 * this.missing.size + 64) {
      order = [...this.missing]
      order.sort((a, b) => (this.availability.get(a) ?? 0) - (this.availability.get(b) ?? 0) || this.tieBreak(a) - this.tieBreak(b))
      this.order = order
    } else {
      // Drop the chunks that arrived from the front, where the rarest (so the first fetched) are.
      let start = 0
      while (start < order.length && !this.missing.has(order[start]!)) start++
      if (start > 0) order.splice(0, start)
    }
    return order
  }

  private endgame (now: number, peers: PeerState[]): ChunkRequest[] {
    const picks: ChunkRequest[] = []
    for (const i of this.missing) if (!this.inFlight.get(i)?.size) return picks
    for (const i of this.missing) {
      const holders = this.inFlight.get(i)
      if (!holders || holders.size >= this.opts.endgameCopies || !this.late(i, now)) continue
      const p = peers.find((q) => !holders.has(q.info.id) && !q.info.origin && q.inFlight.size - q.arrivedCount < this.pipeline(q) && this.allowed(q, i, now))
      if (p) picks.push(this.record(p, i, now))
    }
    return picks
  }

  /**
   * A second copy is worth asking for only when the first is overdue by its own measure: pending
   * over twice the time its peer's rate predicts (and at least ENDGAME_MIN_MS), and not arrived.
   */
  private late (i: number, now: number): boolean {
    for (const id of this.inFlight.get(i) ?? []) {
      const r = this.peers.get(id)?.inFlight.get(i)
      if (!r || r.arrived) return false
      if (now - r.sentAt < Math.max(ENDGAME_MIN_MS, 2 * r.expectedMs)) return false
    }
    return true
  }

  private forgetRequest (p: PeerState, i: number): void {
    const r = p.inFlight.get(i)
    if (!r) return
    if (r.arrived) { p.arrivedCount--; this.storing-- }
    p.inFlight.delete(i)
  }

  private record (p: PeerState, i: number, now: number): ChunkRequest {
    const outstanding = p.inFlight.size - p.arrivedCount
    if (outstanding === 0) p.busySince = now
    // The last request of a pipeline waits for those before it; its deadline allows three times that.
    const expectedMs = p.rate ? ((outstanding + 1) * this.sizes[i]! / p.rate) * 1000 : 0
    p.inFlight.set(i, { sentAt: now, expectedMs, deadline: now + Math.max(this.opts.requestTimeoutMs, 3 * expectedMs), arrived: false })
    let set = this.inFlight.get(i)
    if (!set) this.inFlight.set(i, set = new Set())
    set.add(p.info.id)
    return { peer: p.info.id, index: i }
  }

  private measure (p: PeerState, bytes: number, now: number): void {
    // Busy time since the last delivery (or since the pipeline filled), and the bytes it brought.
    // Sums, not an average of per-chunk rates: two pipelined chunks landing together say the link
    // carried both in the time before, not that the second took no time.
    const busy = Math.max(1, now - Math.max(p.lastDelivery, p.busySince))
    p.decayedBytes = p.decayedBytes * DECAY + bytes
    p.decayedMs = p.decayedMs * DECAY + busy
    p.rate = (p.decayedBytes * 1000) / p.decayedMs
    p.lastDelivery = now
  }

  private pipeline (p: PeerState): number {
    return Math.max(1, Math.min(this.opts.maxPipeline, Math.floor(p.window)))
  }

  /** The median measured rate, for peers not measured yet. */
  private typicalRate (): number {
    const rates = [...this.peers.values()].map((p) => p.rate).filter((r): r is number => r !== null).sort((a, b) => a - b)
    return rates.length ? rates[Math.floor(rates.length / 2)]! : UNKNOWN_RATE
  }

  /** Equally rare chunks in an order of our own, so peers do not all start on the same ones. */
  private tieBreak (i: number): number {
    let t = this.tieBreaks[i]
    if (t === undefined) t = this.tieBreaks[i] = rendezvous(this.opts.selfId, i)
    return t
  }

  private bump (p: PeerState, i: number, by: number): void {
    this.order = null
    this.availability.set(i, (this.availability.get(i) ?? 0) + by)
    if (p.info.sameSite) this.siteAvailability.set(i, (this.siteAvailability.get(i) ?? 0) + by)
  }
}

/** A score every peer computes alike for (member, chunk): the highest score is responsible. */
function rendezvous (member: string, index: number): number {
  return createHash('sha256').update(member).update('\0').update(String(index)).digest().readUInt32BE(0)
}
