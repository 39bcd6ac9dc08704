import t, { type Test } from 'tap'
import path from 'node:path'
import { openDatabase, sublevel } from '../../lib/store/db.js'
import { TenantTree, AuditLog, type TenantKind } from '../../lib/fleet/index.js'
import { CourtesySchedule } from '../../lib/swarm/courtesy-schedule.js'
import {
  DEFAULT_SLA_HOURS, POLICY_HISTORY, PolicyStore, effectivePolicy, mayInstall, parsePolicy, publisherOf,
  requiresApproval, slaDeadline, toCourtesyOptions, type MaintenanceWindow, type PolicyDocument
} from '../../lib/policy/index.js'
import { codeOf, steppingClock } from '../fleet/helpers.js'

const MSP = 'dist-1/msp-1'
const ACME = 'dist-1/msp-1/acme'
const SALES = 'dist-1/msp-1/acme/sales'
const nightly: MaintenanceWindow = { cron: '0 22 * * 1-5', durationMinutes: 120, timezone: 'Europe/Vienna' }
const sunday: MaintenanceWindow = { cron: '0 13 * * 0', durationMinutes: 180, timezone: 'Europe/Vienna' }

function thrown (fn: () => unknown): { code?: string, message: string } {
  try {
    fn()
  } catch (err) {
    return { code: (err as { code?: string }).code, message: (err as Error).message }
  }
  return { message: '' }
}

// ---- documents -----------------------------------------------------------------------------

t.test('a full policy document parses as it is; a missing part stays missing', async (t) => {
  const doc = {
    slas: { critical: 24, low: 4000 },
    approval: { automatic: { risks: ['low', 'medium'], publishers: ['release', 'delegation:acme-it'] } },
    windows: [nightly, sunday],
    forceAfterDeadline: true,
    rebootAllowed: false,
    courtesy: {
      hq: { downBytesPerSec: 2_000_000, upBytesPerSec: 500_000, timeZone: 'Europe/Vienna', schedule: [{ days: 'mon-fri', from: '08:00', to: '18:00', upload: 100_000 }] },
      'home.office': { metered: true }
    }
  }
  t.same(parsePolicy(doc), doc)
  t.same(parsePolicy({}), {})
  t.same(parsePolicy({ windows: [] }), { windows: [] }, 'an explicit empty list is kept')
})

