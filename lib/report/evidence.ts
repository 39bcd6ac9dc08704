// Evidence bundles: the endpoint-signed events themselves, with what an auditor needs to check them
// offline and without trusting the console that exported them — the organisation's root, and the
// console-signed enrollment certificates that bind each endpoint key to its tenant — sealed by the
// exporting console.
//
// Format 'patchswarm-evidence/1': one JSON object, written with one envelope per line so that a
// damaged line points at one event, and each such line is byte for byte the envelope's canonical
// JSON (RFC 8785) as it travelled, checkable with any Ed25519 tool:
//   {
//   "format": "patchswarm-evidence/1",
//   "org": the organisation,
//   "generatedAt": console time of the export (sealed),
//   "filter": null when the bundle holds every event of its endpoints from seq 1 on; otherwise a
//             description of the selection (a time range, some tenants, job events only …) (sealed),
//   "root": the root envelope (the trust anchor, unless the auditor pins one of their own),
//   "certificates": [ enrollment certificate envelopes, by holder and version ],
//   "events": [ event envelopes (lib/report/event.ts), by endpoint and seq ],
//   "seal": the exporting console's envelope over the bundle:
//           { _type: 'evidence-seal', org, generatedAt, filter, root: envelopeHash(root),
//             certificates: { count, sha256 }, events: { count, sha256 } }
//           where each sha256 (hex) is over that list's canonical envelope lines, in bundle order,
//           joined with '\n'
//   }
// Every byte is signed by someone: events by their endpoints, certificates by the console role,
// the root by its root role, and the header (org, generatedAt, filter) and the lists as a whole
// by the seal. The seal covers values, not layout: a re-indented bundle still verifies.
//
// Verification (verifyEvidence) answers with a list of problems rather than at the first one, so
// an auditor sees everything wrong at once:
// - the root is signed by its own root role (or the auditor's pinned root is used instead);
// - each certificate is signed by a threshold of the root's console role, is for this org and
//   names an endpoint (an endpoint may have several: renewals, moves between tenants);
// - each event is signed by the endpoint it names, is for this org, and names a tenant that one of
//   that endpoint's valid certificates names. Validity periods are not judged: evidence outlives
//   certificates, and event times are the agent's clock, not the console's;
// - per endpoint, seqs strictly increase in bundle order: a repeated seq is a problem (identical
//   copies or, worse, two different events under one number), and so is a seq going backwards;
// - gaps: agents number events 1, 2, 3 … without gaps, so in a complete bundle (filter null) a
//   missing seq, including any before the first, is a problem — someone left an event out. A
//   filtered bundle has gaps by design; they are listed in `gaps` and the notes and are not
//   problems: the filter is the console's signed word, so turning a filtered bundle into a
//   "complete" one, or the reverse, breaks the seal;
// - the seal is signed by a threshold of the root's console role, and every field of it equals
//   what the bundle holds (a missing, unsigned or mismatching seal is a problem, listed last).
// What the seal proves: which console exported the bundle, when, and with what selection, and
// that nothing was added, removed or changed since. It does not make the console trusted: a
// console that lies can re-seal an edited bundle, or leave out an endpoint's latest events, but
// it cannot forge an event — events are still checked against their endpoints' keys.
import { PatchswarmError } from '../errors.js'
import { type Signer, isKeyId } from '../crypto/keys.js'
import { canonicalize } from '../crypto/canonical.js'
import { contentHashOf } from '../crypto/hash.js'
import { type Envelope, checkEnvelope, envelopeHash, serializeEnvelope, signEnvelope, verifyEnvelope } from '../trust/envelope.js'
import { type RootDocument, parseRoot } from '../trust/root.js'
import { parseCertificate } from '../trust/certificate.js'
import { verifySelfSignedRoot } from '../trust/verify.js'
import { isSafeName } from '../content/paths.js'
import { type SignedEvent, verifyEvent } from './event.js'

