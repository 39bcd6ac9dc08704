// A directive is what the online console signs: which released package goes to which tenant, group
// or endpoints, and what to do with it. It refers to releases by manifest digest AND by the hash
// of the release's signed bytes, so a console can only schedule what the release keys signed.
import { z } from 'zod'
import { SPEC_VERSION, keyid, metadataVersion, timestamp, safeName, sha256Hex, tenantPath, parseShape, toTimestamp, isWithinTenant, checkIssuedBeforeExpires } from './fields.js'
import { packageVersionSchema, platformSchema, parseRelease } from './release.js'
import { type Envelope, envelopeHash } from './envelope.js'

export const ACTIONS = ['install', 'rollback', 'reset-breaker'] as const
export type DirectiveAction = typeof ACTIONS[number]
export const MAX_ASSIGNMENTS = 4096
export const MAX_TARGET_ENDPOINTS = 4096

export const releaseRefSchema = z.strictObject({
  name: safeName,
  packageVersion: packageVersionSchema,
  platform: platformSchema,
  manifest: sha256Hex,
  envelopeHash: sha256Hex
})

const assignment = z.strictObject({
  target: z.strictObject({
    tenant: tenantPath,
    group: safeName.optional(),
    endpoints: z.array(keyid).min(1).max(MAX_TARGET_ENDPOINTS).optional()
  }),
  release: releaseRefSchema,
  action: z.enum(ACTIONS),
  deadline: timestamp.optional(),
  /** The rollout this assignment belongs to; agents echo it in their job events. */
  rollout: safeName.optional()
})

export const directiveSchema = z.strictObject({
  _type: z.literal('directive'),
  spec: z.literal(SPEC_VERSION),
  version: metadataVersion,
  org: safeName,
  issued: timestamp,
  expires: timestamp,
  assignments: z.array(assignment).max(MAX_ASSIGNMENTS)
})

export type DirectiveDocument = z.output<typeof directiveSchema>
export type Assignment = z.output<typeof assignment>
export type ReleaseRef = z.output<typeof releaseRefSchema>

export function parseDirective (value: unknown): DirectiveDocument {
  const d = parseShape(directiveSchema, value, 'directive')
  checkIssuedBeforeExpires(d, 'directive')
  return d
}

/** The endpoint a directive is being read for. */
export interface EndpointIdentity {
  keyid: string
  tenant: string
  groups?: readonly string[]
  /** When given, assignments of releases for other platforms do not apply. */
  platform?: string
}

/** Does `a` apply to `endpoint`? Tenant subtree, then group and endpoint list when they are set. */
export function assignmentApplies (a: Assignment, endpoint: EndpointIdentity, platformMatches: (r: string, e: string) => boolean): boolean {
  if (!isWithinTenant(endpoint.tenant, a.target.tenant)) return false
  if (a.target.group !== undefined && !(endpoint.groups ?? []).includes(a.target.group)) return false
  if (a.target.endpoints !== undefined && !a.target.endpoints.includes(endpoint.keyid)) return false
  if (endpoint.platform !== undefined && !platformMatches(a.release.platform, endpoint.platform)) return false
  return true
}

export interface NewDirectiveOptions {
  org: string
  version: number
  issued?: Date | string
  expires: Date | string
  assignments: Assignment[]
}

export function newDirective (opts: NewDirectiveOptions): DirectiveDocument {
  return parseDirective({
    _type: 'directive',
    spec: SPEC_VERSION,
    version: opts.version,
    org: opts.org,
    issued: toTimestamp(opts.issued ?? new Date()),
    expires: toTimestamp(opts.expires),
    assignments: opts.assignments
  })
}

/** How a directive names a signed release: what the console copies from the release envelope. */
export function releaseRef (envelope: Envelope): ReleaseRef {
  const r = parseRelease(envelope.signed)
  return { name: r.name, packageVersion: r.packageVersion, platform: r.platform, manifest: r.manifest.digest, envelopeHash: envelopeHash(envelope) }
}
