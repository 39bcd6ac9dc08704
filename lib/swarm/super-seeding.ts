// The origin's rule for its scarce upload (super-seeding): hand each chunk to one peer and leave
// it to the swarm. A chunk another connected peer holds, or one just sent to a peer that has not
// announced it yet, is turned down; a peer that keeps asking past the fallback time gets it anyway
// (it may not reach the holders). Both windows stretch with how long peers take to announce what
// they got: under load that is seconds, and fixed windows would have the origin send it all twice.

export interface SuperSeedingOptions {
  now: () => number
  /** The least time a chunk just sent is left to the swarm. */
  reserveMs?: number
  /** The least time a peer must keep asking before it gets a chunk that others hold. */
  fallbackMs?: number
}

interface Sent { peer: string, at: number, sent: boolean }

export class SuperSeeding {
  private readonly now: () => number
  private readonly reserveMs: number
  private readonly fallbackMs: number
  /** chunk key → the last peer it went to. */
  private readonly given = new Map<string, Sent>()
  /** peer → chunk key → when we first turned it down. */
  private readonly refused = new Map<string, Map<string, number>>()
  /** How long from our send to the receiver's announcement (EWMA, ms). */
  private announceDelayMs = 0

  constructor (opts: SuperSeedingOptions) {
    this.now = opts.now
    this.reserveMs = opts.reserveMs ?? 3000
    this.fallbackMs = opts.fallbackMs ?? 5000
  }

  /**
   * May chunk `key` go to `peer` now? `heldElsewhere`: another connected peer announced it;
   * `connected`: whether a peer is still connected. A yes reserves the chunk for `peer`.
   */
  mayServe (peer: string, key: string, heldElsewhere: boolean, connected: (peer: string) => boolean): boolean {
    const now = this.now()
    const last = this.given.get(key)
    const reserve = Math.max(this.reserveMs, 3 * this.announceDelayMs)
    const justSent = last !== undefined && last.peer !== peer && (!last.sent || now - last.at < reserve) && connected(last.peer)
    let asked = this.refused.get(peer)
    if (justSent || heldElsewhere) {
      const first = asked?.get(key)
      if (first === undefined) {
        if (!asked) this.refused.set(peer, asked = new Map())
        asked.set(key, now)
        return false
      }
      if (now - first < Math.max(this.fallbackMs, 6 * this.announceDelayMs)) return false
    }
    asked?.delete(key)
    this.given.set(key, { peer, at: now, sent: false })
    return true
  }

  /** The chunk left for `peer`: the reserve runs from now. */
  sent (peer: string, key: string): void {
    const g = this.given.get(key)
    if (g?.peer === peer) { g.at = this.now(); g.sent = true }
  }

  /** A serve that ended without sending (cancelled, failed) must not hold others back. */
  released (peer: string, key: string): void {
    const g = this.given.get(key)
    if (g?.peer === peer && !g.sent) this.given.delete(key)
  }

  /** `peer` announced chunk `key`: how long that took after we sent it tunes both windows. */
  announced (peer: string, key: string): void {
    const g = this.given.get(key)
    if (!g || g.peer !== peer || !g.sent) return
    const sample = this.now() - g.at
    this.announceDelayMs = this.announceDelayMs === 0 ? sample : this.announceDelayMs * 0.8 + sample * 0.2
  }

  forgetPeer (peer: string): void {
    this.refused.delete(peer)
  }
}
