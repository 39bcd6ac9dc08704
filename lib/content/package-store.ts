// The package store: verified packages on disk, read-only, plus a LevelDB index of where every chunk
// can be found locally.
//
//   <dir>/packages/<digest>/manifest.json   canonical manifest bytes
//   <dir>/packages/<digest>/files/…         the assembled files (0444/0555, dirs 0555)
//   <dir>/staging/<digest>/…                same layout while a package is being received
//   <dir>/staging/import-…/                 an import in progress
//   <dir>/trash/…                           packages being removed
//
// Everything is written in staging and renamed into packages/ whole; packages/ never holds half a
// package. Bytes leave the store only through checks that hash exactly the bytes handed out.
import fs from 'node:fs/promises'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { PatchswarmError } from '../errors.js'
import { contentHashHex, writeAtomic, isHashHex } from '../crypto/index.js'
import type { Database, Sublevel } from '../store/db.js'
import { manifestBytes, manifestDigest, parseManifest, type Manifest } from './manifest.js'
import { packSource } from './source.js'
import type { ChunkOptions } from './chunker.js'
import { StoreDb, type PackageRecord } from './store-db.js'
import { PackageReader } from './package-reader.js'
import { PackageReceive, type ReceiveHost } from './receive.js'
import { checkTree, locate, makeReadOnly, makeWritable, readAt, removeTree, throwIfBad } from './tree.js'

export interface PackageStoreOptions {
  dir: string
  db: Database | Sublevel
}

export class PackageStore implements ReceiveHost {
  readonly dir: string
  readonly db: StoreDb
  private readonly packagesDir: string
  private readonly stagingDir: string
  private readonly trashDir: string
  private readonly receives = new Map<string, Promise<PackageReceive>>()
  private readonly readers = new Set<PackageReader>()
  private readonly ops = new Set<Promise<unknown>>()
  private opening: Promise<void> | null = null
  private closing: Promise<void> | null = null

  constructor (opts: PackageStoreOptions) {
    if (!opts || typeof opts.dir !== 'string' || !opts.db) throw PatchswarmError.BAD_ARGUMENT('PackageStore needs { dir, db }')
    this.dir = path.resolve(opts.dir)
    this.db = new StoreDb(opts.db)
    this.packagesDir = path.join(this.dir, 'packages')
    this.stagingDir = path.join(this.dir, 'staging')
    this.trashDir = path.join(this.dir, 'trash')
  }

  ready (): Promise<void> {
    this.opening ??= this.open()
    return this.opening
  }

  /** Waits for running operations; the database belongs to the caller and stays open. */
  close (): Promise<void> {
    this.closing ??= (async () => {
      await Promise.allSettled([...this.ops])
      // A failed sync ended that receive already; what it staged is re-hashed at the next open.
      for (const rx of this.receives.values()) await (await rx.catch(() => null))?.releaseHandles().catch(() => {})
      for (const reader of this.readers) await reader.close()
      this.readers.clear()
      this.receives.clear()
    })()
    return this.closing
  }

  /** Chunks a publisher's file or directory and stores it as a package. */
  async importSource (source: string, opts: ChunkOptions = {}): Promise<{ manifest: Manifest, digest: string }> {
    await this.ready()
    return this.track(this.importing(source, opts))
  }

  /** Starts or resumes receiving a package; see PackageReceive. */
  async receive (manifest: Manifest | Uint8Array): Promise<PackageReceive> {
    await this.ready()
    this.assertOpen()
    const m = parseManifest(manifest)
    const digest = manifestDigest(m)
    let rx = this.receives.get(digest)
    // One whose staging could not be synced is over: a new one re-hashes what is staged.
    const failed = rx && (await rx.catch(() => null))?.failure
    if (failed && this.receives.get(digest) === rx) {
      this.receives.delete(digest)
      await (await rx!).releaseHandles().catch(() => {})
    }
    rx = this.receives.get(digest)
    if (!rx) {
      rx = this.track(this.openReceive(digest, m))
      this.receives.set(digest, rx)
      rx.catch(() => this.receives.delete(digest))
    }
    return rx
  }

