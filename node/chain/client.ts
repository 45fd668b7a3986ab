/**
 * One viem public client and (with an account) one wallet client for a deployment, plus the
 * EIP-712 domain of its tickets and receipts. Transactions from one account go out one at a time
 * (`send`), so concurrent commits and reveals never race for a nonce.
 */
import {
  BaseError, ContractFunctionRevertedError, createPublicClient, createWalletClient, defineChain, http, webSocket,
  type Abi, type Account, type Address, type Chain, type Hex, type PublicClient, type TransactionReceipt, type WalletClient
} from 'viem'
import type { PeerHostDomain } from '#protocol'
import { NodeError } from '../errors.ts'
import { chainDomain, type ChainContracts } from './contracts.ts'

export interface ChainClientInit {
  /** how often to poll for blocks and events; @default 250 (50 on the local chain) */
  pollingIntervalMs?: number
  /** blocks a money transaction waits for (stake, bindPeer, requestExecution); @default 1 */
  confirmations?: number
}

export interface ChainClient {
  readonly contracts: ChainContracts
  readonly chain: Chain
  readonly publicClient: PublicClient
  /** present when the client was built with an account */
  readonly walletClient?: WalletClient
  readonly account?: Account
  /** tickets and receipts: `peerHostDomain(chainId, Settlement)` */
  readonly domain: PeerHostDomain
  readonly pollingIntervalMs: number
  readonly confirmations: number
  /**
   * Simulates, sends (serialised per account) and waits for the receipt. A revert becomes a
   * NodeError CHAIN_REVERTED whose `details.error` is the contract error's name.
   */
  send: (call: ContractCall, options?: { confirmations?: number, signal?: AbortSignal }) => Promise<TransactionReceipt>
}

export interface ContractCall {
  address: Address
  abi: Abi
  functionName: string
  args?: readonly unknown[]
  value?: bigint
}

/** Gas added to every estimate on top of 50 % (see `send`). */
const GAS_MARGIN = 50_000n

export function chainOf (contracts: Pick<ChainContracts, 'chainId' | 'rpcUrl'>): Chain {
  return defineChain({
    id: contracts.chainId,
    name: `peerhost-${contracts.chainId}`,
    nativeCurrency: { name: 'Ether', symbol: contracts.chainId === 137 || contracts.chainId === 80002 ? 'POL' : 'ETH', decimals: 18 },
    rpcUrls: { default: { http: [contracts.rpcUrl] } }
  })
}

/** The name of the contract error behind a viem error, if any. */
export function revertName (err: unknown): string | undefined {
  if (err instanceof BaseError) {
    const revert = err.walk(e => e instanceof ContractFunctionRevertedError)
    if (revert instanceof ContractFunctionRevertedError) return revert.data?.errorName
  }
  if (err instanceof NodeError && err.code === 'CHAIN_REVERTED') return (err.details as { error?: string } | undefined)?.error
  return undefined
}

export function chainClient (contracts: ChainContracts, account?: Account, init: ChainClientInit = {}): ChainClient {
  const chain = chainOf(contracts)
  const pollingIntervalMs = init.pollingIntervalMs ?? (contracts.chainId === 31337 ? 50 : 250)
  const transport = contracts.rpcUrl.startsWith('ws') ? webSocket(contracts.rpcUrl) : http(contracts.rpcUrl, { retryCount: 2 })
  const publicClient = createPublicClient({ chain, transport, pollingInterval: pollingIntervalMs }) as PublicClient
  const walletClient = account === undefined ? undefined : createWalletClient({ account, chain, transport, pollingInterval: pollingIntervalMs })
  const confirmations = init.confirmations ?? 1
  let queue: Promise<unknown> = Promise.resolve()

  async function send (call: ContractCall, options: { confirmations?: number, signal?: AbortSignal } = {}): Promise<TransactionReceipt> {
    if (walletClient === undefined || account === undefined) throw new NodeError('CHAIN_NO_ACCOUNT', 'this chain client has no account to send transactions from')
    // only submission is serialised; waiting for the receipt runs in parallel
    const submitted = queue.then(async () => {
      options.signal?.throwIfAborted()
      try {
        // the estimate doubles as the simulation (a revert surfaces here with its error name); the
        // margin covers state that changes before inclusion, e.g. the reveal that becomes the
        // finalizing one costs more than the estimate made while another reveal was pending
        const gas = await publicClient.estimateContractGas({ ...call, account } as any)
        return await walletClient.writeContract({ ...call, account, chain, gas: gas * 3n / 2n + GAS_MARGIN } as any)
      } catch (err) {
        const name = revertName(err)
        if (name !== undefined) throw new NodeError('CHAIN_REVERTED', `${call.functionName} reverted with ${name}`, { cause: err, details: { error: name } })
        throw new NodeError('CHAIN_FAILED', `${call.functionName} failed: ${String((err as BaseError)?.shortMessage ?? (err as Error)?.message).split('\n')[0]}`, { cause: err })
      }
    })
    queue = submitted.catch(() => {})
    const hash: Hex = await submitted
    const receipt = await publicClient.waitForTransactionReceipt({ hash, confirmations: options.confirmations ?? 1, pollingInterval: pollingIntervalMs })
    if (receipt.status !== 'success') throw new NodeError('CHAIN_REVERTED', `${call.functionName} transaction ${hash} reverted`, { details: { tx: hash } })
    return receipt
  }

  return {
    contracts,
    chain,
    publicClient,
    walletClient,
    account,
    domain: chainDomain(contracts),
    pollingIntervalMs,
    confirmations,
    send
  }
}
