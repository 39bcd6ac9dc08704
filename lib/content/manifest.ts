// The manifest: what a package is. Canonical JSON (RFC 8785); its SHA-256 is the package digest,
// and the release signs it.
//
//   { _type: 'manifest', spec: 1, hash: 'sha256', chunking: { min, avg, max }, size,
//     files: [{ path, mode, size, chunks: [index into `chunks`] }],   sorted by path, unique
//     dirs: [path],                                                   every directory, sorted, unique
//     chunks: [{ hash: hex, size }] }                                 each hash once, all used
//
// Modes are normalized to 0o644 or 0o755 from the owner's execute bit: the same tree gives the same
// digest on every publisher whatever its umask, and setuid/setgid/sticky bits never travel.
// Every parent directory of a file or directory is listed in `dirs`, so a receiver creates exactly
// the directories the manifest names (empty ones included) and nothing else.
import { z } from 'zod'
import { PatchswarmError } from '../errors.js'
import { canonicalBytes, parseCanonical, contentHashHex, isHashHex } from '../crypto/index.js'
import { assertSafeRelativePath } from './paths.js'
import { validateChunking, MIN_CHUNK_FLOOR, MAX_CHUNK_CEILING, type ChunkingParams } from './fastcdc.js'

export const MANIFEST_SPEC = 1
export const MAX_ENTRIES = 1_000_000
export const MAX_CHUNKS = 10_000_000
export const FILE_MODES = [0o644, 0o755] as const

export interface ManifestFile {
  path: string
  mode: number
  size: number
  chunks: number[]
}

export interface ManifestChunk {
  hash: string
  size: number
}

export interface Manifest {
  _type: 'manifest'
  spec: 1
  hash: 'sha256'
  chunking: ChunkingParams
  size: number
  files: ManifestFile[]
  dirs: string[]
  chunks: ManifestChunk[]
}

const count = z.number().int().nonnegative()

const ManifestSchema = z.strictObject({
  _type: z.literal('manifest'),
  spec: z.literal(MANIFEST_SPEC),
  hash: z.literal('sha256'),
  chunking: z.strictObject({
    min: z.number().int().min(MIN_CHUNK_FLOOR),
    avg: z.number().int().positive(),
    max: z.number().int().max(MAX_CHUNK_CEILING)
  }),
  size: count,
  files: z.array(z.strictObject({
    path: z.string(),
    mode: z.union([z.literal(0o644), z.literal(0o755)]),
    size: count,
    chunks: z.array(count).max(MAX_CHUNKS)
  })).max(MAX_ENTRIES),
  dirs: z.array(z.string()).max(MAX_ENTRIES),
  chunks: z.array(z.strictObject({ hash: z.string(), size: z.number().int().positive() })).max(MAX_CHUNKS)
})

/** Canonical bytes of a manifest: what is hashed, signed, stored and sent. */
export function manifestBytes (m: Manifest): Buffer {
  return canonicalBytes(m)
}

/** The package digest: hex SHA-256 of the manifest's canonical bytes. */
export function manifestDigest (m: Manifest): string {
  return contentHashHex(manifestBytes(m))
}

/**
 * Validates a manifest from canonical bytes or a parsed value. Shape errors and inconsistent
 * numbers are BAD_MANIFEST, unsafe paths UNSAFE_PATH; every message names the field.
 */
export function parseManifest (input: Uint8Array | string | unknown): Manifest {
  let value = input
  if (typeof input === 'string' || input instanceof Uint8Array) {
    try {
      value = parseCanonical(input)
    } catch (err) {
      throw PatchswarmError.BAD_MANIFEST(`manifest bytes: ${(err as Error).message}`, err)
    }
  }
  const parsed = ManifestSchema.safeParse(value)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    throw PatchswarmError.BAD_MANIFEST(`${fieldName(issue.path)}: ${issue.message}`, parsed.error)
  }
  const m = parsed.data as Manifest
  checkSemantics(m)
  return m
}

function fieldName (at: ReadonlyArray<PropertyKey>): string {
  let s = 'manifest'
  for (const k of at) s += typeof k === 'number' ? `[${k}]` : `.${String(k)}`
  return s
}

function bad (field: string, msg: string): never {
  throw PatchswarmError.BAD_MANIFEST(`${field}: ${msg}`)
}

