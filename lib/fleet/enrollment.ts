// Enrollment: tokens scoped to a customer or group (and optionally a site), expiring, limited in
// uses and revocable; signed enrollment requests; quarantine, approval and certificates.
//
// A token string is `pst1.` + base64url(canonical JSON { org, id, secret, root, console }): all an
// agent needs to pin its organisation's root (the hash of the current root envelope) and to find
// the console (its swarm key). The console keeps only a hash of the secret, so a copy of its
// database cannot enroll anything. An endpoint proves that it holds its key by signing its request.
// A token's use count and the new endpoint are written in one batch under one lock, so a token
// never admits more endpoints than it has uses, however requests race.
//
// Keys in the sublevel:  t!<id> → stored token
import { randomBytes, timingSafeEqual } from 'node:crypto'
import { z } from 'zod'
import { PatchswarmError, isPatchswarmError } from '../errors.js'
import { assertSafeName } from '../content/paths.js'
import { parseCanonical, canonicalBytes } from '../crypto/canonical.js'
import { contentHash, contentHashHex } from '../crypto/hash.js'
import { isKeyId, type Signer } from '../crypto/keys.js'
import { sublevel, type Database, type Sublevel } from '../store/db.js'
import { checkEnvelope, envelopeHash, parseEnvelope, signEnvelope, verifyEnvelope, type Envelope } from '../trust/envelope.js'
import { newCertificate, type CertificateDocument } from '../trust/certificate.js'
import { parseRoot } from '../trust/root.js'
import { isExpired, isWithinTenant, keyid, parseShape, safeName, sha256Hex, timestamp, toTimestamp } from '../trust/fields.js'
import { commit, Mutex, systemClock, type FleetClock, type FleetOp, type WriteOptions } from './common.js'
import { assertTenantPath, type TenantNode, type TenantTree } from './tenants.js'
import { checkHostname, type EndpointRecord, type EndpointStore } from './endpoints.js'

export const TOKEN_PREFIX = 'pst1.'
export const MAX_TOKEN_LENGTH = 1024
export const MAX_NOTE = 200
const DAY = 24 * 60 * 60 * 1000

const tokenId = z.string().regex(/^[0-9a-f]{16}$/, 'must be a token id (16 lowercase hex characters)')
const tokenSecret = z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'must be a token secret (32 bytes, base64url)')

/** What a token string carries. */
export const tokenPayloadSchema = z.strictObject({
  org: safeName,
  id: tokenId,
  secret: tokenSecret,
  /** envelopeHash of the organisation's root envelope when the token was made: the one to pin. */
  root: sha256Hex,
  /** The console's swarm public key (key id hex): where to send the request. */
  console: keyid
})

export type TokenPayload = z.output<typeof tokenPayloadSchema>

export const enrollmentRequestSchema = z.strictObject({
  _type: z.literal('enrollment-request'),
  org: safeName,
  token: tokenId,
  secret: tokenSecret,
  /** The endpoint's public key; the request must be signed by it. */
  holder: keyid,
  hostname: z.string().check((ctx) => {
    const problem = checkHostname(ctx.value)
    if (problem) ctx.issues.push({ code: 'custom', message: problem, input: ctx.value })
  }),
  platform: safeName,
  at: timestamp
})

export type EnrollmentRequest = z.output<typeof enrollmentRequestSchema>

export type TokenState = 'active' | 'expired' | 'used-up' | 'revoked'

export interface TokenRecord {
  id: string
  /** The current path of the scope node (it follows moves). */
  scope: string
  scopeUid: string
  site: string | null
  expiresAt: string
  maxUses: number
  uses: number
  autoApprove: boolean
  note?: string
  createdAt: string
  updatedAt: string
  revokedAt?: string
  /** As of the clock when read. */
  state: TokenState
}

type StoredToken = Omit<TokenRecord, 'scope' | 'state'> & { secretHash: string }

export interface CreateTokenInput {
  /** A customer or group that exists and is not removed. */
  scope: string
  site?: string | null
  expiresAt: Date | string
  maxUses: number
  autoApprove: boolean
  note?: string
}

export interface EnrollResult {
  status: 'quarantine' | 'approved'
  certificate?: Envelope<CertificateDocument>
}

export interface EnrollmentOptions {
  org: string
  tree: TenantTree
  endpoints: EndpointStore
  /** Signs enrollment certificates: a key of the root's console role. */
  consoleSigner: Signer
  /** The organisation's current root envelope. */
  root: () => Envelope
  /** The console's swarm public key (key id hex), put into tokens. */
  consoleKey: string
  clock?: FleetClock
  certificateDays?: number
  sublevelName?: string
}