export const EVIDENCE_FORMAT = 'patchswarm-evidence/1'
export const EVIDENCE_SEAL_TYPE = 'evidence-seal'
/** How a seal that is signed but no longer matches the bundle's values is reported. */
const SEAL_MISMATCH = 'the console\'s seal does not match the bundle\'s'
export const MAX_EVIDENCE_BYTES = 256 * 1024 * 1024
export const MAX_FILTER_CHARS = 1000
/** Problems listed in full; beyond this the list ends with a count. */
export const MAX_PROBLEMS = 1000

export interface BuildEvidenceInput {
  org: string
  /** The organisation's root envelope. */
  root: Envelope
  /** The endpoints' enrollment certificate envelopes. */
  certificates: readonly Envelope[]
  events: readonly SignedEvent[]
  /** null (default) when `events` is every event of these endpoints from seq 1; else what was selected. */
  filter?: string | null
  generatedAt?: Date
  /** The exporting console's key (one of the root's console role): it signs the seal. */
  sealer: Signer
}

/** What the seal signs: the bundle's header, its root and its lists, by value. */
export interface EvidenceSeal {
  _type: typeof EVIDENCE_SEAL_TYPE
  org: string
  generatedAt: string | null
  filter: string | null
  /** envelopeHash of the bundle's root. */
  root: string
  certificates: SealedList
  events: SealedList
}

export interface SealedList {
  count: number
  /** Hex SHA-256 of the list's canonical envelope lines joined with '\n'; null when one is not an envelope. */
  sha256: string | null
}

/** The bundle's text, sealed by `sealer`. Identical envelopes given twice are written once. */
export async function buildEvidence (input: BuildEvidenceInput): Promise<string> {
  if (!isSafeName(input.org)) throw PatchswarmError.BAD_ARGUMENT('evidence needs the organisation\'s name')
  if (!input.sealer || !isKeyId(input.sealer.keyid)) throw PatchswarmError.BAD_ARGUMENT('evidence needs the console key that seals it')
  const filter = input.filter ?? null
  if (filter !== null && (typeof filter !== 'string' || filter.length > MAX_FILTER_CHARS)) {
    throw PatchswarmError.BAD_ARGUMENT(`filter must be a description of at most ${MAX_FILTER_CHARS} characters`)
  }
  const line = (env: Envelope) => canonicalLine(checkEnvelope(env))
  const certificates = unique(input.certificates, line, (a, b) =>
    cmp(String(a.signed.holder), String(b.signed.holder)) || Number(a.signed.version) - Number(b.signed.version))
  const events = unique(input.events, line, (a, b) =>
    cmp(String(a.signed.endpoint), String(b.signed.endpoint)) || Number(a.signed.seq) - Number(b.signed.seq))
  const generatedAt = (input.generatedAt ?? new Date()).toISOString()
  const root = checkEnvelope(input.root)
  const seal = await signEnvelope<EvidenceSeal>({
    _type: EVIDENCE_SEAL_TYPE,
    org: input.org,
    generatedAt,
    filter,
    root: envelopeHash(root),
    certificates: sealedList(certificates, certificates.length),
    events: sealedList(events, events.length)
  }, [input.sealer])
  const list = (items: string[]) => items.length === 0 ? '[]' : '[\n' + items.join(',\n') + '\n]'
  return '{\n' + [
    `"format": ${JSON.stringify(EVIDENCE_FORMAT)}`,
    `"org": ${JSON.stringify(input.org)}`,
    `"generatedAt": ${JSON.stringify(generatedAt)}`,
    `"filter": ${JSON.stringify(filter)}`,
    `"root": ${line(root)}`,
    `"certificates": ${list(certificates)}`,
    `"events": ${list(events)}`,
    `"seal": ${line(seal)}`
  ].join(',\n') + '\n}\n'
}

/** An envelope's line in a bundle: its canonical JSON. */
function canonicalLine (env: Envelope): string {
  return serializeEnvelope(env).toString('utf8')
}

/** Count and hash of a list's canonical envelope lines, in order; sha256 null when `lines` is null. */
function sealedList (lines: readonly string[] | null, count: number): SealedList {
  return { count, sha256: lines === null ? null : contentHashOf(joined(lines)).toString('hex') }
}

