// Enrolling an endpoint: decode the token, use (or create) the endpoint's key, send a signed
// request over the enrollment link to the console key the token names, check that the console's
// root is the one the token pins, and only then write: root pin → enrollment.json → agent.json.
//
// Crash and failure safety. The identity key is written before the request goes out, because the
// console may record the key the moment it reads the request; a key the console knows but the
// agent lost could never pick up its certificate. Everything else waits until the answer has been
// verified in full, and agent.json comes last: a folder without it is not enrolled, so a failure
// or a crash at any point leaves nothing that looks enrolled, and running the command again
// finishes the job (the key is reused, pinning the same root again is a no-op).
import os from 'node:os'
import { z } from 'zod'
import { PatchswarmError, isPatchswarmError } from '../lib/errors.js'
import { generateKeyPair, keyIdOf, keySigner, type KeyPair } from '../lib/crypto/keys.js'
import { readSecretKeyFile, writeAtomic, writeSecretKeyFile } from '../lib/crypto/keyfile.js'
import { openDatabase, sublevel, type Database } from '../lib/store/db.js'
import { decodeToken, newEnrollmentRequest, type TokenPayload } from '../lib/fleet/enrollment.js'
import { checkHostname } from '../lib/fleet/endpoints.js'
import { enrollmentRequest } from '../lib/swarm/enroll-link.js'
import type { Bootstrap } from '../lib/swarm/transport.js'
import { checkEnvelope, envelopeHash, type Envelope } from '../lib/trust/envelope.js'
import { parseCertificate, verifyCertificate, type CertificateDocument } from '../lib/trust/certificate.js'
import { verifySelfSignedRoot } from '../lib/trust/verify.js'
import { TrustedState } from '../lib/trust/trusted-state.js'
import { keyid, safeName, timestamp } from '../lib/trust/fields.js'
import { agentPaths, assertWritableDir, createDataDir, readConfigIfAny, readSmallFile, writeConfig, type AgentConfig, type AgentPaths } from './config.js'

/** The sublevel of the agent's DB where its TrustedState (pinned root, releases, directive) lives. */
export const TRUST_SUBLEVEL = 'agent-trust'
const MAX_ENROLLMENT_BYTES = 256 * 1024

export function agentTrust (db: Database): TrustedState {
  return new TrustedState({ db: sublevel(db, TRUST_SUBLEVEL) })
}

// ---- enrollment.json ---------------------------------------------------------------------------

const enrollmentStateSchema = z.strictObject({
  status: z.enum(['pending', 'approved']),
  org: safeName,
  /** The endpoint's key id (identity.key). */
  holder: keyid,
  hostname: z.string().min(1).max(256),
  platform: safeName,
  /** The id of the token it enrolled with (never its secret). */
  token: z.string().regex(/^[0-9a-f]{16}$/),
  /** The console's enrollment link key. */
  enrollKey: keyid,
  requestedAt: timestamp,
  updatedAt: timestamp,
  /** Verified against the pinned root before it was written. */
  certificate: z.object({ signed: z.record(z.string(), z.unknown()), signatures: z.array(z.unknown()) }).optional()
})

export interface EnrollmentState {
  status: 'pending' | 'approved'
  org: string
  holder: string
  hostname: string
  platform: string
  token: string
  enrollKey: string
  requestedAt: string
  updatedAt: string
  certificate?: Envelope<CertificateDocument>
}

/** The folder's enrollment state, or null if it has none; BAD_STATE when the file is damaged. */
export async function readEnrollment (dir: string): Promise<EnrollmentState | null> {
  const file = agentPaths(dir).enrollment
  const text = await readSmallFile(file, MAX_ENROLLMENT_BYTES)
  if (text === null) return null
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw PatchswarmError.BAD_STATE(`${file} is not valid JSON: ${(err as Error).message}`, err)
  }
  const result = enrollmentStateSchema.safeParse(value)
  if (!result.success) {
    const issue = result.error.issues[0]!
    throw PatchswarmError.BAD_STATE(`${file}: ${issue.path.map(String).join('.')}: ${issue.message}`, result.error)
  }
  const state = result.data as EnrollmentState
  if (state.certificate) {
    try {
      parseCertificate(state.certificate.signed)
    } catch (err) {
      throw PatchswarmError.BAD_STATE(`${file}: certificate: ${(err as Error).message}`, err)
    }
  }
  if (state.status === 'approved' && !state.certificate) throw PatchswarmError.BAD_STATE(`${file}: approved without a certificate`)
  return state
}

export async function writeEnrollment (dir: string, state: EnrollmentState): Promise<void> {
  await writeAtomic(agentPaths(dir).enrollment, JSON.stringify(state, null, 2) + '\n', 0o600)
}

