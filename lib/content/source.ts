// From a publisher's file or directory to a manifest, optionally writing a copy of every file as its
// chunks pass: the bytes stored are exactly the bytes hashed, read once.
import fs from 'node:fs/promises'
import { chunkFile, type ChunkOptions } from './chunker.js'
import { ManifestBuilder, type Manifest } from './manifest.js'
import { walkSource } from './walk.js'
import { locate } from './tree.js'

export async function buildManifest (source: string, opts: ChunkOptions = {}): Promise<Manifest> {
  return packSource(source, null, opts)
}

/** Chunks `source`; with `copyTo`, also writes each file under that (existing, empty) directory. */
export async function packSource (source: string, copyTo: string | null, opts: ChunkOptions = {}): Promise<Manifest> {
  const entries = await walkSource(source)
  const builder = new ManifestBuilder(opts)
  const chunking = { ...opts, withBytes: copyTo !== null }
  for (const e of entries) {
    if (e.type === 'dir') {
      builder.addDir(e.path)
      if (copyTo) await fs.mkdir(locate(copyTo, e.path))
      continue
    }
    const chunks: Array<{ hash: Buffer, size: number }> = []
    const out = copyTo ? await fs.open(locate(copyTo, e.path), 'wx', 0o600) : null
    try {
      for await (const c of chunkFile(e.abs, chunking)) {
        chunks.push({ hash: c.hash, size: c.size })
        if (out) await out.write(c.bytes!, 0, c.size, c.offset)
      }
      await out?.sync()
    } finally {
      await out?.close()
    }
    builder.addFile(e.path, e.mode, chunks)
  }
  return builder.finish()
}
