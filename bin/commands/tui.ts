// `patchswarm tui`: the terminal console on this terminal. By default it connects to a running
// console's admin socket as `--as <admin>`; `--embedded` runs a console in this process on --data
// instead (its LevelDB, so no other console may hold it). It needs a real terminal: with stdin or
// stdout redirected it refuses with NOT_A_TERMINAL before connecting to anything.
import type { Command } from 'commander'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { PatchswarmError } from '../../lib/errors.js'
import type { CliContext } from '../cli.js'
import { DEFAULT_DATA, socketPathFor } from './socket.js'

interface TuiOptions {
  as?: string, socket?: string, data: string, readonly?: boolean, embedded?: boolean, root?: string, consoleKey?: string, tick: string
  keymap?: string, settings?: string, extensions: boolean, start?: string, refresh?: string
}

/** The terminal the console draws on; tests of the refusal pass streams that are not one. */
export interface Terminal {
  input: NodeJS.ReadStream
  output: NodeJS.WriteStream
}

export function registerTuiCommand (program: Command, ctx: CliContext, terminal: Terminal = { input: process.stdin, output: process.stdout }): void {
  program.command('tui')
    .description('the terminal console: live views of rollouts, endpoints, tenants and reports, with keys and : commands (needs a terminal)')
    .option('--as <admin>', 'the admin to act as (default: $PATCHSWARM_ADMIN)')
    .option('--socket <path>', 'the console socket (default: $PATCHSWARM_SOCKET or <data>/console.sock)')
    .option('--data <dir>', "the console's data folder", DEFAULT_DATA)
    .option('--readonly', 'change nothing: no pause, resume, abort or rollback, no dangerous extension command')
    .option('--embedded', 'run the console in this process on --data (with --root and --console-key) instead of connecting to one')
    .option('--root <file>', "with --embedded: the organisation's signed root")
    .option('--console-key <file>', "with --embedded: a secret key of the root's console role")
    .option('--tick <ms>', 'with --embedded: how often running rollouts are evaluated', '5000')
    .option('--keymap <file>', 'your keys: { "keys": { "rollout.abort": "X" } } (default: ~/.patchswarm/keys.json when it exists)')
    .option('--settings <file>', 'extension settings as JSON (default: ~/.patchswarm/settings.json when it exists)')
    .option('--no-extensions', 'start without extensions')
    .option('--start <view>', 'the first view: dashboard, rollouts, endpoints …', 'dashboard')
    .option('--refresh <ms>', 'how often lists may be sent again', '500')
    .action(async (opts: TuiOptions) => {
      if (!terminal.input.isTTY || !terminal.output.isTTY) {
        throw new PatchswarmError('NOT_A_TERMINAL', `patchswarm tui draws on a terminal, and its ${!terminal.output.isTTY ? 'output' : 'input'} is not one (run it in a terminal, or over ssh -t)`)
      }
      const admin = opts.as ?? ctx.io.env.PATCHSWARM_ADMIN
      if (!admin) throw PatchswarmError.BAD_ARGUMENT('say which admin you act as: --as <admin> (or set PATCHSWARM_ADMIN)')
      if (opts.embedded && (!opts.root || !opts.consoleKey)) throw PatchswarmError.BAD_ARGUMENT('--embedded needs --root and --console-key')
      const home = ctx.io.env.HOME || os.homedir()
      const dot = path.join(home, '.patchswarm')
      // Loaded lazily: `patchswarm --help` does not carry the console's screen code.
      const [{ createUi, loadKeymap }, { createTuiApp }, { defaultExtensionRoots }, { inProcessAccess }] = await Promise.all([
        import('../../tui/ui/index.js'), import('../../tui/app/index.js'), import('../../tui/extensions/discovery.js'), import('../../tui/extensions/access.js')
      ])
      const keymap = await loadKeymap(opts.keymap ? ctx.resolve(opts.keymap) : path.join(dot, 'keys.json'), { optional: !opts.keymap })
      const settings = await readSettings(opts.settings ? ctx.resolve(opts.settings) : path.join(dot, 'settings.json'), !opts.settings)

      const closers: Array<() => Promise<void>> = []
      try {
        let access
        let db
        if (opts.embedded) {
          const [{ Console }, { AdminApi }, { readSecretKeyFile }, { readFileBytes }] = await Promise.all([
            import('../../lib/console/console.js'), import('../../lib/console/api.js'), import('../../lib/crypto/keyfile.js'), import('./documents.js')
          ])
          const node = await Console.open({ dataDir: ctx.resolve(opts.data), root: await readFileBytes(ctx.resolve(opts.root!)), consoleKey: await readSecretKeyFile(ctx.resolve(opts.consoleKey!)), tickMs: Number(opts.tick) })
          closers.unshift(() => node.close())
          access = inProcessAccess(new AdminApi(node), admin)
          db = node.db
        } else {
          const { RpcClient } = await import('../../lib/console/rpc.js')
          const client = await RpcClient.connect(socketPathFor(ctx, opts.data, opts.socket), admin)
          closers.unshift(() => client.close())
          access = client
        }
        const ui = createUi({ input: terminal.input, output: terminal.output, terminal: ctx.io.env.TERM, readonly: opts.readonly === true, keymap, title: 'patchswarm' })
        closers.unshift(async () => {
          ui.close()
          // blessed leaves the input flowing: let the process end.
          if (terminal.input.isTTY) terminal.input.setRawMode?.(false)
          terminal.input.pause()
        })
        const app = await createTuiApp({
          ui,
          access,
          admin,
          readonly: opts.readonly === true,
          start: opts.start ?? 'dashboard',
          refreshMs: Number(opts.refresh) || 500,
          cwd: ctx.io.cwd,
          ...(opts.extensions
            ? { extensions: { roots: await defaultExtensionRoots(ctx.io.env), ...(db ? { db } : { stateDir: ctx.io.env.PATCHSWARM_TUI_STATE || path.join(dot, 'tui-state', admin.replace(/[^\w.-]/g, '_')) }), settings } }
            : {})
        })
        closers.unshift(() => app.close())
        await new Promise<void>((resolve) => {
          void app.closed.then(() => resolve())
          const stop = () => { void app.close() }
          process.once('SIGTERM', stop)
          process.once('SIGHUP', stop)
          void app.closed.then(() => { process.off('SIGTERM', stop); process.off('SIGHUP', stop) })
        })
      } finally {
        for (const close of closers) await close().catch(() => {})
      }
    })
}

async function readSettings (file: string, optional: boolean): Promise<Record<string, unknown>> {
  let text: string
  try {
    text = await fs.readFile(file, 'utf8')
  } catch (err) {
    if (optional && (err as NodeJS.ErrnoException).code === 'ENOENT') return {}
    throw PatchswarmError.BAD_CONFIG(`${file}: cannot read: ${(err as Error).message}`, err)
  }
  let json: unknown
  try { json = JSON.parse(text) } catch (err) { throw PatchswarmError.BAD_CONFIG(`${file}: not JSON: ${(err as Error).message}`, err) }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw PatchswarmError.BAD_CONFIG(`${file}: must be an object of setting → value`)
  return json as Record<string, unknown>
}
