// `patchswarm demo` (what `npm start` runs): a whole fleet on this machine — a console, an MSP with
// two customers in three sites, 12 agent processes, a pilot and a broad ring, one install that
// fails its health check and is rolled back (demo/fleet.ts). In a terminal it then opens the
// terminal console on the fleet; without one (CI=true, --headless, output redirected) it prints the
// progress and ends with a summary, exit code 0 when everything played out as designed.
import { type Command, Option } from 'commander'
import { PatchswarmError } from '../../lib/errors.js'
import type { CliContext } from '../cli.js'
import { parseDuration, parsePositiveInt } from './options.js'

interface DemoOptions {
  data: string, agents: number, sites: number, sizeMib: number, windowIn: number, soak: number, timeout: number, headless?: boolean, json?: boolean
}

const between = (lo: number, hi: number, what: string) => (value: string) => {
  const n = parsePositiveInt(value)
  if (n < lo || n > hi) throw PatchswarmError.BAD_ARGUMENT(`${what} must be between ${lo} and ${hi}`)
  return n
}

export function registerDemoCommand (program: Command, ctx: CliContext): void {
  program.command('demo')
    .description('a console, an MSP with two customers and 12 agents on a local swarm: a staged rollout with one rollback, then the terminal console (what `npm start` runs)')
    .option('--data <dir>', 'data folder: keys are kept, the fleet is rebuilt on every run', 'data/demo')
    .option('--agents <n>', 'agents, each its own process (6–64)', between(6, 64, '--agents'), 12)
    .option('--sites <n>', 'sites (home offices, branch offices), spread over the two customers (1–10)', between(1, 10, '--sites'), 3)
    .option('--size-mib <n>', 'size of the package rolled out, MiB (1–512)', between(1, 512, '--size-mib'), 8)
    .option('--window-in <seconds>', 'the broad ring\'s maintenance window opens at the first whole minute after this', parsePositiveInt, 30)
    .option('--soak <seconds>', 'how long the pilot ring soaks before the broad ring starts', parsePositiveInt, 10)
    .addOption(new Option('--timeout <duration>', 'give up (exit 1) when the rollout has not played out by then').argParser(parseDuration).default(300, '5m'))
    .option('--headless', 'no terminal console: print the progress and a summary, then exit (also with CI=true or without a terminal)')
    .option('--json', 'print the summary as JSON (the progress goes to stderr)')
    .addHelpText('after', `
In a terminal the demo opens the terminal console once the rollout runs (Ctrl-C or :q quits, ? lists the keys).
Meanwhile, from another terminal, the CLI talks to the same console:
  npm run patchswarm -- rollout show demo-service-1.0.0 --data data/demo/run/console --as demo`)
    .action(async (opts: DemoOptions) => {
      const { FleetDemo, summaryText } = await import('../../demo/fleet.js')
      const tty = process.stdout.isTTY === true && process.stdin.isTTY === true
      const headless = opts.headless === true || opts.json === true || !tty || ['true', '1'].includes(String(ctx.io.env.CI))
      const say = (line: string) => { if (opts.json) ctx.io.stderr(line + '\n'); else ctx.io.stdout(line + '\n') }
      const demo = new FleetDemo({
        data: ctx.resolve(opts.data), agents: opts.agents, sites: opts.sites, packageMib: opts.sizeMib, windowDelayS: opts.windowIn, pilotSoakS: opts.soak,
        // Once the terminal console is up, its events view shows the progress instead.
        say: (line) => { if (!screenOpen) say(line) }
      })
      let screenOpen = false
      const stop = new AbortController()
      const onSignal = () => stop.abort()
      process.once('SIGINT', onSignal)
      process.once('SIGTERM', onSignal)
      try {
        say(`patchswarm demo: ${opts.agents} agents in ${opts.sites} site(s), a ${opts.sizeMib} MiB package, a pilot and a broad ring`)
        await demo.start()
        let played: boolean
        if (headless) {
          played = await demo.outcome(opts.timeout * 1000, stop.signal)
        } else {
          screenOpen = true
          played = await watchInTerminal(demo, opts.timeout * 1000, stop.signal)
          screenOpen = false
        }
        const summary = await demo.summary()
        if (opts.json) ctx.io.stdout(JSON.stringify(summary, null, 2) + '\n')
        else ctx.io.stdout('\n' + summaryText(summary) + '\n')
        if (!played && !stop.signal.aborted && headless) throw PatchswarmError.TIMEOUT(`the rollout had not played out after ${opts.timeout} s (see the summary above and the agents' logs)`)
      } finally {
        process.off('SIGINT', onSignal)
        process.off('SIGTERM', onSignal)
        await demo.close()
      }
    })
}

/**
 * The terminal console on the demo's console, in this process, as the demo's owner. It stays open
 * until the admin quits; when the rollout has played out it says so. True if it had by then.
 */
async function watchInTerminal (demo: import('../../demo/fleet.js').FleetDemo, timeoutMs: number, signal: AbortSignal): Promise<boolean> {
  const [{ createUi }, { createTuiApp }, { defaultExtensionRoots }, { inProcessAccess }, { ADMIN }] = await Promise.all([
    import('../../tui/ui/index.js'), import('../../tui/app/index.js'), import('../../tui/extensions/discovery.js'), import('../../tui/extensions/access.js'), import('../../demo/fleet.js')
  ])
  const ui = createUi({ input: process.stdin, output: process.stdout, terminal: process.env.TERM, title: 'patchswarm demo' })
  let played = false
  try {
    const app = await createTuiApp({ ui, access: inProcessAccess(demo.api!, ADMIN), admin: ADMIN, start: 'rollouts', cwd: process.cwd(), extensions: { roots: await defaultExtensionRoots(process.env), db: demo.console!.db } })
    signal.addEventListener('abort', () => { void app.close() }, { once: true })
    // Watching ends with the screen: the demo closes right after.
    const watching = new AbortController()
    void app.closed.then(() => watching.abort())
    demo.outcome(timeoutMs, AbortSignal.any([signal, watching.signal])).then((ok) => {
      played = ok
      if (!ui.closed) ui.message(ok ? `the demo played out in ${demo.elapsed().toFixed(0)} s: every endpoint patched but one, rolled back; Ctrl-C or :q quits and prints the summary` : 'the rollout has not played out in time; Ctrl-C or :q quits', ok ? 'info' : 'warn')
    }, () => {})
    await app.closed
  } finally {
    ui.close()
    if (process.stdin.isTTY) process.stdin.setRawMode?.(false)
    process.stdin.pause()
  }
  return played
}
