// One console and one agent on a local testnet, end to end: enrollment over the enrollment link,
// a release published by the console (origin), a rollout, the agent's download and install, and
// its signed reports arriving at the console until the rollout completes.
import t, { type Test } from 'tap'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { startTestnet } from '../../lib/swarm/transport.js'
import { ConsoleSwarm } from '../../lib/console/console-swarm.js'
import { AdminApi } from '../../lib/console/api.js'
import { makeConsoleOrg, openConsole, OWNER } from '../../fixtures/console-org.js'
import { enrollAgent } from '../../agent/enroll.js'
import { Agent } from '../../agent/agent.js'
import { readAgentStatus } from '../../agent/status.js'
import { sshKey } from '../fleet/helpers.js'

async function until (what: string, fn: () => Promise<boolean> | boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms
  while (!await fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** A local testnet and a console on it with msp-1 › acme; the folder goes after everything closed. */
async function consoleOnSwarm (t: Test) {
  const testnet = await startTestnet(3)
  t.teardown(() => testnet.destroy())
  // A temporary folder removed after the agent and console closed (teardowns run in order).
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ps-e2e-'))
  const org = await makeConsoleOrg()
  const console = await openConsole(org, path.join(dir, 'console'), { tickMs: 200 })
  t.teardown(() => console.close())
  const swarm = new ConsoleSwarm(console, org.consoleKey.secretKey, { dataDir: path.join(dir, 'console'), bootstrap: testnet.bootstrap, host: '127.0.0.1' })
  t.teardown(() => swarm.close())
  await swarm.ready()
  const api = new AdminApi(console)
  await console.fleet.bootstrapOwner({ id: OWNER, sshKey: sshKey() })
  await console.fleet.createTenant(OWNER, { parent: '', name: 'msp-1', kind: 'msp' })
  await console.fleet.createTenant(OWNER, { parent: 'msp-1', name: 'acme', kind: 'customer' })
  return { testnet, dir, org, console, swarm, api }
}

t.test('console and agent: enroll, roll out, install, report', async (t) => {
  const { testnet, dir, org, console, swarm, api } = await consoleOnSwarm(t)
  await console.fleet.createTenant(OWNER, { parent: 'msp-1/acme', name: 'office', kind: 'group' })
  const { token } = await api.endpoints.createToken(OWNER, { scope: 'msp-1/acme/office', expiresAt: new Date(Date.now() + 3600_000), maxUses: 1, autoApprove: true })

  // The package: a script that leaves a mark where the test can see it.
  const pkg = path.join(dir, 'pkg')
  await fs.mkdir(pkg)
  const mark = path.join(dir, 'installed.txt')
  await fs.writeFile(path.join(pkg, 'install.sh'), `#!/bin/sh\necho "installed $PATCHSWARM_STEP" >> ${mark}\n`, { mode: 0o755 })
  await fs.writeFile(path.join(pkg, 'health.sh'), `#!/bin/sh\ngrep -q installed ${mark}\n`, { mode: 0o755 })
  const { manifest, digest } = await swarm.store.importSource(pkg)
  const release = await org.release('hello', '1.0.0', { risk: 'critical', manifest: { digest, size: manifest.size }, install: { type: 'exec', argv: ['install.sh'], health: ['health.sh'] }, platform: 'linux' })
  const view = await api.releases.add(OWNER, release)
  await swarm.publish(view.hash, pkg)
  await api.releases.approve(OWNER, view.hash, 'msp-1/acme')

  const agentDir = path.join(dir, 'agent')
  const enrolled = await enrollAgent({ dir: agentDir, token, bootstrap: testnet.bootstrap, host: '127.0.0.1', hostname: 'pc-1', timeoutMs: 10_000 })
  t.equal(enrolled.status, 'approved')
  const agent = await Agent.open(agentDir, { checkInMs: 300, inventory: true })
  t.teardown(() => agent.close())
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }))
  await agent.start()

  await api.rollouts.create(OWNER, { id: 'hello-1', release: view.hash, target: { tenant: 'msp-1/acme' }, phases: [{ name: 'all', successThreshold: 1, errorThreshold: 0.5, minSoakMinutes: 0 }] })
  await until('the rollout to complete', async () => (await api.rollouts.get(OWNER, 'hello-1')).state === 'completed')
  t.match(await fs.readFile(mark, 'utf8'), /installed install/, 'the install script ran')
  const record = console.views.patchRecord(agent.keyid, view.hash)!
  t.equal(record.state, 'installed')
  await until('the outbox to drain', async () => (await agent.outbox.stats()).pending === 0)
  const kpis = await api.reports.kpis(OWNER, 'msp-1')
  t.equal(kpis.compliant, 1)
  t.ok(kpis.bytes.origin > 0, 'bytes by source reached the console')
  t.same(console.ingestor.counters.rejected, {}, 'nothing the agent sent was rejected')
  const swarmStatus = await api.swarm.status(OWNER)
  t.match(swarmStatus, { online: true, keyid: swarm.keyid, bans: [] }, 'the console\'s swarm node, as the admin API shows it')
  t.match(swarmStatus.peers.find((p) => p.keyid === agent.keyid), { role: 'endpoint', tenant: 'msp-1/acme/office', hostname: 'pc-1' }, 'the agent is one of its peers')

  // agent status works while the agent holds its database, from what it publishes.
  await until('status.json to show the install', async () => (await readAgentStatus(agentDir)).live?.jobs.some((j) => j.state === 'installed') === true)
  const status = await readAgentStatus(agentDir)
  t.equal(status.database, 'in-use')
  t.equal(status.live?.running, true)
  t.equal(status.live?.window, null, 'no windows set: installs may run any time')
})

// Reports go out when they are stored, not at the next check-in (by default up to 15 minutes
// away): an agent on the default schedule that starts, connects and then stores its inventory
// has the console hold both events within seconds, with nothing left in its outbox.
t.test('an agent on the default check-in schedule reports its start and its inventory at once', async (t) => {
  const { testnet, dir, console, api } = await consoleOnSwarm(t)
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