// ---- token strings -----------------------------------------------------------------------------

export function encodeToken (payload: TokenPayload): string {
  const checked = tokenPayloadSchema.safeParse(payload)
  if (!checked.success) throw PatchswarmError.BAD_ARGUMENT(`token payload: ${checked.error.issues[0]!.message}`)
  return TOKEN_PREFIX + canonicalBytes(checked.data).toString('base64url')
}

/** BAD_TOKEN for anything that encodeToken could not have written. */
export function decodeToken (token: unknown): TokenPayload {
  // White space around it is what copying and pasting adds.
  const text = typeof token === 'string' ? token.trim() : ''
  if (text.length > MAX_TOKEN_LENGTH || !text.startsWith(TOKEN_PREFIX)) {
    throw PatchswarmError.BAD_TOKEN(`an enrollment token is a string starting with ${TOKEN_PREFIX}`)
  }
  const body = text.slice(TOKEN_PREFIX.length)
  const bytes = Buffer.from(body, 'base64url')
  // Node's decoder skips stray characters; only the exact encoding of the bytes is accepted.
  if (body === '' || bytes.toString('base64url') !== body) throw PatchswarmError.BAD_TOKEN('the token is not base64url')
  let value: unknown
  try {
    value = parseCanonical(bytes)
  } catch (err) {
    throw PatchswarmError.BAD_TOKEN('the token does not hold canonical JSON', err)
  }
  const result = tokenPayloadSchema.safeParse(value)
  if (!result.success) {
    const issue = result.error.issues[0]!
    throw PatchswarmError.BAD_TOKEN(`token.${issue.path.map(String).join('.')}: ${issue.message}`, result.error)
  }
  return result.data
}

// ---- requests ----------------------------------------------------------------------------------

export function parseEnrollmentRequest (value: unknown): EnrollmentRequest {
  return parseShape(enrollmentRequestSchema, value, 'enrollment-request')
}

export interface NewEnrollmentRequestOptions {
  /** The token string, or its decoded payload. */
  token: string | TokenPayload
  /** The endpoint's own key. */
  signer: Signer
  hostname: string
  platform: string
  at: Date | string
}

/** The agent's side: a request signed by the key it enrolls. */
export async function newEnrollmentRequest (opts: NewEnrollmentRequestOptions): Promise<Envelope<EnrollmentRequest>> {
  const token = typeof opts.token === 'string' ? decodeToken(opts.token) : opts.token
  const request = parseEnrollmentRequest({
    _type: 'enrollment-request',
    org: token.org,
    token: token.id,
    secret: token.secret,
    holder: opts.signer.keyid,
    hostname: opts.hostname,
    platform: opts.platform,
    at: toTimestamp(opts.at)
  })
  return signEnvelope(request, [opts.signer])
}

// ---- the console side --------------------------------------------------------------------------

const tokenKey = (id: string) => `t!${id}`

function hashSecret (secret: string): string {
  return contentHashHex(Buffer.from(secret, 'utf8'))
}

function secretMatches (secret: string, storedHash: string): boolean {
  return timingSafeEqual(contentHash(Buffer.from(secret, 'utf8')), Buffer.from(storedHash, 'hex'))
}

function stateOf (t: StoredToken, now: Date): TokenState {
  if (t.revokedAt !== undefined) return 'revoked'
  if (isExpired(t.expiresAt, now)) return 'expired'
  if (t.uses >= t.maxUses) return 'used-up'
  return 'active'
}

function instant (value: unknown, what: string): string {
  const ms = value instanceof Date ? value.getTime() : typeof value === 'string' && timestamp.safeParse(value).success ? Date.parse(value) : NaN
  if (Number.isNaN(ms)) throw PatchswarmError.BAD_ARGUMENT(`${what} must be a Date or an ISO 8601 UTC time`)
  return new Date(ms).toISOString()
}

export class Enrollment {
  readonly db: Database
  readonly org: string
  readonly tree: TenantTree
  readonly endpoints: EndpointStore
  readonly consoleKey: string
  readonly certificateDays: number
  private readonly store: Sublevel
  private readonly signer: Signer
  private readonly root: () => Envelope
  private readonly clock: FleetClock
  private readonly lock = new Mutex()

