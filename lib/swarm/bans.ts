// Peers that misbehaved, each banned until a time; a ban ends by itself.
export interface Ban {
  until: number
  reason: string
}

export class BanList {
  private readonly bans = new Map<string, Ban>()
  constructor (private readonly now: () => number = Date.now) {}

  ban (keyid: string, ms: number, reason: string): void {
    const until = this.now() + ms
    const current = this.bans.get(keyid)
    if (!current || current.until < until) this.bans.set(keyid, { until, reason })
  }

  isBanned (keyid: string): boolean {
    const b = this.bans.get(keyid)
    if (!b) return false
    if (b.until > this.now()) return true
    this.bans.delete(keyid)
    return false
  }

  /** The bans in force, for views and reports. */
  list (): Array<{ keyid: string } & Ban> {
    const out = []
    for (const [keyid, b] of this.bans) if (this.isBanned(keyid)) out.push({ keyid, ...b })
    return out
  }
}
