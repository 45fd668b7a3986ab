/**
 * Content-addressed bundle cache: memory first, then `<dir>/<cid>` on disk. Bytes are verified
 * against their CID on the way in, so nothing unverified is ever cached or run.
 */
import { existsSync, mkdirSync, readFileSync, utimesSync } from 'node:fs'
import { join } from 'node:path'
import { verifyRawCid } from '#protocol'
import { NodeError } from './errors.ts'
import { writeFileAtomic } from './files.ts'
import { NODE_DEFAULTS } from './constants.ts'

export interface BundleStore {
  get: (cid: string) => Uint8Array | undefined
  /** Verifies and stores; throws NodeError BUNDLE_MISMATCH when the bytes do not hash to `cid`. */
  put: (cid: string, bytes: Uint8Array) => void
  has: (cid: string) => boolean
}

const CID_FILE_NAME = /^b[a-z2-7]{20,120}$/

/** Memory bounds by count and by bytes (least recently used dropped past either). */
export function bundleStore (dir?: string, maxInMemory: number = NODE_DEFAULTS.bundleCacheEntries, maxBytesInMemory: number = NODE_DEFAULTS.bundleCacheBytes): BundleStore {
  const memory = new Map<string, Uint8Array>()
  let bytesInMemory = 0
  if (dir !== undefined) mkdirSync(dir, { recursive: true })

  function forget (cid: string): void {
    const old = memory.get(cid)
    if (old === undefined) return
    memory.delete(cid)
    bytesInMemory -= old.byteLength
  }

  function remember (cid: string, bytes: Uint8Array): void {
    forget(cid)
    // a bundle larger than the whole budget is served from disk only
    if (bytes.byteLength > maxBytesInMemory) return
    memory.set(cid, bytes)
    bytesInMemory += bytes.byteLength
    while (memory.size > maxInMemory || bytesInMemory > maxBytesInMemory) forget(memory.keys().next().value as string)
  }

  return {
    get (cid) {
      const hit = memory.get(cid)
      if (hit !== undefined) { remember(cid, hit); return hit }
      if (dir === undefined || !CID_FILE_NAME.test(cid)) return undefined
      const path = join(dir, cid)
      if (!existsSync(path)) return undefined
      const bytes = new Uint8Array(readFileSync(path))
      // a file changed on disk since it was written is not trusted
      if (!verifyRawCid(cid, bytes)) return undefined
      remember(cid, bytes)
      // the file's time says when a process last loaded it (node/deploy/prewarm.ts: a restarted
      // worker pre-warms what its last run used, not every version it ever fetched)
      try { const now = new Date(); utimesSync(path, now, now) } catch {}
      return bytes
    },
    put (cid, bytes) {
      if (!verifyRawCid(cid, bytes)) {
        throw new NodeError('BUNDLE_MISMATCH', `bundle bytes do not match CID ${cid}`)
      }
      remember(cid, bytes)
      if (dir !== undefined && CID_FILE_NAME.test(cid)) {
        const path = join(dir, cid)
        if (!existsSync(path)) {
          writeFileAtomic(path, bytes, 0o644)
        }
      }
    },
    has (cid) {
      return this.get(cid) !== undefined
    }
  }
}
