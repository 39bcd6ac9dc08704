// Swarm: where the bytes came from, per tenant (origin, same-site peers, other peers, local copies)
// and the WAN savings that makes, from the endpoints' signed transfer reports (reports.tree$). The
// console's own swarm (connected peers, their scores, bans) is not in the admin API yet: the view
// says so instead of guessing.
import { gauge, stackedBar, type Region, type Table, type Text, type View } from '../ui/index.js'
import type { TenantKpis } from '../../lib/console/api.js'
import { Feeds, type AppContext } from './context.js'
import { bytes } from './format.js'

export const SWARM_GAP = 'Peers and bans: the admin API has no view of the console\'s swarm yet (connected peers, scores, bans); only the endpoints\' transfer reports below.'

export class SwarmView implements View {
  readonly id = 'swarm'
  readonly title = 'Swarm'
  readonly #ctx: AppContext
  readonly #feeds: Feeds
  #table: Table<TenantKpis> | undefined
  #note: Text | undefined

  constructor (ctx: AppContext) {
    this.#ctx = ctx
    this.#feeds = new Feeds(ctx, () => this.title)
  }

  mount (region: Region): void {
    const [note, body] = region.split('rows', [3, '*'])
    this.#note = note!.text({ title: 'Swarm' })
    this.#note.setLines([
      [{ text: 'Bytes received by endpoints, by source: ' }, { text: '█ origin', tone: 'bad' }, { text: '  █ same site', tone: 'ok' }, { text: '  █ other peers', tone: 'accent' }],
      [{ text: SWARM_GAP, tone: 'dim' }]
    ])
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
  }

  unmount (): void {
    this.#feeds.stop()
  }
}
