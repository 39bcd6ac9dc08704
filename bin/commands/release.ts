// `patchswarm release`: chunk a file or directory, write its manifest and a release signed by the
// release keys. `patchswarm verify`: check a release the way an endpoint does.
import { type Command, Option } from 'commander'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { PatchswarmError } from '../../lib/errors.js'
import { openDatabase } from '../../lib/store/db.js'
import { buildManifest, manifestBytes, manifestDigest, parseManifest, PackageStore, type Manifest } from '../../lib/content/index.js'
import {
  type InstallSpec, RISKS, installSpecSchema, newRelease, parseRelease, parseRoot, signEnvelope,
  authoriseRelease, TrustedState
} from '../../lib/trust/index.js'
import { writeAtomic } from '../../lib/crypto/keyfile.js'
import type { CliContext } from '../cli.js'
import { parseDuration, parsePositiveInt, collect, addSeconds } from './options.js'
import { readEnvelopeFile, readFileBytes, writeEnvelopeFile, loadSigners, short } from './documents.js'

interface ReleaseOptions {
  name: string, version: string, platform: string, risk: string, scope?: string
  exec?: string, health?: string, rollback?: string, reboot?: boolean, timeout?: number, exitCodes?: string
  files?: string, installSpec?: string
  key: string[], root: string, expires: number, releaseVersion?: number
  out: string, store?: string, partial?: boolean, force?: boolean, json?: boolean
}

/** This machine's platform in release terms, e.g. linux-x64. */
export function hostPlatform (): string {
  return `${process.platform}-${process.arch}`
}

