// The one interface every installer type implements, and the registry the agent picks them from.
// An installer reports a failed install as a result ({ ok: false, code, reason, output }); it throws
// only for programming errors (a spec of the wrong type, a duplicate registration). Every step must
// be safe to run again: after a crash the agent re-runs the step it was in, so a step finds its own
// half-done work and completes or undoes it.
import { PatchswarmError } from '../../lib/errors.js'
import type { InstallSpec } from '../../lib/trust/install-spec.js'

export type InstallType = InstallSpec['type']
export type SpecOf<T extends InstallType> = Extract<InstallSpec, { type: T }>

export type InstallLog = (message: string) => void

export interface InstallContext<S extends InstallSpec = InstallSpec> {
  /** The install spec of the signed release. */
  spec: S
  /** The verified, read-only copy of the package's files (PackageStore#checkout). */
  packageDir: string
  /** A folder the agent owns for this job (kept across restarts): installers keep state here. */
  workDir: string
  /** Aborted when the agent stops the step (shutdown, window closed). */
  signal: AbortSignal
  log: InstallLog
}

export interface InstallResult {
  ok: boolean
  /** Why it failed, as an error code: INSTALL_FAILED, TIMEOUT, … */
  code?: string
  exitCode?: number
  reason?: string
  /** The tail of what the step printed (bounded), or what it did. */
  output: string
  /** The install succeeded and the release asks for a reboot to complete it. */
  rebootRequired?: boolean
}

export interface Installer<T extends InstallType = InstallType> {
  readonly type: T
  install (ctx: InstallContext<SpecOf<T>>): Promise<InstallResult>
  healthCheck (ctx: InstallContext<SpecOf<T>>): Promise<InstallResult>
  rollback (ctx: InstallContext<SpecOf<T>>): Promise<InstallResult>
  /** The job is final and stays installed: release what was kept for a rollback. */
  commit? (ctx: InstallContext<SpecOf<T>>): Promise<InstallResult>
}

export interface Registration {
  dispose (): void
}

export class InstallerRegistry {
  private readonly byType = new Map<string, Installer<any>>()

  register (installer: Installer<any>): Registration {
    if (!installer || typeof installer.type !== 'string' || typeof installer.install !== 'function' ||
        typeof installer.healthCheck !== 'function' || typeof installer.rollback !== 'function') {
      throw PatchswarmError.BAD_ARGUMENT('an installer needs type, install, healthCheck and rollback')
    }
    if (this.byType.has(installer.type)) throw PatchswarmError.ALREADY_EXISTS(`an installer for type "${installer.type}" is already registered`)
    this.byType.set(installer.type, installer)
    return {
      // Only removes its own registration, so a late dispose cannot drop a successor.
      dispose: () => {
        if (this.byType.get(installer.type) === installer) this.byType.delete(installer.type)
      }
    }
  }

  /** The installer for a spec's type; BAD_CONFIG when the agent has none for it. */
  for<S extends InstallSpec> (spec: S): Installer<S['type']> {
    const type = (spec as { type?: unknown } | null)?.type
    const installer = typeof type === 'string' ? this.byType.get(type) : undefined
    if (!installer) throw PatchswarmError.BAD_CONFIG(`no installer is registered for type ${JSON.stringify(type)}`)
    return installer
  }

  types (): string[] {
    return [...this.byType.keys()].sort()
  }
}

/** The agent's registry. */
export const installers = new InstallerRegistry()

export function registerInstaller (installer: Installer<any>): Registration {
  return installers.register(installer)
}

export function installerFor<S extends InstallSpec> (spec: S): Installer<S['type']> {
  return installers.for(spec)
}

/** Programming error: an installer was handed a spec of another type. */
export function assertSpecType<T extends InstallType> (ctx: InstallContext, type: T): asserts ctx is InstallContext<SpecOf<T>> {
  if (ctx?.spec?.type !== type) throw PatchswarmError.BAD_ARGUMENT(`the ${type} installer got a spec of type ${JSON.stringify(ctx?.spec?.type)}`)
}
