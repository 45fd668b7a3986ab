/**
 * Content ids for bundles and manifests: CIDv1, sha2-256, `raw` codec for bundle bytes — the same
 * CID helia gives a single-block raw file, so a bundle is addressable in IPFS as is.
 */
import { createHash } from 'node:crypto'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { ProtocolError } from './errors.ts'

const RAW_CODEC = 0x55
const SHA2_256 = 0x12

export function rawCid (bytes: Uint8Array): string {
  const hash = createHash('sha256').update(bytes).digest()
  return CID.createV1(RAW_CODEC, Digest.create(SHA2_256, new Uint8Array(hash))).toString()
}

/** True when `bytes` hash to `cid` (a CIDv1 raw sha2-256). Throws ProtocolError on a malformed CID. */
export function verifyRawCid (cid: string, bytes: Uint8Array): boolean {
  let parsed: CID
  try {
    parsed = CID.parse(cid)
  } catch (err) {
    throw new ProtocolError('INVALID_FIELD', `"${cid.slice(0, 80)}" is not a CID; expected a CIDv1 string`, { cause: err })
  }
  if (parsed.version !== 1 || parsed.code !== RAW_CODEC || parsed.multihash.code !== SHA2_256) {
    throw new ProtocolError('INVALID_FIELD', `CID ${cid} is not a CIDv1 raw sha2-256 CID`)
  }
  const hash = createHash('sha256').update(bytes).digest()
  return Buffer.compare(hash, parsed.multihash.digest) === 0
}