  /** A chunk's bytes from any local package, re-hashed. HASH_MISMATCH if only rotted copies remain. */
  async readChunk (hash: string | Uint8Array): Promise<Buffer> {
    await this.ready()
    const hex = typeof hash === 'string' ? hash : Buffer.from(hash).toString('hex')
    if (!isHashHex(hex)) throw PatchswarmError.BAD_ARGUMENT('readChunk needs a SHA-256 hash')
    const { bytes, rotted } = await this.lookup(hex)
    if (bytes) return bytes
    if (rotted) throw PatchswarmError.HASH_MISMATCH(`the local copy of chunk ${hex.slice(0, 16)}… no longer matches its hash`)
    throw PatchswarmError.NOT_FOUND(`chunk ${hex.slice(0, 16)}… is not in any local package`)
  }

  async findLocal (hash: string): Promise<Buffer | null> {
    return (await this.lookup(hash)).bytes
  }

  async has (digest: string): Promise<boolean> {
    await this.ready()
    return isHashHex(digest) && (await this.db.getPackage(digest)) !== undefined
  }

  /** A reader that serves the package's chunks by index, re-hashing each; close it when done. */
  async reader (digest: string): Promise<PackageReader> {
    const manifest = await this.manifest(digest)
    const reader = new PackageReader(digest, manifest, path.join(this.packagesDir, digest, 'files'))
    this.readers.add(reader)
    return reader
  }

  /** The manifest of a stored package, checked against its digest. */
  async manifest (digest: string): Promise<Manifest> {
    await this.requirePackage(digest)
    let bytes: Buffer
    try {
      bytes = await fs.readFile(path.join(this.packagesDir, digest, 'manifest.json'))
    } catch (err) {
      throw PatchswarmError.IO_ERROR(`cannot read the manifest of ${digest}`, err)
    }
    if (contentHashHex(bytes) !== digest) throw PatchswarmError.HASH_MISMATCH(`the stored manifest of ${digest.slice(0, 16)}… does not match its digest`)
    return parseManifest(bytes)
  }

  async list (): Promise<PackageRecord[]> {
    await this.ready()
    return this.db.listPackages()
  }

  /** Removes a package: out of the index first, then off the disk. */
  async remove (digest: string): Promise<void> {
    const m = await this.manifest(digest)
    this.receives.delete(digest) // a later receive of the same package starts afresh
    await this.track((async () => {
      const from = path.join(this.packagesDir, digest)
      const trash = path.join(this.trashDir, `${digest}-${randomBytes(4).toString('hex')}`)
      await fs.chmod(from, 0o755) // moving a directory rewrites its '..' entry
      await fs.rename(from, trash)
      await this.db.unindexPackage(digest, m)
      await removeTree(trash)
    })())
  }

  /** Full check of a stored package; HASH_MISMATCH names the first bad file. */
  async verify (digest: string): Promise<void> {
    const m = await this.manifest(digest)
    throwIfBad(await checkTree(path.join(this.packagesDir, digest, 'files'), m, { stopAtFirst: true }), `package ${digest.slice(0, 16)}…`)
  }

  /**
   * Copies a package to `destDir` (which must not exist), hashing exactly the bytes it copies. On any
   * mismatch it removes everything it wrote and throws HASH_MISMATCH. Files come out read-only.
   */
  async checkout (digest: string, destDir: string): Promise<void> {
    const m = await this.manifest(digest)
    const dest = path.resolve(destDir)
    try {
      await fs.mkdir(path.dirname(dest), { recursive: true })
      await fs.mkdir(dest) // never into an existing folder: what is there was not verified
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw PatchswarmError.ALREADY_EXISTS(`${dest} already exists`)
      throw PatchswarmError.IO_ERROR(`cannot create ${dest}: ${(err as NodeJS.ErrnoException).code}`, err)
    }
    try {
      const check = await this.track(checkTree(path.join(this.packagesDir, digest, 'files'), m, { copyTo: dest }))
      throwIfBad(check, `package ${digest.slice(0, 16)}…`)
      await makeReadOnly(dest, m, false)
      for (const d of m.dirs) await fs.chmod(locate(dest, d), 0o755) // the caller may move or delete it
    } catch (err) {
      await removeTree(dest)
      if (err instanceof PatchswarmError) throw err
      throw PatchswarmError.IO_ERROR(`checkout of ${digest.slice(0, 16)}… to ${dest} failed: ${(err as Error).message}`, err)
    }
  }

  // --- for PackageReceive -------------------------------------------------------------------------