  constructor (db: Database, opts: EnrollmentOptions) {
    this.org = assertSafeName(opts.org, 'organisation')
    if (!isKeyId(opts.consoleKey)) throw PatchswarmError.BAD_ARGUMENT('consoleKey must be a key id (32-byte public key, lowercase hex)')
    const days = opts.certificateDays ?? 365
    if (typeof days !== 'number' || !(days > 0) || days > 100 * 365) throw PatchswarmError.BAD_ARGUMENT('certificateDays must be a positive number of days')
    this.db = db
    this.tree = opts.tree
    this.endpoints = opts.endpoints
    this.consoleKey = opts.consoleKey
    this.certificateDays = days
    this.signer = opts.consoleSigner
    this.root = opts.root
    this.clock = opts.clock ?? systemClock
    this.store = sublevel(db, opts.sublevelName ?? 'fleet-enrollment')
  }

  // ---- tokens ------------------------------------------------------------------------------

  /** Makes a token; the returned string is the only copy of its secret. */
  async createToken (input: CreateTokenInput, wopts: WriteOptions = {}): Promise<{ token: string, record: TokenRecord }> {
    if (input === null || typeof input !== 'object') throw PatchswarmError.BAD_ARGUMENT('createToken needs { scope, expiresAt, maxUses, autoApprove }')
    const scopePath = assertTenantPath(input.scope, 'scope')
    const site = input.site == null ? null : assertSafeName(input.site, 'site')
    const expiresAt = instant(input.expiresAt, 'expiresAt')
    if (!Number.isSafeInteger(input.maxUses) || input.maxUses < 1) throw PatchswarmError.BAD_ARGUMENT('maxUses must be a whole number ≥ 1')
    if (typeof input.autoApprove !== 'boolean') throw PatchswarmError.BAD_ARGUMENT('autoApprove must be true or false')
    const note = input.note
    // eslint-disable-next-line no-control-regex
    if (note !== undefined && (typeof note !== 'string' || note.length > MAX_NOTE || /[\u0000-\u001f\u007f-\u009f]/.test(note))) {
      throw PatchswarmError.BAD_ARGUMENT(`note must be at most ${MAX_NOTE} printable characters`)
    }
    const rootHash = this.checkedRootHash()
    return this.lock.run(async () => {
      const now = this.clock()
      if (isExpired(expiresAt, now)) throw PatchswarmError.BAD_ARGUMENT(`expiresAt ${expiresAt} is not in the future`)
      const scope = await this.scopeAt(scopePath)
      let id: string
      do id = randomBytes(8).toString('hex'); while (await this.store.get(tokenKey(id)) !== undefined)
      const secret = randomBytes(32).toString('base64url')
      const at = now.toISOString()
      const stored: StoredToken = {
        id,
        scopeUid: scope.uid,
        site,
        expiresAt,
        maxUses: input.maxUses,
        uses: 0,
        autoApprove: input.autoApprove,
        ...(note !== undefined ? { note } : {}),
        createdAt: at,
        updatedAt: at,
        secretHash: hashSecret(secret)
      }
      await commit(this.db, [this.put(stored)], wopts.extra)
      const token = encodeToken({ org: this.org, id, secret, root: rootHash, console: this.consoleKey })
      return { token, record: this.view(stored, scope.path, now) }
    })
  }

  async getToken (id: string): Promise<TokenRecord> {
    const stored = await this.find(id)
    if (!stored) throw PatchswarmError.NOT_FOUND(`no enrollment token ${JSON.stringify(id)?.slice(0, 40)}`)
    return this.view(stored, await this.scopePathOf(stored), this.clock())
  }

