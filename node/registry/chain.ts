/**
 * Talking to FunctionRegistry with viem (the chain comes from node/chain `loadContracts`): clients,
 * version reads (all versions, or the active one at a block) and rollback.
 */
import { createPublicClient, createWalletClient, http, type Account, type Address, type Hex, type PublicClient, type WalletClient } from 'viem'
import { CID } from 'multiformats/cid'
import { functionRegistryAbi } from '#contracts'
import { projectId } from '#protocol'
import { ConfigError, NodeError } from '../errors.ts'
import { chainOf } from '../chain/client.ts'
import type { ChainContracts } from '../chain/contracts.ts'

/** The part of `contracts.json` (node/chain/contracts.ts `loadContracts`) the deploy path needs. */
export type ChainConfig = Pick<ChainContracts, 'rpcUrl' | 'chainId'> & {
  addresses: { FunctionRegistry: Address } & Record<string, Address>
}

export function registryPublicClient (config: ChainConfig, pollingInterval = 100): PublicClient {
  return createPublicClient({ chain: chainOf(config), transport: http(config.rpcUrl, { retryCount: 1 }), pollingInterval }) as PublicClient
}

export function registryWalletClient (config: ChainConfig, account: Account): WalletClient {
  return createWalletClient({ account, chain: chainOf(config), transport: http(config.rpcUrl, { retryCount: 1 }), pollingInterval: 100 })
}

export function cidToBytes (cid: string): Hex {
  return `0x${Buffer.from(CID.parse(cid).bytes).toString('hex')}`
}

export function cidFromBytes (bytes: Hex): string {
  return CID.decode(Buffer.from(bytes.slice(2), 'hex')).toString()
}

export interface ProjectVersion {
  version: number
  manifestCid: string
  sourceCommit: Hex
  deployedAt: Date
  active: boolean
}

/** Every version of `<owner>/<project>`, oldest first; throws ConfigError UNKNOWN_PROJECT. */
export async function listVersions (client: PublicClient, config: ChainConfig, owner: Address, project: string): Promise<ProjectVersion[]> {
  const address = config.addresses.FunctionRegistry
  const id = projectId(owner, project)
  const [count, active] = await Promise.all([
    client.readContract({ address, abi: functionRegistryAbi, functionName: 'versionCount', args: [id] }),
    client.readContract({ address, abi: functionRegistryAbi, functionName: 'activeVersion', args: [id] })
  ]) as [number, number]
  if (Number(count) === 0) throw new ConfigError('UNKNOWN_PROJECT', `${owner} has no project "${project}" on chain ${config.chainId}; deploy it first`)
  const out: ProjectVersion[] = []
  for (let v = 1; v <= Number(count); v++) {
    const r = await client.readContract({ address, abi: functionRegistryAbi, functionName: 'getVersion', args: [id, v] }) as { manifestCid: Hex, sourceCommit: Hex, deployedAt: bigint }
    out.push({ version: v, manifestCid: cidFromBytes(r.manifestCid), sourceCommit: r.sourceCommit, deployedAt: new Date(Number(r.deployedAt) * 1000), active: v === Number(active) })
  }
  return out
}

/**
 * The active version of a project and its manifest CID, both read at one block (`blockNumber`,
 * default latest); undefined when the project has no active version (it does not exist).
 */
export async function readActiveVersion (client: PublicClient, registry: Address, id: Hex, options: { blockNumber?: bigint } = {}): Promise<{ version: number, manifestCid: string } | undefined> {
  const at = options.blockNumber === undefined ? {} : { blockNumber: options.blockNumber }
  const version = Number(await client.readContract({ address: registry, abi: functionRegistryAbi, functionName: 'activeVersion', args: [id], ...at }))
  if (version === 0) return undefined
  const r = await client.readContract({ address: registry, abi: functionRegistryAbi, functionName: 'getVersion', args: [id, version], ...at }) as { manifestCid: Hex }
  return { version, manifestCid: cidFromBytes(r.manifestCid) }
}

/** Makes `version` the active one; resolves with the transaction hash once mined. */
export async function rollbackProject (config: ChainConfig, account: Account, project: string, version: number, options: { owner?: Address } = {}): Promise<{ txHash: Hex, previous: number }> {
  const client = registryPublicClient(config)
  const wallet = registryWalletClient(config, account)
  const owner = options.owner ?? account.address
  const versions = await listVersions(client, config, owner, project)
  const previous = versions.find(v => v.active)?.version ?? 0
  if (!versions.some(v => v.version === version)) throw new ConfigError('UNKNOWN_VERSION', `${project} has versions 1–${versions.length}; there is no version ${version}`)
  if (version === previous) throw new ConfigError('VERSION_ALREADY_ACTIVE', `version ${version} of ${project} is already the active one`)
  try {
    const { request } = await client.simulateContract({ account, address: config.addresses.FunctionRegistry, abi: functionRegistryAbi, functionName: 'rollback', args: [projectId(owner, project), version] })
    const txHash = await wallet.writeContract(request as any)
    const receipt = await client.waitForTransactionReceipt({ hash: txHash, pollingInterval: 100 })
    if (receipt.status !== 'success') throw new NodeError('TX_REVERTED', `the rollback transaction ${txHash} reverted`)
    return { txHash, previous }
  } catch (err) {
    throw chainError(err, 'rollback')
  }
}

/** Turns a contract revert into a one-sentence ConfigError; other faults stay NodeErrors. */
export function chainError (err: any, what: string): Error {
  if (err instanceof ConfigError || err instanceof NodeError) return err
  const name: string | undefined = err?.walk?.((e: any) => e?.data?.errorName !== undefined)?.data?.errorName
  const messages: Record<string, string> = {
    RegistryNotNamespaceOwner: 'only the wallet whose address is the namespace can create a project in it',
    RegistryNotProjectOwner: 'this wallet does not own the project',
    RegistryInvalidName: 'project and function names must be 1–64 characters of a-z, 0-9 and -',
    RegistryUnknownVersion: 'the project has no such version',
    RegistryVersionAlreadyActive: 'that version is already active',
    RegistryInvalidFunctionCount: 'a deploy lists 1–64 functions'
  }
  if (name !== undefined) return new ConfigError('REGISTRY_REJECTED', `FunctionRegistry refused the ${what}: ${messages[name] ?? name}`, { cause: err })
  if (/insufficient funds/i.test(String(err?.message))) return new ConfigError('NO_FUNDS', `the wallet has no funds to pay for the ${what} transaction`, { cause: err })
  if (/fetch failed|ECONNREFUSED|HTTP request failed/i.test(String(err?.message))) return new NodeError('CHAIN_UNREACHABLE', `the chain RPC did not answer (${String(err?.shortMessage ?? err?.message).split('\n')[0]})`, { cause: err })
  return new NodeError('CHAIN_FAILED', `the ${what} transaction failed: ${String(err?.shortMessage ?? err?.message ?? err).split('\n')[0]}`, { cause: err })
}
