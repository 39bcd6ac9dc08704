// Reading and writing signed documents and keys for the CLI, with coded errors for every failure.
import fs from 'node:fs/promises'
import path from 'node:path'
import { PatchswarmError } from '../../lib/errors.js'
import { type Signer, keySigner } from '../../lib/crypto/keys.js'
import { readSecretKeyFile, readPublicKeyFile, writeAtomic } from '../../lib/crypto/keyfile.js'
import { type Envelope, parseEnvelope, serializeEnvelope } from '../../lib/trust/envelope.js'

export const MAX_DOCUMENT_BYTES = 16 * 1024 * 1024

export async function readFileBytes (file: string, what = 'file'): Promise<Buffer> {
  try {
    const stat = await fs.stat(file)
    if (!stat.isFile()) throw PatchswarmError.BAD_ARGUMENT(`${file} is not a file`)
    if (stat.size > MAX_DOCUMENT_BYTES) throw PatchswarmError.BAD_ARGUMENT(`${file} is larger than a ${what} can be`)
    return await fs.readFile(file)
  } catch (err) {
    if (err instanceof PatchswarmError) throw err
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw PatchswarmError.NOT_FOUND(`${what} ${file} does not exist`, err)
    throw PatchswarmError.IO_ERROR(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code}`, err)
  }
}

export async function readEnvelopeFile (file: string): Promise<Envelope<Record<string, unknown>>> {
  const bytes = await readFileBytes(file, 'document')
  return aboutFile(file, () => parseEnvelope(bytes))
}

/** Runs `fn`; a coded error it throws is re-thrown with the file's name in front of its message. */
export function aboutFile<T> (file: string, fn: () => T): T {
  try {
    return fn()
  } catch (err) {
    if (err instanceof PatchswarmError) throw new PatchswarmError(err.code, `${file}: ${err.detail}`, { cause: err })
    throw err
  }
}

export async function writeEnvelopeFile (file: string, envelope: Envelope, overwrite = false): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true })
  await writeAtomic(file, serializeEnvelope(envelope), 0o644, overwrite)
}

export async function loadSigners (files: string[]): Promise<Signer[]> {
  const signers: Signer[] = []
  for (const f of files) signers.push(keySigner(await readSecretKeyFile(f)))
  return signers
}

/** Public keys from public or secret key files; their key ids. */
export async function loadKeyIds (files: string[]): Promise<string[]> {
  const ids: string[] = []
  for (const f of files) ids.push((await readPublicKeyFile(f)).keyid)
  return ids
}

export function short (keyid: string): string {
  return keyid.slice(0, 12)
}
