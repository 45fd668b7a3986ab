/**
 * Content-addressed bundle cache: memory first, then `<dir>/<cid>` on disk. Bytes are verified
 * against their CID on the way in, so nothing unverified is ever cached or run.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { verifyRawCid } from '#protocol'
import { NodeError } from './errors.ts'
import { writeFileAtomic } from './files.ts'

export interface BundleStore {
  get: (cid: string) => Uint8Array | undefined
  /** Verifies and stores; throws NodeError BUNDLE_MISMATCH when the bytes do not hash to `cid`. */
  put: (cid: string, bytes: Uint8Array) => void
  has: (cid: string) => boolean
}

const CID_FILE_NAME = /^b[a-z2-7]{20,120}$/

export function bundleStore (dir?: string, maxInMemory = 256): BundleStore {
  const memory = new Map<string, Uint8Array>()
  if (dir !== undefined) mkdirSync(dir, { recursive: true })

  function remember (cid: string, bytes: Uint8Array): void {
    memory.delete(cid)
    memory.set(cid, bytes)
    if (memory.size > maxInMemory) memory.delete(memory.keys().next().value as string)
  }

  return {
    get (cid) {
      const hit = memory.get(cid)
      if (hit !== undefined) return hit
      if (dir === undefined || !CID_FILE_NAME.test(cid)) return undefined
      const path = join(dir, cid)
      if (!existsSync(path)) return undefined
      const bytes = new Uint8Array(readFileSync(path))
      // a file changed on disk since it was written is not trusted
      if (!verifyRawCid(cid, bytes)) return undefined
      remember(cid, bytes)
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
