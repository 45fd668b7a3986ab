/**
 * A project's escrow in Settlement: the builder deposits native currency for a project and lets
 * gateways spend up to an allowance per settlement epoch. A gateway then pays the chain fallback's
 * fee from the project's escrow (`requestExecution` with `fromEscrow`) instead of its own balance,
 * and the unspent part of a fee is refunded to the escrow at settlement.
 */
import type { Address, Hex } from 'viem'
import { settlementAbi } from '#contracts'
import { projectId as projectIdOf } from '#protocol'
import { ConfigError, NodeError } from '../errors.ts'
import { LOCAL_CHAIN_ESCROW } from '../constants.ts'
import { revertName, type ChainClient } from '../chain/client.ts'

type Reader = Pick<ChainClient, 'publicClient' | 'contracts'>

export interface EscrowStatus {
  projectId: Hex
  /** wei held for the project */
  balance: bigint
  /** the gateway's allowance, when a gateway was named */
  allowance?: { perEpoch: bigint, spentThisEpoch: bigint, available: bigint }
}

async function read<T> (client: Reader, functionName: string, args: readonly unknown[]): Promise<T> {
  return await client.publicClient.readContract({ address: client.contracts.addresses.Settlement, abi: settlementAbi, functionName: functionName as any, args: args as any }) as T
}

export async function escrowStatus (client: Reader, wallet: Address, project: string, gateway?: Address): Promise<EscrowStatus> {
  const projectId = projectIdOf(wallet, project)
  const balance = await read<bigint>(client, 'escrowOf', [projectId])
  if (gateway === undefined) return { projectId, balance }
  const [perEpoch, spentThisEpoch] = await read<readonly [bigint, bigint]>(client, 'allowanceOf', [projectId, gateway])
  return { projectId, balance, allowance: { perEpoch, spentThisEpoch, available: perEpoch > spentThisEpoch ? perEpoch - spentThisEpoch : 0n } }
}

/**
 * Whether `gateway` can charge `fee` to the escrow of the project owned by `wallet` now: the
 * escrow holds it and (unless the gateway is the owner) this epoch's allowance has room for it.
 */
export async function escrowCanPay (client: Reader, wallet: Address, project: string, gateway: Address, fee: bigint): Promise<boolean> {
  const s = await escrowStatus(client, wallet, project, gateway)
  if (s.balance < fee) return false
  return gateway.toLowerCase() === wallet.toLowerCase() || (s.allowance?.available ?? 0n) >= fee
}

function sendError (err: unknown, project: string): never {
  const name = revertName(err)
  if (name === 'SettlementUnknownProject') throw new ConfigError('UNKNOWN_PROJECT', `project "${project}" is not registered under this wallet; deploy it first`, { cause: err })
  if (name === 'SettlementNotProjectOwner') throw new ConfigError('NOT_PROJECT_OWNER', `this wallet does not own project "${project}"`, { cause: err })
  throw err
}

/** Deposits `amount` wei into the escrow of `<client account>/<project>`. */
export async function depositEscrow (client: ChainClient, project: string, amount: bigint): Promise<{ tx: Hex, balance: bigint }> {
  const account = client.account
  if (account === undefined) throw new NodeError('CHAIN_NO_ACCOUNT', 'depositing needs a chain client with the builder account')
  if (amount <= 0n) throw new ConfigError('BAD_AMOUNT', 'the deposit must be more than 0')
  const projectId = projectIdOf(account.address, project)
  try {
    const receipt = await client.send({ address: client.contracts.addresses.Settlement, abi: settlementAbi, functionName: 'deposit', args: [projectId], value: amount })
    return { tx: receipt.transactionHash, balance: await read<bigint>(client, 'escrowOf', [projectId]) }
  } catch (err) { return sendError(err, project) }
}

/** Lets `gateway` spend up to `perEpoch` wei of the project's escrow per settlement epoch (0 revokes). */
export async function allowGateway (client: ChainClient, project: string, gateway: Address, perEpoch: bigint): Promise<{ tx: Hex }> {
  const account = client.account
  if (account === undefined) throw new NodeError('CHAIN_NO_ACCOUNT', 'setting an allowance needs a chain client with the builder account')
  try {
    const receipt = await client.send({ address: client.contracts.addresses.Settlement, abi: settlementAbi, functionName: 'setGatewayAllowance', args: [projectIdOf(account.address, project), gateway, perEpoch] })
    return { tx: receipt.transactionHash }
  } catch (err) { return sendError(err, project) }
}

/**
 * On a local development chain (LOCAL_CHAIN_ESCROW.chainId), gives the client account's project an
 * escrow and lets `gateway` spend from it, where it has none yet, so a freshly deployed project is
 * served at once instead of answering 402. Returns what it did (nothing on any other chain, or when
 * the project is already funded and allowed).
 */
export async function fundOnLocalChain (client: ChainClient, project: string, gateway: Address): Promise<{ deposited?: bigint, allowed?: bigint }> {
  if (client.contracts.chainId !== LOCAL_CHAIN_ESCROW.chainId || client.account === undefined) return {}
  const status = await escrowStatus(client, client.account.address, project, gateway)
  const out: { deposited?: bigint, allowed?: bigint } = {}
  if (status.balance === 0n) {
    // at most half of what the wallet holds: the rest pays its gas (a wallet funded with 1 gets 0.5)
    const held = await client.publicClient.getBalance({ address: client.account.address })
    const amount = held / 2n < LOCAL_CHAIN_ESCROW.deposit ? held / 2n : LOCAL_CHAIN_ESCROW.deposit
    if (amount > 0n) {
      await depositEscrow(client, project, amount)
      out.deposited = amount
    }
  }
  if ((status.allowance?.perEpoch ?? 0n) === 0n && gateway.toLowerCase() !== client.account.address.toLowerCase()) {
    await allowGateway(client, project, gateway, LOCAL_CHAIN_ESCROW.perEpoch)
    out.allowed = LOCAL_CHAIN_ESCROW.perEpoch
  }
  return out
}
