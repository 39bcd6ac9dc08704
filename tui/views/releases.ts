// Releases: what the release keys signed and this console verified, with where admins approved
// them. Live from releases.list$. Enter lists the rollouts of the selected release.
import type { Region, Table, View } from '../ui/index.js'
import type { ReleaseView } from '../../lib/console/api.js'
import { Feeds, type AppContext } from './context.js'
import { stateTone } from './format.js'

const RISK_TONE = { low: 'dim', medium: undefined, high: 'warn', critical: 'bad' } as const

export class ReleasesView implements View {
  readonly id = 'releases'
  readonly title = 'Releases'
  readonly #ctx: AppContext
  readonly #feeds: Feeds
  #table: Table<ReleaseView> | undefined

  constructor (ctx: AppContext) {
    this.#ctx = ctx
    this.#feeds = new Feeds(ctx, () => this.title)
  }

  mount (region: Region): void {
    const wide = region.width >= 120
    this.#table = region.table<ReleaseView>({
      title: 'Releases',
      key: (r) => r.hash,
      empty: 'no releases (patchswarm releases add …)',
      sort: { column: 'Name' },
      onOpen: (r) => {
        const ids = this.#ctx.data.rollouts.filter((x) => x.release.envelopeHash === r.hash).map((x) => x.id)
        if (ids.length === 1) void this.#ctx.open('rollout', ids)
        else {
          void this.#ctx.open('rollouts').then(() => this.#ctx.ui.setFilter(`${r.name} ${r.version}`))
        }
      },
      columns: [
        { title: 'Name', value: (r) => r.name, min: 10 },
        { title: 'Version', width: 12, value: (r) => r.version },
        { title: 'Platform', width: 12, value: (r) => r.platform },
        { title: 'Risk', width: 8, value: (r) => r.risk, format: (r) => [{ text: r.risk, tone: RISK_TONE[r.risk as keyof typeof RISK_TONE] ?? stateTone(r.risk) }] },
        { title: 'Scope', value: (r) => r.scope || '(all)', min: 8 },
        ...(wide ? [{ title: 'Publisher', width: 14, value: (r: ReleaseView) => r.publisher }] : []),
        { title: 'Approved for', value: (r) => r.approvedFor.join(' ') || '–', min: 10 },
        ...(wide ? [{ title: 'Hash', width: 12, value: (r: ReleaseView) => r.hash.slice(0, 12) }] : [])
      ]
    })
    this.#feeds.watch(this.#ctx.data.releases$, (list) => this.#table!.setRows(list))
    // Keeps the rollouts at hand for Enter.
    this.#feeds.watch(this.#ctx.data.rollouts$, () => {})
  }

  unmount (): void {
    this.#feeds.stop()
  }
}
