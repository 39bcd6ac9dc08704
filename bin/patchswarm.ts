#!/usr/bin/env -S node --initial-heap-size=128
// The V8 flag: a swarm node encrypts every message into a fresh 256 KiB buffer, which V8 counts
// against the old generation's limit until a full collection frees it. A process whose limit was
// already sized to a small live heap (a console after an import, an agent after its start-up) ran a
// full mark-compact every ~24 MB sent: ~20 per 256 MiB, and 6.3-6.8 instead of 4.3-4.5 ms of user
// CPU per MiB sent (measured). With the initial size at 128 MB it runs none (48: 16, 64: 7). Node refuses it in NODE_OPTIONS, so it is
// here, where `patchswarm` starts; the benchmarks start their processes with the same flags.
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