const NEWLINE = Buffer.from('\n', 'utf8')

/** The lines' bytes with '\n' between them, as one hash input. */
function * joined (lines: readonly string[]): Generator<Buffer> {
  for (let i = 0; i < lines.length; i++) {
    if (i > 0) yield NEWLINE
    yield Buffer.from(lines[i]!, 'utf8')
  }
}

/**
 * `lines` (of a list read from a bundle) with the canonical line of `env` appended; null when
 * `lines` already is, or when the envelope has no canonical JSON. Pass `check` for an item not yet
 * checked as an envelope: null when it is not one.
 */
function withLine (lines: string[] | null, env: unknown, check = false): string[] | null {
  if (lines === null) return null
  try {
    lines.push(canonicalLine(check ? checkEnvelope(env) : env as Envelope))
    return lines
  } catch {
    return null
  }
}

export interface EvidenceGap {
  endpoint: string
  /** The first and last missing seq. */
  from: number
  to: number
}

export interface EvidenceResult {
  ok: boolean
  org: string
  /**
   * The root the certificates were checked against. pinned false: the bundle's own root was used,
   * which shows the bundle is consistent, not that it is the organisation's (pin one to show that).
   */
  root: { version: number, hash: string, pinned: boolean }
  /** False for a filtered bundle; see `filter`. */
  complete: boolean
  filter: string | null
  generatedAt: string | null
  /** Distinct endpoints with a valid certificate or a verified event. */
  endpoints: number
  certificates: number
  /** Events in the bundle (verified or not). */
  events: number
  /** Earliest and latest agent time of the verified events. */
  from: string | null
  to: string | null
  /** Per tenant: endpoints and verified events. */
  tenants: Record<string, { endpoints: number, events: number }>
  gaps: EvidenceGap[]
  /** Why the bundle does not verify; empty when ok. Each names what and where. */
  problems: string[]
  /** Facts worth knowing that are not problems (a filtered bundle and its gaps, an unused bundle root). */
  notes: string[]
  /**
   * Keys of the anchor's console role whose seal signatures are valid (enough of them for the
   * role's threshold, on a seal of the right type); empty when the bundle is not sealed. Whether
   * the seal still matches the bundle is a problem, not this.
   */
  sealedBy: string[]
  /**
   * The seal fields (or keys that are no seal field) whose values differ from the bundle's, when
   * the seal is validly signed; empty when it matches or there is no valid seal.
   */
  sealMismatch: string[]
}

export interface VerifyEvidenceOptions {
  /** A root the auditor trusts (e.g. from their own file); without it the bundle's own root is used. */
  root?: Envelope
}

/**
 * Checks a bundle offline (see the top of this file). Throws BAD_EVIDENCE when the input is not a
 * bundle at all (not JSON, wrong format, no readable root); everything else is a problem in the
 * result. A pinned root that is not signed by its own root role throws as verifySelfSignedRoot does.
 */
