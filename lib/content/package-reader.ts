// Serving chunks of one stored package by index, fast: the manifest says where each chunk lives,
// file handles stay open, and every chunk is re-hashed before it leaves.
import { PatchswarmError } from '../errors.js'
import { contentHashHex } from '../crypto/index.js'
import { placementsOf, type Manifest, type Placement } from './manifest.js'
import { readAt, OpenFiles } from './tree.js'

export class PackageReader {
  private readonly first: Placement[] = []
  private readonly openFiles: OpenFiles
  private closed = false

  constructor (readonly digest: string, readonly manifest: Manifest, files: string) {
    this.openFiles = new OpenFiles(files, 'r')
    for (const p of placementsOf(manifest)) this.first[p.chunk] ??= p
  }

  /**
   * Chunk `index`, re-hashed: HASH_MISMATCH if the copy on disk rotted. With `into` (at least the
   * chunk's size), the bytes are read into it and a view of it is returned: a caller that serves
   * many chunks reuses its buffers instead of handing the GC a fresh one per chunk.
   */
  async readChunk (index: number, into?: Buffer): Promise<Buffer> {
    if (this.closed) throw PatchswarmError.CLOSED('the package reader is closed')
    const chunk = this.manifest.chunks[index]
    const p = this.first[index]
    if (!chunk || !p) throw PatchswarmError.NOT_FOUND(`package ${this.digest.slice(0, 16)}… has no chunk ${index}`)
    const buf = into && into.length >= chunk.size ? into.subarray(0, chunk.size) : Buffer.allocUnsafe(chunk.size)
    let n: number
    try {
      n = await readAt(await this.openFiles.get(p.path), buf, chunk.size, p.offset)
    } catch (err) {
      throw PatchswarmError.IO_ERROR(`cannot read chunk ${index} of package ${this.digest.slice(0, 16)}…: ${(err as NodeJS.ErrnoException).code}`, err)
    }
    if (n !== chunk.size || contentHashHex(buf) !== chunk.hash) {
      throw PatchswarmError.HASH_MISMATCH(`chunk ${index} of package ${this.digest.slice(0, 16)}… no longer matches its hash`)
    }
    return buf
  }

  async close (): Promise<void> {
    this.closed = true
    await this.openFiles.closeAll()
  }

}
