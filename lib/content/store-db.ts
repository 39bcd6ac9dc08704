// The package store's LevelDB key spaces, as sublevels of whatever database or sublevel it is given:
//   chunks    `${chunkHash}!${digest}` -> { path, offset, length }   one local copy per package
//   packages  digest -> { size, files, chunks }                        committed packages
//   staged    `${digest}!${chunkHash}` -> 1                            chunks written to staging (re-hashed at open)
import { sublevel, type Database, type Sublevel } from '../store/db.js'
import type { Manifest } from './manifest.js'
import { placementsOf } from './manifest.js'

export interface ChunkLocation {
  digest: string
  path: string
  offset: number
  length: number
}

export interface PackageRecord {
  digest: string
  size: number
  files: number
  chunks: number
}

export class StoreDb {
  readonly chunks: Sublevel
  readonly packages: Sublevel
  readonly staged: Sublevel

  constructor (db: Database | Sublevel) {
    // A sublevel nests like a database; the cast only widens what sublevel() accepts.
    this.chunks = sublevel(db as Database, 'chunks')
    this.packages = sublevel(db as Database, 'packages')
    this.staged = sublevel(db as Database, 'staged')
  }

  async locations (hash: string): Promise<ChunkLocation[]> {
    const out: ChunkLocation[] = []
    for await (const [key, value] of this.chunks.iterator({ gt: `${hash}!`, lt: `${hash}~` })) {
      const v = value as Omit<ChunkLocation, 'digest'>
      out.push({ digest: key.slice(hash.length + 1), path: v.path, offset: v.offset, length: v.length })
    }
    return out
  }

  async dropLocation (hash: string, digest: string) {
    await this.chunks.del(`${hash}!${digest}`)
  }

  async getPackage (digest: string): Promise<PackageRecord | undefined> {
    return await this.packages.get(digest) as PackageRecord | undefined
  }

  async listPackages (): Promise<PackageRecord[]> {
    const out: PackageRecord[] = []
    for await (const value of this.packages.values()) out.push(value as PackageRecord)
    return out
  }

  /** Records a committed package and indexes one placement of each of its chunks, in one batch. */
  async indexPackage (digest: string, m: Manifest) {
    const first = new Map<number, Omit<ChunkLocation, 'digest'>>()
    for (const p of placementsOf(m)) if (!first.has(p.chunk)) first.set(p.chunk, { path: p.path, offset: p.offset, length: p.size })
    await this.chunks.batch([...first].map(([ci, loc]) => ({ type: 'put' as const, key: `${m.chunks[ci]!.hash}!${digest}`, value: loc })))
    const record: PackageRecord = { digest, size: m.size, files: m.files.length, chunks: m.chunks.length }
    await this.packages.put(digest, record, { sync: true } as object)
  }

  async unindexPackage (digest: string, m: Manifest) {
    await this.packages.del(digest, { sync: true } as object)
    await this.chunks.batch(m.chunks.map((c) => ({ type: 'del' as const, key: `${c.hash}!${digest}` })))
  }

  async stagedHashes (digest: string): Promise<string[]> {
    const out: string[] = []
    for await (const key of this.staged.keys({ gt: `${digest}!`, lt: `${digest}~` })) out.push(key.slice(digest.length + 1))
    return out
  }

  /** Records staged chunks in one batch; with `sync`, on disk (with every batch before it) when it resolves. */
  async markStaged (digest: string, hashes: string[], opts: { sync: boolean }) {
    await this.staged.batch(hashes.map((h) => ({ type: 'put' as const, key: `${digest}!${h}`, value: 1 })), { sync: opts.sync } as object)
  }

  async unmarkStaged (digest: string, hashes: Iterable<string>) {
    await this.staged.batch([...hashes].map((h) => ({ type: 'del' as const, key: `${digest}!${h}` })))
  }
}