export function verifyEvidence (input: Uint8Array | string, opts: VerifyEvidenceOptions = {}): EvidenceResult {
  const size = typeof input === 'string' ? Buffer.byteLength(input) : input.byteLength
  if (size > MAX_EVIDENCE_BYTES) throw PatchswarmError.BAD_EVIDENCE(`bundle is ${size} bytes, more than ${MAX_EVIDENCE_BYTES}`)
  // Not fatal on bad UTF-8: a damaged byte then changes a signed value and is caught, with its place.
  const text = typeof input === 'string' ? input : new TextDecoder('utf-8').decode(input)
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw PatchswarmError.BAD_EVIDENCE(diagnoseJson(text, (err as Error).message), err)
  }
  const bundle = readHeader(value)
  const problems = new Problems()
  const notes: string[] = []

  let bundleRoot: RootDocument
  let bundleRootEnvelope: Envelope
  try {
    bundleRootEnvelope = checkEnvelope(bundle.root)
    bundleRoot = parseRoot(bundleRootEnvelope.signed)
  } catch (err) {
    throw PatchswarmError.BAD_EVIDENCE(`root: ${detail(err)}`, err)
  }
  const anchor = opts.root ? verifySelfSignedRoot(opts.root) : bundleRoot
  const bundleRootHash = envelopeHash(bundleRootEnvelope)
  const anchorHash = opts.root ? envelopeHash(opts.root) : bundleRootHash
  if (opts.root) {
    if (anchorHash !== bundleRootHash) {
      notes.push(`the bundle carries root v${bundleRoot.version} ${bundleRootHash.slice(0, 12)}…, not the pinned root; it was not used`)
    }
  } else if (!verifyEnvelope(bundleRootEnvelope, bundleRoot.roles.root).ok) {
    problems.add(`root v${bundleRoot.version}: not signed by its own root role`)
  }
  if (anchor.org !== bundle.org) problems.add(`the bundle is for organisation ${bundle.org}, the root for ${anchor.org}`)

  // Certificates: holder → tenants its valid certificates name.
  const certified = new Map<string, Set<string>>()
  // Each list's canonical lines, for the seal; null once an item is not an envelope.
  let certificateLines: string[] | null = []
  let eventLines: string[] | null = []
  bundle.certificates.forEach((raw, i) => {
    const label = `certificates[${i}] (endpoint ${who(raw, 'holder')})`
    let env: Envelope<Record<string, unknown>> | undefined
    try {
      env = checkEnvelope(raw)
      certificateLines = withLine(certificateLines, env)
      const cert = parseCertificate(env.signed)
      const sig = verifyEnvelope(env, anchor.roles.console)
      if (!sig.ok) return problems.add(`${label}: not signed by the console role of ${anchor.org} (${sig.valid.length} of ${sig.threshold} signatures)`)
      if (cert.org !== anchor.org) return problems.add(`${label}: issued for organisation ${cert.org}, not ${anchor.org}`)
      if (cert.role !== 'endpoint') return problems.add(`${label}: a certificate for an ${cert.role}, not an endpoint`)
      let tenants = certified.get(cert.holder)
      if (!tenants) certified.set(cert.holder, tenants = new Set())
      tenants.add(cert.tenant)
    } catch (err) {
      if (env === undefined) certificateLines = null
      problems.add(`${label}: ${detail(err)}`)
    }
  })

  const last = new Map<string, number>() // endpoint → seq of its latest event in order
  const seen = new Map<string, Map<number, string>>()
  const gaps: EvidenceGap[] = []
  const tenants = new Map<string, { endpoints: Set<string>, events: number }>()
  const endpoints = new Set<string>(certified.keys())
  let from: string | null = null
  let to: string | null = null
  bundle.events.forEach((raw, i) => {
    const claimed = readClaims(raw)
    const prev = claimed.endpoint ? last.get(claimed.endpoint) : undefined
    const seqText = claimed.seq !== null ? `seq ${claimed.seq}` : `seq unreadable${prev !== undefined ? ` (after seq ${prev})` : ''}`
    const label = `endpoint ${who(raw, 'endpoint')} ${seqText} (events[${i}])`
    let event, envelope, hash
    try {
      ({ event, envelope, hash } = verifyEvent(raw as SignedEvent))
    } catch (err) {
      eventLines = withLine(eventLines, raw, true)
      return problems.add(`${label}: ${(err as PatchswarmError).code === 'BAD_SIGNATURE' ? 'the signature does not match: the event was altered or not signed by that endpoint' : detail(err)}`)
    }
    // verifyEvent also reads an event given as a JSON string; in a bundle that is not an envelope.
    eventLines = typeof raw === 'string' ? null : withLine(eventLines, envelope)
    endpoints.add(event.endpoint)
    if (event.org !== anchor.org) problems.add(`${label}: for organisation ${event.org}, not ${anchor.org}`)
    const certTenants = certified.get(event.endpoint)
    if (!certTenants) problems.add(`${label}: the bundle has no valid enrollment certificate for this endpoint`)
    else if (!certTenants.has(event.tenant)) problems.add(`${label}: names tenant '${event.tenant}' but its certificate says ${[...certTenants].map((x) => `'${x}'`).join(' or ')}`)

    const before = last.get(event.endpoint)
    let byseq = seen.get(event.endpoint)
    if (!byseq) seen.set(event.endpoint, byseq = new Map())
    const copy = byseq.get(event.seq)
    if (copy !== undefined) {
      problems.add(`${label}: seq ${event.seq} appears twice${copy === hash ? ' (identical copies)' : ' with different contents: a replay or a forgery'}`)
      return
    }
    byseq.set(event.seq, hash)
    if (before !== undefined && event.seq < before) {
      problems.add(`${label}: out of order, after seq ${before}`)
      return
    }
    const expected = (before ?? 0) + 1
    if (event.seq > expected) gaps.push({ endpoint: event.endpoint, from: expected, to: event.seq - 1 })
    last.set(event.endpoint, event.seq)

    let t = tenants.get(event.tenant)
    if (!t) tenants.set(event.tenant, t = { endpoints: new Set(), events: 0 })
    t.endpoints.add(event.endpoint)
    t.events++
    // Compared as instants: '…00Z' and '…00.500Z' do not sort as text.
    if (from === null || Date.parse(event.at) < Date.parse(from)) from = event.at
    if (to === null || Date.parse(event.at) > Date.parse(to)) to = event.at
  })

  const complete = bundle.filter === null
  for (const g of gaps) {
    const range = g.from === g.to ? `seq ${g.from} is` : `seqs ${g.from}–${g.to} are`
    if (complete) problems.add(`endpoint ${short(g.endpoint)}: ${range} missing, yet the bundle says it holds every event`)
  }
  if (!complete) {
    const missing = gaps.reduce((n, g) => n + g.to - g.from + 1, 0)
    notes.push(`filtered bundle (${bundle.filter}): ${gaps.length} gap(s), ${missing} event(s) not included`)
  }

  // Last, so that problems[0] stays the first damaged item.
  const { sealedBy, sealMismatch } = checkSeal(bundle, {
    root: bundleRootHash,
    certificates: sealedList(certificateLines, bundle.certificates.length),
    events: sealedList(eventLines, bundle.events.length)
  }, anchor, problems)

  return {
    ok: problems.count === 0,
    org: bundle.org,
    root: { version: anchor.version, hash: anchorHash, pinned: opts.root !== undefined },
    complete,
    filter: bundle.filter,
    generatedAt: bundle.generatedAt,
    endpoints: endpoints.size,
    certificates: bundle.certificates.length,
    events: bundle.events.length,
    from,
    to,
    tenants: Object.fromEntries([...tenants].sort(([a], [b]) => cmp(a, b)).map(([k, v]) => [k, { endpoints: v.endpoints.size, events: v.events }])),
    gaps,
    problems: problems.list(),
    notes,
    sealedBy,
    sealMismatch
  }
}

