// Receiving a package chunk by chunk into its staging area. The staging files are created at their
// final sizes; each verified chunk is written to every place it belongs and then recorded in
// LevelDB, so after a crash only unrecorded chunks are needed again (recorded ones are re-hashed).
//
// Recording does not wait for the disk. A killed process loses nothing: the kernel holds its writes.
// After a power cut the re-hash at open drops every recorded chunk whose bytes did not reach the
// disk. So the files and the records are synced in the background, a record at most about
// SYNC_EVERY_MS after it was made, and the files again before commit and close: a power cut costs
// at most about that much of the download again. (A sync per chunk, as before, meant two fsyncs per
// chunk and ~1.5 ms of thread-pool CPU per MiB on the throughput benchmark; now ~0.6.)
import fs from 'node:fs/promises'
import path from 'node:path'
import { PatchswarmError } from '../errors.js'
import { contentHashHex, writeAtomic } from '../crypto/index.js'
import { manifestBytes, placementsOf, type Manifest, type Placement } from './manifest.js'
import { checkTree, locate, readAt, makeWritable, OpenFiles } from './tree.js'
import type { StoreDb } from './store-db.js'

/** How far apart the background syncs of a receive's files and records are, at most (ms). */
export const SYNC_EVERY_MS = 1000

export interface ReceiveProgress {
  chunks: number
  chunksDone: number
  bytes: number
  bytesDone: number
  /** Bytes copied from packages already in the store. */
  bytesCopied: number
  /** Bytes accepted through putChunk. */
  bytesReceived: number
}

/** What a receive needs from its store. */
export interface ReceiveHost {
  readonly db: StoreDb
  findLocal (hash: string): Promise<Buffer | null>
  install (stageRoot: string, digest: string, m: Manifest): Promise<void>
  track<T> (op: Promise<T>): Promise<T>
  assertOpen (): void
}

export class PackageReceive {
  readonly digest: string
  readonly manifest: Manifest
  private readonly host: ReceiveHost
  private readonly root: string
  private readonly files: string
  private readonly byHash = new Map<string, number>()
  private readonly placements: Placement[][]
  private readonly have = new Set<number>()
  private readonly writing = new Map<number, Promise<void>>()
  private committing: Promise<void> | null = null
  private done: boolean
  private copied = 0
  private received = 0
  // Group commit: chunks written since the last flush are recorded in one batch.
  private readonly openFiles: OpenFiles // one handle per staged file for the whole receive
  private pending: Array<{ ci: number, done: (err?: Error) => void }> = []
  private flushing: Promise<void> | null = null
  // Background sync: files written since their last sync; when the last sync was asked for; the
  // sync running and whether another was asked for meanwhile; the timer that syncs records made
  // since when no flush comes to, and whether its flush is to be a synced one; the last chunk recorded.
  private readonly dirty = new Set<string>()
  private lastSync = performance.now()
  private syncing: Promise<void> | null = null
  private syncAgain = false
  private forceSync = false
  private syncTimer: NodeJS.Timeout | null = null
  private lastRecorded = -1
  private releasing = false // releaseHandles() syncs everything itself
  // A sync that failed ends the receive: the kernel may have dropped what it could not write while
  // reads still see it, so nothing written since the last good sync is known to be on disk.
  private failed: PatchswarmError | null = null

  constructor (host: ReceiveHost, root: string, digest: string, m: Manifest, done = false) {
    this.host = host
    this.root = root
    this.files = path.join(root, 'files')
    this.openFiles = new OpenFiles(this.files, 'r+')
    this.digest = digest
    this.manifest = m
    this.done = done
    m.chunks.forEach((c, i) => this.byHash.set(c.hash, i))
    this.placements = m.chunks.map(() => [])
    for (const p of placementsOf(m)) this.placements[p.chunk]!.push(p)
    if (done) m.chunks.forEach((_, i) => this.have.add(i))
  }

  /** Creates or re-opens the staging area, keeps what verifies, copies what is local. */
  async open (): Promise<void> {
    await fs.mkdir(this.files, { recursive: true })
    await makeWritable(this.root) // a crash during commit may have left it read-only
    await writeAtomic(path.join(this.root, 'manifest.json'), manifestBytes(this.manifest), 0o644)
    for (const d of this.manifest.dirs) await fs.mkdir(locate(this.files, d), { recursive: true })
    for (const f of this.manifest.files) {
      const file = locate(this.files, f.path)
      const fh = await fs.open(file, 'a')
      try {
        if ((await fh.stat()).size !== f.size) await fh.truncate(f.size)
      } finally {
        await fh.close()
      }
    }
    await this.recheckStaged()
    await this.copyLocal()
  }

  /** Hashes (hex) of the chunks still needed. */
  missing (): string[] {
    const out: string[] = []
    this.manifest.chunks.forEach((c, i) => { if (!this.have.has(i)) out.push(c.hash) })
    return out
  }

  get progress (): ReceiveProgress {
    let bytes = 0
    let bytesDone = 0
    this.manifest.chunks.forEach((c, i) => {
      bytes += c.size
      if (this.have.has(i)) bytesDone += c.size
    })
    return { chunks: this.manifest.chunks.length, chunksDone: this.have.size, bytes, bytesDone, bytesCopied: this.copied, bytesReceived: this.received }
  }

