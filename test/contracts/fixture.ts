/**
 * Shared fixture for the contract suites: one in-process EDR chain per suite (Hardhat 3
 * `network.create()`), the four contracts deployed with the local parameters, actors with their own
 * private keys (viem local accounts, so EIP-712 signatures come from `protocol/eip712.ts` exactly as
 * nodes make them), a deployed project, and snapshot/revert between tests.
 */
import assert from 'node:assert/strict'
import {
  BaseError, ContractFunctionRevertedError, decodeErrorResult, encodeAbiParameters, createPublicClient, createWalletClient, custom, getContract, keccak256,
  toHex, type Abi, type Account, type Address, type Chain, type Hex, type PublicClient, type Transport, type WalletClient
} from 'viem'
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from 'viem/accounts'
import { hardhat } from 'viem/chains'
import { reentrantReceiverAbi } from '../../contracts/abi/test-abis.ts'
import { buildContracts } from '../../contracts/hre.ts'
import { deployPeerHost, LOCAL_PARAMS, readArtifact, type PeerHostAddresses, type PeerHostParams } from '../../contracts/deploy.ts'
import {
  executionCoordinatorAbi, functionRegistryAbi, settlementAbi, workerStakingAbi, buildSettlementBatch, batchHeader,
  type SettlementBatch, type SettlementBatchHeader, type SettlementItem
} from '../../contracts/abi/index.ts'
import { functionId as fnId, peerHostDomain, projectId as projId, signReceipt, signTicket, type PeerHostDomain, type Receipt, type Ticket } from '../../protocol/eip712.ts'

export const ETHER = 10n ** 18n
export const PARAMS: PeerHostParams = { ...LOCAL_PARAMS }

type Wallet = WalletClient<Transport, Chain, PrivateKeyAccount>

export interface Actor {
  name: string
  account: PrivateKeyAccount
  address: Address
  wallet: Wallet
}

export const ACTOR_NAMES = ['deployer', 'owner', 'gateway', 'gateway2', 'w1', 'w2', 'w3', 'w4', 'w5', 'challenger', 'stranger'] as const
export type ActorName = typeof ACTOR_NAMES[number]

export interface World {
  close: () => Promise<void>
  request: (method: string, params?: unknown[]) => Promise<any>
  publicClient: PublicClient
  chainId: number
  actors: Record<ActorName, Actor>
  addresses: PeerHostAddresses
  domain: PeerHostDomain
  projectId: Hex
  functionId: Hex
  otherFunctionId: Hex
  read: {
    registry: ReturnType<typeof registryAt>
    staking: ReturnType<typeof stakingAt>
    settlement: ReturnType<typeof settlementAt>
    coordinator: ReturnType<typeof coordinatorAt>
  }
}

function registryAt (address: Address, client: PublicClient) { return getContract({ address, abi: functionRegistryAbi, client }) }
function stakingAt (address: Address, client: PublicClient) { return getContract({ address, abi: workerStakingAbi, client }) }
function settlementAt (address: Address, client: PublicClient) { return getContract({ address, abi: settlementAbi, client }) }
function coordinatorAt (address: Address, client: PublicClient) { return getContract({ address, abi: executionCoordinatorAbi, client }) }

export interface SetupOptions {
  params?: PeerHostParams
  /** stake workers w1..w5 and the gateways, fund the project and authorise the gateway */
  prepare?: boolean
  /** reads a compiled contract by name (the invariant fuzz swaps in a deliberately broken Settlement) */
  read?: (name: string) => Promise<{ abi: Abi, bytecode: Hex }>
}

