/**
 * Deploys the four PeerHost contracts with viem and wires them together (the local chain and the
 * benchmarks use it; public networks use the Ignition module in `ignition/modules/PeerHost.ts`,
 * which deploys the same thing with the same parameters).
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { getAddress } from 'viem'
import type { Abi, Account, Address, Chain, Hex, PublicClient, Transport, WalletClient } from 'viem'

export const CONTRACT_NAMES = ['FunctionRegistry', 'WorkerStaking', 'Settlement', 'ExecutionCoordinator'] as const
export type ContractName = typeof CONTRACT_NAMES[number]
export type PeerHostAddresses = Record<ContractName, Address>

export interface PeerHostParams {
  minWorkerStake: bigint
  minGatewayStake: bigint
  /** seconds; must exceed epochLength + commitWindow + challengeWindow and one day */
  unbondingPeriod: bigint
  epochLength: bigint
  commitWindow: bigint
  challengeWindow: bigint
  minBatchBond: bigint
  slashBps: number
  challengerShareBps: number
  disagreementQuorum: number
  penaltyBps: number
  keeperShareBps: number
  /** receives the non-challenger share of slashed funds; the deployer when omitted */
  treasury?: Address
}

const ETHER = 10n ** 18n

/** Short windows for a local chain and tests. */
export const LOCAL_PARAMS: PeerHostParams = {
  minWorkerStake: ETHER,
  minGatewayStake: ETHER,
  unbondingPeriod: 2n * 86_400n,
  epochLength: 60n,
  commitWindow: 300n,
  challengeWindow: 600n,
  minBatchBond: ETHER / 100n,
  slashBps: 5_000,
  challengerShareBps: 5_000,
  disagreementQuorum: 2,
  penaltyBps: 1_000,
  keeperShareBps: 1_000
}

/** Polygon Amoy / mainnet defaults (documented in docs/contracts.md). */
export const NETWORK_PARAMS: PeerHostParams = {
  minWorkerStake: 100n * ETHER,
  minGatewayStake: 500n * ETHER,
  unbondingPeriod: 7n * 86_400n,
  epochLength: 3_600n,
  commitWindow: 3_600n,
  challengeWindow: 86_400n,
  minBatchBond: ETHER,
  slashBps: 5_000,
  challengerShareBps: 5_000,
  disagreementQuorum: 3,
  penaltyBps: 1_000,
  keeperShareBps: 1_000
}

export interface Artifact { abi: Abi, bytecode: Hex }

/** Reads a compiled artifact from `contracts/artifacts` (run a build first). */
export async function readArtifact (name: string, dir = join(import.meta.dirname, 'artifacts')): Promise<Artifact> {
  const sub = name === 'ReentrantReceiver' || name === 'SettlementUnchecked' ? 'test/' : ''
  const json = JSON.parse(await readFile(join(dir, 'contracts', 'src', `${sub}${name}.sol`, `${name}.json`), 'utf8'))
  return { abi: json.abi, bytecode: json.bytecode }
}

export interface DeployOptions {
  wallet: WalletClient<Transport, Chain | undefined, Account>
  publicClient: PublicClient
  params?: PeerHostParams
  read?: (name: string) => Promise<Artifact>
}

/** Deploys and wires FunctionRegistry, WorkerStaking, Settlement and ExecutionCoordinator. */
export async function deployPeerHost (options: DeployOptions): Promise<PeerHostAddresses> {
  const { wallet, publicClient } = options
  const p = options.params ?? LOCAL_PARAMS
  const read = options.read ?? readArtifact
  const treasury = p.treasury ?? wallet.account.address

  async function deploy (name: ContractName, args: unknown[]): Promise<Address> {
    const { abi, bytecode } = await read(name)
    const hash = await wallet.deployContract({ abi, bytecode, args, account: wallet.account, chain: wallet.chain })
    const receipt = await publicClient.waitForTransactionReceipt({ hash })
    if (receipt.contractAddress == null || receipt.status !== 'success') throw new Error(`deploying ${name} failed`)
    return getAddress(receipt.contractAddress)
  }
  async function call (address: Address, name: ContractName, functionName: string, args: unknown[]): Promise<void> {
    const { abi } = await read(name)
    const hash = await wallet.writeContract({ address, abi, functionName, args, account: wallet.account, chain: wallet.chain })
    const receipt = await publicClient.waitForTransactionReceipt({ hash })
    if (receipt.status !== 'success') throw new Error(`${name}.${functionName} failed`)
  }

  const FunctionRegistry = await deploy('FunctionRegistry', [])
  const WorkerStaking = await deploy('WorkerStaking', [p.minWorkerStake, p.minGatewayStake, p.unbondingPeriod])
  const Settlement = await deploy('Settlement', [FunctionRegistry, WorkerStaking, {
    epochLength: p.epochLength,
    commitWindow: p.commitWindow,
    challengeWindow: p.challengeWindow,
    minBatchBond: p.minBatchBond,
    slashBps: p.slashBps,
    challengerShareBps: p.challengerShareBps,
    disagreementQuorum: p.disagreementQuorum,
    treasury
  }])
  const ExecutionCoordinator = await deploy('ExecutionCoordinator', [FunctionRegistry, WorkerStaking, Settlement, p.penaltyBps, p.keeperShareBps, treasury])
  await call(WorkerStaking, 'WorkerStaking', 'setSlashers', [Settlement, ExecutionCoordinator])
  await call(Settlement, 'Settlement', 'setCoordinator', [ExecutionCoordinator])
  return { FunctionRegistry, WorkerStaking, Settlement, ExecutionCoordinator }
}