  get committed (): boolean {
    return this.done
  }

  /**
   * Stores a chunk wherever the manifest places it. HASH_MISMATCH, with nothing written, when the
   * hash is not in the manifest or the bytes do not hash to it. Resolves false if it was already here.
   */
  async putChunk (hash: string | Uint8Array, bytes: Uint8Array): Promise<boolean> {
    this.host.assertOpen()
    const hex = typeof hash === 'string' ? hash : Buffer.from(hash).toString('hex')
    const ci = this.byHash.get(hex)
    if (ci === undefined) throw PatchswarmError.HASH_MISMATCH(`chunk ${hex.slice(0, 16)}… is not part of package ${this.digest.slice(0, 16)}…`)
    if (contentHashHex(bytes) !== hex) throw PatchswarmError.HASH_MISMATCH(`bytes offered for chunk ${hex.slice(0, 16)}… do not hash to it`)
    if (this.have.has(ci)) return false
    const busy = this.writing.get(ci)
    if (busy) {
      await busy
      return false
    }
    if (this.done || this.committing) return false
    const write = this.host.track(this.store(ci, bytes))
    this.writing.set(ci, write)
    try {
      await write
    } finally {
      this.writing.delete(ci)
    }
    this.received += bytes.length
    return true
  }

  /** Whether chunk `index` is here, so this node can already serve it to peers. */
  hasChunk (index: number): boolean {
    return this.have.has(index)
  }

  /**
   * A chunk's bytes for a peer, re-hashed before they leave: a staged chunk that rotted is
   * forgotten (it will be fetched again) and HASH_MISMATCH is thrown. With `into` (at least the
   * chunk's size), a staged chunk is read into it and a view of it is returned.
   */
  async readChunk (index: number, into?: Buffer): Promise<Buffer> {
    this.host.assertOpen()
    const chunk = this.manifest.chunks[index]
    if (!chunk || !this.have.has(index)) throw PatchswarmError.NOT_FOUND(`chunk ${index} of package ${this.digest.slice(0, 16)}… is not here`)
    if (!this.done && !this.committing) {
      const p = this.placements[index]![0]!
      const buf = into && into.length >= chunk.size ? into.subarray(0, chunk.size) : Buffer.allocUnsafe(chunk.size)
      try {
        const n = await readAt(await this.openFiles.get(p.path), buf, chunk.size, p.offset)
        if (n === chunk.size && contentHashHex(buf) === chunk.hash) return buf
      } catch (err) {
        if (!this.done && !this.committing) throw err
      }
      if (!this.done && !this.committing) {
        await this.forget(new Set([index]))
        throw PatchswarmError.HASH_MISMATCH(`staged chunk ${index} of package ${this.digest.slice(0, 16)}… rotted; it is needed again`)
      }
    }
    // Committed (or being moved into the store): the store's copy, which it re-hashes.
    await this.committing?.catch(() => {})
    const bytes = await this.host.findLocal(chunk.hash)
    if (!bytes) throw PatchswarmError.NOT_FOUND(`chunk ${index} of package ${this.digest.slice(0, 16)}… is not here`)
    return bytes
  }

  /** Verifies the whole package against the manifest and moves it into the store, read-only. */
  commit (): Promise<void> {
    if (this.done) return Promise.resolve()
    this.committing ??= this.host.track(this.finish()).finally(() => { this.committing = null })
    return this.committing
  }

  private async finish () {
    this.host.assertOpen()
    await Promise.all(this.writing.values())
    const left = this.manifest.chunks.length - this.have.size
    if (left > 0) {
      await this.releaseHandles()
      throw PatchswarmError.PACKAGE_INCOMPLETE(`package ${this.digest.slice(0, 16)}… still misses ${left} of ${this.manifest.chunks.length} chunks`)
    }
    // The last sync waits for the disk while the re-hash reads the page cache: both at once.
    const [synced, checked] = await Promise.allSettled([this.releaseHandles(), checkTree(this.files, this.manifest)])
    if (synced.status === 'rejected') throw synced.reason
    if (checked.status === 'rejected') throw checked.reason
    const check = checked.value
    if (check.first !== null) {
      // Rotted on disk since it was written: those chunks are needed again.
      await this.forget(check.bad)
      throw PatchswarmError.HASH_MISMATCH(`staged package ${this.digest.slice(0, 16)}…: ${check.first}; ${check.bad.size} chunk(s) are missing again`)
    }
    await this.host.install(this.root, this.digest, this.manifest)
    this.done = true
  }

  private async store (ci: number, bytes: Uint8Array) {
    await this.writePlacements(ci, bytes)
    await this.durable(ci)
    this.have.add(ci)
  }

  private async writePlacements (ci: number, bytes: Uint8Array) {
    for (const p of this.placements[ci]!) {
      const fh = await this.openFiles.get(p.path)
      await fh.write(bytes, 0, p.size, p.offset)
      this.dirty.add(p.path)
    }
  }

