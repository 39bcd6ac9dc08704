// Reports go out when they are stored, not at the next check-in (by default up to 15 minutes
// away): an agent on the default schedule that starts, connects and then stores its inventory
// has the console hold both events within seconds, with nothing left in its outbox.
import t from 'tap'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { startTestnet } from '../../lib/swarm/transport.js'
import { ConsoleSwarm } from '../../lib/console/console-swarm.js'
import { AdminApi } from '../../lib/console/api.js'
import { makeConsoleOrg, openConsole, OWNER } from '../../fixtures/console-org.js'
import { enrollAgent } from '../../agent/enroll.js'
import { Agent } from '../../agent/agent.js'
import { sshKey } from '../fleet/helpers.js'

async function until (what: string, fn: () => Promise<boolean>, ms: number): Promise<void> {
  const end = Date.now() + ms
  while (!await fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

t.test('an agent on the default check-in schedule reports its start and its inventory at once', async (t) => {
  const testnet = await startTestnet(3)
  t.teardown(() => testnet.destroy())
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ps-prompt-'))
  const org = await makeConsoleOrg()
  const console = await openConsole(org, path.join(dir, 'console'))
  t.teardown(() => console.close())
  const swarm = new ConsoleSwarm(console, org.consoleKey.secretKey, { dataDir: path.join(dir, 'console'), bootstrap: testnet.bootstrap, host: '127.0.0.1' })
  t.teardown(() => swarm.close())
  await swarm.ready()
  const api = new AdminApi(console)
  await console.fleet.bootstrapOwner({ id: OWNER, sshKey: sshKey() })
  await console.fleet.createTenant(OWNER, { parent: '', name: 'msp-1', kind: 'msp' })
  await console.fleet.createTenant(OWNER, { parent: 'msp-1', name: 'acme', kind: 'customer' })
  const { token } = await api.endpoints.createToken(OWNER, { scope: 'msp-1/acme', expiresAt: new Date(Date.now() + 3600_000), maxUses: 1, autoApprove: true })
  const agentDir = path.join(dir, 'agent')
  await enrollAgent({ dir: agentDir, token, bootstrap: testnet.bootstrap, host: '127.0.0.1', hostname: 'pc-1', timeoutMs: 10_000 })
  // No checkInMs: the configured cron (every 15 minutes, with jitter) is the only check-in.
  const agent = await Agent.open(agentDir, { inventory: true })
  t.teardown(() => agent.close())
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }))
  await agent.start()
  await until('the console to hold started and inventory', async () => (await console.ingestor.endpointState(agent.keyid)).last >= 2, 20_000)
  await until('the outbox to drain', async () => (await agent.outbox.stats()).pending === 0, 20_000)
  t.pass('both events arrived and were acknowledged without a check-in')
})