/** Starts a fresh in-process chain with everything deployed (and, by default, staked and funded). */
export async function setup (options: SetupOptions = {}): Promise<World> {
  const hre = await buildContracts()
  const conn = await hre.network.create()
  const provider = conn.provider
  const request = async (method: string, params: unknown[] = []): Promise<any> => await provider.request({ method, params })
  const transport = custom(provider, { retryCount: 0 })
  const publicClient = createPublicClient({ chain: hardhat, transport, pollingInterval: 5 }) as PublicClient
  const chainId = await publicClient.getChainId()

  const actors = {} as Record<ActorName, Actor>
  for (const name of ACTOR_NAMES) {
    const account = privateKeyToAccount(generatePrivateKey())
    await request('hardhat_setBalance', [account.address, toHex(1_000_000n * ETHER)])
    const wallet = createWalletClient({ account, chain: hardhat, transport, pollingInterval: 5 })
    actors[name] = { name, account, address: account.address, wallet }
  }
  const params = options.params ?? PARAMS
  const addresses = await deployPeerHost({ wallet: actors.deployer.wallet, publicClient, params: { ...params, treasury: actors.deployer.address }, read: options.read as any })
  const world: World = {
    close: async () => { await conn.close() },
    request,
    publicClient,
    chainId,
    actors,
    addresses,
    domain: peerHostDomain(chainId, addresses.Settlement),
    projectId: projId(actors.owner.address, 'demo'),
    functionId: fnId(actors.owner.address, 'demo', 'hello'),
    otherFunctionId: fnId(actors.stranger.address, 'other', 'hello'),
    read: {
      registry: registryAt(addresses.FunctionRegistry, publicClient),
      staking: stakingAt(addresses.WorkerStaking, publicClient),
      settlement: settlementAt(addresses.Settlement, publicClient),
      coordinator: coordinatorAt(addresses.ExecutionCoordinator, publicClient)
    }
  }
  await send(world, 'owner', 'FunctionRegistry', 'deploy', [actors.owner.address, 'demo', '0x01711220' + 'ab'.repeat(32), keccak256('0x01'), ['hello', 'echo'], 1n])
  await send(world, 'stranger', 'FunctionRegistry', 'deploy', [actors.stranger.address, 'other', '0x0171', keccak256('0x02'), ['hello'], 0n])
  if (options.prepare !== false) {
    for (const w of ['w1', 'w2', 'w3', 'w4', 'w5'] as const) await send(world, w, 'WorkerStaking', 'stake', [1], STAKE)
    await send(world, 'gateway', 'WorkerStaking', 'stake', [2], STAKE)
    await send(world, 'gateway2', 'WorkerStaking', 'stake', [2], STAKE)
    await send(world, 'owner', 'Settlement', 'deposit', [world.projectId], 1_000n * ETHER)
    await send(world, 'owner', 'Settlement', 'setGatewayAllowance', [world.projectId, actors.gateway.address, 100n * ETHER])
    await send(world, 'owner', 'Settlement', 'setGatewayAllowance', [world.projectId, actors.gateway2.address, 100n * ETHER])
  }
  return world
}

export const ABIS: Record<keyof PeerHostAddresses, Abi> = {
  FunctionRegistry: functionRegistryAbi,
  WorkerStaking: workerStakingAbi,
  Settlement: settlementAbi,
  ExecutionCoordinator: executionCoordinatorAbi
}

const ALL_ABIS = [...functionRegistryAbi, ...workerStakingAbi, ...settlementAbi, ...executionCoordinatorAbi, ...reentrantReceiverAbi].filter(x => x.type === 'error')

/** Sends a transaction from an actor and returns its receipt (asserting success). */
export async function send (
  world: World, from: ActorName | Actor, contract: keyof PeerHostAddresses | { address: Address, abi: Abi },
  functionName: string, args: readonly unknown[] = [], value?: bigint
) {
  const actor = typeof from === 'string' ? world.actors[from] : from
  const target = typeof contract === 'string' ? { address: world.addresses[contract], abi: ABIS[contract] } : contract
  const hash = await actor.wallet.writeContract({ address: target.address, abi: target.abi, functionName, args, value } as any)
  const receipt = await world.publicClient.getTransactionReceipt({ hash })
  assert.equal(receipt.status, 'success', `${functionName} reverted`)
  return receipt
}

/** Asserts the call reverts with the named custom error (and, when given, these arguments). */
export async function expectRevert (promise: Promise<unknown>, errorName: string, args?: readonly unknown[]): Promise<void> {
  try {
    await promise
  } catch (err) {
    if (!(err instanceof BaseError)) throw err
    const revert = err.walk(e => e instanceof ContractFunctionRevertedError)
    if (!(revert instanceof ContractFunctionRevertedError)) throw err
    let decoded: { errorName: string, args?: readonly unknown[] } | undefined = revert.data
    if (decoded === undefined && revert.raw !== undefined) {
      // bubbled up through a contract whose ABI does not declare the error (an attacker contract)
      try { decoded = decodeErrorResult({ abi: ALL_ABIS, data: revert.raw }) } catch {}
    }
    assert.equal(decoded?.errorName, errorName, `expected ${errorName}, got ${decoded?.errorName ?? revert.shortMessage}`)
    if (args !== undefined) assert.deepEqual(normalize(decoded?.args ?? []), normalize(args))
    return
  }
  assert.fail(`expected revert ${errorName}, but the call succeeded`)
}

function normalize (v: unknown): unknown {
  if (typeof v === 'string' && v.startsWith('0x')) return v.toLowerCase()
  if (Array.isArray(v)) return v.map(normalize)
  return v
}

