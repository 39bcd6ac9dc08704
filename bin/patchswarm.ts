#!/usr/bin/env node
import { main } from './cli.js'

const code = await main(process.argv.slice(2), {
  stdout: (s) => { process.stdout.write(s) },
  stderr: (s) => { process.stderr.write(s) },
  cwd: process.cwd(),
  env: process.env,
  now: () => new Date()
})
process.exitCode = code
