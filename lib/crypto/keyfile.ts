// Key files: one small JSON document per key. Secret key files are written with mode 0600 and
// refused when group or others could read them; public key files may be shared freely.
import fs from 'node:fs/promises'
import path from 'node:path'
import { PatchswarmError } from '../errors.js'
import { type KeyPair, publicKeyOf, keyIdOf, isKeyId, publicKeyFromId, SECRET_KEY_BYTES } from './keys.js'

const SECRET_TYPE = 'patchswarm-secret-key'
const PUBLIC_TYPE = 'patchswarm-public-key'

export interface PublicKeyInfo {
  keyid: string
  publicKey: Buffer
  name?: string
}

export async function writeSecretKeyFile (file: string, keyPair: KeyPair, opts: { name?: string, overwrite?: boolean } = {}): Promise<void> {
  const doc = {
    type: SECRET_TYPE,
    algorithm: 'ed25519',
    ...(opts.name ? { name: opts.name } : {}),
    keyid: keyIdOf(keyPair.publicKey),
    secretKey: keyPair.secretKey.toString('hex')
  }
  await writeAtomic(file, JSON.stringify(doc, null, 2) + '\n', 0o600, opts.overwrite ?? false)
}

export async function writePublicKeyFile (file: string, publicKey: Uint8Array, opts: { name?: string, overwrite?: boolean } = {}): Promise<void> {
  const doc = { type: PUBLIC_TYPE, algorithm: 'ed25519', ...(opts.name ? { name: opts.name } : {}), keyid: keyIdOf(publicKey) }
  await writeAtomic(file, JSON.stringify(doc, null, 2) + '\n', 0o644, opts.overwrite ?? false)
}

export async function readSecretKeyFile (file: string): Promise<KeyPair & { name?: string }> {
  const { stat, doc } = await readKeyDoc(file)
  return secretKeyFromDoc(file, stat.mode, doc)
}

function secretKeyFromDoc (file: string, mode: number, doc: Record<string, unknown>): KeyPair & { name?: string } {
  if (process.platform !== 'win32' && (mode & 0o077) !== 0) {
    throw PatchswarmError.INSECURE_KEY_FILE(`${file} is readable by group or others (mode ${(mode & 0o777).toString(8)}); run chmod 600 on it`)
  }
  if (doc.type !== SECRET_TYPE) throw PatchswarmError.BAD_KEY_FILE(`${file} is not a secret key file`)
  if (doc.algorithm !== 'ed25519') throw PatchswarmError.BAD_KEY_FILE(`${file}: unsupported algorithm`)
  if (typeof doc.secretKey !== 'string' || !/^[0-9a-f]+$/.test(doc.secretKey) || doc.secretKey.length !== SECRET_KEY_BYTES * 2) {
    throw PatchswarmError.BAD_KEY_FILE(`${file}: secretKey must be ${SECRET_KEY_BYTES} bytes in hex`)
  }
  const secretKey = Buffer.from(doc.secretKey, 'hex')
  const publicKey = publicKeyOf(secretKey)
  if (doc.keyid !== keyIdOf(publicKey)) throw PatchswarmError.BAD_KEY_FILE(`${file}: keyid does not match the secret key`)
  return { publicKey, secretKey, ...(typeof doc.name === 'string' ? { name: doc.name } : {}) }
}

/** Reads a public key file, or the public half of a secret key file. */
export async function readPublicKeyFile (file: string): Promise<PublicKeyInfo> {
  const { publicKey, keyid, name } = await readKeyFile(file)
  return { keyid, publicKey, ...(name ? { name } : {}) }
}

/** Either kind of key file; `secretKey` is there when the file holds one. */
export async function readKeyFile (file: string): Promise<PublicKeyInfo & { secretKey?: Buffer }> {
  const { stat, doc } = await readKeyDoc(file)
  if (doc.type === SECRET_TYPE) {
    const kp = secretKeyFromDoc(file, stat.mode, doc)
    return { keyid: keyIdOf(kp.publicKey), ...kp }
  }
  if (doc.type !== PUBLIC_TYPE || doc.algorithm !== 'ed25519') throw PatchswarmError.BAD_KEY_FILE(`${file} is not a patchswarm key file`)
  if (!isKeyId(doc.keyid)) throw PatchswarmError.BAD_KEY_FILE(`${file}: keyid must be 32 bytes in hex`)
  return { keyid: doc.keyid, publicKey: publicKeyFromId(doc.keyid), ...(typeof doc.name === 'string' ? { name: doc.name } : {}) }
}

async function readKeyDoc (file: string) {
  let text: string
  let stat
  try {
    stat = await fs.stat(file)
    if (!stat.isFile()) throw PatchswarmError.BAD_KEY_FILE(`${file} is not a file`)
    if (stat.size > 64 * 1024) throw PatchswarmError.BAD_KEY_FILE(`${file} is too large for a key file`)
    text = await fs.readFile(file, 'utf8')
  } catch (err) {
    if (err instanceof PatchswarmError) throw err
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') throw PatchswarmError.NOT_FOUND(`key file ${file} does not exist`, err)
    throw PatchswarmError.IO_ERROR(`cannot read key file ${file}: ${code ?? (err as Error).message}`, err)
  }
  let doc: Record<string, unknown>
  try {
    doc = JSON.parse(text)
  } catch (err) {
    throw PatchswarmError.BAD_KEY_FILE(`${file} is not valid JSON`, err)
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw PatchswarmError.BAD_KEY_FILE(`${file} is not a key document`)
  return { stat, doc }
}

/** Write to a temporary file beside the target, fsync, then rename: a reader sees all or nothing. */
export async function writeAtomic (file: string, data: string | Uint8Array, mode: number, overwrite = true): Promise<void> {
  if (!overwrite) {
    try {
      await fs.access(file)
      throw PatchswarmError.ALREADY_EXISTS(`${file} exists; refusing to overwrite it`)
    } catch (err) {
      if (err instanceof PatchswarmError) throw err
    }
  }
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${Date.now()}.tmp`)
  try {
    const fh = await fs.open(tmp, 'wx', mode)
    try {
      await fh.writeFile(data)
      await fh.chmod(mode) // the umask may have narrowed or (on some systems) widened it
      await fh.sync()
    } finally {
      await fh.close()
    }
    await fs.rename(tmp, file)
  } catch (err) {
    await fs.rm(tmp, { force: true })
    if (err instanceof PatchswarmError) throw err
    throw PatchswarmError.IO_ERROR(`cannot write ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, err)
  }
}
