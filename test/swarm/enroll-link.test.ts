// The pre-certificate enrollment link: one request, one answer, over a direct DHT connection.
import t from 'tap'
import { generateKeyPair, keyIdOf } from '../../lib/crypto/keys.js'
import { EnrollmentListener, enrollmentRequest } from '../../lib/swarm/enroll-link.js'
import { startTestnet } from '../../lib/swarm/transport.js'
import { PatchswarmError } from '../../lib/errors.js'

t.test('an agent reaches the console by its key; answers and coded refusals come back', async (t) => {
  const testnet = await startTestnet(3)
  t.teardown(() => testnet.destroy())
  const consoleKeys = generateKeyPair()
  const agentKeys = generateKeyPair()
  const seen: Array<{ request: unknown, remote: string }> = []
  const listener = new EnrollmentListener({
    bootstrap: testnet.bootstrap,
    host: '127.0.0.1',
    keyPair: consoleKeys,
    handle: async (request, remote) => {
      seen.push({ request, remote })
      if ((request as { bad?: boolean }).bad) throw PatchswarmError.TOKEN_EXPIRED('token t-1 expired')
      return { echo: request }
    }
  })
  t.teardown(() => listener.close())
  await listener.ready()

  const link = { bootstrap: testnet.bootstrap, host: '127.0.0.1', consoleKey: keyIdOf(consoleKeys.publicKey), keyPair: agentKeys, timeoutMs: 10_000 }
  t.same(await enrollmentRequest({ ...link, request: { hello: 1 } }), { echo: { hello: 1 } })
  t.equal(seen[0]!.remote, keyIdOf(agentKeys.publicKey), 'the console sees the agent key the Noise handshake proved')
  await t.rejects(enrollmentRequest({ ...link, request: { bad: true } }), { code: 'TOKEN_EXPIRED', message: /token t-1 expired/ })

  // A key nobody listens on: a clear error, not a hang.
  const started = Date.now()
  const err = await enrollmentRequest({ ...link, consoleKey: keyIdOf(generateKeyPair().publicKey), request: {}, timeoutMs: 3000 }).catch((e: PatchswarmError) => e)
  t.ok(err instanceof PatchswarmError && ['UNAVAILABLE', 'TIMEOUT'].includes(err.code), `coded error (${(err as Error).message})`)
  t.ok(Date.now() - started < 20_000, 'within the timeout, roughly')
})
