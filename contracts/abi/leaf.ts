/**
 * Settlement batch leaves: how a worker turns its (ticket, receipt) pairs for one
 * (project, epoch, gateway) into the Merkle root, count and total that `Settlement.commitBatch`
 * takes, and the proofs challengers pass to the fault-proof functions.
 *
 * The tree is OpenZeppelin's `StandardMerkleTree` (leaves are double-hashed:
 * `keccak256(bytes.concat(keccak256(abi.encode(leaf))))`), so an inner node can never pass as a
 * leaf. `cumulativeFee` is a prefix sum in `index` order, which makes the total provable.
 */
import { StandardMerkleTree } from '@openzeppelin/merkle-tree'
import { parseSignature, type Hex } from 'viem'

/** ABI types of `ISettlement.Leaf`, in field order. */
export const SETTLEMENT_LEAF_ENCODING = [
  'uint256', 'uint256', 'bytes32', 'uint32', 'bytes32', 'bytes32', 'bytes32', 'bytes32', 'uint256', 'uint64', 'uint8', 'bytes32', 'bytes32'
] as const

/** `ISettlement.Leaf` as viem encodes the struct. */
export interface SettlementLeaf {
  index: bigint
  cumulativeFee: bigint
  jobId: Hex
  attempt: number
  functionId: Hex
  /** the ticket's jobHash, so the ticket (and the worker's receipt) can be rebuilt from the leaf */
  jobHash: Hex
  inputHash: Hex
  outputHash: Hex
  fee: bigint
  deadline: bigint
  v: number
  r: Hex
  s: Hex
}

/** One served job: the gateway's ticket (fields not fixed by the batch), its signature, the output. */
export interface SettlementItem {
  ticket: { jobId: Hex, attempt: number, functionId: Hex, jobHash: Hex, inputHash: Hex, fee: bigint, deadline: bigint }
  /** the gateway's 65-byte EIP-712 ticket signature */
  ticketSignature: Hex
  outputHash: Hex
}

export interface SettlementBatch {
  root: Hex
  count: number
  total: bigint
  leaves: SettlementLeaf[]
  /** Merkle proof of `leaves[i]` (position in `leaves`, which is also the leaf's `index` for built batches) */
  proof: (index: number) => Hex[]
  tree: StandardMerkleTree<unknown[]>
}

export function leafValues (l: SettlementLeaf): unknown[] {
  return [l.index, l.cumulativeFee, l.jobId, l.attempt, l.functionId, l.jobHash, l.inputHash, l.outputHash, l.fee, l.deadline, l.v, l.r, l.s]
}

/** Splits a 65-byte signature into (v, r, s) with v ∈ {27, 28}. */
export function splitSignature (signature: Hex): { v: number, r: Hex, s: Hex } {
  const sig = parseSignature(signature)
  return { v: sig.v != null ? Number(sig.v) : sig.yParity + 27, r: sig.r, s: sig.s }
}

/** Builds the leaves (prefix sums in the given order) and the tree. */
export function buildSettlementBatch (items: readonly SettlementItem[]): SettlementBatch {
  if (items.length === 0) throw new RangeError('a batch needs at least one item')
  let cumulative = 0n
  const leaves = items.map((item, i): SettlementLeaf => {
    cumulative += item.ticket.fee
    const t = item.ticket
    // fields listed, not spread: a ticket object with extra fields must not leak them into the leaf
    return {
      index: BigInt(i),
      cumulativeFee: cumulative,
      jobId: t.jobId,
      attempt: t.attempt,
      functionId: t.functionId,
      jobHash: t.jobHash,
      inputHash: t.inputHash,
      outputHash: item.outputHash,
      fee: t.fee,
      deadline: t.deadline,
      ...splitSignature(item.ticketSignature)
    }
  })
  return fromLeaves(leaves)
}

/** Builds a tree from leaves as given (tests use it to build deliberately broken batches). */
export function fromLeaves (leaves: SettlementLeaf[], total?: bigint): SettlementBatch {
  const tree = StandardMerkleTree.of(leaves.map(leafValues), [...SETTLEMENT_LEAF_ENCODING])
  return {
    root: tree.root as Hex,
    count: leaves.length,
    total: total ?? leaves[leaves.length - 1].cumulativeFee,
    leaves,
    proof: (i: number) => tree.getProof(i) as Hex[],
    tree
  }
}

/**
 * `ISettlement.BatchHeader`: what Settlement keeps a hash of for a committed batch. Every call
 * naming a batch (finalize, leaf requests and answers, fault proofs) passes it; `BatchCommitted`
 * carries every field.
 */
export interface SettlementBatchHeader {
  worker: `0x${string}`
  projectId: `0x${string}`
  gateway: `0x${string}`
  epoch: bigint
  root: `0x${string}`
  count: number
  total: bigint
  bond: bigint
}

/** The header of a batch from its fields (a `BatchCommitted` event's arguments, a settler's row). */
export function batchHeader (b: { worker: `0x${string}`, projectId: `0x${string}`, gateway: `0x${string}`, epoch: bigint, root: `0x${string}`, count: number | bigint, total: bigint, bond: bigint }): SettlementBatchHeader {
  return { worker: b.worker, projectId: b.projectId, gateway: b.gateway, epoch: b.epoch, root: b.root, count: Number(b.count), total: b.total, bond: b.bond }
}
