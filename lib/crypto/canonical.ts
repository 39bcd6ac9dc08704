// Canonical JSON after RFC 8785 (JCS): object keys sorted by UTF-16 code units, no white space,
// numbers and strings as ECMAScript's JSON.stringify writes them. The bytes that are hashed and
// signed are always these, so two parties that agree on a value agree on its bytes.
// (The `canonicalize` package does the same but needs Node 22; this is small enough to own.)
import { PatchswarmError } from '../errors.js'

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

export function canonicalize (value: unknown): string {
  return write(value, '$')
}

export function canonicalBytes (value: unknown): Buffer {
  return Buffer.from(canonicalize(value), 'utf8')
}

/** Parses bytes that must already be canonical JSON; anything else is refused with NOT_CANONICAL. */
export function parseCanonical (bytes: Uint8Array | string): unknown {
  const text = typeof bytes === 'string' ? bytes : Buffer.from(bytes).toString('utf8')
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw PatchswarmError.BAD_ENCODING('not JSON: ' + (err as Error).message, err)
  }
  if (!isCanonicalText(value, text) && canonicalize(value) !== text) throw PatchswarmError.NOT_CANONICAL('JSON is not in RFC 8785 canonical form')
  return value
}

/**
 * A quick proof that `text` is `canonicalize(value)`, for `value` parsed from `text`; false means
 * "not shown", never "not canonical" (parseCanonical then asks canonicalize, which decides and
 * picks the error). JSON.stringify writes numbers and strings exactly as canonicalize does and
 * keys in property order, so its output is the canonical form when, everywhere in the value,
 * (1) the keys are in ascending UTF-16 order (canonicalize sorts them; JSON.parse keeps the text's
 * order except that it puts integer-like keys first, which this check then sees as unsorted) and
 * (2) no string is a lone surrogate (canonicalize refuses one; JSON.stringify escapes it as
 * \udxxx, so a text without `\ud` has none). A non-finite number (1e999) needs no check:
 * JSON.stringify writes it as null, which cannot equal the number in the text. Duplicate keys
 * leave one property, so the output is shorter than the text. test/crypto/canonical.test.ts holds
 * parseCanonical against the plain rule (canonicalize must give the text back) on many texts.
 */
function isCanonicalText (value: unknown, text: string): boolean {
  return JSON.stringify(value) === text && !text.includes('\\ud') && keysSorted(value)
}

function keysSorted (value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return true
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (!keysSorted(value[i])) return false
    return true
  }
  let prev: string | undefined
  for (const k in value) {
    // Only own keys of a plain object count (JSON.parse makes nothing else); anything else: not shown.
    if (!Object.hasOwn(value, k) || (prev !== undefined && !(prev < k))) return false
    if (!keysSorted((value as Record<string, unknown>)[k])) return false
    prev = k
  }
  return true
}

function write (value: unknown, at: string): string {
  switch (typeof value) {
    case 'string':
      if (LONE_SURROGATE.test(value)) throw PatchswarmError.BAD_ENCODING(`${at}: string has a lone surrogate`)
      return JSON.stringify(value)
    case 'number':
      if (!Number.isFinite(value)) throw PatchswarmError.BAD_ENCODING(`${at}: ${value} is not a JSON number`)
      return JSON.stringify(value)
    case 'boolean':
      return value ? 'true' : 'false'
    case 'object':
      if (value === null) return 'null'
      if (Array.isArray(value)) return '[' + value.map((v, i) => write(v, `${at}[${i}]`)).join(',') + ']'
      if (Object.getPrototypeOf(value) !== Object.prototype && Object.getPrototypeOf(value) !== null) {
        throw PatchswarmError.BAD_ENCODING(`${at}: only plain objects are JSON`)
      }
      return '{' + Object.keys(value).sort().map((k) => {
        const v = (value as Record<string, unknown>)[k]
        if (v === undefined) throw PatchswarmError.BAD_ENCODING(`${at}.${k}: undefined is not JSON`)
        return write(k, at) + ':' + write(v, `${at}.${k}`)
      }).join(',') + '}'
    default:
      throw PatchswarmError.BAD_ENCODING(`${at}: a ${typeof value} is not JSON`)
  }
}
