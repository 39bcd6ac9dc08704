// `npm start` in a terminal (tmux), as a person at one runs it: it opens the terminal console on
// the fleet; Ctrl-C ends the demo with its summary, and no process of the demo is left.
import t from 'tap'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { execFile, execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { promisify } from 'node:util'
import { processesUsing, root } from './helpers.js'

const execFileP = promisify(execFile)
const hasTmux = (() => { try { execFileSync('tmux', ['-V'], { stdio: 'ignore' }); return true } catch { return false } })()

t.test('npm start in a terminal: the terminal console shows the rollout; Ctrl-C ends the demo with its summary', { skip: !hasTmux && 'needs tmux' }, async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ps-start-tui-'))
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }))
  const server = `ps-start-${randomBytes(4).toString('hex')}`
  const tmux = (...args: string[]) => execFileP('tmux', ['-L', server, '-f', '/dev/null', ...args], { env: { ...process.env, TMUX: '' } })
  t.teardown(() => tmux('kill-server').catch(() => {}))
  const data = path.join(dir, 'data')
  // CI=true would make the demo headless: a person at a terminal does not have it set.
  const shell = `cd '${root}' && env -u CI TERM=xterm-256color LANG=C.UTF-8 npm start -- --data '${data}' --agents 6 --size-mib 1 --window-in 5 --soak 1 2>/dev/null; echo "EXIT:$?"; sleep 600`
  await tmux('new-session', '-d', '-s', 'main', '-x', '160', '-y', '36', shell)
  const screen = async () => (await tmux('capture-pane', '-p', '-t', 'main')).stdout
  const until = async (what: string, pattern: RegExp, ms: number) => {
    const end = Date.now() + ms
    for (;;) {
      const s = await screen()
      if (pattern.test(s)) return s
      if (Date.now() > end) { t.comment(s); throw new Error(`timed out waiting for ${what}`) }
      await new Promise((resolve) => setTimeout(resolve, 250))
    }
  }
  await until('the terminal console', /patchswarm › Rollouts[\s\S]*demo-service/, 90_000)
  const done = await until('the rollout to complete on screen', /demo-service\S*\s+demo-service 1\.0\.0\s+northwind-it\s+completed/, 150_000)
  t.match(done, /5\/6\s+1/, 'the rollouts view counts 5 installed and 1 failed')
  await tmux('send-keys', '-t', 'main', 'C-c')
  const summary = await until('the summary after the screen closed', /EXIT:\d+/, 30_000)
  t.match(summary, /patched\s+5 of 6 endpoints/)
  t.match(summary, /rolled back\s+1: pc-06/)
  t.match(summary, /EXIT:0/)
  t.same(await processesUsing(data), [], 'no process of the demo is left')
})