  /** Makes a staged package read-only, renames it into packages/ and indexes it. */
  async install (stageRoot: string, digest: string, m: Manifest): Promise<void> {
    const final = path.join(this.packagesDir, digest)
    if (await exists(final)) {
      await removeTree(stageRoot) // an identical package got there first
    } else {
      await makeReadOnly(path.join(stageRoot, 'files'), m)
      await fs.chmod(path.join(stageRoot, 'manifest.json'), 0o444)
      await fs.rename(stageRoot, final)
      await fs.chmod(final, 0o555)
    }
    await this.db.indexPackage(digest, m)
    await this.db.unmarkStaged(digest, m.chunks.map((c) => c.hash))
  }

  track<T> (op: Promise<T>): Promise<T> {
    this.ops.add(op)
    op.then(() => this.ops.delete(op), () => this.ops.delete(op))
    return op
  }

  assertOpen () {
    if (this.closing) throw PatchswarmError.CLOSED('the package store is closed')
  }

  // --- inside -------------------------------------------------------------------------------------

  private async open () {
    this.assertOpen()
    try {
      for (const d of [this.packagesDir, this.stagingDir, this.trashDir]) await fs.mkdir(d, { recursive: true })
      for (const name of await fs.readdir(this.trashDir)) await removeTree(path.join(this.trashDir, name))
    } catch (err) {
      throw PatchswarmError.IO_ERROR(`cannot prepare the package store in ${this.dir}: ${(err as Error).message}`, err)
    }
    await this.reconcile()
  }

  // After a crash between rename and index, or between unindex and removal: disk wins for packages/.
  private async reconcile () {
    const onDisk = new Set((await fs.readdir(this.packagesDir)).filter(isHashHex))
    for (const rec of await this.db.listPackages()) {
      if (!onDisk.has(rec.digest)) await this.db.packages.del(rec.digest)
      onDisk.delete(rec.digest)
    }
    for (const digest of onDisk) {
      const dir = path.join(this.packagesDir, digest)
      try {
        const bytes = await fs.readFile(path.join(dir, 'manifest.json'))
        if (contentHashHex(bytes) !== digest) throw new Error('manifest does not match')
        const m = parseManifest(bytes)
        await makeReadOnly(path.join(dir, 'files'), m)
        await fs.chmod(dir, 0o555)
        await this.db.indexPackage(digest, m)
      } catch {
        await removeTree(dir) // not a package we can vouch for
      }
    }
  }

  private async importing (source: string, opts: ChunkOptions) {
    const stageRoot = path.join(this.stagingDir, `import-${randomBytes(8).toString('hex')}`)
    try {
      await fs.mkdir(path.join(stageRoot, 'files'), { recursive: true })
      const manifest = await packSource(source, path.join(stageRoot, 'files'), opts)
      const digest = manifestDigest(manifest)
      await writeAtomic(path.join(stageRoot, 'manifest.json'), manifestBytes(manifest), 0o644)
      await this.install(stageRoot, digest, manifest)
      return { manifest, digest }
    } catch (err) {
      await removeTree(stageRoot)
      throw err
    }
  }

  private async openReceive (digest: string, m: Manifest): Promise<PackageReceive> {
    if (await this.db.getPackage(digest)) return new PackageReceive(this, path.join(this.packagesDir, digest), digest, m, true)
    const rx = new PackageReceive(this, path.join(this.stagingDir, digest), digest, m)
    try {
      await rx.open()
    } catch (err) {
      await rx.releaseHandles().catch(() => {})
      throw err
    }
    return rx
  }

  private async lookup (hash: string): Promise<{ bytes: Buffer | null, rotted: boolean }> {
    let rotted = false
    for (const loc of await this.db.locations(hash)) {
      const file = locate(path.join(this.packagesDir, loc.digest, 'files'), loc.path)
      const buf = Buffer.allocUnsafe(loc.length)
      let n = -1
      try {
        const fh = await fs.open(file, 'r')
        try {
          n = await readAt(fh, buf, loc.length, loc.offset)
        } finally {
          await fh.close()
        }
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw PatchswarmError.IO_ERROR(`cannot read ${file}`, err)
      }
      if (n === loc.length && contentHashHex(buf) === hash) return { bytes: buf, rotted: false }
      if (n !== -1) rotted = true
      await this.db.dropLocation(hash, loc.digest)
    }
    return { bytes: null, rotted }
  }

  private async requirePackage (digest: string) {
    if (!(await this.has(digest))) throw PatchswarmError.NOT_FOUND(`package ${String(digest).slice(0, 16)}… is not in the store`)
  }
}

async function exists (p: string): Promise<boolean> {
  try {
    await fs.access(p)
    return true
  } catch {
    return false
  }
}
