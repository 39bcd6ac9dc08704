// The console's side of the link with its agents, carried as control messages on the organisation
// swarm (every peer there showed a console-signed certificate, so the console knows which endpoint
// it is talking to, and the agent knows the console by its key).
//
//   SYNC    agent → console   { directive: version it holds }          check-in
//   STATE   console → agent   { root, directive, releases, manifests, policy }
//   REPORTS agent → console   { events: [serialized signed events] }
//   ACK     console → agent   { last: highest contiguous seq stored, rejected: [{ seq, code }] }
//
// The console also pushes STATE to every connected endpoint when it issues a new directive. An
// endpoint may only report its own events; anything else in its batch is rejected (WRONG_HOLDER).
import { PatchswarmError } from '../errors.js'
import type { Envelope } from '../trust/envelope.js'
import { parseDirective, assignmentApplies } from '../trust/directive.js'
import { platformMatches } from '../trust/release.js'
import type { SwarmNode } from '../swarm/node.js'
import type { PackageStore } from '../content/package-store.js'
import type { Manifest } from '../content/manifest.js'
import type { PeerIdentity } from '../trust/certificate.js'
import type { EffectivePolicy } from '../policy/policy.js'
import type { Console } from './console.js'

export const LINK = { SYNC: 16, STATE: 17, REPORTS: 18, ACK: 19 } as const
/** Bounded like every swarm message; a report batch this size holds hundreds of events. */
export const MAX_LINK_BYTES = 1024 * 1024
export const MAX_REPORT_BATCH = 500

export interface SyncMessage { directive: number }
export interface StateMessage {
  root: Envelope
  directive: Envelope | null
  releases: Envelope[]
  manifests: Record<string, Manifest>
  policy: EffectivePolicy
}
export interface ReportsMessage { events: string[] }
export interface AckMessage { last: number, rejected: Array<{ seq?: number, code: string }> }

export function encodeLink (value: unknown): Buffer {
  const bytes = Buffer.from(JSON.stringify(value))
  if (bytes.byteLength > MAX_LINK_BYTES) throw PatchswarmError.MESSAGE_TOO_LARGE(`link message of ${bytes.byteLength} bytes, more than ${MAX_LINK_BYTES}`)
  return bytes
}

export function decodeLink<T> (payload: Uint8Array): T {
  if (payload.byteLength > MAX_LINK_BYTES) throw PatchswarmError.MESSAGE_TOO_LARGE(`link message of ${payload.byteLength} bytes`)
  try {
    const value = JSON.parse(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('utf8'))
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('not an object')
    return value as T
  } catch (err) {
    throw PatchswarmError.PROTOCOL_ERROR(`link message is not a JSON object: ${(err as Error).message}`)
  }
}

export class ConsoleLink {
  readonly #console: Console
  readonly #node: SwarmNode
  readonly #store: PackageStore
  readonly #off: Array<() => void> = []

  constructor (opts: { console: Console, node: SwarmNode, store: PackageStore }) {
    this.#console = opts.console
    this.#node = opts.node
    this.#store = opts.store
    const onControl = (m: { from: PeerIdentity, kind: number, payload: Uint8Array }) => { this.#onControl(m).catch((err) => this.#node.emit('warning', err)) }
    this.#node.on('control', onControl)
    this.#off.push(() => this.#node.off('control', onControl))
    this.#off.push(this.#console.onDirective(() => { this.#pushAll().catch((err) => this.#node.emit('warning', err)) }))
  }

  close (): void {
    for (const off of this.#off.splice(0)) off()
  }

  async #onControl ({ from, kind, payload }: { from: PeerIdentity, kind: number, payload: Uint8Array }): Promise<void> {
    if (from.role !== 'endpoint') return
    if (kind === LINK.SYNC) {
      this.#node.sendControl(from.keyid, LINK.STATE, encodeLink(await this.stateFor(from)))
    } else if (kind === LINK.REPORTS) {
      const { events } = decodeLink<ReportsMessage>(payload)
      if (!Array.isArray(events) || events.length > MAX_REPORT_BATCH || !events.every((e) => typeof e === 'string')) throw PatchswarmError.PROTOCOL_ERROR('reports carry at most 500 serialized events')
      // Only the endpoint's own events (a peer cannot speak for another: WRONG_HOLDER).
      const result = await this.#console.ingest(events, { tenantScope: from.tenant, endpoint: from.keyid })
      const rejected: AckMessage['rejected'] = []
      for (const r of result.results) if (r.status === 'rejected') rejected.push({ ...(r.seq !== undefined ? { seq: r.seq } : {}), code: r.code ?? 'REJECTED' })
      const last = result.acks[from.keyid] ?? (await this.#console.ingestor.endpointState(from.keyid)).last
      this.#node.sendControl(from.keyid, LINK.ACK, encodeLink({ last, rejected } satisfies AckMessage))
    }
  }

  /** What an endpoint needs to act: the directive, the releases it names for it, their manifests, its policy. */
  async stateFor (peer: PeerIdentity): Promise<StateMessage> {
    const c = this.#console
    const directive = await c.latestDirective() ?? null
    const record = await c.endpoints.byKeyid(peer.keyid)
    const releases: Envelope[] = []
    const manifests: Record<string, Manifest> = {}
    if (directive) {
      const doc = parseDirective(directive.signed)
      const me = { keyid: peer.keyid, tenant: peer.tenant, ...(record ? { platform: record.platform } : {}) }
      const hashes = new Set(doc.assignments.filter((a) => assignmentApplies(a, me, platformMatches)).map((a) => a.release.envelopeHash))
      for (const hash of hashes) {
        const r = c.trust.releaseByHash(hash)
        if (!r) continue
        releases.push(r.envelope)
        if (await this.#store.has(r.release.manifest.digest)) manifests[r.release.manifest.digest] = await this.#store.manifest(r.release.manifest.digest)
      }
    }
    const policy = (await c.policies.effective(peer.tenant, peer.site ? { site: peer.site } : {})).policy
    return { root: c.rootEnvelope, directive, releases, manifests, policy }
  }

  async #pushAll (): Promise<void> {
    for (const peer of this.#node.connectedPeers()) {
      if (peer.role !== 'endpoint') continue
      this.#node.sendControl(peer.keyid, LINK.STATE, encodeLink(await this.stateFor(peer)))
    }
  }
}