/**
 * The seal's problems, each naming what is wrong; answers the keys that validly signed it and, for
 * such a seal, the fields it differs in. The expected values are recomputed from the bundle as
 * read (`read`: its root and lists, hashed by the caller), so any change to the header, the root or
 * either list — or an item that is no longer an envelope at all — shows as a mismatch.
 */
function checkSeal (
  bundle: BundleHeader,
  read: Pick<EvidenceSeal, 'root' | 'certificates' | 'events'>,
  anchor: RootDocument,
  problems: Problems
): { sealedBy: string[], sealMismatch: string[] } {
  const none = { sealedBy: [], sealMismatch: [] }
  if (bundle.seal === undefined) {
    problems.add('the bundle has no seal: nothing shows which console exported it, or that its generatedAt, filter and lists are as exported')
    return none
  }
  let env: Envelope<Record<string, unknown>>
  try {
    env = checkEnvelope(bundle.seal)
  } catch (err) {
    problems.add(`the bundle's seal is not a signed envelope: ${detail(err)}`)
    return none
  }
  if (env.signed._type !== EVIDENCE_SEAL_TYPE) {
    problems.add(`the bundle's seal is a ${JSON.stringify(env.signed._type)?.slice(0, 40) ?? 'typeless'} document, not an ${EVIDENCE_SEAL_TYPE}`)
    return none
  }
  const sig = verifyEnvelope(env, anchor.roles.console)
  if (!sig.ok) problems.add(`the bundle's seal is not signed by the console role of ${anchor.org} (${sig.valid.length} of ${sig.threshold} signatures)`)

  const expected: Record<string, unknown> = {
    _type: EVIDENCE_SEAL_TYPE,
    org: bundle.org,
    generatedAt: bundle.generatedAt,
    filter: bundle.filter,
    root: read.root,
    certificates: read.certificates,
    events: read.events
  }
  // A key only one side has is undefined on the other, which canonicalize refuses: a difference.
  const same = (a: unknown, b: unknown) => {
    try {
      return canonicalize(a) === canonicalize(b)
    } catch {
      return false
    }
  }
  const keys = [...Object.keys(expected), ...Object.keys(env.signed).filter((k) => !Object.hasOwn(expected, k)).sort()]
  const differ = keys.filter((k) => !same(expected[k], env.signed[k]))
  if (differ.length > 0) {
    const fields = differ.map((k) => Object.hasOwn(expected, k) ? k : `${JSON.stringify(k).slice(0, 40)} (not a seal field)`).join(', ')
    problems.add(sig.ok
      ? `${SEAL_MISMATCH} ${fields}: it was changed after export`
      : `the bundle's seal (not the console's, see above) does not match the bundle's ${fields} either`)
  }
  return sig.ok ? { sealedBy: sig.valid, sealMismatch: differ } : none
}

