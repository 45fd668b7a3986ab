/**
 * Fast secp256k1 for the request hot path. Every request costs a ticket signature (gateway), a
 * ticket recovery (worker), a receipt signature (worker) and a receipt recovery (gateway); with
 * the pure-JS curve that is ~3 ms per request on our machines, with libsecp256k1 (the `secp256k1`
 * package's N-API binding, prebuilt for linux-x64) ~0.15 ms. The typed-data digests still come
 * from protocol/eip712.ts, so signatures are byte-identical to viem's.
 */
import { createRequire } from 'node:module'
import { bytesToHex, hexToBytes, type Address, type Hex } from 'viem'
import { keccak256 } from '#protocol'
import { privateKeyToAccount, type PrivateKeyAccount } from 'viem/accounts'
import { hashTypedData } from 'viem'
import type { TypedDataSigner } from '#protocol'

interface Secp256k1 {
  ecdsaSign: (msg32: Uint8Array, key: Uint8Array) => { signature: Uint8Array, recid: number }
  ecdsaRecover: (sig64: Uint8Array, recid: number, msg32: Uint8Array, compressed: boolean) => Uint8Array
}

const require = createRequire(import.meta.url)
const secp: Secp256k1 = require('secp256k1')

/** secp256k1 group order / 2: signatures with a larger `s` are the malleable twin and refused. */
const HALF_N = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0n

/** A typed-data signer backed by libsecp256k1, with the viem account kept for chain calls. */
export interface FastSigner extends TypedDataSigner {
  account: PrivateKeyAccount
  signDigest: (digest: Hex) => Hex
}

export function fastSigner (privateKey: Hex): FastSigner {
  const key = hexToBytes(privateKey)
  const account = privateKeyToAccount(privateKey)
  const signDigest = (digest: Hex): Hex => {
    const { signature, recid } = secp.ecdsaSign(hexToBytes(digest), key)
    const out = new Uint8Array(65)
    out.set(signature, 0)
    out[64] = 27 + recid
    return bytesToHex(out)
  }
  return {
    address: account.address,
    account,
    signDigest,
    async signTypedData (args) {
      return signDigest(hashTypedData(args as Parameters<typeof hashTypedData>[0]))
    }
  }
}

/**
 * Recovers the address that signed `digest` (lower-case hex: the hot path compares with
 * `sameAddress` and skips the checksum's extra keccak); undefined for a malformed or malleable
 * (high-s) signature.
 */
export function recoverDigestSigner (digest: Hex, signature: Hex): Address | undefined {
  if (!/^0x[0-9a-fA-F]{130}$/.test(signature)) return undefined
  const sig = hexToBytes(signature)
  const v = sig[64]
  const recid = v >= 27 ? v - 27 : v
  if (recid !== 0 && recid !== 1) return undefined
  const s = BigInt(bytesToHex(sig.subarray(32, 64)))
  if (s === 0n || s > HALF_N) return undefined
  let pub: Uint8Array
  try {
    pub = secp.ecdsaRecover(sig.subarray(0, 64), recid, hexToBytes(digest), false)
  } catch {
    return undefined
  }
  return addressOfKey(pub)
}

/**
 * The address of an uncompressed public key (keccak of its 64 bytes), remembered for the few keys
 * a node meets again and again (its gateways and workers): a recovery then costs no keccak in
 * JavaScript. The cache is bounded; a flood of fresh keys only evicts.
 */
const addresses = new Map<string, Address>()
const MAX_ADDRESSES = 4_096
function addressOfKey (pub: Uint8Array): Address {
  const key = Buffer.from(pub.buffer, pub.byteOffset, pub.byteLength).toString('latin1')
  let address = addresses.get(key)
  if (address === undefined) {
    address = `0x${keccak256(pub.subarray(1)).slice(-40)}`
    if (addresses.size >= MAX_ADDRESSES) addresses.delete(addresses.keys().next().value as string)
    addresses.set(key, address)
  }
  return address
}

/** Case-insensitive address comparison. */
export function sameAddress (a: string | undefined, b: string | undefined): boolean {
  return a !== undefined && b !== undefined && a.toLowerCase() === b.toLowerCase()
}
