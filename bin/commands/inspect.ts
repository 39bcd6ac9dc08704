// `patchswarm inspect`: what a manifest, root, release or directive says, checked for shape (not
// for signatures: that is `verify`).
import type { Command } from 'commander'
import { PatchswarmError } from '../../lib/errors.js'
import { parseCanonical } from '../../lib/crypto/canonical.js'
import { parseManifest, manifestDigest, type Manifest } from '../../lib/content/index.js'
import {
  type Envelope, type RootDocument, type ReleaseDocument, type DirectiveDocument, ROLE_NAMES,
  checkEnvelope, envelopeHash, parseRoot, parseRelease, parseDirective
} from '../../lib/trust/index.js'
import type { CliContext } from '../cli.js'
import { readFileBytes, aboutFile, short } from './documents.js'
import { formatBytes } from './release.js'

export function registerInspectCommand (program: Command, ctx: CliContext): void {
  program.command('inspect')
    .description('show what a manifest, root, release or directive file says')
    .argument('<file>', 'the document')
    .option('--json', 'machine-readable output')
    .action(async (file: string, opts: { json?: boolean }) => {
      const bytes = await readFileBytes(ctx.resolve(file), 'document')
      const value = aboutFile(file, () => parseCanonical(bytes)) as Record<string, unknown>
      if (value?._type === 'manifest') {
        const m = parseManifest(value)
        const digest = manifestDigest(m)
        ctx.print(opts, () => describeManifest(m, digest), { type: 'manifest', digest, manifest: m })
        return
      }
      const envelope = checkEnvelope(value)
      const signed = envelope.signed
      const signatures = envelope.signatures.map((s) => s.keyid)
      const hash = envelopeHash(envelope)
      switch (signed._type) {
        case 'root': {
          const root = parseRoot(signed)
          return ctx.print(opts, () => describeRoot(root, envelope, hash), { type: 'root', envelopeHash: hash, signatures, document: root })
        }
        case 'release': {
          const release = parseRelease(signed)
          return ctx.print(opts, () => describeRelease(release, envelope, hash), { type: 'release', envelopeHash: hash, signatures, document: release })
        }
        case 'directive': {
          const directive = parseDirective(signed)
          return ctx.print(opts, () => describeDirective(directive, envelope, hash), { type: 'directive', envelopeHash: hash, signatures, document: directive })
        }
        default:
          throw PatchswarmError.BAD_DOCUMENT(`${file}: unknown document type ${JSON.stringify(signed._type)}`)
      }
    })
}

function signatureLine (envelope: Envelope): string {
  return `  signed by ${envelope.signatures.length} key(s): ${envelope.signatures.map((s) => short(s.keyid)).join(', ') || '(none)'}`
}

function describeManifest (m: Manifest, digest: string): string {
  const lines = [
    `manifest ${digest}`,
    `  ${formatBytes(m.size)} in ${m.files.length} file(s) and ${m.dirs.length} dir(s); ${m.chunks.length} chunk(s), ${m.hash}, FastCDC ${m.chunking.min}/${m.chunking.avg}/${m.chunking.max}`
  ]
  for (const f of m.files.slice(0, 50)) lines.push(`  ${f.mode.toString(8)} ${formatBytes(f.size).padStart(10)}  ${f.path}`)
  if (m.files.length > 50) lines.push(`  … and ${m.files.length - 50} more`)
  return lines.join('\n')
}

function describeRoot (r: RootDocument, envelope: Envelope, hash: string): string {
  return [
    `root v${r.version} of ${r.org}, expires ${r.expires}`,
    ...ROLE_NAMES.map((name) => `  ${name.padEnd(8)} ${r.roles[name].threshold} of ${r.roles[name].keyids.length}: ${r.roles[name].keyids.map(short).join(', ')}`),
    ...r.delegations.map((d) => `  delegate ${d.name} for ${d.scope}: ${d.threshold} of ${d.keyids.length}: ${d.keyids.map(short).join(', ')}`),
    signatureLine(envelope),
    `  hash ${hash}`
  ].join('\n')
}

function describeRelease (r: ReleaseDocument, envelope: Envelope, hash: string): string {
  const install = r.install.type === 'exec' ? `exec ${r.install.argv.join(' ')}${r.install.reboot ? ' (reboot)' : ''}` : `files → ${r.install.target}`
  return [
    `release ${r.name} ${r.packageVersion} v${r.version} for ${r.platform}, risk ${r.risk}, scope ${r.scope || '(whole organisation)'}`,
    `  manifest ${r.manifest.digest} (${formatBytes(r.manifest.size)})`,
    `  install  ${install}`,
    `  expires  ${r.expires}`,
    signatureLine(envelope),
    `  hash ${hash}`
  ].join('\n')
}

function describeDirective (d: DirectiveDocument, envelope: Envelope, hash: string): string {
  return [
    `directive v${d.version}, issued ${d.issued}, expires ${d.expires}`,
    ...d.assignments.map((a) => `  ${a.action} ${a.release.name} ${a.release.packageVersion} → ${a.target.tenant || '(all)'}${a.target.group ? ' group ' + a.target.group : ''}${a.target.endpoints ? ` (${a.target.endpoints.length} endpoint(s))` : ''}`),
    signatureLine(envelope),
    `  hash ${hash}`
  ].join('\n')
}