t.test('bad policies are BAD_POLICY, bad windows BAD_WINDOW, unsafe site names UNSAFE_PATH, each naming the field', async (t) => {
  const cases: Array<[unknown, string, RegExp]> = [
    ['strict', 'BAD_POLICY', /^BAD_POLICY: policy: Invalid input: expected object/],
    [{ slas: { critical: 0 } }, 'BAD_POLICY', /policy\.slas\.critical: Too small/],
    [{ slas: { high: 1.5 } }, 'BAD_POLICY', /policy\.slas\.high: .*int/],
    [{ slas: { high: 9000 } }, 'BAD_POLICY', /policy\.slas\.high: Too big/],
    [{ slas: { urgent: 4 } }, 'BAD_POLICY', /policy\.slas: Unrecognized key/],
    [{ approval: { automatic: { risks: ['trivial'], publishers: [] } } }, 'BAD_POLICY', /policy\.approval\.automatic\.risks\[0\]/],
    [{ approval: { automatic: { risks: ['low', 'low'], publishers: [] } } }, 'BAD_POLICY', /risks: lists "low" twice/],
    [{ approval: { automatic: { risks: [] } } }, 'BAD_POLICY', /policy\.approval\.automatic\.publishers/],
    [{ approval: { automatic: { risks: [], publishers: ['ab'.repeat(32)] } } }, 'BAD_POLICY', /publishers\[0\]: .* is not a publisher \('release' or 'delegation:<name>'\)/],
    [{ approval: { automatic: { risks: [], publishers: ['delegation:../x'] } } }, 'BAD_POLICY', /is not a publisher/],
    [{ windows: nightly }, 'BAD_POLICY', /policy\.windows: Invalid input: expected array/],
    [{ windows: [nightly, { ...nightly, timezone: 'Europe/Atlantis' }] }, 'BAD_WINDOW', /policy\.windows\[1\]\.timezone: unknown time zone/],
    [{ windows: [{ ...nightly, cron: '0 22 * * mon-sat-sun' }] }, 'BAD_WINDOW', /policy\.windows\[0\]\.cron: day-of-week field/],
    [{ forceAfterDeadline: 'yes' }, 'BAD_POLICY', /policy\.forceAfterDeadline: .*boolean/],
    [{ rings: [] }, 'BAD_POLICY', /policy: Unrecognized key/],
    [{ courtesy: { hq: { downBytesPerSec: -1 } } }, 'BAD_POLICY', /policy\.courtesy\.hq\.downBytesPerSec: Too small/],
    [{ courtesy: { hq: { timeZone: 'Nowhere/Else' } } }, 'BAD_POLICY', /policy\.courtesy\.hq\.timeZone: unknown time zone/],
    [{ courtesy: { hq: { schedule: [{ from: '25:00', to: '18:00' }] } } }, 'BAD_POLICY', /policy\.courtesy\.hq: schedule\[0\]\.from is a time "HH:MM", not "25:00"/],
    [{ courtesy: { hq: { schedule: [{ days: 'weekdays', from: '08:00', to: '18:00' }] } } }, 'BAD_POLICY', /policy\.courtesy\.hq: schedule\[0\]\.days: cannot read/],
    [{ courtesy: { hq: { upBytesPerSec: 1, burst: 5 } } }, 'BAD_POLICY', /policy\.courtesy\.hq: Unrecognized key/],
    [{ courtesy: { '../hq': {} } }, 'UNSAFE_PATH', /policy\.courtesy: site name "\.\.\/hq" is not a safe name/]
  ]
  for (const [value, code, message] of cases) {
    const e = thrown(() => parsePolicy(value))
    t.equal(e.code, code, JSON.stringify(value).slice(0, 100))
    t.match(e.message, message)
  }
})

// ---- resolution ----------------------------------------------------------------------------

t.test('with no policy anywhere: the defaults, all from nowhere', async (t) => {
  const { policy, sources } = effectivePolicy([{ path: '' }, { path: 'msp-1', policy: null }])
  t.same(policy, {
    slas: { critical: 72, high: 168, medium: 720, low: 2160 },
    approval: { automatic: { risks: [], publishers: [] } },
    windows: null,
    forceAfterDeadline: false,
    rebootAllowed: false,
    courtesy: {}
  })
  t.same(sources, {
    slas: { critical: null, high: null, medium: null, low: null },
    approval: null,
    windows: null,
    forceAfterDeadline: null,
    rebootAllowed: null,
    courtesy: {}
  })
  t.same(DEFAULT_SLA_HOURS, { critical: 72, high: 168, medium: 720, low: 2160 })
})

