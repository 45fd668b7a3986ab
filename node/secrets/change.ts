/**
 * The signed change a builder sends to put or delete a secret. The wallet signs a readable
 * EIP-191 message (what a hardware wallet shows), naming the gateway, chain, project, secret
 * name, the keccak256 of the sealed envelope (or `-` for a delete) and the time of signing:
 *
 * ```text
 * PeerHost secret change
 * action: put
 * gateway: 0x70997970c51812dc3a010c7d01b50e0d17dc79c8
 * chain: 31337
 * project: 0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266/demo
 * name: API_TOKEN
 * sealed: 0x…32 bytes…
 * issued: 1764000000
 * ```
 *
 * A gateway accepts the change when the message recovers to the project's wallet, `issued` is
 * within SECRET_CHANGE_SKEW_SEC of its clock and newer than the stored change (store.ts).
 */
import { keccak256, type Hex } from 'viem'

/** Largest clock difference between the builder and the gateway a signed change tolerates. */
export const SECRET_CHANGE_SKEW_SEC = 600

export interface SecretChange {
  action: 'put' | 'delete'
  gateway: string
  chainId: number
  wallet: string
  project: string
  name: string
  /** the sealed envelope (put only) */
  sealed?: Uint8Array
  /** unix seconds */
  issued: number
}

export function secretChangeMessage (c: SecretChange): string {
  return [
    'PeerHost secret change',
    `action: ${c.action}`,
    `gateway: ${c.gateway.toLowerCase()}`,
    `chain: ${c.chainId}`,
    `project: ${c.wallet.toLowerCase()}/${c.project}`,
    `name: ${c.name}`,
    `sealed: ${c.sealed === undefined ? '-' : keccak256(c.sealed)}`,
    `issued: ${c.issued}`
  ].join('\n')
}

/** The JSON body of `PUT` / `DELETE /_peerhost/secrets/<wallet>/<project>/<name>`. */
export interface SecretChangeBody {
  /** base64 envelope (put only) */
  sealed?: string
  issued: number
  signature: Hex
}
