// The extension host, modelled on VS Code's: every manifest is validated before any extension code
// loads; an extension is activated on its first activation event (onStartup, onCommand:…, onView:…;
// a contributed command, view or exporter activates its extension implicitly, as in VS Code); its
// activate(ctx) has a time limit. An extension that fails to load, throws or does not finish in time
// is reported on the screen and disabled for the session: what it registered is undone and whatever
// it does later is ignored. The others and the console keep running.
//
// Extensions run in the console's process: a time limit catches a promise that never settles, not a
// busy loop, and errors an extension leaves unhandled in its own timers are the process's.
import { pathToFileURL } from 'node:url'
import { Observable } from 'rxjs'
import { PatchswarmError, isPatchswarmError } from '../../lib/errors.js'
import type { Database } from '../../lib/store/db.js'
import type { ConsoleAccess } from './access.js'
import { createContext, Registry, type CommandHandler, type Exporter, type ExportRequest, type HostServices, type LogLevel } from './api.js'
import { Configuration } from './configuration.js'
import { discoverExtensionFolders, patchswarmVersion } from './discovery.js'
import { DisposableStore, Emitter, type Disposable, type Event } from './disposable.js'
import { GlobalState } from './global-state.js'
import { loadManifest, type CommandContribution, type ExporterContribution, type LoadedManifest, type ViewContribution } from './manifest.js'
import { parseWhen, type WhenExpr } from './when.js'
import type { WindowApi } from './window.js'

export const DEFAULT_ACTIVATION_TIMEOUT_MS = 5000

export interface ExtensionHostOptions {
  /** Folders holding one sub-folder per extension, in precedence order (see defaultExtensionRoots). */
  roots: readonly string[]
  window: WindowApi
  /** Where globalState lives; the host does not close it. */
  db: Database
  /** The admin API as the session's admin; without it fleet and reports calls are UNAVAILABLE. */
  access?: ConsoleAccess
  /** The user's settings (`"ticketing.url": "…"`), checked against the contributed schemas. */
  settings?: Readonly<Record<string, unknown>>
  /** Extension ids the user turned off. */
  disabled?: readonly string[]
  /** Under --readonly, dangerous contributed commands are neither listed nor run. */
  readonly?: boolean
  activationTimeoutMs?: number
  /** Defaults to the version in patchswarm's package.json. */
  patchswarmVersion?: string
  /** Where ctx.log and the host's own notes go. */
  log?: (entry: LogEntry) => void
}

export interface LogEntry { time: Date, extension: string, level: LogLevel, message: string }

/**
 * invalid: its package.json or the user's settings for it do not validate (no code loaded);
 * disabled: turned off by the user; inactive: waiting for an activation event; failed: it did not
 * load, threw or timed out, and stays off for this session.
 */
export type ExtensionState = 'invalid' | 'disabled' | 'inactive' | 'activating' | 'active' | 'failed'

/** States whose extension may still run and whose contributions are offered. */
const USABLE: ReadonlySet<ExtensionState> = new Set(['inactive', 'activating', 'active'])

export interface ExtensionStatus {
  /** `publisher.name`; for a manifest that cannot be read, the folder's name. */
  id: string
  folder: string
  state: ExtensionState
  version?: string
  /** Why it is invalid or failed. */
  error?: PatchswarmError
  /** The event that activated it. */
  activatedBy?: string
}

export interface Contributions {
  commands: Array<CommandContribution & { extension: string }>
  keybindings: Array<{ extension: string, command: string, key: string, when?: string, whenExpr?: WhenExpr }>
  views: Array<ViewContribution & { extension: string, whenExpr?: WhenExpr }>
  exporters: Array<ExporterContribution & { extension: string }>
  settings: Array<{ extension: string, key: string, schema: unknown }>
}

interface Running {
  owned: DisposableStore
  subscriptions: DisposableStore
  state: GlobalState
  revoked: boolean
  deactivate?: () => unknown
}

interface Extension {
  status: ExtensionStatus
  manifest?: LoadedManifest
  configuration?: Configuration
  activation?: Promise<void>
  running?: Running
}

