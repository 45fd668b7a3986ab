/**
 * Settlement batch leaves: how a worker turns its (ticket, receipt) pairs for one
 * (project, epoch, gateway) into the Merkle root, count and total that `Settlement.commitBatch`
 * takes, and the proofs challengers pass to the fault-proof functions.
 *
 * The tree is OpenZeppelin's "standard" Merkle tree (leaves are double-hashed:
 * `keccak256(bytes.concat(keccak256(abi.encode(leaf))))`, so an inner node can never pass as a
 * leaf; leaves sorted by hash; pairs hashed sorted), built here the same way as
 * `StandardMerkleTree.of` builds it — the same root and proofs (test/contracts/leaf.spec.ts checks
 * it against the library) — but with byte comparisons and one keccak per node: the library
 * compares hashes as BigInts and re-verifies every proof it hands out, 1.8 ms per leaf here, which
 * blocked a worker's event loop for seconds whenever an epoch's batch was built.
 * `cumulativeFee` is a prefix sum in `index` order, which makes the total provable.
 */
import { bytesToHex, hexToBytes, parseSignature, type Hex } from 'viem'
import { keccak256Bytes } from '../../protocol/keccak.ts'

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
  /** the tree's hash of `leaves[i]`: keccak256(keccak256(abi.encode(leaf))) */
  leafHash: (index: number) => Hex
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
  if (leaves.length === 0) throw new RangeError('a batch needs at least one leaf')
  const hashes = leaves.map(leafHashBytes)
  const tree = merkleTree(hashes)
  return {
    root: bytesToHex(tree.root),
    count: leaves.length,
    total: total ?? leaves[leaves.length - 1].cumulativeFee,
    leaves,
    proof: (index: number) => {
      if (hashes[index] === undefined) throw new RangeError(`no leaf ${index} in a batch of ${leaves.length}`)
      return tree.proof(index).map(h => bytesToHex(h))
    },
    leafHash: (index: number) => {
      if (hashes[index] === undefined) throw new RangeError(`no leaf ${index} in a batch of ${leaves.length}`)
      return bytesToHex(hashes[index])
    }
  }
}

/**
 * OpenZeppelin's StandardMerkleTree over leaf hashes (at least one): the hashes sorted (ties keep
 * their order, as Array.prototype.sort is stable) and placed at the end of the array in reverse,
 * node i's children at 2i+1 and 2i+2, each node `nodeHash` of its children. `proof(index)` is the
 * sibling path of the `index`-th hash given, as `MerkleProof.verify` takes it.
 */
export function merkleTree (hashes: readonly Uint8Array[]): { root: Uint8Array, proof: (index: number) => Uint8Array[] } {
  const order = hashes.map((_h, i) => i).sort((a, b) => compareBytes(hashes[a], hashes[b]))
  const tree: Uint8Array[] = new Array(2 * hashes.length - 1)
  const treeIndex: number[] = new Array(hashes.length)
  order.forEach((valueIndex, sortedIndex) => {
    const at = tree.length - 1 - sortedIndex
    tree[at] = hashes[valueIndex]
    treeIndex[valueIndex] = at
  })
  for (let i = tree.length - 1 - hashes.length; i >= 0; i--) tree[i] = nodeHash(tree[2 * i + 1], tree[2 * i + 2])
  return {
    root: tree[0],
    proof: (index: number) => {
      let i = treeIndex[index]
      const proof: Uint8Array[] = []
      while (i > 0) {
        proof.push(tree[i % 2 === 1 ? i + 1 : i - 1])
        i = Math.floor((i - 1) / 2)
      }
      return proof
    }
  }
}

/** OpenZeppelin's `MerkleProof.processProof`: the root a leaf hash and its proof lead to. */
export function processProof (leaf: Uint8Array, proof: readonly Uint8Array[]): Uint8Array {
  return proof.reduce((h, sibling) => nodeHash(h, sibling), leaf)
}

function compareBytes (a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < 32; i++) if (a[i] !== b[i]) return a[i] - b[i]
  return 0
}

/** OpenZeppelin's node hash: keccak256 of the two children, the smaller first. */
function nodeHash (a: Uint8Array, b: Uint8Array): Uint8Array {
  const buf = new Uint8Array(64)
  const [lo, hi] = compareBytes(a, b) <= 0 ? [a, b] : [b, a]
  buf.set(lo, 0)
  buf.set(hi, 32)
  return keccak256Bytes(buf)
}

/**
 * `keccak256(bytes.concat(keccak256(abi.encode(leaf))))`. Every field of the leaf is a static
 * ABI type, so `abi.encode` is 13 words, each checked against its type's range (a leaf read from a
 * batch document is untrusted: a value out of range throws, as the ABI encoder would).
 */
function leafHashBytes (l: SettlementLeaf): Uint8Array {
  const enc = new Uint8Array(32 * SETTLEMENT_LEAF_ENCODING.length)
  leafValues(l).forEach((value, i) => { encodeWord(enc, 32 * i, SETTLEMENT_LEAF_ENCODING[i], value) })
  return keccak256Bytes(keccak256Bytes(enc))
}

const UINT_BITS: Record<string, number> = { uint256: 256, uint64: 64, uint32: 32, uint8: 8 }

function encodeWord (out: Uint8Array, offset: number, type: string, value: unknown): void {
  if (type === 'bytes32') {
    const bytes = typeof value === 'string' && /^0x[0-9a-fA-F]{64}$/.test(value) ? hexToBytes(value as Hex) : undefined
    if (bytes === undefined) throw new RangeError(`a settlement leaf's bytes32 field is not 32 bytes of hex: ${String(value).slice(0, 80)}`)
    out.set(bytes, offset)
    return
  }
  const bits = UINT_BITS[type]
  let v = typeof value === 'bigint' ? value : typeof value === 'number' && Number.isSafeInteger(value) ? BigInt(value) : undefined
  if (bits === undefined || v === undefined || v < 0n || v >= (1n << BigInt(bits))) throw new RangeError(`a settlement leaf's ${type} field is out of range: ${String(value).slice(0, 80)}`)
  for (let i = 31; i >= 0 && v > 0n; i--) { out[offset + i] = Number(v & 0xffn); v >>= 8n }
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
