// Enrollment certificates: the console's signed statement that a swarm key belongs to an enrolled
// endpoint (or an origin) of this organisation, in this tenant and site. It is the first thing a
// peer shows on a connection; peers that cannot show one for our organisation get nothing.
import { z } from 'zod'
import { PatchswarmError } from '../errors.js'
import { keyIdOf } from '../crypto/keys.js'
import { type Envelope, verifyEnvelope } from './envelope.js'
import { SPEC_VERSION, keyid, metadataVersion, timestamp, safeName, tenantPath, parseShape, toTimestamp, checkIssuedBeforeExpires } from './fields.js'
import type { RootDocument } from './root.js'
import { checkNotExpired } from './verify.js'

export const PEER_ROLES = ['endpoint', 'origin', 'console'] as const
export type PeerRole = typeof PEER_ROLES[number]

export const certificateSchema = z.strictObject({
  _type: z.literal('certificate'),
  spec: z.literal(SPEC_VERSION),
  version: metadataVersion,
  org: safeName,
  /** The holder's swarm (Noise) public key: the certificate is worthless on any other connection. */
  holder: keyid,
  role: z.enum(PEER_ROLES),
  tenant: tenantPath,
  /** The site the console placed it in; null lets peers group by public address instead. */
  site: safeName.nullable(),
  issued: timestamp,
  expires: timestamp
})

export type CertificateDocument = z.output<typeof certificateSchema>

/** Who a verified peer is. */
export interface PeerIdentity {
  keyid: string
  org: string
  tenant: string
  site: string | null
  role: PeerRole
}

export function parseCertificate (value: unknown): CertificateDocument {
  const cert = parseShape(certificateSchema, value, 'certificate')
  checkIssuedBeforeExpires(cert, 'certificate')
  return cert
}

export interface NewCertificateOptions {
  org: string
  holder: string | Uint8Array
  role?: PeerRole
  tenant: string
  site?: string | null
  issued: Date | string
  expires: Date | string
  version?: number
}

export function newCertificate (opts: NewCertificateOptions): CertificateDocument {
  return parseCertificate({
    _type: 'certificate',
    spec: SPEC_VERSION,
    version: opts.version ?? 1,
    org: opts.org,
    holder: typeof opts.holder === 'string' ? opts.holder : keyIdOf(opts.holder),
    role: opts.role ?? 'endpoint',
    tenant: opts.tenant,
    site: opts.site ?? null,
    issued: toTimestamp(opts.issued),
    expires: toTimestamp(opts.expires)
  })
}

/**
 * Checks a peer's certificate against our trusted root: signed by a threshold of the console role,
 * for our organisation, unexpired, and issued to the very key at the other end of the connection.
 */
export function verifyCertificate (root: RootDocument, envelope: Envelope, opts: { now: Date, remotePublicKey: Uint8Array }): PeerIdentity {
  const cert = parseCertificate(envelope.signed)
  const label = `certificate of ${cert.holder.slice(0, 12)}…`
  const remote = keyIdOf(opts.remotePublicKey)
  if (!verifyEnvelope(envelope, root.roles.console).ok) throw PatchswarmError.THRESHOLD_NOT_MET(`${label} is not signed by the console role of ${root.org}`)
  if (cert.org !== root.org) throw PatchswarmError.WRONG_ORGANISATION(`certificate is for ${cert.org}, not ${root.org}`)
  if (cert.holder !== remote) throw PatchswarmError.WRONG_HOLDER(`${label} shown by ${remote.slice(0, 12)}…`)
  checkNotExpired(label, cert.expires, opts.now)
  return { keyid: cert.holder, org: cert.org, tenant: cert.tenant, site: cert.site, role: cert.role }
}
