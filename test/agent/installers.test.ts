import t from 'tap'
import fs from 'node:fs/promises'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { PatchswarmError } from '../../lib/errors.js'
import { installSpecSchema, type InstallSpec } from '../../lib/trust/install-spec.js'
import { openDatabase, sublevel } from '../../lib/store/db.js'
import { PackageStore } from '../../lib/content/package-store.js'
import { run, OutputTail, SAFE_POSIX_PATH, exitCodeAccepted } from '../../agent/installers/run.js'
import { InstallerRegistry, registerInstaller, installerFor, type InstallContext, type InstallType, type SpecOf } from '../../agent/installers/installer.js'
import { execInstaller, createExecInstaller } from '../../agent/installers/exec.js'
import { createFilesInstaller, filesLayout, compareTrees } from '../../agent/installers/files.js'

const posix = process.platform !== 'win32'

// True once `pid` has exited (a zombie counts: nobody in this container may reap it).
async function gone (pid: number, ms = 3000): Promise<boolean> {
  const until = Date.now() + ms
  while (Date.now() < until) {
    try {
      process.kill(pid, 0)
    } catch {
      return true
    }
    try {
      if (/^\d+ \(.*\) Z/.test(await fs.readFile(`/proc/${pid}/stat`, 'utf8'))) return true
    } catch {
      return true
    }
    await sleep(50)
  }
  return false
}

function killLater (t: any, pid: number) {
  t.teardown(() => {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {}
  })
}

async function script (dir: string, name: string, body: string): Promise<string> {
  const file = path.join(dir, name)
  await fs.mkdir(path.dirname(file), { recursive: true })
  await fs.writeFile(file, `#!/bin/sh\n${body}\n`, { mode: 0o755 })
  return file
}

// A spec through the release schema, typed as its installer type.
function parseSpec<T extends InstallType> (value: { type: T, [k: string]: unknown }): SpecOf<T> {
  return installSpecSchema.parse(value) as SpecOf<T>
}

function context<S extends InstallSpec> (spec: S, packageDir: string, workDir: string, signal = new AbortController().signal) {
  const lines: string[] = []
  const ctx: InstallContext<S> = { spec, packageDir, workDir, signal, log: (l) => { lines.push(l) } }
  return { ctx, lines }
}

// --- the runner -----------------------------------------------------------------------------------

t.test('run: success captures stdout and stderr in order', async (t) => {
  const r = await run({ argv: [process.execPath, '-e', 'console.log("out"); console.error("err")'] })
  t.equal(r.ok, true)
  t.equal(r.exitCode, 0)
  t.equal(r.code, undefined)
  t.match(r.output, /out\n[^]*err\n/)
  t.equal(r.droppedBytes, 0)
})

t.test('run: a non-zero exit not accepted is INSTALL_FAILED with the output tail', async (t) => {
  const r = await run({ argv: [process.execPath, '-e', 'console.error("disk full"); process.exit(3)'] })
  t.equal(r.ok, false)
  t.equal(r.code, 'INSTALL_FAILED')
  t.equal(r.exitCode, 3)
  t.match(r.reason, /exited with code 3/)
  t.match(r.output, /disk full/)
})

t.test('run: an accepted non-zero exit code is success', async (t) => {
  const r = await run({ argv: [process.execPath, '-e', 'process.exit(194)'], exitCodes: [0, 194] })
  t.equal(r.ok, true)
  t.equal(r.exitCode, 194)
  t.equal((await run({ argv: [process.execPath, '-e', 'process.exit(0)'], exitCodes: [194] })).ok, false, '0 is not implied once codes are given')
  // Windows codes above 2^31 arrive signed or unsigned depending on who reports them.
  t.ok(exitCodeAccepted(-1073741510, [3221225786]))
  t.notOk(exitCodeAccepted(1, [3010]))
})

t.test('run: a program that cannot start is INSTALL_FAILED, not a throw', async (t) => {
  const dir = t.testdir()
  const r = await run({ argv: [path.join(dir, 'no-such-program')] })
  t.equal(r.ok, false)
  t.equal(r.code, 'INSTALL_FAILED')
  t.match(r.reason, /cannot start .*ENOENT/)
  t.throws(() => run({ argv: [] }), { code: 'BAD_ARGUMENT' })
})

