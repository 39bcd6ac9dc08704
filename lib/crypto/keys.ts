// Ed25519 key pairs and detached signatures (sodium-native). A key's id is its public key in hex:
// self-describing, so an id can never point at the wrong key.
import sodium from 'sodium-native'
import b4a from 'b4a'
import { PatchswarmError } from '../errors.js'

export const PUBLIC_KEY_BYTES = sodium.crypto_sign_PUBLICKEYBYTES
export const SECRET_KEY_BYTES = sodium.crypto_sign_SECRETKEYBYTES
export const SIGNATURE_BYTES = sodium.crypto_sign_BYTES

export interface KeyPair {
  publicKey: Buffer
  secretKey: Buffer
}

/** Anything that can sign: an in-memory key, a hardware token, a remote signing service. */
export interface Signer {
  readonly keyid: string
  sign (message: Uint8Array): Uint8Array | Promise<Uint8Array>
}

export function generateKeyPair (seed?: Uint8Array): KeyPair {
  const publicKey = b4a.alloc(PUBLIC_KEY_BYTES) as Buffer
  const secretKey = b4a.alloc(SECRET_KEY_BYTES) as Buffer
  if (seed) {
    if (seed.byteLength !== sodium.crypto_sign_SEEDBYTES) throw PatchswarmError.BAD_ARGUMENT(`seed must be ${sodium.crypto_sign_SEEDBYTES} bytes`)
    sodium.crypto_sign_seed_keypair(publicKey, secretKey, seed)
  } else {
    sodium.crypto_sign_keypair(publicKey, secretKey)
  }
  return { publicKey, secretKey }
}

export function publicKeyOf (secretKey: Uint8Array): Buffer {
  if (secretKey.byteLength !== SECRET_KEY_BYTES) throw PatchswarmError.BAD_ARGUMENT(`secret key must be ${SECRET_KEY_BYTES} bytes`)
  const pk = b4a.alloc(PUBLIC_KEY_BYTES) as Buffer
  sodium.crypto_sign_ed25519_sk_to_pk(pk, secretKey)
  return pk
}

export function sign (message: Uint8Array, secretKey: Uint8Array): Buffer {
  if (secretKey.byteLength !== SECRET_KEY_BYTES) throw PatchswarmError.BAD_ARGUMENT(`secret key must be ${SECRET_KEY_BYTES} bytes`)
  const sig = b4a.alloc(SIGNATURE_BYTES) as Buffer
  sodium.crypto_sign_detached(sig, message, secretKey)
  return sig
}

/** True only for a valid signature; wrong sizes are simply false, never a throw. */
export function verify (signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  if (signature.byteLength !== SIGNATURE_BYTES || publicKey.byteLength !== PUBLIC_KEY_BYTES) return false
  return sodium.crypto_sign_verify_detached(signature, message, publicKey)
}

export function keyIdOf (publicKey: Uint8Array): string {
  return b4a.toString(publicKey, 'hex')
}

const KEYID = /^[0-9a-f]{64}$/

export function isKeyId (s: unknown): s is string {
  return typeof s === 'string' && KEYID.test(s)
}

export function publicKeyFromId (keyid: string): Buffer {
  if (!isKeyId(keyid)) throw PatchswarmError.BAD_ARGUMENT(`not a key id: ${JSON.stringify(keyid).slice(0, 80)}`)
  return b4a.from(keyid, 'hex') as Buffer
}

/** A Signer over a key pair held in memory. */
export function keySigner (keyPair: KeyPair): Signer {
  const keyid = keyIdOf(keyPair.publicKey)
  return { keyid, sign: (message) => sign(message, keyPair.secretKey) }
}
