/**
 * keccak-256 for the request hot path, in WebAssembly (`hash-wasm`).
 *
 * Every request is hashed several times in keccak: its canonical request (`inputHash`) and
 * response (`outputHash`), the job (`jobHash`), and each EIP-712 ticket and receipt digest, at the
 * gateway and again at the worker. viem's keccak (noble, pure JavaScript) took 34 µs for a
 * 224-byte message on this machine and ~30 MB/s on bodies (a 1 MiB body cost ~35 ms of the event
 * loop, twice per side); this one takes ~10 µs and is several times faster on bodies
 * (bench: `node bench/keccak.ts`). Same function, same output: test/protocol/keccak.spec.ts holds it
 * equal to viem's on edge sizes around the 136-byte rate and on large inputs.
 */
import { createKeccak } from 'hash-wasm'
import { bytesToHex, hexToBytes, type ByteArray, type Hex } from 'viem'

// one instance, reset per digest: the module is single-threaded and every digest is synchronous
const hasher = await createKeccak(256)

/** keccak-256 of `data` (bytes, or hex as viem accepts it) as 0x-prefixed hex. */
export function keccak256 (data: ByteArray | Hex): Hex {
  hasher.init()
  hasher.update(typeof data === 'string' ? hexToBytes(data) : data)
  return bytesToHex(hasher.digest('binary'))
}

/** keccak-256 of `data` as 32 fresh bytes (for hashes that are hashed again, as Merkle nodes are). */
export function keccak256Bytes (data: ByteArray): Uint8Array {
  hasher.init()
  hasher.update(data)
  return hasher.digest('binary')
}
