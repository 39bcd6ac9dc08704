// The API an extension gets in activate(ctx): one instance per extension, so every registration,
// subscription and call is known to belong to it. When the extension is deactivated or fails, its
// instance is revoked: what it registered is undone, later registrations are undone at once, later
// calls to the console are refused, and nothing it does afterwards reaches the console or the screen.
import { format } from 'node:util'
import { Observable, defer, distinctUntilChanged, exhaustMap, from, timer } from 'rxjs'
import { PatchswarmError } from '../../lib/errors.js'
import type { ReleaseView } from '../../lib/console/api.js'
import type { EndpointRecord, EndpointStatus } from '../../lib/fleet/endpoints.js'
import type { TenantNode } from '../../lib/fleet/tenants.js'
import type { Rollout } from '../../lib/rollout/rollout.js'
import type { RolloutHistoryEntry } from '../../lib/rollout/store.js'
import type { Report } from '../../lib/report/export.js'
import type { Kpis, PatchRecord } from '../../lib/report/records.js'
import type { ConsoleAccess } from './access.js'
import type { Configuration } from './configuration.js'
import { DISPOSED, DisposableStore, toDisposable, type Disposable } from './disposable.js'
import type { Memento } from './global-state.js'
import type { LoadedManifest } from './manifest.js'
import type { InputBoxOptions, MessageSeverity, QuickPickItem, QuickPickOptions, ViewProvider, WindowApi } from './window.js'

// ---- what an extension author sees ------------------------------------------------------------

export type CommandHandler = (...args: any[]) => unknown

export interface CommandsNamespace {
  /** Registers `id`; ALREADY_EXISTS if any extension (or the console) has it. */
  registerCommand (id: string, handler: CommandHandler): Disposable
  /** Runs a command, activating the extension that contributes it first if needed. */
  executeCommand<T = unknown> (id: string, ...args: unknown[]): Promise<T>
  getCommands (): Promise<string[]>
}

export interface WindowNamespace {
  showInformationMessage (message: string, ...actions: string[]): Promise<string | undefined>
  showWarningMessage (message: string, ...actions: string[]): Promise<string | undefined>
  showErrorMessage (message: string, ...actions: string[]): Promise<string | undefined>
  showQuickPick (items: readonly string[], opts?: QuickPickOptions): Promise<string | undefined>
  showQuickPick<T extends QuickPickItem> (items: readonly T[], opts?: QuickPickOptions): Promise<T | undefined>
  showInputBox (opts?: InputBoxOptions): Promise<string | undefined>
  /** `viewId` must be in this extension's contributes.views. */
  registerViewProvider (viewId: string, provider: ViewProvider): Disposable
}

export interface PollOptions {
  /** How often to ask the console again; at least 250 ms, default 2000. */
  intervalMs?: number
}

/** Read-only views of the fleet, limited to what the session's admin may see. */
export interface FleetNamespace {
  /** The subtree at `path` in pre-order ('' is the organisation). */
  tenants (path?: string): Promise<TenantNode[]>
  children (path?: string): Promise<TenantNode[]>
  tenant (path: string): Promise<TenantNode>
  endpoints (query?: { under?: string, status?: EndpointStatus | EndpointStatus[] }): Promise<EndpointRecord[]>
  endpoint (keyid: string): Promise<EndpointRecord>
  releases (): Promise<ReleaseView[]>
  rollouts (query?: { tenant?: string }): Promise<Rollout[]>
  rollout (id: string): Promise<Rollout>
  rolloutHistory (id: string): Promise<RolloutHistoryEntry[]>
  /** The rollouts, again whenever they change (the admin API has no push for them yet: polled). */
  rollouts$ (query?: { tenant?: string }, opts?: PollOptions): Observable<Rollout[]>
  endpoints$ (query?: { under?: string, status?: EndpointStatus | EndpointStatus[] }, opts?: PollOptions): Observable<EndpointRecord[]>
}

export interface ReportsNamespace {
  kpis (path: string): Promise<Kpis>
  /** KPIs of `path`, again whenever they change (at most every `ms`). */
  kpis$ (path: string, ms?: number): Observable<Kpis>
  report (path: string): Promise<Report>
  records (path: string): Promise<PatchRecord[]>
  export (path: string, format: 'json' | 'csv' | 'html'): Promise<string>
}

export interface ConfigurationNamespace {
  /** The user's value of a setting this extension contributes, else its default. */
  get<T = unknown> (key: string): T | undefined
  keys (): string[]
}

export interface ExportRequest {
  /** The tenant path of the current view's scope. */
  scope: string
  /** The view the export was started from, when there is one. */
  view?: string
}

export interface Exporter {
  export (request: ExportRequest): string | Uint8Array | Promise<string | Uint8Array>
}

