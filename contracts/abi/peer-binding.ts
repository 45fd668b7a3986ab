/**
 * Binding a libp2p peer id to a WorkerStaking account takes two signatures (`WorkerStaking.bindPeer`):
 *
 * 1. The staking account's EIP-712 signature of
 *    `PeerBinding(address account,bytes peerId,uint256 nonce,uint256 deadline)` under the domain
 *    ("PeerHost", "1", chain id, WorkerStaking address); `nonce` is `WorkerStaking.nonces(account)`.
 *    The contract checks it: nobody binds a peer id to an account without the account's consent.
 * 2. The peer key's Ed25519 signature (`peerSig`, 64 bytes) of {@link peerBindingMessage}: the
 *    holder of the peer key consents. Ed25519 is not verifiable cheaply on chain, so the contract
 *    only stores and emits it (`PeerBound`, `peerOf`); every node that trusts a binding (gateway
 *    admission, anyone building a worker view from `PeerBound`) verifies it with
 *    `verifyPeerBinding` (node/staking/peer-binding.ts) and ignores a binding without a valid one. So anyone may
 *    *claim* any peer id on chain, but the claim is worthless without the peer key, and it can never
 *    stop the real holder from binding (bindings are per account, not first-come per peer id).
 *
 * The message is exactly 96 bytes, packed, big-endian:
 *
 *   bytes  0..23  UTF-8 "peerhost-peer-binding-v1" (the tag: this signature means nothing else)
 *   bytes 24..55  uint256 chain id            (no replay onto another chain)
 *   bytes 56..75  WorkerStaking address       (no replay onto another deployment)
 *   bytes 76..95  the staking account address (the account the peer key agrees to serve as)
 */
import { encodePacked, hexToBytes, type Address, type Hex } from 'viem'

export const PEER_BINDING_TYPES = {
  PeerBinding: [
    { name: 'account', type: 'address' },
    { name: 'peerId', type: 'bytes' },
    { name: 'nonce', type: 'uint256' },
    { name: 'deadline', type: 'uint256' }
  ]
} as const

export interface PeerBinding { account: Address, peerId: Hex, nonce: bigint, deadline: bigint }

export function peerBindingTypedData (chainId: number, staking: Address, message: PeerBinding) {
  return {
    domain: { name: 'PeerHost', version: '1', chainId, verifyingContract: staking },
    types: PEER_BINDING_TYPES,
    primaryType: 'PeerBinding',
    message
  } as const
}

/** The domain tag that starts every peer-binding message. */
export const PEER_BINDING_TAG = 'peerhost-peer-binding-v1'
/** Length of {@link peerBindingMessage}: 24 + 32 + 20 + 20. */
export const PEER_BINDING_MESSAGE_LENGTH = 96

/** The bytes the peer key signs (Ed25519) to agree to serve `account` on this chain and deployment. */
export function peerBindingMessage (chainId: number | bigint, staking: Address, account: Address): Uint8Array {
  return hexToBytes(encodePacked(['string', 'uint256', 'address', 'address'], [PEER_BINDING_TAG, BigInt(chainId), staking, account]))
}