t.test('run: timeout kills the whole process group, grandchildren too', { skip: !posix && 'POSIX process groups' }, async (t) => {
  const dir = t.testdir()
  const pidFile = path.join(dir, 'grandchild.pid')
  const sh = await script(dir, 'hang.sh', 'sleep 30 &\necho $! > "$1"\necho waiting\nsleep 30')
  const started = Date.now()
  const r = await run({ argv: ['/bin/sh', sh, pidFile], timeoutMs: 400 })
  const grandchild = Number(await fs.readFile(pidFile, 'utf8'))
  killLater(t, grandchild)
  t.equal(r.ok, false)
  t.equal(r.code, 'TIMEOUT')
  t.match(r.reason, /timed out after 400 ms/)
  t.match(r.output, /waiting/)
  t.ok(Date.now() - started < 4000, 'returned soon after the timeout')
  t.ok(await gone(grandchild), 'the background grandchild was killed with its group')
})

t.test('run: SIGKILL follows SIGTERM after the grace period', { skip: !posix && 'POSIX signals' }, async (t) => {
  const dir = t.testdir()
  const pidFile = path.join(dir, 'self.pid')
  const sh = await script(dir, 'stubborn.sh', `trap '' TERM\necho $$ > "$1"\nwhile :; do sleep 0.1; done`)
  const r = await run({ argv: ['/bin/sh', sh, pidFile], timeoutMs: 200, graceMs: 400 })
  const pid = Number(await fs.readFile(pidFile, 'utf8'))
  killLater(t, pid)
  t.equal(r.code, 'TIMEOUT')
  t.equal(r.exitSignal, 'SIGKILL')
  t.ok(r.durationMs >= 550, `waited out the grace period (${r.durationMs} ms)`)
  t.ok(await gone(pid))
})

t.test('run: output is bounded to its tail and says how much was dropped', async (t) => {
  const r = await run({ argv: [process.execPath, '-e', 'process.stdout.write("x".repeat(1 << 20) + "END")'] })
  t.equal(r.ok, true)
  t.equal(r.droppedBytes, (1 << 20) + 3 - 8192)
  t.ok(r.output.startsWith(`… ${(1 << 20) + 3 - 8192} bytes dropped …\n`))
  t.ok(r.output.endsWith('xxEND'))
  t.ok(Buffer.byteLength(r.output) < 8192 + 64, `output is ${Buffer.byteLength(r.output)} bytes`)
  const small = await run({ argv: [process.execPath, '-e', 'process.stdout.write("y".repeat(5000))'], maxOutputBytes: 100 })
  t.equal(small.droppedBytes, 4900)
})

t.test('OutputTail never starts inside a UTF-8 character', async (t) => {
  const tail = new OutputTail(10)
  tail.push(Buffer.from('ééééééééé')) // 18 bytes: the cut at byte 8 falls in the middle of one
  tail.push(Buffer.from('ok'))
  const text = tail.text()
  t.notMatch(text, /\ufffd/)
  t.match(text, /^… \d+ bytes dropped …\né+ok$/)
})

t.test('run: env is minimal, the given env is merged on top, cwd is respected', async (t) => {
  const dir = await fs.realpath(t.testdir())
  process.env.PATCHSWARM_TEST_SECRET = 'hunter2'
  t.teardown(() => { delete process.env.PATCHSWARM_TEST_SECRET })
  const r = await run({
    argv: [process.execPath, '-e', 'process.stdout.write(JSON.stringify({ env: process.env, cwd: process.cwd() }))'],
    env: { GREETING: 'hello', LANG: 'C.UTF-8' },
    cwd: dir
  })
  t.equal(r.ok, true, String(r.reason))
  const { env, cwd } = JSON.parse(r.output)
  t.equal(cwd, dir)
  t.equal(env.GREETING, 'hello')
  t.equal(env.LANG, 'C.UTF-8', 'the given env wins')
  t.equal(env.PATCHSWARM_TEST_SECRET, undefined, "the agent's environment does not leak")
  if (posix) t.equal(env.PATH, SAFE_POSIX_PATH)
})