export interface ExportersNamespace {
  /** `id` must be in this extension's contributes.exporters. */
  register (id: string, exporter: Exporter): Disposable
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error'

export interface ExtensionLog {
  debug (message: string, ...args: unknown[]): void
  info (message: string, ...args: unknown[]): void
  warn (message: string, ...args: unknown[]): void
  error (message: string, ...args: unknown[]): void
}

export interface ExtensionContext {
  readonly extension: { readonly id: string, readonly version: string, readonly path: string }
  readonly patchswarmVersion: string
  /** Disposed in reverse order when the extension is deactivated. */
  readonly subscriptions: { push (...items: Disposable[]): number }
  readonly globalState: Memento
  readonly log: ExtensionLog
  readonly commands: CommandsNamespace
  readonly window: WindowNamespace
  readonly fleet: FleetNamespace
  readonly reports: ReportsNamespace
  readonly configuration: ConfigurationNamespace
  readonly exporters: ExportersNamespace
}

// ---- registries the host keeps --------------------------------------------------------------

/** Who registered something: an extension id, or 'console' for the view layer's own commands. */
export type Owner = string

/** One table of named things (commands, exporters); a name has one owner at a time. */
export class Registry<T> {
  readonly #entries = new Map<string, { owner: Owner, value: T }>()
  readonly #kind: string

