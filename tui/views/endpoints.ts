// Endpoints: every endpoint the admin may see in a virtualized table (10 000 rows cost what the
// visible ones do), live: the console sends only the rows that changed. `:endpoints acme/` keeps the
// endpoints of tenants with that part in their path; `/` filters any column. Enter opens one.
import type { KeyAction, Region, Span, Table, Text, View } from '../ui/index.js'
import type { EndpointRow } from '../../lib/console/api.js'
import type { EndpointRecord } from '../../lib/fleet/endpoints.js'
import { tenantMatches } from '../app/data.js'
import { Feeds, type AppContext } from './context.js'
import { ago, bytes, minute, stateSpan } from './format.js'

const jobText = (r: EndpointRow): Span[] => r.job
  ? [{ text: `${r.job.release} ` }, ...stateSpan(r.job.state), ...(r.job.action === 'rollback' ? [{ text: ' (rollback)', tone: 'warn' as const }] : [])]
  : [{ text: '–', tone: 'dim' }]

export class EndpointsView implements View {
  readonly id = 'endpoints'
  readonly keys: readonly KeyAction[]
  readonly #ctx: AppContext
  readonly #prefix: string
  readonly #feeds: Feeds
  #table: Table<EndpointRow> | undefined

  constructor (ctx: AppContext, prefix = '') {
    this.#ctx = ctx
    this.#prefix = prefix.trim()
    this.#feeds = new Feeds(ctx, () => this.title)
    this.keys = [
      { action: 'endpoint.rollouts', key: 'R', hint: 'rollouts', when: 'selected', command: false, description: "Rollouts of the selected endpoint's tenant", run: () => { const e = this.#table?.selected; if (e) void ctx.open('rollouts', [e.tenant]) } }
    ]
  }

  get title (): string { return this.#prefix ? `Endpoints ${this.#prefix}` : 'Endpoints' }

  /** The table (for tests and the render benchmark). */
  get table (): Table<EndpointRow> | undefined { return this.#table }

  mount (region: Region): void {
    const wide = region.width >= 120
    this.#table = region.table<EndpointRow>({
      title: this.#prefix ? `Endpoints in ${this.#prefix}` : 'Endpoints',
      key: (e) => e.keyid,
      empty: 'no endpoints yet (patchswarm token create …, then enroll agents)',
      tone: (e) => e.status === 'quarantine' ? 'warn' : e.status === 'removed' || e.status === 'rejected' ? 'dim' : undefined,
      onOpen: (e) => { void this.#ctx.open('endpoint', [e.keyid]) },
      columns: [
        { title: 'Host', value: (e) => e.hostname, min: 10 },
        { title: 'Tenant', value: (e) => e.tenant, min: 10 },
        { title: 'Status', width: 10, value: (e) => e.status, format: (e) => stateSpan(e.status) },
        ...(wide
          ? [
              { title: 'Site', width: 12, value: (e: EndpointRow) => e.site ?? '' },
              { title: 'Agent', width: 12, value: (e: EndpointRow) => e.agent?.state ?? '', format: (e: EndpointRow) => stateSpan(e.agent?.state, `${e.agent?.state ?? ''}${e.agent?.version ? ` ${e.agent.version}` : ''}`) }
            ]
          : []),
        { title: 'Job', value: (e) => e.job ? `${e.job.release} ${e.job.state}` : '', format: jobText, min: 12 },
        ...(wide ? [{ title: 'Origin', width: 9, align: 'right' as const, value: (e: EndpointRow) => e.bytes.origin, format: (e: EndpointRow) => bytes(e.bytes.origin) }, { title: 'Peers', width: 9, align: 'right' as const, value: (e: EndpointRow) => e.bytes.site + e.bytes.peer, format: (e: EndpointRow) => bytes(e.bytes.site + e.bytes.peer) }] : []),
        { title: 'Seen', width: 5, align: 'right', value: (e) => e.lastSeenAt ?? '', format: (e) => ago(e.lastSeenAt) }
      ]
    })
    const prefix = this.#prefix
    this.#feeds.watch(this.#ctx.data.endpoints$(), (rows) => {
      this.#table!.setRows(prefix ? rows.filter((r) => tenantMatches(r.tenant, prefix)) : rows)
    })
  }

  unmount (): void {
    this.#feeds.stop()
  }
}

/** One endpoint: its record, what it last reported, and its history in the registry. */
export class EndpointView implements View {
  readonly id = 'endpoint'
  readonly #ctx: AppContext
  readonly #keyid: string
  readonly #feeds: Feeds
  #text: Text | undefined
  #record: EndpointRecord | undefined
  #row: EndpointRow | undefined
  #error: string | undefined