/** What `agent status` and the enroll command show about an enrollment. */
export interface EnrollmentSummary {
  status: 'pending' | 'approved'
  org: string
  holder: string
  hostname: string
  enrollKey: string
  tenant: string | null
  site: string | null
  certificateIssued: string | null
  certificateExpires: string | null
}

export function summarizeEnrollment (state: EnrollmentState): EnrollmentSummary {
  const cert = state.certificate ? parseCertificate(state.certificate.signed) : null
  return {
    status: state.status,
    org: state.org,
    holder: state.holder,
    hostname: state.hostname,
    enrollKey: state.enrollKey,
    tenant: cert?.tenant ?? null,
    site: cert?.site ?? null,
    certificateIssued: cert?.issued ?? null,
    certificateExpires: cert?.expires ?? null
  }
}

// ---- enrolling ---------------------------------------------------------------------------------

export interface EnrollOptions {
  /** The data folder. */
  dir: string
  token: string
  /** Default: the folder's config, else 'public'. */
  bootstrap?: Bootstrap
  host?: string
  firewalled?: boolean
  /** Default: os.hostname(). */
  hostname?: string
  /** Default: `${process.platform}-${process.arch}`, e.g. linux-x64. */
  platform?: string
  /** How long to wait for the console's answer. */
  timeoutMs?: number
  now?: () => Date
}

export interface EnrollOutcome extends EnrollmentSummary {
  dir: string
  /** The folder was enrolled (approved) before; nothing was sent. */
  alreadyEnrolled: boolean
  /**
   * The console refused a second request for this key with ALREADY_EXISTS: it knows the endpoint
   * but does not (yet) answer with its status, so the agent stays pending.
   */
  knownToConsole: boolean
}

const answerSchema = z.object({
  status: z.enum(['quarantine', 'approved']),
  certificate: z.unknown().optional(),
  root: z.unknown(),
  /** The console's key on the organisation swarm: where check-ins and reports go. */
  console: keyid.optional()
})

export async function enrollAgent (opts: EnrollOptions): Promise<EnrollOutcome> {
  const now = opts.now ?? (() => new Date())
  const token = decodeToken(opts.token)
  const hostname = opts.hostname ?? os.hostname()
  const hostProblem = checkHostname(hostname)
  if (hostProblem) throw PatchswarmError.BAD_ARGUMENT(`--hostname: ${hostProblem}`)
  const platform = opts.platform ?? `${process.platform}-${process.arch}`
  const paths = agentPaths(opts.dir)

  // Everything that can be refused without writing is refused before the first write.
  await assertWritableDir(paths.dir)
  const config = await readConfigIfAny(paths.dir)
  const previous = await readEnrollment(paths.dir)
  for (const org of [config?.org, previous?.org]) {
    if (org !== undefined && org !== token.org) {
      throw PatchswarmError.BAD_STATE(`${paths.dir} holds an agent of ${org}; this token is for ${token.org}: use another --data folder`)
    }
  }

  await createDataDir(paths.dir)
  const db = await openDatabase(paths.db)
  try {
    const trust = agentTrust(db)
    await trust.ready()
    if (config && previous?.status === 'approved') return outcome(paths, previous, { alreadyEnrolled: true })

    const keyPair = await identity(paths, previous)
    const request = await newEnrollmentRequest({ token, signer: keySigner(keyPair), hostname, platform, at: now() })
    const link = {
      bootstrap: opts.bootstrap ?? config?.bootstrap ?? 'public',
      ...pick('host', opts.host ?? config?.host),
      ...pick('firewalled', opts.firewalled ?? config?.firewalled),
      ...pick('timeoutMs', opts.timeoutMs)
    }
    let answer: unknown
    try {
      answer = await enrollmentRequest({ ...link, consoleKey: token.console, keyPair, request })
    } catch (err) {
      // The console enrolled this key on an earlier run, whose answer gave the root pinned here:
      // still pending (or approved, if a certificate was stored since).
      if (isPatchswarmError(err, 'ALREADY_EXISTS') && trust.root?.org === token.org) {
        const state = previous ?? newState(token, keyPair, hostname, platform, now())
        await writeEnrollment(paths.dir, state)
        await writeConfig(paths.dir, configFor(paths, token, link, config))
        return outcome(paths, state, { knownToConsole: true })
      }
      throw err
    }

    const at = now()
    const { rootEnvelope, certificate, consoleKey } = verifyAnswer(answer, token, keyPair, at)
    await pin(trust, rootEnvelope)
    const state: EnrollmentState = {
      ...newState(token, keyPair, hostname, platform, at),
      ...(previous ? { requestedAt: previous.requestedAt } : {}),
      status: certificate ? 'approved' : 'pending',
      ...(certificate ? { certificate } : {})
    }
    await writeEnrollment(paths.dir, state)
    await writeConfig(paths.dir, configFor(paths, token, link, config, consoleKey))
    return outcome(paths, state, {})
  } finally {
    await db.close()
  }
}

