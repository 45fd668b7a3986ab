/**
 * The signed change a builder sends to create or revoke an API key on one gateway. The project's
 * current owner (FunctionRegistry.ownerOf, as for secrets) signs a readable EIP-191 message:
 *
 * ```text
 * PeerHost api key change
 * action: create
 * gateway: 0x70997970c51812dc3a010c7d01b50e0d17dc79c8
 * chain: 31337
 * project: 0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266/demo
 * key: 3f1c0e5a9b2d4c6e
 * hash: 0x3f1c0e5a…(sha-256 of the key, create only; `-` for a revoke)
 * name: ci
 * issued: 1764000000
 * ```
 *
 * A gateway takes it within NODE_DEFAULTS.authKeyChangeSkewSec of its clock. Replays do nothing
 * harmful: a create of an id the gateway has ever seen is refused (a revoked key stays revoked), and
 * a revoke of a revoked key changes nothing.
 */
import type { Hex } from 'viem'

export interface KeyChange {
  action: 'create' | 'revoke'
  gateway: string
  chainId: number
  wallet: string
  project: string
  id: string
  /** create only */
  hash?: string
  /** create only */
  name?: string
  /** unix seconds */
  issued: number
}

export function keyChangeMessage (c: KeyChange): string {
  return [
    'PeerHost api key change',
    `action: ${c.action}`,
    `gateway: ${c.gateway.toLowerCase()}`,
    `chain: ${c.chainId}`,
    `project: ${c.wallet.toLowerCase()}/${c.project}`,
    `key: ${c.id}`,
    `hash: ${c.hash ?? '-'}`,
    `name: ${c.name ?? '-'}`,
    `issued: ${c.issued}`
  ].join('\n')
}

/** JSON body of `PUT` (create) and `DELETE` (revoke) `/_peerhost/keys/<wallet>/<project>/<id>`. */
export interface KeyChangeBody {
  hash?: string
  name?: string
  issued: number
  signature: Hex
}