/** An extension module: `activate` (and `deactivate`) as named exports, or on a default export (CommonJS). */
interface ExtensionModule {
  activate?: unknown
  deactivate?: unknown
  default?: { activate?: unknown, deactivate?: unknown }
}

export class ExtensionHost {
  readonly #opts: ExtensionHostOptions
  readonly #timeoutMs: number
  readonly #extensions: Extension[] = []
  readonly #commands = new Registry<CommandHandler>('command')
  readonly #exporters = new Registry<Exporter>('exporter')
  readonly #statusChanged = new Emitter<ExtensionStatus>()
  /** Active extensions in the order they became active; closed in reverse. */
  readonly #activeOrder: Extension[] = []
  #version = ''
  #ready: Promise<void> | undefined
  #closing: Promise<void> | undefined

  /** Fires on every change of an extension's state. */
  readonly onDidChangeStatus: Event<ExtensionStatus> = this.#statusChanged.event

  /** Every extension's status, now and after each change. */
  readonly status$: Observable<ExtensionStatus[]> = new Observable((subscriber) => {
    subscriber.next(this.statuses())
    const d = this.onDidChangeStatus(() => subscriber.next(this.statuses()))
    return () => d.dispose()
  })

  constructor (opts: ExtensionHostOptions) {
    this.#opts = opts
    this.#timeoutMs = opts.activationTimeoutMs ?? DEFAULT_ACTIVATION_TIMEOUT_MS
  }

