// The systemd units in deploy/: what can be checked without systemd running them. Each ExecStart=
// line, expanded as systemd would (specifiers, ${VAR} and $VAR from Environment= and the example
// environment file), must parse with our CLI: the options exist, their values are accepted, the
// required ones are there; the command's action is replaced, so nothing runs. Then the settings
// the deployment relies on, and `systemd-analyze verify` where the machine has it.
import t from 'tap'
import fs from 'node:fs/promises'
import path from 'node:path'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import type { Command } from 'commander'
import { CliContext, createProgram } from '../../bin/cli.js'
import { agentPaths } from '../../agent/config.js'
import { DEFAULT_DRAIN_MS, DEFAULT_GRACE_MS } from '../../agent/installers/run.js'
import { cli, root } from '../cli/helpers.js'

const run = promisify(execFile)
const deploy = path.join(root, 'deploy')
const AGENT = path.join(deploy, 'patchswarm-agent.service')
const CONSOLE = path.join(deploy, 'patchswarm-console.service')
const ENV_EXAMPLE = path.join(deploy, 'console.env.example')

// ---- a tiny unit file parser ------------------------------------------------------------------

/** Section → key → values in order (a key may repeat; an empty assignment is kept as ''). */
type Unit = Map<string, Map<string, string[]>>

function parseUnit (text: string): Unit {
  const unit: Unit = new Map()
  let section: Map<string, string[]> | null = null
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i]!.trim()
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue
    while (line.endsWith('\\') && i + 1 < lines.length) line = line.slice(0, -1) + ' ' + lines[++i]!.trim()
    const head = /^\[([^\]]+)\]$/.exec(line)
    if (head) {
      section = unit.get(head[1]!) ?? new Map()
      unit.set(head[1]!, section)
      continue
    }
    const eq = line.indexOf('=')
    if (section === null || eq <= 0) throw new Error(`not a unit file line: ${line}`)
    const key = line.slice(0, eq).trim()
    section.set(key, [...(section.get(key) ?? []), line.slice(eq + 1).trim()])
  }
  return unit
}

function values (unit: Unit, section: string, key: string): string[] {
  return unit.get(section)?.get(key) ?? []
}

/** The value in effect: the last assignment. */
function value (unit: Unit, section: string, key: string): string | undefined {
  return values(unit, section, key).at(-1)
}

/** Splits at whitespace, honouring double and single quotes (as systemd does for command lines). */
function words (s: string): string[] {
  const out: string[] = []
  const re = /"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+)/g
  for (let m = re.exec(s); m; m = re.exec(s)) out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2] ?? m[3]!)
  return out
}

/** Environment= lines (each may hold several A=b assignments), in order, then the files; and what systemd sets. */
function environment (unit: Unit, files: Record<string, string | null>): Record<string, string> {
  const env: Record<string, string> = {}
  if (values(unit, 'Service', 'LoadCredential').length > 0) env.CREDENTIALS_DIRECTORY = CREDENTIALS
  const assign = (a: string) => { const eq = a.indexOf('='); if (eq > 0) env[a.slice(0, eq)] = a.slice(eq + 1) }
  for (const line of values(unit, 'Service', 'Environment')) for (const a of words(line)) assign(a)
  for (const spec of values(unit, 'Service', 'EnvironmentFile')) {
    const optional = spec.startsWith('-')
    const file = optional ? spec.slice(1) : spec
    const text = files[file]
    if (text === undefined || text === null) {
      if (!optional) throw new Error(`EnvironmentFile ${file} is required`)
      continue
    }
    for (const line of text.split('\n')) {
      const l = line.trim()
      if (l === '' || l.startsWith('#')) continue
      assign(l)
    }
  }
  return env
}

/**
 * An ExecStart= line as the argv systemd runs: prefixes dropped, specifiers replaced, "${VAR}" as
 * its exact value inside a word, a word that is just "$VAR" split at whitespace (zero or more words).
 */
function commandLine (line: string, env: Record<string, string>, specifiers: Record<string, string>): string[] {
  const argv: string[] = []
  for (const w of words(line.replace(/^[-@:+!]+/, ''))) {
    const spec = w.replace(/%(.)/g, (_, c: string) => {
      if (c === '%') return '%'
      if (specifiers[c] === undefined) throw new Error(`specifier %${c} not known to this test`)
      return specifiers[c]
    })
    const whole = /^\$([A-Za-z_][A-Za-z0-9_]*)$/.exec(spec)
    if (whole) argv.push(...(env[whole[1]!] ?? '').split(/\s+/).filter(Boolean))
    else argv.push(spec.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, k: string) => env[k] ?? ''))
  }
  return argv
}

