import assert from 'node:assert/strict'
import { concat, encodeFunctionData, keccak256, numberToHex, parseEventLogs, parseSignature, serializeCompactSignature, signatureToCompactSignature, toHex, hexToBigInt, type Hex } from 'viem'
import { executionCoordinatorAbi, fromLeaves, settlementAbi, workerStakingAbi, buildSettlementBatch, peerBindingTypedData, type SettlementLeaf } from '../../contracts/abi/index.ts'
import { reentrantReceiverAbi } from '../../contracts/abi/test-abis.ts'
import { functionId, peerHostDomain, signReceipt, signTicket, type Receipt, type Ticket } from '../../protocol/eip712.ts'
import { LIMITS } from '../../protocol/constants.ts'
import {
  ETHER, PARAMS, commit, deployRaw, endEpoch, executionCommitment, increaseTime, now, owed, revertTo, send, sendReverts, setup,
  signedJob, snapshot, type ActorName, type World, STAKE, assertHonestKeptStake, batchState
} from './fixture.ts'

const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n
const CID: Hex = '0x0155'

/** The other valid-looking signature of the same message: s' = n - s, v flipped (high-s). */
function highS (signature: Hex): Hex {
  const { r, s, yParity } = parseSignature(signature)
  const s2 = N - hexToBigInt(s)
  return concat([r, numberToHex(s2, { size: 32 }), numberToHex(yParity === 0 ? 28 : 27, { size: 1 })])
}