t.test('each part comes from the nearest level that sets it; SLAs and sites one by one', async (t) => {
  const chain: Array<{ path: string, policy?: PolicyDocument }> = [
    { path: '', policy: parsePolicy({ slas: { low: 4000 }, rebootAllowed: false, courtesy: { hq: { upBytesPerSec: 1000 }, lab: { metered: true } } }) },
    { path: 'dist-1' },
    { path: MSP, policy: parsePolicy({ slas: { critical: 48, high: 100 }, approval: { automatic: { risks: ['low'], publishers: [] } }, windows: [nightly] }) },
    { path: ACME, policy: parsePolicy({ slas: { critical: 24 }, rebootAllowed: true, courtesy: { hq: { upBytesPerSec: 5000 } } }) },
    { path: SALES, policy: parsePolicy({ windows: [], forceAfterDeadline: true }) }
  ]
  const { policy, sources } = effectivePolicy(chain)
  t.same(policy.slas, { critical: 24, high: 100, medium: 720, low: 4000 })
  t.same(sources.slas, { critical: ACME, high: MSP, medium: null, low: '' })
  t.same(policy.approval, { automatic: { risks: ['low'], publishers: [] } })
  t.equal(sources.approval, MSP)
  t.same(policy.windows, [], 'sales overrides the inherited windows with none')
  t.equal(sources.windows, SALES)
  t.equal(policy.forceAfterDeadline, true)
  t.equal(policy.rebootAllowed, true)
  t.equal(sources.rebootAllowed, ACME)
  t.same(policy.courtesy, { hq: { upBytesPerSec: 5000 }, lab: { metered: true } })
  t.same(sources.courtesy, { hq: ACME, lab: '' })

  // Only down to acme: the MSP's windows, inherited.
  const atAcme = effectivePolicy(chain.slice(0, 4))
  t.same(atAcme.policy.windows, [nightly])
  t.equal(atAcme.sources.windows, MSP)
  t.equal(atAcme.policy.forceAfterDeadline, false)

  // The result shares nothing with the documents.
  policy.approval.automatic.risks.push('critical')
  policy.courtesy.hq!.upBytesPerSec = 1
  atAcme.policy.windows![0]!.durationMinutes = 1
  t.same(chain[2]!.policy!.approval, { automatic: { risks: ['low'], publishers: [] } })
  t.equal(chain[3]!.policy!.courtesy!.hq!.upBytesPerSec, 5000)
  t.equal(chain[2]!.policy!.windows![0]!.durationMinutes, 120)

  t.equal(thrown(() => effectivePolicy([{ path: ACME }, { path: MSP }])).code, 'BAD_ARGUMENT', 'the chain runs from the top down')
  t.equal(thrown(() => effectivePolicy([{ path: MSP }, { path: MSP }])).code, 'BAD_ARGUMENT', 'each level below the one before')
  t.equal(thrown(() => effectivePolicy([{ path: 'dist-1/msp' }, { path: MSP + '-2' }])).code, 'BAD_ARGUMENT', 'by segment, not by prefix')
  t.equal(thrown(() => effectivePolicy('x' as never)).code, 'BAD_ARGUMENT')
})

t.test('approval: automatic by risk class or by publisher, otherwise manual', async (t) => {
  const { policy } = effectivePolicy([{ path: '', policy: parsePolicy({ approval: { automatic: { risks: ['low'], publishers: ['delegation:acme-it'] } } }) }])
  const release = { role: 'release' } as const
  const acmeIt = { role: 'delegation', name: 'acme-it', scope: ACME } as const
  const other = { role: 'delegation', name: 'beta-it', scope: 'dist-1/msp-1/beta' } as const
  t.equal(requiresApproval(policy, { risk: 'low', signer: release }), false, 'a low-risk release')
  t.equal(requiresApproval(policy, { risk: 'critical', signer: release }), true, 'a critical one from the release role')
  t.equal(requiresApproval(policy, { risk: 'critical', signer: acmeIt }), false, 'anything acme-it publishes')
  t.equal(requiresApproval(policy, { risk: 'high', signer: other }), true, 'another delegation')
  t.equal(publisherOf(release), 'release')
  t.equal(publisherOf(acmeIt), 'delegation:acme-it')
  const byRole = effectivePolicy([{ path: '', policy: parsePolicy({ approval: { automatic: { risks: [], publishers: ['release'] } } }) }]).policy
  t.equal(requiresApproval(byRole, { risk: 'critical', signer: release }), false)
  t.equal(requiresApproval(byRole, { risk: 'low', signer: acmeIt }), true)
  t.equal(requiresApproval(effectivePolicy([]).policy, { risk: 'low', signer: release }), true, 'by default everything is manual')
})

t.test('SLA deadlines: availability plus the class hours', async (t) => {
  const { policy } = effectivePolicy([{ path: '', policy: parsePolicy({ slas: { critical: 24 } }) }])
  t.equal(slaDeadline(policy, 'critical', new Date('2026-03-28T12:00:00Z')).toISOString(), '2026-03-29T12:00:00.000Z', 'real hours, across the clock change')
  t.equal(slaDeadline(policy, 'high', '2026-01-01T00:00:00Z').toISOString(), '2026-01-08T00:00:00.000Z', '168 h by default')
  t.equal(slaDeadline(policy, 'low', '2026-01-01T00:00:00Z').toISOString(), '2026-04-01T00:00:00.000Z', '90 days')
  t.equal(thrown(() => slaDeadline(policy, 'urgent' as never, new Date())).code, 'BAD_ARGUMENT')
  t.equal(thrown(() => slaDeadline(policy, 'low', 'soon')).code, 'BAD_ARGUMENT')
})

