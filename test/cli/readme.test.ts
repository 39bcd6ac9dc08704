// Every patchswarm command the README shows is run here, as written (a README command that
// fails is a defect).
import t from 'tap'
import fs from 'node:fs/promises'
import path from 'node:path'
import { cli, root } from './helpers.js'

/** The shell blocks of the README, joined lines, only the `npm run patchswarm -- …` commands. */
async function readmeCommands (): Promise<string[][]> {
  const text = await fs.readFile(path.join(root, 'README.md'), 'utf8')
  const blocks = [...text.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!)
  const lines = blocks.join('\n').replace(/\\\n\s*/g, '').split('\n')
  return lines.filter((l) => l.startsWith('npm run patchswarm -- ')).map((l) => split(l.slice('npm run patchswarm -- '.length)))
}

/** Splits like a shell for what the README uses: words and "double quoted" strings. */
function split (line: string): string[] {
  return [...line.matchAll(/"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2]!)
}

t.test('the README publishing walk-through works as written', async (t) => {
  const dir = t.testdir({ hello: { 'install.sh': '#!/bin/sh\nexit 0\n', 'data.bin': Buffer.alloc(300_000, 3) } })
  const commands = await readmeCommands()
  t.ok(commands.length >= 6, `${commands.length} commands found`)
  for (const args of commands) {
    const r = await cli(dir, args)
    t.equal(r.code, 0, `patchswarm ${args.join(' ')}\n${r.stderr}`)
  }
})
