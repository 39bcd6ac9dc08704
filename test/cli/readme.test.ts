// Every patchswarm command the README shows is run here, as written (a README command that
// fails is a defect). A command ending in `&` runs in the background as a real process, as a
// shell would run it; the test waits for its first line of output (it is ready) and stops it
// at the end.
import t, { type Test } from 'tap'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { cli, cliArgs, root } from './helpers.js'

interface Command { args: string[], background: boolean }

/** The shell blocks of the README, joined lines, only the `npm run patchswarm -- …` commands. */
async function readmeCommands (): Promise<Command[]> {
  const text = await fs.readFile(path.join(root, 'README.md'), 'utf8')
  const blocks = [...text.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!)
  const lines = blocks.join('\n').replace(/\\\n\s*/g, '').split('\n')
  return lines.filter((l) => l.startsWith('npm run patchswarm -- ')).map((l) => {
    const background = /\s&\s*$/.test(l)
    return { args: split(l.slice('npm run patchswarm -- '.length).replace(/\s&\s*$/, '')), background }
  })
}

/** Splits like a shell for what the README uses: words and "double quoted" strings. */
function split (line: string): string[] {
  return [...line.matchAll(/"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2]!)
}

async function background (t: Test, cwd: string, args: string[]): Promise<ChildProcess> {
  const child = spawn(process.execPath, cliArgs(...args), { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(async () => { if (child.exitCode === null) { child.kill('SIGTERM'); await once(child, 'exit') } })
  let out = ''
  child.stdout!.on('data', (d) => { out += d })
  child.stderr!.on('data', (d) => { out += d })
  while (!out.includes('\n')) {
    if (child.exitCode !== null) throw new Error(`patchswarm ${args.join(' ')} exited: ${out}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return child
}

t.test('the README walk-throughs work as written', async (t) => {
  // The console's socket path must stay short (Unix sockets): a folder near /tmp.
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ps-readme-'))
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }))
  await fs.mkdir(path.join(dir, 'hello'))
  await fs.writeFile(path.join(dir, 'hello', 'install.sh'), '#!/bin/sh\nexit 0\n', { mode: 0o755 })
  await fs.writeFile(path.join(dir, 'hello', 'data.bin'), Buffer.alloc(300_000, 3))
  const commands = await readmeCommands()
  t.ok(commands.length >= 20, `${commands.length} commands found`)
  const children: ChildProcess[] = []
  for (const { args, background: bg } of commands) {
    if (bg) {
      children.push(await background(t, dir, args))
      continue
    }
    const r = await cli(dir, args)
    t.equal(r.code, 0, `patchswarm ${args.join(' ')}\n${r.stderr}`)
  }
  // What the README promises a few seconds later.
  const end = Date.now() + 60_000
  let state = ''
  while (Date.now() < end && state !== 'completed') {
    state = (await cli(dir, ['rollout', 'show', 'hello-1', '--as', 'alice', '--json'])).json?.state
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
  if (state !== 'completed') {
    t.comment((await cli(dir, ['rollout', 'show', 'hello-1', '--as', 'alice'])).stdout)
    t.comment((await cli(dir, ['agent', 'status', '--data', 'agent-1'])).stdout)
    t.comment((await cli(dir, ['endpoint', 'list', '--as', 'alice'])).stdout)
    t.comment((await cli(dir, ['report', 'counters', '--as', 'alice'])).stdout)
  }
  t.equal(state, 'completed', 'the rollout completes')
  const kpis = (await cli(dir, ['report', 'kpis', 'msp-1', '--as', 'alice', '--json'])).json
  t.equal(kpis.compliant, 1, 'the endpoint is compliant')
  t.equal((await cli(dir, ['report', 'evidence', 'msp-1', '--out', 'evidence.json', '--as', 'alice'])).code, 0)
  const verified = await cli(dir, ['verify-evidence', 'evidence.json', '--root', 'root.json'])
  t.equal(verified.code, 0, `evidence verifies\n${verified.stderr}`)
  for (const child of children.reverse()) {
    child.kill('SIGTERM')
    const [code] = await once(child, 'exit')
    t.equal(code, 0, 'stops cleanly on SIGTERM')
  }
})
