// The few sodium-native calls patchswarm uses (no maintained types exist for v5).
declare module 'sodium-native' {
  type Bytes = Uint8Array
  const sodium: {
    crypto_sign_PUBLICKEYBYTES: number
    crypto_sign_SECRETKEYBYTES: number
    crypto_sign_SEEDBYTES: number
    crypto_sign_BYTES: number
    crypto_generichash_BYTES: number
    crypto_sign_keypair(pk: Bytes, sk: Bytes): void
    crypto_sign_seed_keypair(pk: Bytes, sk: Bytes, seed: Bytes): void
    crypto_sign_detached(sig: Bytes, message: Bytes, sk: Bytes): void
    crypto_sign_verify_detached(sig: Bytes, message: Bytes, pk: Bytes): boolean
    crypto_sign_ed25519_sk_to_pk(pk: Bytes, sk: Bytes): void
    crypto_generichash(out: Bytes, input: Bytes, key?: Bytes): void
    randombytes_buf(buf: Bytes): void
    sodium_memzero(buf: Bytes): void
    sodium_malloc(size: number): Buffer
  }
  export default sodium
}