t.test('may an install start: no windows set, inside a window, or forced after the deadline', async (t) => {
  const wednesdayAfternoon = new Date('2026-07-15T12:00:00Z')
  const wednesdayNight = new Date('2026-07-15T20:30:00Z')
  const before = new Date('2026-07-15T11:00:00Z')
  const anytime = effectivePolicy([]).policy
  t.equal(mayInstall(anytime, wednesdayAfternoon), true, 'no level sets windows: any time')
  const windowed = effectivePolicy([{ path: '', policy: parsePolicy({ windows: [nightly] }) }]).policy
  t.equal(mayInstall(windowed, wednesdayAfternoon), false)
  t.equal(mayInstall(windowed, wednesdayNight), true)
  t.equal(mayInstall(windowed, wednesdayAfternoon, before), false, 'past the deadline but not forced')
  const never = effectivePolicy([{ path: '', policy: parsePolicy({ windows: [] }) }]).policy
  t.equal(mayInstall(never, wednesdayNight), false, 'an empty list: no window at all')
  const forced = effectivePolicy([{ path: '', policy: parsePolicy({ windows: [], forceAfterDeadline: true }) }]).policy
  t.equal(mayInstall(forced, wednesdayAfternoon, before), true, 'forced once the deadline has passed')
  t.equal(mayInstall(forced, before, wednesdayAfternoon), false, 'not before it')
  t.equal(mayInstall(forced, wednesdayAfternoon), false, 'no deadline, no force')
})

t.test("a site's courtesy becomes the swarm's courtesy options", async (t) => {
  const { courtesy } = parsePolicy({
    courtesy: {
      hq: { downBytesPerSec: 2_000_000, upBytesPerSec: 500_000, timeZone: 'Europe/Vienna', schedule: [{ days: 'mon-fri', from: '08:00', to: '18:00', upload: 100_000 }] },
      lab: { metered: true }
    }
  })
  const hq = toCourtesyOptions(courtesy!.hq!)
  t.equal(hq.metered, false)
  const schedule = new CourtesySchedule(hq.schedule)
  t.same(schedule.limitsAt(new Date('2026-07-15T08:00:00Z')), { upload: 100_000, download: 2_000_000, window: 0 }, 'Wednesday 10:00 in Vienna: business hours')
  t.same(schedule.limitsAt(new Date('2026-07-15T20:00:00Z')), { upload: 500_000, download: 2_000_000, window: -1 }, 'evening: the site caps')
  const lab = toCourtesyOptions(courtesy!.lab!)
  t.equal(lab.metered, true)
  t.same(new CourtesySchedule(lab.schedule).limitsAt(Date.now()), { upload: Infinity, download: Infinity, window: -1 }, 'no caps: unlimited')
})

// ---- the store -----------------------------------------------------------------------------

const TREE: Array<[string, string, TenantKind]> = [
  ['', 'dist-1', 'distributor'],
  ['dist-1', 'msp-1', 'msp'],
  [MSP, 'acme', 'customer'],
  [MSP, 'beta', 'customer'],
  [ACME, 'sales', 'group'],
  [SALES, 'pc-1', 'endpoint']
]

async function open (t: Test, location = path.join(t.testdir(), 'db')) {
  const db = await openDatabase(location)
  const clock = steppingClock()
  const tree = new TenantTree(db, { clock })
  const audit = new AuditLog(db, { clock })
  await audit.ready()
  const store = new PolicyStore(db, { tree, clock })
  t.teardown(() => db.close())
  return { db, tree, audit, store, location }
}

async function build (tree: TenantTree) {
  for (const [parent, name, kind] of TREE) await tree.create({ parent, name, kind })
}

