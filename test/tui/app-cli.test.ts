// `patchswarm tui` as a command: it refuses to run without a terminal (NOT_A_TERMINAL, before it
// connects anywhere), and `--embedded` runs a console in the same process on a data folder, gives
// the folder back when the admin quits.
import t from 'tap'
import fs from 'node:fs/promises'
import path from 'node:path'
import { PassThrough } from 'node:stream'
import { Command } from 'commander'
import { writeSecretKeyFile } from '../../lib/crypto/keyfile.js'
import { serializeEnvelope } from '../../lib/trust/envelope.js'
import { makeConsoleOrg, openConsole, OWNER } from '../../fixtures/console-org.js'
import { CliContext } from '../../bin/cli.js'
import { registerTuiCommand, type Terminal } from '../../bin/commands/tui.js'
import { cli, spawnCli } from '../cli/helpers.js'
import { sshKey } from '../fleet/helpers.js'

t.test('without a terminal it refuses with NOT_A_TERMINAL, in-process and as a process', async (t) => {
  const dir = t.testdir()
  const inProcess = await cli(dir, ['tui', '--as', OWNER, '--socket', path.join(dir, 'nowhere.sock')])
  t.equal(inProcess.code, 1)
  t.match(inProcess.stderr, /^patchswarm: NOT_A_TERMINAL: patchswarm tui draws on a terminal/)
  const child = await spawnCli(dir, ['tui', '--as', OWNER])
  t.equal(child.code, 1, 'a real process with its output in a pipe exits 1')
  t.match(child.stderr, /NOT_A_TERMINAL/)
  t.notMatch(child.stderr, /UNAVAILABLE|\x1b\[/, 'before it looks for a console, and without drawing anything')
})

t.test('--embedded runs a console in the process with the user\'s keymap; Ctrl-C gives the data folder back', async (t) => {
  const dir = t.testdir()
  const org = await makeConsoleOrg()
  await fs.writeFile(path.join(dir, 'root.json'), serializeEnvelope(org.rootEnvelope))
  await writeSecretKeyFile(path.join(dir, 'console.key'), org.consoleKey)
  const first = await openConsole(org, path.join(dir, 'data'))
  await first.fleet.bootstrapOwner({ id: OWNER, sshKey: sshKey() })
  await first.fleet.createTenant(OWNER, { parent: '', name: 'msp-1', kind: 'msp' })
  await first.close()
  // The user's keys: T opens the tenants.
  await fs.mkdir(path.join(dir, '.patchswarm'))
  await fs.writeFile(path.join(dir, '.patchswarm', 'keys.json'), JSON.stringify({ keys: { tenants: 'T' } }))

  // A terminal on streams: what blessed needs of a TTY.
  const input = Object.assign(new PassThrough(), { isTTY: true }) as unknown as NodeJS.ReadStream
  const output = Object.assign(new PassThrough(), { isTTY: true, columns: 100, rows: 30 }) as unknown as NodeJS.WriteStream
  let drawn = ''
  ;(output as unknown as PassThrough).on('data', (d: Buffer) => { drawn += d.toString('utf8') })
  const terminal: Terminal = { input, output }
  const out: string[] = []
  const ctx = new CliContext({ stdout: (s) => out.push(s), stderr: (s) => out.push(s), cwd: dir, env: { HOME: dir, TERM: 'xterm-256color' }, now: () => new Date() })
  const program = new Command('patchswarm').exitOverride()
  registerTuiCommand(program, ctx, terminal)
  const running = program.parseAsync(['tui', '--embedded', '--data', 'data', '--root', 'root.json', '--console-key', 'console.key', '--as', OWNER, '--no-extensions'], { from: 'user' })
  const waitFor = async (re: RegExp, what: string) => {
    const end = Date.now() + 10_000
    while (!re.test(drawn)) {
      if (Date.now() > end) throw new Error(`${what} not drawn: ${JSON.stringify(drawn.slice(-500))} ${out.join('')}`)
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    t.pass(`${what} drawn`)
  }
  await waitFor(/Compliance by tenant/, 'the dashboard of the embedded console')
  ;(input as unknown as PassThrough).write('T')
  await waitFor(/Tenants.*msp-1/s, 'the tenants, opened by the key of the keymap')
  ;(input as unknown as PassThrough).write('\x03')
  await running
  const again = await openConsole(org, path.join(dir, 'data'))
  t.ok(again, 'the console closed with the app: its database opens again')
  await again.close()
})
