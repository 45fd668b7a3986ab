/**
 * Settlement's epochs, computed locally: epoch `e` covers `[genesis + e·epochLength, genesis +
 * (e+1)·epochLength)` (ISettlement.Params). Genesis and the lengths are immutables of the
 * contract, read once; tickets then carry the epoch `Settlement.commitBatch` accepts, with no
 * chain read per request.
 */
import { settlementAbi } from '#contracts'
import type { ChainClient } from '../chain/client.ts'

export interface SettlementClock {
  /** unix seconds */
  genesis: bigint
  /** seconds */
  epochLength: bigint
  commitWindow: bigint
  challengeWindow: bigint
  /** the epoch containing unix second `seconds` */
  epochAt: (seconds: bigint) => bigint
  /** the epoch containing unix ms `ms` (a gateway's ticket epoch) */
  epochAtMs: (ms: number) => bigint
  /** unix second when epoch `epoch` ends */
  epochEnd: (epoch: bigint) => bigint
}

export function clockOf (p: { genesis: bigint, epochLength: bigint, commitWindow: bigint, challengeWindow: bigint }): SettlementClock {
  const epochAt = (s: bigint): bigint => s <= p.genesis ? 0n : (s - p.genesis) / p.epochLength
  return {
    ...p,
    epochAt,
    epochAtMs: (ms) => epochAt(BigInt(Math.floor(ms / 1000))),
    epochEnd: (e) => p.genesis + (e + 1n) * p.epochLength
  }
}

export async function settlementClock (client: Pick<ChainClient, 'publicClient' | 'contracts'>): Promise<SettlementClock> {
  const address = client.contracts.addresses.Settlement
  const read = async (functionName: string): Promise<bigint> =>
    BigInt(await client.publicClient.readContract({ address, abi: settlementAbi, functionName: functionName as any }) as bigint | number)
  const [genesis, epochLength, commitWindow, challengeWindow] = await Promise.all([read('genesis'), read('epochLength'), read('commitWindow'), read('challengeWindow')])
  return clockOf({ genesis, epochLength, commitWindow, challengeWindow })
}
