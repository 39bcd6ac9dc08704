// Field shapes shared by every trust document, and the one place where a zod failure becomes a
// PatchswarmError that names the offending field. Unsafe names and paths keep their own code
// (UNSAFE_PATH), everything else about a document's shape is BAD_DOCUMENT.
import { z } from 'zod'
import { PatchswarmError } from '../errors.js'
import { checkSafeRelativePath, isSafeName } from '../content/paths.js'
import { isKeyId } from '../crypto/keys.js'

export const SPEC_VERSION = 1
export const MAX_KEYS = 64
export const MAX_TENANT_DEPTH = 16

/** Issue params that make parseShape throw UNSAFE_PATH instead of BAD_DOCUMENT. */
export const UNSAFE = { patchswarm: 'UNSAFE_PATH' } as const

export const keyid = z.string().refine(isKeyId, 'must be a key id (32-byte public key, lowercase hex)')
export const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'must be a SHA-256 digest (64 lowercase hex characters)')
export const metadataVersion = z.int().min(1).max(Number.MAX_SAFE_INTEGER)

// ISO 8601 in UTC, as Date#toISOString writes it (milliseconds optional); must be a real instant:
// YYYY-MM-DDTHH:MM:SS[.mmm]Z with a month 01-12, a day that month has (proleptic Gregorian, as
// Date counts: 2024-02-29 is one, 2023-02-29 and 2024-02-30 are not), hours 00-23, minutes and
// seconds 00-59. This is exactly what the round trip through Date accepts (Date.parse moves
// 2024-02-30 to March and 24:00 to the next day, so toISOString no longer gives the text back),
// checked character by character without building a Date. test/report/fast-paths.test.ts holds the
// two against each other.
export const timestamp = z.string().check((ctx) => {
  if (!isIsoUtc(ctx.value)) {
    ctx.issues.push({ code: 'custom', message: 'must be an ISO 8601 UTC time like 2030-01-01T00:00:00Z', input: ctx.value })
  }
})

const DAYS_IN_MONTH = [0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]

/** True for a string the `timestamp` field accepts. */
export function isIsoUtc (s: string): boolean {
  const n = s.length
  if (n === 20) {
    if (s.charCodeAt(19) !== 0x5a) return false // Z
  } else if (n === 24) {
    if (s.charCodeAt(19) !== 0x2e || s.charCodeAt(23) !== 0x5a || digits(s, 20, 3) < 0) return false // .mmmZ
  } else {
    return false
  }
  if (s.charCodeAt(4) !== 0x2d || s.charCodeAt(7) !== 0x2d || s.charCodeAt(10) !== 0x54 || s.charCodeAt(13) !== 0x3a || s.charCodeAt(16) !== 0x3a) return false // - - T : :
  const year = digits(s, 0, 4)
  const month = digits(s, 5, 2)
  const day = digits(s, 8, 2)
  const hour = digits(s, 11, 2)
  const minute = digits(s, 14, 2)
  const second = digits(s, 17, 2)
  if (year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 59) return false
  const leap = month === 2 && year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0)
  return day <= DAYS_IN_MONTH[month]! + (leap ? 1 : 0)
}

/** The decimal value of `count` ASCII digits at `from`, or -1 if one is not a digit. */
function digits (s: string, from: number, count: number): number {
  let v = 0
  for (let i = from; i < from + count; i++) {
    const d = s.charCodeAt(i) - 0x30
    if (!(d >= 0 && d <= 9)) return -1 // NaN past the end is not a digit either
    v = v * 10 + d
  }
  return v
}

/** A string that `problemOf` accepts (returns null for); its problem is an UNSAFE_PATH issue. */
function unsafeUnless (problemOf: (s: string) => string | null) {
  return z.string().check((ctx) => {
    const problem = problemOf(ctx.value)
    if (problem) ctx.issues.push({ code: 'custom', message: problem, input: ctx.value, params: UNSAFE })
  })
}

export const safeName = unsafeUnless((s) => isSafeName(s) ? null : 'is not a safe name (letters, digits, . _ + -; 1-128 characters)')

export const safeRelativePath = unsafeUnless(checkSafeRelativePath)

/** A tenant path: safe names joined by '/', '' meaning the whole organisation. */
export const tenantPath = unsafeUnless(checkTenantPath)

export function checkTenantPath (p: string): string | null {
  if (p === '') return null
  const segments = p.split('/')
  if (segments.length > MAX_TENANT_DEPTH) return `tenant path is deeper than ${MAX_TENANT_DEPTH} levels`
  for (const seg of segments) if (!isSafeName(seg)) return `tenant path segment ${JSON.stringify(seg).slice(0, 80)} is not a safe name`
  return null
}

/** Segment-wise: 'msp-1/cust' is NOT inside 'msp-1/customer-a'; everything is inside ''. */
export function isWithinTenant (path: string, subtree: string): boolean {
  if (subtree === '') return true
  return path === subtree || path.startsWith(subtree + '/')
}

export const roleKeys = z.strictObject({
  keyids: z.array(keyid).min(1).max(MAX_KEYS),
  threshold: z.int().min(1).max(MAX_KEYS)
})

export type RoleKeys = z.infer<typeof roleKeys>

/** Semantic checks of a role that zod's shapes cannot express; `at` names the field. */
export function checkRole (role: RoleKeys, at: string, knownKeys?: Record<string, unknown>): void {
  if (new Set(role.keyids).size !== role.keyids.length) throw PatchswarmError.BAD_DOCUMENT(`${at}.keyids lists a key twice`)
  if (role.threshold > role.keyids.length) {
    throw PatchswarmError.BAD_DOCUMENT(`${at}.threshold ${role.threshold} is more than its ${role.keyids.length} key(s)`)
  }
  if (knownKeys) {
    for (const k of role.keyids) {
      if (!Object.hasOwn(knownKeys, k)) throw PatchswarmError.BAD_DOCUMENT(`${at}.keyids: ${k.slice(0, 16)}… is not in root.keys`)
    }
  }
}

/** Validates `value` against `schema`; the error names the first offending field. */
export function parseShape<S extends z.ZodType> (schema: S, value: unknown, what: string): z.output<S> {
  const result = schema.safeParse(value)
  if (result.success) return result.data
  const issue = result.error.issues[0]!
  const field = [what, ...issue.path.map(String)].join('.').replace(/\.(\d+)(?=\.|$)/g, '[$1]')
  const message = `${field}: ${issue.message}`
  const params = (issue as { params?: { patchswarm?: string } }).params
  if (params?.patchswarm === 'UNSAFE_PATH') throw PatchswarmError.UNSAFE_PATH(message)
  throw PatchswarmError.BAD_DOCUMENT(message, result.error)
}

/** A document valid from `issued` to `expires` must not end before it starts. */
export function checkIssuedBeforeExpires (d: { issued: string, expires: string }, what: string): void {
  if (Date.parse(d.issued) > Date.parse(d.expires)) throw PatchswarmError.BAD_DOCUMENT(`${what}.issued: is after ${what}.expires`)
}

export function toTimestamp (t: Date | string): string {
  return typeof t === 'string' ? t : t.toISOString()
}

export function isExpired (expires: string, now: Date): boolean {
  return Date.parse(expires) <= now.getTime()
}