  /** Tokens whose scope lies within `under` (default: all), oldest first. Tokens are few: a scan. */
  async listTokens (query: { under?: string } = {}): Promise<TokenRecord[]> {
    const under = assertTenantPath(query.under ?? '', 'under')
    const now = this.clock()
    const out: TokenRecord[] = []
    for (const stored of await this.store.values({ gt: 't!', lt: 't!\xff' }).all() as StoredToken[]) {
      const scope = await this.scopePathOf(stored)
      if (isWithinTenant(scope, under)) out.push(this.view(stored, scope, now))
    }
    return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id))
  }

  /** Revokes a token; revoking a revoked token changes (and writes) nothing. */
  async revokeToken (id: string, wopts: WriteOptions = {}): Promise<TokenRecord> {
    return this.lock.run(async () => {
      const stored = await this.find(id)
      if (!stored) throw PatchswarmError.NOT_FOUND(`no enrollment token ${JSON.stringify(id)?.slice(0, 40)}`)
      const now = this.clock()
      if (stored.revokedAt !== undefined) return this.view(stored, await this.scopePathOf(stored), now)
      const at = now.toISOString()
      const next: StoredToken = { ...stored, revokedAt: at, updatedAt: at }
      await commit(this.db, [this.put(next)], wopts.extra)
      return this.view(next, await this.scopePathOf(next), now)
    })
  }

  // ---- enrollment --------------------------------------------------------------------------

  /**
   * Enrolls the key that signed `request` (an envelope, or its bytes) with the token it names.
   * Nothing is written unless the endpoint is created, together with the token's use.
   */
  async enroll (request: Envelope | Uint8Array | string, wopts: WriteOptions = {}): Promise<EnrollResult> {
    const req = this.#checkRequest(request)
    return this.lock.run(async () => {
      const now = this.clock()
      const token = await this.usableToken(req.token, req.secret, now)
      const scope = await this.tree.getByUid(token.scopeUid)
      if (!scope) throw PatchswarmError.TOKEN_REVOKED(`token ${token.id}: its tenant was removed`)
      const previous = await this.endpoints.byKeyid(req.holder)
      // A rejected or removed key may enroll again, but not with a request made before that.
      if (previous && (previous.status === 'rejected' || previous.status === 'removed') && Date.parse(req.at) <= Date.parse(previous.updatedAt)) {
        throw PatchswarmError.REPLAY(`the request was made at ${req.at}, before ${req.holder.slice(0, 12)}… was ${previous.status} at ${previous.updatedAt}`)
      }
      const certificate = token.autoApprove ? await this.certify(req.holder, scope.path, token.site, now) : undefined
      const used: StoredToken = { ...token, uses: token.uses + 1, updatedAt: now.toISOString() }
      await this.endpoints.create({
        keyid: req.holder,
        parent: scope.path,
        hostname: req.hostname,
        platform: req.platform,
        site: token.site,
        token: token.id,
        status: certificate ? 'approved' : 'quarantine',
        certificate
      }, { extra: () => [this.put(used), ...(wopts.extra?.() ?? [])] })
      return certificate ? { status: 'approved', certificate } : { status: 'quarantine' }
    })
  }

  /**
   * What an endpoint that enrolled already asks again: its status, and its certificate once
   * approved. The request must be signed by the key the link's handshake proved (`remoteKeyid`),
   * so only the endpoint itself learns it; no token use is taken. Null for a key that is not in
   * quarantine or approved (it enrolls anew with enroll()).
   */
  async status (request: Envelope | Uint8Array | string, remoteKeyid: string): Promise<EnrollResult | null> {
    const req = this.#checkRequest(request)
    if (req.holder !== remoteKeyid) throw PatchswarmError.WRONG_HOLDER(`the request is for ${req.holder.slice(0, 12)}…, but came from ${String(remoteKeyid).slice(0, 12)}…`)
    const record = await this.endpoints.byKeyid(req.holder)
    if (record?.status === 'quarantine') return { status: 'quarantine' }
    if (record?.status === 'approved' && record.certificate) return { status: 'approved', certificate: record.certificate }
    return null
  }

  #checkRequest (request: Envelope | Uint8Array | string): EnrollmentRequest {
    const envelope = typeof request === 'string' || request instanceof Uint8Array ? parseEnvelope(request) : checkEnvelope(request)
    const req = parseEnrollmentRequest(envelope.signed)
    if (!verifyEnvelope(envelope, { keyids: [req.holder], threshold: 1 }).ok) {
      throw PatchswarmError.BAD_SIGNATURE(`the enrollment request is not signed by its holder ${req.holder.slice(0, 12)}…`)
    }
    if (req.org !== this.org) throw PatchswarmError.WRONG_ORGANISATION(`the request is for ${req.org}, not ${this.org}`)
    return req
  }

  /** Quarantine → approved, with a fresh certificate for its current tenant and site. */
  async approve (keyid: string, wopts: WriteOptions = {}): Promise<EndpointRecord> {
    return this.lock.run(async () => {
      const record = await this.endpoints.get(keyid)
      if (record.status !== 'quarantine') throw PatchswarmError.INVALID_TRANSITION(`endpoint ${keyid.slice(0, 12)}… is ${record.status}, not in quarantine`)
      const certificate = await this.certify(keyid, record.tenant, record.site, this.clock())
      return this.endpoints.setStatus(keyid, 'approved', { certificate, extra: wopts.extra })
    })
  }

  /** Quarantine → rejected (its tree node is marked removed). */
  async reject (keyid: string, wopts: WriteOptions = {}): Promise<EndpointRecord> {
    return this.lock.run(async () => {
      const record = await this.endpoints.get(keyid)
      if (record.status !== 'quarantine') throw PatchswarmError.INVALID_TRANSITION(`endpoint ${keyid.slice(0, 12)}… is ${record.status}, not in quarantine`)
      return this.endpoints.setStatus(keyid, 'rejected', wopts)
    })
  }

  /** A new certificate for an approved endpoint: later expiry, and its tenant as it is now. */
  async renewCertificate (keyid: string, wopts: WriteOptions = {}): Promise<EndpointRecord> {
    return this.lock.run(async () => {
      const record = await this.endpoints.get(keyid)
      if (record.status !== 'approved') throw PatchswarmError.INVALID_TRANSITION(`endpoint ${keyid.slice(0, 12)}… is ${record.status}; only approved endpoints get certificates`)
      const certificate = await this.certify(keyid, record.tenant, record.site, this.clock())
      return this.endpoints.setCertificate(keyid, certificate, wopts)
    })
  }

  // ---- internals ---------------------------------------------------------------------------

  /** The token if `secret` is its secret and it may admit one more endpoint; the codes say why not. */
  private async usableToken (id: string, secret: string, now: Date): Promise<StoredToken> {
    const token = await this.find(id)
    // Unknown id and wrong secret look the same to the caller.
    if (!token || !secretMatches(secret, token.secretHash)) throw PatchswarmError.BAD_TOKEN('unknown enrollment token or wrong secret')
    switch (stateOf(token, now)) {
      case 'revoked': throw PatchswarmError.TOKEN_REVOKED(`token ${id} was revoked at ${token.revokedAt}`)
      case 'expired': throw PatchswarmError.TOKEN_EXPIRED(`token ${id} expired at ${token.expiresAt}`)
      case 'used-up': throw PatchswarmError.TOKEN_USED_UP(`token ${id} has been used ${token.uses} of ${token.maxUses} time(s)`)
      case 'active': return token
    }
  }

  private async certify (holder: string, tenant: string, site: string | null, now: Date): Promise<Envelope<CertificateDocument>> {
    const cert = newCertificate({
      org: this.org,
      holder,
      role: 'endpoint',
      tenant,
      site,
      issued: now,
      expires: new Date(now.getTime() + this.certificateDays * DAY)
    })
    return signEnvelope(cert, [this.signer])
  }

  /** The hash of the current root envelope, after checking that it is ours and trusts our signer. */
  private checkedRootHash (): string {
    const envelope = this.root()
    let root
    try {
      root = parseRoot(envelope.signed)
    } catch (err) {
      if (isPatchswarmError(err)) throw PatchswarmError.BAD_ARGUMENT(`the current root: ${err.detail}`, err)
      throw err
    }
    if (root.org !== this.org) throw PatchswarmError.BAD_ARGUMENT(`the current root is for ${root.org}, not ${this.org}`)
    if (!root.roles.console.keyids.includes(this.signer.keyid)) {
      throw PatchswarmError.BAD_ARGUMENT('the console signer is not in the root\'s console role: its certificates would not verify')
    }
    return envelopeHash(envelope)
  }

  /** A live customer or group at `path`. */
  private async scopeAt (path: string): Promise<TenantNode> {
    const node = await this.tree.find(path)
    if (!node) throw PatchswarmError.NOT_FOUND(`no tenant at ${JSON.stringify(path).slice(0, 120)}`)
    if (node.kind !== 'customer' && node.kind !== 'group') throw PatchswarmError.BAD_ARGUMENT(`${path} is a ${node.kind}; a token is scoped to a customer or a group`)
    return node
  }

  private async scopePathOf (t: StoredToken): Promise<string> {
    return (await this.tree.getByUid(t.scopeUid, { includeRemoved: true }))?.path ?? ''
  }

  private async find (id: string): Promise<StoredToken | undefined> {
    if (typeof id !== 'string' || !tokenId.safeParse(id).success) return undefined
    return await this.store.get(tokenKey(id)) as StoredToken | undefined
  }

  private view (t: StoredToken, scope: string, now: Date): TokenRecord {
    const { secretHash: _secretHash, ...rest } = t
    return { ...rest, scope, state: stateOf(t, now) }
  }

  private put (t: StoredToken): FleetOp { return { type: 'put', sublevel: this.store, key: tokenKey(t.id), value: t } }
}
