/**
 * Before a node acts on a chain (stakes, signs in its domain, follows its registry) it checks that
 * the RPC is the chain its contracts file describes: the same chain id, and code at every
 * contract address. A local chain restarted on the same port keeps its chain id but has no code
 * at the old addresses until the contracts are deployed again; another program's chain on the
 * port has another id or other code. Either way the node refuses to start rather than stake, sign
 * or serve against a chain it did not expect.
 */
import { createPublicClient, http, type PublicClient } from 'viem'
import { ConfigError, NodeError } from '../errors.ts'
import { chainOf } from './client.ts'
import type { ChainContracts } from './contracts.ts'

export interface VerifiedChain {
  chainId: number
  /** hash of block 0: what chain-derived state (cursors) is keyed by, with the chain id and addresses */
  genesisHash: `0x${string}`
  head: bigint
}

/** Throws ConfigError WRONG_CHAIN / NO_CONTRACT_CODE, or NodeError CHAIN_UNREACHABLE. */
export async function verifyChain (contracts: Pick<ChainContracts, 'rpcUrl' | 'chainId' | 'addresses'>, options: { client?: PublicClient, file?: string } = {}): Promise<VerifiedChain> {
  const client = options.client ?? createPublicClient({ chain: chainOf(contracts), transport: http(contracts.rpcUrl, { retryCount: 1, timeout: 10_000 }) }) as PublicClient
  const from = options.file === undefined ? 'the contracts file' : options.file
  let chainId: number
  try {
    chainId = await client.getChainId()
  } catch (err: any) {
    throw new NodeError('CHAIN_UNREACHABLE', `the chain RPC at ${contracts.rpcUrl} (from ${from}) did not answer: ${String(err?.shortMessage ?? err?.message).split('\n')[0]}`, { cause: err })
  }
  if (chainId !== contracts.chainId) throw new ConfigError('WRONG_CHAIN', `the RPC at ${contracts.rpcUrl} is chain ${chainId}, but ${from} is for chain ${contracts.chainId}; point it at the right RPC or use that chain's contracts file`)
  const entries = Object.entries(contracts.addresses) as Array<[string, `0x${string}`]>
  const codes = await Promise.all(entries.map(async ([, address]) => await client.getCode({ address })))
  const missing = entries.filter((_, i) => codes[i] === undefined || codes[i] === '0x').map(([name, address]) => `${name} ${address}`)
  if (missing.length > 0) throw new ConfigError('NO_CONTRACT_CODE', `chain ${chainId} at ${contracts.rpcUrl} has no contract at ${missing.join(', ')} (from ${from}): the chain was restarted or the file belongs to another deployment; deploy again (\`peerhost chain up\`) or use the right contracts file`)
  const [genesis, head] = await Promise.all([client.getBlock({ blockNumber: 0n }), client.getBlockNumber({ cacheTime: 0 })])
  return { chainId, genesisHash: genesis.hash as `0x${string}`, head }
}
