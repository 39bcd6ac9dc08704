// `patchswarm console`: runs the console node. It owns its LevelDB (in --data), serves the admin
// API on a Unix socket (0600) and, with --bootstrap, joins the organisation swarm: it seeds released
// packages, takes agents' reports, hands out directives and answers enrollments. The first
// start pins the root and, with --owner, creates the first owner. Runs until SIGINT or SIGTERM.
import type { Command } from 'commander'
import { PatchswarmError } from '../../lib/errors.js'
import { readSecretKeyFile } from '../../lib/crypto/keyfile.js'
import { Console } from '../../lib/console/console.js'
import { AdminApi, dispatcher } from '../../lib/console/api.js'
import { RpcServer } from '../../lib/console/rpc.js'
import { ConsoleSwarm } from '../../lib/console/console-swarm.js'
import { keyIdOf } from '../../lib/crypto/keys.js'
import type { CliContext } from '../cli.js'
import path from 'node:path'
import { readFileBytes } from './documents.js'
import { parseBootstrap, parsePositiveInt } from './options.js'
import { DEFAULT_DATA, socketPathFor } from './socket.js'

interface ConsoleCommandOptions {
  data: string, root: string, consoleKey: string, socket?: string, owner?: string, ownerSshKey?: string
  bootstrap?: string, host?: string, tick: string, ssh?: number, sshHost: string, json?: boolean
}

export function registerConsoleCommand (program: Command, ctx: CliContext, signal?: AbortSignal): void {
  program.command('console')
    .description('run the console node: tenants, enrollment, rollouts, reports; admin API on a Unix socket')
    .option('--data <dir>', 'its data folder (LevelDB, socket)', DEFAULT_DATA)
    .requiredOption('--root <file>', "the organisation's signed root (pinned at the first start)")
    .requiredOption('--console-key <file>', "a secret key of the root's console role")
    .option('--socket <path>', 'the admin socket (default: <data>/console.sock)')
    .option('--owner <id>', 'on first start: create this admin as the owner of everything')
    .option('--owner-ssh-key <key-or-file>', "the owner's SSH public key (a line or a file)")
    .option('--bootstrap <host:port,…|public>', 'DHT bootstrap nodes: join the swarm (agents, enrollment, packages)')
    .option('--host <address>', 'address to bind the DHT node to (e.g. 127.0.0.1)')
    .option('--tick <ms>', 'how often running rollouts are evaluated', '5000')
    .option('--ssh <port>', 'serve the terminal console over SSH on this port (admins log in with their SSH key, and a TOTP code when they have one)', parsePositiveInt)
    .option('--ssh-host <address>', 'address the SSH server binds to', '127.0.0.1')
    .option('--json', 'print the start-up line as JSON')
    .action(async (opts: ConsoleCommandOptions) => {
      const dataDir = ctx.resolve(opts.data)
      const consoleKey = await readSecretKeyFile(ctx.resolve(opts.consoleKey))
      const root = await readFileBytes(ctx.resolve(opts.root))
      const node = await Console.open({ dataDir, root, consoleKey, tickMs: Number(opts.tick) })
      const closers: Array<() => Promise<void>> = [() => node.close()]
      try {
        if (opts.owner && await node.fleet.admins.isEmpty()) {
          if (!opts.ownerSshKey) throw PatchswarmError.BAD_ARGUMENT('--owner needs --owner-ssh-key')
          const key = opts.ownerSshKey.startsWith('ssh-') ? opts.ownerSshKey : (await readFileBytes(ctx.resolve(opts.ownerSshKey), 'SSH public key')).toString('utf8').trim()
          await node.fleet.bootstrapOwner({ id: opts.owner, sshKey: key })
        }
        const socketPath = socketPathFor(ctx, opts.data, opts.socket)
        const server = new RpcServer(socketPath, dispatcher(new AdminApi(node)))
        await server.listen()
        closers.unshift(() => server.close())
        let swarm: ConsoleSwarm | null = null
        if (opts.bootstrap) {
          swarm = new ConsoleSwarm(node, consoleKey.secretKey, { dataDir, bootstrap: opts.bootstrap === 'public' ? 'public' : parseBootstrap(opts.bootstrap), ...(opts.host ? { host: opts.host } : {}) })
          closers.unshift(() => swarm!.close())
          await swarm.ready()
        }
        let sshLine = ''
        if (opts.ssh) {
          const ssh = await serveSsh(node, dataDir, opts.sshHost, opts.ssh)
          closers.unshift(() => ssh.close())
          sshLine = `, SSH on ${opts.sshHost}:${opts.ssh} (host key ${ssh.fingerprint})`
        }
        const enrollKey = swarm ? keyIdOf(node.enrollKeyPair.publicKey) : null
        ctx.print(opts, `console of ${node.org} running: admin socket ${socketPath}${swarm ? `, on the swarm as ${swarm.keyid.slice(0, 16)}…` : ''}${sshLine}`,
          { org: node.org, socket: socketPath, enrollKey, swarmKey: swarm?.keyid ?? null, pid: process.pid })
        await new Promise<void>((resolve) => {
          if (signal?.aborted) return resolve()
          signal?.addEventListener('abort', () => resolve(), { once: true })
          process.once('SIGINT', () => resolve())
          process.once('SIGTERM', () => resolve())
        })
      } finally {
        for (const close of closers) await close().catch(() => {})
      }
    })
}

