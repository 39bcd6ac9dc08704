// Opening LevelDB: one place that turns the library's lock and I/O errors into our codes.
import fs from 'node:fs/promises'
import { Level } from 'level'
import { PatchswarmError } from '../errors.js'

export type Database = Level<string, unknown>
import type { AbstractSublevel } from 'abstract-level'

export type Sublevel = AbstractSublevel<Database, string | Buffer | Uint8Array, string, unknown>

export async function openDatabase (location: string): Promise<Database> {
  try {
    await fs.mkdir(location, { recursive: true })
  } catch (err) {
    throw PatchswarmError.IO_ERROR(`cannot create ${location}: ${(err as NodeJS.ErrnoException).code}`, err)
  }
  const db = new Level<string, unknown>(location, { valueEncoding: 'json' })
  try {
    await db.open()
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause
    if (cause?.code === 'LEVEL_LOCKED') throw PatchswarmError.IN_USE(`the database at ${location} is already in use by another process`, err)
    throw PatchswarmError.IO_ERROR(`cannot open the database at ${location}: ${(err as Error).message}`, err)
  }
  return db
}

/** A JSON sublevel, the usual way parts of the library keep their own key space. */
export function sublevel (db: Database, name: string): Sublevel {
  return db.sublevel<string, unknown>(name, { valueEncoding: 'json' })
}
