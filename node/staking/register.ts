/**
 * A worker's registration on start: its receipt-signing key (`evm.key`) is its staking address.
 * When the active stake is below `minWorkerStake` it stakes the amount it was given from its own
 * balance (or refuses to start, saying what to do); then it binds its libp2p peer id with the
 * EIP-712 `PeerBinding` signature of the account and the peer key's Ed25519 signature of the
 * binding message (contracts/abi/peer-binding.ts), unless a valid binding is already there.
 * Also what devnet and tests call to stake a worker (`stakeAndBind`).
 */
import type { PeerId, PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { bytesToHex, formatEther, keccak256, type Address, type Hex } from 'viem'
import { peerBindingTypedData, workerStakingAbi } from '#contracts'
import { ConfigError, NodeError } from '../errors.ts'
import type { Logger } from '../logger.ts'
import type { ChainClient } from '../chain/client.ts'
import { signPeerBinding, verifyPeerBinding } from './peer-binding.ts'

const ROLE_WORKER = 1
const ROLE_GATEWAY = 2

export interface StakeAndBindOptions {
  /** amount (wei) to add when the active stake is below the minimum; none = refuse to start */
  stake?: bigint
  /** the flag name to mention in the refusal sentence; @default '--stake <amount>' */
  stakeHint?: string
  logger?: Logger
  signal?: AbortSignal
}

export interface Registration {
  address: Address
  /** active stake after registration (wei) */
  stake: bigint
  minimum: bigint
  /** wei added now (0 when the stake was already enough) */
  staked: bigint
  /** true when this call sent bindPeer */
  bound: boolean
  peerIdHash: Hex
}

/** keccak256 of the peer id's multihash bytes: WorkerStaking's key for peer ids. */
export function peerIdHash (peerId: PeerId | string): Hex {
  return keccak256(peerIdBytes(peerId))
}

export function peerIdBytes (peerId: PeerId | string): Hex {
  if (typeof peerId === 'string') return peerIdBytesFromString(peerId)
  return bytesToHex(peerId.toMultihash().bytes)
}

// base58btc multihash peer ids (Ed25519 identity or sha2-256): decode without a libp2p import cycle
const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'
function peerIdBytesFromString (s: string): Hex {
  let n = 0n
  for (const c of s) {
    const i = B58.indexOf(c)
    if (i < 0) throw new NodeError('BAD_PEER_ID', `"${s.slice(0, 80)}" is not a base58 peer id`)
    n = n * 58n + BigInt(i)
  }
  let hex = n === 0n ? '' : n.toString(16)
  if (hex.length % 2 === 1) hex = '0' + hex
  let zeros = 0
  while (zeros < s.length && s[zeros] === '1') zeros++
  return `0x${'00'.repeat(zeros)}${hex}`
}

function stakingReader (client: ChainClient): <T>(functionName: string, args?: readonly unknown[]) => Promise<T> {
  return async <T>(functionName: string, args: readonly unknown[] = []): Promise<T> =>
    await client.publicClient.readContract({ address: client.contracts.addresses.WorkerStaking, abi: workerStakingAbi, functionName: functionName as any, args: args as any }) as T
}

/**
 * Makes `client.account` staked in `role` at least at that role's minimum: stakes `options.stake`
 * from its balance when short, else throws a one-sentence ConfigError saying what to do.
 */
export async function ensureStake (client: ChainClient, role: 'worker' | 'gateway', options: StakeAndBindOptions = {}): Promise<{ stake: bigint, minimum: bigint, staked: bigint }> {
  const account = client.account
  if (account === undefined) throw new NodeError('CHAIN_NO_ACCOUNT', `staking as a ${role} needs a chain client with an account`)
  const log = options.logger?.child({ component: 'peerhost:staking' })
  const read = stakingReader(client)
  const address = account.address
  const [info, minimum] = await Promise.all([
    read<{ amount: bigint, pending: bigint, role: number, peerIdHash: Hex }>('stakeOf', [address]),
    read<bigint>(role === 'worker' ? 'minWorkerStake' : 'minGatewayStake')
  ])
  const roleId = role === 'worker' ? ROLE_WORKER : ROLE_GATEWAY
  if (info.role !== 0 && info.role !== roleId) throw new ConfigError('STAKE_ROLE', `${address} is staked as a ${role === 'worker' ? 'gateway' : 'worker'}; a ${role} needs its own key (another --data-dir)`)
  let stake = info.amount
  let staked = 0n
  if (stake < minimum) {
    const sym = client.chain.nativeCurrency.symbol
    if (options.stake === undefined || options.stake === 0n) {
      throw new ConfigError('NOT_STAKED', `${role} ${address} has ${formatEther(stake)} ${sym} staked and the minimum is ${formatEther(minimum)} ${sym}; fund that address and start again with ${options.stakeHint ?? '--stake <amount>'} (at least ${formatEther(minimum - stake)})`)
    }
    if (stake + options.stake < minimum) {
      throw new ConfigError('STAKE_TOO_SMALL', `staking ${formatEther(options.stake)} ${sym} leaves ${role} ${address} at ${formatEther(stake + options.stake)} ${sym}, below the minimum of ${formatEther(minimum)} ${sym}; stake at least ${formatEther(minimum - stake)}`)
    }
    const balance = await client.publicClient.getBalance({ address })
    if (balance <= options.stake) {
      throw new ConfigError('NO_FUNDS', `${role} ${address} holds ${formatEther(balance)} ${sym}, not enough to stake ${formatEther(options.stake)} ${sym} and pay gas; fund that address first`)
    }
    log?.info({ address, role, amount: options.stake.toString() }, 'staking')
    await client.send({ address: client.contracts.addresses.WorkerStaking, abi: workerStakingAbi, functionName: 'stake', args: [roleId], value: options.stake },
      { confirmations: client.confirmations, signal: options.signal })
    staked = options.stake
    stake += options.stake
  }
  return { stake, minimum, staked }
}

/** What a gateway last published with `setGatewayInfo`, or undefined when it never did. */
export async function publishedGatewayInfo (client: Pick<ChainClient, 'publicClient' | 'contracts'>, gateway: Address): Promise<{ endpoint: string, encryptionKey: Hex } | undefined> {
  return (await publishedGateways(client, gateway)).get(gateway.toLowerCase())
}

/**
 * The latest `setGatewayInfo` of every gateway (or of one), by lower-cased address, read from the
 * contracts' deployment block. With `activeOnly`, gateways no longer staked are left out.
 */
export async function publishedGateways (client: Pick<ChainClient, 'publicClient' | 'contracts'>, gateway?: Address, options: { activeOnly?: boolean } = {}): Promise<Map<string, { address: Address, endpoint: string, encryptionKey: Hex }>> {
  const staking = client.contracts.addresses.WorkerStaking
  const logs = await client.publicClient.getContractEvents({
    address: staking, abi: workerStakingAbi, eventName: 'GatewayInfoSet', args: gateway === undefined ? undefined : { gateway }, fromBlock: client.contracts.deployBlock, toBlock: 'latest', strict: true
  }) as Array<{ args: { gateway: Address, endpoint: string, encryptionKey: Hex } }>
  const out = new Map<string, { address: Address, endpoint: string, encryptionKey: Hex }>()
  for (const l of logs) out.set(l.args.gateway.toLowerCase(), { address: l.args.gateway, endpoint: l.args.endpoint, encryptionKey: l.args.encryptionKey })
  if (options.activeOnly === true) {
    for (const [key, g] of out) {
      const active = await client.publicClient.readContract({ address: staking, abi: workerStakingAbi, functionName: 'isActiveGateway', args: [g.address] }) as boolean
      if (!active) out.delete(key)
    }
  }
  return out
}

/**
 * A gateway's registration on start: staked as a gateway (see ensureStake), then its public
 * endpoint and secret-sealing key published with `setGatewayInfo` unless they already are.
 * Returns true when it sent setGatewayInfo.
 */
export async function registerGateway (client: ChainClient, info: { endpoint: string, encryptionKey: Uint8Array }, options: StakeAndBindOptions = {}): Promise<boolean> {
  const account = client.account
  if (account === undefined) throw new NodeError('CHAIN_NO_ACCOUNT', 'registerGateway needs a chain client with the gateway account')
  await ensureStake(client, 'gateway', options)
  const key = bytesToHex(info.encryptionKey)
  const published = await publishedGatewayInfo(client, account.address)
  if (published?.endpoint === info.endpoint && published.encryptionKey.toLowerCase() === key) return false
  await client.send({ address: client.contracts.addresses.WorkerStaking, abi: workerStakingAbi, functionName: 'setGatewayInfo', args: [info.endpoint, key] },
    { confirmations: client.confirmations, signal: options.signal })
  options.logger?.child({ component: 'peerhost:staking' }).info({ address: account.address, endpoint: info.endpoint }, 'gateway endpoint and secret key published')
  return true
}

/**
 * Makes `client.account` an active worker bound to the peer id of `peerKey` (the node's libp2p
 * Ed25519 key, which signs the binding). Throws ConfigError (one sentence) when the stake is short
 * and no stake amount was given, or the balance cannot pay it. Another account having claimed the
 * same peer id does not matter: without this key its claim is ignored by every node.
 */
export async function stakeAndBind (client: ChainClient, peerKey: PrivateKey, options: StakeAndBindOptions = {}): Promise<Registration> {
  const account = client.account
  if (account === undefined) throw new NodeError('CHAIN_NO_ACCOUNT', 'stakeAndBind needs a chain client with the worker account')
  const log = options.logger?.child({ component: 'peerhost:staking' })
  const staking = client.contracts.addresses.WorkerStaking
  const chainId = client.contracts.chainId
  const pc = client.publicClient
  const address = account.address
  const read = stakingReader(client)
  const { stake, minimum, staked } = await ensureStake(client, 'worker', options)

  const peerId = peerIdFromPrivateKey(peerKey)
  const bytes = peerIdBytes(peerId)
  const hash = keccak256(bytes)
  const [boundPeer, boundSig] = await read<readonly [Hex, Hex]>('peerOf', [address])
  let bound = false
  const current = boundPeer.toLowerCase() === bytes.toLowerCase() && await verifyPeerBinding(peerId.toString(), boundSig, chainId, staking, address)
  if (!current) {
    const nonce = await read<bigint>('nonces', [address])
    const block = await pc.getBlock({ blockTag: 'latest' })
    const deadline = block.timestamp + 3_600n
    if (account.signTypedData === undefined) throw new NodeError('CHAIN_NO_SIGNER', 'the worker account cannot sign typed data')
    const signature = await account.signTypedData(peerBindingTypedData(chainId, staking, { account: address, peerId: bytes, nonce, deadline }))
    const peerSig = await signPeerBinding(peerKey, chainId, staking, address)
    await client.send({ address: staking, abi: workerStakingAbi, functionName: 'bindPeer', args: [address, bytes, deadline, signature, peerSig] },
      { confirmations: client.confirmations, signal: options.signal })
    bound = true
    log?.info({ address, peerId: peerId.toString() }, 'peer id bound')
  }
  return { address, stake, minimum, staked, bound, peerIdHash: hash }
}
