// `patchswarm root init|rotate`, and `patchswarm sign` for adding signatures one key holder at a time.
import { type Command, Option } from 'commander'
import { PatchswarmError } from '../../lib/errors.js'
import { readKeyFile } from '../../lib/crypto/keyfile.js'
import {
  type Envelope, type RootDocument, type RoleName, type DelegationInit, ROLE_NAMES,
  newRoot, rotateRoot, parseRoot, signEnvelope, addSignature, verifyEnvelope,
  verifySelfSignedRoot, verifyRootStep
} from '../../lib/trust/index.js'
import type { CliContext } from '../cli.js'
import { parseDuration, parsePositiveInt, collect, addSeconds } from './options.js'
import { readEnvelopeFile, writeEnvelopeFile, loadSigners, loadKeyIds, short } from './documents.js'

interface RoleOptions {
  rootKey?: string[], rootThreshold?: number
  releaseKey?: string[], releaseThreshold?: number
  consoleKey?: string[], consoleThreshold?: number
  delegate?: string[]
  expires?: number
  sign?: string[]
  out: string
  partial?: boolean
  force?: boolean
  json?: boolean
}

function roleOptions (cmd: Command, required: boolean): Command {
  const opt = required ? cmd.requiredOption.bind(cmd) : cmd.option.bind(cmd)
  for (const role of ROLE_NAMES) {
    opt(`--${role}-key <file>`, `a key of the ${role} role (public or secret key file; repeat for several)${required ? '' : '; replaces the role\'s keys'}`, collect)
    cmd.option(`--${role}-threshold <n>`, `signatures the ${role} role needs (default ${required ? '1' : 'unchanged'})`, parsePositiveInt)
  }
  return cmd
    .option('--delegate <name:scope:threshold:keyfiles>', 'delegate release authority for a tenant subtree, e.g. acme:msp-1/acme:1:acme-release.pub (repeat; on rotate replaces all delegations)', collect)
    .option('--sign <keyfile>', 'secret key file to sign with (repeat); on init, secret root keys given with --root-key sign too', collect)
    .option('--partial', 'write the document even if it lacks signatures (others add theirs with `patchswarm sign`)')
    .option('--force', 'overwrite the output file')
    .option('--json', 'machine-readable output')
}

export function registerRootCommands (program: Command, ctx: CliContext): void {
  const root = program.command('root').description('the organisation\'s root of trust: its keys, roles and thresholds')

  roleOptions(root.command('init')
    .description('create and sign root v1 of an organisation')
    .requiredOption('--org <name>', 'the organisation\'s name')
    .addOption(new Option('--expires <duration>', 'how long root v1 is valid').argParser(parseDuration).default(365 * 86400, '365d'))
    .requiredOption('--out <file>', 'where to write the signed root'), true)
    .action(async (opts: RoleOptions & { org: string }) => {
      const keys = {} as Record<RoleName, string[]>
      const thresholds = {} as Record<RoleName, number>
      for (const role of ROLE_NAMES) {
        keys[role] = await loadKeyIds(optionFiles(ctx, opts, role)!)
        thresholds[role] = opts[`${role}Threshold`] ?? 1
      }
      const doc = newRoot({
        org: opts.org, keys, thresholds,
        delegations: await parseDelegations(ctx, opts.delegate),
        expires: addSeconds(ctx.io.now(), opts.expires!)
      })
      // Root key files that hold a secret sign right away, besides any --sign keys.
      const signers = await loadSigners(await secretFiles([...optionFiles(ctx, opts, 'root')!, ...(opts.sign ?? []).map((f) => ctx.resolve(f))]))
      const envelope = await signEnvelope(doc, signers)
      const status = verifyEnvelope(envelope, doc.roles.root)
      await finish(ctx, opts, envelope, status.ok ? [] : [`root role: ${status.valid.length} of ${status.threshold} signatures`], () => verifySelfSignedRoot(envelope))
    })

  roleOptions(root.command('rotate')
    .description('make root vN+1 from vN: new keys or thresholds, signed by old and new root keys')
    .requiredOption('--root <file>', 'the current (trusted) root')
    .option('--expires <duration>', 'how long the new root is valid (default: keep the old date)', parseDuration)
    .requiredOption('--out <file>', 'where to write the new root'), false)
    .action(async (opts: RoleOptions & { root: string }) => {
      const prevEnvelope = await readEnvelopeFile(ctx.resolve(opts.root))
      const prev = parseRoot(prevEnvelope.signed)
      const keys: Partial<Record<RoleName, string[]>> = {}
      const thresholds: Partial<Record<RoleName, number>> = {}
      for (const role of ROLE_NAMES) {
        const files = optionFiles(ctx, opts, role)
        if (files) keys[role] = await loadKeyIds(files)
        const t = opts[`${role}Threshold`]
        if (t !== undefined) thresholds[role] = t
      }
      const doc = rotateRoot(prev, {
        keys, thresholds,
        ...(opts.delegate ? { delegations: await parseDelegations(ctx, opts.delegate) } : {}),
        ...(opts.expires ? { expires: addSeconds(ctx.io.now(), opts.expires) } : {})
      })
      const envelope = await signEnvelope(doc, await loadSigners((opts.sign ?? []).map((f) => ctx.resolve(f))))
      const byOld = verifyEnvelope(envelope, prev.roles.root)
      const byNew = verifyEnvelope(envelope, doc.roles.root)
      const lacking = [
        ...(byOld.ok ? [] : [`old root role (v${prev.version}): ${byOld.valid.length} of ${byOld.threshold} signatures`]),
        ...(byNew.ok ? [] : [`new root role (v${doc.version}): ${byNew.valid.length} of ${byNew.threshold} signatures`])
      ]
      await finish(ctx, opts, envelope, lacking, () => verifyRootStep(prev, envelope))
    })

  program.command('sign')
    .description('add signatures to a signed document (root, release or directive) in place')
    .argument('<document>', 'the document file')
    .requiredOption('--key <keyfile>', 'secret key file to sign with (repeat)', collect)
    .option('--json', 'machine-readable output')
    .action(async (file: string, opts: { key: string[], json?: boolean }) => {
      const path = ctx.resolve(file)
      let envelope = await readEnvelopeFile(path)
      for (const signer of await loadSigners(opts.key.map((f) => ctx.resolve(f)))) envelope = await addSignature(envelope, signer)
      await writeEnvelopeFile(path, envelope, true)
      const keyids = envelope.signatures.map((s) => s.keyid)
      ctx.print(opts, `${path}: ${keyids.length} signature(s): ${keyids.map(short).join(', ')}`, { document: path, signatures: keyids })
    })
}