t.test('set, get and clear a node policy; updatedAt from the clock; history kept small', async (t) => {
  const { tree, store } = await open(t)
  await build(tree)
  t.equal(await store.get(ACME), undefined, 'nothing set yet')
  t.same(await store.history(ACME), [])
  const set = await store.set(ACME, { slas: { critical: 24 } })
  const acme = await tree.get(ACME)
  t.same(set, { path: ACME, uid: acme.uid, policy: { slas: { critical: 24 } }, updatedAt: set.updatedAt })
  t.match(set.updatedAt, /^2030-01-01T00:00:\d\d\.000Z$/)
  t.same(await store.get(ACME), set)
  t.equal(await store.get(MSP), undefined, 'a policy belongs to its node alone')

  t.equal(await store.clear(ACME), true)
  t.equal(await store.get(ACME), undefined)
  t.equal(await store.clear(ACME), false, 'clearing again changes nothing')
  const history = await store.history(ACME)
  t.same(history.map((v) => v.policy), [null, { slas: { critical: 24 } }], 'the clearing, then what was set')
  t.ok(history[0]!.updatedAt > history[1]!.updatedAt)

  for (let i = 1; i <= POLICY_HISTORY + 5; i++) await store.set(ACME, { slas: { critical: i } })
  const long = await store.history(ACME)
  t.equal(long.length, POLICY_HISTORY + 1, 'the one in force and the ten before it')
  t.same(long.slice(0, 3).map((v) => v.policy?.slas?.critical), [POLICY_HISTORY + 5, POLICY_HISTORY + 4, POLICY_HISTORY + 3])
})

t.test('refused writes change nothing and do not call extra', async (t) => {
  const { db, tree, store } = await open(t)
  await build(tree)
  await store.set(ACME, { rebootAllowed: true })
  const before = await db.iterator().all()
  let calls = 0
  const extra = () => { calls++; return [] }
  t.equal(await codeOf(store.set(ACME, { slas: { critical: -1 } }, { extra })), 'BAD_POLICY')
  t.equal(await codeOf(store.set(ACME, { windows: [{ ...nightly, durationMinutes: 0 }] }, { extra })), 'BAD_WINDOW')
  t.equal(await codeOf(store.set(ACME, { courtesy: { 'a b': {} } }, { extra })), 'UNSAFE_PATH')
  t.equal(await codeOf(store.set(`${ACME}/nobody`, {}, { extra })), 'NOT_FOUND')
  t.equal(await codeOf(store.set('../acme', {}, { extra })), 'UNSAFE_PATH')
  t.equal(await codeOf(store.clear(`${ACME}/nobody`, { extra })), 'NOT_FOUND')
  t.equal(await codeOf(store.clear(MSP, { extra })), undefined)
  t.equal(await codeOf(store.get('/abs')), 'UNSAFE_PATH')
  t.equal(await codeOf(store.effective(ACME, { site: '../x' })), 'UNSAFE_PATH')
  t.equal(calls, 0)
  t.same(await db.iterator().all(), before, 'the database is as it was')
  t.equal(thrown(() => new PolicyStore(db, {} as never)).code, 'BAD_ARGUMENT')
})

t.test("the caller's audit entry commits in the same batch", async (t) => {
  const { tree, store, audit } = await open(t)
  await build(tree)
  const entry = (action: string) => () => [audit.prepare({ admin: 'alice', action, target: ACME, tenants: [ACME], result: 'ok' }).op]
  await store.set(ACME, { rebootAllowed: true }, { extra: entry('policy.set') })
  await store.clear(ACME, { extra: entry('policy.clear') })
  t.same((await audit.list()).map((e) => e.action), ['policy.set', 'policy.clear'])
  // An extra op that the batch refuses takes the policy change down with it.
  const other = sublevel(store.db, 'other')
  await t.rejects(store.set(ACME, { rebootAllowed: false }, { extra: () => [{ type: 'put', sublevel: other, key: null as never, value: 1 }] }))
  t.equal(await store.get(ACME), undefined, 'not set')
  t.same((await store.history(ACME)).length, 2, 'no version added')
})

