import assert from 'node:assert/strict'
import fc from 'fast-check'
import { StandardMerkleTree } from '@openzeppelin/merkle-tree'
import { hexToBytes, keccak256, toHex, type Hex } from 'viem'
import { buildSettlementBatch, fromLeaves, leafValues, merkleTree, processProof, SETTLEMENT_LEAF_ENCODING, type SettlementItem } from '../../contracts/abi/index.ts'
import { setup, type World } from './fixture.ts'

const SEED = Number(process.env.PEERHOST_FUZZ_SEED ?? Date.now() % 2 ** 31)

const bytes32 = fc.uint8Array({ minLength: 32, maxLength: 32 }).map(b => toHex(b))
const item: fc.Arbitrary<SettlementItem> = fc.record({
  ticket: fc.record({
    jobId: bytes32,
    attempt: fc.nat(2 ** 32 - 1),
    functionId: bytes32,
    jobHash: bytes32,
    inputHash: bytes32,
    fee: fc.bigInt(0n, 2n ** 100n),
    deadline: fc.bigInt(0n, 2n ** 64n - 1n)
  }),
  // any r, low s, v 27/28: the encoding does not care whether it verifies
  ticketSignature: fc.tuple(bytes32, fc.bigInt(1n, 2n ** 255n - 1n), fc.constantFrom(27, 28)).map(([r, s, v]) => (r + s.toString(16).padStart(64, '0') + v.toString(16)) as Hex),
  outputHash: bytes32
})

describe('contracts: settlement leaves (property)', function () {
  this.timeout(120_000)
  let world: World
  before(async () => { world = await setup({ prepare: false }) })
  after(async () => { await world.close() })

  it(`builds prefix sums and proofs that verify, and hashes leaves as Settlement.leafHash does (seed ${SEED})`, async () => {
    await fc.assert(fc.asyncProperty(fc.array(item, { minLength: 1, maxLength: 40 }), async (items) => {
      const batch = buildSettlementBatch(items)
      assert.equal(batch.count, items.length)
      let sum = 0n
      for (const [i, leaf] of batch.leaves.entries()) {
        sum += items[i].ticket.fee
        assert.equal(leaf.index, BigInt(i))
        assert.equal(leaf.cumulativeFee, sum)
        assert.ok(StandardMerkleTree.verify(batch.root, [...SETTLEMENT_LEAF_ENCODING], leafValues(leaf), batch.proof(i)))
      }
      assert.equal(batch.total, sum)
      // the same tree as OpenZeppelin's StandardMerkleTree (the reference implementation): root,
      // every proof and every leaf hash
      const reference = StandardMerkleTree.of(batch.leaves.map(leafValues), [...SETTLEMENT_LEAF_ENCODING])
      assert.equal(batch.root, reference.root)
      for (let i = 0; i < items.length; i++) {
        assert.deepEqual(batch.proof(i), reference.getProof(i))
        assert.equal(batch.leafHash(i), reference.leafHash(leafValues(batch.leaves[i])))
      }
      const pick = batch.leaves[items.length - 1]
      assert.equal(await world.read.settlement.read.leafHash([pick]), batch.leafHash(items.length - 1))
    }), { numRuns: 60, seed: SEED })
  })

  it('refuses a leaf whose fields are out of their ABI types\' range, as the ABI encoder does', () => {
    const [good] = buildSettlementBatch([{ ticket: { jobId: toHex(1n, { size: 32 }), attempt: 1, functionId: toHex(2n, { size: 32 }), jobHash: toHex(3n, { size: 32 }), inputHash: toHex(4n, { size: 32 }), fee: 5n, deadline: 6n }, ticketSignature: `0x${'11'.repeat(32)}${'22'.repeat(32)}1b`, outputHash: toHex(7n, { size: 32 }) }]).leaves
    for (const [what, bad] of [
      ['attempt over uint32', { ...good, attempt: 2 ** 32 }],
      ['deadline over uint64', { ...good, deadline: 2n ** 64n }],
      ['v over uint8', { ...good, v: 256 }],
      ['a negative fee', { ...good, fee: -1n }],
      ['a 31-byte jobId', { ...good, jobId: `0x${'ab'.repeat(31)}` as Hex }],
      ['a non-hex outputHash', { ...good, outputHash: `0x${'zz'.repeat(32)}` as Hex }]
    ] as const) {
      assert.throws(() => fromLeaves([bad]), /settlement leaf/, what)
    }
  })

  it('builds a batch of 10,000 leaves whose proofs verify with the reference library', () => {
    // (bench:settlement measures the speed: the library itself took ~18 s of one event-loop turn for this)
    const items = Array.from({ length: 10_000 }, (_v, i) => ({ ticket: { jobId: toHex(BigInt(i), { size: 32 }), attempt: 1, functionId: toHex(1n, { size: 32 }), jobHash: toHex(2n, { size: 32 }), inputHash: toHex(3n, { size: 32 }), fee: 1n, deadline: 1n }, ticketSignature: `0x${'11'.repeat(32)}${'22'.repeat(32)}1b` as Hex, outputHash: toHex(4n, { size: 32 }) }))
    const batch = buildSettlementBatch(items)
    for (let i = 0; i < items.length; i += 997) assert.ok(StandardMerkleTree.verify(batch.root, [...SETTLEMENT_LEAF_ENCODING], leafValues(batch.leaves[i]), batch.proof(i)))
  })

  it('processProof leads every leaf hash of a tree to its root, and no other hash', () => {
    fc.assert(fc.property(fc.array(fc.uint8Array({ minLength: 32, maxLength: 32 }), { minLength: 1, maxLength: 40 }), fc.nat(), (hashes, k) => {
      const tree = merkleTree(hashes)
      const i = k % hashes.length
      assert.deepEqual(processProof(hashes[i], tree.proof(i)), tree.root)
      const other = hexToBytes(keccak256(hashes[i]))
      assert.notDeepEqual(processProof(other, tree.proof(i)), tree.root)
    }), { numRuns: 100, seed: SEED })
  })

  it('never accepts a tampered leaf under the root', () => {
    fc.assert(fc.property(fc.array(item, { minLength: 2, maxLength: 20 }), fc.nat(), (items, k) => {
      const batch = buildSettlementBatch(items)
      const i = k % items.length
      const tampered = { ...batch.leaves[i], fee: batch.leaves[i].fee + 1n }
      assert.equal(StandardMerkleTree.verify(batch.root, [...SETTLEMENT_LEAF_ENCODING], leafValues(tampered), batch.proof(i)), false)
      const moved = { ...batch.leaves[i], outputHash: keccak256(batch.leaves[i].outputHash) }
      assert.equal(StandardMerkleTree.verify(batch.root, [...SETTLEMENT_LEAF_ENCODING], leafValues(moved), batch.proof(i)), false)
    }), { numRuns: 100, seed: SEED })
  })
})