/** `send` that must revert with `errorName`. */
export async function sendReverts (
  world: World, from: ActorName | Actor, contract: keyof PeerHostAddresses | { address: Address, abi: Abi },
  functionName: string, args: readonly unknown[], errorName: string, errorArgs?: readonly unknown[], value?: bigint
): Promise<void> {
  await expectRevert(send(world, from, contract, functionName, args, value), errorName, errorArgs)
}

export async function snapshot (world: World): Promise<string> {
  return await world.request('evm_snapshot')
}

export async function revertTo (world: World, id: string): Promise<void> {
  assert.equal(await world.request('evm_revert', [id]), true)
}

/** What `setup()` stakes for every worker and gateway actor. */
export const STAKE = 10n * ETHER

/** Asserts that every actor a test named honest still holds its whole stake (none slashed or penalised). */
export async function assertHonestKeptStake (world: World, honest: readonly ActorName[]): Promise<void> {
  for (const h of honest) {
    const s = await world.read.staking.read.stakeOf([world.actors[h].address])
    assert.equal(s.amount + s.pending, STAKE, `honest ${h} lost stake`)
  }
}

/** Moves chain time forward and mines a block. */
export async function increaseTime (world: World, seconds: bigint | number): Promise<void> {
  await world.request('evm_increaseTime', [Number(seconds)])
  await world.request('evm_mine')
}

export async function now (world: World): Promise<bigint> {
  return (await world.publicClient.getBlock()).timestamp
}

/** Advances to the start of the next epoch and returns the epoch that just ended. */
export async function endEpoch (world: World): Promise<bigint> {
  const epoch = await world.read.settlement.read.currentEpoch()
  const genesis = await world.read.settlement.read.genesis()
  const length = await world.read.settlement.read.epochLength()
  const t = await now(world)
  const next = genesis + (epoch + 1n) * length
  await increaseTime(world, next - t)
  return epoch
}

let jobCounter = 0n

export function newJobId (): Hex {
  jobCounter++
  return keccak256(toHex(`job-${jobCounter}-${Math.random()}`))
}

export interface JobSpec {
  worker: ActorName
  gateway?: ActorName
  epoch: bigint
  fee?: bigint
  jobId?: Hex
  attempt?: number
  functionId?: Hex
  jobHash?: Hex
  inputHash?: Hex
  outputHash?: Hex
  deadline?: bigint
}

export interface SignedJob {
  ticket: Ticket
  ticketSignature: Hex
  receipt: Receipt
  receiptSignature: Hex
  item: SettlementItem
}

/** A gateway-signed ticket and the worker's signed receipt for one job. */
export async function signedJob (world: World, spec: JobSpec): Promise<SignedJob> {
  const worker = world.actors[spec.worker]
  const gateway = world.actors[spec.gateway ?? 'gateway']
  const ticket: Ticket = {
    jobId: spec.jobId ?? newJobId(),
    attempt: spec.attempt ?? 0,
    functionId: spec.functionId ?? world.functionId,
    jobHash: spec.jobHash ?? keccak256(toHex('job')),
    inputHash: spec.inputHash ?? keccak256(toHex('input')),
    worker: worker.address,
    gateway: gateway.address,
    fee: spec.fee ?? ETHER / 1000n,
    epoch: spec.epoch,
    deadline: spec.deadline ?? 4_000_000_000n
  }
  const ticketSignature = await signTicket(gateway.account, world.domain, ticket)
  const receipt: Receipt = {
    jobId: ticket.jobId,
    attempt: ticket.attempt,
    functionId: ticket.functionId,
    jobHash: ticket.jobHash,
    inputHash: ticket.inputHash,
    outputHash: spec.outputHash ?? keccak256(toHex('output')),
    worker: worker.address,
    gateway: gateway.address,
    fee: ticket.fee,
    epoch: ticket.epoch,
    deadline: ticket.deadline
  }
  const receiptSignature = await signReceipt(worker.account, world.domain, receipt)
  return {
    ticket,
    ticketSignature,
    receipt,
    receiptSignature,
    item: {
      ticket: { jobId: ticket.jobId, attempt: ticket.attempt, functionId: ticket.functionId, jobHash: ticket.jobHash, inputHash: ticket.inputHash, fee: ticket.fee, deadline: ticket.deadline },
      ticketSignature,
      outputHash: receipt.outputHash
    }
  }
}

export interface CommittedBatch {
  batchId: Hex
  /** what every call naming the batch passes (Settlement stores only its hash) */
  header: SettlementBatchHeader
  batch: SettlementBatch
  worker: ActorName
  gateway: ActorName
  epoch: bigint
}

