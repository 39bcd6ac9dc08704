// The `exec` installer: runs the programs a release names (install, health check, rollback), each
// shipped inside the package, from the verified read-only copy. The spec defines no placeholders,
// so a program learns where things are from its environment:
//   PATCHSWARM_PACKAGE_DIR  the verified package copy (read-only)
//   PATCHSWARM_WORK_DIR     the job's folder, writable, kept across agent restarts
//   PATCHSWARM_STEP         install | health | rollback (one script may serve all three)
// The agent re-runs a step after a crash, so a release's programs must be safe to run twice.
import path from 'node:path'
import { assertSafeRelativePath } from '../../lib/content/paths.js'
import type { ExecInstall } from '../../lib/trust/install-spec.js'
import { assertSpecType, type InstallContext, type InstallResult, type Installer } from './installer.js'
import { run, DEFAULT_GRACE_MS, DEFAULT_OUTPUT_BYTES } from './run.js'

export const DEFAULT_EXEC_TIMEOUT_MS = 30 * 60 * 1000

export interface ExecInstallerOptions {
  /** When the spec names no timeout. */
  defaultTimeoutMs?: number
  graceMs?: number
  maxOutputBytes?: number
}

type Step = 'install' | 'health' | 'rollback'

export function createExecInstaller (opts: ExecInstallerOptions = {}): Installer<'exec'> {
  const step = async (ctx: InstallContext, name: Step, argv: string[], exitCodes: number[]): Promise<InstallResult> => {
    assertSpecType(ctx, 'exec')
    const spec: ExecInstall = ctx.spec
    const packageDir = path.resolve(ctx.packageDir)
    const program = inPackage(packageDir, argv[0]!, 'program')
    const cwd = spec.cwd === undefined ? packageDir : inPackage(packageDir, spec.cwd, 'cwd')
    ctx.log(`exec ${name}: ${[argv[0], ...argv.slice(1)].join(' ')}`)
    const r = await run({
      argv: [program, ...argv.slice(1)],
      name: argv[0]!,
      cwd,
      // Ours last: a release cannot point a program at another package's directory.
      env: { ...spec.env, PATCHSWARM_PACKAGE_DIR: packageDir, PATCHSWARM_WORK_DIR: path.resolve(ctx.workDir), PATCHSWARM_STEP: name },
      timeoutMs: spec.timeoutMs ?? opts.defaultTimeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS,
      exitCodes,
      signal: ctx.signal,
      graceMs: opts.graceMs ?? DEFAULT_GRACE_MS,
      maxOutputBytes: opts.maxOutputBytes ?? DEFAULT_OUTPUT_BYTES
    })
    ctx.log(`exec ${name}: ${r.ok ? 'ok' : `${r.code}: ${r.reason}`} (${r.durationMs} ms)`)
    const result: InstallResult = { ok: r.ok, output: r.output }
    if (r.code !== undefined) result.code = r.code
    if (r.exitCode !== undefined) result.exitCode = r.exitCode
    if (r.reason !== undefined) result.reason = `${name}: ${r.reason}`
    if (r.ok && name === 'install' && spec.reboot) result.rebootRequired = true
    return result
  }

  return {
    type: 'exec',
    install: (ctx) => step(ctx, 'install', ctx.spec.argv, ctx.spec.exitCodes ?? [0]),
    // A health check answers yes (0) or no; installer tools' "success, but …" codes do not apply.
    healthCheck: async (ctx) => {
      assertSpecType(ctx, 'exec')
      if (!ctx.spec.health) return { ok: true, output: '', reason: 'the release names no health check' }
      return step(ctx, 'health', ctx.spec.health, [0])
    },
    // Rollback usually runs the same tooling as install (msiexec, dpkg), so the same codes count.
    rollback: async (ctx) => {
      assertSpecType(ctx, 'exec')
      if (!ctx.spec.rollback) return { ok: false, code: 'INSTALL_FAILED', reason: 'rollback: the release names no rollback command', output: '' }
      return step(ctx, 'rollback', ctx.spec.rollback, ctx.spec.exitCodes ?? [0])
    }
  }
}

export const execInstaller = createExecInstaller()

// The spec was validated when the release was parsed; checked again because this is where the path
// meets the file system.
function inPackage (packageDir: string, rel: string, what: string): string {
  return path.join(packageDir, ...assertSafeRelativePath(rel, what).split('/'))
}
