// The key-action table: the one place that says which key does what, where. `?` help, the footer
// hints, `:` commands and key handling all read it, so they cannot disagree. Under --readonly a
// dangerous action never enters the table, so no path (key, command, help, hint) can reach it.
// User keymaps replace an action's keys; Ctrl-A and Ctrl-B are refused everywhere: they are the
// tmux prefixes, and the console runs inside tmux over SSH.
import { readFile } from 'node:fs/promises'
import { PatchswarmError } from '../../lib/errors.js'
import { evaluateWhen, parseWhen, type WhenExpr } from '../extensions/when.js'

export interface Disposable {
  dispose (): void
}

/** Context keys a `when` clause is evaluated against (`view == rollouts && selected`). */
export type Context = Readonly<Record<string, unknown>>

export interface KeyAction {
  /** The action's name; also its `:` command (`:rollouts`) and what a user keymap refers to. */
  action: string
  /** One line for `?` help. */
  description: string
  /** Default keys: `x`, `G`, `?`, `enter`, `ctrl+r`, `shift+tab` (blessed's `C-r`, `S-tab` work too). */
  key?: string | readonly string[]
  /** Where it applies, as in VS Code: `view == rollouts && selected`. Always, without one. */
  when?: string
  /** Asks first (the safe choice focused) and is left out under --readonly. */
  dangerous?: boolean
  /** The question a dangerous action asks; `<description>?` without one. */
  confirm?: string | ((args: readonly string[]) => string)
  /** A short label for the footer, or false to keep it out of the footer (navigation keys). */
  hint?: string | false
  /** False: a key only, not a `:` command. */
  command?: boolean
  /** More `:` names (`q` for quit). */
  aliases?: readonly string[]
  /** Completes the argument being typed after `:action `. */
  complete?: (partial: string, args: readonly string[]) => readonly string[]
  run: (args: readonly string[]) => unknown
}

/** An action as the table holds it: with the keys in effect (a user keymap's, else the defaults). */
export interface Binding extends Omit<KeyAction, 'key'> {
  readonly keys: readonly string[]
  /** True when the keys come from the user's keymap. */
  readonly fromUser: boolean
}

/** A user keymap: action name → the keys that replace its defaults (none: unbound). */
export type Keymap = ReadonlyMap<string, readonly string[]>

// ---- key names ------------------------------------------------------------------------------

const NAMED = new Set(['enter', 'escape', 'tab', 'space', 'backspace', 'delete', 'insert', 'home', 'end', 'pageup', 'pagedown',
  'up', 'down', 'left', 'right', ...Array.from({ length: 12 }, (_, i) => `f${i + 1}`)])
const ALIASES: Record<string, string> = { esc: 'escape', return: 'enter', pgup: 'pageup', pgdn: 'pagedown', del: 'delete', ins: 'insert', linefeed: 'enter' }
const MODIFIER = /^(ctrl|control|alt|meta|shift|c|m|s)[+-](?=.)/i

/** tmux prefixes: over SSH inside tmux these never reach the console, so nothing may need them. */
export const RESERVED_KEYS: ReadonlySet<string> = new Set(['ctrl+a', 'ctrl+b'])

function assemble (mods: { ctrl: boolean, alt: boolean, shift: boolean }, base: string): string {
  let { ctrl, shift } = mods
  if (base.length === 1) {
    if (/[a-z]/i.test(base)) {
      // A terminal sends Shift+g as `G` and Ctrl+Shift+g as Ctrl+g: one spelling for each.
      if (ctrl) base = base.toLowerCase()
      else if (shift || /[A-Z]/.test(base)) base = base.toUpperCase()
    }
    shift = false
  }
  return [ctrl && 'ctrl', mods.alt && 'alt', shift && 'shift', base].filter(Boolean).join('+')
}

/**
 * One spelling per key: `ctrl+r`, `alt+x`, `shift+tab`, `G`, `?`, `enter`. Accepts VS Code's
 * (`Ctrl+R`, `shift+g`) and blessed's (`C-r`, `S-g`, `M-x`) spellings. Throws an Error saying
 * what is wrong, for the caller to name the field; refuses the tmux prefixes.
 */
