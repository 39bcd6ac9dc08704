// The `patchswarm` command line: parses arguments and calls the library. `main()` runs in-process
// (tests call it directly) and returns an exit code; it never lets a stack trace reach the user.
import { Command, CommanderError } from 'commander'
import path from 'node:path'
import { PatchswarmError } from '../lib/errors.js'
import { registerKeyCommands } from './commands/keys.js'
import { registerRootCommands } from './commands/root.js'
import { registerReleaseCommands } from './commands/release.js'
import { registerInspectCommand } from './commands/inspect.js'
import { registerDemoCommand } from './commands/demo.js'
import { registerEvidenceCommand } from './commands/evidence.js'
import { registerConsoleCommand } from './commands/console.js'
import { registerAdminCommands } from './commands/admin.js'
import { registerDhtCommand } from './commands/dht.js'
import { registerAgentCommands } from './commands/agent.js'

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

export function createProgram (ctx: CliContext): Command {
  const program = new Command('patchswarm')
    .description('Peer-to-peer patch distribution with signed packages and signed proof of every install.')
    .version('0.1.0')
    .enablePositionalOptions() // so `release --version 1.2.3` is the package's version, not ours
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ writeOut: (s) => ctx.io.stdout(s), writeErr: (s) => ctx.io.stderr(s) })
  registerKeyCommands(program, ctx)
  registerRootCommands(program, ctx)
  registerReleaseCommands(program, ctx)
  registerInspectCommand(program, ctx)
  registerDemoCommand(program, ctx)
  registerEvidenceCommand(program, ctx)
  registerConsoleCommand(program, ctx)
  registerAdminCommands(program, ctx)
  registerDhtCommand(program, ctx)
  registerAgentCommands(program, ctx)
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
  const program = createProgram(ctx)
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
