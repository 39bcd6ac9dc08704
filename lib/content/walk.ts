// Walks a publisher's source (one file or a directory tree) into a sorted list of entries.
// Only regular files and directories are packaged: a symlink could point anywhere on the
// publisher's machine (UNSAFE_PATH), and devices, FIFOs and sockets have no bytes to ship
// (BAD_ARGUMENT). Every relative path must pass the same check a receiver applies.
import fs from 'node:fs/promises'
import path from 'node:path'
import { PatchswarmError } from '../errors.js'
import { checkSafeRelativePath } from './paths.js'
import { ioError } from './chunker.js'

export interface SourceEntry {
  /** '/'-separated path inside the package. */
  path: string
  type: 'file' | 'dir'
  /** Where the entry is on disk. */
  abs: string
  /** 0o755 when the owner may execute the file, else 0o644; 0o755 for directories. */
  mode: number
  size: number
}

/** Normalized file mode: only the owner's execute bit survives (see manifest.ts). */
export function normalizeMode (mode: number): number {
  return (mode & 0o100) !== 0 ? 0o755 : 0o644
}

/**
 * Entries sorted by path (UTF-16 code unit order, the order of canonical JSON keys). A single file
 * becomes one entry named after its base name.
 */
export async function walkSource (source: string): Promise<SourceEntry[]> {
  const root = path.resolve(source)
  const st = await lstat(root)
  if (st.isFile()) {
    const name = path.basename(root)
    checkName(name, root)
    return [{ path: name, type: 'file', abs: root, mode: normalizeMode(st.mode), size: st.size }]
  }
  if (!st.isDirectory()) refuse(st, root)
  const out: SourceEntry[] = []
  await walkDir(root, '', out)
  return out.sort((a, b) => a.path < b.path ? -1 : a.path > b.path ? 1 : 0)
}

async function walkDir (abs: string, rel: string, out: SourceEntry[]): Promise<void> {
  let names: string[]
  try {
    names = await fs.readdir(abs)
  } catch (err) {
    throw ioError(err, abs)
  }
  for (const name of names) {
    const childAbs = path.join(abs, name)
    const childRel = rel ? `${rel}/${name}` : name
    checkName(childRel, childAbs)
    const st = await lstat(childAbs)
    if (st.isDirectory()) {
      out.push({ path: childRel, type: 'dir', abs: childAbs, mode: 0o755, size: 0 })
      await walkDir(childAbs, childRel, out)
    } else if (st.isFile()) {
      out.push({ path: childRel, type: 'file', abs: childAbs, mode: normalizeMode(st.mode), size: st.size })
    } else {
      refuse(st, childAbs)
    }
  }
}

function checkName (rel: string, abs: string) {
  const problem = checkSafeRelativePath(rel)
  if (problem) throw PatchswarmError.UNSAFE_PATH(`${abs}: ${problem}`)
}

function refuse (st: import('node:fs').Stats, abs: string): never {
  if (st.isSymbolicLink()) throw PatchswarmError.UNSAFE_PATH(`${abs} is a symbolic link; packages hold regular files and directories only`)
  throw PatchswarmError.BAD_ARGUMENT(`${abs} is not a regular file or directory (device, FIFO or socket); it cannot be packaged`)
}

async function lstat (p: string) {
  try {
    return await fs.lstat(p)
  } catch (err) {
    throw ioError(err, p)
  }
}