/** systemd time spans as the units use them: "30s", "15min", "1min 30s", "500ms", "90". */
function seconds (span: string): number {
  const units: Record<string, number> = { ms: 0.001, s: 1, sec: 1, m: 60, min: 60, h: 3600 }
  let total = 0
  for (const part of span.trim().split(/\s+/)) {
    const m = /^(\d+(?:\.\d+)?)([a-z]*)$/.exec(part)
    const unit = m ? units[m[2] || 's'] : undefined
    if (!m || unit === undefined) throw new Error(`not a time span: ${span}`)
    total += Number(m[1]) * unit
  }
  return total
}

// ---- our CLI, parsing only ---------------------------------------------------------------------

interface Parsed { command: string, opts: Record<string, unknown>, help: string }

/** Parses `args` with the real program; the command's action only records its options. */
async function parseOnly (args: string[]): Promise<Parsed> {
  let stderr = ''
  const ctx = new CliContext({ stdout: () => {}, stderr: (s) => { stderr += s }, cwd: '/', env: {}, now: () => new Date() })
  const program = await createProgram(ctx, args)
  let cmd: Command = program
  const names: string[] = []
  for (const a of args) {
    const sub = a.startsWith('-') ? undefined : cmd.commands.find((c) => c.name() === a)
    if (!sub) break
    cmd = sub
    names.push(a)
  }
  let opts: Record<string, unknown> | undefined
  cmd.action((o: Record<string, unknown>) => { opts = o })
  try {
    await program.parseAsync(args, { from: 'user' })
  } catch (err) {
    throw new Error(`patchswarm ${args.join(' ')}: ${(err as Error).message} ${stderr}`)
  }
  if (!opts) throw new Error(`patchswarm ${args.join(' ')}: no command ran`)
  return { command: names.join(' '), opts, help: cmd.helpInformation() }
}

/** The unit's ExecStart=, expanded: `/usr/bin/env patchswarm ARGS…` → ARGS. */
function patchswarmArgs (unit: Unit, env: Record<string, string>, specifiers: Record<string, string>): string[] {
  const exec = values(unit, 'Service', 'ExecStart')
  if (exec.length !== 1) throw new Error(`one ExecStart= expected, found ${exec.length}`)
  const argv = commandLine(exec[0]!, env, specifiers)
  const at = argv[0] === '/usr/bin/env' ? 1 : 0
  if (path.basename(argv[at] ?? '') !== 'patchswarm') throw new Error(`ExecStart does not run patchswarm: ${argv.join(' ')}`)
  return argv.slice(at + 1)
}

// What systemd would set: StateDirectory= is under /var/lib; with LoadCredential=, %d and
// $CREDENTIALS_DIRECTORY name the credentials' folder.
const CREDENTIALS = '/run/credentials/test.service'
const SPECIFIERS = { d: CREDENTIALS, S: '/var/lib' }

const agentText = await fs.readFile(AGENT, 'utf8')
const consoleText = await fs.readFile(CONSOLE, 'utf8')
const envExample = await fs.readFile(ENV_EXAMPLE, 'utf8')
const agent = parseUnit(agentText)
const consoleUnit = parseUnit(consoleText)

t.test('the agent unit runs `patchswarm agent run` on its state directory', async (t) => {
  const args = patchswarmArgs(agent, environment(agent, {}), SPECIFIERS)
  const parsed = await parseOnly(args)
  t.equal(parsed.command, 'agent run')
  const data = `/var/lib/${value(agent, 'Service', 'StateDirectory')}`
  t.equal(parsed.opts.data, data, '--data is the StateDirectory=')
  t.equal(value(agent, 'Service', 'StateDirectoryMode'), '0700')
  t.notOk(parsed.opts.checkIn, 'the configured check-in cron, not the test interval')
  // The same options through the real CLI's help: each one is documented there.
  const help = await cli('/', [...parsed.command.split(' '), '--help'])
  t.equal(help.code, 0)
  for (const o of args.filter((a) => a.startsWith('--'))) t.match(help.stdout, o, `agent run --help lists ${o}`)
  // Skipped, not failing, until `agent enroll` wrote agent.json, the last file of an enrollment.
  t.equal(value(agent, 'Unit', 'ConditionPathExists'), agentPaths(data).config)
  t.equal(value(agent, 'Service', 'User'), undefined, 'runs as root: installers need it')
})