export function registerReleaseCommands (program: Command, ctx: CliContext): void {
  program.command('release')
    .description('chunk a file or directory into a package and sign its release')
    .argument('<path>', 'the file or directory to release')
    .requiredOption('--name <name>', 'package name')
    .requiredOption('--version <version>', 'package version, e.g. 1.2.3')
    .requiredOption('--platform <platform>', "where it installs: 'any', an OS ('linux') or OS-arch ('linux-x64')")
    .requiredOption('--risk <risk>', `risk class: ${RISKS.join(', ')}`)
    .option('--scope <tenant-path>', 'tenant subtree the release is for (default: the whole organisation)')
    .option('--exec <argv>', 'install by running this program from the package (space-separated argv)')
    .option('--health <argv>', 'with --exec: health check to run after installing')
    .option('--rollback <argv>', 'with --exec: program that undoes the install')
    .option('--reboot', 'with --exec: the install needs a reboot')
    .option('--timeout <duration>', 'with --exec: how long the install may take', parseDuration)
    .option('--exit-codes <list>', 'with --exec: exit codes that mean success, e.g. 0,3010')
    .option('--files <target>', 'install by placing the files at this path under the agent\'s install root')
    .option('--install-spec <file>', 'the install spec as a JSON file (for arguments with spaces and env)')
    .requiredOption('--key <keyfile>', 'release (or delegated) secret key to sign with (repeat)', collect)
    .requiredOption('--root <file>', 'the organisation\'s current root, to check the signatures suffice')
    .addOption(new Option('--expires <duration>', 'how long the release is valid').argParser(parseDuration).default(90 * 86400, '90d'))
    .option('--release-version <n>', 'metadata version, raised when re-signing the same package version', parsePositiveInt)
    .option('--out <dir>', 'where to write NAME-VERSION.manifest.json and NAME-VERSION.release.json', '.')
    .option('--store <dir>', 'also put the package into this package store (to seed it)')
    .option('--partial', 'write the release even if the signatures do not reach the threshold yet')
    .option('--force', 'overwrite existing output files')
    .option('--json', 'machine-readable output')
    .action(async (source: string, opts: ReleaseOptions) => {
      const install = await installSpecFrom(ctx, opts)
      if (!(RISKS as readonly string[]).includes(opts.risk)) throw PatchswarmError.BAD_ARGUMENT(`--risk must be one of ${RISKS.join(', ')}`)
      const root = parseRoot((await readEnvelopeFile(ctx.resolve(opts.root))).signed)
      const signers = await loadSigners(opts.key.map((f) => ctx.resolve(f)))
      const sourcePath = ctx.resolve(source)
      await fs.stat(sourcePath).catch((err) => { throw PatchswarmError.NOT_FOUND(`${sourcePath} does not exist`, err) })

      const manifest = await buildManifest(sourcePath)
      const digest = manifestDigest(manifest)
      const release = newRelease({
        name: opts.name, packageVersion: opts.version, platform: opts.platform, risk: opts.risk as typeof RISKS[number],
        ...(opts.scope ? { scope: opts.scope } : {}),
        manifest: { digest, size: manifest.size },
        install,
        expires: addSeconds(ctx.io.now(), opts.expires),
        ...(opts.releaseVersion ? { version: opts.releaseVersion } : {})
      })
      const envelope = await signEnvelope(release, signers)
      let signer = 'incomplete'
      try {
        const s = authoriseRelease(root, envelope, release)
        signer = s.role === 'release' ? 'release role' : `delegation ${s.name} (${s.scope})`
      } catch (err) {
        if (!opts.partial || (err as PatchswarmError).code !== 'THRESHOLD_NOT_MET') throw err
      }

      const outDir = ctx.resolve(opts.out)
      await fs.mkdir(outDir, { recursive: true })
      const base = path.join(outDir, `${opts.name}-${opts.version}`)
      const overwrite = opts.force ?? false
      await writeAtomic(`${base}.manifest.json`, manifestBytes(manifest), 0o644, overwrite)
      await writeEnvelopeFile(`${base}.release.json`, envelope, overwrite)
      if (opts.store) await seedStore(ctx.resolve(opts.store), sourcePath, digest)

      ctx.print(opts, () => [
        `release ${release.name} ${release.packageVersion} (${release.platform}, ${release.risk}) signed by ${signer}`,
        `  manifest ${digest}  ${formatBytes(manifest.size)} in ${manifest.files.length} file(s), ${manifest.chunks.length} chunk(s)`,
        `  wrote    ${base}.manifest.json`,
        `           ${base}.release.json`,
        ...(opts.store ? [`  stored in ${ctx.resolve(opts.store)}`] : [])
      ].join('\n'), {
        name: release.name, packageVersion: release.packageVersion, platform: release.platform, risk: release.risk,
        scope: release.scope, digest, size: manifest.size, files: manifest.files.length, chunks: manifest.chunks.length,
        signer, complete: signer !== 'incomplete', manifestFile: `${base}.manifest.json`, releaseFile: `${base}.release.json`
      })
    })

  program.command('verify')
    .description('verify a release as an endpoint would: root chain, thresholds, delegation, expiry, platform, manifest')
    .argument('<release>', 'the release file')
    .requiredOption('--root <file>', 'the pinned root, then each newer root in order (repeat)', collect)
    .option('--platform <platform>', 'the endpoint platform to check against', hostPlatform())
    .option('--manifest <file>', 'check that this manifest is the one the release signed')
    .option('--source <path>', 'check that these files are exactly the released package')
    .option('--json', 'machine-readable output')
    .action(async (file: string, opts: { root: string[], platform: string, manifest?: string, source?: string, json?: boolean }) => {
      const roots = await Promise.all(opts.root.map((f) => readEnvelopeFile(ctx.resolve(f))))
      const releaseEnvelope = await readEnvelopeFile(ctx.resolve(file))
      // The exact path an agent takes, on a throw-away trusted state.
      const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'patchswarm-verify-'))
      const db = await openDatabase(tmp)
      try {
        const state = new TrustedState({ db, clock: { now: () => ctx.io.now() } })
        await state.ready()
        state.beginCycle()
        await state.pinRoot(roots[0]!)
        const root = await state.updateRoots(roots.slice(1))
        const verified = await state.verifyRelease(releaseEnvelope, { platform: opts.platform })
        const r = verified.release
        const checks = [`root v${root.version} of ${root.org}`, `signed by ${verified.signer.role === 'release' ? 'the release role' : 'delegation ' + verified.signer.name}`, `valid until ${r.expires}`, `installs on ${opts.platform}`]
        if (opts.manifest) {
          const manifest = parseManifest(await readFileBytes(ctx.resolve(opts.manifest), 'manifest'))
          checkDigest(manifest, r.manifest.digest, opts.manifest)
          checks.push('manifest matches')
        }
        if (opts.source) {
          const manifest = await buildManifest(ctx.resolve(opts.source))
          checkDigest(manifest, r.manifest.digest, opts.source)
          checks.push('source matches')
        }
        ctx.print(opts, `OK ${r.name} ${r.packageVersion}: ${checks.join('; ')}`, {
          ok: true, name: r.name, packageVersion: r.packageVersion, platform: r.platform, risk: r.risk, scope: r.scope,
          digest: r.manifest.digest, envelopeHash: verified.envelopeHash, signer: verified.signer, root: { org: root.org, version: root.version }, checks
        })
      } finally {
        await db.close()
        await fs.rm(tmp, { recursive: true, force: true })
      }
    })
}

