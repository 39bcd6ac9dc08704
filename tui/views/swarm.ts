// Swarm: the console's own node (the peers connected to it, the bans in force: swarm.status$), and
// where the endpoints' bytes came from, per tenant (origin, same-site peers, other peers, local
// copies) with the WAN savings that makes, from their signed transfer reports (reports.tree$).
import { gauge, stackedBar, type Region, type Table, type Text, type View } from '../ui/index.js'
import type { SwarmPeerView, SwarmStatus, TenantKpis } from '../../lib/console/api.js'
import { Feeds, type AppContext } from './context.js'
import { ago, bytes } from './format.js'

type Ban = SwarmStatus['bans'][number]
const short = (keyid: string) => `${keyid.slice(0, 12)}…`

export class SwarmView implements View {
  readonly id = 'swarm'
  readonly title = 'Swarm'
  readonly #ctx: AppContext
  readonly #feeds: Feeds
  #table: Table<TenantKpis> | undefined
  #peers: Table<SwarmPeerView> | undefined
  #bans: Table<Ban> | undefined
  #note: Text | undefined

  constructor (ctx: AppContext) {
    this.#ctx = ctx
    this.#feeds = new Feeds(ctx, () => this.title)
  }

  mount (region: Region): void {
    const [note, peersAndBans, body] = region.split('rows', [3, '*', '*'])
    // A one-column gap keeps the two tables' cells apart.
    const [peersRegion, , bansRegion] = peersAndBans!.split('columns', ['*', 1, '*'])
    this.#note = note!.text({ title: 'Swarm' })
    this.#showNode(null)
    this.#peers = peersRegion!.table<SwarmPeerView>({
      title: 'Peers of the console',
      key: (p) => p.keyid,
      empty: 'no peer connected',
      columns: [
        { title: 'Host', value: (p) => p.hostname ?? short(p.keyid), min: 12 },
        { title: 'Tenant', value: (p) => p.tenant || '(organisation)', min: 10 },
        { title: 'Site', width: 10, value: (p) => p.site ?? '' },
        { title: 'Role', width: 8, value: (p) => p.role }
      ]
    })
    this.#bans = bansRegion!.table<Ban>({
      title: 'Bans',
      key: (b) => b.keyid,
      empty: 'nobody banned',
      tone: () => 'bad',
      columns: [
        { title: 'Peer', value: (b) => b.hostname ?? short(b.keyid), min: 10 },
        { title: 'Ends', width: 8, value: (b) => b.until, format: (b) => `in ${ago(new Date().toISOString(), Date.parse(b.until))}` },
        { title: 'Why', value: (b) => b.reason, min: 10 }
      ]
    })
    const wide = region.width >= 120
    this.#table = body!.table<TenantKpis>({
      title: 'Bytes by source',
      key: (n) => n.path,
      empty: 'no transfer reports yet',
      columns: [
        { title: 'Tenant', value: (n) => n.path, format: (n) => `${'  '.repeat(n.depth)}${n.displayName || n.name}`, min: 10 },
        { title: 'Delivered', width: 9, align: 'right', value: (n) => n.kpis.bytes.delivered, format: (n) => bytes(n.kpis.bytes.delivered) },
        { title: 'Origin', width: 9, align: 'right', value: (n) => n.kpis.bytes.origin, format: (n) => bytes(n.kpis.bytes.origin) },
        { title: 'Site', width: 9, align: 'right', value: (n) => n.kpis.bytes.site, format: (n) => bytes(n.kpis.bytes.site) },
        { title: 'Peers', width: 9, align: 'right', value: (n) => n.kpis.bytes.peer, format: (n) => bytes(n.kpis.bytes.peer) },
        ...(wide ? [{ title: 'Local', width: 9, align: 'right' as const, value: (n: TenantKpis) => n.kpis.bytes.local, format: (n: TenantKpis) => bytes(n.kpis.bytes.local) }] : []),
        { title: 'Sources', width: wide ? 24 : 12, value: (n) => n.kpis.bytes.delivered, format: (n) => stackedBar([{ value: n.kpis.bytes.origin, tone: 'bad' }, { value: n.kpis.bytes.site, tone: 'ok' }, { value: n.kpis.bytes.peer, tone: 'accent' }], n.kpis.bytes.delivered, wide ? 24 : 12) },
        { title: 'WAN saved', width: wide ? 18 : 12, value: (n) => n.kpis.wanSavings ?? -1, format: (n) => gauge(n.kpis.wanSavings, wide ? 18 : 12) }
      ]
    })
    this.#feeds.watch(this.#ctx.data.tree$, (nodes) => this.#table!.setRows(nodes))
    this.#feeds.watch(this.#ctx.data.swarm$, (status) => {
      this.#showNode(status)
      this.#peers!.setRows(status.peers)
      this.#bans!.setRows(status.bans)
    })
  }

  #showNode (status: SwarmStatus | null): void {
    const node = status === null
      ? { text: 'asking the console …', tone: 'dim' as const }
      : status.online
        ? { text: `The console is on the swarm as ${short(status.keyid ?? '')}: ${status.peers.length} peer(s) connected, ${status.bans.length} banned.` }
        : { text: 'The console is not on the swarm (started without --bootstrap): no peers, no bans.', tone: 'dim' as const }
    this.#note!.setLines([
      [node],
      [{ text: 'Bytes received by endpoints, by source: ' }, { text: '█ origin', tone: 'bad' }, { text: '  █ same site', tone: 'ok' }, { text: '  █ other peers', tone: 'accent' }]
    ])
  }

  unmount (): void {
    this.#feeds.stop()
  }
}
