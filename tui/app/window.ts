// The extension host's WindowApi on the view layer: messages in the status line (or a dialog when
// they offer actions), quick picks and input boxes as the layer's dialogs, view providers kept for
// the views the app opens. Extensions reach the screen only through here.
import { PatchswarmError } from '../../lib/errors.js'
import type { MessageLevel, Ui } from '../ui/index.js'
import type { Disposable } from '../extensions/disposable.js'
import type { InputBoxOptions, MessageSeverity, QuickPickItem, QuickPickOptions, ViewProvider, WindowApi } from '../extensions/window.js'

const LEVEL: Record<MessageSeverity, MessageLevel> = { info: 'info', warning: 'warn', error: 'error' }

export class UiWindow implements WindowApi {
  readonly #ui: Ui
  readonly #providers = new Map<string, ViewProvider>()
  /** Messages shown, newest last (the last 200): `:messages` would show them; tests read them. */
  readonly messages: Array<{ severity: MessageSeverity, message: string, source?: string }> = []

  constructor (ui: Ui) {
    this.#ui = ui
  }

  async showMessage (severity: MessageSeverity, message: string, opts: { source?: string, actions?: string[] } = {}): Promise<string | undefined> {
    const text = opts.source ? `${opts.source}: ${message}` : message
    this.messages.push({ severity, message, ...(opts.source !== undefined ? { source: opts.source } : {}) })
    if (this.messages.length > 200) this.messages.shift()
    if (this.#ui.closed) return undefined
    const actions = (opts.actions ?? []).filter((a) => typeof a === 'string' && a !== '')
    if (actions.length === 0) {
      this.#ui.message(text, LEVEL[severity] ?? 'info')
      return undefined
    }
    try {
      if (actions.length === 1) {
        const ok = await this.#ui.confirm({ title: opts.source ?? severity, message, confirm: actions[0]!, cancel: 'Dismiss' })
        return ok ? actions[0] : undefined
      }
      return await this.#ui.pick(actions.map((a) => ({ label: a, value: a })), { title: text })
    } catch {
      return undefined
    }
  }

  async showQuickPick<T extends QuickPickItem> (items: readonly T[], opts: QuickPickOptions = {}): Promise<T | undefined> {
    if (this.#ui.closed) return undefined
    const title = opts.title ?? opts.placeHolder
    try {
      return await this.#ui.pick(items.map((i) => ({ label: String(i.label), ...(i.description ?? i.detail ? { detail: String(i.description ?? i.detail) } : {}), value: i })), title !== undefined ? { title } : {})
    } catch {
      return undefined
    }
  }

  async showInputBox (opts: InputBoxOptions = {}): Promise<string | undefined> {
    if (this.#ui.closed) return undefined
    // The layer's prompt shows what is typed: say so rather than pretend to hide a secret.
    const note = opts.password ? ' (the text shows as you type it)' : ''
    const message = [opts.prompt, opts.placeHolder && !opts.value ? `e.g. ${opts.placeHolder}` : undefined].filter(Boolean).join('  ') + note
    const validate = opts.validateInput
    try {
      return await this.#ui.prompt({
        ...(opts.title !== undefined ? { title: opts.title } : {}),
        ...(message ? { message } : {}),
        ...(opts.value !== undefined ? { value: opts.value } : {}),
        ...(validate ? { validate: (text: string) => { try { return validate(text) ?? undefined } catch (err) { return String((err as Error).message ?? err) } } } : {})
      })
    } catch {
      return undefined
    }
  }

  registerViewProvider (viewId: string, provider: ViewProvider): Disposable {
    if (this.#providers.has(viewId)) throw PatchswarmError.ALREADY_EXISTS(`view ${viewId} already has a provider`)
    this.#providers.set(viewId, provider)
    return { dispose: () => { if (this.#providers.get(viewId) === provider) this.#providers.delete(viewId) } }
  }

  provider (viewId: string): ViewProvider | undefined {
    return this.#providers.get(viewId)
  }
}
