// `npm run bench` as the README shows it: named benchmarks run, a table of them, and the JSON line
// of the last one as the very last line; an unknown name is refused with the list. Two of the
// quick benchmarks stand in for all (a full run takes many minutes and is not part of npm test).
import t from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { root } from '../cli/helpers.js'

async function npmBench (...names: string[]): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const child = spawn('npm', ['run', 'bench', '--', ...names], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => { stdout += d })
  child.stderr.on('data', (d) => { stderr += d })
  const [code] = await once(child, 'exit') as [number | null]
  return { code, stdout, stderr }
}

t.test('npm run bench -- signing chunking: a table, then the JSON lines, the last one last', async (t) => {
  const r = await npmBench('signing', 'chunking')
  if (r.code !== 0) t.comment(r.stderr.slice(-4000))
  t.equal(r.code, 0, 'exits 0')
  const lines = r.stdout.trim().split('\n')
  const header = lines.findIndex((l) => /^benchmark\s+ours\s+baseline\s+ratio\s+goal/.test(l))
  t.ok(header >= 0, 'the table has its header')
  t.match(lines[header + 1], /^signing\s+sign_per_s=\d+\s+baseline_sign_per_s=\d+\s+[\d.]+\s+ratio >= 1/)
  t.match(lines[header + 2], /^chunking\s+mb_per_s=[\d.]+\s+baseline_mb_per_s=[\d.]+\s+[\d.]+\s+ratio >= 0\.6/)
  const last = JSON.parse(lines[lines.length - 1]!)
  t.equal(last.bench, 'chunking', 'the last line is the JSON of the last benchmark')
  t.ok(last.mb_per_s > 0 && last.baseline_mb_per_s > 0 && last.ratio > 0)
  t.equal(JSON.parse(lines[lines.length - 2]!).bench, 'signing')
})

t.test('npm run bench -- an unknown name: exit 2 and the list of benchmarks', async (t) => {
  const r = await npmBench('no-such-bench')
  t.equal(r.code, 2)
  t.match(r.stderr, /unknown benchmark 'no-such-bench'; available: agent-idle, chunking, ingest, signing, swarm, throughput, tui-render, wan/)
})