t.test('effective policy walks the organisation, the ancestors and the node; sources are tenant paths', async (t) => {
  const { tree, store } = await open(t)
  await build(tree)
  await store.set('', { slas: { low: 4000 }, courtesy: { hq: { upBytesPerSec: 1000 } } })
  await store.set(MSP, { windows: [nightly], approval: { automatic: { risks: ['low'], publishers: [] } } })
  await store.set(ACME, { slas: { critical: 24 }, courtesy: { hq: { upBytesPerSec: 5000, metered: true } } })
  await store.set(SALES, { windows: [sunday], rebootAllowed: true })

  const pc = await store.effective(`${SALES}/pc-1`, { site: 'hq' })
  t.equal(pc.path, `${SALES}/pc-1`)
  t.same(pc.policy.slas, { critical: 24, high: 168, medium: 720, low: 4000 })
  t.same(pc.sources.slas, { critical: ACME, high: null, medium: null, low: '' })
  t.same(pc.policy.windows, [sunday])
  t.equal(pc.sources.windows, SALES)
  t.equal(pc.sources.approval, MSP)
  t.equal(pc.policy.rebootAllowed, true)
  t.same(pc.site, { name: 'hq', courtesy: { upBytesPerSec: 5000, metered: true }, from: ACME })

  const beta = await store.effective('dist-1/msp-1/beta', { site: 'hq' })
  t.same(beta.policy.windows, [nightly], "beta inherits the MSP's windows")
  t.same(beta.site, { name: 'hq', courtesy: { upBytesPerSec: 1000 }, from: '' })
  t.same((await store.effective(ACME, { site: 'branch' })).site, { name: 'branch', courtesy: undefined, from: null }, 'a site nobody limits')
  t.same((await store.effective(ACME, { site: 'constructor' })).site, { name: 'constructor', courtesy: undefined, from: null }, 'not an Object.prototype property')
  t.equal((await store.effective(ACME)).site, undefined)

  const org = await store.effective('')
  t.equal(org.policy.windows, null)
  t.same(org.sources.slas, { critical: null, high: null, medium: null, low: '' })
  t.equal(await codeOf(store.effective(`${ACME}/nobody`)), 'NOT_FOUND')
})

t.test('a policy follows its node through a move, and the node inherits from its new ancestors', async (t) => {
  const { tree, store, location, db } = await open(t, undefined)
  await build(tree)
  await store.set(ACME, { windows: [nightly] })
  await store.set('dist-1/msp-1/beta', { slas: { high: 12 } })
  await store.set(SALES, { rebootAllowed: true })
  await tree.move(SALES, 'dist-1/msp-1/beta')
  const moved = 'dist-1/msp-1/beta/sales'
  t.same((await store.get(moved))?.policy, { rebootAllowed: true })
  t.equal(await codeOf(store.get(SALES)), 'NOT_FOUND', 'nothing is left at the old path')
  const e = await store.effective(`${moved}/pc-1`)
  t.equal(e.policy.windows, null, "no longer acme's windows")
  t.equal(e.policy.slas.high, 12)
  t.equal(e.sources.slas.high, 'dist-1/msp-1/beta')
  t.equal(e.sources.rebootAllowed, moved, 'sources name current paths')

  // Removed nodes are gone for policies too; the rest persists across a reopen.
  await tree.remove(moved)
  t.equal(await codeOf(store.get(moved)), 'NOT_FOUND')
  t.equal(await codeOf(store.set(moved, {})), 'NOT_FOUND')
  await db.close()
  const again = await openDatabase(location)
  t.teardown(() => again.close())
  const store2 = new PolicyStore(again, { tree: new TenantTree(again) })
  t.same((await store2.get(ACME))?.policy, { windows: [nightly] })
})

t.test('concurrent sets on one node keep every version in the history', async (t) => {
  const { tree, store } = await open(t)
  await build(tree)
  await Promise.all([1, 2, 3, 4, 5].map((i) => store.set(ACME, { slas: { critical: i } })))
  const history = await store.history(ACME)
  t.same(history.map((v) => v.policy?.slas?.critical).sort(), [1, 2, 3, 4, 5])
})