export function normalizeKey (spec: string): string {
  if (typeof spec !== 'string' || spec === '') throw new Error('a key must be a non-empty string')
  let rest = spec
  const mods = { ctrl: false, alt: false, shift: false }
  if (rest.length > 1) {
    for (let m = MODIFIER.exec(rest); m; m = MODIFIER.exec(rest)) {
      const name = m[1]!.toLowerCase()
      const mod = name === 'c' || name === 'ctrl' || name === 'control' ? 'ctrl' : name === 's' || name === 'shift' ? 'shift' : 'alt'
      if (mods[mod]) throw new Error(`${JSON.stringify(spec)}: ${mod} appears twice`)
      mods[mod] = true
      rest = rest.slice(m[0].length)
    }
  }
  let base: string
  if (rest === ' ') base = 'space'
  else if ([...rest].length === 1) {
    if (rest < ' ' || rest === '\x7f') throw new Error(`${JSON.stringify(spec)}: not a printable key`)
    base = rest
  } else {
    base = ALIASES[rest.toLowerCase()] ?? rest.toLowerCase()
    if (!NAMED.has(base)) throw new Error(`${JSON.stringify(spec)}: unknown key ${JSON.stringify(rest)}`)
  }
  const key = assemble(mods, base)
  if (RESERVED_KEYS.has(key)) throw new Error(`${key} is kept free for tmux (its prefix key)`)
  return key
}

/** The key a terminal sent, in normalizeKey's spelling; undefined for what is no key press. */
export function keyFromTerminal (ch: string | undefined, key: { name?: string | undefined, ctrl?: boolean, meta?: boolean, shift?: boolean }): string | undefined {
  // blessed reports Enter twice (`return`, then `enter`); one is enough.
  if (key.name === 'return') return undefined
  const mods = { ctrl: Boolean(key.ctrl), alt: Boolean(key.meta), shift: Boolean(key.shift) }
  const name = key.name === undefined ? ch : (ALIASES[key.name] ?? key.name)
  if (name === undefined || name === '') return undefined
  if (name === 'space') return assemble(mods, 'space')
  if ([...name].length === 1) return name < ' ' ? undefined : assemble(mods, name)
  return NAMED.has(name) ? assemble(mods, name) : undefined
}

/** How a key shows in the footer and help: `^R`, `esc`, `S-tab`, `pgdn`. */
export function displayKey (key: string): string {
  const short: Record<string, string> = { escape: 'esc', pageup: 'pgup', pagedown: 'pgdn', delete: 'del', space: 'space' }
  const parts = key.length > 1 ? key.split('+') : [key]
  const base = parts.pop()!
  const shown = short[base] ?? base
  if (parts.length === 1 && parts[0] === 'ctrl' && base.length === 1) return `^${base.toUpperCase()}`
  return [...parts.map((m) => ({ ctrl: 'C', alt: 'M', shift: 'S' })[m] ?? m), shown].join('-')
}

// ---- the table ------------------------------------------------------------------------------

const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,79}$/

interface Entry {
  readonly spec: KeyAction
  readonly defaults: readonly string[]
  readonly when: WhenExpr | undefined
  readonly seq: number
}

function bad (msg: string): PatchswarmError {
  return PatchswarmError.BAD_ARGUMENT(msg)
}

export class KeyTable {
  readonly readonly: boolean
  #entries: Entry[] = []
  #overrides: Keymap
  #seq = 0

  constructor (opts: { readonly?: boolean, keymap?: Keymap } = {}) {
    this.readonly = opts.readonly === true
    this.#overrides = opts.keymap ?? new Map()
  }

