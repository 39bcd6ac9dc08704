import t from 'tap'
import fs from 'node:fs/promises'
import path from 'node:path'
import { generateKeyPair, keyIdOf } from '../../lib/crypto/keys.js'
import { writeSecretKeyFile, readSecretKeyFile, writePublicKeyFile, readPublicKeyFile } from '../../lib/crypto/keyfile.js'

t.test('secret key files are 0600 and round-trip', async (t) => {
  const dir = t.testdir()
  const file = path.join(dir, 'release.key')
  const kp = generateKeyPair()
  await writeSecretKeyFile(file, kp, { name: 'alice' })
  t.equal((await fs.stat(file)).mode & 0o777, 0o600)
  const back = await readSecretKeyFile(file)
  t.same(back.publicKey, kp.publicKey)
  t.equal(back.name, 'alice')
  const pub = await readPublicKeyFile(file)
  t.equal(pub.keyid, keyIdOf(kp.publicKey))
  await t.rejects(writeSecretKeyFile(file, generateKeyPair()), { code: 'ALREADY_EXISTS' })
  t.same((await readSecretKeyFile(file)).publicKey, kp.publicKey, 'refused overwrite left the key alone')
  t.same((await fs.readdir(dir)).sort(), ['release.key'], 'no temporary files left')
})

t.test('a key file readable by others is refused', async (t) => {
  const file = path.join(t.testdir(), 'k.key')
  await writeSecretKeyFile(file, generateKeyPair())
  await fs.chmod(file, 0o644)
  await t.rejects(readSecretKeyFile(file), { code: 'INSECURE_KEY_FILE' })
  await fs.chmod(file, 0o640)
  await t.rejects(readSecretKeyFile(file), { code: 'INSECURE_KEY_FILE' })
})

t.test('corrupt key files give BAD_KEY_FILE', async (t) => {
  const dir = t.testdir()
  const kp = generateKeyPair()
  const good = { type: 'patchswarm-secret-key', algorithm: 'ed25519', keyid: keyIdOf(kp.publicKey), secretKey: kp.secretKey.toString('hex') }
  const cases: Record<string, string> = {
    truncated: JSON.stringify(good).slice(0, 40),
    notjson: 'hello',
    array: '[]',
    wrongtype: JSON.stringify({ ...good, type: 'x' }),
    shortkey: JSON.stringify({ ...good, secretKey: 'abcd' }),
    wrongid: JSON.stringify({ ...good, keyid: keyIdOf(generateKeyPair().publicKey) }),
    algorithm: JSON.stringify({ ...good, algorithm: 'rsa' })
  }
  for (const [name, text] of Object.entries(cases)) {
    const file = path.join(dir, name)
    await fs.writeFile(file, text, { mode: 0o600 })
    await t.rejects(readSecretKeyFile(file), { code: 'BAD_KEY_FILE' }, name)
  }
  await t.rejects(readSecretKeyFile(path.join(dir, 'missing')), { code: 'NOT_FOUND' })
  await t.rejects(readSecretKeyFile(dir), { code: 'BAD_KEY_FILE' }, 'a directory')
})

t.test('public key files', async (t) => {
  const file = path.join(t.testdir(), 'k.pub')
  const kp = generateKeyPair()
  await writePublicKeyFile(file, kp.publicKey, { name: 'bob' })
  const pub = await readPublicKeyFile(file)
  t.same(pub.publicKey, kp.publicKey)
  t.equal(pub.name, 'bob')
  await fs.writeFile(file, JSON.stringify({ type: 'patchswarm-public-key', algorithm: 'ed25519', keyid: 'nothex' }))
  await t.rejects(readPublicKeyFile(file), { code: 'BAD_KEY_FILE' })
})