describe('contracts: attacks', function () {
  this.timeout(120_000)
  let world: World
  let snap: string
  let honest: ActorName[]

  before(async () => { world = await setup() })
  after(async () => { await world.close() })
  beforeEach(async () => { snap = await snapshot(world); honest = [] })
  afterEach(async () => {
    await assertHonestKeptStake(world, honest)
    await revertTo(world, snap)
  })

  describe('reentrancy through a malicious receiver', () => {
    async function receiver () {
      const address = await deployRaw(world, 'stranger', 'ReentrantReceiver', [])
      return { address, abi: reentrantReceiverAbi }
    }
    async function balance (a: Hex): Promise<bigint> { return await world.publicClient.getBalance({ address: a }) }

    it('Settlement.withdraw: a re-entering payee is paid exactly once', async () => {
      const rc = await receiver()
      // the attacker owns a project and withdraws its escrow
      await send(world, 'owner', 'FunctionRegistry', 'transferProject', [world.projectId, rc.address])
      const accept = encodeFunctionData({ abi: [{ type: 'function', name: 'acceptProject', inputs: [{ name: 'p', type: 'bytes32' }], outputs: [], stateMutability: 'nonpayable' }], functionName: 'acceptProject', args: [world.projectId] })
      await send(world, 'stranger', rc, 'execute', [world.addresses.FunctionRegistry, 0n, accept])
      await send(world, 'stranger', rc, 'execute', [world.addresses.Settlement, 0n, encodeFunctionData({ abi: settlementAbi, functionName: 'requestEscrowWithdrawal', args: [world.projectId, 5n * ETHER] })])
      await increaseTime(world, PARAMS.epochLength + PARAMS.commitWindow)
      await send(world, 'stranger', rc, 'execute', [world.addresses.Settlement, 0n, encodeFunctionData({ abi: settlementAbi, functionName: 'withdrawEscrow', args: [world.projectId] })])
      const withdraw = encodeFunctionData({ abi: settlementAbi, functionName: 'withdraw' })
      await send(world, 'stranger', rc, 'setTarget', [world.addresses.Settlement, withdraw])
      const held = await balance(world.addresses.Settlement)
      await send(world, 'stranger', rc, 'execute', [world.addresses.Settlement, 0n, withdraw])
      assert.equal(await world.publicClient.readContract({ ...rc, functionName: 'reentryAttempts' }), 1n)
      assert.equal(await world.publicClient.readContract({ ...rc, functionName: 'reentrySucceeded' }), false)
      assert.equal(await balance(rc.address), 5n * ETHER)
      assert.equal(await balance(world.addresses.Settlement), held - 5n * ETHER)
    })

    it('WorkerStaking.withdraw: a re-entering staker gets its stake once', async () => {
      const rc = await receiver()
      const st = world.addresses.WorkerStaking
      await send(world, 'stranger', rc, 'execute', [st, 2n * ETHER, encodeFunctionData({ abi: workerStakingAbi, functionName: 'stake', args: [1] })], 2n * ETHER)
      await send(world, 'stranger', rc, 'execute', [st, 0n, encodeFunctionData({ abi: workerStakingAbi, functionName: 'requestWithdrawal', args: [2n * ETHER] })])
      await increaseTime(world, PARAMS.unbondingPeriod)
      const withdraw = encodeFunctionData({ abi: workerStakingAbi, functionName: 'withdraw' })
      await send(world, 'stranger', rc, 'setTarget', [st, withdraw])
      await send(world, 'stranger', rc, 'execute', [st, 0n, withdraw])
      assert.equal(await world.publicClient.readContract({ ...rc, functionName: 'reentrySucceeded' }), false)
      assert.equal(await balance(rc.address), 2n * ETHER)
    })

    it('ExecutionCoordinator.withdraw and settle: a re-entering requester is refunded once', async () => {
      const rc = await receiver()
      const co = world.addresses.ExecutionCoordinator
      const t = await now(world)
      await send(world, 'stranger', rc, 'execute', [co, ETHER, encodeFunctionData({ abi: executionCoordinatorAbi, functionName: 'requestExecution', args: [{ functionId: world.functionId, inputHash: keccak256('0x01'), inputCid: CID, redundancy: 1, fee: ETHER, deadline: t + 50n, fromEscrow: false }] })], ETHER)
      await increaseTime(world, 60)
      await send(world, 'stranger', rc, 'setTarget', [co, encodeFunctionData({ abi: executionCoordinatorAbi, functionName: 'withdraw' })])
      await send(world, 'stranger', 'ExecutionCoordinator', 'settle', [1n])
      await send(world, 'stranger', rc, 'execute', [co, 0n, encodeFunctionData({ abi: executionCoordinatorAbi, functionName: 'withdraw' })])
      assert.equal(await world.publicClient.readContract({ ...rc, functionName: 'reentrySucceeded' }), false)
      assert.equal(await balance(rc.address), ETHER)
      assert.equal(await balance(co), 0n)
    })
  })

  describe('signature replay and malleability', () => {
    it('a ticket signed for another chain id or another Settlement is a provable invalid leaf', async () => {
      honest = ['w2']
      const epoch = await world.read.settlement.read.currentEpoch()
      const good = await signedJob(world, { worker: 'w1', epoch })
      await endEpoch(world)
      for (const [worker, domain] of [['w1', peerHostDomain(80002, world.addresses.Settlement)], ['w3', peerHostDomain(world.chainId, world.addresses.ExecutionCoordinator)]] as const) {
        const sig = await signTicket(world.actors.gateway.account, domain, good.ticket)
        const replayed = { ...good.item, ticketSignature: sig }
        const c = await commit(world, worker, epoch, [replayed])
        await send(world, 'challenger', 'Settlement', 'proveInvalidLeaf', [c.header, c.batch.leaves[0], c.batch.proof(0)])
        assert.equal((await batchState(world, c.header)).status, 3)
      }
    })

    it('a high-s variant of a valid ticket signature makes the leaf invalid (no second valid form exists)', async () => {
      const epoch = await world.read.settlement.read.currentEpoch()
      const j = await signedJob(world, { worker: 'w1', epoch })
      await endEpoch(world)
      assert.equal(await world.read.settlement.read.verifyTicket([j.ticket, highS(j.ticketSignature), world.actors.gateway.address]), false)
      const c = await commit(world, 'w1', epoch, [{ ...j.item, ticketSignature: highS(j.ticketSignature) }])
      await send(world, 'challenger', 'Settlement', 'proveInvalidLeaf', [c.header, c.batch.leaves[0], c.batch.proof(0)])
      assert.equal((await batchState(world, c.header)).status, 3)
    })

    it('high-s and EIP-2098 compact receipt signatures prove nothing', async () => {
      honest = ['w2']
      const epoch = await world.read.settlement.read.currentEpoch()
      const j = await signedJob(world, { worker: 'w1', epoch })
      await endEpoch(world)
      const c = await commit(world, 'w1', epoch, [j.item])
      const other = keccak256(toHex('other'))
      const sig = await signReceipt(world.actors.w1.account, world.domain, { ...j.receipt, outputHash: other })
      const compact = serializeCompactSignature(signatureToCompactSignature(parseSignature(sig)))
      assert.equal((compact.length - 2) / 2, 64)
      for (const variant of [highS(sig), compact]) {
        await sendReverts(world, 'challenger', 'Settlement', 'proveEquivocation', [c.header, c.batch.leaves[0], c.batch.proof(0), other, variant], 'SettlementInvalidReceiptSignature', [0n])
      }
      assert.equal(await world.read.settlement.read.verifyReceipt([j.receipt, highS(j.receiptSignature)]), false)
      // the genuine form still works (and can only void the batch once)
      await send(world, 'challenger', 'Settlement', 'proveEquivocation', [c.header, c.batch.leaves[0], c.batch.proof(0), other, sig])
      await sendReverts(world, 'challenger', 'Settlement', 'proveEquivocation', [c.header, c.batch.leaves[0], c.batch.proof(0), other, sig], 'SettlementBatchNotChallengeable', [c.batchId])
    })

    it('a high-s or compact peer-binding signature is rejected', async () => {
      const deadline = (await now(world)) + 100n
      const peerId: Hex = '0x00240801'
      const nonce = await world.read.staking.read.nonces([world.actors.w1.address])
      const sig = await world.actors.w1.account.signTypedData(peerBindingTypedData(world.chainId, world.addresses.WorkerStaking, { account: world.actors.w1.address, peerId, nonce, deadline }))
      const compact = serializeCompactSignature(signatureToCompactSignature(parseSignature(sig)))
      for (const variant of [highS(sig), compact]) {
        await sendReverts(world, 'stranger', 'WorkerStaking', 'bindPeer', [world.actors.w1.address, peerId, deadline, variant, `0x${'55'.repeat(64)}`], 'StakingInvalidSignature')
      }
      await send(world, 'stranger', 'WorkerStaking', 'bindPeer', [world.actors.w1.address, peerId, deadline, sig, `0x${'55'.repeat(64)}`])
    })
  })

  describe('batch headers as calldata (Settlement stores only their hash)', () => {
    it('a forged header (other root, count, total, bond, worker) is refused by every call naming the batch', async () => {
      honest = ['w1']
      const epoch = await world.read.settlement.read.currentEpoch()
      const js = await Promise.all([0, 1].map(async () => await signedJob(world, { worker: 'w1', epoch })))
      // the attacker's own tree: a leaf with a ticket the gateway never signed, the rest copied
      const fake = await signedJob(world, { worker: 'w1', epoch, gateway: 'stranger' })
      await endEpoch(world)
      const c = await commit(world, 'w1', epoch, js.map(j => j.item))
      const forgedTree = buildSettlementBatch([...js.map(j => j.item), { ...fake.item }])
      const forged = [
        { ...c.header, root: forgedTree.root },
        { ...c.header, root: forgedTree.root, count: forgedTree.count, total: forgedTree.total },
        { ...c.header, count: c.header.count + 1 },
        { ...c.header, total: c.header.total + ETHER },
        { ...c.header, bond: c.header.bond + ETHER }
      ]
      for (const h of forged) {
        // with the forged root, the fake leaf has a valid Merkle proof: only the header check stops it
        await sendReverts(world, 'challenger', 'Settlement', 'proveInvalidLeaf', [h, forgedTree.leaves[2], forgedTree.proof(2)], 'SettlementHeaderMismatch', [c.batchId])
        await sendReverts(world, 'challenger', 'Settlement', 'proveBrokenSum', [h, forgedTree.leaves[1], forgedTree.proof(1), forgedTree.leaves[2], forgedTree.proof(2)], 'SettlementHeaderMismatch', [c.batchId])
        await sendReverts(world, 'challenger', 'Settlement', 'requestLeaf', [h, 2n], 'SettlementHeaderMismatch', [c.batchId], PARAMS.minBatchBond)
        await sendReverts(world, 'challenger', 'Settlement', 'disputeDuplicateJob', [h, forgedTree.leaves[0], forgedTree.proof(0), c.header, c.batch.leaves[0], c.batch.proof(0)], 'SettlementHeaderMismatch', [c.batchId])
        await sendReverts(world, 'challenger', 'Settlement', 'proveEquivocation', [h, forgedTree.leaves[2], forgedTree.proof(2), keccak256('0x09'), '0x'], 'SettlementHeaderMismatch', [c.batchId])
        await sendReverts(world, 'challenger', 'Settlement', 'proveDisagreement', [h, forgedTree.leaves[2], forgedTree.proof(2), [], [], []], 'SettlementHeaderMismatch', [c.batchId])
      }
      // another worker's address names another (unknown) batch
      const otherId = await world.read.settlement.read.batchIdOf([world.actors.w2.address, world.projectId, epoch, world.actors.gateway.address])
      await sendReverts(world, 'challenger', 'Settlement', 'proveInvalidLeaf', [{ ...c.header, worker: world.actors.w2.address }, c.batch.leaves[0], c.batch.proof(0)], 'SettlementUnknownBatch', [otherId])
      await increaseTime(world, PARAMS.challengeWindow)
      // the worker cannot be paid more than it committed: an inflated total or bond is refused
      for (const h of forged.slice(3)) await sendReverts(world, 'w1', 'Settlement', 'commitBatches', [[], [h]], 'SettlementHeaderMismatch', [c.batchId])
      await send(world, 'stranger', 'Settlement', 'commitBatches', [[], [c.header]])
      assert.equal(await owed(world, 'w1'), c.batch.total + PARAMS.minBatchBond)
      // finalized: the genuine header still names it (a keeper in disputes), a forged one still fails
      await sendReverts(world, 'w1', 'Settlement', 'commitBatches', [[], [c.header]], 'SettlementBatchNotCommitted', [c.batchId])
      await sendReverts(world, 'w1', 'Settlement', 'commitBatches', [[], [forged[3]]], 'SettlementHeaderMismatch', [c.batchId])
    })

    it('commitBatches: several commits and the due finalizations in one transaction, bonds summed, each batch once', async () => {
      honest = ['w1']
      const e1 = await world.read.settlement.read.currentEpoch()
      const first = await Promise.all([0, 1].map(async () => await signedJob(world, { worker: 'w1', epoch: e1 })))
      await endEpoch(world)
      const old = await commit(world, 'w1', e1, first.map(j => j.item))
      await increaseTime(world, PARAMS.challengeWindow)
      const e2 = await world.read.settlement.read.currentEpoch()
      const a = await Promise.all([0, 1, 2].map(async () => await signedJob(world, { worker: 'w1', epoch: e2 })))
      const b = await Promise.all([0].map(async () => await signedJob(world, { worker: 'w1', epoch: e2, gateway: 'gateway2' })))
      await send(world, 'owner', 'Settlement', 'setGatewayAllowance', [world.projectId, world.actors.gateway2.address, 100n * ETHER])
      await endEpoch(world)
      const ba = buildSettlementBatch(a.map(j => j.item))
      const bb = buildSettlementBatch(b.map(j => j.item))
      const bond = PARAMS.minBatchBond
      const commits = [
        { projectId: world.projectId, epoch: e2, gateway: world.actors.gateway.address, root: ba.root, count: ba.count, total: ba.total, bond, dataCid: CID },
        { projectId: world.projectId, epoch: e2, gateway: world.actors.gateway2.address, root: bb.root, count: bb.count, total: bb.total, bond: bond + 1n, dataCid: CID }
      ]
      await sendReverts(world, 'w1', 'Settlement', 'commitBatches', [commits, [old.header]], 'SettlementBondMismatch', [2n * bond, 2n * bond + 1n], 2n * bond)
      await sendReverts(world, 'stranger', 'Settlement', 'commitBatches', [commits, []], 'SettlementNotStakedWorker', [world.actors.stranger.address], 2n * bond + 1n)
      await sendReverts(world, 'w1', 'Settlement', 'commitBatches', [[commits[0], commits[0]], []], 'SettlementBatchExists', [await world.read.settlement.read.batchIdOf([world.actors.w1.address, world.projectId, e2, world.actors.gateway.address])], 2n * bond)
      // a forged header among the due ones fails the whole transaction
      await sendReverts(world, 'w1', 'Settlement', 'commitBatches', [commits, [{ ...old.header, total: old.header.total + 1n }]], 'SettlementHeaderMismatch', [old.batchId], 2n * bond + 1n)
      const wallet = async (): Promise<bigint> => await world.publicClient.getBalance({ address: world.actors.w1.address })
      const before = await wallet()
      const r = await send(world, 'w1', 'Settlement', 'commitBatches', [commits, [old.header]], 2n * bond + 1n)
      const evs = parseEventLogs({ abi: settlementAbi, logs: r.logs })
      assert.deepEqual(evs.map(e => e.eventName).filter(n => n === 'BatchCommitted' || n === 'BatchFinalized' || n === 'PaymentWithdrawn'), ['BatchFinalized', 'BatchCommitted', 'BatchCommitted'], 'finalizations first, no PaymentWithdrawn (BatchFinalized says what was paid)')
      // the caller's own due batch is paid to it in the same transaction: nothing left to withdraw
      assert.equal(await owed(world, 'w1'), 0n)
      assert.equal(await wallet() - before, old.batch.total + bond - (2n * bond + 1n) - r.gasUsed * r.effectiveGasPrice, 'the wallet gets the due batch (total + bond), less the new bonds and the gas')
      for (const [c, t] of [[commits[0], ba], [commits[1], bb]] as const) {
        const id = await world.read.settlement.read.batchIdOf([world.actors.w1.address, world.projectId, e2, c.gateway])
        assert.equal((await batchState(world, { worker: world.actors.w1.address, projectId: world.projectId, epoch: e2, gateway: c.gateway })).status, 1)
        await sendReverts(world, 'w1', 'Settlement', 'commitBatch', [world.projectId, e2, c.gateway, t.root, t.count, t.total, CID], 'SettlementBatchExists', [id], bond)
      }
      await sendReverts(world, 'w1', 'Settlement', 'commitBatches', [[], [old.header]], 'SettlementBatchNotCommitted', [old.batchId])
      await increaseTime(world, PARAMS.challengeWindow)
      // with no commits it only finalizes (anyone may)
      const headers = commits.map(c => ({ worker: world.actors.w1.address, projectId: c.projectId, gateway: c.gateway, epoch: c.epoch, root: c.root, count: c.count, total: c.total, bond: c.bond }))
      await sendReverts(world, 'stranger', 'Settlement', 'commitBatches', [[], headers], 'SettlementBondMismatch', [1n, 0n], 1n)
      await send(world, 'stranger', 'Settlement', 'commitBatches', [[], headers])
      // finalized by someone else: credited to the worker (pull payment)
      assert.equal(await owed(world, 'w1'), ba.total + bb.total + 2n * bond + 1n)
    })
  })

  describe('batch ring (a lane\'s slot is reused batchRing epochs later)', () => {
    const ring = async (): Promise<bigint> => await world.read.settlement.read.batchRing()
    /** Commits w1's one-job batch of the current epoch for the gateway; returns it. */
    async function batchNow (fee = ETHER / 10n) {
      const epoch = await world.read.settlement.read.currentEpoch()
      const j = await signedJob(world, { worker: 'w1', epoch, fee })
      await endEpoch(world)
      return { j, c: await commit(world, 'w1', epoch, [j.item]) }
    }
    /** Moves to the first epoch sharing `epoch`'s slot, plus `extra` epochs. */
    async function toEpoch (target: bigint): Promise<void> {
      const current = await world.read.settlement.read.currentEpoch()
      await increaseTime(world, (target - current) * PARAMS.epochLength)
    }

    it('covers the commit window, the longest challenge and the longest job: (3 commitWindow + challengeWindow + LIMITS.maxDeadlineMs) / epochLength + 2', async () => {
      assert.equal(await ring(), (3n * PARAMS.commitWindow + PARAMS.challengeWindow + BigInt(LIMITS.maxDeadlineMs / 1000)) / PARAMS.epochLength + 2n)
      assert.ok((await ring()) * PARAMS.epochLength > PARAMS.commitWindow, 'epochs sharing a slot have disjoint commit windows')
    })

    it('a finalized batch is never committed again, and its slot is reused only by the epoch batchRing later', async () => {
      honest = ['w1']
      await send(world, 'stranger', 'Settlement', 'prepareBatchSlots', [world.actors.w1.address, world.projectId, world.actors.gateway.address])
      const { c } = await batchNow()
      await increaseTime(world, PARAMS.challengeWindow)
      await send(world, 'w1', 'Settlement', 'commitBatches', [[], [c.header]])
      const again = buildSettlementBatch([(await signedJob(world, { worker: 'w1', epoch: c.epoch })).item])
      // the epoch batchRing later takes the slot; the old batch is gone from it, and stays uncommittable
      await toEpoch(c.epoch + await ring())
      const { c: next } = await batchNow()
      assert.equal(next.epoch, c.epoch + await ring())
      assert.equal((await batchState(world, next.header)).status, 1)
      assert.equal((await batchState(world, c.header)).status, 0, 'the old batch left the slot')
      await sendReverts(world, 'w1', 'Settlement', 'commitBatches', [[], [c.header]], 'SettlementUnknownBatch', [c.batchId])
      await sendReverts(world, 'w1', 'Settlement', 'commitBatch', [world.projectId, c.epoch, world.actors.gateway.address, again.root, 1, again.total, CID], 'SettlementEpochNotCommittable', [c.epoch, await world.read.settlement.read.currentEpoch()], PARAMS.minBatchBond)
      // the new batch finalizes and pays as any other
      await increaseTime(world, PARAMS.challengeWindow)
      await send(world, 'w1', 'Settlement', 'commitBatches', [[], [next.header]])
      assert.equal((await batchState(world, next.header)).status, 2)
    })

    it('a batch finalized while its commit window is open is not committed again (challenge window shorter than the commit window)', async () => {
      const short = await setup({ params: { ...PARAMS, challengeWindow: PARAMS.commitWindow / 5n } })
      try {
        const epoch = await short.read.settlement.read.currentEpoch()
        const j = await signedJob(short, { worker: 'w1', epoch })
        await endEpoch(short)
        const c = await commit(short, 'w1', epoch, [j.item])
        await increaseTime(short, PARAMS.commitWindow / 5n)
        await send(short, 'w1', 'Settlement', 'commitBatches', [[], [c.header]])
        assert.equal((await batchState(short, c.header)).status, 2)
        const window = (await short.read.settlement.read.genesis()) + (epoch + 1n) * PARAMS.epochLength + PARAMS.commitWindow
        assert.ok(await now(short) + 1n < window, 'the commit window is still open')
        for (const t of [c.batch, buildSettlementBatch([(await signedJob(short, { worker: 'w1', epoch })).item])]) {
          await sendReverts(short, 'w1', 'Settlement', 'commitBatch', [short.projectId, epoch, short.actors.gateway.address, t.root, 1, t.total, CID], 'SettlementBatchExists', [c.batchId], PARAMS.minBatchBond)
        }
        await sendReverts(short, 'w1', 'Settlement', 'commitBatches', [[{ projectId: short.projectId, epoch, gateway: short.actors.gateway.address, root: c.batch.root, count: 1, total: c.batch.total, bond: PARAMS.minBatchBond, dataCid: CID }], []], 'SettlementBatchExists', [c.batchId], PARAMS.minBatchBond)
        await sendReverts(short, 'w1', 'Settlement', 'commitBatches', [[], [c.header]], 'SettlementBatchNotCommitted', [c.batchId])
      } finally { await short.close() }
    })

    it('a batch never finalized keeps its slot (SettlementBatchSlotBusy); finalizing it in the same commitBatches frees it', async () => {
      honest = ['w1']
      const { c } = await batchNow()
      await toEpoch(c.epoch + await ring())
      const e = await world.read.settlement.read.currentEpoch()
      const j = await signedJob(world, { worker: 'w1', epoch: e })
      await endEpoch(world)
      const t = buildSettlementBatch([j.item])
      const id = await world.read.settlement.read.batchIdOf([world.actors.w1.address, world.projectId, e, world.actors.gateway.address])
      await sendReverts(world, 'w1', 'Settlement', 'commitBatch', [world.projectId, e, world.actors.gateway.address, t.root, 1, t.total, CID], 'SettlementBatchSlotBusy', [id], PARAMS.minBatchBond)
      const commitArg = { projectId: world.projectId, epoch: e, gateway: world.actors.gateway.address, root: t.root, count: 1, total: t.total, bond: PARAMS.minBatchBond, dataCid: CID }
      await sendReverts(world, 'w1', 'Settlement', 'commitBatches', [[commitArg], []], 'SettlementBatchSlotBusy', [id], PARAMS.minBatchBond)
      await send(world, 'w1', 'Settlement', 'commitBatches', [[commitArg], [c.header]], PARAMS.minBatchBond)
      assert.equal((await batchState(world, { ...c.header, epoch: e })).status, 1)
    })

    it('proveUnanswered: a forged header cannot close a request on a live batch; after the slot is reused the requester still gets its bond', async () => {
      honest = ['w2']
      const { c } = await batchNow()
      await send(world, 'challenger', 'Settlement', 'requestLeaf', [c.header, 0n], PARAMS.minBatchBond)
      // a second request, left open on a batch voided by another proof
      await increaseTime(world, PARAMS.commitWindow)
      await sendReverts(world, 'stranger', 'Settlement', 'proveUnanswered', [{ ...c.header, total: c.header.total + 1n }, 0n], 'SettlementHeaderMismatch', [c.batchId])
      assert.equal((await world.read.settlement.read.getLeafRequest([c.batchId, 0n])).open, true, 'the forged header closed nothing')
      await send(world, 'stranger', 'Settlement', 'proveUnanswered', [c.header, 0n])
      assert.equal((await batchState(world, c.header)).status, 3, 'voided for the withheld leaf')

      // a request still open on a batch voided by another proof: the slot is reused (a voided batch
      // does not keep it), and the requester still gets its bond back
      const e = await world.read.settlement.read.currentEpoch()
      const foreign = await signedJob(world, { worker: 'w2', epoch: e }) // its ticket names w2: invalid in w1's batch
      await endEpoch(world)
      const d = await commit(world, 'w1', e, [foreign.item])
      await send(world, 'stranger', 'Settlement', 'requestLeaf', [d.header, 0n], PARAMS.minBatchBond)
      await send(world, 'challenger', 'Settlement', 'proveInvalidLeaf', [d.header, d.batch.leaves[0], d.batch.proof(0)])
      assert.equal((await batchState(world, d.header)).status, 3)
      await toEpoch(d.epoch + await ring())
      const { c: next } = await batchNow()
      assert.equal((await batchState(world, next.header)).status, 1, 'the voided batch\'s slot is reused')
      const before = await owed(world, 'stranger')
      await send(world, 'challenger', 'Settlement', 'proveUnanswered', [d.header, 0n])
      assert.equal(await owed(world, 'stranger') - before, PARAMS.minBatchBond, 'the requester\'s bond')
      assert.equal((await batchState(world, next.header)).status, 1, 'the batch now in the slot is untouched')
      await sendReverts(world, 'challenger', 'Settlement', 'proveUnanswered', [d.header, 0n], 'SettlementNoLeafRequest', [d.batchId, 0n])
    })
  })

  describe('merkle', () => {
    it('an inner node presented as a leaf does not verify (leaves are double-hashed)', async () => {
      honest = ['w1']
      const epoch = await world.read.settlement.read.currentEpoch()
      const js = await Promise.all([0, 1, 2, 3].map(async () => await signedJob(world, { worker: 'w1', epoch })))
      await endEpoch(world)
      const c = await commit(world, 'w1', epoch, js.map(j => j.item))
      const proof = c.batch.proof(0)
      const leafHash = c.batch.leafHash(0)
      // the parent of leaf 0: a naive (single-hash, raw 64-byte) tree would accept it with proof[1:]
      const [a, b] = [leafHash, proof[0]].sort()
      const inner = keccak256(concat([a, b]))
      let node = inner
      for (const p of proof.slice(1)) node = keccak256(concat([node, p].sort() as [Hex, Hex]))
      assert.equal(node, c.batch.root, 'the shortened proof does lead from the inner node to the root')
      // …but no Leaf hashes to it: reading the two children as the leaf's first words fails
      const forged: SettlementLeaf = { ...c.batch.leaves[0], index: hexToBigInt(a), cumulativeFee: hexToBigInt(b) }
      for (const args of [[c.header, forged, proof.slice(1)], [c.header, forged, proof]]) {
        await sendReverts(world, 'challenger', 'Settlement', 'proveInvalidLeaf', args, 'SettlementInvalidProof')
      }
      assert.notEqual(await world.read.settlement.read.leafHash([forged]), inner)
    })

    it('a double claim of one ticket in one batch is a fault; a second batch for the same key is refused', async () => {
      honest = ['w2']
      const epoch = await world.read.settlement.read.currentEpoch()
      const j = await signedJob(world, { worker: 'w1', epoch, fee: ETHER })
      const k = await signedJob(world, { worker: 'w1', epoch, fee: ETHER })
      await endEpoch(world)
      const c = await commit(world, 'w1', epoch, [j.item, k.item, j.item])
      const second = buildSettlementBatch([j.item])
      await sendReverts(world, 'w1', 'Settlement', 'commitBatch', [world.projectId, epoch, world.actors.gateway.address, second.root, 1, ETHER, CID], 'SettlementBatchExists', [c.batchId], PARAMS.minBatchBond)
      await send(world, 'challenger', 'Settlement', 'disputeDuplicateJob', [c.header, c.batch.leaves[0], c.batch.proof(0), c.header, c.batch.leaves[2], c.batch.proof(2)])
      assert.equal((await batchState(world, c.header)).status, 3)
    })

    it('an inflated batch total is voided and the escrow made whole', async () => {
      honest = ['w2']
      const epoch = await world.read.settlement.read.currentEpoch()
      const js = await Promise.all([1n, 2n].map(async f => await signedJob(world, { worker: 'w1', epoch, fee: f * ETHER / 10n })))
      await endEpoch(world)
      const escrow = await world.read.settlement.read.escrowOf([world.projectId])
      const t = buildSettlementBatch(js.map(j => j.item))
      const c = await commit(world, 'w1', epoch, fromLeaves(t.leaves, 50n * ETHER))
      assert.equal(await world.read.settlement.read.escrowOf([world.projectId]), escrow - 50n * ETHER)
      await send(world, 'challenger', 'Settlement', 'proveInvalidLeaf', [c.header, c.batch.leaves[1], c.batch.proof(1)])
      assert.equal(await world.read.settlement.read.escrowOf([world.projectId]), escrow)
    })
  })

  describe('trust model (issue 9): receipt-based proofs need a staked gateway\'s ticket', () => {
    /** What an honest worker that runs a Math.random function twice would sign: two receipts, one ticket. */
    async function twoOutputs (issuer: ActorName, worker: ActorName = 'w1') {
      const epoch = await world.read.settlement.read.currentEpoch()
      const j = await signedJob(world, { worker, gateway: issuer, epoch })
      const b: Receipt = { ...j.receipt, outputHash: keccak256(toHex('a second random output')) }
      const sigB = await signReceipt(world.actors[worker].account, world.domain, b)
      return { j, b, sigB }
    }

    it('an unstaked key that signs a ticket and gets two receipts cannot slash the worker', async () => {
      honest = ['w1']
      // stranger holds no stake; w5 is staked, but as a worker, not as a gateway
      for (const issuer of ['stranger', 'w5'] as const) {
        const { j, b, sigB } = await twoOutputs(issuer)
        await sendReverts(world, 'challenger', 'Settlement', 'proveReceiptEquivocation', [j.ticket, j.ticketSignature, j.receipt, j.receiptSignature, b, sigB], 'SettlementGatewayNotStaked', [world.actors[issuer].address])
        await sendReverts(world, issuer, 'Settlement', 'proveReceiptEquivocation', [j.ticket, j.ticketSignature, j.receipt, j.receiptSignature, b, sigB], 'SettlementGatewayNotStaked', [world.actors[issuer].address])
        // naming a staked gateway in a ticket the attacker signs itself does not help either
        const posing: Ticket = { ...j.ticket, gateway: world.actors.gateway.address }
        const posed = await signTicket(world.actors[issuer].account, world.domain, posing)
        const ra: Receipt = { ...j.receipt, gateway: posing.gateway }
        const rb: Receipt = { ...b, gateway: posing.gateway }
        const sa = await signReceipt(world.actors.w1.account, world.domain, ra)
        const sb = await signReceipt(world.actors.w1.account, world.domain, rb)
        await sendReverts(world, issuer, 'Settlement', 'proveReceiptEquivocation', [posing, posed, ra, sa, rb, sb], 'SettlementInvalidTicketSignature', [0n])
      }
    })

    it('receipts that do not answer the given ticket (another job or deadline) prove nothing', async () => {
      honest = ['w1']
      const { j, b, sigB } = await twoOutputs('gateway')
      for (const change of [{ jobHash: keccak256('0x01') }, { deadline: j.ticket.deadline - 1n }, { fee: j.ticket.fee + 1n }]) {
        const other = { ...j.ticket, ...change }
        const sig = await signTicket(world.actors.gateway.account, world.domain, other)
        await sendReverts(world, 'challenger', 'Settlement', 'proveReceiptEquivocation', [other, sig, j.receipt, j.receiptSignature, b, sigB], 'SettlementNoFault')
      }
    })

    it('a batch whose gateway is not staked as a gateway cannot be voided by an equivocation proof', async () => {
      honest = ['w1']
      const epoch = await world.read.settlement.read.currentEpoch()
      const j = await signedJob(world, { worker: 'w1', gateway: 'stranger', epoch })
      await endEpoch(world)
      await send(world, 'owner', 'Settlement', 'setGatewayAllowance', [world.projectId, world.actors.stranger.address, ETHER])
      const c = await commit(world, 'w1', epoch, [j.item], { gateway: 'stranger' })
      const other = keccak256(toHex('a second output'))
      const sig = await signReceipt(world.actors.w1.account, world.domain, { ...j.receipt, outputHash: other })
      await sendReverts(world, 'stranger', 'Settlement', 'proveEquivocation', [c.header, c.batch.leaves[0], c.batch.proof(0), other, sig], 'SettlementGatewayNotStaked', [world.actors.stranger.address])
    })

    it('disagreement on a function not declared deterministic never slashes (Math.random dissent)', async () => {
      honest = ['w1']
      const epoch = await world.read.settlement.read.currentEpoch()
      const echo = functionId(world.actors.owner.address, 'demo', 'echo')
      assert.equal(await world.read.registry.read.isDeterministic([echo]), false)
      const inputHash = keccak256(toHex('same input'))
      const mine = await signedJob(world, { worker: 'w1', epoch, functionId: echo, inputHash, outputHash: keccak256(toHex('random 1')) })
      const peers = await Promise.all((['w2', 'w3'] as const).map(async w => await signedJob(world, { worker: w, epoch, functionId: echo, inputHash, outputHash: keccak256(toHex('random 2')) })))
      peers.sort((x, y) => x.receipt.worker.toLowerCase() < y.receipt.worker.toLowerCase() ? -1 : 1)
      await endEpoch(world)
      const c = await commit(world, 'w1', epoch, [mine.item])
      const args = [c.header, c.batch.leaves[0], c.batch.proof(0), peers.map(p => p.receipt), peers.map(p => p.receiptSignature), peers.map(p => p.ticketSignature)]
      await sendReverts(world, 'challenger', 'Settlement', 'proveDisagreement', args, 'SettlementNotDeterministic', [echo])
      // the same proof is a fault once the builder declares the function deterministic
      await send(world, 'owner', 'FunctionRegistry', 'deploy', [world.actors.owner.address, 'demo', '0x0155', keccak256('0x09'), ['echo'], 1n])
      honest = []
      await send(world, 'challenger', 'Settlement', 'proveDisagreement', args)
    })

    it('receipts of workers whose tickets nobody staked issued do not count towards disagreement', async () => {
      honest = ['w1']
      const epoch = await world.read.settlement.read.currentEpoch()
      const inputHash = keccak256(toHex('same input'))
      const mine = await signedJob(world, { worker: 'w1', epoch, inputHash })
      // w2 and w3 sign receipts with another output for tickets the attacker (stranger) "issued" in the gateway's name
      const fakes = await Promise.all((['w2', 'w3'] as const).map(async w => await signedJob(world, { worker: w, epoch, inputHash, outputHash: keccak256(toHex('lie')) })))
      fakes.sort((x, y) => x.receipt.worker.toLowerCase() < y.receipt.worker.toLowerCase() ? -1 : 1)
      const forged = await Promise.all(fakes.map(async f => await signTicket(world.actors.stranger.account, world.domain, f.ticket)))
      await endEpoch(world)
      const c = await commit(world, 'w1', epoch, [mine.item])
      await sendReverts(world, 'challenger', 'Settlement', 'proveDisagreement', [c.header, c.batch.leaves[0], c.batch.proof(0), fakes.map(p => p.receipt), fakes.map(p => p.receiptSignature), forged], 'SettlementInvalidTicketSignature', [0n])
    })
  })

  describe('trust model (issue 9): a voided batch gives back the allowance it spent', () => {
    it('one fake batch no longer blocks honest batches of the same (project, gateway, epoch)', async () => {
      honest = ['w2']
      const epoch = await world.read.settlement.read.currentEpoch()
      const [perEpoch] = await world.read.settlement.read.allowanceOf([world.projectId, world.actors.gateway.address])
      // the attacker (staked worker w1) claims the whole allowance with a ticket the gateway never signed
      const fake = await signedJob(world, { worker: 'w1', gateway: 'stranger', epoch, fee: perEpoch })
      const honestJobs = await Promise.all([1n, 2n].map(async f => await signedJob(world, { worker: 'w2', epoch, fee: f * ETHER })))
      await endEpoch(world)
      const leaf = buildSettlementBatch([fake.item])
      const c = await commit(world, 'w1', epoch, leaf)
      assert.equal(await world.read.settlement.read.spentOf([world.projectId, world.actors.gateway.address, epoch]), perEpoch)
      const batch = buildSettlementBatch(honestJobs.map(j => j.item))
      const commitArgs = [world.projectId, epoch, world.actors.gateway.address, batch.root, batch.count, batch.total, CID]
      await sendReverts(world, 'w2', 'Settlement', 'commitBatch', commitArgs, 'SettlementAllowanceExceeded', [batch.total, 0n], PARAMS.minBatchBond)
      await send(world, 'challenger', 'Settlement', 'proveInvalidLeaf', [c.header, c.batch.leaves[0], c.batch.proof(0)])
      assert.equal(await world.read.settlement.read.spentOf([world.projectId, world.actors.gateway.address, epoch]), 0n)
      // the honest batch now commits and is paid in full
      const paid = await commit(world, 'w2', epoch, honestJobs.map(j => j.item))
      assert.equal(await world.read.settlement.read.spentOf([world.projectId, world.actors.gateway.address, epoch]), 3n * ETHER)
      await increaseTime(world, PARAMS.challengeWindow)
      await send(world, 'stranger', 'Settlement', 'commitBatches', [[], [paid.header]])
      assert.equal(await owed(world, 'w2'), 3n * ETHER + PARAMS.minBatchBond)
    })

    it('an excluded duplicate leaf gives back its fee to the allowance as well', async () => {
      const epoch = await world.read.settlement.read.currentEpoch()
      const a = await signedJob(world, { worker: 'w1', epoch, fee: ETHER, attempt: 1 })
      const b = await signedJob(world, { worker: 'w2', epoch, fee: ETHER, jobId: a.ticket.jobId, attempt: 0 })
      await endEpoch(world)
      const ca = await commit(world, 'w1', epoch, [a.item])
      const cb = await commit(world, 'w2', epoch, [b.item])
      const spent = async (): Promise<bigint> => await world.read.settlement.read.spentOf([world.projectId, world.actors.gateway.address, epoch])
      assert.equal(await spent(), 2n * ETHER)
      await send(world, 'challenger', 'Settlement', 'disputeDuplicateJob', [ca.header, ca.batch.leaves[0], ca.batch.proof(0), cb.header, cb.batch.leaves[0], cb.batch.proof(0)])
      assert.equal(await spent(), ETHER)
    })
  })

  describe('execution fallback', () => {
    it('a copied commitment cannot be revealed by the copier, who is penalised; the original worker is paid', async () => {
      honest = ['w1', 'w3']
      // w1–w3 form the draw pool, so redundancy 3 draws exactly them (the copier w2 holds a real slot)
      for (const w of ['w1', 'w2', 'w3'] as const) await send(world, w, 'ExecutionCoordinator', 'join', [keccak256(toHex(`key-${w}`))])
      const t = await now(world)
      await send(world, 'gateway', 'ExecutionCoordinator', 'requestExecution', [{ functionId: world.functionId, inputHash: keccak256('0x01'), inputCid: CID, redundancy: 3, fee: 3n * ETHER, deadline: t + 100n, fromEscrow: false }], 3n * ETHER)
      const id = await world.read.coordinator.read.requestCount()
      const out = keccak256(toHex('out'))
      const salt = keccak256(toHex('secret'))
      const commitment = executionCommitment(id, world.actors.w1.address, out, salt)
      await send(world, 'w1', 'ExecutionCoordinator', 'commit', [id, commitment])
      await send(world, 'w2', 'ExecutionCoordinator', 'commit', [id, commitment]) // copied from the mempool
      await send(world, 'w3', 'ExecutionCoordinator', 'commit', [id, executionCommitment(id, world.actors.w3.address, out, keccak256('0x03'))])
      await send(world, 'w1', 'ExecutionCoordinator', 'reveal', [id, out, salt, CID])
      // the copier now knows (out, salt) but its commitment is bound to w1's address
      await sendReverts(world, 'w2', 'ExecutionCoordinator', 'reveal', [id, out, salt, CID], 'CoordinatorCommitmentMismatch', [id, world.actors.w2.address])
      await send(world, 'w3', 'ExecutionCoordinator', 'reveal', [id, out, keccak256('0x03'), CID])
      await increaseTime(world, 120)
      await send(world, 'stranger', 'ExecutionCoordinator', 'settle', [id])
      assert.equal(await world.read.coordinator.read.owed([world.actors.w1.address]), ETHER)
      assert.equal(await world.read.coordinator.read.owed([world.actors.w2.address]), 0n)
      const s2 = await world.read.staking.read.stakeOf([world.actors.w2.address])
      assert.equal(s2.amount + s2.pending, STAKE - STAKE * BigInt(PARAMS.penaltyBps) / 10_000n)
    })
  })

  describe('unbonding', () => {
    it('stake requested for withdrawal before a fault is proven is still slashed', async () => {
      honest = ['w2']
      const epoch = await world.read.settlement.read.currentEpoch()
      const forged = await signedJob(world, { worker: 'w1', epoch, gateway: 'stranger', fee: ETHER })
      await endEpoch(world)
      const c = await commit(world, 'w1', epoch, [forged.item])
      await send(world, 'w1', 'WorkerStaking', 'requestWithdrawal', [STAKE])
      assert.equal(await world.read.staking.read.isActiveWorker([world.actors.w1.address]), false)
      await increaseTime(world, PARAMS.challengeWindow - 10n)
      await send(world, 'challenger', 'Settlement', 'proveInvalidLeaf', [c.header, c.batch.leaves[0], c.batch.proof(0)])
      const s = await world.read.staking.read.stakeOf([world.actors.w1.address])
      assert.equal(s.pending, STAKE / 2n)
      await increaseTime(world, PARAMS.unbondingPeriod)
      await send(world, 'w1', 'WorkerStaking', 'withdraw', [])
      assert.ok(await owed(world, 'challenger') > 0n)
    })
  })
})
