// The admin subcommands (tenant, group, token, endpoint, policy, releases, rollout, report, webhook,
// admin, audit, api): each connects to a running console's socket as `--as <admin>` and calls one
// admin API method. Human output by default, the method's result as JSON with --json. `api` calls
// any method by name, so everything the API can do, the command line can do.
import { type Command, Option } from 'commander'
import { PatchswarmError } from '../../lib/errors.js'
import { RpcClient } from '../../lib/console/rpc.js'
import type { CliContext } from '../cli.js'
import { DEFAULT_DATA, socketPathFor } from './socket.js'
import { parseDuration, parsePositiveInt, collect, addSeconds } from './options.js'
import { writeAtomic } from '../../lib/crypto/keyfile.js'
import { table } from './table.js'
import { readFileBytes } from './documents.js'

interface Common { as?: string, socket?: string, data?: string, json?: boolean }

type Row = Record<string, unknown>

const pct = (x: unknown) => typeof x === 'number' ? `${(x * 100).toFixed(1)} %` : '—'

function withCommon (cmd: Command): Command {
  return cmd
    .option('--as <admin>', 'the admin to act as (default: $PATCHSWARM_ADMIN)')
    .option('--socket <path>', 'the console socket (default: $PATCHSWARM_SOCKET or <data>/console.sock)')
    .option('--data <dir>', "the console's data folder", DEFAULT_DATA)
    .option('--json', 'print the result as JSON')
}

async function callConsole (ctx: CliContext, opts: Common, method: string, params: unknown[]): Promise<unknown> {
  const admin = opts.as ?? ctx.io.env.PATCHSWARM_ADMIN
  if (!admin) throw PatchswarmError.BAD_ARGUMENT('say which admin you act as: --as <admin> (or set PATCHSWARM_ADMIN)')
  const client = await RpcClient.connect(socketPathFor(ctx, opts.data, opts.socket), admin)
  try {
    return await client.call(method, params)
  } finally {
    await client.close()
  }
}

/** The page size asked for: endpoints.list's MAX_LIST_PAGE (not imported: the admin CLI stays light). */
export const LIST_PAGE = 1000

/** Every page of a paged list method, one call per page, until a page comes back short. */
async function allPages (ctx: CliContext, opts: Common, method: string, [query, ...rest]: unknown[], cursor: (item: any) => string): Promise<unknown[]> {
  const all: unknown[] = []
  for (let after: string | undefined; ;) {
    const page = await callConsole(ctx, opts, method, [{ ...(query as object), limit: LIST_PAGE, ...(after !== undefined ? { after } : {}) }, ...rest]) as unknown[]
    all.push(...page)
    if (page.length < LIST_PAGE) return all
    after = cursor(page[page.length - 1])
  }
}

/** Registers `group name` calling `method`; `params` maps the arguments, `human` renders the result. */
function remote (parent: Command, ctx: CliContext, spec: {
  name: string, description: string, args?: string[], options?: (c: Command) => Command,
  method: string, params: (args: string[], opts: any) => unknown[] | Promise<unknown[]>, human: (result: any, opts: any) => string,
  /** Runs after the call, before printing (e.g. writing a file). */
  after?: (result: any, opts: any) => Promise<void>
  /** The method answers pages (`limit`, `after` in its first parameter): ask for all of them. */
  pagedBy?: (item: any) => string
}): void {
  let cmd = parent.command(spec.name).description(spec.description)
  for (const a of spec.args ?? []) cmd = cmd.argument(a)
  cmd = withCommon(spec.options ? spec.options(cmd) : cmd)
  cmd.action(async (...all: unknown[]) => {
    const args = all.slice(0, (spec.args ?? []).length) as string[]
    const opts = all[(spec.args ?? []).length] as Common
    const params = await spec.params(args, opts)
    const result = spec.pagedBy ? await allPages(ctx, opts, spec.method, params, spec.pagedBy) : await callConsole(ctx, opts, spec.method, params)
    await spec.after?.(result, opts)
    ctx.print(opts, () => spec.human(result, opts), result)
  })
}

async function jsonArg (ctx: CliContext, value: string): Promise<unknown> {
  const text = value.trimStart().startsWith('{') || value.trimStart().startsWith('[') ? value : (await readFileBytes(ctx.resolve(value), 'JSON file')).toString('utf8')
  try { return JSON.parse(text) } catch (err) { throw PatchswarmError.BAD_ARGUMENT(`not JSON: ${(err as Error).message}`) }
}

