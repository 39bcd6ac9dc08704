// Where extensions live: `extensions/` shipped with patchswarm, then the user's folder. Each
// sub-folder is one extension; names starting with a dot are skipped (editor and VCS folders).
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { PatchswarmError } from '../../lib/errors.js'

/** The folder holding patchswarm's own package.json (found upwards: the code runs from source or from dist/). */
async function packageRoot (): Promise<string> {
  let dir = path.dirname(fileURLToPath(import.meta.url))
  for (;;) {
    try {
      const pkg = JSON.parse(await fs.readFile(path.join(dir, 'package.json'), 'utf8')) as { name?: unknown }
      if (pkg.name === 'patchswarm') return dir
    } catch {}
    const up = path.dirname(dir)
    if (up === dir) throw PatchswarmError.NOT_FOUND('cannot find patchswarm\'s package.json above ' + fileURLToPath(import.meta.url))
    dir = up
  }
}

/** The version extensions' `engines.patchswarm` is checked against. */
export async function patchswarmVersion (): Promise<string> {
  const root = await packageRoot()
  return (JSON.parse(await fs.readFile(path.join(root, 'package.json'), 'utf8')) as { version: string }).version
}

/** Shipped extensions first, then `$PATCHSWARM_EXTENSIONS_DIR` or `~/.patchswarm/extensions`. */
export async function defaultExtensionRoots (env: NodeJS.ProcessEnv = process.env): Promise<string[]> {
  const user = env.PATCHSWARM_EXTENSIONS_DIR || path.join(os.homedir(), '.patchswarm', 'extensions')
  return [path.join(await packageRoot(), 'extensions'), user]
}

/** The extension folders under `roots`, in root order and by name within a root; a missing root is empty. */
export async function discoverExtensionFolders (roots: readonly string[]): Promise<string[]> {
  const out: string[] = []
  for (const root of roots) {
    let names: string[]
    try {
      names = await fs.readdir(root)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'ENOENT' || code === 'ENOTDIR') continue
      throw PatchswarmError.IO_ERROR(`cannot list extensions in ${root}: ${code}`, err)
    }
    for (const name of names.sort()) {
      if (name.startsWith('.')) continue
      const folder = path.join(root, name)
      // stat, not the dirent: an extension folder may be a symlink (a developer's checkout).
      const st = await fs.stat(folder).catch(() => undefined)
      if (st?.isDirectory()) out.push(folder)
    }
  }
  return out
}