t.test('run: an AbortSignal stops the command with the reason as its code', async (t) => {
  const ac = new AbortController()
  const p = run({ argv: [process.execPath, '-e', 'setTimeout(() => {}, 30000); console.log("up")'], signal: ac.signal })
  await sleep(300)
  ac.abort(PatchswarmError.CLOSED('the agent is stopping'))
  const r = await p
  t.equal(r.ok, false)
  t.equal(r.code, 'CLOSED')
  t.match(r.reason, /aborted: .*the agent is stopping/)
  const timedOut = await run({ argv: [process.execPath, '-e', 'setTimeout(() => {}, 30000)'], signal: AbortSignal.timeout(200) })
  t.equal(timedOut.code, 'TIMEOUT', 'AbortSignal.timeout counts as a timeout')
  const before = await run({ argv: [process.execPath, '-e', ''], signal: AbortSignal.abort() })
  t.equal(before.ok, false, 'an aborted signal runs nothing')
})

t.test('run: stops waiting for pipes held by a child the command left running', { skip: !posix && 'POSIX sh' }, async (t) => {
  const dir = t.testdir()
  const sh = await script(dir, 'daemon.sh', 'sleep 30 &\necho $!')
  const r = await run({ argv: ['/bin/sh', sh], drainMs: 200 })
  const daemon = Number(r.output.trim())
  killLater(t, daemon)
  t.equal(r.ok, true)
  t.ok(r.durationMs < 3000, `returned after the drain time (${r.durationMs} ms)`)
  t.notOk(await gone(daemon, 100), 'a child left on purpose keeps running after a normal exit')
})

// --- the registry ---------------------------------------------------------------------------------

t.test('registry: register, look up, dispose', async (t) => {
  const spec = parseSpec({ type: 'exec', argv: ['bin/x'] })
  t.throws(() => installerFor(spec), { code: 'BAD_CONFIG' })
  const reg = registerInstaller(execInstaller)
  t.equal(installerFor(spec), execInstaller)
  t.throws(() => registerInstaller(createExecInstaller()), { code: 'ALREADY_EXISTS' })
  reg.dispose()
  t.throws(() => installerFor(spec), { code: 'BAD_CONFIG' })

  const registry = new InstallerRegistry()
  const first = registry.register(execInstaller)
  first.dispose()
  const second = createExecInstaller()
  registry.register(second)
  first.dispose() // late: must not remove its successor
  t.equal(registry.for(spec), second)
  t.same(registry.types(), ['exec'])
  t.throws(() => registry.register({ type: 'broken' } as any), { code: 'BAD_ARGUMENT' })
})

// --- exec -----------------------------------------------------------------------------------------

// A package whose scripts record what they saw; made read-only like PackageStore#checkout makes it.
async function execPackage (t: any) {
  const dir = t.testdir({ work: {} })
  const pkg = path.join(dir, 'pkg')
  await script(pkg, 'bin/install.sh', [
    'echo "installing from $(pwd)"',
    'echo "a warning" >&2',
    'printf "%s\\n" "$PATCHSWARM_PACKAGE_DIR" "$PATCHSWARM_WORK_DIR" "$PATCHSWARM_STEP" "$GREETING" "$(pwd)" > "$PATCHSWARM_WORK_DIR/install.txt"',
    'exit ${EXIT_CODE:-0}'
  ].join('\n'))
  await script(pkg, 'bin/health.sh', 'test -f "$PATCHSWARM_WORK_DIR/install.txt" || { echo "not installed"; exit 1; }')
  await script(pkg, 'bin/rollback.sh', 'echo "$PATCHSWARM_STEP" > "$PATCHSWARM_WORK_DIR/rollback.txt"\nrm -f "$PATCHSWARM_WORK_DIR/install.txt"')
  await script(pkg, 'bin/hang.sh', 'sleep 30')
  await fs.mkdir(path.join(pkg, 'share'))
  for (const f of ['install.sh', 'health.sh', 'rollback.sh', 'hang.sh']) await fs.chmod(path.join(pkg, 'bin', f), 0o555)
  return { pkg, work: path.join(dir, 'work') }
}

function execSpec (extra: Record<string, unknown> = {}) {
  return parseSpec({ type: 'exec', argv: ['bin/install.sh'], health: ['bin/health.sh'], rollback: ['bin/rollback.sh'], ...extra })
}

