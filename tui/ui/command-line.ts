// The `:` command line: completion of command names (and of arguments where the action offers it)
// from the key table, and a history walked with up/down. The layer draws it in the status line
// and shows the candidates of an ambiguous completion in the footer.
import { LineEditor } from './line-editor.js'

export interface Completion {
  line: string
  /** More than one way to go on: what they are (the line holds their common prefix). */
  candidates: string[]
}

/** Completes the last word of `line`: the command name, or an argument through `args`. */
export function completeLine (line: string, names: readonly string[], args?: (command: string, partial: string, before: readonly string[]) => readonly string[]): Completion {
  const words = line.trimStart().split(/\s+/)
  const partial = words[words.length - 1] ?? ''
  const first = words.length <= 1
  const pool = first ? names : (args?.(words[0]!, partial, words.slice(1, -1)) ?? [])
  const candidates = [...new Set(pool.filter((n) => n.startsWith(partial)))].sort()
  if (candidates.length === 0) return { line, candidates: [] }
  const head = line.slice(0, line.length - partial.length)
  if (candidates.length === 1) {
    const only = candidates[0]!
    // A tenant path goes on below itself: no space after `acme/`.
    return { line: head + only + (only.endsWith('/') ? '' : ' '), candidates: [] }
  }
  let common = candidates[0]!
  for (const c of candidates) while (!c.startsWith(common)) common = common.slice(0, -1)
  return { line: head + (common.length > partial.length ? common : partial), candidates }
}

/** `name arg "an arg with spaces"` → name and arguments; undefined for a blank line. */
export function parseCommand (line: string): { name: string, args: string[] } | undefined {
  const words: string[] = []
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g
  for (let m = re.exec(line); m; m = re.exec(line)) words.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]!)
  const [name, ...args] = words
  return name === undefined ? undefined : { name, args }
}

/** Lines entered, newest last; up/down walk them as in a shell. */
export class History {
  readonly #max: number
  #lines: string[] = []
  #at = 0
  #draft = ''

  constructor (max = 100) { this.#max = max }

  get lines (): readonly string[] { return this.#lines }

  add (line: string): void {
    if (line.trim() === '') return
    if (this.#lines[this.#lines.length - 1] !== line) this.#lines.push(line)
    if (this.#lines.length > this.#max) this.#lines.shift()
    this.reset()
  }

  /** Start walking from the newest again. */
  reset (): void {
    this.#at = this.#lines.length
    this.#draft = ''
  }

  /** The line before; `current` is kept to come back to. */
  previous (current: string): string | undefined {
    if (this.#at === 0) return undefined
    if (this.#at === this.#lines.length) this.#draft = current
    return this.#lines[--this.#at]
  }

  next (): string | undefined {
    if (this.#at >= this.#lines.length) return undefined
    this.#at++
    return this.#at === this.#lines.length ? this.#draft : this.#lines[this.#at]
  }
}

export type CommandLineResult = { kind: 'submit', line: string } | { kind: 'cancel' } | { kind: 'changed' }

export class CommandLine {
  readonly #editor = new LineEditor()
  readonly #history: History
  readonly #complete: (line: string) => Completion
  #candidates: string[] = []

  constructor (history: History, complete: (line: string) => Completion) {
    this.#history = history
    this.#complete = complete
    history.reset()
  }

  get text (): string { return this.#editor.text }
  /** Candidates of the last ambiguous completion (until the line changes). */
  get candidates (): readonly string[] { return this.#candidates }

  key (key: string): CommandLineResult | undefined {
    const r = this.#editor.key(key)
    switch (r) {
      case 'submit':
        this.#history.add(this.text)
        return { kind: 'submit', line: this.text }
      case 'cancel': return { kind: 'cancel' }
      case 'complete': {
        const c = this.#complete(this.text)
        this.#editor.set(c.line)
        this.#candidates = c.candidates
        return { kind: 'changed' }
      }
      case 'previous': case 'next': {
        const line = r === 'previous' ? this.#history.previous(this.text) : this.#history.next()
        if (line === undefined) return undefined
        this.#editor.set(line)
        this.#candidates = []
        return { kind: 'changed' }
      }
      case 'changed':
        this.#candidates = []
        return { kind: 'changed' }
      case 'moved': return { kind: 'changed' }
      default: return undefined
    }
  }

  render (width: number): string {
    return this.#editor.render(':', width)
  }
}
