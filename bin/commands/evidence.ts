// `patchswarm verify-evidence`: an auditor's offline check of an evidence bundle — every event
// signed by its endpoint, every endpoint enrolled by the console role of the organisation's root.
import type { Command } from 'commander'
import fs from 'node:fs/promises'
import { PatchswarmError } from '../../lib/errors.js'
import { type EvidenceResult, MAX_EVIDENCE_BYTES, verifyEvidence } from '../../lib/report/evidence.js'
import type { CliContext } from '../cli.js'
import { readEnvelopeFile, aboutFile } from './documents.js'

/** Problems shown in the human summary; --json lists them all. */
const SHOWN_PROBLEMS = 8
const SHOWN_TENANTS = 6

export function registerEvidenceCommand (program: Command, ctx: CliContext): void {
  program.command('verify-evidence')
    .description('check an evidence bundle offline: event signatures, enrollment certificates, sequences')
    .argument('<bundle>', 'the evidence bundle (JSON)')
    .option('--root <file>', 'a root you trust; without it the bundle\'s own root is used, which proves less')
    .option('--json', 'machine-readable output')
    .action(async (file: string, opts: { root?: string, json?: boolean }) => {
      const bytes = await readBundle(ctx.resolve(file))
      const root = opts.root ? await readEnvelopeFile(ctx.resolve(opts.root)) : undefined
      const result = aboutFile(file, () => verifyEvidence(bytes, root ? { root } : {}))
      ctx.print(opts, () => summary(file, result, opts.root), result)
      if (!result.ok) {
        const more = result.problems.length > 1 ? ` (and ${result.problems.length - 1} more problem(s))` : ''
        throw PatchswarmError.BAD_EVIDENCE(`${file}: ${result.problems[0]}${more}`)
      }
    })
}

async function readBundle (file: string): Promise<Buffer> {
  try {
    const stat = await fs.stat(file)
    if (!stat.isFile()) throw PatchswarmError.BAD_ARGUMENT(`${file} is not a file`)
    if (stat.size > MAX_EVIDENCE_BYTES) throw PatchswarmError.BAD_EVIDENCE(`${file} is larger than a bundle can be (${MAX_EVIDENCE_BYTES} bytes)`)
    return await fs.readFile(file)
  } catch (err) {
    if (err instanceof PatchswarmError) throw err
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw PatchswarmError.NOT_FOUND(`bundle ${file} does not exist`, err)
    throw PatchswarmError.IO_ERROR(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code}`, err)
  }
}

/** Who sealed the bundle, or plainly that nobody the root trusts did. */
function sealed (r: EvidenceResult): string {
  if (r.sealedBy.length === 0) return 'NOT sealed by the console role: the export time, filter and lists are nobody\'s word (see problems)'
  const keys = `by console key${r.sealedBy.length > 1 ? 's' : ''} ${r.sealedBy.map((k) => k.slice(0, 12) + '…').join(', ')}`
  return r.sealMismatch.length > 0 ? `${keys}, but the bundle was changed after export (see problems)` : keys
}

function summary (file: string, r: EvidenceResult, rootFile: string | undefined): string {
  const lines = [
    `${file}: evidence of ${r.org} ${r.ok ? 'VERIFIED' : `does NOT verify (${r.problems.length} problem(s))`}`,
    `  root       v${r.root.version} ${r.root.hash.slice(0, 16)}… ${r.root.pinned ? `pinned from ${rootFile}` : 'the bundle\'s own: NOT independently pinned (pass --root <file>)'}`,
    `  export     ${r.complete ? 'complete: every event of these endpoints from seq 1' : `FILTERED: ${r.filter}`}${r.generatedAt ? `, generated ${r.generatedAt}` : ''}`,
    `  sealed     ${sealed(r)}`,
    `  endpoints  ${r.endpoints}, ${r.certificates} enrollment certificate(s)`,
    `  events     ${r.events}${r.from ? `, ${r.from} → ${r.to}` : ''}`
  ]
  const tenants = Object.entries(r.tenants)
  for (const [path, t] of tenants.slice(0, SHOWN_TENANTS)) lines.push(`    ${path || '(organisation)'}: ${t.endpoints} endpoint(s), ${t.events} event(s)`)
  if (tenants.length > SHOWN_TENANTS) lines.push(`    … and ${tenants.length - SHOWN_TENANTS} more tenant(s)`)
  for (const note of r.notes) lines.push(`  note: ${note}`)
  for (const p of r.problems.slice(0, SHOWN_PROBLEMS)) lines.push(`  problem: ${p}`)
  if (r.problems.length > SHOWN_PROBLEMS) lines.push(`  … and ${r.problems.length - SHOWN_PROBLEMS} more problem(s) (--json lists them all)`)
  return lines.join('\n')
}