t.test('exec: install runs the package program with cwd, env and the PATCHSWARM_ variables', { skip: !posix && 'sh scripts' }, async (t) => {
  const { pkg, work } = await execPackage(t)
  const { ctx, lines } = context(execSpec({ cwd: 'share', env: { GREETING: 'hi', PATCHSWARM_PACKAGE_DIR: '/elsewhere' } }), pkg, work)
  const r = await execInstaller.install(ctx)
  t.equal(r.ok, true, String(r.reason))
  t.equal(r.exitCode, 0)
  t.match(r.output, /installing from .*share\n[^]*a warning/)
  const seen = (await fs.readFile(path.join(work, 'install.txt'), 'utf8')).split('\n')
  t.same(seen.slice(0, 5), [pkg, work, 'install', 'hi', path.join(pkg, 'share')], 'the agent’s variables win over the spec’s')
  t.ok(lines.some((l) => l.startsWith('exec install: bin/install.sh')), 'logged')
  t.equal(r.rebootRequired, undefined)

  const health = await execInstaller.healthCheck(ctx)
  t.equal(health.ok, true, String(health.reason))
  const again = await execInstaller.install(ctx)
  t.equal(again.ok, true, 're-running the step is allowed')
})

t.test('exec: a failing install is INSTALL_FAILED with its output; accepted codes and reboot', { skip: !posix && 'sh scripts' }, async (t) => {
  const { pkg, work } = await execPackage(t)
  const failed = await execInstaller.install(context(execSpec({ env: { EXIT_CODE: '7' } }), pkg, work).ctx)
  t.equal(failed.ok, false)
  t.equal(failed.code, 'INSTALL_FAILED')
  t.equal(failed.exitCode, 7)
  t.match(failed.reason, /^install: .*exited with code 7/)
  t.match(failed.output, /a warning/)

  const accepted = await execInstaller.install(context(execSpec({ env: { EXIT_CODE: '7' }, exitCodes: [0, 7], reboot: true }), pkg, work).ctx)
  t.equal(accepted.ok, true)
  t.equal(accepted.exitCode, 7)
  t.equal(accepted.rebootRequired, true)
})

t.test('exec: a hanging install is stopped at the spec timeout', { skip: !posix && 'sh scripts' }, async (t) => {
  const { pkg, work } = await execPackage(t)
  const r = await execInstaller.install(context(execSpec({ argv: ['bin/hang.sh'], timeoutMs: 300 }), pkg, work).ctx)
  t.equal(r.ok, false)
  t.equal(r.code, 'TIMEOUT')
  t.match(r.reason, /timed out after 300 ms/)
})

t.test('exec: failing health check, rollback command, and a spec without them', { skip: !posix && 'sh scripts' }, async (t) => {
  const { pkg, work } = await execPackage(t)
  const { ctx } = context(execSpec(), pkg, work)
  const health = await execInstaller.healthCheck(ctx) // nothing installed yet
  t.equal(health.ok, false)
  t.equal(health.code, 'INSTALL_FAILED')
  t.match(health.reason, /^health: /)
  t.match(health.output, /not installed/)

  t.equal((await execInstaller.install(ctx)).ok, true)
  const rb = await execInstaller.rollback(ctx)
  t.equal(rb.ok, true, String(rb.reason))
  t.equal(await fs.readFile(path.join(work, 'rollback.txt'), 'utf8'), 'rollback\n')
  t.equal((await execInstaller.healthCheck(ctx)).ok, false, 'the rollback undid the install')

  const bare = context(parseSpec({ type: 'exec', argv: ['bin/install.sh'] }), pkg, work).ctx
  t.equal((await execInstaller.healthCheck(bare)).ok, true, 'no health check: nothing to fail')
  const noRollback = await execInstaller.rollback(bare)
  t.equal(noRollback.ok, false)
  t.match(noRollback.reason, /no rollback command/)
  const wrong = context(parseSpec({ type: 'files', target: 'x' }), pkg, work).ctx
  await t.rejects(execInstaller.install(wrong as any), { code: 'BAD_ARGUMENT' })
})

// --- files ----------------------------------------------------------------------------------------