function optionFiles (ctx: CliContext, opts: RoleOptions, role: RoleName): string[] | undefined {
  return opts[`${role}Key`]?.map((f) => ctx.resolve(f))
}

async function secretFiles (files: string[]): Promise<string[]> {
  const out: string[] = []
  for (const f of new Set(files)) if ((await readKeyFile(f)).secretKey) out.push(f)
  return out
}

async function parseDelegations (ctx: CliContext, specs: string[] | undefined): Promise<DelegationInit[]> {
  const out: DelegationInit[] = []
  for (const spec of specs ?? []) {
    const m = /^([^:]+):([^:]+):(\d+):(.+)$/.exec(spec)
    if (!m) throw PatchswarmError.BAD_ARGUMENT(`--delegate ${spec}: expected name:scope:threshold:keyfile[,keyfile…]`)
    out.push({ name: m[1]!, scope: m[2]!, threshold: Number(m[3]), keys: await loadKeyIds(m[4]!.split(',').map((f) => ctx.resolve(f))) })
  }
  return out
}

/** Writes the root if it is fully signed (checked by `check`), or partially signed with --partial. */
async function finish (ctx: CliContext, opts: RoleOptions, envelope: Envelope<RootDocument>, lacking: string[], check: () => unknown): Promise<void> {
  if (lacking.length === 0) check()
  else if (!opts.partial) throw PatchswarmError.THRESHOLD_NOT_MET(`not written: ${lacking.join('; ')} (add --sign keys, or --partial and collect signatures with \`patchswarm sign\`)`)
  const out = ctx.resolve(opts.out)
  await writeEnvelopeFile(out, envelope, opts.force ?? false)
  const doc = envelope.signed
  const roles = Object.fromEntries(ROLE_NAMES.map((r) => [r, doc.roles[r]]))
  ctx.print(opts, () => [
    `root v${doc.version} of ${doc.org} → ${out}${lacking.length ? ' (PARTIAL: ' + lacking.join('; ') + ')' : ''}`,
    ...ROLE_NAMES.map((r) => `  ${r.padEnd(8)} ${doc.roles[r].threshold} of ${doc.roles[r].keyids.length}: ${doc.roles[r].keyids.map(short).join(', ')}`),
    ...doc.delegations.map((d) => `  delegate ${d.name} for ${d.scope}: ${d.threshold} of ${d.keyids.length}`),
    `  expires  ${doc.expires}`
  ].join('\n'), { file: out, org: doc.org, version: doc.version, expires: doc.expires, complete: lacking.length === 0, lacking, roles, delegations: doc.delegations })
}
