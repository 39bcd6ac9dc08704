// The dashboard: the KPIs of everything the admin may see (compliance, SLA breaches, success rates,
// time to patch, WAN savings with its sparkline), the rollouts with a progress bar per phase, and
// compliance by tenant. All live, from rollouts.list$ and reports.tree$.
import { gauge, sparkline, type Region, type Span, type Table, type Text, type View } from '../ui/index.js'
import type { RolloutSummary, TenantKpis } from '../../lib/console/api.js'
import { sumKpis } from '../app/data.js'
import { Feeds, type AppContext } from './context.js'
import { bytes, pct, progressBar, stateSpan } from './format.js'
import { currentPhase } from './rollouts.js'

const ACTIVE = new Set(['running', 'halted', 'paused'])

export class DashboardView implements View {
  readonly id = 'dashboard'
  readonly title = 'Dashboard'
  readonly #ctx: AppContext
  readonly #feeds: Feeds
  #kpis: Text | undefined
  #rollouts: Table<RolloutSummary> | undefined
  #tenants: Table<TenantKpis> | undefined
  #nodes: TenantKpis[] = []
  #list: RolloutSummary[] = []
  #width = 80

  constructor (ctx: AppContext) {
    this.#ctx = ctx
    this.#feeds = new Feeds(ctx, () => this.title)
  }

