// Pure verification steps, one rule each, shared by the trusted state and by anyone who wants to
// check a document without keeping state (a console checking what it is about to publish).
import { PatchswarmError } from '../errors.js'
import { type Envelope, verifyEnvelope, envelopeHash } from './envelope.js'
import { isExpired, isWithinTenant } from './fields.js'
import { type RootDocument, type Delegation, parseRoot } from './root.js'
import { type ReleaseDocument } from './release.js'

/** Which role signed a release: the root's release role, or a named delegation. */
export type ReleaseSigner = { role: 'release' } | { role: 'delegation', name: string, scope: string }

function describe (what: string, r: { valid: string[], threshold: number }): string {
  return `${what}: ${r.valid.length} valid signature(s) of ${r.threshold} needed`
}

/** A root offered at enrollment (trust on first use) must at least be signed by its own root role. */
export function verifySelfSignedRoot (envelope: Envelope): RootDocument {
  const root = parseRoot(envelope.signed)
  const self = verifyEnvelope(envelope, root.roles.root)
  if (!self.ok) throw PatchswarmError.THRESHOLD_NOT_MET(describe(`root v${root.version} is not signed by its own root role`, self))
  return root
}

/**
 * One step of the root chain, N → N+1 only. The new root must be signed by a threshold of the
 * trusted root's root role (the old keys vouch for the change) AND of its own (the new keys accept it).
 * Expiry is not judged here: intermediate roots may have expired, only the last one must not.
 */
export function verifyRootStep (trusted: RootDocument, envelope: Envelope): RootDocument {
  const next = parseRoot(envelope.signed)
  if (next.version < trusted.version) throw PatchswarmError.VERSION_ROLLBACK(`root v${next.version} is older than the trusted root v${trusted.version}`)
  if (next.version !== trusted.version + 1) {
    throw PatchswarmError.BAD_ROOT_VERSION(`root v${next.version} offered, but the next root after v${trusted.version} must be v${trusted.version + 1}`)
  }
  const byOld = verifyEnvelope(envelope, trusted.roles.root)
  if (!byOld.ok) throw PatchswarmError.THRESHOLD_NOT_MET(describe(`root v${next.version} is not signed by the root role of the trusted root v${trusted.version}`, byOld))
  const byNew = verifyEnvelope(envelope, next.roles.root)
  if (!byNew.ok) throw PatchswarmError.THRESHOLD_NOT_MET(describe(`root v${next.version} is not signed by its own root role`, byNew))
  if (next.org !== trusted.org) throw PatchswarmError.BAD_DOCUMENT(`root.org: a root of ${trusted.org} cannot become one of ${next.org}`)
  return next
}

/**
 * The root's release role may release for the whole organisation; a delegation only inside its
 * tenant subtree. A threshold of a delegation that does not cover the release's scope is
 * OUTSIDE_DELEGATION, so a key holder learns why rather than just "not enough signatures".
 */
export function authoriseRelease (root: RootDocument, envelope: Envelope, release: ReleaseDocument): ReleaseSigner {
  const byRelease = verifyEnvelope(envelope, root.roles.release)
  if (byRelease.ok) return { role: 'release' }
  let outside: Delegation | null = null
  for (const d of root.delegations) {
    if (!verifyEnvelope(envelope, d).ok) continue
    if (isWithinTenant(release.scope, d.scope)) return { role: 'delegation', name: d.name, scope: d.scope }
    outside ??= d
  }
  const label = `release ${release.name} ${release.packageVersion}`
  if (outside !== null) {
    throw PatchswarmError.OUTSIDE_DELEGATION(`${label} has scope '${release.scope}', outside delegation ${outside.name} for '${outside.scope}'`)
  }
  throw PatchswarmError.THRESHOLD_NOT_MET(describe(`${label} is not signed by the release role or a delegation`, byRelease))
}

export function authoriseDirective (root: RootDocument, envelope: Envelope, version: number): void {
  const r = verifyEnvelope(envelope, root.roles.console)
  if (!r.ok) throw PatchswarmError.THRESHOLD_NOT_MET(describe(`directive v${version} is not signed by the console role`, r))
}

/**
 * Versions never go down, judged against the trusted copy whatever its expiry (an expired trusted
 * v5 still refuses a fresh-looking v3). The same version is accepted only for the same document.
 */
export function checkNotRolledBack (what: string, trusted: { version: number, envelope: Envelope } | null, offered: { version: number, envelope: Envelope }): void {
  if (trusted === null) return
  if (offered.version < trusted.version) throw PatchswarmError.VERSION_ROLLBACK(`${what} v${offered.version} is older than the trusted v${trusted.version}`)
  if (offered.version === trusted.version && envelopeHash(offered.envelope) !== envelopeHash(trusted.envelope)) {
    throw PatchswarmError.VERSION_ROLLBACK(`${what} v${offered.version} differs from the trusted document of the same version`)
  }
}

export function checkNotExpired (what: string, expires: string, now: Date): void {
  if (isExpired(expires, now)) throw PatchswarmError.EXPIRED(`${what} expired at ${expires} (now ${now.toISOString()})`)
}
