// The second factor: RFC 6238 TOTP codes (SHA-1, 6 digits, 30 s, as authenticator apps use them)
// checked with otplib within ±1 time step, and each admin's last accepted time step remembered so
// a code (or an older one) cannot be used twice.
import { createGuardrails, verify } from 'otplib'
import { systemClock, type FleetClock } from '../../lib/fleet/common.js'

const PERIOD = 30
const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'
// assertTotpSecret accepts 16 base32 characters (80 bits); otplib's default floor is 128 bits.
const GUARDRAILS = createGuardrails({ MIN_SECRET_BYTES: 10 })

/**
 * Base32 (RFC 4648) to bytes the way authenticator apps read it: case and spaces ignored, padding
 * optional, spare trailing bits dropped (otplib's decoder refuses those, e.g. a 20-character secret).
 */
export function base32Decode (secret: string): Uint8Array {
  const s = secret.replace(/[\s=]/g, '').toUpperCase()
  const out: number[] = []
  let bits = 0
  let value = 0
  for (const ch of s) {
    const i = BASE32.indexOf(ch)
    if (i < 0) throw new Error('not base32')
    value = ((value << 5) | i) & 0xffff
    bits += 5
    if (bits >= 8) {
      bits -= 8
      out.push((value >>> bits) & 0xff)
    }
  }
  return Uint8Array.from(out)
}

export type TotpResult =
  | { ok: true, timeStep: number }
  | { ok: false, reason: 'wrong code' | 'code already used' | 'malformed code' | 'unusable secret' }

export interface TotpVerifierOptions {
  clock?: FleetClock
  /** Time steps accepted either side of now; 1 by default. */
  window?: number
}

export class TotpVerifier {
  readonly #clock: FleetClock
  readonly #window: number
  /** Admin id → the last time step accepted for them. */
  readonly #last = new Map<string, number>()

  constructor (opts: TotpVerifierOptions = {}) {
    this.#clock = opts.clock ?? systemClock
    this.#window = opts.window ?? 1
  }

  /** Checks `code` for the admin; on success the code's time step and all before it are spent. */
  async verify (adminId: string, secret: string, code: string): Promise<TotpResult> {
    const token = String(code).replace(/\s/g, '')
    if (!/^\d{6}$/.test(token)) return { ok: false, reason: 'malformed code' }
    let key: Uint8Array
    try {
      key = base32Decode(secret)
    } catch {
      return { ok: false, reason: 'unusable secret' }
    }
    if (key.length < 10) return { ok: false, reason: 'unusable secret' }
    const epoch = Math.floor(this.#clock().getTime() / 1000)
    let result
    try {
      result = await verify({ secret: key, token, epoch, period: PERIOD, epochTolerance: PERIOD * this.#window, guardrails: GUARDRAILS })
    } catch {
      return { ok: false, reason: 'unusable secret' }
    }
    // The functional API types TOTP and HOTP results together; a TOTP match carries its time step.
    if (!result.valid || !('timeStep' in result)) return { ok: false, reason: 'wrong code' }
    // Checked and recorded with no await in between: two connections racing with one code get one login.
    const last = this.#last.get(adminId)
    if (last !== undefined && result.timeStep <= last) return { ok: false, reason: 'code already used' }
    this.#last.set(adminId, result.timeStep)
    this.#prune(epoch)
    return { ok: true, timeStep: result.timeStep }
  }

  /** Forgets steps that have left the window anyway, so the map stays as small as the active admins. */
  #prune (epoch: number): void {
    if (this.#last.size < 256) return
    const oldest = Math.floor(epoch / PERIOD) - this.#window - 1
    for (const [id, step] of this.#last) if (step < oldest) this.#last.delete(id)
  }
}