  constructor (ctx: AppContext, keyid: string) {
    this.#ctx = ctx
    this.#keyid = keyid
    this.#feeds = new Feeds(ctx, () => this.title)
  }

  get title (): string { return `Endpoint ${this.#row?.hostname ?? this.#keyid.slice(0, 12)}` }

  mount (region: Region): void {
    this.#text = region.text({ title: 'Endpoint' })
    this.#ctx.data.call<EndpointRecord>('endpoints.get', this.#keyid).then((r) => { this.#record = r; this.#draw() }, (err) => { this.#error = String((err as Error).message ?? err); this.#draw() })
    this.#feeds.watch(this.#ctx.data.endpoints$(), (rows) => { this.#row = rows.find((r) => r.keyid === this.#keyid); this.#draw() })
  }

  #draw (): void {
    const r = this.#row
    const rec = this.#record
    const lines: Array<string | Span[]> = [
      [{ text: 'key        ', tone: 'dim' }, { text: this.#keyid }],
      [{ text: 'host       ', tone: 'dim' }, { text: r?.hostname ?? rec?.hostname ?? '' }],
      [{ text: 'tenant     ', tone: 'dim' }, { text: r?.tenant ?? rec?.tenant ?? '' }, { text: r?.site ? `  site ${r.site}` : '' }],
      [{ text: 'status     ', tone: 'dim' }, ...stateSpan(r?.status ?? rec?.status)],
      [{ text: 'platform   ', tone: 'dim' }, { text: r?.platform ?? rec?.platform ?? '' }],
      [{ text: 'enrolled   ', tone: 'dim' }, { text: minute(r?.enrolledAt ?? rec?.enrolledAt) }, { text: rec?.approvedAt ? `  approved ${minute(rec.approvedAt)}` : '' }],
      [{ text: 'last seen  ', tone: 'dim' }, { text: r?.lastSeenAt ? `${minute(r.lastSeenAt)} (${ago(r.lastSeenAt)} ago)` : 'never' }],
      [{ text: 'agent      ', tone: 'dim' }, ...stateSpan(r?.agent?.state, r?.agent ? `${r.agent.state}${r.agent.version ? ` ${r.agent.version}` : ''}` : '–')],
      [{ text: 'latest job ', tone: 'dim' }, ...(r ? jobText(r) : []), { text: r?.job ? `  ${minute(r.job.at)}${r.job.rollout ? `  rollout ${r.job.rollout}` : ''}` : '' }],
      [{ text: 'received   ', tone: 'dim' }, { text: r ? `origin ${bytes(r.bytes.origin)}, same site ${bytes(r.bytes.site)}, other peers ${bytes(r.bytes.peer)}, local ${bytes(r.bytes.local)}` : '' }],
      '',
      [{ text: 'registry history', tone: 'bold' }],
      ...(rec?.history ?? []).slice(-8).map((h) => [{ text: `${minute(h.at)}  ${h.op} → ` }, ...stateSpan(h.status)])
    ]
    if (this.#error) lines.push([{ text: this.#error, tone: 'bad' }])
    this.#text?.setLines(lines)
  }

  unmount (): void {
    this.#feeds.stop()
  }
}
