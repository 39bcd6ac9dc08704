import t from 'tap'
import { generateKeyPair } from '../../lib/crypto/keys.js'
import { newCertificate, signEnvelope, verifyCertificate, parseCertificate } from '../../lib/trust/index.js'
import { baseRoot, keys, key, T0, DAY } from './helpers.js'

const root = baseRoot()
const holder = generateKeyPair(Buffer.alloc(32, 99))

function cert (overrides: Partial<Parameters<typeof newCertificate>[0]> = {}) {
  return newCertificate({ org: root.org, holder: holder.publicKey, tenant: 'msp-1/customer-a', site: 'vienna', issued: T0, expires: new Date(T0.getTime() + 30 * DAY), ...overrides })
}

t.test('a console-signed certificate for the key on the connection verifies', async (t) => {
  const env = await signEnvelope(cert(), keys.console)
  const id = verifyCertificate(root, env, { now: T0, remotePublicKey: holder.publicKey })
  t.same(id, { keyid: holder.publicKey.toString('hex'), org: root.org, tenant: 'msp-1/customer-a', site: 'vienna', role: 'endpoint' })
})

t.test('refusals carry their codes', async (t) => {
  const now = T0
  const remotePublicKey = holder.publicKey
  t.throws(() => verifyCertificate(root, { signed: cert(), signatures: [] }, { now, remotePublicKey }), { code: 'THRESHOLD_NOT_MET' }, 'unsigned')
  const byRelease = await signEnvelope(cert(), keys.release)
  t.throws(() => verifyCertificate(root, byRelease, { now, remotePublicKey }), { code: 'THRESHOLD_NOT_MET' }, 'release keys cannot enroll')
  const otherOrg = await signEnvelope(cert({ org: 'evil-corp' }), keys.console)
  t.throws(() => verifyCertificate(root, otherOrg, { now, remotePublicKey }), { code: 'WRONG_ORGANISATION' })
  const good = await signEnvelope(cert(), keys.console)
  t.throws(() => verifyCertificate(root, good, { now, remotePublicKey: generateKeyPair().publicKey }), { code: 'WRONG_HOLDER' }, 'stolen certificate on another key')
  t.throws(() => verifyCertificate(root, good, { now: new Date(T0.getTime() + 31 * DAY), remotePublicKey }), { code: 'EXPIRED' })
  const forged = await signEnvelope(cert(), [key(77)])
  t.throws(() => verifyCertificate(root, forged, { now, remotePublicKey }), { code: 'THRESHOLD_NOT_MET' }, 'self-made certificate')
})

t.test('certificate fields are validated', async (t) => {
  t.throws(() => cert({ tenant: '../x' }), { code: 'UNSAFE_PATH' })
  t.throws(() => cert({ site: 'a/b' }), { code: 'UNSAFE_PATH' })
  t.throws(() => parseCertificate({ ...cert(), role: 'admin' }), { code: 'BAD_DOCUMENT' })
  t.throws(() => cert({ issued: new Date(T0.getTime() + 40 * DAY) }), { code: 'BAD_DOCUMENT' })
  t.equal(cert({ site: null }).site, null)
})
