// `patchswarm keygen`: a new Ed25519 key pair, the secret half 0600, the public half beside it.
import type { Command } from 'commander'
import fs from 'node:fs/promises'
import path from 'node:path'
import { PatchswarmError } from '../../lib/errors.js'
import { generateKeyPair, keyIdOf } from '../../lib/crypto/keys.js'
import { writeSecretKeyFile, writePublicKeyFile } from '../../lib/crypto/keyfile.js'
import type { CliContext } from '../cli.js'

export function registerKeyCommands (program: Command, ctx: CliContext): void {
  program.command('keygen')
    .description('create an Ed25519 key pair: FILE (secret, mode 0600) and FILE.pub (public)')
    .argument('<file>', 'where to write the secret key')
    .option('--name <name>', 'a label for the key, e.g. the person or role holding it')
    .option('--force', 'overwrite existing files')
    .option('--json', 'machine-readable output')
    .action(async (file: string, opts: { name?: string, force?: boolean, json?: boolean }) => {
      const secretFile = ctx.resolve(file)
      const publicFile = secretFile + '.pub'
      const keyPair = generateKeyPair()
      const write = { overwrite: opts.force ?? false, ...(opts.name ? { name: opts.name } : {}) }
      // Refuse before writing anything, so a refusal never leaves half a key pair behind.
      if (!opts.force) for (const f of [secretFile, publicFile]) await assertAbsent(f)
      await fs.mkdir(path.dirname(secretFile), { recursive: true, mode: 0o700 })
      await writeSecretKeyFile(secretFile, keyPair, write)
      try {
        await writePublicKeyFile(publicFile, keyPair.publicKey, write)
      } catch (err) {
        await fs.rm(secretFile, { force: true })
        throw err
      }
      const keyid = keyIdOf(keyPair.publicKey)
      ctx.print(opts, `key ${keyid}\n  secret ${secretFile} (mode 0600: keep it offline for root and release keys)\n  public ${publicFile}`,
        { keyid, secretKey: secretFile, publicKey: publicFile })
    })
}

async function assertAbsent (file: string): Promise<void> {
  const exists = await fs.access(file).then(() => true, () => false)
  if (exists) throw PatchswarmError.ALREADY_EXISTS(`${file} exists; refusing to overwrite it (use --force)`)
}