  mount (region: Region): void {
    this.#width = region.width
    const [top, bottom] = region.split('rows', [6, '*'])
    const [left, , right] = region.width >= 150 ? bottom!.split('columns', ['55%', 2, '*']) : bottom!.split('rows', ['50%', 0, '*'])
    this.#kpis = top!.text({ title: 'Overview' })
    const phasesWidth = () => Math.max(10, (this.#width >= 150 ? Math.floor(this.#width * 0.55) : this.#width) - ID_WIDTH - 11 - 2)
    region.onResize(({ width }) => { this.#width = width; this.#rollouts?.invalidate(); this.#drawKpis() })
    this.#rollouts = left!.table<RolloutSummary>({
      title: 'Rollouts',
      key: (r) => r.id,
      empty: 'no rollouts yet',
      onOpen: (r) => { void this.#ctx.open('rollout', [r.id]) },
      columns: [
        { title: 'Id', width: ID_WIDTH, value: (r) => r.id },
        { title: 'State', width: 11, value: (r) => r.state, format: (r) => stateSpan(r.state) },
        { title: 'Phases', value: (r) => currentPhase(r).index, format: (r) => phaseBars(r, phasesWidth()) }
      ]
    })
    this.#tenants = right!.table<TenantKpis>({
      title: 'Compliance by tenant',
      key: (n) => n.path,
      empty: 'no tenants you may see',
      tone: (n) => n.kpis.slaBreaches > 0 ? 'warn' : undefined,
      onOpen: (n) => { void this.#ctx.open('endpoints', [`${n.path}/`]) },
      columns: [
        { title: 'Tenant', value: (n) => n.path, format: (n) => `${'  '.repeat(n.depth)}${n.displayName || n.name}`, min: 10 },
        { title: 'Compliance', width: 18, value: (n) => n.kpis.compliance ?? -1, format: (n) => gauge(n.kpis.compliance, 18, { warnBelow: 0.9, badBelow: 0.7 }) },
        { title: 'Endp', width: 6, align: 'right', value: (n) => n.kpis.endpoints },
        { title: 'SLA!', width: 5, align: 'right', value: (n) => n.kpis.slaBreaches }
      ]
    })
    this.#drawKpis()
    this.#feeds.watch(this.#ctx.data.rollouts$, (list) => {
      this.#list = list
      this.#rollouts!.setRows([...list].sort((a, b) => Number(ACTIVE.has(b.state)) - Number(ACTIVE.has(a.state)) || b.updatedAt.localeCompare(a.updatedAt)))
      this.#drawKpis()
    })
    this.#feeds.watch(this.#ctx.data.tree$, (nodes) => {
      this.#nodes = nodes
      const customers = nodes.filter((n) => n.kind !== 'group')
      this.#tenants!.setRows(customers.length > 0 ? customers : nodes)
      this.#drawKpis()
    })
  }

  #drawKpis (): void {
    const homes = this.#ctx.data.homes
    const k = sumKpis(this.#nodes.filter((n) => homes.includes(n.path)).map((n) => n.kpis))
    const count = (s: string) => this.#list.filter((r) => r.state === s).length
    const spark = sparkline(this.#ctx.data.savings, { width: Math.max(8, Math.min(40, this.#width - 70)), min: 0, max: 1 })
    const where = homes.length === 1 ? homes[0]! : `${homes.length} subtrees`
    const lines: Span[][] = k === null
      ? [[{ text: homes.length === 0 ? 'no tenants you may see yet (patchswarm tenant create …)' : 'waiting for the console…', tone: 'dim' }]]
      : [
          [{ text: 'Endpoints ' }, { text: String(k.endpoints), tone: 'bold' }, { text: '   Compliance ' }, ...gauge(k.compliance, 20, { warnBelow: 0.9, badBelow: 0.7 }), { text: '   SLA breaches ' }, { text: String(k.slaBreaches), tone: k.slaBreaches > 0 ? 'bad' : 'ok' }, { text: `   in ${where}`, tone: 'dim' }],
          [{ text: `First-pass success ${pct(k.firstPassSuccess)}   Final success ${pct(k.finalSuccess)}   Time to patch: median ${hours(k.timeToPatch.medianHours)}, p95 ${hours(k.timeToPatch.p95Hours)} (${k.timeToPatch.count} installs)` }],
          [{ text: 'WAN savings ' }, { text: pct(k.wanSavings), tone: 'bold' }, { text: ' ' }, { text: spark, tone: 'accent' }, { text: `  origin ${bytes(k.bytes.origin)} of ${bytes(k.bytes.delivered)} delivered (same site ${bytes(k.bytes.site)}, other peers ${bytes(k.bytes.peer)})`, tone: 'dim' }],
          [{ text: 'Rollouts: ' }, { text: `${count('running')} running`, tone: 'accent' }, { text: ', ' }, { text: `${count('halted')} halted`, tone: count('halted') > 0 ? 'bad' : undefined }, { text: `, ${count('paused')} paused, ${count('completed')} completed, ${this.#list.length} in all` }]
        ]
    this.#kpis?.setLines(lines)
  }

  unmount (): void {
    this.#feeds.stop()
  }
}

/** Fits ids like `demo-service-1.0.0` or `patch-tuesday-2026-11`. */
const ID_WIDTH = 21

/** A duration given in hours, in the unit that reads best: 42 s, 17 min, 5.2 h, 3.5 d. */
export function hours (h: number | null): string {
  if (h === null) return '–'
  const s = h * 3600
  if (s < 90) return `${Math.round(s)} s`
  if (s < 90 * 60) return `${Math.round(s / 60)} min`
  if (h < 48) return `${h < 10 ? h.toFixed(1) : Math.round(h)} h`
  return `${(h / 24).toFixed(1)} d`
}

/** One bar per phase side by side, each labelled by its initial; the current phase in bold. */
export function phaseBars (r: RolloutSummary, width: number): Span[] {
  const n = Math.max(1, r.phases.length)
  const each = Math.max(3, Math.floor((width - (n - 1)) / n) - 2)
  const cur = currentPhase(r).index
  const out: Span[] = []
  r.phases.forEach((p, i) => {
    if (i > 0) out.push({ text: ' ' })
    out.push({ text: p.name.slice(0, 1), tone: i === cur ? 'bold' : 'dim' }, { text: ':' }, ...progressBar(p.counts, p.size, each))
  })
  return out
}