  /**
   * Resolves once chunk `ci` is recorded as staged. The first waiter flushes at once; whoever
   * arrives during that flush goes in the next one, so a lone chunk waits for nothing and a burst
   * shares one batch.
   */
  private durable (ci: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pending.push({ ci, done: (err) => err ? reject(err) : resolve() })
      this.flushing ??= this.flushAll().finally(() => { this.flushing = null })
    })
  }

  private async flushAll (): Promise<void> {
    while (this.pending.length > 0) await this.flush()
  }

  private async flush (): Promise<void> {
    const batch = this.pending
    this.pending = []
    if (batch.length === 0) return
    // Once a second this batch is a synced one: LevelDB then syncs its log with every batch before.
    const syncNow = this.forceSync || performance.now() - this.lastSync >= SYNC_EVERY_MS
    this.forceSync = false
    try {
      if (this.failed) throw this.failed
      if (syncNow) this.syncInBackground()
      else this.syncLater()
      await this.host.db.markStaged(this.digest, batch.map((b) => this.manifest.chunks[b.ci]!.hash), { sync: syncNow })
      this.lastRecorded = batch.at(-1)!.ci
      for (const b of batch) b.done()
    } catch (err) {
      for (const b of batch) b.done(err as Error)
    }
  }

  /** Set once a sync of the staged files failed: the receive is over (PackageStore starts anew). */
  get failure (): PatchswarmError | null {
    return this.failed
  }

  // When chunks stop coming, no flush syncs what the last ones wrote: a second after the first
  // unsynced record, the last chunk is recorded again (a put of the same key), synced.
  // (A sync clears the timer, so when it fires nothing was synced since it was set.)
  private syncLater (): void {
    if (this.releasing) return
    this.syncTimer ??= setTimeout(() => {
      this.syncTimer = null
      if (this.lastRecorded < 0) return
      this.forceSync = true
      this.durable(this.lastRecorded).catch(() => {})
    }, SYNC_EVERY_MS).unref()
  }

  private syncInBackground (): void {
    this.lastSync = performance.now()
    this.clearSyncTimer()
    if (this.releasing) return
    if (this.syncing) {
      this.syncAgain = true // files written since the running sync took its list
      return
    }
    this.syncing = this.syncWhileAsked().finally(() => { this.syncing = null })
  }

  private clearSyncTimer (): void {
    if (this.syncTimer) clearTimeout(this.syncTimer)
    this.syncTimer = null
  }

  private async syncWhileAsked (): Promise<void> {
    do {
      this.syncAgain = false
      try {
        await this.syncFiles()
      } catch (err) {
        this.fail(err as Error)
        return
      }
    } while (this.syncAgain)
  }

  private async syncFiles (): Promise<void> {
    for (const f of [...this.dirty]) {
      this.dirty.delete(f) // a write during its sync marks it dirty again
      try {
        await (await this.openFiles.get(f)).datasync()
      } catch (err) {
        this.dirty.add(f)
        throw err
      }
    }
  }

  private fail (err: Error): void {
    this.failed ??= PatchswarmError.IO_ERROR(`staged package ${this.digest.slice(0, 16)}… could not be synced to disk: ${err.message}`, err)
  }

  /** Syncs and closes the staged files (before they are moved, and when the store closes). */
  async releaseHandles (): Promise<void> {
    this.releasing = true
    this.clearSyncTimer()
    try {
      await this.flushing
      await this.syncing
      if (!this.failed) await this.syncFiles()
    } catch (err) {
      this.fail(err as Error)
    } finally {
      await this.openFiles.closeAll()
      this.releasing = false
    }
    if (this.failed) throw this.failed
  }

  // Chunks recorded before a restart: keep those whose every placement still hashes right.
  private async recheckStaged () {
    const recorded = await this.host.db.stagedHashes(this.digest)
    const buf = Buffer.allocUnsafe(this.manifest.chunking.max)
    const stale: string[] = []
    for (const hash of recorded) {
      const ci = this.byHash.get(hash)
      if (ci === undefined || !(await this.placementsMatch(ci, buf))) stale.push(hash)
      else this.have.add(ci)
    }
    if (stale.length) await this.host.db.unmarkStaged(this.digest, stale)
  }

  private async placementsMatch (ci: number, buf: Buffer): Promise<boolean> {
    const { hash, size } = this.manifest.chunks[ci]!
    for (const p of this.placements[ci]!) {
      const n = await readAt(await this.openFiles.get(p.path), buf, size, p.offset)
      if (n !== size || contentHashHex(buf.subarray(0, n)) !== hash) return false
    }
    return true
  }

  private async copyLocal () {
    for (let ci = 0; ci < this.manifest.chunks.length; ci++) {
      if (this.have.has(ci)) continue
      const bytes = await this.host.findLocal(this.manifest.chunks[ci]!.hash)
      if (!bytes) continue
      await this.store(ci, bytes)
      this.copied += bytes.length
    }
  }

  private async forget (bad: Set<number>) {
    for (const ci of bad) this.have.delete(ci)
    await this.host.db.unmarkStaged(this.digest, [...bad].map((ci) => this.manifest.chunks[ci]!.hash))
  }
}