t.test('the agent unit sets exactly one NODE_OPTIONS, with --max-semi-space-size, that node accepts', async (t) => {
  const assignments = values(agent, 'Service', 'Environment').flatMap(words).filter((a) => a.startsWith('NODE_OPTIONS='))
  t.equal(assignments.length, 1, 'one NODE_OPTIONS assignment (the bench reads it)')
  t.equal(agentText.split('\n').filter((l) => /^\s*Environment=NODE_OPTIONS=/.test(l)).length, 1, 'on one Environment=NODE_OPTIONS= line')
  const options = assignments[0]!.slice('NODE_OPTIONS='.length)
  t.match(options, /--max-semi-space-size=\d+/)
  // Node refuses options it does not allow in NODE_OPTIONS (exit code 9): start one with it.
  const { stderr } = await run(process.execPath, ['-e', '0'], { env: { PATH: process.env.PATH ?? '', NODE_OPTIONS: options } })
  t.equal(stderr, '', `node starts with NODE_OPTIONS=${options}`)
})

t.test('the agent unit stops the agent, not its installers, and gives it time', async (t) => {
  t.equal(value(agent, 'Service', 'KillMode'), 'mixed', 'SIGTERM to the agent only; it ends its installers itself')
  const timeout = value(agent, 'Service', 'TimeoutStopSec')
  t.ok(timeout, 'TimeoutStopSec= is set')
  // The agent's own stop: a step's grace and drain, then the last report (3 s) and closing.
  const needs = (DEFAULT_GRACE_MS + DEFAULT_DRAIN_MS) / 1000 + 10
  t.ok(seconds(timeout!) >= needs, `TimeoutStopSec=${timeout} leaves the agent ${needs} s and more`)
  t.equal(value(agent, 'Service', 'Restart'), 'on-failure')
  t.ok(seconds(value(agent, 'Service', 'RestartSec') ?? '0') > 0, 'restarts wait')
})

t.test('the agent unit stays out of the way', async (t) => {
  t.equal(value(agent, 'Service', 'Nice'), '19')
  t.equal(value(agent, 'Service', 'IOSchedulingClass'), 'idle')
  t.ok(Number(value(agent, 'Service', 'CPUWeight')) < 100, 'CPUWeight= below the default 100')
  const bytes = (s: string | undefined) => {
    const m = /^(\d+)([KMG])$/.exec(s ?? '')
    if (!m) throw new Error(`not a size: ${s}`)
    return Number(m[1]) * 1024 ** ' KMG'.indexOf(m[2]!)
  }
  const high = bytes(value(agent, 'Service', 'MemoryHigh'))
  const max = bytes(value(agent, 'Service', 'MemoryMax'))
  t.ok(high >= 128 * 1024 ** 2, 'MemoryHigh= above an idle agent (~75-100 MB)')
  t.ok(max > high, 'MemoryMax= above MemoryHigh=')
  t.not(value(agent, 'Service', 'NoNewPrivileges'), 'yes', 'installers need SELinux/AppArmor transitions and setuid programs')
  t.equal(value(agent, 'Service', 'ProtectSystem'), undefined, 'installers write /usr and /etc')
})

