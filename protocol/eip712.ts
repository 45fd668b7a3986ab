/**
 * EIP-712 typed data for tickets (gateway → worker: "run this job for this fee") and receipts
 * (worker → gateway: "I ran it and this is the output hash").
 *
 * This is the single definition: nodes sign and verify with it, and the contracts' Solidity type
 * strings are checked against `TICKET_TYPE_STRING` / `RECEIPT_TYPE_STRING` by a test. The domain
 * names the chain id and the Settlement contract, so a signature is valid on one deployment of one
 * chain only.
 */
import {
  encodeAbiParameters, hashDomain, hashTypedData, recoverTypedDataAddress, toBytes, type Address, type Hex
} from 'viem'
import { keccak256 } from './keccak.ts'

export const EIP712_DOMAIN_NAME = 'PeerHost'
export const EIP712_DOMAIN_VERSION = '1'

export interface PeerHostDomain {
  name: typeof EIP712_DOMAIN_NAME
  version: typeof EIP712_DOMAIN_VERSION
  chainId: number
  verifyingContract: Address
}

/** Domain for a chain id and Settlement contract address. */
export function peerHostDomain (chainId: number, verifyingContract: Address): PeerHostDomain {
  return { name: EIP712_DOMAIN_NAME, version: EIP712_DOMAIN_VERSION, chainId, verifyingContract }
}

/**
 * Domain used by a mesh with no chain configured (local development before contracts are
 * deployed): Hardhat's chain id and the zero address. Never accepted on a real chain because
 * the verifying contract differs.
 */
export const DEV_DOMAIN: PeerHostDomain = peerHostDomain(31337, '0x0000000000000000000000000000000000000000')

export const EIP712_TYPES = {
  Ticket: [
    { name: 'jobId', type: 'bytes32' },
    { name: 'attempt', type: 'uint32' },
    { name: 'functionId', type: 'bytes32' },
    { name: 'jobHash', type: 'bytes32' },
    { name: 'inputHash', type: 'bytes32' },
    { name: 'worker', type: 'address' },
    { name: 'gateway', type: 'address' },
    { name: 'fee', type: 'uint256' },
    { name: 'epoch', type: 'uint64' },
    { name: 'deadline', type: 'uint64' }
  ],
  Receipt: [
    { name: 'jobId', type: 'bytes32' },
    { name: 'attempt', type: 'uint32' },
    { name: 'functionId', type: 'bytes32' },
    { name: 'jobHash', type: 'bytes32' },
    { name: 'inputHash', type: 'bytes32' },
    { name: 'outputHash', type: 'bytes32' },
    { name: 'worker', type: 'address' },
    { name: 'gateway', type: 'address' },
    { name: 'fee', type: 'uint256' },
    { name: 'epoch', type: 'uint64' },
    { name: 'deadline', type: 'uint64' }
  ]
} as const

/** Solidity type strings, derived from EIP712_TYPES so they can never drift. */
export const TICKET_TYPE_STRING = typeString('Ticket')
export const RECEIPT_TYPE_STRING = typeString('Receipt')
export const TICKET_TYPEHASH: Hex = keccak256(toBytes(TICKET_TYPE_STRING))
export const RECEIPT_TYPEHASH: Hex = keccak256(toBytes(RECEIPT_TYPE_STRING))

function typeString (name: keyof typeof EIP712_TYPES): string {
  return `${name}(${EIP712_TYPES[name].map(f => `${f.type} ${f.name}`).join(',')})`
}

export interface Ticket {
  jobId: Hex
  attempt: number
  functionId: Hex
  /** keccak256 of the canonical job (canonical.ts `jobHash`): bundle, options, env, secret names, input, deadline */
  jobHash: Hex
  inputHash: Hex
  worker: Address
  gateway: Address
  fee: bigint
  epoch: bigint
  /** unix seconds */
  deadline: bigint
}

/** Every Ticket field plus `outputHash`: a receipt answers exactly one ticket. */
export interface Receipt {
  jobId: Hex
  attempt: number
  functionId: Hex
  jobHash: Hex
  inputHash: Hex
  outputHash: Hex
  worker: Address
  gateway: Address
  fee: bigint
  epoch: bigint
  /** unix seconds, the ticket's deadline */
  deadline: bigint
}

/*
 * Digests are on every request's hot path (a ticket and a receipt per job), so they are computed
 * directly: every field of both types is a static ABI type, so the struct encoding is the type
 * hash followed by one 32-byte word per field, and the domain separator is cached per domain.
 * `typedDataDigest` (viem's generic hashTypedData) is the reference; tests and golden vectors
 * hold the two equal.
 */
const domainSeparators = new Map<string, Uint8Array>()

function domainSeparator (domain: PeerHostDomain): Uint8Array {
  const key = `${domain.name}|${domain.version}|${domain.chainId}|${domain.verifyingContract.toLowerCase()}`
  let sep = domainSeparators.get(key)
  if (sep === undefined) {
    sep = toBytes(hashDomain({ domain: { ...domain, chainId: BigInt(domain.chainId) }, types: { EIP712Domain: EIP712_DOMAIN_FIELDS } }))
    if (domainSeparators.size > 64) domainSeparators.clear()
    domainSeparators.set(key, sep)
  }
  return sep
}