const V0 = { 'old.txt': 'version 0\n', bin: { tool: 'v0 tool\n' } }
const V1 = { 'README': 'version 1\n', bin: { tool: '#!/bin/sh\necho v1\n' }, empty: {}, deep: { a: { b: 'bee\n' } } }

// Every entry under `dir`: files by content, directories as '<dir>'.
async function snapshot (dir: string): Promise<Record<string, string> | null> {
  try {
    await fs.lstat(dir)
  } catch {
    return null
  }
  const out: Record<string, string> = {}
  const walk = async (d: string, rel: string) => {
    for (const e of await fs.readdir(d, { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name
      if (e.isDirectory()) {
        out[r] = '<dir>'
        await walk(path.join(d, e.name), r)
      } else {
        out[r] = await fs.readFile(path.join(d, e.name), 'utf8')
      }
    }
  }
  await walk(dir, '')
  return out
}

async function readOnly (dir: string) {
  for (const e of await fs.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) await readOnly(p)
    else await fs.chmod(p, (await fs.stat(p)).mode & 0o100 ? 0o555 : 0o444)
  }
}

async function filesSetup (t: any, opts: { previous?: boolean } = {}) {
  const dir = t.testdir({ pkg: V1, v0: V0, root: opts.previous ? { opt: { app: structuredClone(V0) } } : {}, work: {} })
  const pkg = path.join(dir, 'pkg')
  await fs.chmod(path.join(pkg, 'bin/tool'), 0o755)
  await readOnly(pkg)
  const installer = createFilesInstaller({ installRoot: path.join(dir, 'root') })
  const spec = parseSpec({ type: 'files', target: 'opt/app' })
  const work = path.join(dir, 'work')
  const { ctx } = context(spec, pkg, work)
  const L = filesLayout(path.join(dir, 'root'), 'opt/app', work)
  const v1 = await snapshot(pkg)
  const v0 = await snapshot(path.join(dir, 'v0'))
  const leftovers = async () => (await fs.readdir(path.dirname(L.target))).filter((n) => n !== 'app').sort()
  return { dir, pkg, installer, ctx, L, v0, v1, leftovers }
}

t.test('files: fresh install, health, idempotent re-run, rollback removes it', async (t) => {
  const { installer, ctx, L, v1, leftovers } = await filesSetup(t)
  const r = await installer.install(ctx)
  t.equal(r.ok, true, String(r.reason))
  t.match(r.output, /copied 3 files/)
  t.same(await snapshot(L.target), v1)
  if (posix) {
    t.equal((await fs.stat(path.join(L.target, 'bin/tool'))).mode & 0o777, 0o755, 'executable, writable again')
    t.equal((await fs.stat(path.join(L.target, 'README'))).mode & 0o777, 0o644)
  }
  t.same(await leftovers(), [], 'no staging or previous left: there was nothing before')
  t.equal((await installer.healthCheck(ctx)).ok, true)

  const inode = (await fs.stat(L.target)).ino
  const again = await installer.install(ctx)
  t.equal(again.ok, true)
  t.match(again.output, /already holds this package/)
  t.equal((await fs.stat(L.target)).ino, inode, 'the re-run changed nothing')

  const rb = await installer.rollback(ctx)
  t.equal(rb.ok, true, String(rb.reason))
  t.match(rb.output, /removed .* which this job created/)
  t.equal(await snapshot(L.target), null)
  const rb2 = await installer.rollback(ctx)
  t.equal(rb2.ok, true, 'rollback re-runs')
  t.equal(await snapshot(L.target), null)
})

t.test('files: upgrade keeps the previous version; health sees tampering; rollback restores', async (t) => {
  const { installer, ctx, L, v0, v1, leftovers } = await filesSetup(t, { previous: true })
  t.equal((await installer.install(ctx)).ok, true)
  t.same(await snapshot(L.target), v1)
  t.same(await snapshot(L.previous), v0, 'the old tree is kept for rollback')
  t.same(await leftovers(), [path.basename(L.previous)])

  await fs.writeFile(path.join(L.target, 'deep/a/b'), 'wasp\n')
  let h = await installer.healthCheck(ctx)
  t.equal(h.ok, false)
  t.equal(h.code, 'INSTALL_FAILED')
  t.match(h.reason, /deep\/a\/b is 5 bytes, the package has 4/)
  await fs.writeFile(path.join(L.target, 'deep/a/b'), 'bea\n')
  t.match((await installer.healthCheck(ctx)).reason, /deep\/a\/b differs from the package/, 'same size, other bytes')
  await fs.writeFile(path.join(L.target, 'deep/a/b'), 'bee\n')
  await fs.writeFile(path.join(L.target, 'stray'), '')
  t.match((await installer.healthCheck(ctx)).reason, /stray is not in the package/)
  await fs.rm(path.join(L.target, 'stray'))
  await fs.rm(path.join(L.target, 'empty'), { recursive: true })
  t.match((await installer.healthCheck(ctx)).reason, /empty is missing/)
  await fs.mkdir(path.join(L.target, 'empty'))
  if (posix) {
    await fs.chmod(path.join(L.target, 'bin/tool'), 0o644)
    t.match((await installer.healthCheck(ctx)).reason, /bin\/tool differs in its execute permission/)
    await fs.chmod(path.join(L.target, 'bin/tool'), 0o755)
  }
  h = await installer.healthCheck(ctx)
  t.equal(h.ok, true, String(h.reason))

  const rb = await installer.rollback(ctx)
  t.equal(rb.ok, true, String(rb.reason))
  t.same(await snapshot(L.target), v0)
  t.same(await leftovers(), [])
  t.equal((await installer.rollback(ctx)).ok, true)
  t.same(await snapshot(L.target), v0, 'a second rollback leaves the restored version alone')
})

t.test('files: a broken install is repaired by re-running install, and the kept version survives it', async (t) => {
  const { installer, ctx, L, v0, v1 } = await filesSetup(t, { previous: true })
  t.equal((await installer.install(ctx)).ok, true)
  await fs.writeFile(path.join(L.target, 'README'), 'damaged\n')
  const r = await installer.install(ctx)
  t.equal(r.ok, true, String(r.reason))
  t.match(r.output, /replaced what an earlier run of this job installed/)
  t.same(await snapshot(L.target), v1)
  t.same(await snapshot(L.previous), v0, 'the damaged tree did not overwrite the kept one')
})

// Crash states, made by undoing the last steps of a real install by hand.
t.test('files crash: old moved aside, new not yet renamed in', async (t) => {
  for (const then of ['install', 'rollback'] as const) {
    await t.test(`then ${then}`, async (t) => {
      const { installer, ctx, L, v0, v1, leftovers } = await filesSetup(t, { previous: true })
      t.equal((await installer.install(ctx)).ok, true)
      await fs.rename(L.target, L.staging) // target absent, previous = v0, staging = v1
      const r = await installer[then](ctx)
      t.equal(r.ok, true, String(r.reason))
      if (then === 'install') {
        t.same(await snapshot(L.target), v1)
        t.same(await snapshot(L.previous), v0)
        t.same(await leftovers(), [path.basename(L.previous)])
      } else {
        t.same(await snapshot(L.target), v0)
        t.same(await leftovers(), [])
      }
    })
  }
})

t.test('files crash: staging half-copied, nothing swapped yet', async (t) => {
  for (const then of ['install', 'rollback'] as const) {
    await t.test(`then ${then}`, async (t) => {
      const { installer, ctx, L, v0, v1, leftovers } = await filesSetup(t, { previous: true })
      t.equal((await installer.install(ctx)).ok, true)
      t.equal((await installer.rollback(ctx)).ok, true) // target = v0 again; the job's marker stays
      await fs.mkdir(path.join(L.staging, 'bin'), { recursive: true })
      await fs.writeFile(path.join(L.staging, 'bin/tool'), '#!/bin/sh\necho v') // cut short
      const r = await installer[then](ctx)
      t.equal(r.ok, true, String(r.reason))
      t.same(await snapshot(L.target), then === 'install' ? v1 : v0)
      t.same(await leftovers(), then === 'install' ? [path.basename(L.previous)] : [])
    })
  }
})

t.test('files crash: fresh install staged but not renamed in', async (t) => {
  for (const then of ['install', 'rollback'] as const) {
    await t.test(`then ${then}`, async (t) => {
      const { installer, ctx, L, v1, leftovers } = await filesSetup(t)
      t.equal((await installer.install(ctx)).ok, true)
      await fs.rename(L.target, L.staging)
      const r = await installer[then](ctx)
      t.equal(r.ok, true, String(r.reason))
      t.same(await snapshot(L.target), then === 'install' ? v1 : null)
      t.same(await leftovers(), [])
    })
  }
})

t.test('files crash: replacing an earlier attempt, discard half-removed', async (t) => {
  for (const then of ['install', 'rollback'] as const) {
    await t.test(`then ${then}`, async (t) => {
      const { installer, ctx, L, v0, v1, leftovers } = await filesSetup(t, { previous: true })
      t.equal((await installer.install(ctx)).ok, true)
      await fs.rename(L.target, L.discard)
      await fs.rm(path.join(L.discard, 'deep'), { recursive: true }) // removal interrupted
      const r = await installer[then](ctx)
      t.equal(r.ok, true, String(r.reason))
      t.same(await snapshot(L.target), then === 'install' ? v1 : v0)
      t.same(await leftovers(), then === 'install' ? [path.basename(L.previous)] : [])
    })
  }
})

t.test('files: commit releases the kept version; rollback is then refused', async (t) => {
  const { installer, ctx, L, v1, leftovers } = await filesSetup(t, { previous: true })
  t.equal((await installer.install(ctx)).ok, true)
  const c = await installer.commit!(ctx)
  t.equal(c.ok, true, String(c.reason))
  t.same(await leftovers(), [])
  t.equal((await installer.commit!(ctx)).ok, true, 'commit re-runs')
  const again = await installer.install(ctx)
  t.match(again.output, /already holds this package/, 'install after commit is a no-op')
  const rb = await installer.rollback(ctx)
  t.equal(rb.ok, false)
  t.match(rb.reason, /committed/)
  t.same(await snapshot(L.target), v1)
})

t.test('files: an aborted install changes nothing; a rollback without an install is a no-op', async (t) => {
  const { installer, pkg, L, v0 } = await filesSetup(t, { previous: true })
  const spec = parseSpec({ type: 'files', target: 'opt/app' })
  const aborted = context(spec, pkg, path.join(path.dirname(pkg), 'work'), AbortSignal.abort(PatchswarmError.TIMEOUT('window closed'))).ctx
  const r = await installer.install(aborted)
  t.equal(r.ok, false)
  t.equal(r.code, 'TIMEOUT')
  t.same(await snapshot(L.target), v0)

  const other = context(spec, pkg, path.join(path.dirname(pkg), 'other-job')).ctx
  const rb = await installer.rollback(other)
  t.equal(rb.ok, true)
  t.match(rb.output, /nothing to roll back/)
  t.same(await snapshot(L.target), v0)
  t.throws(() => createFilesInstaller({ installRoot: '' }), { code: 'BAD_ARGUMENT' })
  await t.rejects(installer.install(context(parseSpec({ type: 'exec', argv: ['x'] }), pkg, 'w').ctx as any), { code: 'BAD_ARGUMENT' })
})

t.test('files: installs from a real verified checkout of the package store', async (t) => {
  const dir = t.testdir({ source: V1, root: {}, work: {} })
  await fs.chmod(path.join(dir, 'source/bin/tool'), 0o755)
  const db = await openDatabase(path.join(dir, 'db'))
  const store = new PackageStore({ dir: path.join(dir, 'store'), db: sublevel(db, 'content') })
  t.teardown(async () => {
    await store.close()
    await db.close()
  })
  const { digest } = await store.importSource(path.join(dir, 'source'))
  const pkg = path.join(dir, 'checkout')
  await store.checkout(digest, pkg)

  const installer = createFilesInstaller({ installRoot: path.join(dir, 'root') })
  const { ctx } = context(parseSpec({ type: 'files', target: 'app' }), pkg, path.join(dir, 'work'))
  const r = await installer.install(ctx)
  t.equal(r.ok, true, String(r.reason))
  t.equal(await compareTrees(path.join(dir, 'root/app'), path.join(dir, 'source')), null, 'the installed tree is the source tree')
  t.equal((await installer.healthCheck(ctx)).ok, true)
})
