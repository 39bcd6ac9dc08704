// What the extension host needs from the screen. The view layer (tui/ui) implements WindowApi over
// blessed; extensions only ever reach it through the host, and never see the screen itself.
import type { Observable } from 'rxjs'
import type { Disposable } from './disposable.js'

export type MessageSeverity = 'info' | 'warning' | 'error'

export interface QuickPickItem {
  label: string
  description?: string
  detail?: string
}

export interface QuickPickOptions {
  title?: string
  placeHolder?: string
}

export interface InputBoxOptions {
  title?: string
  prompt?: string
  value?: string
  placeHolder?: string
  /** Shown as dots. */
  password?: boolean
  /** A message when `value` is not acceptable; undefined when it is. */
  validateInput?: (value: string) => string | undefined
}

/** What an extension view shows: data only; the view layer draws, filters and scrolls it. */
export type ViewModel =
  | { kind: 'table', columns: string[], rows: string[][] }
  | { kind: 'text', lines: string[] }

export interface ViewContext {
  /** The tenant path the console session is looking at ('' for the whole organisation). */
  scope: string
}

export interface ViewProvider {
  /** Called when the view opens (or its scope changes); an Observable keeps it live. */
  resolve (ctx: ViewContext): ViewModel | Promise<ViewModel> | Observable<ViewModel>
}

export interface WindowApi {
  /** Shows a message; resolves with the action chosen, or undefined when dismissed or none given. */
  showMessage (severity: MessageSeverity, message: string, opts?: { source?: string, actions?: string[] }): Promise<string | undefined>
  /** Resolves with the chosen item, or undefined on escape. */
  showQuickPick<T extends QuickPickItem> (items: readonly T[], opts?: QuickPickOptions): Promise<T | undefined>
  /** Resolves with the text entered, or undefined on escape. */
  showInputBox (opts?: InputBoxOptions): Promise<string | undefined>
  registerViewProvider (viewId: string, provider: ViewProvider): Disposable
}

export interface ShownMessage { severity: MessageSeverity, message: string, source?: string }

/**
 * A WindowApi without a screen: it records messages and answers prompts from a script. For tests and
 * for running extensions headless (e.g. an export from the command line).
 */
export class MemoryWindow implements WindowApi {
  readonly messages: ShownMessage[] = []
  readonly views = new Map<string, ViewProvider>()
  /** Answers to the next prompts, in order: a label for a quick pick, text for an input box, an action for a message; undefined is escape. */
  readonly answers: Array<string | undefined> = []

  async showMessage (severity: MessageSeverity, message: string, opts: { source?: string, actions?: string[] } = {}): Promise<string | undefined> {
    this.messages.push({ severity, message, ...(opts.source !== undefined ? { source: opts.source } : {}) })
    if (!opts.actions?.length) return undefined
    const answer = this.answers.shift()
    return opts.actions.find((a) => a === answer)
  }

  async showQuickPick<T extends QuickPickItem> (items: readonly T[]): Promise<T | undefined> {
    const answer = this.answers.shift()
    return items.find((i) => i.label === answer)
  }

  async showInputBox (opts: InputBoxOptions = {}): Promise<string | undefined> {
    const answer = this.answers.shift()
    if (answer === undefined) return undefined
    // An answer the validator refuses is escape: a real input box would not let it through.
    return opts.validateInput?.(answer) === undefined ? answer : undefined
  }

  registerViewProvider (viewId: string, provider: ViewProvider): Disposable {
    this.views.set(viewId, provider)
    return { dispose: () => { if (this.views.get(viewId) === provider) this.views.delete(viewId) } }
  }
}