t.test('the console unit runs `patchswarm console` with its key as a credential', async (t) => {
  const variants: Array<[string, Record<string, string | null>]> = [
    ['without /etc/patchswarm/console.env', {}],
    ['with the example console.env', { '/etc/patchswarm/console.env': envExample }],
    ['with the example console.env, its commented settings on', { '/etc/patchswarm/console.env': envExample.replace(/^#(PATCHSWARM_[A-Z_]+=)/gm, '$1') }]
  ]
  const data = `/var/lib/${value(consoleUnit, 'Service', 'StateDirectory')}`
  const credential = value(consoleUnit, 'Service', 'LoadCredential')!
  const [credName, credSource] = credential.split(':') as [string, string]
  t.equal(credSource, '/etc/patchswarm/console.key')
  for (const [name, files] of variants) {
    const args = patchswarmArgs(consoleUnit, environment(consoleUnit, files), SPECIFIERS)
    const parsed = await parseOnly(args)
    t.equal(parsed.command, 'console', name)
    t.equal(parsed.opts.data, data, `${name}: --data is the StateDirectory=`)
    t.equal(parsed.opts.consoleKey, path.join(CREDENTIALS, credName), `${name}: --console-key is the credential`)
    t.equal(parsed.opts.root, '/etc/patchswarm/root.json')
    t.equal(parsed.opts.bootstrap, 'public', `${name}: on the public DHT`)
    t.equal(parsed.opts.socket, undefined, 'the admin socket is <data>/console.sock')
    const help = await cli('/', ['console', '--help'])
    for (const o of args.filter((a) => a.startsWith('--'))) t.match(help.stdout, o, `console --help lists ${o}`)
    if (name.includes('commented')) {
      t.equal(parsed.opts.ssh, 2222, 'the SSH console')
      t.equal(parsed.opts.owner, 'alice')
      t.equal(parsed.opts.ownerSshKey, '/etc/patchswarm/alice.pub')
    }
  }
  // sockaddr_un holds 108 bytes.
  t.ok(Buffer.byteLength(path.join(data, 'console.sock')) < 108)
})

t.test('the console unit has its own user and strong hardening', async (t) => {
  t.equal(value(consoleUnit, 'Service', 'User'), 'patchswarm')
  t.equal(value(consoleUnit, 'Service', 'DynamicUser'), undefined, 'a fixed owner for the LevelDB and keys')
  const expect: Record<string, string> = {
    NoNewPrivileges: 'yes',
    ProtectSystem: 'strict',
    ProtectHome: 'yes',
    PrivateTmp: 'yes',
    PrivateDevices: 'yes',
    RestrictNamespaces: 'yes',
    CapabilityBoundingSet: '',
    Restart: 'on-failure'
  }
  for (const [k, v] of Object.entries(expect)) t.equal(value(consoleUnit, 'Service', k), v, `${k}=${v}`)
  const families = words(value(consoleUnit, 'Service', 'RestrictAddressFamilies') ?? '')
  for (const f of ['AF_UNIX', 'AF_INET', 'AF_INET6']) t.ok(families.includes(f), `RestrictAddressFamilies= allows ${f}`)
  t.equal(value(consoleUnit, 'Service', 'SystemCallErrorNumber'), 'EPERM', 'a filtered call fails, it does not kill')
})

const analyze = await run('sh', ['-c', 'command -v systemd-analyze']).then((r) => r.stdout.trim(), () => '')
const noAnalyze = 'systemd-analyze is not installed on this machine: the units are not verified by systemd'

t.test('systemd-analyze verify', { skip: analyze === '' ? noAnalyze : false }, async (t) => {
  const { stdout: version } = await run('systemd-analyze', ['--version'])
  const major = Number(/systemd (\d+)/.exec(version)?.[1] ?? 0)
  const result = await run('systemd-analyze', ['verify', '--man=no', AGENT, CONSOLE]).then(
    (r) => ({ code: 0, output: r.stdout + r.stderr }),
    (err: { code?: number, stdout?: string, stderr?: string }) => ({ code: err.code ?? 1, output: `${err.stdout ?? ''}${err.stderr ?? ''}` }))
  t.equal(result.code, 0, result.output)
  // Only what it says about our files; the back-off keys are new in systemd 254 (ignored before).
  const newer = major < 254 ? ['RestartSteps', 'RestartMaxDelaySec'] : []
  const ours = result.output.split('\n').filter((l) => l.includes(deploy))
  const unexpected = ours.filter((l) => !newer.some((k) => l.includes(`Unknown key '${k}'`) || l.includes(`Unknown key name '${k}'`)))
  t.same(unexpected, [], `systemd ${major} has nothing to say about the units`)
})

t.test('both units start node with the flags of the #! line of bin/patchswarm.ts', async (t) => {
  // The units run `/usr/bin/env patchswarm`: the kernel runs the #! line of the installed script
  // (the compiled bin/patchswarm.ts, whose first line tsc keeps). A script with the same line,
  // run the same way, shows that env splits it (-S) and node starts with the flags.
  const first = (await fs.readFile(path.join(root, 'bin/patchswarm.ts'), 'utf8')).split('\n', 1)[0]!
  t.match(first, /^#!\/usr\/bin\/env -S node( --[a-z-]+=\d+)+$/, 'env -S node, then the flags')
  const flags = first.split(' ').slice(3)
  t.ok(flags.includes('--initial-heap-size=128'), 'the old generation starts large (see the comment there)')
  const dir = t.testdir()
  const script = path.join(dir, 'flags.mjs')
  await fs.writeFile(script, `${first}\nconsole.log(JSON.stringify(process.execArgv))\n`, { mode: 0o755 })
  const { stdout } = await run(script, [], { env: { ...process.env, PATH: `${path.dirname(process.execPath)}:${process.env.PATH ?? ''}` } })
  t.same(JSON.parse(stdout), flags, 'node runs with them')
})
