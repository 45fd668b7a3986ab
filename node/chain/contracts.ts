/**
 * `contracts.json`: where a node finds the chain (the file `peerhost chain up` / startLocalChain
 * writes; for Amoy/Polygon, the same shape written by hand from the Ignition deployment).
 *
 * ```json
 * { "chainId": 31337, "rpcUrl": "http://127.0.0.1:8545",
 *   "addresses": { "FunctionRegistry": "0x…", "WorkerStaking": "0x…", "Settlement": "0x…", "ExecutionCoordinator": "0x…" },
 *   "finality": "latest", "deployBlock": "0" }
 * ```
 *
 * `finality` (optional) is the block tag money decisions read at (stake admission, a worker's own
 * stake): `latest` by default on the local chain (31337, instant and never reorganised), else
 * `finalized`.
 *
 * `deployBlock` (optional; a decimal string or a number) is the block the contracts were deployed
 * in: nodes read contract logs (FunctionRegistry's projects and versions) from there rather than
 * from block 0, which on Amoy/Polygon is tens of millions of blocks of nothing. Absent means 0.
 */
import { readFileSync } from 'node:fs'
import { getAddress, isAddress, parseEther, type Address } from 'viem'
import { peerHostDomain, type PeerHostDomain } from '#protocol'
import { ConfigError } from '../errors.ts'

export const CONTRACT_NAMES = ['FunctionRegistry', 'WorkerStaking', 'Settlement', 'ExecutionCoordinator'] as const
export type ContractName = typeof CONTRACT_NAMES[number]

export type Finality = 'latest' | 'safe' | 'finalized'

export interface ChainContracts {
  chainId: number
  rpcUrl: string
  addresses: Record<ContractName, Address> & Record<string, Address>
  /** block tag for money decisions; see the module comment */
  finality: Finality
  /** first block with PeerHost logs (see the module comment); 0n when the file does not say */
  deployBlock: bigint
}

/** Parses and checks a contracts file; every problem is reported at once (ConfigError BAD_CONTRACTS_FILE). */
export function parseContracts (json: string, from = 'the contracts file'): ChainContracts {
  let raw: any
  try {
    raw = JSON.parse(json)
  } catch (err) {
    throw new ConfigError('BAD_CONTRACTS_FILE', `${from} is not JSON; expected the contracts.json that \`peerhost chain up\` writes`, { cause: err })
  }
  const problems: string[] = []
  if (typeof raw?.rpcUrl !== 'string' || !/^(https?|wss?):\/\//.test(raw.rpcUrl)) problems.push('rpcUrl: expected an http(s) or ws(s) URL')
  if (!Number.isInteger(raw?.chainId) || raw.chainId <= 0) problems.push('chainId: expected a positive integer')
  for (const name of CONTRACT_NAMES) {
    const a = raw?.addresses?.[name]
    if (typeof a !== 'string' || !isAddress(a)) problems.push(`addresses.${name}: expected a 0x address`)
  }
  if (raw?.finality !== undefined && !['latest', 'safe', 'finalized'].includes(raw.finality)) problems.push('finality: expected "latest", "safe" or "finalized"')
  const deployBlock = parseDeployBlock(raw?.deployBlock)
  if (deployBlock === undefined) problems.push('deployBlock: expected a block number (a non-negative integer or a decimal string)')
  if (problems.length > 0) {
    throw new ConfigError('BAD_CONTRACTS_FILE', `${from} has ${problems.length} problem${problems.length === 1 ? '' : 's'}: ${problems.join('; ')}`)
  }
  const addresses: Record<string, Address> = {}
  for (const [k, v] of Object.entries(raw.addresses as Record<string, unknown>)) if (typeof v === 'string' && isAddress(v)) addresses[k] = getAddress(v)
  return {
    chainId: raw.chainId,
    rpcUrl: raw.rpcUrl,
    addresses: addresses as ChainContracts['addresses'],
    finality: raw.finality ?? (raw.chainId === 31337 ? 'latest' : 'finalized'),
    deployBlock: deployBlock ?? 0n
  }
}

/** `deployBlock` as written in the file: absent → 0n, a valid number or decimal string → bigint, else undefined. */
function parseDeployBlock (value: unknown): bigint | undefined {
  if (value === undefined || value === null) return 0n
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return BigInt(value)
  if (typeof value === 'string' && /^\d{1,30}$/.test(value)) return BigInt(value)
  return undefined
}

/** Reads `--contracts <file>`; a missing or malformed file is a ConfigError with what to do. */
export function loadContracts (file: string): ChainContracts {
  let json: string
  try {
    json = readFileSync(file, 'utf8')
  } catch (err) {
    throw new ConfigError('NO_CONTRACTS_FILE', `cannot read ${file}; run \`peerhost chain up\` (it writes <data-dir>/contracts.json) and pass that file to --contracts`, { cause: err })
  }
  return parseContracts(json, file)
}

/** The EIP-712 domain tickets and receipts are signed in on this deployment: (chain id, Settlement). */
export function chainDomain (contracts: Pick<ChainContracts, 'chainId' | 'addresses'>): PeerHostDomain {
  return peerHostDomain(contracts.chainId, contracts.addresses.Settlement)
}

/** A native-currency amount given by a user (`1`, `0.5`) in wei; undefined when absent. */
export function parseAmount (name: string, value: string | undefined): bigint | undefined {
  if (value === undefined) return undefined
  if (!/^\d+(\.\d{1,18})?$/.test(value.trim())) throw new ConfigError('BAD_AMOUNT', `${name} must be an amount of the native currency such as 1 or 0.5, got "${value}"`)
  return parseEther(value.trim())
}
