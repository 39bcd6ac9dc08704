// The outbox across an outage: a console and an agent on a local testnet; the console leaves the
// swarm (its ConsoleSwarm closes, the Console and its LevelDB stay) while the agent installs, and
// the agent itself restarts while the console is away. Once the console is back on the swarm, every
// event the agent signed reaches the console's log exactly once, in seq order, and nothing is
// rejected: no report lost, none accepted twice, order per endpoint kept.
import t from 'tap'
import fs from 'node:fs/promises'
import path from 'node:path'
import { startTestnet, type LocalTestnet } from '../../lib/swarm/transport.js'
import type { Console } from '../../lib/console/console.js'
import { ConsoleSwarm } from '../../lib/console/console-swarm.js'
import { AdminApi } from '../../lib/console/api.js'
import type { ReportEntry } from '../../lib/report/facts.js'
import { serializeEnvelope } from '../../lib/trust/envelope.js'
import { makeConsoleOrg, openConsole, OWNER } from '../../fixtures/console-org.js'
import { enrollAgent } from '../../agent/enroll.js'
import { Agent } from '../../agent/agent.js'
import { sshKey } from '../fleet/helpers.js'

async function until (what: string, fn: () => Promise<boolean> | boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms
  while (!await fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

t.test('console unreachable for a while: no report lost, none twice, order kept', async (t) => {
  let testnet: LocalTestnet | null = null
  let console: Console | null = null
  let swarm: ConsoleSwarm | null = null
  let agent: Agent | null = null
  // Registered before t.testdir(), so it runs first: agent, swarm, console, DHT, then the folder.
  t.teardown(async () => {
    await agent?.close()
    await swarm?.close()
    await console?.close()
    await testnet?.destroy()
  })
  const dir = t.testdir()
  testnet = await startTestnet(3)
  const org = await makeConsoleOrg()
  const consoleDir = path.join(dir, 'console')
  console = await openConsole(org, consoleDir, { tickMs: 200 })
  const swarmOpts = { dataDir: consoleDir, bootstrap: testnet.bootstrap, host: '127.0.0.1' }
  swarm = new ConsoleSwarm(console, org.consoleKey.secretKey, swarmOpts)
  await swarm.ready()

  const api = new AdminApi(console)
  await console.fleet.bootstrapOwner({ id: OWNER, sshKey: sshKey() })
  await console.fleet.createTenant(OWNER, { parent: '', name: 'msp-1', kind: 'msp' })
  await console.fleet.createTenant(OWNER, { parent: 'msp-1', name: 'acme', kind: 'customer' })
  const { token } = await api.endpoints.createToken(OWNER, { scope: 'msp-1/acme', expiresAt: new Date(Date.now() + 3600_000), maxUses: 1, autoApprove: true })

  // The install waits for a file the test creates once the console is gone, so the install's
  // events are signed while nobody can take them.
  const pkg = path.join(dir, 'pkg')
  await fs.mkdir(pkg)
  const go = path.join(dir, 'go')
  const mark = path.join(dir, 'installed.txt')
  await fs.writeFile(path.join(pkg, 'install.sh'), `#!/bin/sh
i=0
while [ ! -f ${go} ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done
[ -f ${go} ] || exit 7
echo installed >> ${mark}
`, { mode: 0o755 })
  await fs.writeFile(path.join(pkg, 'health.sh'), `#!/bin/sh\ngrep -q installed ${mark}\n`, { mode: 0o755 })
  const { manifest, digest } = await swarm.store.importSource(pkg)
  const release = await org.release('offline', '1.0.0', { risk: 'critical', manifest: { digest, size: manifest.size }, install: { type: 'exec', argv: ['install.sh'], health: ['health.sh'] }, platform: 'linux' })
  const view = await api.releases.add(OWNER, release)
  await swarm.publish(view.hash, pkg)
  await api.releases.approve(OWNER, view.hash, 'msp-1/acme')

  const agentDir = path.join(dir, 'agent')
  const enrolled = await enrollAgent({ dir: agentDir, token, bootstrap: testnet.bootstrap, host: '127.0.0.1', hostname: 'pc-offline', timeoutMs: 10_000 })
  t.equal(enrolled.status, 'approved', 'the agent enrolled (auto-approve token)')
  agent = await Agent.open(agentDir, { checkInMs: 200, inventory: false })
  await agent.start()
  const keyid = agent.keyid
  const jobState = () => agent!.runner.status().find((j) => j.name === 'offline')?.state
  const consoleLast = async () => (await console.ingestor.endpointState(keyid)).last

  // Online: the agent's first events reach the console.
  await until('the first events to be acknowledged', async () => (await agent!.outbox.stats()).ackedSeq >= 1 && (await agent!.outbox.stats()).pending === 0)

  await api.rollouts.create(OWNER, { id: 'offline-1', release: view.hash, target: { tenant: 'msp-1/acme' }, phases: [{ name: 'all', successThreshold: 1, errorThreshold: 0.5, minSoakMinutes: 0 }] })
  await until('the install to start', () => jobState() === 'installing')
  // Let the acks for what happened so far settle, so the outage starts from a known position.
  await until('the outbox to drain before the outage', async () => (await agent!.outbox.stats()).pending === 0)
  const before = await agent.outbox.stats()
  t.equal(await consoleLast(), before.lastSeq, 'the console holds everything the agent wrote so far')

  // The console goes away: its swarm node, origin and link close; the Console keeps running.
  await swarm.close()
  swarm = null
  await until('the agent to see the console gone', () => agent!.node.connectedPeers().length === 0, 10_000)

  await fs.writeFile(go, '')
  await until('the install to finish offline', () => jobState() === 'installed')
  const offline = await agent.outbox.stats()
  t.ok(offline.lastSeq > before.lastSeq, `the agent wrote events while offline (seq ${before.lastSeq + 1}..${offline.lastSeq})`)
  t.equal(offline.ackedSeq, before.ackedSeq, 'nothing was acknowledged while the console was away')
  t.equal(offline.pending, offline.lastSeq - offline.ackedSeq, 'every unacknowledged event is pending')
  t.equal(offline.oldestSeq, before.lastSeq + 1, 'the oldest pending event is the first one after the outage began')
  const pendingOffline = await agent.outbox.pending()
  t.same(pendingOffline.map((e) => e.signed.seq), range(before.lastSeq + 1, offline.lastSeq), 'the pending events are consecutive')
  t.ok(pendingOffline.some((e) => e.signed.kind === 'job' && e.signed.job?.state === 'installed'), 'the install result is among them')
  t.equal(await consoleLast(), before.lastSeq, 'the console received nothing meanwhile')

  // The agent restarts while the console is still away: what is pending survives, byte for byte.
  await agent.close()
  agent = null
  agent = await Agent.open(agentDir, { checkInMs: 200, inventory: false })
  const reopened = await agent.outbox.stats()
  // A clean stop adds one event, 'stopped'; everything before it is kept as it was.
  t.same({ pending: reopened.pending, lastSeq: reopened.lastSeq, ackedSeq: reopened.ackedSeq }, { pending: offline.pending + 1, lastSeq: offline.lastSeq + 1, ackedSeq: offline.ackedSeq }, 'the outbox kept its events and added the stop')
  const pendingReopened = await agent.outbox.pending()
  t.same(pendingReopened.slice(0, -1), pendingOffline, 'the pending events are the same signed events')
  t.equal(pendingReopened.at(-1)?.signed.agent?.state, 'stopped', 'and the last one says the agent stopped cleanly')
  await agent.start()
  t.equal(jobState(), 'installed', 'the job stays installed across the restart')
  await until('the restart to be recorded', async () => (await agent!.outbox.stats()).lastSeq > reopened.lastSeq)
  await sleep(1000) // a few check-in intervals with nobody to talk to
  const afterRestart = await agent.outbox.stats()
  t.equal(afterRestart.ackedSeq, before.ackedSeq, 'still nothing acknowledged')
  t.ok(afterRestart.pending > offline.pending, `the outbox grew: ${afterRestart.pending} events pending`)
  t.equal(await consoleLast(), before.lastSeq, 'the console still has nothing new')

  // The console comes back on the swarm (same Console, same keys); the outbox drains.
  swarm = new ConsoleSwarm(console, org.consoleKey.secretKey, swarmOpts)
  await swarm.ready()
  const drained = async () => (await agent!.outbox.stats()).pending === 0
  const drainedAlone = await until('the outbox to drain after the outage', drained, 15_000).then(() => true, () => false)
  // Fails today: the console's swarm node connects while ConsoleSwarm.ready() is still waiting for
  // the DHT flush, before its ConsoleLink listens, so the agent's one REPORTS batch (sent on
  // peer-open) is dropped; the agent re-sends only on its next job transition, ack or peer-open.
  t.ok(drainedAlone, `the outbox drains by itself once the console is back (still pending: ${(await agent.outbox.stats()).pending})`)
  if (!drainedAlone) {
    // A new connection (peer-open → flush) gets the events going, to check what arrives.
    await agent.close()
    agent = null
    agent = await Agent.open(agentDir, { checkInMs: 200, inventory: false })
    await agent.start()
    await until('the outbox to drain after the agent reconnected', drained, 30_000)
  }
  const final = await agent.outbox.stats()
  t.equal(final.ackedSeq, final.lastSeq, 'every event acknowledged')
  t.ok(final.lastSeq >= afterRestart.lastSeq, 'the outbox kept counting up')

  // The console's side: seq 1..N of this endpoint, each exactly once, in log order.
  const entries = await console.log.read() as ReportEntry[]
  const mine = entries.filter((e): e is Extract<ReportEntry, { source: 'agent' }> => e.source === 'agent' && e.envelope.signed.endpoint === keyid)
  const seqs = mine.map((e) => e.envelope.signed.seq)
  t.same(seqs, range(1, final.lastSeq), `the log holds seq 1..${final.lastSeq} of the endpoint once each, in order`)
  t.equal(new Set(seqs).size, seqs.length, 'no seq twice')
  t.ok(mine.every((e, i) => i === 0 || e.seq > mine[i - 1]!.seq), 'log positions rise with the endpoint seq')
  // What the console logged is what the agent signed while offline, byte for byte (same signatures).
  const logged = new Map(mine.map((e) => [e.envelope.signed.seq, e.envelope]))
  t.ok(pendingOffline.every((e) => logged.has(e.signed.seq) && serializeEnvelope(logged.get(e.signed.seq)!).equals(serializeEnvelope(e))), 'the events signed offline arrived as signed, byte for byte')
  t.equal(await consoleLast(), final.lastSeq, "the console's position for the endpoint is the agent's last seq")
  t.same(console.ingestor.counters.rejected, {}, 'nothing the agent sent was rejected')
  t.equal(console.ingestor.counters.accepted, final.lastSeq, 'each event accepted once')

  await until('the rollout to complete', async () => (await api.rollouts.get(OWNER, 'offline-1')).state === 'completed')
  t.equal(console.views.patchRecord(keyid, view.hash)?.state, 'installed', "the console's record of the patch is installed")
  const kpis = await api.reports.kpis(OWNER, 'msp-1')
  t.equal(kpis.endpoints, 1, 'one endpoint in the KPIs')
  t.equal(kpis.compliant, 1, 'the KPIs show the endpoint installed')
  t.equal(kpis.finalSuccess, 1, 'final success rate 1')
  t.equal((await fs.readFile(mark, 'utf8')).trim(), 'installed', 'the install ran once')
})

function range (from: number, to: number): number[] {
  return Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i)
}