function checkSemantics (m: Manifest) {
  try {
    validateChunking(m.chunking)
  } catch (err) {
    bad('manifest.chunking', (err as Error).message)
  }
  const { max } = m.chunking

  const seen = new Set<string>()
  m.chunks.forEach((c, i) => {
    if (!isHashHex(c.hash)) bad(`manifest.chunks[${i}].hash`, 'must be 64 lower-case hex digits')
    if (c.size > max) bad(`manifest.chunks[${i}].size`, `${c.size} is larger than chunking.max ${max}`)
    if (seen.has(c.hash)) bad(`manifest.chunks[${i}].hash`, 'appears twice in the chunk table')
    seen.add(c.hash)
  })

  const dirs = new Set<string>()
  m.dirs.forEach((d, i) => {
    assertSafeRelativePath(d, `manifest.dirs[${i}]`)
    if (i > 0 && !(m.dirs[i - 1]! < d)) bad(`manifest.dirs[${i}]`, m.dirs[i - 1] === d ? 'duplicate directory' : 'dirs must be sorted by path')
    dirs.add(d)
  })
  m.dirs.forEach((d, i) => checkParents(d, dirs, `manifest.dirs[${i}]`))

  const used = new Uint8Array(m.chunks.length)
  let total = 0
  m.files.forEach((f, i) => {
    const field = `manifest.files[${i}]`
    assertSafeRelativePath(f.path, `${field}.path`)
    if (i > 0 && !(m.files[i - 1]!.path < f.path)) bad(`${field}.path`, m.files[i - 1]!.path === f.path ? 'duplicate path' : 'files must be sorted by path')
    if (dirs.has(f.path)) bad(`${field}.path`, 'is also listed as a directory')
    checkParents(f.path, dirs, `${field}.path`)
    let sum = 0
    f.chunks.forEach((ci, j) => {
      const c = m.chunks[ci]
      if (c === undefined) bad(`${field}.chunks[${j}]`, `index ${ci} is outside the chunk table (${m.chunks.length} chunks)`)
      used[ci] = 1
      sum += c.size
    })
    if (sum !== f.size) bad(`${field}.chunks`, `chunk sizes add up to ${sum}, but the file size is ${f.size}`)
    total += f.size
  })
  if (total !== m.size) bad('manifest.size', `files add up to ${total}, but size is ${m.size}`)
  const unused = used.indexOf(0)
  if (unused !== -1) bad(`manifest.chunks[${unused}]`, 'is not used by any file')
}

// Every ancestor must be a listed directory; a file path can then never be another entry's parent.
function checkParents (p: string, dirs: Set<string>, field: string) {
  for (let at = p.lastIndexOf('/'); at !== -1; at = p.lastIndexOf('/', at - 1)) {
    const parent = p.slice(0, at)
    if (!dirs.has(parent)) bad(field, `parent directory ${JSON.stringify(parent)} is not listed in dirs`)
  }
}

/** Where each chunk of a file lies in it. */
export interface Placement {
  path: string
  offset: number
  size: number
  /** Index into the manifest's chunk table. */
  chunk: number
}

/** Every placement of every chunk, in file order. */
export function placementsOf (m: Manifest): Placement[] {
  const out: Placement[] = []
  for (const f of m.files) {
    let offset = 0
    for (const ci of f.chunks) {
      const size = m.chunks[ci]!.size
      out.push({ path: f.path, offset, size, chunk: ci })
      offset += size
    }
  }
  return out
}

/** Builds a manifest entry by entry, in path order, deduplicating chunks as they come. */
export class ManifestBuilder {
  private readonly chunking: ChunkingParams
  private readonly files: ManifestFile[] = []
  private readonly dirs: string[] = []
  private readonly chunks: ManifestChunk[] = []
  private readonly index = new Map<string, number>()
  private size = 0

  constructor (chunking: Partial<ChunkingParams> = {}) {
    this.chunking = validateChunking(chunking)
  }

  addDir (path: string) {
    this.dirs.push(path)
  }

  addFile (path: string, mode: number, chunks: Iterable<{ hash: Uint8Array | string, size: number }>) {
    const indices: number[] = []
    let size = 0
    for (const c of chunks) {
      const hash = typeof c.hash === 'string' ? c.hash : Buffer.from(c.hash).toString('hex')
      let i = this.index.get(hash)
      if (i === undefined) {
        i = this.chunks.push({ hash, size: c.size }) - 1
        this.index.set(hash, i)
      }
      indices.push(i)
      size += c.size
    }
    this.files.push({ path, mode, size, chunks: indices })
    this.size += size
  }

  /** The finished manifest, validated as a receiver would. */
  finish (): Manifest {
    const byPath = <T> (key: (x: T) => string) => (a: T, b: T) => key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0
    const m: Manifest = {
      _type: 'manifest',
      spec: MANIFEST_SPEC,
      hash: 'sha256',
      chunking: { ...this.chunking },
      size: this.size,
      files: [...this.files].sort(byPath((f) => f.path)),
      dirs: [...this.dirs].sort(byPath((d) => d)),
      chunks: this.chunks
    }
    return parseManifest(m)
  }
}