  constructor (kind: string) { this.#kind = kind }

  register (id: string, owner: Owner, value: T): Disposable {
    const held = this.#entries.get(id)
    if (held) throw PatchswarmError.ALREADY_EXISTS(`${this.#kind} ${id} is already registered by ${held.owner}`)
    const entry = { owner, value }
    this.#entries.set(id, entry)
    return toDisposable(() => { if (this.#entries.get(id) === entry) this.#entries.delete(id) })
  }

  get (id: string): { owner: Owner, value: T } | undefined {
    return this.#entries.get(id)
  }

  ids (): string[] {
    return [...this.#entries.keys()].sort()
  }
}

/** What the host lends each extension's API. */
export interface HostServices {
  patchswarmVersion: string
  commands: Registry<CommandHandler>
  exporters: Registry<Exporter>
  window: WindowApi
  access: ConsoleAccess | undefined
  executeCommand (id: string, args: unknown[]): Promise<unknown>
  log (extension: string, level: LogLevel, message: string): void
}

export interface ExtensionParts {
  manifest: LoadedManifest
  globalState: Memento
  configuration: Configuration
  /** Everything registered through the API; the host disposes it when the extension stops. */
  owned: DisposableStore
  subscriptions: DisposableStore
  revoked: () => boolean
}

const MIN_POLL_MS = 250

/** Builds the `ctx` handed to one extension's activate(). */
export function createContext (host: HostServices, ext: ExtensionParts): ExtensionContext {
  const { manifest, owned } = ext
  const id = manifest.id
  const contributes = manifest.manifest.contributes

  const closed = () => PatchswarmError.CLOSED(`extension ${id} is no longer active`)
  /** Registers through `register` unless revoked; the registration is owned and undone with the extension. */
  const own = (register: () => Disposable): Disposable => {
    if (ext.revoked()) return DISPOSED
    const d = register()
    const tracked = toDisposable(() => { owned.delete(tracked); d.dispose() })
    owned.push(tracked)
    return tracked
  }
  const guard = <T>(run: () => Promise<T>): Promise<T> => ext.revoked() ? Promise.reject(closed()) : run()
  /**
   * An Observable whose subscriptions end when the extension stops, even ones it never ended. A
   * stopped extension's new subscription just completes: an error nobody handles would be thrown
   * by rxjs from a timer, in the console's process.
   */
  const owned$ = <T>(source: Observable<T>): Observable<T> => new Observable<T>((subscriber) => {
    if (ext.revoked()) { subscriber.complete(); return }
    const s = source.subscribe(subscriber)
    const d = own(() => toDisposable(() => s.unsubscribe()))
    return () => { s.unsubscribe(); d.dispose() }
  })
  const access = () => {
    if (!host.access) throw PatchswarmError.UNAVAILABLE('this console session has no admin API connection')
    return host.access
  }
  const call = <T>(method: string, ...params: unknown[]): Promise<T> => guard(async () => await access().call(method, params) as T)
  const subscribe = <T>(method: string, ...params: unknown[]): Observable<T> => owned$(defer(() => access().subscribe(method, params) as Observable<T>))
  const poll = <T>(method: string, params: unknown[], opts: PollOptions = {}): Observable<T> => {
    const ms = Math.max(MIN_POLL_MS, Number(opts.intervalMs ?? 2000) || 2000)
    return owned$(timer(0, ms).pipe(
      exhaustMap(() => from(access().call(method, params) as Promise<T>)),
      distinctUntilChanged((a, b) => JSON.stringify(a) === JSON.stringify(b))))
  }

  // A stopped extension's prompts resolve as dismissed rather than reject: they are often not
  // awaited, and an unhandled rejection would take the whole console down.
  const quiet = <T>(run: () => Promise<T | undefined>): Promise<T | undefined> => ext.revoked() ? Promise.resolve(undefined) : run()
  const message = (severity: MessageSeverity) => (text: string, ...actions: string[]) =>
    quiet(() => host.window.showMessage(severity, String(text), { source: id, actions: actions.map(String) }))
  const log = (level: LogLevel) => (msg: string, ...args: unknown[]) => { host.log(id, level, format(msg, ...args)) }

  return Object.freeze({
    extension: Object.freeze({ id, version: manifest.manifest.version, path: manifest.folder }),
    patchswarmVersion: host.patchswarmVersion,
    subscriptions: ext.subscriptions,
    globalState: ext.globalState,
    log: Object.freeze({ debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') }),

    commands: Object.freeze({
      registerCommand: (command: string, handler: CommandHandler) => {
        if (typeof handler !== 'function') throw PatchswarmError.BAD_ARGUMENT(`registerCommand(${JSON.stringify(command)}): the handler is not a function`)
        return own(() => host.commands.register(String(command), id, handler))
      },
      executeCommand: <T>(command: string, ...args: unknown[]) => guard(() => host.executeCommand(String(command), args) as Promise<T>),
      getCommands: () => guard(async () => host.commands.ids())
    }),

    window: Object.freeze({
      showInformationMessage: message('info'),
      showWarningMessage: message('warning'),
      showErrorMessage: message('error'),
      showQuickPick: ((items: ReadonlyArray<string | QuickPickItem>, opts?: QuickPickOptions) => quiet(async () => {
        const picks = items.map((i) => typeof i === 'string' ? { label: i } : i)
        const chosen = await host.window.showQuickPick(picks, opts)
        return chosen === undefined ? undefined : items[picks.indexOf(chosen)]
      })) as WindowNamespace['showQuickPick'],
      showInputBox: (opts?: InputBoxOptions) => quiet(() => host.window.showInputBox(opts)),
      registerViewProvider: (viewId: string, provider: ViewProvider) => {
        if (!contributes.views.some((v) => v.id === viewId)) throw PatchswarmError.BAD_ARGUMENT(`view ${JSON.stringify(viewId)} is not in ${id}'s contributes.views`)
        if (typeof provider?.resolve !== 'function') throw PatchswarmError.BAD_ARGUMENT(`view ${viewId}: the provider has no resolve()`)
        return own(() => host.window.registerViewProvider(viewId, provider))
      }
    }),

    fleet: Object.freeze({
      tenants: (path = '') => call<TenantNode[]>('fleet.walk', path),
      children: (path = '') => call<TenantNode[]>('fleet.listChildren', path),
      tenant: (path: string) => call<TenantNode>('fleet.getTenant', path),
      endpoints: (query = {}) => call<EndpointRecord[]>('endpoints.list', query),
      endpoint: (keyid: string) => call<EndpointRecord>('endpoints.get', keyid),
      releases: () => call<ReleaseView[]>('releases.list'),
      rollouts: (query = {}) => call<Rollout[]>('rollouts.list', query),
      rollout: (rid: string) => call<Rollout>('rollouts.get', rid),
      rolloutHistory: (rid: string) => call<RolloutHistoryEntry[]>('rollouts.history', rid),
      rollouts$: (query = {}, opts?: PollOptions) => poll<Rollout[]>('rollouts.list', [query], opts),
      endpoints$: (query = {}, opts?: PollOptions) => poll<EndpointRecord[]>('endpoints.list', [query], opts)
    } satisfies FleetNamespace),

    reports: Object.freeze({
      kpis: (path: string) => call<Kpis>('reports.kpis', path),
      kpis$: (path: string, ms?: number) => subscribe<Kpis>('reports.kpis$', path, ...(ms === undefined ? [] : [ms])),
      report: (path: string) => call<Report>('reports.report', path),
      records: (path: string) => call<PatchRecord[]>('reports.records', path),
      export: (path: string, fmt: 'json' | 'csv' | 'html') => call<string>('reports.export', path, fmt)
    } satisfies ReportsNamespace),

    configuration: Object.freeze({
      get: <T>(key: string) => ext.configuration.get<T>(key),
      keys: () => ext.configuration.keys()
    }),

    exporters: Object.freeze({
      register: (exporterId: string, exporter: Exporter) => {
        if (!contributes.exporters.some((e) => e.id === exporterId)) throw PatchswarmError.BAD_ARGUMENT(`exporter ${JSON.stringify(exporterId)} is not in ${id}'s contributes.exporters`)
        if (typeof exporter?.export !== 'function') throw PatchswarmError.BAD_ARGUMENT(`exporter ${exporterId}: no export()`)
        return own(() => host.exporters.register(exporterId, id, exporter))
      }
    })
  })
}