/**
 * The terminal console over SSH: each session gets its own screen and app, acting as the admin
 * whose key logged in (and only within that admin's scope); logins are audited.
 */
async function serveSsh (node: Console, dataDir: string, host: string, port: number) {
  const { SshServer, loadOrCreateHostKey, fleetAdminResolver } = await import('../../tui/ssh/index.js')
  const { createUi, createTuiApp, inProcessAccess, defaultExtensionRoots } = await import('../../tui/index.js')
  const hostKey = await loadOrCreateHostKey(path.join(dataDir, 'ssh_host_ed25519_key'))
  const api = new AdminApi(node)
  const roots = await defaultExtensionRoots()
  const server = new SshServer({
    hostKey: hostKey.privateKey,
    host,
    port,
    resolveAdmin: fleetAdminResolver(node.fleet.admins),
    session: async (channel, admin) => {
      const ui = createUi({ input: channel.input, output: channel.output, terminal: channel.term, width: channel.columns, height: channel.rows })
      const unsubscribe = channel.onResize((size) => ui.resize(size.columns, size.rows))
      // However the screen closes (q, :q, Ctrl-C), the SSH session ends: also when the admin quits
      // before the first view showed, when the app is closed and createTuiApp may never settle.
      const endSession = () => channel.close()
      ui.once('close', endSession)
      const screenClosed = new Promise<null>((resolve) => ui.once('close', () => resolve(null)))
      const starting = createTuiApp({ ui, access: inProcessAccess(api, admin.id), admin: admin.id, extensions: { roots, db: node.db } })
      starting.catch(() => {}) // after a quit, nobody waits for it any more
      let app: Awaited<typeof starting> | null
      try {
        app = await Promise.race([starting, screenClosed])
      } catch (err) {
        // createTuiApp leaves the screen open when it fails: give the client's terminal back (the
        // alternate screen, mouse reporting) before the server reports the error and exits 1.
        ui.off('close', endSession)
        unsubscribe()
        ui.close()
        throw err
      }
      return { close: async () => { unsubscribe(); await app?.close(); ui.close() } }
    },
    onAuth: (e) => {
      if (e.partial) return
      node.fleet.gate.record({ admin: e.admin ?? `ssh:${e.username}`, action: 'ssh.login', target: `ssh:${e.method}`, tenants: [], result: e.ok ? 'ok' : 'FORBIDDEN' }).catch(() => {})
    }
  })
  await server.listen()
  // While a session's screen is open, blessed listens for SIGTERM and SIGINT too, and exits the
  // process when it is the only listener left, which it is as soon as the console's own once()
  // listener fired: the shutdown (sessions told and given their terminal back, the database
  // closed, the socket removed) would be cut off. A listener of ours keeps the shutdown ours.
  const signals = ['SIGTERM', 'SIGINT'] as const
  const keepShutdownOurs = () => {}
  for (const s of signals) process.on(s, keepShutdownOurs)
  return {
    fingerprint: hostKey.fingerprint,
    close: async () => {
      try { await server.close() } finally { for (const s of signals) process.off(s, keepShutdownOurs) }
    }
  }
}
