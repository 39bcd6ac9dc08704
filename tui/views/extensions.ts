// Extension views: a contributed view drawn from its provider's ViewModel (a table, or lines of
// text shown as a one-column table, so `/` filters both), live when the provider returns an
// Observable; and the list of extensions with their state (why one failed or is invalid).
import { isObservable, from, type Observable, type Subscription } from 'rxjs'
import type { Column, Region, Table, Text, View } from '../ui/index.js'
import type { ExtensionStatus } from '../extensions/host.js'
import type { ViewModel, ViewProvider } from '../extensions/window.js'
import { Feeds, type AppContext } from './context.js'
import { errorText, stateTone } from './format.js'

export class ProviderView implements View {
  readonly id: string
  readonly #name: string
  readonly #ctx: AppContext
  readonly #provider: () => Promise<ViewProvider | undefined>
  readonly #source: string
  #status: Text | undefined
  #body: Region | undefined
  #table: Table<string[]> | undefined
  #titles: string[] = []
  #sub: Subscription | undefined
  #mounted = false

  /** `provider` activates the extension if needed and hands back its provider (undefined: none registered). */
  constructor (ctx: AppContext, id: string, name: string, source: string, provider: () => Promise<ViewProvider | undefined>) {
    this.id = id
    this.#name = name
    this.#ctx = ctx
    this.#source = source
    this.#provider = provider
  }

  get title (): string { return this.#name }

  mount (region: Region): void {
    this.#mounted = true
    const [status, body] = region.split('rows', [1, '*'])
    this.#status = status!.text()
    this.#body = body
    this.#say(`${this.#source} · scope ${this.#ctx.scope || 'the organisation'} · loading…`, true)
    this.#provider().then((p) => {
      if (!this.#mounted) return
      if (!p) return this.#say(`${this.#source} registered no provider for this view`, false, true)
      const r = p.resolve({ scope: this.#ctx.scope })
      const models = isObservable(r) ? r : from(Promise.resolve(r))
      this.#sub = models.subscribe({
        next: (m) => this.#show(m),
        error: (err) => this.#say(`${this.#source}: ${errorText(err)}`, false, true)
      })
    }, (err) => this.#say(`${this.#source}: ${errorText(err)}`, false, true))
  }

  #say (text: string, dim: boolean, bad = false): void {
    this.#status?.setLines([[{ text, tone: bad ? 'bad' : dim ? 'dim' : undefined }]])
  }

  #show (m: ViewModel): void {
    if (!this.#mounted) return
    const valid = m && (m.kind === 'table' ? Array.isArray(m.columns) && Array.isArray(m.rows) : m.kind === 'text' && Array.isArray(m.lines))
    if (!valid) return this.#say(`${this.#source} gave a view model that is neither a table nor text`, false, true)
    const titles = m.kind === 'table' ? m.columns.map(String) : ['']
    const rows = m.kind === 'table' ? m.rows.map((r) => Array.isArray(r) ? r.map((c) => String(c ?? '')) : []) : m.lines.map((l) => [String(l)])
    if (!this.#table) {
      // The shape of the first model stays: later models fill the same number of columns.
      this.#titles = titles
      const current = () => this.#titles
      const columns: Array<Column<string[]>> = titles.map((_, i) => ({
        get title () { return current()[i] ?? '' },
        value: (r: string[]) => r[i] ?? '',
        min: 4
      }))
      this.#table = this.#body!.table<string[]>({ columns, empty: 'nothing to show' })
    }
    this.#titles = titles
    this.#table.setRows(rows)
    this.#say(`${this.#source} · scope ${this.#ctx.scope || 'the organisation'}`, true)
  }

  unmount (): void {
    this.#mounted = false
    this.#sub?.unsubscribe()
  }
}

/** The extensions found, their state and, for those that failed or are invalid, why. */
export class ExtensionsView implements View {
  readonly id = 'extensions'
  readonly title = 'Extensions'
  readonly #feeds: Feeds
  readonly #statuses: () => Observable<ExtensionStatus[]> | undefined

  constructor (ctx: AppContext, statuses: () => Observable<ExtensionStatus[]> | undefined) {
    this.#statuses = statuses
    this.#feeds = new Feeds(ctx, () => this.title)
  }

  mount (region: Region): void {
    const table = region.table<ExtensionStatus>({
      title: 'Extensions',
      key: (s) => s.folder,
      empty: 'no extensions (this session runs without them)',
      tone: (s) => s.state === 'failed' || s.state === 'invalid' ? 'bad' : undefined,
      columns: [
        { title: 'Id', width: 28, value: (s) => s.id },
        { title: 'Version', width: 9, value: (s) => s.version ?? '' },
        { title: 'State', width: 10, value: (s) => s.state, format: (s) => [{ text: s.state, tone: s.state === 'inactive' ? 'dim' : stateTone(s.state) }] },
        { title: 'Why', value: (s) => s.error?.message ?? (s.activatedBy ? `activated by ${s.activatedBy}` : s.folder) }
      ]
    })
    const statuses = this.#statuses()
    if (statuses) this.#feeds.watch(statuses, (l) => table.setRows(l))
  }

  unmount (): void {
    this.#feeds.stop()
  }
}
