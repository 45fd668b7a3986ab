/**
 * A local Hardhat chain for the chain tests and the fallback benchmark: `startLocalChain` on a
 * free port, plus funding of node keys and an on-chain project (FunctionRegistry.deploy) so
 * `requestExecution` accepts its function ids. Uses the node's unlocked deployer account.
 */
import { mkdtempSync } from 'node:fs'
import { freePort } from '../helpers/network.ts'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createPublicClient, createWalletClient, http, parseEther, type Address, type Hex, type PublicClient } from 'viem'
import { functionRegistryAbi } from '#contracts'
import { startLocalChain, type LocalChain } from '../../node/chain/index.ts'
import { chainOf } from '../../node/chain/client.ts'


export interface TestChain extends LocalChain {
  dir: string
  contractsFile: string
  publicClient: PublicClient
  /** sends `ether` from the deployer to `to` */
  fund: (to: Address, ether?: string) => Promise<void>
  /** registers `<deployer>/<project>` with these functions (dummy manifest CID) */
  registerProject: (project: string, functions: string[]) => Promise<void>
  /** JSON-RPC on the node (evm_setIntervalMining, …) */
  rpc: (method: string, params?: unknown[]) => Promise<any>
}

export async function startTestChain (): Promise<TestChain> {
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-chain-'))
  const chain = await startLocalChain({ port: await freePort(), dataDir: dir })
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
    async registerProject (project, functions) {
      // a 36-byte CIDv1 raw sha2-256 of nothing in particular: the registry only stores it
      const manifest: Hex = `0x01551220${'ab'.repeat(32)}`
      await wait(await wallet.writeContract({ address: chain.addresses.FunctionRegistry, abi: functionRegistryAbi, functionName: 'deploy', args: [chain.deployer, project, manifest, `0x${'00'.repeat(32)}`, functions, 0n] }))
    },
    async rpc (method, params = []) {
      return await (publicClient.request as any)({ method, params })
    }
  }
}
