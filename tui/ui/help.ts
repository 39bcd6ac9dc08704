// `?` help: the key table as it applies to the view below, in a table (so `/` filters it too).
// Under --readonly the dangerous actions are not in the table at all, so they are not listed.
import { displayKey, type Binding } from './keys.js'
import type { Region } from './region.js'
import type { View } from './view.js'

export class HelpView implements View {
  readonly id = 'help'
  readonly #bindings: readonly Binding[]
  readonly #of: string

  /** `bindings`: the actions in effect where help was asked for, `of`: that view's title. */
  constructor (bindings: readonly Binding[], of: string) {
    this.#bindings = bindings
    this.#of = of
  }

  get title (): string { return `Help: ${this.#of}` }

  mount (region: Region): void {
    region.table<Binding>({
      title: 'Keys and commands (! asks first)',
      key: (b) => b.action,
      tone: (b) => b.dangerous ? 'bad' : undefined,
      columns: [
        { title: 'Key', width: 14, value: (b) => b.keys.map(displayKey).join(' ') },
        { title: 'Command', width: 20, value: (b) => b.command === false ? '' : `:${b.action}` },
        { title: 'Description', value: (b) => b.description + (b.dangerous ? ' !' : '') }
      ]
    }).setRows(this.#bindings)
  }

  unmount (): void {}
}
