// Names and paths that come from metadata reach the file system only through these checks:
// relative, '/'-separated, no '.', '..' or empty segments, no control characters or NUL, NFC
// normalized (so two spellings cannot name one file), no backslashes or drive letters, bounded length.
import { PatchswarmError } from '../errors.js'

export const MAX_PATH_LENGTH = 1024
export const MAX_SEGMENT_LENGTH = 255

// C0/C1 controls, DEL, and invisible characters that make two names look alike
// (zero-width and bidi controls, BOM).
const FORBIDDEN = /[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\\:]/u

export function checkSafeRelativePath (p: unknown): string | null {
  if (typeof p !== 'string') return 'path is not a string'
  if (p.length === 0) return 'path is empty'
  if (Buffer.byteLength(p) > MAX_PATH_LENGTH) return `path is longer than ${MAX_PATH_LENGTH} bytes`
  if (p.normalize('NFC') !== p) return 'path is not NFC-normalized Unicode'
  if (FORBIDDEN.test(p)) return 'path contains a control, invisible, backslash or colon character'
  if (p.startsWith('/')) return 'path is absolute'
  for (const seg of p.split('/')) {
    if (seg === '') return 'path has an empty segment'
    if (seg === '.' || seg === '..') return `path has a '${seg}' segment`
    if (Buffer.byteLength(seg) > MAX_SEGMENT_LENGTH) return `path segment is longer than ${MAX_SEGMENT_LENGTH} bytes`
  }
  return null
}

/** Throws UNSAFE_PATH unless `p` is a safe relative path; returns it typed as a string. */
export function assertSafeRelativePath (p: unknown, what = 'path'): string {
  const problem = checkSafeRelativePath(p)
  if (problem) throw PatchswarmError.UNSAFE_PATH(`${what} ${JSON.stringify(p)?.slice(0, 80)}: ${problem}`)
  return p as string
}

// Package names, tenant path segments, platform names: a conservative ASCII alphabet.
const NAME = /^[a-z0-9][a-z0-9._+-]{0,127}$/i

export function isSafeName (s: unknown): s is string {
  return typeof s === 'string' && NAME.test(s) && !s.includes('..')
}

export function assertSafeName (s: unknown, what = 'name'): string {
  if (!isSafeName(s)) throw PatchswarmError.UNSAFE_PATH(`${what} ${JSON.stringify(s)?.slice(0, 80)} is not a safe name (letters, digits, . _ + -; 1-128 characters)`)
  return s
}