/** The folder's key, or a new one written (0600) before anyone learns of it. */
async function identity (paths: AgentPaths, previous: EnrollmentState | null): Promise<KeyPair> {
  let keyPair: KeyPair
  try {
    keyPair = await readSecretKeyFile(paths.identity)
  } catch (err) {
    if (!isPatchswarmError(err, 'NOT_FOUND')) throw err
    if (previous) throw PatchswarmError.BAD_STATE(`${paths.identity} is gone, but ${paths.enrollment} says this folder enrolled key ${previous.holder.slice(0, 12)}…`)
    keyPair = generateKeyPair()
    await writeSecretKeyFile(paths.identity, keyPair, { name: 'patchswarm endpoint identity' })
  }
  if (previous && previous.holder !== keyIdOf(keyPair.publicKey)) {
    throw PatchswarmError.BAD_STATE(`${paths.identity} holds another key than the one ${paths.enrollment} enrolled (${previous.holder.slice(0, 12)}…)`)
  }
  return keyPair
}

/** The answer, checked in full before anything of it is written. */
function verifyAnswer (answer: unknown, token: TokenPayload, keyPair: KeyPair, now: Date): { rootEnvelope: Envelope, certificate: Envelope<CertificateDocument> | undefined, consoleKey?: string } {
  const shape = answerSchema.safeParse(answer)
  if (!shape.success) {
    const issue = shape.error.issues[0]!
    throw PatchswarmError.PROTOCOL_ERROR(`the console's enrollment answer: ${issue.path.map(String).join('.') || 'answer'}: ${issue.message}`)
  }
  const rootEnvelope = checkEnvelope(shape.data.root)
  if (envelopeHash(rootEnvelope) !== token.root) {
    throw PatchswarmError.BAD_TOKEN(`the console answered with another root (${envelopeHash(rootEnvelope).slice(0, 16)}…) than the token pins (${token.root.slice(0, 16)}…)`)
  }
  const root = verifySelfSignedRoot(rootEnvelope)
  if (root.org !== token.org) throw PatchswarmError.WRONG_ORGANISATION(`the console's root is for ${root.org}, the token for ${token.org}`)
  const consoleKey = shape.data.console !== undefined ? { consoleKey: shape.data.console } : {}
  if (shape.data.status === 'quarantine') return { rootEnvelope, certificate: undefined, ...consoleKey }
  if (shape.data.certificate === undefined) throw PatchswarmError.PROTOCOL_ERROR('the console approved the endpoint but sent no certificate')
  const certificate = checkEnvelope(shape.data.certificate) as Envelope<CertificateDocument>
  verifyCertificate(root, certificate, { now, remotePublicKey: keyPair.publicKey })
  return { rootEnvelope, certificate, ...consoleKey }
}

/** Pins the root; a folder that pinned an older root of the organisation walks it forward. */
async function pin (trust: TrustedState, rootEnvelope: Envelope): Promise<void> {
  const pinned = trust.rootEnvelope
  if (pinned === null || envelopeHash(pinned) === envelopeHash(rootEnvelope)) {
    await trust.pinRoot(rootEnvelope)
    return
  }
  trust.beginCycle()
  await trust.updateRoot(rootEnvelope)
}

function newState (token: TokenPayload, keyPair: KeyPair, hostname: string, platform: string, at: Date): EnrollmentState {
  return {
    status: 'pending',
    org: token.org,
    holder: keyIdOf(keyPair.publicKey),
    hostname,
    platform,
    token: token.id,
    enrollKey: token.console,
    requestedAt: at.toISOString(),
    updatedAt: at.toISOString()
  }
}

/** A new folder's config, or the existing one with what this run was told. */
function configFor (paths: AgentPaths, token: TokenPayload, link: { bootstrap: Bootstrap, host?: string, firewalled?: boolean }, config: AgentConfig | null, consoleKey?: string) {
  return {
    ...(config ?? { installRoot: paths.install }),
    org: token.org,
    console: { ...config?.console, enrollKey: token.console, ...pick('consoleKey', consoleKey) },
    bootstrap: link.bootstrap,
    ...pick('host', link.host),
    ...pick('firewalled', link.firewalled)
  }
}

function outcome (paths: AgentPaths, state: EnrollmentState, flags: { alreadyEnrolled?: boolean, knownToConsole?: boolean }): EnrollOutcome {
  return { dir: paths.dir, ...summarizeEnrollment(state), alreadyEnrolled: flags.alreadyEnrolled ?? false, knownToConsole: flags.knownToConsole ?? false }
}

function pick<K extends string, V> (key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V }
}