/** The header of a batch nobody committed (epoch 999 of w1 for the gateway). */
export function unknownHeader (world: World): SettlementBatchHeader {
  return { worker: world.actors.w1.address, projectId: world.projectId, gateway: world.actors.gateway.address, epoch: 999n, root: keccak256('0x01'), count: 1, total: 1n, bond: PARAMS.minBatchBond }
}

/** Commits a batch (built honestly unless `batch` is given) for `worker`. */
export async function commit (
  world: World, worker: ActorName, epoch: bigint, items: SettlementItem[] | SettlementBatch,
  options: { gateway?: ActorName, bond?: bigint, projectId?: Hex } = {}
): Promise<CommittedBatch> {
  const batch = Array.isArray(items) ? buildSettlementBatch(items) : items
  const gateway = options.gateway ?? 'gateway'
  const projectId = options.projectId ?? world.projectId
  const bond = options.bond ?? PARAMS.minBatchBond
  await send(world, worker, 'Settlement', 'commitBatch', [
    projectId, epoch, world.actors[gateway].address, batch.root, batch.count, batch.total, '0x0155'
  ], bond)
  const batchId = await world.read.settlement.read.batchIdOf([world.actors[worker].address, projectId, epoch, world.actors[gateway].address])
  const header = batchHeader({ worker: world.actors[worker].address, projectId, gateway: world.actors[gateway].address, epoch, root: batch.root, count: batch.count, total: batch.total, bond })
  return { batchId, header, batch, worker, gateway, epoch }
}

/** Settlement's state of the batch a header names (Settlement finds a batch by its lane and epoch). */
export async function batchState (world: World, header: Pick<SettlementBatchHeader, 'worker' | 'projectId' | 'epoch' | 'gateway'>) {
  return await world.read.settlement.read.getBatch([header.worker, header.projectId, header.epoch, header.gateway])
}

/** Owed balances and escrows a suite can compare before and after. */
export async function owed (world: World, who: ActorName): Promise<bigint> {
  return await world.read.settlement.read.owed([world.actors[who].address])
}

/** Deploys a compiled contract from an actor (for contracts outside the standard deployment). */
export async function deployRaw (world: World, from: ActorName, name: string, args: unknown[]): Promise<Address> {
  const { abi, bytecode } = await readArtifact(name)
  const hash = await world.actors[from].wallet.deployContract({ abi, bytecode, args } as any)
  const receipt = await world.publicClient.getTransactionReceipt({ hash })
  assert.ok(receipt.contractAddress)
  return receipt.contractAddress
}

/** Asserts a plain call (no ABI function, e.g. a bare value transfer) reverts with the named error. */
export async function expectRawRevert (world: World, from: ActorName, to: Address, value: bigint, data: Hex, errorName: string): Promise<void> {
  try {
    await world.publicClient.call({ account: world.actors[from].account, to, value, data })
  } catch (err) {
    let raw: Hex | undefined
    if (err instanceof BaseError) {
      err.walk(e => {
        const d = (e as { data?: unknown }).data
        if (typeof d === 'string' && d.startsWith('0x')) raw = d as Hex
        else if (d != null && typeof (d as { data?: unknown }).data === 'string') raw = (d as { data: Hex }).data
        return false
      })
    }
    assert.ok(raw, `no revert data in ${String(err)}`)
    assert.equal(decodeErrorResult({ abi: ALL_ABIS, data: raw }).errorName, errorName)
    return
  }
  assert.fail(`expected revert ${errorName}`)
}

/** Commitment for ExecutionCoordinator.commit, as a worker computes it. */
export function executionCommitment (requestId: bigint, worker: Address, outputHash: Hex, salt: Hex): Hex {
  return keccak256(encodeAbiParameters([{ type: 'uint256' }, { type: 'address' }, { type: 'bytes32' }, { type: 'bytes32' }], [requestId, worker, outputHash, salt]))
}

/** Asserts any failing call or deployment reverted with the named error (decoded against every PeerHost ABI). */
export async function expectRevertAny (promise: Promise<unknown>, errorName: string): Promise<void> {
  try {
    await promise
  } catch (err) {
    let raw: Hex | undefined
    if (err instanceof BaseError) {
      err.walk(e => {
        const d = (e as { data?: unknown, raw?: unknown }).raw ?? (e as { data?: unknown }).data
        if (typeof d === 'string' && d.startsWith('0x') && d.length >= 10) raw = d as Hex
        else if (d != null && typeof (d as { data?: unknown }).data === 'string') raw = (d as { data: Hex }).data
        return false
      })
    }
    assert.ok(raw, `no revert data in ${String(err)}`)
    assert.equal(decodeErrorResult({ abi: ALL_ABIS, data: raw }).errorName, errorName)
    return
  }
  assert.fail(`expected revert ${errorName}`)
}
