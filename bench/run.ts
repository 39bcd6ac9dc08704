// `npm run bench -- NAME [NAME…]` runs benchmarks; without a name, every one. Each benchmark module
// exports `run()` that measures our path and its baseline in the same process and returns one flat
// record; this runner prints a table (name, our figure, baseline, ratio, goal) and the JSON lines,
// the JSON of the last benchmark as the very last line.
import { readdir } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import path from 'node:path'

export type BenchResult = Record<string, number | string | boolean>
export interface BenchModule {
  run (): Promise<BenchResult>
  /** The figure the table shows and its goal, e.g. { figure: 'ratio', goal: '>= 0.6' }. */
  summary?: { figure: string, baseline?: string, goal: string }
}

const here = path.dirname(fileURLToPath(import.meta.url))

async function available (): Promise<string[]> {
  return (await readdir(here)).filter((f) => f.endsWith('.ts') && f !== 'run.ts' && !f.startsWith('_')).map((f) => f.slice(0, -3)).sort()
}

async function main () {
  const all = await available()
  const wanted = process.argv.slice(2)
  for (const name of wanted) {
    if (!all.includes(name)) {
      console.error(`unknown benchmark '${name}'; available: ${all.join(', ')}`)
      process.exit(2)
    }
  }
  const names = wanted.length ? wanted : all
  const rows: Array<{ name: string, result: BenchResult, mod: BenchModule }> = []
  for (const name of names) {
    const mod = await import(`./${name}.js`) as BenchModule
    console.error(`# running ${name} …`)
    const result = await mod.run()
    rows.push({ name, result, mod })
    console.log(JSON.stringify(result))
  }
  if (rows.length > 1) {
    console.log('\n' + table(rows) + '\n')
    for (const r of rows) console.log(JSON.stringify(r.result))
  }
}

function table (rows: Array<{ name: string, result: BenchResult, mod: BenchModule }>): string {
  const lines = [['benchmark', 'ours', 'baseline', 'ratio', 'goal']]
  for (const { name, result, mod } of rows) {
    const s = mod.summary
    const ours = s ? `${s.figure}=${result[s.figure]}` : ''
    const base = s?.baseline ? `${s.baseline}=${result[s.baseline]}` : ''
    lines.push([name, ours, base, String(result.ratio ?? ''), s?.goal ?? ''])
  }
  const widths = lines[0]!.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)))
  return lines.map((l) => l.map((c, i) => c.padEnd(widths[i]!)).join('  ')).join('\n')
}

await main()