const EIP712_DOMAIN_FIELDS = [
  { name: 'name', type: 'string' },
  { name: 'version', type: 'string' },
  { name: 'chainId', type: 'uint256' },
  { name: 'verifyingContract', type: 'address' }
] as const

function word (out: Uint8Array, offset: number, value: Hex | bigint | number, kind: 'bytes32' | 'address' | 'uint'): void {
  if (kind === 'uint') {
    let v = BigInt(value)
    if (v < 0n || v >= (1n << 256n)) throw new RangeError('uint out of range')
    for (let i = 31; i >= 0 && v > 0n; i--) { out[offset + i] = Number(v & 0xffn); v >>= 8n }
    return
  }
  const bytes = toBytes(value as Hex)
  if (kind === 'bytes32' ? bytes.length !== 32 : bytes.length !== 20) throw new RangeError(`expected ${kind}`)
  out.set(bytes, offset + 32 - bytes.length)
}

function structDigest (domain: PeerHostDomain, typeHash: Hex, fields: ReadonlyArray<{ name: string, type: string }>, message: Record<string, any>): Hex {
  const enc = new Uint8Array(32 * (fields.length + 1))
  enc.set(toBytes(typeHash), 0)
  fields.forEach((f, i) => {
    word(enc, 32 * (i + 1), message[f.name], f.type === 'bytes32' ? 'bytes32' : f.type === 'address' ? 'address' : 'uint')
  })
  const buf = new Uint8Array(66)
  buf[0] = 0x19
  buf[1] = 0x01
  buf.set(domainSeparator(domain), 2)
  buf.set(toBytes(keccak256(enc)), 34)
  return keccak256(buf)
}

export function ticketDigest (domain: PeerHostDomain, ticket: Ticket): Hex {
  return structDigest(domain, TICKET_TYPEHASH, EIP712_TYPES.Ticket, ticket)
}

export function receiptDigest (domain: PeerHostDomain, receipt: Receipt): Hex {
  return structDigest(domain, RECEIPT_TYPEHASH, EIP712_TYPES.Receipt, receipt)
}

/** viem's generic EIP-712 digest: the reference the fast digests are tested against. */
export function typedDataDigest (domain: PeerHostDomain, primaryType: 'Ticket' | 'Receipt', message: Ticket | Receipt): Hex {
  return hashTypedData({ domain, types: EIP712_TYPES, primaryType, message: message as any })
}

/** Anything that signs typed data the way a viem `LocalAccount` does. */
export interface TypedDataSigner {
  address: Address
  signTypedData: (args: { domain: PeerHostDomain, types: typeof EIP712_TYPES, primaryType: 'Ticket' | 'Receipt', message: any }) => Promise<Hex>
}

export async function signTicket (signer: TypedDataSigner, domain: PeerHostDomain, ticket: Ticket): Promise<Hex> {
  return await signer.signTypedData({ domain, types: EIP712_TYPES, primaryType: 'Ticket', message: ticket })
}

export async function signReceipt (signer: TypedDataSigner, domain: PeerHostDomain, receipt: Receipt): Promise<Hex> {
  return await signer.signTypedData({ domain, types: EIP712_TYPES, primaryType: 'Receipt', message: receipt })
}

/** Recovers the signer of a ticket; throws on a malformed signature. */
export async function recoverTicketSigner (domain: PeerHostDomain, ticket: Ticket, signature: Hex): Promise<Address> {
  return await recoverTypedDataAddress({ domain, types: EIP712_TYPES, primaryType: 'Ticket', message: ticket, signature })
}

/** Recovers the signer of a receipt; throws on a malformed signature. */
export async function recoverReceiptSigner (domain: PeerHostDomain, receipt: Receipt, signature: Hex): Promise<Address> {
  return await recoverTypedDataAddress({ domain, types: EIP712_TYPES, primaryType: 'Receipt', message: receipt, signature })
}

/**
 * `projectId = keccak256(abi.encode(owner, project))`, the key FunctionRegistry uses.
 * Project and function names are lower-case `[a-z0-9-]`, validated before hashing.
 */
export function projectId (owner: Address, project: string): Hex {
  return memo(projectIds, `${owner}\0${project}`, () => keccak256(encodeAbiParameters([{ type: 'address' }, { type: 'string' }], [owner, project])))
}

/** `functionId = keccak256(abi.encode(projectId, functionName))`. */
export function functionId (owner: Address, project: string, fn: string): Hex {
  return memo(functionIds, `${owner}\0${project}\0${fn}`, () => keccak256(encodeAbiParameters([{ type: 'bytes32' }, { type: 'string' }], [projectId(owner, project), fn])))
}

/**
 * Both ids are pure functions of their arguments, asked on every request (a keccak and an ABI
 * encoding each, in JavaScript): the last MEMO_MAX of each are kept, keyed by the exact arguments
 * (an argument that fails to encode throws every time, as before).
 */
const MEMO_MAX = 4096
const projectIds = new Map<string, Hex>()
const functionIds = new Map<string, Hex>()
function memo (cache: Map<string, Hex>, key: string, compute: () => Hex): Hex {
  let v = cache.get(key)
  if (v === undefined) {
    v = compute()
    if (cache.size >= MEMO_MAX) cache.delete(cache.keys().next().value!)
    cache.set(key, v)
  }
  return v
}
