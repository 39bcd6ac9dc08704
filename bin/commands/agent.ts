// `patchswarm agent enroll|run|status`: the endpoint agent's enrollment, its daemon, and its state.
import { Agent } from '../../agent/agent.js'
import { type Command, Option } from 'commander'
import { PatchswarmError } from '../../lib/errors.js'
import { DEFAULT_DATA_DIR } from '../../agent/config.js'
import { enrollAgent, type EnrollOutcome } from '../../agent/enroll.js'
import { readAgentStatus, type AgentStatus } from '../../agent/status.js'
import type { CliContext } from '../cli.js'
import { parseBootstrap, parseDuration, parsePositiveInt } from './options.js'
import { table } from './table.js'
import { readFileBytes } from './documents.js'

interface EnrollCommandOptions {
  token?: string, tokenFile?: string, data: string, bootstrap?: string, host?: string, hostname?: string, timeout: number, json?: boolean
}

const short = (keyid: string) => `${keyid.slice(0, 16)}…`

function enrolledText (o: EnrollOutcome): string {
  const who = `endpoint ${short(o.holder)} (${o.hostname}) of ${o.org}`
  if (o.status === 'approved') {
    return `${o.alreadyEnrolled ? 'already enrolled' : 'enrolled'}: ${who} in ${o.tenant}${o.site ? `, site ${o.site}` : ''}; certificate valid until ${o.certificateExpires}\ndata folder ${o.dir}`
  }
  const why = o.knownToConsole
    ? 'the console knows this endpoint already and sent no certificate (it answers ALREADY_EXISTS for enrolled keys): still waiting for approval'
    : 'the console put it in quarantine: an admin must approve it'
  return `pending: ${who}; ${why}.\nRun the same command again once it is approved.\ndata folder ${o.dir}`
}

