/**
 * EIP-712 typed data for `WorkerStaking.bindPeer`: the staking address signs
 * `PeerBinding(address account,bytes peerId,uint256 nonce,uint256 deadline)` under the domain
 * ("PeerHost", "1", chain id, WorkerStaking address). `nonce` is `WorkerStaking.nonces(account)`.
 */
import type { Address, Hex } from 'viem'

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