  /** Finds and validates every extension, then activates those that ask for onStartup. Idempotent. */
  ready (): Promise<void> {
    if (this.#closing) return Promise.reject(PatchswarmError.CLOSED('the extension host is closed'))
    this.#ready ??= this.#start()
    return this.#ready
  }

  async #start (): Promise<void> {
    this.#version = this.#opts.patchswarmVersion ?? await patchswarmVersion()
    const folders: string[] = []
    for (const root of this.#opts.roots) {
      // An unreadable user folder costs its extensions, not the shipped ones.
      try { folders.push(...await discoverExtensionFolders([root])) } catch (err) {
        this.#note('extensions', 'error', (err as Error).message)
        this.#tell(`Extensions in ${root} were not loaded: ${(err as Error).message}`)
      }
    }
    for (const folder of folders) {
      const ext: Extension = { status: { id: folder.split(/[\\/]/).pop()!, folder, state: 'inactive' } }
      this.#extensions.push(ext)
      try {
        ext.manifest = await loadManifest(folder, this.#version)
        ext.status = { ...ext.status, id: ext.manifest.id, version: ext.manifest.manifest.version }
        // A disabled extension holds no names: a replacement may take its commands and settings.
        if (this.#opts.disabled?.includes(ext.manifest.id)) { ext.status = { ...ext.status, state: 'disabled' }; continue }
        this.#checkAgainstOthers(ext.manifest)
        ext.configuration = new Configuration(ext.manifest.settings, this.#opts.settings ?? {}, `settings of ${ext.manifest.id}`)
      } catch (err) {
        const error = isPatchswarmError(err) ? err : PatchswarmError.IO_ERROR(`${folder}: ${String((err as Error)?.message ?? err)}`, err)
        ext.status = { ...ext.status, state: 'invalid', error }
        this.#note(ext.status.id, 'error', error.message)
        this.#tell(`Extension ${ext.status.id} was not loaded: ${error.message}`)
      }
    }
    for (const ext of this.#extensions) this.#statusChanged.fire(ext.status)
    await this.#activateAll((m) => m.manifest.activationEvents.includes('onStartup'), 'onStartup')
  }

  /**
   * Names an extension shares with one found earlier (same id, command, view, exporter or setting):
   * the earlier one keeps them and this one is invalid, naming the field.
   */
  #checkAgainstOthers (m: LoadedManifest): void {
    const others = this.#extensions.flatMap((e) => e.manifest && e.manifest !== m && e.status.state === 'inactive' ? [e.manifest] : [])
    const label = `${m.folder}/package.json`
    const clash = (field: string, other: LoadedManifest, what: string) => {
      throw PatchswarmError.BAD_CONFIG(`${label}: ${field}: ${what} is already contributed by ${other.id} (${other.folder})`)
    }
    for (const o of others) {
      if (o.id === m.id) throw PatchswarmError.BAD_CONFIG(`${label}: name: ${m.id} is already installed from ${o.folder}`)
      const c = m.manifest.contributes
      const oc = o.manifest.contributes
      c.commands.forEach((x, i) => { if (oc.commands.some((y) => y.command === x.command)) clash(`contributes.commands[${i}].command`, o, x.command) })
      c.views.forEach((x, i) => { if (oc.views.some((y) => y.id === x.id)) clash(`contributes.views[${i}].id`, o, x.id) })
      c.exporters.forEach((x, i) => { if (oc.exporters.some((y) => y.id === x.id)) clash(`contributes.exporters[${i}].id`, o, x.id) })
      for (const key of m.settings.keys()) if (o.settings.has(key)) clash(`contributes.configuration.properties[${JSON.stringify(key)}]`, o, key)
    }
  }

  statuses (): ExtensionStatus[] {
    return this.#extensions.map((e) => e.status)
  }

  status (id: string): ExtensionStatus | undefined {
    return this.#extensions.find((e) => e.status.id === id)?.status
  }

  /** What the view layer shows: contributions of extensions that are neither invalid, disabled nor failed. */
  contributions (): Contributions {
    const out: Contributions = { commands: [], keybindings: [], views: [], exporters: [], settings: [] }
    for (const m of this.#usable()) {
      const extension = m.id
      const c = m.manifest.contributes
      const hidden = new Set(this.#opts.readonly ? c.commands.filter((x) => x.dangerous).map((x) => x.command) : [])
      out.commands.push(...c.commands.filter((x) => !hidden.has(x.command)).map((x) => ({ ...x, extension })))
      out.keybindings.push(...m.keybindings.filter((k) => !hidden.has(k.command)).map((k) => ({ extension, ...k, ...(k.when !== undefined ? { whenExpr: parseWhen(k.when) } : {}) })))
      out.views.push(...c.views.map((v) => ({ ...v, extension, ...(v.when !== undefined ? { whenExpr: parseWhen(v.when) } : {}) })))
      out.exporters.push(...c.exporters.map((x) => ({ ...x, extension })))
      out.settings.push(...[...m.settings.values()].map((s) => ({ extension, key: s.key, schema: s.schema })))
    }
    return out
  }

  #usable (): LoadedManifest[] {
    return this.#extensions.flatMap((e) => e.manifest && USABLE.has(e.status.state) ? [e.manifest] : [])
  }

  /** A command of the console itself (the view layer's), callable by extensions. */
  registerCommand (id: string, handler: CommandHandler): Disposable {
    return this.#commands.register(id, 'console', handler)
  }

  getCommands (): string[] {
    return this.#commands.ids()
  }

  /**
   * Runs a command; a command nobody registered yet activates the extension that announces it
   * (onCommand:id, or contributes it) and then runs. A dangerous contributed command is FORBIDDEN
   * under --readonly.
   */
  async executeCommand<T = unknown> (id: string, ...args: unknown[]): Promise<T> {
    await this.ready()
    return await this.#execute(id, args) as T
  }

  // Extensions call this one: waiting for ready() from inside an onStartup activation would wait for itself.
  async #execute (id: string, args: unknown[]): Promise<unknown> {
    const contributed = this.#ownerOf((m) => m.manifest.contributes.commands.some((c) => c.command === id))
    if (this.#opts.readonly && contributed?.manifest?.manifest.contributes.commands.find((c) => c.command === id)?.dangerous) {
      throw PatchswarmError.FORBIDDEN(`${id} changes the fleet and the console is read-only`)
    }
    if (!this.#commands.get(id)) {
      const event = `onCommand:${id}`
      const owner = this.#ownerOf((m) => m.manifest.activationEvents.includes(event)) ?? contributed
      if (!owner) throw PatchswarmError.NOT_FOUND(`no command ${id}`)
      await this.#activate(owner, event)
    }
    const entry = this.#commands.get(id)
    if (!entry) throw PatchswarmError.NOT_FOUND(`no command ${id}: its extension is active but did not register it`)
    return await entry.value(...args)
  }

  /**
   * Activates every extension waiting for `event` (e.g. `onView:topFailing` when the view opens; a
   * contributed view counts as its onView event). Failures are reported, not thrown.
   */
  async activateByEvent (event: string): Promise<void> {
    await this.ready()
    const view = event.startsWith('onView:') ? event.slice(7) : undefined
    await this.#activateAll((m) => m.manifest.activationEvents.includes(event) || (view !== undefined && m.manifest.contributes.views.some((v) => v.id === view)), event)
  }

  /** Runs a contributed exporter, activating its extension if needed. */
  async export (exporterId: string, request: ExportRequest): Promise<string | Uint8Array> {
    await this.ready()
    if (!this.#exporters.get(exporterId)) {
      const owner = this.#ownerOf((m) => m.manifest.contributes.exporters.some((x) => x.id === exporterId))
      if (!owner) throw PatchswarmError.NOT_FOUND(`no exporter ${exporterId}`)
      await this.#activate(owner, `onExport:${exporterId}`)
    }
    const entry = this.#exporters.get(exporterId)
    if (!entry) throw PatchswarmError.NOT_FOUND(`no exporter ${exporterId}: its extension is active but did not register it`)
    return await entry.value.export(request)
  }

  /** The extension `wants` names: a usable one first (a refused duplicate may name it too). */
  #ownerOf (wants: (m: LoadedManifest) => boolean): Extension | undefined {
    const named = this.#extensions.filter((e) => e.manifest && wants(e.manifest))
    return named.find((e) => USABLE.has(e.status.state)) ?? named[0]
  }

  async #activateAll (wants: (m: LoadedManifest) => boolean, event: string): Promise<void> {
    const chosen = this.#extensions.filter((e) => e.manifest && ['inactive', 'activating'].includes(e.status.state) && wants(e.manifest))
    // Each failure is already reported and recorded in its status; one never stops the others.
    await Promise.all(chosen.map((e) => this.#activate(e, event).catch(() => {})))
  }

  /** Activates `ext` once; rejects (UNAVAILABLE or its failure) when it cannot run. */
  #activate (ext: Extension, event: string): Promise<void> {
    if (this.#closing) return Promise.reject(PatchswarmError.CLOSED('the extension host is closed'))
    if (ext.status.state === 'active') return Promise.resolve()
    if (ext.activation) return ext.activation
    if (ext.status.state !== 'inactive' || !ext.manifest || !ext.configuration) {
      const why = ext.status.error ? `: ${ext.status.error.message}` : ''
      return Promise.reject(PatchswarmError.UNAVAILABLE(`extension ${ext.status.id} is ${ext.status.state}${why}`))
    }
    ext.activation = this.#load(ext, ext.manifest, ext.configuration, event).finally(() => { ext.activation = undefined })
    return ext.activation
  }

  async #load (ext: Extension, manifest: LoadedManifest, configuration: Configuration, event: string): Promise<void> {
    const id = manifest.id
    this.#setStatus(ext, { state: 'activating', activatedBy: event })
    const onDisposeError = (err: unknown) => this.#note(id, 'error', `a disposable threw: ${String((err as Error)?.message ?? err)}`)
    const running: Running = {
      owned: new DisposableStore(onDisposeError),
      subscriptions: new DisposableStore(onDisposeError),
      state: undefined as unknown as GlobalState,
      revoked: false
    }
    try {
      running.state = await GlobalState.open(this.#opts.db, id)
      const ctx = createContext(this.#services(), {
        manifest,
        configuration,
        globalState: running.state,
        owned: running.owned,
        subscriptions: running.subscriptions,
        revoked: () => running.revoked
      })
      const work = (async () => {
        const mod = await import(pathToFileURL(manifest.mainPath).href) as ExtensionModule
        const activate = typeof mod.activate === 'function' ? mod.activate : mod.default?.activate
        if (typeof activate !== 'function') throw PatchswarmError.BAD_CONFIG(`${manifest.manifest.main} exports no activate() function`)
        const deactivate = typeof mod.deactivate === 'function' ? mod.deactivate : mod.default?.deactivate
        if (typeof deactivate === 'function') running.deactivate = () => deactivate()
        await activate(ctx)
      })()
      await withTimeout(work, this.#timeoutMs, () => PatchswarmError.TIMEOUT(`activate() did not finish within ${this.#timeoutMs} ms`))
    } catch (err) {
      // Undo what it managed to register; from here on it registers nothing (see createContext).
      this.#revoke(running)
      const error = isPatchswarmError(err) ? err : new PatchswarmError('EXTENSION_FAILED', `activate() threw: ${String((err as Error)?.message ?? err)}`, { cause: err })
      this.#setStatus(ext, { state: 'failed', error })
      this.#note(id, 'error', `failed and disabled: ${error.message}`)
      this.#tell(`Extension ${id} failed and is disabled: ${error.message}`)
      throw PatchswarmError.UNAVAILABLE(`extension ${id} failed: ${error.message}`, error)
    }
    ext.running = running
    this.#activeOrder.push(ext)
    this.#setStatus(ext, { state: 'active' })
    this.#note(id, 'info', `activated by ${event}`)
  }

  #revoke (running: Running): void {
    running.revoked = true
    running.subscriptions.dispose()
    running.owned.dispose()
    running.state?.close()
  }

  /** deactivate() (with the same time limit), then its subscriptions and registrations, last first. */
  async #deactivate (ext: Extension): Promise<void> {
    const running = ext.running
    if (!running) return
    ext.running = undefined
    const id = ext.status.id
    if (running.deactivate) {
      try {
        await withTimeout(Promise.resolve().then(running.deactivate), this.#timeoutMs, () => PatchswarmError.TIMEOUT(`deactivate() did not finish within ${this.#timeoutMs} ms`))
      } catch (err) {
        this.#note(id, 'error', `deactivate(): ${String((err as Error)?.message ?? err)}`)
      }
    }
    this.#revoke(running)
    const i = this.#activeOrder.indexOf(ext)
    if (i !== -1) this.#activeOrder.splice(i, 1)
    this.#setStatus(ext, { state: 'inactive', activatedBy: undefined })
  }

  /** Deactivates one extension; it activates again on its next event. */
  async deactivate (id: string): Promise<void> {
    const ext = this.#extensions.find((e) => e.status.id === id)
    if (!ext) throw PatchswarmError.NOT_FOUND(`no extension ${id}`)
    await ext.activation?.catch(() => {})
    await this.#deactivate(ext)
  }

  /** Deactivates every extension, last activated first. Idempotent; the database stays open. */
  close (): Promise<void> {
    this.#closing ??= (async () => {
      await this.#ready?.catch(() => {})
      await Promise.all(this.#extensions.map((e) => e.activation?.catch(() => {})))
      for (const ext of [...this.#activeOrder].reverse()) await this.#deactivate(ext)
      this.#statusChanged.dispose()
    })()
    return this.#closing
  }

  #services (): HostServices {
    return {
      patchswarmVersion: this.#version,
      commands: this.#commands,
      exporters: this.#exporters,
      window: this.#opts.window,
      access: this.#opts.access,
      executeCommand: (id, args) => this.#execute(id, args),
      log: (extension, level, message) => this.#note(extension, level, message)
    }
  }

  #setStatus (ext: Extension, change: Partial<ExtensionStatus>): void {
    const next = { ...ext.status, ...change }
    if (next.activatedBy === undefined) delete next.activatedBy
    if (next.state !== 'failed' && next.state !== 'invalid') delete next.error
    ext.status = next
    this.#statusChanged.fire(next)
  }

  /** An error on the screen; the screen failing to show it must not fail the host. */
  #tell (message: string): void {
    try {
      this.#opts.window.showMessage('error', message, { source: 'extensions' }).catch((err) => this.#note('extensions', 'error', `cannot show a message: ${String(err)}`))
    } catch (err) {
      this.#note('extensions', 'error', `cannot show a message: ${String(err)}`)
    }
  }

  #note (extension: string, level: LogLevel, message: string): void {
    this.#opts.log?.({ time: new Date(), extension, level, message })
  }
}

/** `p`, or `timeout()` as a rejection after `ms`; `p` settling later is ignored (but handled). */
function withTimeout<T> (p: Promise<T>, ms: number, timeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const limit = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(timeout()), ms) })
  return Promise.race([p, limit]).finally(() => clearTimeout(timer))
}
