// A console with an MSP, two customers with groups, an owner and customer admins, and enrolled
// simulated endpoints: the set-up the console tests share.
import path from 'node:path'
import type { Test } from 'tap'
import type { Console } from '../../lib/console/console.js'
import { AdminApi } from '../../lib/console/api.js'
import { makeConsoleOrg, openConsole, SimEndpoint, OWNER, type ConsoleOrg } from '../../fixtures/console-org.js'
import { sshKey } from '../fleet/helpers.js'

export const MSP = 'msp-1'
export const A = 'msp-1/customer-a'
export const B = 'msp-1/customer-b'

/** A clock the test moves by hand. */
export class ManualClock {
  t: number
  constructor (start = Date.parse('2030-03-02T08:00:00Z')) { this.t = start }
  now = (): Date => new Date(this.t)
  advance (ms: number): void { this.t += ms }
}

export interface World {
  org: ConsoleOrg
  console: Console
  api: AdminApi
  clock: ManualClock
  dataDir: string
  /** Endpoints per group path. */
  endpoints: Map<string, SimEndpoint[]>
}

/**
 * msp-1 › customer-a › {pilot, office}, customer-b › {office}; admins: root (owner of all), mia
 * (owner of msp-1), alice (owner of A), bob (owner of B); `perGroup` endpoints in each group.
 * Reopening (a `dataDir` that holds a console, with the same `org`) sets nothing up; pass the first
 * world's `endpoints` to keep signing with its simulated endpoints (their keys and seqs live only there).
 */
export async function world (t: Test, opts: { perGroup?: number, dataDir?: string, org?: ConsoleOrg, clock?: ManualClock, endpoints?: Map<string, SimEndpoint[]> } = {}): Promise<World> {
  const clock = opts.clock ?? new ManualClock()
  const org = opts.org ?? await makeConsoleOrg(clock.now())
  const dataDir = opts.dataDir ?? path.join(t.testdir(), 'console')
  const console = await openConsole(org, dataDir, { clock: clock.now, webhooks: { baseDelayMs: 10, maxDelayMs: 50, pollIntervalMs: 20 } })
  t.teardown(() => console.close())
  const api = new AdminApi(console)
  const endpoints = opts.endpoints ?? new Map<string, SimEndpoint[]>()
  if (opts.dataDir !== undefined && !await console.fleet.admins.isEmpty()) return { org, console, api, clock, dataDir, endpoints }
  await console.fleet.bootstrapOwner({ id: OWNER, sshKey: sshKey() })
  const f = console.fleet
  await f.createTenant(OWNER, { parent: '', name: MSP, kind: 'msp' })
  for (const [customer, groups] of [[A, ['pilot', 'office']], [B, ['office']]] as const) {
    await f.createTenant(OWNER, { parent: MSP, name: customer.split('/')[1]!, kind: 'customer' })
    for (const g of groups) await f.createTenant(OWNER, { parent: customer, name: g, kind: 'group' })
  }
  await f.createAdmin(OWNER, { id: 'mia', sshKey: sshKey(), bindings: [{ role: 'owner', scope: MSP }] })
  await f.createAdmin(OWNER, { id: 'alice', sshKey: sshKey(), bindings: [{ role: 'owner', scope: A }] })
  await f.createAdmin(OWNER, { id: 'bob', sshKey: sshKey(), bindings: [{ role: 'owner', scope: B }] })
  const n = opts.perGroup ?? 2
  for (const group of [`${A}/pilot`, `${A}/office`, `${B}/office`]) {
    const { token } = await api.endpoints.createToken(OWNER, { scope: group, expiresAt: new Date(clock.t + 86400_000), maxUses: n, autoApprove: true })
    const list: SimEndpoint[] = []
    for (let i = 0; i < n; i++) {
      const ep = new SimEndpoint(`${group.replaceAll('/', '-')}-pc${i}`)
      await ep.enroll(console, token, clock.now())
      list.push(ep)
    }
    endpoints.set(group, list)
  }
  return { org, console, api, clock, dataDir, endpoints }
}