function checkDigest (manifest: Manifest, expected: string, what: string): void {
  const digest = manifestDigest(manifest)
  if (digest !== expected) throw PatchswarmError.HASH_MISMATCH(`${what} has digest ${short(digest)}…, the release signed ${short(expected)}…`)
}

async function installSpecFrom (ctx: CliContext, opts: ReleaseOptions): Promise<InstallSpec> {
  const kinds = [opts.exec, opts.files, opts.installSpec].filter((x) => x !== undefined)
  if (kinds.length !== 1) throw PatchswarmError.BAD_ARGUMENT('give exactly one of --exec, --files or --install-spec')
  let spec: unknown
  if (opts.installSpec) {
    try {
      spec = JSON.parse((await readFileBytes(ctx.resolve(opts.installSpec), 'install spec')).toString('utf8'))
    } catch (err) {
      if (err instanceof PatchswarmError) throw err
      throw PatchswarmError.BAD_ARGUMENT(`${opts.installSpec} is not JSON`, err)
    }
  } else if (opts.files) {
    spec = { type: 'files', target: opts.files }
  } else {
    const argv = (s: string) => s.trim().split(/\s+/)
    spec = {
      type: 'exec',
      argv: argv(opts.exec!),
      ...(opts.health ? { health: argv(opts.health) } : {}),
      ...(opts.rollback ? { rollback: argv(opts.rollback) } : {}),
      ...(opts.reboot ? { reboot: true } : {}),
      ...(opts.timeout ? { timeoutMs: opts.timeout * 1000 } : {}),
      ...(opts.exitCodes ? { exitCodes: opts.exitCodes.split(',').map(Number) } : {})
    }
  }
  const parsed = installSpecSchema.safeParse(spec)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    const code = (issue as { params?: { patchswarm?: string } }).params?.patchswarm === 'UNSAFE_PATH' ? 'UNSAFE_PATH' : 'BAD_ARGUMENT'
    throw new PatchswarmError(code, `install spec ${issue.path.join('.') || '(root)'}: ${issue.message}`)
  }
  return parsed.data
}

async function seedStore (dir: string, source: string, digest: string): Promise<void> {
  const db = await openDatabase(path.join(dir, 'db'))
  const store = new PackageStore({ dir, db })
  try {
    await store.ready()
    const imported = await store.importSource(source)
    if (imported.digest !== digest) throw PatchswarmError.HASH_MISMATCH(`${source} changed while it was being released`)
  } finally {
    await store.close()
    await db.close()
  }
}

export function formatBytes (n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++ }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`
}
