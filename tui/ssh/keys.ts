// SSH keys for the console's SSH front door: the server's host key (ed25519, generated once and
// kept in a 0600 file), OpenSSH encodings of ed25519 keys (ssh2 reads OpenSSH private keys but not
// node's PKCS8 PEM), and OpenSSH-style fingerprints for audit lines and first-connection checks.
import { createHash, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'
import ssh2 from 'ssh2'
import { PatchswarmError } from '../../lib/errors.js'
import { writeAtomic } from '../../lib/crypto/keyfile.js'

export interface SshKeyPair {
  /** `-----BEGIN OPENSSH PRIVATE KEY-----` (unencrypted), as ssh-keygen writes it. */
  privateKey: string
  /** The public key line: `ssh-ed25519 AAAA… comment`. */
  publicKey: string
  /** `SHA256:…` as `ssh-keygen -l` prints it. */
  fingerprint: string
}

export interface HostKey extends SshKeyPair {
  /** Whether this call generated the key (the first start). */
  created: boolean
}

function sshString (data: Buffer | string): Buffer {
  const body = typeof data === 'string' ? Buffer.from(data) : data
  const len = Buffer.alloc(4)
  len.writeUInt32BE(body.length)
  return Buffer.concat([len, body])
}

function uint32 (n: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n)
  return b
}

/** `SHA256:<base64 without padding>` of an SSH public key blob, as OpenSSH prints it. */
export function sshFingerprint (blob: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')
}

/** The OpenSSH encodings of an ed25519 key pair made by node:crypto. */
export function ed25519ToOpenSsh (privateKey: KeyObject, comment = ''): SshKeyPair {
  if (privateKey.asymmetricKeyType !== 'ed25519' || privateKey.type !== 'private') throw PatchswarmError.BAD_ARGUMENT('expected an ed25519 private key')
  const jwk = privateKey.export({ format: 'jwk' })
  const seed = Buffer.from(jwk.d!, 'base64url')
  const pub = Buffer.from(jwk.x!, 'base64url')
  const blob = Buffer.concat([sshString('ssh-ed25519'), sshString(pub)])
  // PROTOCOL.key: two equal check words, the key, its comment, then padding 1, 2, 3… to 8 bytes.
  const check = randomBytes(4)
  let secret = Buffer.concat([check, check, sshString('ssh-ed25519'), sshString(pub), sshString(Buffer.concat([seed, pub])), sshString(comment)])
  const pad = (8 - (secret.length % 8)) % 8
  secret = Buffer.concat([secret, Buffer.from(Array.from({ length: pad }, (_, i) => i + 1))])
  const body = Buffer.concat([
    Buffer.from('openssh-key-v1\0', 'latin1'),
    sshString('none'), sshString('none'), sshString(''),
    uint32(1), sshString(blob), sshString(secret)
  ])
  const b64 = body.toString('base64').replace(/.{1,70}/g, '$&\n')
  return {
    privateKey: `-----BEGIN OPENSSH PRIVATE KEY-----\n${b64}-----END OPENSSH PRIVATE KEY-----\n`,
    publicKey: `ssh-ed25519 ${blob.toString('base64')}${comment ? ' ' + comment : ''}`,
    fingerprint: sshFingerprint(blob)
  }
}

/** A fresh ed25519 key pair in OpenSSH encodings. */
export function generateSshKey (comment = ''): SshKeyPair {
  return ed25519ToOpenSsh(generateKeyPairSync('ed25519').privateKey, comment)
}

/** Reads a private key ssh2 understands; BAD_KEY_FILE if it is not one. */
function describePrivateKey (text: string, where: string): SshKeyPair {
  let parsed = ssh2.utils.parseKey(text)
  if (Array.isArray(parsed)) parsed = parsed[0]!
  if (parsed instanceof Error || parsed.getPrivatePEM() === null) {
    throw PatchswarmError.BAD_KEY_FILE(`${where} is not an unencrypted SSH private key${parsed instanceof Error ? ` (${parsed.message})` : ''}`)
  }
  const blob = parsed.getPublicSSH()
  const comment = parsed.comment ? ' ' + parsed.comment : ''
  return { privateKey: text, publicKey: `${parsed.type} ${blob.toString('base64')}${comment}`, fingerprint: sshFingerprint(blob) }
}

/**
 * The SSH host key kept in `file`: read when it exists (refused with INSECURE_KEY_FILE when group
 * or others may read it), otherwise generated (ed25519) and written with mode 0600, its folder
 * created with 0700. Two processes racing on the first start end up with the same key.
 */
export async function loadOrCreateHostKey (file: string): Promise<HostKey> {
  const read = async (): Promise<HostKey | undefined> => {
    let handle: fs.FileHandle
    try {
      handle = await fs.open(file, 'r')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw PatchswarmError.IO_ERROR(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, err)
    }
    try {
      const stat = await handle.stat()
      if (!stat.isFile()) throw PatchswarmError.BAD_KEY_FILE(`${file} is not a file`)
      if (process.platform !== 'win32' && (stat.mode & 0o077) !== 0) {
        throw PatchswarmError.INSECURE_KEY_FILE(`${file} is readable by group or others (mode ${(stat.mode & 0o777).toString(8)}); run chmod 600 on it`)
      }
      if (stat.size > 64 * 1024) throw PatchswarmError.BAD_KEY_FILE(`${file} is too large for a key`)
      return { ...describePrivateKey(await handle.readFile('utf8'), file), created: false }
    } finally {
      await handle.close()
    }
  }
  const existing = await read()
  if (existing) return existing
  await fs.mkdir(path.dirname(path.resolve(file)), { recursive: true, mode: 0o700 })
  const key = generateSshKey('patchswarm-console')
  try {
    await writeAtomic(file, key.privateKey, 0o600, false)
  } catch (err) {
    if ((err as PatchswarmError).code !== 'ALREADY_EXISTS') throw err
    const other = await read()
    if (other) return other
    throw err
  }
  return { ...key, created: true }
}
