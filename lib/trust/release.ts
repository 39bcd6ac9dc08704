// A release binds one manifest digest to a package name, version, platform, risk, tenant scope and
// install spec. Release keys (or a delegation for a tenant subtree) sign it; what they never signed
// no agent will install.
import { z } from 'zod'
import { PatchswarmError } from '../errors.js'
import { SPEC_VERSION, metadataVersion, timestamp, safeName, sha256Hex, tenantPath, parseShape, toTimestamp } from './fields.js'
import { installSpecSchema, type InstallSpec } from './install-spec.js'

export const RISKS = ['critical', 'high', 'medium', 'low'] as const
export type Risk = typeof RISKS[number]

// Semver-ish: starts with a digit, then what package versions use (1.2.3, 10.0.19041.1, 2.4-1+b1, 1.0~rc1).
// It is also a safe name, so it may appear in file names.
const PACKAGE_VERSION = /^[0-9][0-9A-Za-z.+~_-]{0,63}$/
export const packageVersionSchema = z.string().check((ctx) => {
  if (!PACKAGE_VERSION.test(ctx.value) || ctx.value.includes('..')) {
    ctx.issues.push({ code: 'custom', message: 'must look like a package version (a digit first, then letters, digits . + ~ _ -; at most 64)', input: ctx.value })
  }
})

// 'any', an OS ('linux': any architecture of it), or OS-architecture ('linux-x64').
const PLATFORM = /^[a-z0-9]+(-[a-z0-9_]+)?$/
export const platformSchema = z.string().max(64).regex(PLATFORM, "must be 'any', an OS like 'linux', or OS-arch like 'linux-x64'")

export const releaseSchema = z.strictObject({
  _type: z.literal('release'),
  spec: z.literal(SPEC_VERSION),
  version: metadataVersion,
  expires: timestamp,
  name: safeName,
  packageVersion: packageVersionSchema,
  platform: platformSchema,
  risk: z.enum(RISKS),
  /** Tenant subtree the release is for; '' is the whole organisation. */
  scope: tenantPath,
  manifest: z.strictObject({ digest: sha256Hex, size: z.int().min(0).max(Number.MAX_SAFE_INTEGER) }),
  install: installSpecSchema
})

export type ReleaseDocument = z.output<typeof releaseSchema>

export function parseRelease (value: unknown): ReleaseDocument {
  return parseShape(releaseSchema, value, 'release')
}

/** Does a release built for `releasePlatform` run on an endpoint of `endpointPlatform`? */
export function platformMatches (releasePlatform: string, endpointPlatform: string): boolean {
  return releasePlatform === 'any' || releasePlatform === endpointPlatform || endpointPlatform.startsWith(releasePlatform + '-')
}

/**
 * One release identity for rollback protection: a newer metadata version replaces an older one
 * under the same key. The scope is part of it: otherwise a key delegated for one customer could
 * sign a high version of an organisation-wide release's name and so make every agent refuse the
 * real one as a rollback.
 */
export function releaseKey (r: Pick<ReleaseDocument, 'scope' | 'name' | 'packageVersion' | 'platform'>): string {
  return `${r.scope}|${r.name}/${r.packageVersion}/${r.platform}`
}

export interface NewReleaseOptions {
  name: string
  packageVersion: string
  platform: string
  risk: Risk
  scope?: string
  manifest: { digest: string, size: number }
  install: InstallSpec
  expires: Date | string
  version?: number
}

export function newRelease (opts: NewReleaseOptions): ReleaseDocument {
  if (typeof opts !== 'object' || opts === null) throw PatchswarmError.BAD_ARGUMENT('newRelease needs options')
  return parseRelease({
    _type: 'release',
    spec: SPEC_VERSION,
    version: opts.version ?? 1,
    expires: toTimestamp(opts.expires),
    name: opts.name,
    packageVersion: opts.packageVersion,
    platform: opts.platform,
    risk: opts.risk,
    scope: opts.scope ?? '',
    manifest: { digest: opts.manifest.digest, size: opts.manifest.size },
    install: opts.install
  })
}
