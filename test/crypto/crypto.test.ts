import t from 'tap'
import fs from 'node:fs/promises'
import path from 'node:path'
import {
  generateKeyPair, sign, verify, keyIdOf, publicKeyOf, keySigner, publicKeyFromId,
  contentHash, contentHashOf, contentHashHex, isHashHex
} from '../../lib/crypto/index.js'
import { PatchswarmError, isPatchswarmError } from '../../lib/errors.js'

t.test('errors carry a stable code and say it first', async (t) => {
  const err = PatchswarmError.EXPIRED('root v3 expired')
  t.equal(err.code, 'EXPIRED')
  t.equal(err.message, 'EXPIRED: root v3 expired')
  t.ok(isPatchswarmError(err, 'EXPIRED'))
  t.notOk(isPatchswarmError(err, 'NOT_FOUND'))
  t.notOk(isPatchswarmError(new Error('x')))
})

t.test('Ed25519 sign and verify', async (t) => {
  const kp = generateKeyPair()
  const msg = Buffer.from('patch tuesday')
  const sig = sign(msg, kp.secretKey)
  t.equal(sig.length, 64)
  t.ok(verify(sig, msg, kp.publicKey))
  t.notOk(verify(sig, Buffer.from('patch wednesday'), kp.publicKey), 'other message')
  t.notOk(verify(sig, msg, generateKeyPair().publicKey), 'other key')
  const flipped = Buffer.from(sig); flipped[10]! ^= 1
  t.notOk(verify(flipped, msg, kp.publicKey), 'flipped bit')
  t.notOk(verify(sig.subarray(0, 63), msg, kp.publicKey), 'short signature is false, not a throw')
  t.notOk(verify(sig, msg, Buffer.alloc(5)), 'short key is false, not a throw')
  t.same(publicKeyOf(kp.secretKey), kp.publicKey)
  t.same(publicKeyFromId(keyIdOf(kp.publicKey)), kp.publicKey)
  t.throws(() => publicKeyFromId('zz'), { code: 'BAD_ARGUMENT' })
  t.throws(() => sign(msg, Buffer.alloc(3)), { code: 'BAD_ARGUMENT' })
  const signer = keySigner(kp)
  t.equal(signer.keyid, keyIdOf(kp.publicKey))
  t.ok(verify(await signer.sign(msg), msg, kp.publicKey))
})

t.test('seeded key pairs are deterministic', async (t) => {
  const seed = Buffer.alloc(32, 7)
  t.same(generateKeyPair(seed).publicKey, generateKeyPair(seed).publicKey)
  t.throws(() => generateKeyPair(Buffer.alloc(3)), { code: 'BAD_ARGUMENT' })
})

t.test('content hash is SHA-256', async (t) => {
  // FIPS 180-2 test vector
  t.equal(contentHashHex(Buffer.from('abc')), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
  t.same(contentHashOf([Buffer.from('a'), Buffer.from('bc')]), contentHash(Buffer.from('abc')))
  t.ok(isHashHex(contentHashHex(Buffer.alloc(0))))
  t.notOk(isHashHex('ABC'))
})
