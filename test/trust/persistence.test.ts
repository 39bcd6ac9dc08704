import t from 'tap'
import { newDirective, releaseRef, rotateRoot, signEnvelope } from '../../lib/trust/index.js'
import { enrolled, rejects, release, signedRelease, baseRoot, keys, key, T0, LATER } from './helpers.js'

const linux = { platform: 'linux-x64' }

t.test('the trusted state survives a reopen, rollback floors included', async (t) => {
  const s = await enrolled(t)
  await s.state.updateRoot(await signEnvelope(rotateRoot(baseRoot()), [keys.root[0]!]))
  const v = await s.state.verifyRelease(await signedRelease(release({ version: 4, scope: 'msp-1' })), linux)
  const me = key(77).keyid
  const d = newDirective({
    org: 'acme', version: 9, issued: T0, expires: LATER,
    assignments: [
      { target: { tenant: 'msp-1', endpoints: [me] }, release: releaseRef(v.envelope), action: 'install' },
      { target: { tenant: 'msp-2' }, release: { ...releaseRef(v.envelope), manifest: 'b'.repeat(64) }, action: 'install' }
    ]
  })
  await s.state.verifyDirective(await signEnvelope(d, [keys.console[0]!]), { endpoint: { keyid: me, tenant: 'msp-1/a' } })

  const again = await s.reopen()
  t.equal(again.root!.version, 2)
  t.same(again.releases().map((r) => [r.release.name, r.release.version, r.envelopeHash]), [['firefox', 4, v.envelopeHash]])
  t.equal(again.directive!.directive.version, 9)
  t.same(again.directive!.assignments.map((a) => a.target.endpoints), [[me]], 'the endpoint view of the directive is restored')
  t.equal(again.releaseByHash(v.envelopeHash)!.release.manifest.digest, v.release.manifest.digest)

  await rejects(t, s.db, async () => again.verifyRelease(await signedRelease(release({ version: 3, scope: 'msp-1' })), linux), 'VERSION_ROLLBACK')
  await rejects(t, s.db, async () => again.verifyDirective(await signEnvelope({ ...d, version: 8 }, [keys.console[0]!])), 'VERSION_ROLLBACK')
  await rejects(t, s.db, async () => again.updateRoot(await signEnvelope(baseRoot(), [keys.root[0]!])), 'VERSION_ROLLBACK')
})

t.test('ready() is idempotent and a closed state refuses work', async (t) => {
  const s = await enrolled(t)
  await Promise.all([s.state.ready(), s.state.ready()])
  await s.state.close()
  await s.state.close()
  await rejects(t, s.db, async () => s.state.verifyRelease(await signedRelease(), linux), 'CLOSED')
})

t.test('concurrent verifications are serialised: the lower version loses', async (t) => {
  const s = await enrolled(t)
  const [e1, e2] = [await signedRelease(release({ version: 1 })), await signedRelease(release({ version: 2 }))]
  const results = await Promise.allSettled([s.state.verifyRelease(e2, linux), s.state.verifyRelease(e1, linux)])
  t.equal(results[0].status, 'fulfilled')
  t.equal(results[1].status === 'rejected' && (results[1].reason as { code: string }).code, 'VERSION_ROLLBACK')
  t.equal((await s.reopen()).releases()[0]!.release.version, 2)
})