  /**
   * Adds an action. Under --readonly a dangerous one is dropped here, so it never shows or runs.
   * A second action of the same name shadows the first until disposed (the same view opened twice).
   */
  register (action: KeyAction): Disposable {
    if (!NAME.test(action?.action ?? '')) throw bad(`action name ${JSON.stringify(action?.action)} must be a word (letters, digits, . : / - _)`)
    if (typeof action.description !== 'string' || action.description.trim() === '') throw bad(`${action.action}: description is required`)
    if (typeof action.run !== 'function') throw bad(`${action.action}: run must be a function`)
    for (const alias of action.aliases ?? []) if (!NAME.test(alias)) throw bad(`${action.action}: alias ${JSON.stringify(alias)} must be a word`)
    const keys = action.key === undefined ? [] : typeof action.key === 'string' ? [action.key] : action.key
    const defaults = keys.map((k, i) => {
      try { return normalizeKey(k) } catch (err) { throw bad(`${action.action}: key[${i}]: ${(err as Error).message}`) }
    })
    let when: WhenExpr | undefined
    if (action.when !== undefined) {
      try { when = parseWhen(action.when) } catch (err) { throw bad(`${action.action}: when: ${(err as Error).message}`) }
    }
    if (this.readonly && action.dangerous) return { dispose () {} }
    const entry: Entry = { spec: action, defaults, when, seq: this.#seq++ }
    this.#entries.push(entry)
    return { dispose: () => { this.#entries = this.#entries.filter((e) => e !== entry) } }
  }

  /** Replaces the user keymap (a reloaded config file). */
  setKeymap (keymap: Keymap): void {
    this.#overrides = keymap
  }

  /** Every action in effect (shadowed ones left out), in registration order; with `context`, those that apply there. */
  list (context?: Context): Binding[] {
    const newest = new Map<string, Entry>()
    for (const e of this.#entries) newest.set(e.spec.action, e)
    return [...newest.values()]
      .sort((a, b) => a.seq - b.seq)
      .filter((e) => context === undefined || this.#applies(e, context))
      .map((e) => this.#binding(e))
  }

  /** The action a key runs in `context`: user keys first, then actions with a `when`, then the newest. */
  lookup (key: string, context: Context): Binding | undefined {
    let best: Entry | undefined
    let bestRank = -1
    for (const e of this.#entries) {
      if (!this.#keysOf(e).includes(key) || !this.#applies(e, context)) continue
      const rank = (this.#overrides.has(e.spec.action) ? 2 : 0) + (e.when ? 1 : 0)
      if (rank > bestRank || (rank === bestRank && e.seq > best!.seq)) { best = e; bestRank = rank }
    }
    return best && this.#binding(best)
  }

  /**
   * The action `:name` runs: by name or alias, the newest registration. `available` is false when
   * it exists but its `when` does not hold here.
   */
  command (name: string, context: Context): { binding: Binding, available: boolean } | undefined {
    for (let i = this.#entries.length - 1; i >= 0; i--) {
      const e = this.#entries[i]!
      if (e.spec.command === false) continue
      if (e.spec.action !== name && !(e.spec.aliases ?? []).includes(name)) continue
      return { binding: this.#binding(e), available: this.#applies(e, context) }
    }
    return undefined
  }

  /** Names `:` can complete to here: commands that apply in `context`, aliases included. */
  commandNames (context: Context): string[] {
    const names = new Set<string>()
    for (const b of this.list(context)) {
      if (b.command === false) continue
      names.add(b.action)
      for (const a of b.aliases ?? []) names.add(a)
    }
    return [...names].sort()
  }

  #keysOf (e: Entry): readonly string[] {
    return this.#overrides.get(e.spec.action) ?? e.defaults
  }

  #applies (e: Entry, context: Context): boolean {
    return e.when === undefined || evaluateWhen(e.when, context)
  }

  #binding (e: Entry): Binding {
    const { key: _key, ...rest } = e.spec
    return { ...rest, keys: this.#keysOf(e), fromUser: this.#overrides.has(e.spec.action) }
  }
}

// ---- user keymaps ---------------------------------------------------------------------------

const field = (action: string) => `keys[${JSON.stringify(action)}]`

/**
 * A keymap file's content: `{ "keys": { "rollout.abort": "X", "help": ["?", "f1"], "list.top": [] } }`.
 * Errors are BAD_CONFIG naming the file and the field.
 */
export function parseKeymap (json: unknown, source = 'keymap'): Keymap {
  const fail = (where: string, msg: string): never => { throw PatchswarmError.BAD_CONFIG(`${source}: ${where}: ${msg}`) }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return fail('(root)', 'must be an object')
  for (const k of Object.keys(json)) if (k !== 'keys') fail(k, 'not a known field (only "keys")')
  const keys = (json as { keys?: unknown }).keys
  if (keys === undefined) return new Map()
  if (typeof keys !== 'object' || keys === null || Array.isArray(keys)) return fail('keys', 'must be an object of action name → key or list of keys')
  const out = new Map<string, string[]>()
  for (const [action, value] of Object.entries(keys)) {
    if (!NAME.test(action)) fail(field(action), 'not an action name')
    const list = typeof value === 'string' ? [value] : value
    if (!Array.isArray(list)) fail(field(action), 'must be a key or a list of keys')
    out.set(action, (list as unknown[]).map((k, i) => {
      const where = typeof value === 'string' ? field(action) : `${field(action)}[${i}]`
      if (typeof k !== 'string') return fail(where, 'must be a string')
      try { return normalizeKey(k) } catch (err) { return fail(where, (err as Error).message) }
    }))
  }
  return out
}

/** Reads a keymap file; a missing file is an empty keymap when `optional`. */
export async function loadKeymap (file: string, opts: { optional?: boolean } = {}): Promise<Keymap> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    if (opts.optional && (err as NodeJS.ErrnoException).code === 'ENOENT') return new Map()
    throw PatchswarmError.BAD_CONFIG(`${file}: cannot read: ${(err as Error).message}`, err)
  }
  let json: unknown
  try { json = JSON.parse(text) } catch (err) { throw PatchswarmError.BAD_CONFIG(`${file}: not JSON: ${(err as Error).message}`, err) }
  return parseKeymap(json, file)
}
