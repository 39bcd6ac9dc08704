// The console app: the views and `:` commands on a screen of the view layer, fed by the admin API
// through a ConsoleAccess (in-process or over the socket), and the extension host with its
// WindowApi on the same screen. One app per terminal: `patchswarm tui` makes one, the SSH server one
// per session. Failing extensions are reported on the screen and never take the console down.
import { EventEmitter } from 'node:events'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { PatchswarmError, isPatchswarmError } from '../../lib/errors.js'
import { openDatabase, type Database } from '../../lib/store/db.js'
import type { KeyAction, Ui, View } from '../ui/index.js'
import type { ConsoleAccess } from '../extensions/access.js'
import type { Disposable } from '../extensions/disposable.js'
import { ExtensionHost, type LogEntry } from '../extensions/host.js'
import { ConsoleData } from './data.js'
import { UiWindow } from './window.js'
import type { AppContext } from '../views/context.js'
import { errorText } from '../views/format.js'
import { DashboardView } from '../views/dashboard.js'
import { TenantsView } from '../views/tenants.js'
import { EndpointsView, EndpointView } from '../views/endpoints.js'
import { ReleasesView } from '../views/releases.js'
import { RolloutsView, RolloutView } from '../views/rollouts.js'
import { SwarmView } from '../views/swarm.js'
import { AuditView, EventsView } from '../views/events.js'
import { ExtensionsView, ProviderView } from '../views/extensions.js'

export interface TuiExtensionOptions {
  /** Folders of extensions, in precedence order (defaultExtensionRoots()). */
  roots: readonly string[]
  /** Where globalState lives (the console's database when embedded); not closed by the app. */
  db?: Database
  /** Without `db`: a folder for the app's own state database. A temporary one (not kept) when absent or in use. */
  stateDir?: string
  settings?: Readonly<Record<string, unknown>>
  disabled?: readonly string[]
  activationTimeoutMs?: number
}

export interface TuiAppOptions {
  /** The screen (createUi); give it the same `readonly`. */
  ui: Ui
  access: ConsoleAccess
  /** The admin the session acts as (the access already acts as it; shown in the header). */
  admin: string
  /** Nothing that changes the console is offered: no pause, resume, abort, rollback, no dangerous extension command. */
  readonly?: boolean
  extensions?: TuiExtensionOptions
  /** How often the console may send a list again (ms, 500). */
  refreshMs?: number
  /** The view to open first, as a `:` command (`dashboard`). */
  start?: string
  /** Where `:export` writes relative file names (the process's working folder). */
  cwd?: string
}

/**
 * Events: `close` once everything is released. `closed` resolves then too; close() is idempotent
 * and is what `q`/Ctrl-C (the screen's `quit`) call.
 */
export class TuiApp extends EventEmitter implements AppContext {
  readonly ui: Ui
  readonly data: ConsoleData
  readonly admin: string
  readonly readonly: boolean
  readonly window: UiWindow
  readonly closed: Promise<void>
  /** Settles once the extensions are found and the onStartup ones activated (or failed). */
  extensionsReady: Promise<void> = Promise.resolve()
  #host: ExtensionHost | undefined
  readonly #opts: TuiAppOptions
  readonly #registered: Disposable[] = []
  #extensionKeys: Disposable[] = []
  readonly #builtin = new Set<string>()
  #scope = ''
  #ownDb: { db: Database, temp?: string } | undefined
  #closing: Promise<void> | undefined
  #resolveClosed!: () => void
  readonly #log: LogEntry[] = []

