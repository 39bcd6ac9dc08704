// The console's screen: header, the top view's region, footer hints and a status line that turns
// into the `:` command line or the `/` filter. One per terminal: each SSH session makes its own on
// its own streams. Keys go to the open dialog, else the open input line, else the key table. Views
// are a stack; Esc clears the filter, then goes back.
import { EventEmitter } from 'node:events'
import { PatchswarmError } from '../../lib/errors.js'
import { createBackend, type Backend, type BackendOptions, type MouseHit, type Rect, type Surface } from './backend.js'
import { CommandLine, History, completeLine, parseCommand } from './command-line.js'
import { ConfirmDialog, PickDialog, PromptDialog, type ConfirmOptions, type Modal, type PickItem, type PickOptions, type PromptOptions } from './dialog.js'
import { compileFilter, type Filter } from './filter.js'
import { renderCandidates, renderHints, type HintSpan } from './footer.js'
import { HelpView } from './help.js'
import { KeyTable, type Binding, type Context, type Disposable, type KeyAction, type Keymap } from './keys.js'
import { LineEditor } from './line-editor.js'
import { ListWidget } from './list.js'
import { RegionNode } from './region.js'
import { fit, line, markup, type Tone } from './style.js'
import { Table } from './table.js'
import { throttle, type Throttle } from './throttle.js'
import { Tree } from './tree.js'
import type { View } from './view.js'
import type { Widget, WidgetHost } from './widget.js'

export interface UiOptions extends BackendOptions {
  /** Dangerous actions are left out of everything: keys, commands, help, hints. */
  readonly?: boolean
  /** The user's keymap (loadKeymap), replacing default keys per action. */
  keymap?: Keymap
  /** At most one render per this many ms (100). */
  renderInterval?: number
  /** How long a message stays in the status line (4000 ms; errors twice as long). */
  messageMs?: number
  /** The first crumb of the header (`patchswarm`). */
  name?: string
}

export type MessageLevel = 'info' | 'warn' | 'error'

interface Entry {
  view: View
  region: RegionNode
  keys: Disposable[]
  focused: Widget | undefined
  filter: Filter | null
  /** Who got the filter: the view (onFilter) or the list that had the focus. */
  filterTarget: { setFilter?: (f: Filter | null) => void } | undefined
}

type InputLine =
  | { kind: 'command', line: CommandLine }
  | { kind: 'filter', editor: LineEditor, entry: Entry }

const VIEW_ID = /^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,63}$/
const TONES: Record<MessageLevel, Tone | undefined> = { info: undefined, warn: 'warn', error: 'bad' }

const errorText = (err: unknown) => err instanceof Error ? err.message : String(err)

/**
 * Events: `quit` (the admin asked to leave; the host closes), `resize` ({ width, height }),
 * `close`, and `error` when a render threw (a view's formatter; the session goes on).
 */
export class Ui extends EventEmitter {
  readonly keys: KeyTable
  readonly #backend: Backend
  readonly #render: Throttle
  readonly #header: Surface
  readonly #footer: Surface
  readonly #statusLine: Surface
  readonly #name: string
  readonly #messageMs: number
  readonly #history = new History()
  readonly #builtins: Disposable[] = []
  readonly #builtinNames = new Set<string>()
  #stack: Entry[] = []
  #modals: Modal[] = []
  #input: InputLine | undefined
  #message: { text: string, level: MessageLevel, timer: NodeJS.Timeout } | undefined
  #status = ''
  #hintSpans: HintSpan[] = []
  #closed = false
  #frames = 0

  constructor (opts: UiOptions) {
    super()
    this.#backend = createBackend(opts)
    this.keys = new KeyTable({ readonly: opts.readonly === true, ...(opts.keymap ? { keymap: opts.keymap } : {}) })
    this.#name = opts.name ?? 'patchswarm'
    this.#messageMs = opts.messageMs ?? 4000
    this.#render = throttle(() => this.#draw(), opts.renderInterval ?? 100)
    this.#header = this.#backend.surface()
    this.#footer = this.#backend.surface()
    this.#statusLine = this.#backend.surface()
    this.#footer.onMouse((hit) => this.#footerClick(hit))
    this.#backend.onKey((key) => this.#key(key))
    this.#backend.onResize(() => this.#layout())
    this.#registerBuiltins()
    this.#layout()
  }

