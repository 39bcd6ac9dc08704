#!/usr/bin/env node
import { main } from './cli.js'

// A reader that went away (`patchswarm demo | head`) must not crash a command half way: a console
// or a demo would leave its agents and sockets behind. Output stops; the command runs to its end.
const gone = new Set<NodeJS.WriteStream>()
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err
    gone.add(stream)
  })
}
const write = (stream: NodeJS.WriteStream) => (s: string) => { if (!gone.has(stream)) stream.write(s) }

const code = await main(process.argv.slice(2), {
  stdout: write(process.stdout),
  stderr: write(process.stderr),
  cwd: process.cwd(),
  env: process.env,
  now: () => new Date()
})
process.exitCode = code