  constructor (opts: TuiAppOptions) {
    super()
    this.#opts = opts
    this.ui = opts.ui
    this.admin = opts.admin
    this.readonly = opts.readonly === true || opts.ui.readonly
    this.data = new ConsoleData(opts.access, { ...(opts.refreshMs !== undefined ? { refreshMs: opts.refreshMs } : {}) })
    this.window = new UiWindow(opts.ui)
    this.closed = new Promise((resolve) => { this.#resolveClosed = resolve })
    this.ui.on('quit', () => { void this.close() })
    this.ui.on('error', (err: unknown) => { this.ui.message(`screen: ${errorText(err)}`, 'error') })
  }

  /** The extension host, once started (undefined without extensions). */
  get host (): ExtensionHost | undefined { return this.#host }
  get scope (): string { return this.#scope }
  /** What the extension host logged (ctx.log and its own notes), the last 500 entries. */
  get log (): readonly LogEntry[] { return this.#log }

  /** Reads the admin's tenants, registers the views and commands, opens the first view, starts the extensions. */
  async start (): Promise<void> {
    await this.data.ready()
    this.#scope = this.data.homes.length === 1 ? this.data.homes[0]! : ''
    this.#registerCommands()
    this.#status()
    const first = this.#opts.start ?? 'dashboard'
    if (!await this.open(first)) await this.open('dashboard')
    if (this.#opts.extensions) this.extensionsReady = this.#startExtensions(this.#opts.extensions)
  }

  // ---- AppContext -----------------------------------------------------------------------------

  open (name: string, args: readonly string[] = []): Promise<boolean> {
    if (this.ui.closed) return Promise.resolve(false)
    return this.ui.run(name, args)
  }

  async act<T> (what: string, method: string, ...params: unknown[]): Promise<T | undefined> {
    try {
      return await this.data.call<T>(method, ...params)
    } catch (err) {
      this.ui.message(`${what}: ${isPatchswarmError(err) ? `${err.code}: ${err.detail}` : errorText(err)}`, 'error')
      return undefined
    }
  }

  // ---- views and commands ---------------------------------------------------------------------

  #show (view: View, top: boolean): void {
    if (top) this.ui.reset(view)
    else this.ui.push(view)
  }

  #registerCommands (): void {
    const tenantPaths = (partial: string) => {
      const out = new Set<string>()
      for (const t of this.data.tenants) {
        const parts = t.path.split('/')
        for (let i = 0; i < parts.length; i++) out.add(`${parts.slice(i).join('/')}/`)
      }
      return [...out].filter((p) => p.startsWith(partial)).sort()
    }
    const rolloutIds = (partial: string) => this.data.rollouts.map((r) => r.id).filter((id) => id.startsWith(partial))
    const top = (action: string, description: string, make: (args: readonly string[]) => View, extra: Partial<KeyAction> = {}): KeyAction =>
      ({ action, description, hint: false, ...extra, run: (args) => this.#show(make(args), true) })
    const actions: KeyAction[] = [
      top('dashboard', 'KPIs, rollouts with their phases, compliance by tenant', () => new DashboardView(this), { aliases: ['dash', 'home'] }),
      top('tenants', 'The tenant tree with status and compliance', () => new TenantsView(this), { aliases: ['tn'] }),
      {
        action: 'tenant',
        description: 'Look at one tenant: it becomes the scope of extension views and exports (:tenant msp-1/acme)',
        hint: false,
        complete: tenantPaths,
        run: (args) => {
          const wanted = (args[0] ?? '').replace(/^\/+|\/+$/g, '')
          const found = this.data.tenants.find((t) => t.path === wanted) ?? this.data.tenants.find((t) => t.path.endsWith(`/${wanted}`))
          if (wanted && !found) throw PatchswarmError.NOT_FOUND(`no tenant ${wanted} that you may see`)
          if (found) this.#scope = found.path
          this.#status()
          this.#show(new TenantsView(this, found?.path), true)
        }
      },
      top('endpoints', 'Endpoints, live; :endpoints acme/ keeps those of tenants with acme/ in their path', (args) => new EndpointsView(this, args[0] ?? ''), { aliases: ['ep'], complete: tenantPaths }),
      { action: 'endpoint', description: 'One endpoint by its key id', hint: false, run: (args) => { if (!args[0]) throw PatchswarmError.BAD_ARGUMENT(':endpoint <keyid>'); this.#show(new EndpointView(this, args[0]), false) } },
      top('releases', 'Releases this console verified, and where they are approved', () => new ReleasesView(this), { aliases: ['rel'] }),
      top('rollouts', 'Rollouts with their phase and live progress; :rollouts msp-1/acme for those targeting it', (args) => new RolloutsView(this, args[0] ?? ''), { aliases: ['ro'], complete: tenantPaths }),
      {
        action: 'rollout',
        description: 'Open one rollout: phases, thresholds, progress, history (:rollout fix-1)',
        hint: false,
        complete: rolloutIds,
        run: (args) => {
          if (!args[0]) throw PatchswarmError.BAD_ARGUMENT(':rollout <id>')
          this.#show(new RolloutView(this, args[0]), false)
        }
      },
      top('swarm', 'Bytes by source per tenant and WAN savings', () => new SwarmView(this)),
      top('events', 'The report log, live', () => new EventsView(this), { aliases: ['ev'] }),
      top('audit', 'The audit log, live', () => new AuditView(this)),
      top('extensions', 'Extensions and their state', () => new ExtensionsView(this, () => this.#host?.status$), { aliases: ['ext'] })
    ]
    for (const a of actions) {
      this.#registered.push(this.ui.register(a))
      this.#builtin.add(a.action)
      for (const alias of a.aliases ?? []) this.#builtin.add(alias)
    }
    for (const b of this.ui.keys.list()) this.#builtin.add(b.action)
  }

  #status (): void {
    this.ui.setStatus(`${this.admin}${this.#scope ? ` @ ${this.#scope}` : ''}`)
  }

  // ---- extensions -----------------------------------------------------------------------------

  async #startExtensions (ext: TuiExtensionOptions): Promise<void> {
    try {
      const db = ext.db ?? await this.#stateDb(ext.stateDir)
      if (this.#closing) return
      const host = new ExtensionHost({
        roots: ext.roots,
        window: this.window,
        db,
        access: this.#opts.access,
        readonly: this.readonly,
        ...(ext.settings ? { settings: ext.settings } : {}),
        ...(ext.disabled ? { disabled: ext.disabled } : {}),
        ...(ext.activationTimeoutMs !== undefined ? { activationTimeoutMs: ext.activationTimeoutMs } : {}),
        log: (entry) => { this.#log.push(entry); if (this.#log.length > 500) this.#log.shift() }
      })
      this.#host = host
      host.registerCommand('patchswarm.open', (name: unknown, ...args: unknown[]) => this.open(String(name), args.map(String)))
      host.registerCommand('patchswarm.scope', () => this.#scope)
      // Contributions are offered before activation (a command activates its extension when run).
      const sync = () => { if (!this.#closing) this.#syncContributions(host) }
      host.onDidChangeStatus((s) => { if (s.state === 'failed' || s.state === 'invalid') sync() })
      await host.ready()
      sync()
    } catch (err) {
      this.ui.message(`extensions: ${errorText(err)}`, 'error')
    }
  }

  /** The app's own database for globalState: `stateDir`, else (or when in use) a temporary one. */
  async #stateDb (stateDir: string | undefined): Promise<Database> {
    if (stateDir) {
      try {
        const db = await openDatabase(stateDir)
        this.#ownDb = { db }
        return db
      } catch (err) {
        this.ui.message(`extension state in ${stateDir} is ${isPatchswarmError(err, 'IN_USE') ? 'in use by another session' : `unavailable: ${errorText(err)}`}: this session's is not kept`, 'warn')
      }
    }
    const temp = await fs.mkdtemp(path.join(os.tmpdir(), 'patchswarm-tui-'))
    const db = await openDatabase(temp)
    this.#ownDb = { db, temp }
    return db
  }

  /** (Re-)registers what usable extensions contribute: commands with their keys, views, `:export`. */
  #syncContributions (host: ExtensionHost): void {
    for (const d of this.#extensionKeys.splice(0)) d.dispose()
    const c = host.contributions()
    const register = (a: KeyAction, owner: string) => {
      if (this.#builtin.has(a.action)) {
        this.ui.message(`extension ${owner}: ${a.action} is a name of the console's own; not offered`, 'warn')
        return
      }
      try {
        this.#extensionKeys.push(this.ui.register(a))
      } catch (err) {
        this.ui.message(`extension ${owner}: ${errorText(err)}`, 'error')
      }
    }
    for (const cmd of c.commands) {
      const bindings = c.keybindings.filter((k) => k.command === cmd.command)
      const run = (args: readonly string[]) => this.#runExtensionCommand(host, cmd.command, args)
      const description = `${cmd.category ? `${cmd.category}: ` : ''}${cmd.title}`
      register({ action: cmd.command, description, hint: false, dangerous: cmd.dangerous, key: bindings.filter((k) => k.when === undefined).map((k) => k.key), run }, cmd.extension)
      bindings.filter((k) => k.when !== undefined).forEach((k, i) => {
        register({ action: `${cmd.command}:${i + 1}`, description, hint: false, command: false, dangerous: cmd.dangerous, key: k.key, when: k.when!, run }, cmd.extension)
      })
    }
    for (const v of c.views) {
      register({
        action: v.id,
        description: `${v.name} (view of ${v.extension})`,
        hint: false,
        ...(v.when !== undefined ? { when: v.when } : {}),
        run: () => this.#show(new ProviderView(this, v.id, v.name, v.extension, async () => {
          await host.activateByEvent(`onView:${v.id}`)
          return this.window.provider(v.id)
        }), true)
      }, v.extension)
    }
    if (c.exporters.length > 0) {
      this.#extensionKeys.push(this.ui.register({
        action: 'export',
        description: `Export the scope through an extension (${c.exporters.map((x) => x.id).join(', ')}): :export <exporter> [file]`,
        hint: false,
        complete: (partial, before) => before.length === 0 ? c.exporters.map((x) => x.id).filter((id) => id.startsWith(partial)) : [],
        run: (args) => this.#export(host, c.exporters, args)
      }))
    }
  }

  async #runExtensionCommand (host: ExtensionHost, id: string, args: readonly string[]): Promise<void> {
    const request = { scope: this.#scope, ...(this.ui.current ? { view: this.ui.current.id } : {}) }
    const result = await host.executeCommand(id, ...(args.length > 0 ? args : [request]))
    if (typeof result === 'string' && result !== '') this.ui.message(`${id}: ${result}`)
  }

  async #export (host: ExtensionHost, exporters: ReadonlyArray<{ id: string, title: string, fileExtension: string }>, args: readonly string[]): Promise<void> {
    const chosen = args[0] !== undefined
      ? exporters.find((x) => x.id === args[0])
      : await this.ui.pick(exporters.map((x) => ({ label: x.id, detail: x.title, value: x })), { title: 'Export with' })
    if (!chosen) {
      if (args[0] !== undefined) throw PatchswarmError.NOT_FOUND(`no exporter ${args[0]}`)
      return
    }
    const base = `${(this.#scope || 'organisation').replaceAll('/', '_')}-${new Date().toISOString().slice(0, 10)}${chosen.fileExtension}`
    const file = args[1] ?? await this.ui.prompt({ title: chosen.title, message: `Write the export of ${this.#scope || 'the organisation'} to`, value: base, validate: (t) => t.trim() === '' ? 'a file name, please' : undefined })
    if (!file) return
    const data = await host.export(chosen.id, { scope: this.#scope, ...(this.ui.current ? { view: this.ui.current.id } : {}) })
    const target = path.resolve(this.#opts.cwd ?? process.cwd(), file)
    await fs.writeFile(target, data, { mode: 0o600, flag: 'wx' }).catch((err: NodeJS.ErrnoException) => {
      throw err.code === 'EEXIST' ? PatchswarmError.ALREADY_EXISTS(`${target} exists; give another name`) : PatchswarmError.IO_ERROR(`cannot write ${target}: ${err.message}`, err)
    })
    this.ui.message(`exported ${chosen.id} to ${target}`)
  }

  // ---- closing --------------------------------------------------------------------------------

  /** Gives the terminal back, deactivates the extensions, releases the app's own database. Idempotent. */
  close (): Promise<void> {
    this.#closing ??= (async () => {
      for (const d of [...this.#extensionKeys.splice(0), ...this.#registered.splice(0)]) d.dispose()
      this.ui.close()
      this.data.close()
      await this.extensionsReady.catch(() => {})
      await this.#host?.close().catch(() => {})
      if (this.#ownDb) {
        await this.#ownDb.db.close().catch(() => {})
        if (this.#ownDb.temp) await fs.rm(this.#ownDb.temp, { recursive: true, force: true }).catch(() => {})
      }
      this.#resolveClosed()
      this.emit('close')
    })()
    return this.#closing
  }
}

/**
 * The console on a screen: `createTuiApp({ ui: createUi({ input, output, readonly }), access, admin })`.
 * Resolves once the first view shows (extensions go on starting: see `extensionsReady`); rejects
 * (FORBIDDEN for an unknown admin, UNAVAILABLE without a console) without closing the screen.
 */
export async function createTuiApp (opts: TuiAppOptions): Promise<TuiApp> {
  const app = new TuiApp(opts)
  await app.start()
  return app
}
