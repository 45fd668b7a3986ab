/**
 * Settlement test parts: a funded project escrow with a gateway allowance, a staked worker, and
 * real signed (ticket, receipt) pairs written to the worker's real receipt log, as the worker's
 * job path writes them (reserve, then commit with the receipt signature).
 */
import { createWalletClient, http, keccak256, parseEther, toHex, type Address, type Hex } from 'viem'
import { generatePrivateKey } from 'viem/accounts'
import { settlementAbi, workerStakingAbi } from '#contracts'
import { functionId, projectId, receiptDigest, ticketDigest, type PeerHostDomain } from '#protocol'
import { chainClient, fastSigner, loadContracts, type ChainClient, type FastSigner, type ReceiptLog } from '#node'
import { chainOf } from '../../node/chain/client.ts'
import type { TestChain } from './helpers.ts'

export const PROJECT = 'paid'
export const FN = 'f'

export interface Party { key: Hex, signer: FastSigner, client: ChainClient }

export async function party (chain: TestChain, ether = '10'): Promise<Party> {
  const key = generatePrivateKey()
  const signer = fastSigner(key)
  await chain.fund(signer.address, ether)
  const client = chainClient(loadContracts(chain.contractsFile), signer.account)
  return { key, signer, client }
}

/** The deployer (owner of `PROJECT`) deposits `escrow` wei and lets `gateway` spend `allowance` per epoch. */
export async function fundProject (chain: TestChain, gateway: Address, escrow: bigint, allowance: bigint, project = PROJECT): Promise<Hex> {
  const id = projectId(chain.deployer, project)
  const wallet = createWalletClient({ account: chain.deployer, chain: chainOf({ chainId: chain.chainId, rpcUrl: chain.rpcUrl }), transport: http(chain.rpcUrl) })
  const calls: Array<[string, unknown[], bigint]> = [['setGatewayAllowance', [id, gateway, allowance], 0n]]
  if (escrow > 0n) calls.unshift(['deposit', [id], escrow])
  for (const [functionName, args, value] of calls) {
    const hash = await wallet.writeContract({ address: chain.addresses.Settlement, abi: settlementAbi, functionName: functionName as any, args: args as any, value } as any)
    const r = await chain.publicClient.waitForTransactionReceipt({ hash })
    if (r.status !== 'success') throw new Error(`${functionName} reverted`)
  }
  return id
}

export async function stakeWorker (w: Party, ether = '1'): Promise<void> {
  await w.client.send({ address: w.client.contracts.addresses.WorkerStaking, abi: workerStakingAbi, functionName: 'stake', args: [1], value: parseEther(ether) })
}

export interface ServedJob { jobId: Hex, fee: bigint, epoch: bigint }

/**
 * `count` jobs the gateway ticketed for `worker` in `epoch`, each with fee `feeOf(i)`, recorded in
 * the worker's receipt log with the worker's receipt signature.
 */
export async function serve (
  domain: PeerHostDomain, owner: Address, log: ReceiptLog, gateway: FastSigner, worker: FastSigner,
  epoch: bigint, count: number, feeOf: (i: number) => bigint, tag = ''
): Promise<ServedJob[]> {
  const out: ServedJob[] = []
  const fid = functionId(owner, PROJECT, FN)
  const pid = projectId(owner, PROJECT)
  for (let i = 0; i < count; i++) {
    const ticket = {
      jobId: keccak256(toHex(`job ${tag} ${epoch} ${i} ${Math.random()}`)),
      attempt: 0,
      functionId: fid,
      jobHash: keccak256(toHex(`jobhash ${i}`)),
      inputHash: keccak256(toHex(`input ${i}`)),
      worker: worker.address,
      gateway: gateway.address,
      fee: feeOf(i),
      epoch,
      deadline: BigInt(Math.floor(Date.now() / 1000) + 3600)
    }
    const ticketSig = gateway.signDigest(ticketDigest(domain, ticket))
    const reserved = log.reserve({
      gateway: gateway.address, jobId: ticket.jobId, attempt: 0, projectId: pid, functionId: fid, jobHash: ticket.jobHash,
      inputHash: ticket.inputHash, worker: worker.address, fee: ticket.fee.toString(), epoch: epoch.toString(), deadline: ticket.deadline.toString(), ticketSig
    })
    if (!reserved.ok) throw new Error('ticket reserved twice')
    const outputHash = keccak256(toHex(`output ${i}`))
    await log.commit({ gateway: gateway.address, jobId: ticket.jobId, attempt: 0 }, outputHash, worker.signDigest(receiptDigest(domain, { ...ticket, outputHash })))
    out.push({ jobId: ticket.jobId, fee: ticket.fee, epoch })
  }
  return out
}

/**
 * What was committed for `batchId` (Settlement keeps only its header's hash and state): the
 * `BatchCommitted` event's fields and the batch's state.
 */
export async function committedBatch (chain: TestChain, batchId: Hex): Promise<{ status: number, worker: Address, gateway: Address, root: Hex, count: number, total: bigint, bond: bigint, committedAt: bigint, extendedUntil: bigint }> {
  const [ev] = await chain.publicClient.getContractEvents({ address: chain.addresses.Settlement, abi: settlementAbi, eventName: 'BatchCommitted', args: { batchId }, fromBlock: 0n })
  if (ev === undefined) return { status: 0, worker: '0x0000000000000000000000000000000000000000', gateway: '0x0000000000000000000000000000000000000000', root: '0x', count: 0, total: 0n, bond: 0n, committedAt: 0n, extendedUntil: 0n }
  const a = ev.args as { worker: Address, projectId: Hex, epoch: bigint, gateway: Address, root: Hex, count: number, total: bigint, bond: bigint }
  // Settlement finds a batch by its lane (worker, project, gateway) and epoch
  const state = await chain.publicClient.readContract({ address: chain.addresses.Settlement, abi: settlementAbi, functionName: 'getBatch', args: [a.worker, a.projectId, a.epoch, a.gateway] })
  return { status: state.status, worker: a.worker, gateway: a.gateway, root: a.root, count: Number(a.count), total: a.total, bond: a.bond, committedAt: state.committedAt, extendedUntil: state.extendedUntil }
}

/**
 * What Settlement gave `worker` for its batches: every finalized batch's paid total and bond (a
 * worker's settler is paid them in its finalizing transaction, `commitBatches`) plus what it still
 * owes the worker (credits: answered leaf requests' bonds, batches someone else finalized).
 */
export async function earned (chain: TestChain, worker: Address): Promise<bigint> {
  const at = { address: chain.addresses.Settlement, abi: settlementAbi, fromBlock: 0n } as const
  const finalized = await chain.publicClient.getContractEvents({ ...at, eventName: 'BatchFinalized', args: { worker } })
  let sum = await chain.publicClient.readContract({ address: chain.addresses.Settlement, abi: settlementAbi, functionName: 'owed', args: [worker] }) as bigint
  for (const f of finalized) {
    const { batchId, paid } = f.args as { batchId: Hex, paid: bigint }
    const [c] = await chain.publicClient.getContractEvents({ ...at, eventName: 'BatchCommitted', args: { batchId } })
    sum += paid + (c.args as { bond: bigint }).bond
  }
  return sum
}
