import assert from 'node:assert/strict'
import fc from 'fast-check'
import { StandardMerkleTree } from '@openzeppelin/merkle-tree'
import { keccak256, toHex, type Hex } from 'viem'
import { buildSettlementBatch, leafValues, SETTLEMENT_LEAF_ENCODING, type SettlementItem } from '../../contracts/abi/index.ts'
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
      const pick = batch.leaves[items.length - 1]
      assert.equal(await world.read.settlement.read.leafHash([pick]), batch.tree.leafHash(leafValues(pick)))
    }), { numRuns: 60, seed: SEED })
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
