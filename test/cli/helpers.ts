// Runs the CLI in-process with captured output, or as a real child process.
import fs from 'node:fs/promises'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { main } from '../../bin/cli.js'

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

export interface CliResult { code: number, stdout: string, stderr: string, json?: any }

export async function cli (cwd: string, args: string[], now: () => Date = () => new Date()): Promise<CliResult> {
  let stdout = ''
  let stderr = ''
  const code = await main(args, { stdout: (s) => { stdout += s }, stderr: (s) => { stderr += s }, cwd, env: {}, now })
  const result: CliResult = { code, stdout, stderr }
  if (args.includes('--json') && code === 0) result.json = JSON.parse(stdout)
  return result
}

/** Node arguments that run the CLI from source in any working directory. */
export function cliArgs (...args: string[]): string[] {
  return ['--import', import.meta.resolve('tsx'), path.join(root, 'bin/patchswarm.ts'), ...args]
}

/** The real `patchswarm` process, from source. */
export async function spawnCli (cwd: string, args: string[]): Promise<CliResult> {
  const child = spawn(process.execPath, cliArgs(...args), { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => { stdout += d })
  child.stderr.on('data', (d) => { stderr += d })
  const [code] = await once(child, 'exit') as [number]
  return { code, stdout, stderr }
}

/** Processes whose command line mentions `dir` (but not the shell of the test's own terminal). */
export async function processesUsing (dir: string): Promise<string[]> {
  const found: string[] = []
  for (const entry of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const argv = (await fs.readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).split('\0')
    if (['sh', 'bash', 'tmux'].includes(path.basename(argv[0] ?? ''))) continue
    if (argv.some((a) => a.includes(dir))) found.push(`${entry}: ${argv.join(' ')}`)
  }
  return found
}