/** `pilot:msp-1/acme/pilot:0.9:0.1:30m` → a phase of a rollout spec. */
export function parsePhase (text: string): { name: string, select: { tenants?: string[], percent?: number }, successThreshold: number, errorThreshold: number, minSoakMinutes: number } {
  const [name, select = '', success, errors, soak] = text.split(':')
  const fraction = (v: string, what: string) => {
    const n = Number(v)
    if (v === '' || !(n >= 0 && n <= 1)) throw PatchswarmError.BAD_ARGUMENT(`--phase ${text}: ${what} must be a fraction from 0 to 1`)
    return n
  }
  const percent = /^(\d{1,3})%$/.exec(select)
  return {
    name: name!,
    select: select === '' ? {} : percent ? { percent: Number(percent[1]) } : { tenants: select.split('+') },
    successThreshold: fraction(success || '0.9', 'success'),
    errorThreshold: fraction(errors || '0.1', 'errors'),
    minSoakMinutes: soak ? Math.ceil(seconds(soak) / 60) : 0
  }
  function seconds (v: string): number {
    try { return parseDuration(v) } catch { throw PatchswarmError.BAD_ARGUMENT(`--phase ${text}: soak ${JSON.stringify(v)} is not a duration like 30m or 2h`) }
  }
}

export function registerAdminCommands (program: Command, ctx: CliContext): void {
  const now = () => ctx.io.now()

  const tenant = program.command('tenant').description('the tenant tree: distributors, MSPs, customers, groups')
  remote(tenant, ctx, { name: 'create', description: 'create a node', args: ['<parent>', '<name>'],
    options: (c) => c.addOption(new Option('--kind <kind>', 'its kind').choices(['distributor', 'msp-manager', 'msp', 'managed-msp', 'customer', 'group']).makeOptionMandatory()).option('--display-name <text>'),
    method: 'fleet.createTenant', params: ([parent, name], o) => [{ parent: parent === '/' ? '' : parent, name, kind: o.kind, ...(o.displayName ? { displayName: o.displayName } : {}) }],
    human: (n) => `created ${n.kind} ${n.path}` })
  remote(tenant, ctx, { name: 'list', description: 'the subtree at a path (default: everything you may see)', args: ['[path]'],
    options: (c) => c.option('--removed', 'include removed nodes'),
    method: 'fleet.walk', params: ([p], o) => [p ?? '', { includeRemoved: o.removed === true }],
    human: (nodes) => table(nodes.map((n: Row) => ({ ...n, tree: '  '.repeat(String(n.path).split('/').length - 1) + String(n.path).split('/').pop() })), ['tree', 'kind', 'status', 'displayName']) })
  remote(tenant, ctx, { name: 'show', description: 'one node', args: ['<path>'], method: 'fleet.getTenant', params: ([p]) => [p], human: (n) => table([n], ['path', 'kind', 'status', 'displayName', 'uid']) })
  remote(tenant, ctx, { name: 'rename', description: "change a node's display name", args: ['<path>', '<display-name>'], method: 'fleet.renameTenant', params: ([p, d]) => [p, d], human: (n) => `renamed ${n.path} to ${n.displayName}` })
  remote(tenant, ctx, { name: 'move', description: 'move a node under a new parent', args: ['<path>', '<new-parent>'], method: 'fleet.moveTenant', params: ([p, np]) => [p, np === '/' ? '' : np], human: (n) => `moved to ${n.path}` })
  remote(tenant, ctx, { name: 'status', description: "set a customer's status", args: ['<path>', '<not-set-up|set-up>'], method: 'fleet.setCustomerStatus', params: ([p, s]) => [p, s], human: (n) => `${n.path}: ${n.status}` })
  remote(tenant, ctx, { name: 'remove', description: 'remove a node (its history stays)', args: ['<path>'], method: 'fleet.removeTenant', params: ([p]) => [p], human: (n) => `removed ${n.path}` })

  const group = program.command('group').description('static groups under a customer (nested)')
  remote(group, ctx, { name: 'create', description: 'create a group', args: ['<parent>', '<name>'], method: 'fleet.createTenant', params: ([parent, name]) => [{ parent, name, kind: 'group' }], human: (n) => `created group ${n.path}` })

  const token = program.command('token').description('enrollment tokens')
  remote(token, ctx, { name: 'create', description: 'a token new endpoints enroll with (shown once)', args: ['<scope>'],
    options: (c) => c.option('--site <name>').option('--expires <duration>', 'valid for', parseDuration, 7 * 86400).option('--uses <n>', 'how many enrollments', parsePositiveInt, 1).option('--auto-approve', 'skip quarantine')
      .option('--out <file>', 'write the token to this file (mode 0600) instead of printing it'),
    method: 'endpoints.createToken', params: ([scope], o) => [{ scope, ...(o.site ? { site: o.site } : {}), expiresAt: addSeconds(now(), o.expires).toISOString(), maxUses: o.uses, autoApprove: o.autoApprove === true }],
    after: async (r, o) => { if (o.out) await writeAtomic(ctx.resolve(o.out), r.token + '\n', 0o600) },
    human: (r, o) => `token ${r.record.id} for ${r.record.scope} (${r.record.maxUses} use(s), until ${r.record.expiresAt}${r.record.autoApprove ? ', auto-approve' : ''})${o.out ? `: written to ${o.out}` : `:\n${r.token}`}` })
  remote(token, ctx, { name: 'list', description: 'tokens', args: ['[under]'], method: 'endpoints.listTokens', params: ([u]) => [{ under: u ?? '' }], human: (ts) => table(ts, ['id', 'scope', 'site', 'state', 'uses', 'maxUses', 'expiresAt']) })
  remote(token, ctx, { name: 'revoke', description: 'revoke a token', args: ['<id>'], method: 'endpoints.revokeToken', params: ([id]) => [id], human: (tk) => `revoked ${tk.id}` })

  const endpoint = program.command('endpoint').description('enrolled endpoints')
  remote(endpoint, ctx, { name: 'list', description: 'endpoints under a path', args: ['[under]'], options: (c) => c.option('--status <status>', 'quarantine, approved, rejected or removed'),
    method: 'endpoints.list', params: ([u], o) => [{ under: u ?? '', ...(o.status ? { status: o.status } : {}) }], pagedBy: (e) => e.path,
    human: (es) => table(es.map((e: Row) => ({ ...e, key: String(e.keyid).slice(0, 16) + '…' })), ['key', 'hostname', 'tenant', 'site', 'status', 'platform']) })
  for (const [name, method, verb] of [['show', 'endpoints.get', ''], ['approve', 'endpoints.approve', 'approved'], ['reject', 'endpoints.reject', 'rejected'], ['remove', 'endpoints.remove', 'removed']] as const) {
    remote(endpoint, ctx, { name, description: `${name} an endpoint`, args: ['<keyid>'], method, params: ([k]) => [k],
      human: (e) => verb ? `${e.hostname} (${String(e.keyid).slice(0, 16)}…) ${verb}` : table([e], ['keyid', 'hostname', 'tenant', 'site', 'status', 'platform', 'enrolledAt']) })
  }

  const policy = program.command('policy').description('policies: SLAs, approval, maintenance windows, courtesy (inherited down the tree)')
  remote(policy, ctx, { name: 'set', description: "set a node's policy", args: ['<path>', '<json-or-file>'], method: 'policies.set', params: async ([p, j]) => [p, await jsonArg(ctx, j!)], human: () => 'policy set' })
  remote(policy, ctx, { name: 'show', description: 'the policy in effect at a node, and where each part comes from', args: ['<path>'], options: (c) => c.option('--site <name>'),
    method: 'policies.effective', params: ([p], o) => [p, o.site ? { site: o.site } : {}], human: (r) => JSON.stringify(r, null, 2) })
  remote(policy, ctx, { name: 'clear', description: "remove a node's own policy", args: ['<path>'], method: 'policies.clear', params: ([p]) => [p], human: (b) => b ? 'cleared' : 'no policy was set' })

  const releases = program.command('releases').description("the console's release catalogue")
  remote(releases, ctx, { name: 'add', description: 'add a signed release (checked against the root)', args: ['<release.json>'],
    options: (c) => c.option('--content <dir>', "the package's files on the console's machine: the console seeds them"),
    method: 'releases.add', params: async ([f], o) => [(await readFileBytes(ctx.resolve(f!), 'release')).toString('utf8'), o.content ? { content: ctx.resolve(o.content) } : {}],
    human: (r) => `added ${r.name} ${r.version} (${r.hash.slice(0, 16)}…)` })
  remote(releases, ctx, { name: 'list', description: 'releases', method: 'releases.list', params: () => [], human: (rs) => table(rs.map((r: Row) => ({ ...r, hash: String(r.hash).slice(0, 16) + '…' })), ['hash', 'name', 'version', 'platform', 'risk', 'scope', 'approvedFor']) })
  remote(releases, ctx, { name: 'approve', description: 'approve a release for a tenant subtree', args: ['<hash>', '<tenant>'], method: 'releases.approve', params: ([h, tn]) => [h, tn], human: (r) => `approved ${r.name} ${r.version} for ${r.approvedFor.join(', ')}` })

  const rollout = program.command('rollout').description('staged rollouts')
  remote(rollout, ctx, { name: 'create', description: 'plan a rollout: an id with --release, --target and --phase …, or a JSON spec { id, release, target, phases, deadline? }', args: ['<id-or-json>'],
    options: (c) => c.option('--release <ref>', 'the release: name@version or its hash')
      .option('--target <tenant>', 'the tenant (customer, group …) to roll out to')
      .option('--phase <name[:select[:success[:errors[:soak]]]]>', "a ring, in order; select is a tenant path (several joined by +), N% of the rest, or empty for the rest (the last phase); success and errors are fractions (default 0.9 and 0.1), soak like 30m (default 0); repeatable", collect)
      .option('--deadline <duration>', 'install by then even outside maintenance windows (where the policy forces)', parseDuration),
    method: 'rollouts.create',
    params: async ([arg], o) => {
      if (arg!.trimStart().startsWith('{') || arg!.endsWith('.json')) return [await jsonArg(ctx, arg!)]
      if (!o.release || !o.target) throw PatchswarmError.BAD_ARGUMENT('a rollout needs --release and --target (or a JSON spec)')
      const phases = (o.phase ?? ['all']).map(parsePhase)
      return [{ id: arg, release: o.release, target: { tenant: o.target }, phases, ...(o.deadline ? { deadline: addSeconds(now(), o.deadline).toISOString() } : {}) }]
    },
    human: (r) => `rollout ${r.id}: ${r.state}, phases ${r.phases.map((p: Row) => `${p.name}(${(p.endpoints as string[]).length})`).join(' → ')}` })
  remote(rollout, ctx, { name: 'list', description: 'rollouts', args: ['[tenant]'], method: 'rollouts.list', params: ([tn]) => [{ tenant: tn ?? '' }],
    human: (rs) => table(rs.map((r: any) => ({ id: r.id, release: `${r.spec.release.name} ${r.spec.release.packageVersion}`, target: r.spec.target.tenant, state: r.state, phases: r.phases.map((p: Row) => `${p.name}:${p.state}`).join(' ') })), ['id', 'release', 'target', 'state', 'phases']) })
  remote(rollout, ctx, { name: 'show', description: 'one rollout', args: ['<id>'], method: 'rollouts.get', params: ([id]) => [id], human: (r) => JSON.stringify(r, null, 2) })
  remote(rollout, ctx, { name: 'history', description: "a rollout's changes", args: ['<id>'], method: 'rollouts.history', params: ([id]) => [id], human: (hs) => table(hs.map((h: any) => ({ revision: h.revision, at: h.at, by: h.by, change: h.change.type })), ['revision', 'at', 'by', 'change']) })
  for (const op of ['pause', 'resume', 'abort', 'rollback'] as const) {
    remote(rollout, ctx, { name: op, description: `${op} a rollout`, args: ['<id>'], method: `rollouts.${op}`, params: ([id]) => [id], human: (r) => `rollout ${r.id}: ${r.state}` })
  }

  const report = program.command('report').description('KPIs, exports and evidence')
  remote(report, ctx, { name: 'kpis', description: 'KPIs of a subtree', args: ['[path]'], method: 'reports.kpis', params: ([p]) => [p ?? ''],
    human: (k) => [
      `endpoints ${k.endpoints}, compliant ${k.compliant} (${pct(k.compliance)})`,
      `time to patch: median ${k.timeToPatch.medianHours ?? '—'} h, p95 ${k.timeToPatch.p95Hours ?? '—'} h (${k.timeToPatch.count} patches)`,
      `success: first pass ${pct(k.firstPassSuccess)}, final ${pct(k.finalSuccess)}; SLA breaches ${k.slaBreaches}`,
      `WAN savings ${pct(k.wanSavings)} (origin ${k.bytes.origin} of ${k.bytes.delivered} bytes delivered)`
    ].join('\n') })
  for (const format of ['json', 'csv', 'html'] as const) {
    remote(report, ctx, { name: `export-${format}`, description: `the report of a subtree as ${format.toUpperCase()}`, args: ['[path]'], options: (c) => c.option('--out <file>', 'write it here instead of stdout'),
      method: 'reports.export', params: ([p]) => [p ?? '', format],
      after: async (text, o) => { if (o.out) await writeAtomic(ctx.resolve(o.out), text, 0o644) },
      human: (text, o) => o.out ? `wrote ${o.out}` : text })
  }
  remote(report, ctx, { name: 'evidence', description: 'the endpoint-signed events of a subtree, for patchswarm verify-evidence', args: ['[path]'], options: (c) => c.requiredOption('--out <file>', 'the bundle file'),
    method: 'reports.evidence', params: ([p]) => [p ?? ''],
    after: async (text, o) => { await writeAtomic(ctx.resolve(o.out), text, 0o644) },
    human: (_, o) => `wrote ${o.out}` })
  remote(report, ctx, { name: 'counters', description: 'ingestion counters: accepted, duplicates, rejections by code', method: 'reports.counters', params: () => [], human: (c) => JSON.stringify(c, null, 2) })

  const webhook = program.command('webhook').description('webhooks for ticketing')
  remote(webhook, ctx, { name: 'create', description: 'POST signed facts to a URL', args: ['<id>'],
    options: (c) => c.requiredOption('--url <url>').option('--event <type>', "a fact type ('rollout.halted', 'job.failed', 'sla.breached', 'rollout.*', '*'); repeatable", collect).option('--tenant <path>', 'only facts about this subtree', '').option('--secret <secret>'),
    method: 'webhooks.create', params: ([id], o) => [{ id, url: o.url, events: o.event ?? ['*'], tenant: o.tenant, ...(o.secret ? { secret: o.secret } : {}) }],
    human: (r) => `webhook ${r.webhook.id} → ${r.webhook.url}\nsecret (shown once): ${r.secret}` })
  remote(webhook, ctx, { name: 'list', description: 'webhooks', method: 'webhooks.list', params: () => [], human: (hs) => table(hs, ['id', 'url', 'events', 'tenant', 'enabled']) })
  remote(webhook, ctx, { name: 'remove', description: 'remove a webhook', args: ['<id>'], method: 'webhooks.remove', params: ([id]) => [id], human: (h) => `removed ${h.id}` })
  for (const [name, on] of [['enable', true], ['disable', false]] as const) {
    remote(webhook, ctx, { name, description: `${name} a webhook`, args: ['<id>'], method: 'webhooks.setEnabled', params: ([id]) => [id, on], human: (h) => `${h.id}: ${h.enabled ? 'enabled' : 'disabled'}` })
  }

  const admin = program.command('admin').description('console admins and their roles')
  remote(admin, ctx, { name: 'create', description: 'create an admin', args: ['<id>'],
    options: (c) => c.requiredOption('--ssh-key <key>', 'their SSH public key line').option('--role <role:scope>', 'e.g. operator:msp-1/acme; repeatable', collect),
    method: 'fleet.createAdmin', params: ([id], o) => [{ id, sshKey: o.sshKey, bindings: (o.role ?? []).map((r: string) => { const i = r.indexOf(':'); return { role: i < 0 ? r : r.slice(0, i), scope: i < 0 ? '' : r.slice(i + 1) } }) }],
    human: (a) => `created admin ${a.id}` })
  remote(admin, ctx, { name: 'list', description: 'admins you manage', method: 'fleet.listAdmins', params: () => [], human: (as) => table(as.map((a: any) => ({ id: a.id, roles: a.bindings.map((b: Row) => `${b.role}:${b.scope || '/'}`).join(' '), totp: a.hasTotp })), ['id', 'roles', 'totp']) })

  const audit = program.command('audit').description('the audit log')
  remote(audit, ctx, { name: 'list', description: 'newest entries first', options: (c) => c.option('--limit <n>', 'how many', parsePositiveInt, 50),
    method: 'fleet.listAudit', params: (_, o) => [{ reverse: true, limit: o.limit }], human: (es) => table(es, ['seq', 'at', 'admin', 'action', 'target', 'result']) })

  remote(program, ctx, { name: 'api', description: "call any admin API method: patchswarm api rollouts.pause '[\"fix-1\"]'", args: ['<method>', '[params-json]'],
    method: '', params: () => [], human: () => '' })
  // `api` takes its method from the command line, so it is wired by hand.
  const api = program.commands.find((c) => c.name() === 'api')!
  api.action(async (method: string, params: string | undefined, opts: Common) => {
    const list = params === undefined ? [] : await jsonArg(ctx, params)
    if (!Array.isArray(list)) throw PatchswarmError.BAD_ARGUMENT('params are a JSON array')
    const result = await callConsole(ctx, opts, method, list)
    ctx.io.stdout(JSON.stringify(result, null, 2) + '\n')
  })
}