interface BundleHeader {
  org: string
  filter: string | null
  generatedAt: string | null
  root: unknown
  certificates: unknown[]
  events: unknown[]
  /** undefined when the bundle has none. */
  seal: unknown
}

function readHeader (value: unknown): BundleHeader {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw PatchswarmError.BAD_EVIDENCE('bundle is not a JSON object')
  const v = value as Record<string, unknown>
  if (v.format !== EVIDENCE_FORMAT) throw PatchswarmError.BAD_EVIDENCE(`not a patchswarm evidence bundle: format is ${JSON.stringify(v.format)?.slice(0, 60)}, not ${EVIDENCE_FORMAT}`)
  if (!isSafeName(v.org)) throw PatchswarmError.BAD_EVIDENCE('bundle.org is not an organisation name')
  if (v.filter !== null && (typeof v.filter !== 'string' || v.filter.length > MAX_FILTER_CHARS)) throw PatchswarmError.BAD_EVIDENCE('bundle.filter must be null or a short description')
  if (v.generatedAt !== undefined && typeof v.generatedAt !== 'string') throw PatchswarmError.BAD_EVIDENCE('bundle.generatedAt is not a time')
  if (!Array.isArray(v.certificates)) throw PatchswarmError.BAD_EVIDENCE('bundle.certificates is not a list')
  if (!Array.isArray(v.events)) throw PatchswarmError.BAD_EVIDENCE('bundle.events is not a list')
  return { org: v.org, filter: v.filter, generatedAt: (v.generatedAt as string | undefined) ?? null, root: v.root, certificates: v.certificates, events: v.events, seal: v.seal }
}

/** What a possibly damaged event claims, read defensively. */
function readClaims (raw: unknown): { endpoint: string | null, seq: number | null } {
  const signed = (raw as { signed?: Record<string, unknown> } | null)?.signed
  const endpoint = isKeyId(signed?.endpoint) ? signed.endpoint : null
  const seq = Number.isSafeInteger(signed?.seq) ? signed!.seq as number : null
  return { endpoint, seq }
}

/**
 * The short key of whoever an item is about: the key it names in `field`, and the key that signed
 * it when that differs. One damaged byte cannot spoil both, so the item can always be placed.
 */
