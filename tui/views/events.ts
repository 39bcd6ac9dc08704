// Events and audit: live tails. Events are the report log in the admin's subtrees (agent reports,
// the console's own facts); audit is every admin call the admin may see. Newest on top; the cursor
// stays on the row it is on while new ones arrive (press g to go back to the newest).
import type { Region, Table, View } from '../ui/index.js'
import type { EventLine } from '../../lib/console/api.js'
import type { AuditEntry } from '../../lib/fleet/audit.js'
import { Feeds, type AppContext } from './context.js'
import { clock, minute } from './format.js'

export class EventsView implements View {
  readonly id = 'events'
  readonly title = 'Events'
  readonly #ctx: AppContext
  readonly #feeds: Feeds
  #table: Table<EventLine> | undefined

  constructor (ctx: AppContext) {
    this.#ctx = ctx
    this.#feeds = new Feeds(ctx, () => this.title)
  }

  mount (region: Region): void {
    const wide = region.width >= 120
    this.#table = region.table<EventLine>({
      title: 'Events (live)',
      key: (e) => String(e.seq),
      empty: 'no events yet',
      tone: (e) => e.level === 'error' ? 'bad' : e.level === 'warn' ? 'warn' : undefined,
      columns: [
        { title: 'Time', width: wide ? 16 : 8, value: (e) => e.seq, format: (e) => wide ? minute(e.at) : clock(e.at) },
        { title: 'Tenant', width: wide ? 28 : 16, value: (e) => e.tenant },
        ...(wide ? [{ title: 'Endpoint', width: 12, value: (e: EventLine) => e.endpoint?.slice(0, 12) ?? '' }] : []),
        { title: 'Kind', width: wide ? 16 : 9, value: (e) => e.kind },
        { title: 'What', value: (e) => e.text }
      ]
    })
    this.#feeds.watch(this.#ctx.data.events$, (lines) => this.#table!.setRows([...lines].reverse()))
  }

  unmount (): void {
    this.#feeds.stop()
  }
}

export class AuditView implements View {
  readonly id = 'audit'
  readonly title = 'Audit'
  readonly #ctx: AppContext
  readonly #feeds: Feeds
  #table: Table<AuditEntry> | undefined

  constructor (ctx: AppContext) {
    this.#ctx = ctx
    this.#feeds = new Feeds(ctx, () => this.title)
  }

  mount (region: Region): void {
    const wide = region.width >= 120
    this.#table = region.table<AuditEntry>({
      title: 'Audit (live)',
      key: (e) => String(e.seq),
      empty: 'no audit entries you may see',
      tone: (e) => e.result === 'ok' ? undefined : 'bad',
      columns: [
        { title: 'Time', width: wide ? 16 : 8, value: (e) => e.seq, format: (e) => wide ? minute(e.at) : clock(e.at) },
        { title: 'Admin', width: 10, value: (e) => e.admin },
        { title: 'Action', width: wide ? 22 : 16, value: (e) => e.action },
        { title: 'Target', value: (e) => e.target },
        { title: 'Result', width: 10, value: (e) => e.result }
      ]
    })
    this.#feeds.watch(this.#ctx.data.audit$, (entries) => this.#table!.setRows([...entries].reverse()))
  }

  unmount (): void {
    this.#feeds.stop()
  }
}
