/**
 * A local Hardhat chain for the chain tests and the fallback benchmark: `startLocalChain` on a
 * free port, plus funding of node keys and an on-chain project (FunctionRegistry.deploy) so
 * `requestExecution` accepts its function ids. Uses the node's unlocked deployer account.
 */
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { freePort } from '../helpers/network.ts'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createPublicClient, createWalletClient, http, parseEther, type Address, type Hex, type PublicClient } from 'viem'
import { functionRegistryAbi, settlementAbi, workerStakingAbi } from '#contracts'
import { rawCid } from '#protocol'
import { settlementClock, type SettlementClock } from '#node'
import { startLocalChain, type LocalChain, type LocalChainInit } from '../../node/chain/index.ts'
import { chainOf } from '../../node/chain/client.ts'


export interface TestChain extends LocalChain {
  dir: string
  contractsFile: string
  publicClient: PublicClient
  /** sends `ether` from the deployer to `to` */
  fund: (to: Address, ether?: string) => Promise<void>
  /** registers `<deployer>/<project>` with these functions (dummy manifest CID); `deterministic` names those declared deterministic */
  registerProject: (project: string, functions: string[], deterministic?: string[]) => Promise<void>
  /** JSON-RPC on the node (evm_setIntervalMining, …) */
  rpc: (method: string, params?: unknown[]) => Promise<any>
}

export async function startTestChain (params?: LocalChainInit['params']): Promise<TestChain> {
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-chain-'))
  // generous: on a loaded machine hardhat takes minutes to answer
  const chain = await startLocalChain({ port: await freePort(), dataDir: dir, startTimeoutMs: 240_000, params })
  const c = chainOf({ chainId: chain.chainId, rpcUrl: chain.rpcUrl })
  const publicClient = createPublicClient({ chain: c, transport: http(chain.rpcUrl), pollingInterval: 50 }) as PublicClient
  const wallet = createWalletClient({ account: chain.deployer, chain: c, transport: http(chain.rpcUrl), pollingInterval: 50 })
  const wait = async (hash: Hex): Promise<void> => { await publicClient.waitForTransactionReceipt({ hash, pollingInterval: 50 }) }
  return {
    ...chain,
    dir,
    contractsFile: join(dir, 'contracts.json'),
    publicClient,
    async fund (to, ether = '10') {
      await wait(await wallet.sendTransaction({ to, value: parseEther(ether) }))
    },
    async registerProject (project, functions, deterministic = []) {
      const mask = functions.reduce((m, f, i) => deterministic.includes(f) ? m | (1n << BigInt(i)) : m, 0n)
      // a 36-byte CIDv1 raw sha2-256 of nothing in particular: the registry only stores it
      const manifest: Hex = `0x01551220${'ab'.repeat(32)}`
      await wait(await wallet.writeContract({ address: chain.addresses.FunctionRegistry, abi: functionRegistryAbi, functionName: 'deploy', args: [chain.deployer, project, manifest, `0x${'00'.repeat(32)}`, functions, mask] }))
    },
    async rpc (method, params = []) {
      return await (publicClient.request as any)({ method, params })
    }
  }
}

/**
 * The settlement specs' chain (test/chain/checker, settlement, watch): a test chain plus
 * Settlement's clock, typed reads, chain-time travel (`evm_setNextBlockTimestamp`: Settlement reads
 * block.timestamp), a content-addressed blob directory standing in for a worker's published
 * batch documents, and the "no honest worker is slashed" bookkeeping every settlement test ends with.
 */
export interface SettlementChain extends TestChain {
  clock: SettlementClock
  /** a Settlement view call */
  read: <T>(functionName: string, args?: unknown[]) => Promise<T>
  /** WorkerStaking.stakeOf(a).amount */
  stakeOf: (a: Address) => Promise<bigint>
  /** the latest block's timestamp */
  chainNow: () => Promise<bigint>
  /** mines a block at chain time `t` (at the head + 1 s when the head is at or past `t`) */
  advanceTo: (t: bigint) => Promise<void>
  /** writes `bytes` under their raw CID in the blob dir (a settler's `publish`) */
  publish: (bytes: Uint8Array) => Promise<string>
  /** reads a blob by CID (a checker's `fetch`) */
  fetchBlob: (cid: string) => Promise<Uint8Array>
  /** records `a`'s current stake as an honest worker's */
  honest: (a: Address) => Promise<bigint>
  /** asserts every worker recorded with `honest` still has its whole stake */
  assertNobodySlashed: () => Promise<void>
  /** stops the chain and deletes its directory (blobs included) */
  close: () => Promise<void>
}

/** `params`: Settlement parameters over the local defaults (bench/settlement.ts uses the devnet's). */
export async function startSettlementChain (params?: LocalChainInit['params']): Promise<SettlementChain> {
  const chain = await startTestChain(params)
  const blobs = join(chain.dir, 'blobs')
  mkdirSync(blobs, { recursive: true })
  const clock = await settlementClock({ publicClient: chain.publicClient, contracts: { addresses: chain.addresses } as any })
  const read = async <T>(functionName: string, args: unknown[] = []): Promise<T> =>
    await chain.publicClient.readContract({ address: chain.addresses.Settlement, abi: settlementAbi, functionName: functionName as any, args: args as any }) as T
  const stakeOf = async (a: Address): Promise<bigint> =>
    (await chain.publicClient.readContract({ address: chain.addresses.WorkerStaking, abi: workerStakingAbi, functionName: 'stakeOf', args: [a] }) as { amount: bigint }).amount
  const chainNow = async (): Promise<bigint> => (await chain.publicClient.getBlock({ blockTag: 'latest' })).timestamp
  const stakes = new Map<Address, bigint>()
  return {
    ...chain,
    clock,
    read,
    stakeOf,
    chainNow,
    async advanceTo (t) {
      // the next block at exactly t (or the head + 1 s): evm_increaseTime would add t − head to a
      // clock that already ran on with the wall since the head was mined, overshooting t by every
      // second the test spent since (a minute at load 15 pushed a whole epoch past its target)
      const now = await chainNow()
      await chain.rpc('evm_setNextBlockTimestamp', [Number(t > now ? t : now + 1n)])
      await chain.rpc('evm_mine')
    },
    publish: async (bytes) => { const cid = rawCid(bytes); writeFileSync(join(blobs, cid), bytes); return cid },
    fetchBlob: async (cid) => readFileSync(join(blobs, cid)),
    async honest (a) { const amount = await stakeOf(a); stakes.set(a, amount); return amount },
    async assertNobodySlashed () {
      for (const [a, amount] of stakes) assert.equal(await stakeOf(a), amount, `honest worker ${a} was slashed`)
    },
    async close () {
      await chain.stop()
      rmSync(chain.dir, { recursive: true, force: true })
    }
  }
}