function statusText (s: AgentStatus): string {
  const e = s.enrollment
  const rows: Array<[string, string]> = [['data folder', s.dir]]
  if (!e) {
    rows.push(['enrollment', s.enrolled ? 'configured, but enrollment.json is missing' : 'not enrolled'])
  } else {
    rows.push(
      ['enrollment', e.status === 'approved' ? 'approved' : 'pending approval'],
      ['org', e.org],
      ['tenant', e.tenant ?? '—'],
      ['site', e.site ?? '—'],
      ['certificate', e.certificateExpires ? `valid until ${e.certificateExpires}` : 'none yet'],
      ['identity', e.holder],
      ['console key', e.enrollKey]
    )
  }
  const live = s.live
  if (live) {
    rows.push(['agent', `${live.running ? 'running' : 'not running'} (pid ${live.pid}, status of ${live.at})`])
    rows.push(['console', live.consoleConnected ? 'connected' : 'not connected'])
    rows.push(['window', live.window === null ? 'none set: installs may run any time' : live.window.open ? `open until ${live.window.closesAt ?? '—'}` : `closed; next opens ${live.window.nextOpen ?? 'never'}`])
    if (live.windows) for (const w of live.windows) rows.push(['', `${w.cron} for ${w.durationMinutes} min (${w.timezone})`])
    rows.push(['next check-in', live.nextCheckIn ?? '—'], ['next step', live.nextStep ?? 'on the next directive'])
    rows.push(['outbox', `${live.outbox.pending} event(s) waiting for the console${live.outbox.oldestAt ? `, oldest ${live.outbox.oldestAt}` : ''}`])
  }
  if (s.database === 'in-use' && !live) rows.push(['database', 'in use by the running agent: root and jobs not shown'])
  if (s.root) rows.push(['root', `v${s.root.version} of ${s.root.org}, expires ${s.root.expires}`])
  const width = Math.max(...rows.map(([k]) => k.length))
  const lines = rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`)
  if (live && s.jobs === null) {
    const jobs = live.jobs.map((j) => ({ job: `${j.name}@${j.packageVersion}`, state: j.state, attempt: j.attempt, next: j.nextAttemptAt ?? '', breaker: j.breaker === 'open' ? `open: ${j.breakerReason ?? ''}` : '', last: j.lastCode ?? '' }))
    lines.push('', 'jobs', table(jobs, ['job', 'state', 'attempt', 'next', 'breaker', 'last']))
  }
  if (s.jobs !== null) {
    const rows = s.jobs.map((j) => ({ job: j.release ?? j.key, state: j.state ?? '?', next: j.nextAttemptAt ?? '', breaker: j.breaker ? `open: ${j.breaker}` : '' }))
    lines.push('', 'jobs', table(rows, ['job', 'state', 'next', 'breaker']))
    if (s.jobsTruncated) lines.push(`(only the first ${s.jobs.length} shown)`)
  }
  return lines.join('\n')
}

export function registerAgentCommands (program: Command, ctx: CliContext): void {
  const agent = program.command('agent').description('the endpoint agent: enroll, run, status')

  agent.command('enroll')
    .description('enroll this machine with a console, using an enrollment token (or $PATCHSWARM_ENROLL_TOKEN)')
    .option('--token <token>', 'the enrollment token (pst1.…)')
    .option('--token-file <file>', 'read the token from this file (keeps it out of the process list)')
    .option('--data <dir>', "the agent's data folder", DEFAULT_DATA_DIR)
    .option('--bootstrap <host:port,…>', "DHT bootstrap nodes (default: the folder's config, else the public DHT)")
    .option('--host <address>', 'address to bind the DHT node to (e.g. 127.0.0.1)')
    .option('--hostname <name>', 'the name the console shows (default: this machine\'s host name)')
    .addOption(new Option('--timeout <duration>', 'how long to wait for the console').argParser(parseDuration).default(30, '30s'))
    .option('--json', 'print the outcome as JSON')
    .action(async (opts: EnrollCommandOptions) => {
      // The environment keeps the token out of the process list.
      const token = opts.token ?? (opts.tokenFile ? (await readFileBytes(ctx.resolve(opts.tokenFile), 'token file')).toString('utf8').trim() : undefined) ?? ctx.io.env.PATCHSWARM_ENROLL_TOKEN
      if (!token) throw PatchswarmError.BAD_ARGUMENT('give the enrollment token: --token <token> (or set PATCHSWARM_ENROLL_TOKEN)')
      const outcome = await enrollAgent({
        dir: ctx.resolve(opts.data),
        token,
        ...(opts.bootstrap ? { bootstrap: parseBootstrap(opts.bootstrap) } : {}),
        ...(opts.host ? { host: opts.host } : {}),
        ...(opts.hostname !== undefined ? { hostname: opts.hostname } : {}),
        timeoutMs: opts.timeout * 1000,
        now: () => ctx.io.now()
      })
      ctx.print(opts, () => enrolledText(outcome), outcome)
    })

  agent.command('run')
    .description('run the agent: check in, download from peers, install inside maintenance windows, report')
    .option('--data <dir>', "the agent's data folder", DEFAULT_DATA_DIR)
    .option('--check-in <ms>', 'check in every so many ms instead of the configured cron (tests, demos)', parsePositiveInt)
    .option('--verbose', 'log each step as JSON lines on stderr (default: errors only)')
    .option('--exit-with-parent', 'stop when the process that started this one ends (demos; supervisors that may die without stopping their children)')
    .action(async (opts: { data: string, checkIn?: number, verbose?: boolean, exitWithParent?: boolean }) => {
      const log = (line: string) => { if (opts.verbose) ctx.io.stderr(JSON.stringify({ at: new Date().toISOString(), msg: line }) + '\n') }
      const daemon = await Agent.open(ctx.resolve(opts.data), { log, ...(opts.checkIn ? { checkInMs: opts.checkIn } : {}) })
      // Listen for the stop signal before starting: start() may re-run an interrupted install.
      let orphanWatch: NodeJS.Timeout | undefined
      const stop = new Promise<void>((resolve) => {
        process.once('SIGINT', () => resolve())
        process.once('SIGTERM', () => resolve())
        // An orphan is adopted by init (or a subreaper): its parent id changes.
        const parent = process.ppid
        if (opts.exitWithParent) orphanWatch = setInterval(() => { if (process.ppid !== parent) resolve() }, 1000)
      })
      void stop.then(() => clearInterval(orphanWatch))
      try {
        daemon.runner.on('transition', (tr) => log(`${tr.release.name} ${tr.release.packageVersion}: ${tr.from} → ${tr.to}`))
        const started = daemon.start()
        started.catch(() => {}) // a stop during start-up: close() below ends it; its error is not news
        await Promise.race([started, stop])
        ctx.io.stdout(`agent ${daemon.keyid.slice(0, 16)}… of ${daemon.config.org} running in ${daemon.dir} (Ctrl-C stops it)\n`)
        await stop
      } finally {
        await daemon.close()
      }
    })

  agent.command('status')
    .description("what the agent's data folder holds: enrollment, root, jobs")
    .option('--data <dir>', "the agent's data folder", DEFAULT_DATA_DIR)
    .option('--json', 'print the status as JSON')
    .action(async (opts: { data: string, json?: boolean }) => {
      const status = await readAgentStatus(ctx.resolve(opts.data))
      ctx.print(opts, () => statusText(status), status)
    })
}