function who (raw: unknown, field: 'endpoint' | 'holder'): string {
  const r = raw as { signed?: Record<string, unknown>, signatures?: Array<{ keyid?: unknown }> } | null
  const named = r?.signed?.[field]
  const signer = Array.isArray(r?.signatures) ? r.signatures[0]?.keyid : undefined
  if (isKeyId(named)) {
    // Certificates are signed by the console, not the holder: only events have a telling signer.
    return field === 'endpoint' && isKeyId(signer) && signer !== named ? `${short(named)} (signed by ${short(signer)})` : short(named)
  }
  if (field === 'endpoint' && isKeyId(signer)) return `${short(signer)} (by its signature)`
  return 'unreadable'
}

/**
 * Where the JSON is broken. Bundles are written one envelope per line, so the first line of the
 * certificates or events that does not parse on its own is the damaged item; its keys and seq are
 * read from the text around the damage. The root and the seal have a line each, named as such.
 */
function diagnoseJson (text: string, error: string): string {
  const lines = text.split('\n')
  let section: 'certificates' | 'events' | null = null
  let index = 0
  let previous: { endpoint?: unknown, seq?: unknown } | undefined
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n]!.trim()
    const own = section === null ? /^"(root|seal)":/.exec(line) : null
    if (own && parsed(line.slice(own[0].length).replace(/,$/, '')) === undefined) {
      return `bundle is not valid JSON: its ${own[1]} (line ${n + 1}) is damaged`
    }
    const header = /^"(certificates|events)"\s*:\s*\[$/.exec(line)
    if (header) { section = header[1] as 'certificates' | 'events'; index = 0; continue }
    if (section === null) continue
    if (/^\](,|\s*\})?$/.test(line)) { section = null; continue }
    const item = parsed(line.replace(/,$/, ''))
    if (item !== undefined) {
      previous = (item as { signed?: { endpoint?: unknown, seq?: unknown } } | null)?.signed
      index++
    } else {
      const key = (name: string) => new RegExp(`"${name}":"([0-9a-f]{64})"`).exec(line)?.[1]
      let place: string
      if (section === 'events') {
        const endpoint = key('endpoint') ?? key('keyid')
        const seq = /"seq":(\d+)/.exec(line)?.[1]
        // Events are in seq order per endpoint: the line before places one whose seq is unreadable.
        const after = endpoint !== undefined && previous?.endpoint === endpoint ? ` (after seq ${String(previous.seq)})` : ''
        place = `endpoint ${endpoint ? short(endpoint) : 'unreadable'} ${seq ? `seq ${seq}` : `seq unreadable${after}`}`
      } else {
        const holder = key('holder')
        place = `endpoint ${holder ? short(holder) : 'unreadable'}`
      }
      return `bundle is not valid JSON: ${section}[${index}] (${place}, line ${n + 1}) is damaged`
    }
  }
  // Damage outside the envelopes, or a bundle not laid out one envelope per line.
  return `bundle is not valid JSON: ${error.slice(0, 200)}`
}

/** The JSON value of `text`, or undefined when it is not JSON. */
function parsed (text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

class Problems {
  private readonly items: string[] = []
  count = 0
  add (p: string): void {
    this.count++
    if (this.items.length < MAX_PROBLEMS) this.items.push(p)
  }

  list (): string[] {
    return this.count > this.items.length ? [...this.items, `… and ${this.count - this.items.length} more problem(s)`] : this.items
  }
}

function unique (items: readonly Envelope[], line: (e: Envelope) => string, order: (a: Envelope<Record<string, unknown>>, b: Envelope<Record<string, unknown>>) => number): string[] {
  const byLine = new Map<string, Envelope<Record<string, unknown>>>()
  for (const e of items) byLine.set(line(e), e as Envelope<Record<string, unknown>>)
  return [...byLine].sort(([, a], [, b]) => order(a, b)).map(([l]) => l)
}

function short (keyid: string): string {
  return keyid.slice(0, 12) + '…'
}

function detail (err: unknown): string {
  return err instanceof PatchswarmError ? err.detail : String((err as Error)?.message ?? err)
}

function cmp (a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}
