// The `patchswarm` command line: parses arguments and calls the library. `main()` runs in-process
// (tests call it directly) and returns an exit code; it never lets a stack trace reach the user.
import { Command, CommanderError } from 'commander'
import path from 'node:path'
import { PatchswarmError } from '../lib/errors.js'

export interface CliIO {
  stdout (text: string): void
  stderr (text: string): void
  cwd: string
  env: NodeJS.ProcessEnv
  /** The clock for expiry decisions; tests inject one. */
  now (): Date
}

/** What every command gets: the io, path resolution, and one way to print human or JSON output. */
export class CliContext {
  constructor (readonly io: CliIO) {}

  resolve (p: string): string {
    return path.resolve(this.io.cwd, p)
  }

  /** Prints `json` as one JSON document when --json was given, else the human text. */
  print (opts: { json?: boolean }, human: string | (() => string), json: unknown): void {
    if (opts.json) this.io.stdout(JSON.stringify(json, null, 2) + '\n')
    else this.io.stdout((typeof human === 'function' ? human() : human) + '\n')
  }
}

export const EXIT_OK = 0
export const EXIT_FAILURE = 1
export const EXIT_USAGE = 2

type Register = (program: Command, ctx: CliContext) => void

/**
 * Which module registers which top-level command. Only the module of the command being run is
 * loaded (an agent should not carry the console's code in memory); help loads them all.
 */
const COMMAND_MODULES: Array<{ commands: string[], load: () => Promise<Register> }> = [
  { commands: ['keygen'], load: async () => (await import('./commands/keys.js')).registerKeyCommands },
  { commands: ['root', 'sign'], load: async () => (await import('./commands/root.js')).registerRootCommands },
  { commands: ['release', 'verify'], load: async () => (await import('./commands/release.js')).registerReleaseCommands },
  { commands: ['inspect'], load: async () => (await import('./commands/inspect.js')).registerInspectCommand },
  { commands: ['demo'], load: async () => (await import('./commands/demo.js')).registerDemoCommand },
  { commands: ['delivery-demo'], load: async () => (await import('./commands/delivery-demo.js')).registerDeliveryDemoCommand },
  { commands: ['verify-evidence'], load: async () => (await import('./commands/evidence.js')).registerEvidenceCommand },
  { commands: ['console'], load: async () => (await import('./commands/console.js')).registerConsoleCommand },
  { commands: ['tui'], load: async () => (await import('./commands/tui.js')).registerTuiCommand },
  { commands: ['tenant', 'group', 'token', 'endpoint', 'policy', 'releases', 'rollout', 'report', 'webhook', 'admin', 'audit', 'api'], load: async () => (await import('./commands/admin.js')).registerAdminCommands },
  { commands: ['dht'], load: async () => (await import('./commands/dht.js')).registerDhtCommand },
  { commands: ['agent'], load: async () => (await import('./commands/agent.js')).registerAgentCommands }
]

/** The program with the commands `argv` needs (all of them when it names none we know). */
export async function createProgram (ctx: CliContext, argv: string[] = []): Promise<Command> {
  const program = new Command('patchswarm')
    .description('Peer-to-peer patch distribution with signed packages and signed proof of every install.')
    .version('0.1.0')
    .enablePositionalOptions() // so `release --version 1.2.3` is the package's version, not ours
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ writeOut: (s) => ctx.io.stdout(s), writeErr: (s) => ctx.io.stderr(s) })
  const name = argv.find((a) => !a.startsWith('-'))
  const only = COMMAND_MODULES.find((m) => name !== undefined && m.commands.includes(name))
  for (const m of only ? [only] : COMMAND_MODULES) (await m.load())(program, ctx)
  for (const cmd of program.commands) inheritSettings(cmd, ctx)
  return program
}

function inheritSettings (cmd: Command, ctx: CliContext): void {
  cmd.exitOverride().showHelpAfterError('(run with --help for usage)')
    .configureOutput({ writeOut: (s) => ctx.io.stdout(s), writeErr: (s) => ctx.io.stderr(s) })
  for (const sub of cmd.commands) inheritSettings(sub, ctx)
}

export async function main (argv: string[], io: CliIO): Promise<number> {
  const ctx = new CliContext(io)
  const program = await createProgram(ctx, argv)
  const wantsJson = argv.includes('--json')
  try {
    await program.parseAsync(argv, { from: 'user' })
    return EXIT_OK
  } catch (err) {
    if (err instanceof CommanderError) {
      // help and version "errors" are normal exits; the message was already printed by commander
      return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE
    }
    const coded = err instanceof PatchswarmError ? err : null
    const code = coded?.code ?? 'INTERNAL'
    const message = coded ? coded.detail : (err as Error)?.message ?? String(err)
    if (wantsJson) io.stderr(JSON.stringify({ error: { code, message } }) + '\n')
    else io.stderr(`patchswarm: ${code}: ${message}\n`)
    if (!coded || io.env.PATCHSWARM_DEBUG) io.stderr(((err as Error)?.stack ?? '') + '\n')
    return EXIT_FAILURE
  }
}