  get readonly (): boolean { return this.keys.readonly }
  get width (): number { return this.#backend.width }
  get height (): number { return this.#backend.height }
  get closed (): boolean { return this.#closed }
  /** Renders so far (for benchmarks). */
  get frames (): number { return this.#frames }
  /** The open views, bottom first. */
  get views (): readonly View[] { return this.#stack.map((e) => e.view) }
  get current (): View | undefined { return this.#top()?.view }
  /** The top view's focused widget. */
  get focused (): Widget | undefined { return this.#top()?.focused }
  /** The `/` filter of the top view. */
  get filter (): Filter | null { return this.#top()?.filter ?? null }
  /** True while a dialog is open. */
  get modal (): boolean { return this.#modals.length > 0 }

  /** Text on the right of the header (the admin, the console's state). */
  setStatus (text: string): void {
    this.#status = text
    this.invalidate()
  }

  /** Adds an action to the key table (see KeyAction); dispose to remove it. */
  register (action: KeyAction): Disposable {
    const d = this.keys.register(action)
    this.invalidate()
    return { dispose: () => { d.dispose(); this.invalidate() } }
  }

  // ---- views ----------------------------------------------------------------------------------

  /** Opens `view` on top; the one below keeps its state (hidden) until Esc comes back to it. */
  push (view: View): void {
    this.#assertOpen()
    if (!VIEW_ID.test(view?.id ?? '')) throw PatchswarmError.BAD_ARGUMENT(`view id ${JSON.stringify(view?.id)} must be a word (letters, digits, . : / - _)`)
    const keys: Disposable[] = []
    try {
      for (const k of view.keys ?? []) {
        keys.push(this.keys.register({ ...k, when: k.when ? `view == ${view.id} && (${k.when})` : `view == ${view.id}` }))
      }
    } catch (err) {
      for (const d of keys) d.dispose()
      throw err
    }
    const below = this.#top()
    const host: WidgetHost = {
      invalidate: () => this.invalidate(),
      focus: (w) => this.#focus(entry, w),
      interactive: () => this.#modals.length === 0
    }
    const region = new RegionNode({
      surface: () => this.#backend.surface(),
      host,
      adopt: (w) => {
        if (this.#top() !== entry) w.hide()
        if (w.focusable && entry.focused === undefined) this.#focus(entry, w)
      }
    }, this.#bodyRect())
    const entry: Entry = { view, region, keys, focused: undefined, filter: null, filterTarget: undefined }
    for (const w of below?.region.widgets() ?? []) w.hide()
    this.#stack.push(entry)
    try {
      view.mount(entry.region)
    } catch (err) {
      this.#drop(entry, false)
      this.message(`${view.title}: ${errorText(err)}`, 'error')
      throw err
    }
    this.invalidate()
  }

  /** Closes the top view and shows the one below; false at the first view. */
  back (): boolean {
    if (this.#stack.length <= 1) return false
    this.#drop(this.#top()!, true)
    return true
  }

  /** Closes every view, then opens `view` (a `:` jump that should not pile up history). */
  reset (view: View): void {
    while (this.#stack.length > 0) this.#drop(this.#top()!, true)
    this.push(view)
  }

  #drop (entry: Entry, unmount: boolean): void {
    const i = this.#stack.indexOf(entry)
    if (i === -1) return
    this.#stack.splice(i, 1)
    if (unmount) {
      try { entry.view.unmount() } catch (err) { this.message(`${entry.view.title}: ${errorText(err)}`, 'error') }
    }
    for (const d of entry.keys) d.dispose()
    entry.region.destroy()
    if (this.#input?.kind === 'filter' && this.#input.entry === entry) this.#input = undefined
    for (const w of this.#top()?.region.widgets() ?? []) w.show()
    this.invalidate()
  }

  #top (): Entry | undefined { return this.#stack[this.#stack.length - 1] }

  #focus (entry: Entry, w: Widget | undefined): void {
    if (entry.focused === w) return
    entry.focused?.setFocused(false)
    entry.focused = w
    w?.setFocused(true)
    this.invalidate()
  }

  #cycleFocus (step: number): void {
    const e = this.#top()
    if (!e) return
    const ring = e.region.widgets().filter((w) => w.focusable)
    if (ring.length === 0) return
    const at = e.focused ? ring.indexOf(e.focused) : -1
    this.#focus(e, ring[(at + step + ring.length) % ring.length])
  }

  // ---- filter ---------------------------------------------------------------------------------

  /** Sets the top view's `/` filter (`!` inverts); null or '' clears it. */
  setFilter (text: string | null): void {
    const e = this.#top()
    if (e) this.#applyFilter(e, text === null ? null : compileFilter(text))
  }

  #applyFilter (e: Entry, filter: Filter | null): void {
    e.filter = filter
    if (e.filterTarget === undefined) {
      e.filterTarget = e.view.onFilter ? { setFilter: (f) => e.view.onFilter!(f) } : e.focused
    }
    e.filterTarget?.setFilter?.(filter)
    if (filter === null) e.filterTarget = undefined
    this.invalidate()
  }

  // ---- actions and keys -----------------------------------------------------------------------

  /** The context `when` clauses see now. */
  context (): Context {
    const e = this.#top()
    const w = e?.focused
    return {
      ...e?.view.context?.(),
      view: e?.view.id,
      readonly: this.readonly,
      filtered: Boolean(e?.filter),
      list: w instanceof ListWidget,
      table: w instanceof Table,
      tree: w instanceof Tree,
      selected: w instanceof ListWidget && w.selected !== undefined,
      depth: this.#stack.length
    }
  }

  /** Runs `:name args` as if typed; false when it did not run (unknown, not here, declined). */
  async run (name: string, args: readonly string[] = []): Promise<boolean> {
    const found = this.keys.command(name, this.context())
    if (!found) {
      this.message(`unknown command :${name}`, 'error')
      return false
    }
    if (!found.available) {
      this.message(`:${name} does not apply here`, 'warn')
      return false
    }
    return this.#run(found.binding, args)
  }

  /** Every run goes through here: a dangerous action asks first, with Cancel focused. */
  async #run (b: Binding, args: readonly string[]): Promise<boolean> {
    if (b.dangerous) {
      const question = typeof b.confirm === 'function' ? b.confirm(args) : (b.confirm ?? `${b.description}?`)
      const ok = await this.confirm({ title: b.description, message: question, confirm: typeof b.hint === 'string' ? b.hint : b.action, dangerous: true }).catch(() => false)
      if (!ok) return false
    }
    try {
      await b.run(args)
      return true
    } catch (err) {
      this.message(errorText(err), 'error')
      return false
    } finally {
      this.invalidate()
    }
  }

  #key (key: string): void {
    if (this.#closed) return
    const modal = this.#modals[this.#modals.length - 1]
    if (modal) {
      modal.key(key)
      this.invalidate()
      return
    }
    if (this.#input) return this.#inputKey(this.#input, key)
    const b = this.keys.lookup(key, this.context())
    if (b) void this.#run(b, [])
  }

  #inputKey (input: InputLine, key: string): void {
    if (input.kind === 'command') {
      const r = input.line.key(key)
      if (r?.kind === 'submit') {
        this.#input = undefined
        const cmd = parseCommand(r.line)
        if (cmd) void this.run(cmd.name, cmd.args)
      } else if (r?.kind === 'cancel') this.#input = undefined
    } else {
      const r = input.editor.key(key)
      if (r === 'changed') this.#applyFilter(input.entry, compileFilter(input.editor.text))
      else if (r === 'submit') this.#input = undefined
      else if (r === 'cancel') {
        this.#input = undefined
        this.#applyFilter(input.entry, null)
      } else if (r === 'previous' || r === 'next') {
        // Walk the filtered list without leaving the filter.
        const w = input.entry.focused
        if (w instanceof ListWidget) w.move(r === 'next' ? 1 : -1)
      }
    }
    this.invalidate()
  }

  #complete (text: string) {
    const ctx = this.context()
    return completeLine(text, this.keys.commandNames(ctx), (cmd, partial, before) => {
      const found = this.keys.command(cmd, ctx)
      return found?.available ? (found.binding.complete?.(partial, before) ?? []) : []
    })
  }

  #registerBuiltins (): void {
    const list = (fn: (w: ListWidget<unknown>) => void) => () => {
      const w = this.focused
      if (w instanceof ListWidget) fn(w)
    }
    const nav = { when: 'list', hint: false as const, command: false }
    const actions: KeyAction[] = [
      { action: 'help', key: '?', hint: 'help', description: 'Show the keys and commands of this view', run: () => this.#help() },
      { action: 'filter', key: '/', hint: 'filter', description: 'Filter the list: a regular expression, ! in front inverts it', run: () => this.#openFilter() },
      { action: 'command', key: ':', hint: 'cmd', command: false, description: 'Type a command (tab completes)', run: () => this.#openCommand() },
      {
        action: 'back',
        key: 'escape',
        hint: 'back',
        description: 'Clear the filter, else go back to the previous view',
        run: () => { const e = this.#top(); if (e?.filter) this.#applyFilter(e, null); else this.back() }
      },
      { action: 'quit', key: 'ctrl+c', aliases: ['q'], hint: 'quit', description: 'Leave the console', run: () => { this.emit('quit') } },
      { action: 'focus.next', key: 'tab', hint: false, command: false, description: 'Move to the next pane', run: () => this.#cycleFocus(1) },
      { action: 'focus.previous', key: 'shift+tab', hint: false, command: false, description: 'Move to the previous pane', run: () => this.#cycleFocus(-1) },
      { ...nav, action: 'list.up', key: ['up', 'k'], description: 'Move up', run: list((w) => w.move(-1)) },
      { ...nav, action: 'list.down', key: ['down', 'j'], description: 'Move down', run: list((w) => w.move(1)) },
      { ...nav, action: 'list.pageUp', key: ['pageup', 'ctrl+u'], description: 'Page up', run: list((w) => w.pageUp()) },
      { ...nav, action: 'list.pageDown', key: ['pagedown', 'ctrl+d'], description: 'Page down', run: list((w) => w.pageDown()) },
      { ...nav, action: 'list.top', key: ['home', 'g'], description: 'Go to the first row', run: list((w) => w.top()) },
      { ...nav, action: 'list.bottom', key: ['end', 'G'], description: 'Go to the last row', run: list((w) => w.bottom()) },
      { ...nav, action: 'list.open', key: 'enter', description: 'Open the selected row', run: list((w) => w.open()) },
      { ...nav, when: 'table', action: 'table.sort', key: 'o', description: 'Sort by the next column', run: list((w) => { if (w instanceof Table) w.sortNext() }) },
      { ...nav, when: 'table', action: 'table.reverse', key: 'O', description: 'Reverse the sort order', run: list((w) => { if (w instanceof Table) w.reverseSort() }) },
      { ...nav, when: 'tree', action: 'tree.expand', key: ['right', 'l'], description: 'Expand the node (or step into it)', run: list((w) => { if (w instanceof Tree) w.expand() }) },
      { ...nav, when: 'tree', action: 'tree.collapse', key: ['left', 'h'], description: 'Collapse the node (or step out to its parent)', run: list((w) => { if (w instanceof Tree) w.collapse() }) },
      { ...nav, when: 'tree', action: 'tree.toggle', key: 'space', description: 'Expand or collapse the node', run: list((w) => { if (w instanceof Tree) w.toggle() }) }
    ]
    for (const a of actions) {
      this.#builtins.push(this.keys.register(a))
      this.#builtinNames.add(a.action)
    }
  }

  #help (): void {
    const e = this.#top()
    if (e?.view instanceof HelpView) { this.back(); return }
    this.push(new HelpView(this.#ordered(this.keys.list(this.context())), e?.view.title ?? this.#name))
  }

  #openFilter (): void {
    const e = this.#top()
    if (e) this.#input = { kind: 'filter', editor: new LineEditor(e.filter?.text ?? ''), entry: e }
  }

  #openCommand (): void {
    this.#input = { kind: 'command', line: new CommandLine(this.#history, (t) => this.#complete(t)) }
  }

  /** Views' and extensions' actions first, then the layer's own: what the footer and help show. */
  #ordered (bindings: Binding[]): Binding[] {
    return [...bindings.filter((b) => !this.#builtinNames.has(b.action)), ...bindings.filter((b) => this.#builtinNames.has(b.action))]
  }

  #footerClick (hit: MouseHit): void {
    if (hit.kind !== 'click' || this.#modals.length > 0 || this.#input) return
    const span = this.#hintSpans.find((s) => hit.x >= s.from && hit.x < s.to)
    const b = span && this.keys.list(this.context()).find((x) => x.action === span.action)
    if (b) void this.#run(b, [])
  }

  // ---- dialogs and messages -------------------------------------------------------------------

  /** Asks a yes/no question; Cancel is focused first. Resolves true only on the confirm button. */
  confirm (opts: ConfirmOptions): Promise<boolean> {
    return this.#open<boolean>((done) => new ConfirmDialog(this.#backend.surface(), opts, done, () => this.invalidate()))
  }

  /** Asks for a line of text; undefined when cancelled. */
  prompt (opts: PromptOptions = {}): Promise<string | undefined> {
    return this.#open<string | undefined>((done) => new PromptDialog(this.#backend.surface(), opts, done, () => this.invalidate()))
  }

  /** A quick pick; undefined when cancelled. */
  pick<T> (items: ReadonlyArray<PickItem<T>>, opts: PickOptions = {}): Promise<T | undefined> {
    return this.#open<T | undefined>((done) => new PickDialog<T>(this.#backend.surface(), items, opts, done, () => this.invalidate()))
  }

  /** A line in the status bar for a few seconds. */
  message (text: string, level: MessageLevel = 'info'): void {
    if (this.#closed) return
    if (this.#message) clearTimeout(this.#message.timer)
    const timer = setTimeout(() => { this.#message = undefined; this.invalidate() }, level === 'error' ? this.#messageMs * 2 : this.#messageMs)
    this.#message = { text, level, timer }
    this.invalidate()
  }

  #open<R> (make: (done: (result: R) => void) => Modal): Promise<R> {
    if (this.#closed) return Promise.reject(PatchswarmError.CLOSED('the console screen is closed'))
    return new Promise<R>((resolve) => {
      const modal: Modal = make((result) => {
        this.#modals = this.#modals.filter((m) => m !== modal)
        this.invalidate()
        resolve(result)
      })
      this.#modals.push(modal)
      modal.place(this.width, this.height)
      this.invalidate()
    })
  }

  // ---- layout and rendering -------------------------------------------------------------------

  /** The far end's window changed size (an SSH window-change request). */
  resize (width: number, height: number): void {
    this.#assertOpen()
    this.#backend.resize(Math.max(1, Math.floor(width)), Math.max(1, Math.floor(height)))
  }

  #bodyRect (): Rect {
    return { top: 1, left: 0, width: this.width, height: Math.max(1, this.height - 3) }
  }

  #layout (): void {
    if (this.#closed) return
    const w = this.width
    const h = this.height
    this.#header.place({ top: 0, left: 0, width: w, height: 1 })
    this.#footer.place({ top: Math.max(1, h - 2), left: 0, width: w, height: 1 })
    this.#statusLine.place({ top: Math.max(1, h - 1), left: 0, width: w, height: 1 })
    const body = this.#bodyRect()
    for (const e of this.#stack) e.region.layout(body)
    for (const m of this.#modals) m.place(w, h)
    this.emit('resize', { width: w, height: h })
    this.invalidate()
  }

  /** Asks for a render; renders coalesce to one per interval. */
  invalidate (): void {
    if (!this.#closed) this.#render.schedule()
  }

  /** Renders now (tests, the benchmark). */
  flush (): void {
    if (!this.#closed) this.#render.flush()
  }

  /** The visible text of the last render, one string per row. */
  snapshot (): string[] {
    return this.#backend.snapshot()
  }

  #draw (): void {
    if (this.#closed) return
    try {
      const w = this.width
      this.#header.setLines([this.#headerLine(w)])
      this.#footer.setLines([this.#footerLine(w)])
      this.#statusLine.setLines([this.#statusText(w)])
      for (const widget of this.#top()?.region.widgets() ?? []) widget.draw()
      for (const m of this.#modals) m.draw()
      this.#backend.render()
      this.#frames++
    } catch (err) {
      // A view's formatter threw: report it (to whoever listens) instead of taking the session down.
      if (this.listenerCount('error') > 0) this.emit('error', err)
    }
  }

  #headerLine (width: number): string {
    const crumbs = ` ${[this.#name, ...this.#stack.map((e) => e.view.title)].join(' › ')}`
    const right = [this.#status, this.readonly ? '[readonly]' : ''].filter(Boolean).join(' ')
    const room = width - [...right].length - 1
    // The crumbs give way to the status; on a very narrow screen everything is cut alike.
    const spans = room > 0 ? [...fit(crumbs, room), { text: ` ${right}` }] : fit(`${crumbs} ${right}`, width)
    return markup(spans, { inverse: true })
  }

  #footerLine (width: number): string {
    this.#hintSpans = []
    if (this.#input?.kind === 'command' && this.#input.line.candidates.length > 0) return renderCandidates(this.#input.line.candidates, width)
    if (this.#input?.kind === 'filter') return line([{ text: 'enter: keep   esc: clear   ↑↓: move   !: invert', tone: 'dim' }], width)
    if (this.#input?.kind === 'command') return line([{ text: 'tab: complete   ↑↓: history   enter: run   esc: cancel', tone: 'dim' }], width)
    const hints = renderHints(this.#ordered(this.keys.list(this.context())), width)
    this.#hintSpans = hints.spans
    return hints.line
  }

  #statusText (width: number): string {
    const input = this.#input
    if (input?.kind === 'command') return input.line.render(width)
    if (input?.kind === 'filter') return input.editor.render('/', width)
    if (this.#message) return line(this.#message.text, width, { tone: TONES[this.#message.level] })
    const f = this.#top()?.filter
    return f ? line([{ text: `/${f.text}`, tone: 'accent' }, { text: f.literal ? '  (not a regular expression: matched as text)' : '', tone: 'dim' }], width) : ''
  }

  #assertOpen (): void {
    if (this.#closed) throw PatchswarmError.CLOSED('the console screen is closed')
  }

  /** Closes dialogs (as cancelled) and views, and gives the terminal back. Idempotent. */
  close (): void {
    if (this.#closed) return
    for (const m of [...this.#modals].reverse()) m.cancel()
    while (this.#stack.length > 0) this.#drop(this.#top()!, true)
    this.#closed = true
    this.#render.cancel()
    if (this.#message) clearTimeout(this.#message.timer)
    for (const d of this.#builtins) d.dispose()
    this.#backend.destroy()
    this.emit('close')
  }
}

/** A screen on the given streams: `createUi({ input, output, terminal, width, height })`. */
export function createUi (opts: UiOptions): Ui {
  return new Ui(opts)
}
