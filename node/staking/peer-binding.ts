/**
 * The peer key's half of a WorkerStaking peer binding (see contracts/abi/peer-binding.ts): the
 * worker signs the binding message with its libp2p Ed25519 key; every node that trusts a binding
 * verifies that signature, because the chain only stores it. A binding whose peer signature does not
 * verify (a squatter who claimed someone else's peer id) is ignored.
 */
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { bytesToHex, hexToBytes, type Address, type Hex } from 'viem'
import { peerBindingMessage } from '#contracts'

/** The 64-byte Ed25519 signature by `peerKey` that `WorkerStaking.bindPeer` takes as `peerSig`. */
export async function signPeerBinding (peerKey: PrivateKey, chainId: number, staking: Address, account: Address): Promise<Hex> {
  if (peerKey.type !== 'Ed25519') throw new TypeError(`a peer binding needs an Ed25519 peer key, not ${peerKey.type}`)
  return bytesToHex(await peerKey.sign(peerBindingMessage(chainId, staking, account)))
}

/**
 * Whether `peerSig` is the Ed25519 signature of the binding message for `account` by the key of
 * `peerId` (base58 string). False for anything malformed, for non-Ed25519 peer ids (their key is
 * not in the id), and for a signature over another chain, deployment or account.
 */
export async function verifyPeerBinding (peerId: string, peerSig: Hex, chainId: number, staking: Address, account: Address): Promise<boolean> {
  try {
    const id = peerIdFromString(peerId)
    if (id.type !== 'Ed25519' || id.publicKey === undefined) return false
    const sig = hexToBytes(peerSig)
    if (sig.byteLength !== 64) return false
    return await id.publicKey.verify(peerBindingMessage(chainId, staking, account), sig)
  } catch {
    return false
  }
}
