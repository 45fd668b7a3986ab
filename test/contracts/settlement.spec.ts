import assert from 'node:assert/strict'
import { encodeAbiParameters, keccak256, parseEventLogs, toHex, zeroAddress, type Hex } from 'viem'
import { fromLeaves, settlementAbi, type SettlementLeaf } from '../../contracts/abi/index.ts'
import { reentrantReceiverAbi } from '../../contracts/abi/test-abis.ts'
import { signReceipt, signTicket } from '../../protocol/eip712.ts'
import {
  ETHER, PARAMS, commit, deployRaw, expectRevertAny, endEpoch, increaseTime, newJobId, owed, revertTo, send, sendReverts, setup, signedJob, snapshot,
  type ActorName, type CommittedBatch, type SignedJob, type World, STAKE, assertHonestKeptStake,
  unknownHeader, batchState
} from './fixture.ts'

const BOND = PARAMS.minBatchBond

describe('contracts: Settlement', function () {
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

  async function jobs (worker: ActorName, n: number, epoch: bigint, extra: Partial<Parameters<typeof signedJob>[1]> = {}): Promise<SignedJob[]> {
    const out: SignedJob[] = []
    for (let i = 0; i < n; i++) out.push(await signedJob(world, { worker, epoch, fee: ETHER / 100n * BigInt(i + 1), ...extra }))
    return out
  }

  async function honestBatch (worker: ActorName = 'w1', n = 4): Promise<{ c: CommittedBatch, js: SignedJob[] }> {
    const epoch = await world.read.settlement.read.currentEpoch()
    const js = await jobs(worker, n, epoch)
    await endEpoch(world)
    const c = await commit(world, worker, epoch, js.map(j => j.item))
    return { c, js }
  }

  async function unknownBatchId (): Promise<Hex> {
    const h = unknownHeader(world)
    return await world.read.settlement.read.batchIdOf([h.worker, h.projectId, h.epoch, h.gateway])
  }

  async function stakeOf (who: ActorName): Promise<bigint> {
    const s = await world.read.staking.read.stakeOf([world.actors[who].address])
    return s.amount + s.pending
  }

  async function assertVoided (c: CommittedBatch, fault: number, challenger: ActorName, receipt: { logs: any[] }, alsoOwed = 0n): Promise<void> {
    const b = await batchState(world, c.header)
    assert.equal(b.status, 3)
    const [ev] = parseEventLogs({ abi: settlementAbi, logs: receipt.logs, eventName: 'BatchVoided' })
    assert.equal(ev.args.fault, fault)
    assert.equal(ev.args.challenger, world.actors[challenger].address)
    const slashed = STAKE * BigInt(PARAMS.slashBps) / 10_000n
    assert.equal(ev.args.slashed, slashed)
    assert.equal(await stakeOf(c.worker), STAKE - slashed)
    const forfeited = slashed + c.header.bond
    assert.equal(await owed(world, challenger), alsoOwed + forfeited * BigInt(PARAMS.challengerShareBps) / 10_000n)
  }

  it('commits a batch after its epoch, holds the total, and pays total + bond after the challenge window', async () => {
    honest = ['w1']
    const escrow0 = await world.read.settlement.read.escrowOf([world.projectId])
    const { c } = await honestBatch('w1', 4)
    const total = c.batch.total
    assert.equal(total, ETHER / 100n * 10n)
    assert.equal(await world.read.settlement.read.escrowOf([world.projectId]), escrow0 - total)
    await sendReverts(world, 'stranger', 'Settlement', 'commitBatches', [[], [c.header]], 'SettlementChallengeWindowOpen')
    await increaseTime(world, PARAMS.challengeWindow)
    const r = await send(world, 'stranger', 'Settlement', 'commitBatches', [[], [c.header]])
    const [ev] = parseEventLogs({ abi: settlementAbi, logs: r.logs, eventName: 'BatchFinalized' })
    assert.equal(ev.args.paid, total)
    assert.equal(await owed(world, 'w1'), total + BOND)
    const before = await world.publicClient.getBalance({ address: world.actors.w1.address })
    const wr = await send(world, 'w1', 'Settlement', 'withdraw', [])
    const after = await world.publicClient.getBalance({ address: world.actors.w1.address })
    assert.equal(after - before + wr.gasUsed * wr.effectiveGasPrice, total + BOND)
    assert.equal(await owed(world, 'w1'), 0n)
  })

  it('lets the owner withdraw escrow after one epoch plus the commit window', async () => {
    await send(world, 'owner', 'Settlement', 'requestEscrowWithdrawal', [world.projectId, 10n * ETHER])
    const [, unlockAt] = await world.read.settlement.read.escrowWithdrawalOf([world.projectId])
    await sendReverts(world, 'owner', 'Settlement', 'withdrawEscrow', [world.projectId], 'SettlementEscrowLocked', [unlockAt])
    await increaseTime(world, PARAMS.epochLength + PARAMS.commitWindow)
    await send(world, 'owner', 'Settlement', 'withdrawEscrow', [world.projectId])
    assert.equal(await owed(world, 'owner'), 10n * ETHER)
    assert.equal(await world.read.settlement.read.escrowOf([world.projectId]), 990n * ETHER)
  })

  it('charges each gateway\'s per-epoch allowance', async () => {
    await send(world, 'owner', 'Settlement', 'setGatewayAllowance', [world.projectId, world.actors.gateway.address, ETHER / 100n * 8n])
    const epoch = await world.read.settlement.read.currentEpoch()
    const a = await jobs('w1', 2, epoch) // 0.01 + 0.02
    const b = await jobs('w2', 3, epoch) // 0.06
    await endEpoch(world)
    await commit(world, 'w1', epoch, a.map(j => j.item))
    await expectAllowance(world, 'w2', epoch, b)
  })

  async function expectAllowance (w: World, worker: ActorName, epoch: bigint, js: SignedJob[]): Promise<void> {
    const { buildSettlementBatch } = await import('../../contracts/abi/index.ts')
    const batch = buildSettlementBatch(js.map(j => j.item))
    await sendReverts(w, worker, 'Settlement', 'commitBatch', [w.projectId, epoch, w.actors.gateway.address, batch.root, batch.count, batch.total, '0x01'], 'SettlementAllowanceExceeded', [batch.total, ETHER / 100n * 5n], BOND)
    // the next epoch has a fresh allowance
    const next = await w.read.settlement.read.currentEpoch()
    const later = await Promise.all(js.map(async (_, i) => await signedJob(w, { worker, epoch: next, fee: ETHER / 100n * BigInt(i + 1) })))
    await endEpoch(w)
    await commit(w, worker, next, later.map(j => j.item))
  }

  describe('reverts', () => {
    it('deposit: SettlementZeroAmount, SettlementUnknownProject', async () => {
      await sendReverts(world, 'owner', 'Settlement', 'deposit', [world.projectId], 'SettlementZeroAmount', [], 0n)
      const unknown = keccak256('0x99')
      await sendReverts(world, 'owner', 'Settlement', 'deposit', [unknown], 'SettlementUnknownProject', [unknown], 1n)
    })
    it('setGatewayAllowance: SettlementUnknownProject, SettlementNotProjectOwner, SettlementInvalidGateway', async () => {
      const unknown = keccak256('0x99')
      await sendReverts(world, 'owner', 'Settlement', 'setGatewayAllowance', [unknown, world.actors.gateway.address, 1n], 'SettlementUnknownProject', [unknown])
      await sendReverts(world, 'gateway', 'Settlement', 'setGatewayAllowance', [world.projectId, world.actors.gateway.address, 1n], 'SettlementNotProjectOwner', [world.projectId, world.actors.gateway.address])
      await sendReverts(world, 'owner', 'Settlement', 'setGatewayAllowance', [world.projectId, zeroAddress, 1n], 'SettlementInvalidGateway', [zeroAddress])
    })
    it('requestEscrowWithdrawal / withdrawEscrow: owner only, SettlementZeroAmount, SettlementNoWithdrawalRequested', async () => {
      await sendReverts(world, 'w1', 'Settlement', 'requestEscrowWithdrawal', [world.projectId, 1n], 'SettlementNotProjectOwner')
      await sendReverts(world, 'owner', 'Settlement', 'requestEscrowWithdrawal', [world.projectId, 0n], 'SettlementZeroAmount')
      await sendReverts(world, 'owner', 'Settlement', 'requestEscrowWithdrawal', [keccak256('0x99'), 1n], 'SettlementUnknownProject')
      await sendReverts(world, 'w1', 'Settlement', 'withdrawEscrow', [world.projectId], 'SettlementNotProjectOwner')
      await sendReverts(world, 'owner', 'Settlement', 'withdrawEscrow', [world.projectId], 'SettlementNoWithdrawalRequested', [world.projectId])
    })
    it('chargeEscrow / refundEscrow / setCoordinator: SettlementUnauthorized; setCoordinator twice: SettlementInvalidParams', async () => {
      await sendReverts(world, 'owner', 'Settlement', 'chargeEscrow', [world.projectId, world.actors.owner.address, 1n], 'SettlementUnauthorized', [world.actors.owner.address])
      await sendReverts(world, 'owner', 'Settlement', 'refundEscrow', [world.projectId], 'SettlementUnauthorized', [world.actors.owner.address], 1n)
      await sendReverts(world, 'owner', 'Settlement', 'setCoordinator', [world.actors.owner.address], 'SettlementUnauthorized', [world.actors.owner.address])
      await sendReverts(world, 'deployer', 'Settlement', 'setCoordinator', [world.actors.owner.address], 'SettlementInvalidParams')
    })
    it('constructor: SettlementInvalidParams when unbonding is not longer than epoch + 3 × commit + challenge windows', async () => {
      const staking = await deployRaw(world, 'w3', 'WorkerStaking', [ETHER, ETHER, 100n])
      const params = { epochLength: 40n, commitWindow: 10n, challengeWindow: 30n, minBatchBond: 0n, slashBps: 1, challengerShareBps: 1, disagreementQuorum: 1, treasury: world.actors.w3.address }
      await expectRevertAny(deployRaw(world, 'w3', 'Settlement', [world.addresses.FunctionRegistry, staking, params]), 'SettlementInvalidParams')
      await expectRevertAny(deployRaw(world, 'w3', 'Settlement', [world.addresses.FunctionRegistry, world.addresses.WorkerStaking, { ...params, challengeWindow: 29n, slashBps: 10_001 }]), 'SettlementInvalidParams')
      await deployRaw(world, 'w3', 'Settlement', [world.addresses.FunctionRegistry, staking, { ...params, challengeWindow: 29n }])
    })
    it('commitBatch: SettlementNotStakedWorker, SettlementEpochNotCommittable, SettlementEmptyBatch, SettlementBondTooSmall', async () => {
      const epoch = await world.read.settlement.read.currentEpoch()
      const gw = world.actors.gateway.address
      const root = keccak256('0x01')
      await sendReverts(world, 'stranger', 'Settlement', 'commitBatch', [world.projectId, epoch, gw, root, 1, 1n, '0x01'], 'SettlementNotStakedWorker', [world.actors.stranger.address], BOND)
      await sendReverts(world, 'w1', 'Settlement', 'commitBatch', [world.projectId, epoch, gw, root, 1, 1n, '0x01'], 'SettlementEpochNotCommittable', [epoch, epoch], BOND)
      await endEpoch(world)
      await sendReverts(world, 'w1', 'Settlement', 'commitBatch', [world.projectId, epoch + 5n, gw, root, 1, 1n, '0x01'], 'SettlementEpochNotCommittable', [epoch + 5n, epoch + 1n], BOND)
      await sendReverts(world, 'w1', 'Settlement', 'commitBatch', [world.projectId, epoch, gw, root, 0, 1n, '0x01'], 'SettlementEmptyBatch', [], BOND)
      await sendReverts(world, 'w1', 'Settlement', 'commitBatch', [world.projectId, epoch, gw, root, 1, 0n, '0x01'], 'SettlementEmptyBatch', [], BOND)
      await sendReverts(world, 'w1', 'Settlement', 'commitBatch', [world.projectId, epoch, gw, root, 1, 1n, '0x'], 'SettlementEmptyBatch', [], BOND)
      await sendReverts(world, 'w1', 'Settlement', 'commitBatch', [world.projectId, epoch, gw, root, 1, 1n, '0x01'], 'SettlementBondTooSmall', [BOND - 1n, BOND], BOND - 1n)
      await increaseTime(world, PARAMS.commitWindow)
      await sendReverts(world, 'w1', 'Settlement', 'commitBatch', [world.projectId, epoch, gw, root, 1, 1n, '0x01'], 'SettlementEpochNotCommittable', [epoch, epoch + 6n], BOND)
    })
    it('commitBatch: SettlementBatchExists, SettlementAllowanceExceeded, SettlementInsufficientEscrow', async () => {
      const epoch = await world.read.settlement.read.currentEpoch()
      const root = keccak256('0x01')
      await endEpoch(world)
      await send(world, 'w1', 'Settlement', 'commitBatch', [world.projectId, epoch, world.actors.gateway.address, root, 1, 1n, '0x01'], BOND)
      const id = await world.read.settlement.read.batchIdOf([world.actors.w1.address, world.projectId, epoch, world.actors.gateway.address])
      await sendReverts(world, 'w1', 'Settlement', 'commitBatch', [world.projectId, epoch, world.actors.gateway.address, root, 1, 1n, '0x01'], 'SettlementBatchExists', [id], BOND)
      // a gateway the owner never authorised
      await sendReverts(world, 'w1', 'Settlement', 'commitBatch', [world.projectId, epoch, world.actors.stranger.address, root, 1, 1n, '0x01'], 'SettlementAllowanceExceeded', [1n, 0n], BOND)
      await sendReverts(world, 'w2', 'Settlement', 'commitBatch', [world.projectId, epoch, world.actors.gateway.address, root, 1, 100n * ETHER, '0x01'], 'SettlementAllowanceExceeded', [100n * ETHER, 100n * ETHER - 1n], BOND)
      await send(world, 'owner', 'Settlement', 'setGatewayAllowance', [world.projectId, world.actors.gateway2.address, 10_000n * ETHER])
      await sendReverts(world, 'w2', 'Settlement', 'commitBatch', [world.projectId, epoch, world.actors.gateway2.address, root, 1, 2_000n * ETHER, '0x01'], 'SettlementInsufficientEscrow', [2_000n * ETHER, 1_000n * ETHER - 1n], BOND)
    })
    it('finalization (commitBatches due): SettlementUnknownBatch, SettlementBatchNotCommitted (finalized, voided), SettlementChallengeWindowOpen', async () => {
      const unknownId = await unknownBatchId()
      await sendReverts(world, 'w1', 'Settlement', 'commitBatches', [[], [unknownHeader(world)]], 'SettlementUnknownBatch', [unknownId])
      const { c } = await honestBatch('w1', 1)
      const b = await batchState(world, c.header)
      await sendReverts(world, 'w1', 'Settlement', 'commitBatches', [[], [c.header]], 'SettlementChallengeWindowOpen', [b.committedAt + PARAMS.challengeWindow])
      await increaseTime(world, PARAMS.challengeWindow)
      await send(world, 'stranger', 'Settlement', 'commitBatches', [[], [c.header]])
      await sendReverts(world, 'w1', 'Settlement', 'commitBatches', [[], [c.header]], 'SettlementBatchNotCommitted', [c.batchId])
    })
    it('withdraw: SettlementNothingToWithdraw, SettlementTransferFailed', async () => {
      await sendReverts(world, 'w1', 'Settlement', 'withdraw', [], 'SettlementNothingToWithdraw')
      // the owner of a project is a contract that rejects payment
      const receiver = await deployRaw(world, 'w5', 'ReentrantReceiver', [])
      const rc = { address: receiver, abi: reentrantReceiverAbi }
      const { encodeFunctionData } = await import('viem')
      await send(world, 'owner', 'FunctionRegistry', 'transferProject', [world.projectId, receiver])
      const call = (fn: any, args: any[]) => encodeFunctionData({ abi: [...settlementAbi, ...registryAcceptAbi], functionName: fn, args } as any)
      await send(world, 'w5', rc, 'execute', [world.addresses.FunctionRegistry, 0n, call('acceptProject', [world.projectId])])
      await send(world, 'w5', rc, 'execute', [world.addresses.Settlement, 0n, call('requestEscrowWithdrawal', [world.projectId, ETHER])])
      await increaseTime(world, PARAMS.epochLength + PARAMS.commitWindow)
      await send(world, 'w5', rc, 'execute', [world.addresses.Settlement, 0n, call('withdrawEscrow', [world.projectId])])
      await send(world, 'w5', rc, 'setRejectPayments', [true])
      await sendReverts(world, 'w5', rc, 'execute', [world.addresses.Settlement, 0n, call('withdraw', [])], 'SettlementTransferFailed', [receiver, ETHER])
    })
  })

  describe('fault proofs', () => {
    it('proveInvalidLeaf: SettlementNoFault for an honest leaf, SettlementInvalidProof, SettlementUnknownBatch', async () => {
      honest = ['w1']
      const { c } = await honestBatch('w1', 4)
      for (let i = 0; i < 4; i++) {
        await sendReverts(world, 'challenger', 'Settlement', 'proveInvalidLeaf', [c.header, c.batch.leaves[i], c.batch.proof(i)], 'SettlementNoFault')
      }
      await sendReverts(world, 'challenger', 'Settlement', 'proveInvalidLeaf', [c.header, { ...c.batch.leaves[1], fee: 1n }, c.batch.proof(1)], 'SettlementInvalidProof')
      await sendReverts(world, 'challenger', 'Settlement', 'proveInvalidLeaf', [unknownHeader(world), c.batch.leaves[1], c.batch.proof(1)], 'SettlementUnknownBatch', [await unknownBatchId()])
    })

    it('voids a batch with a ticket signed by an unauthorised key, and pays the challenger', async () => {
      honest = ['w2']
      const epoch = await world.read.settlement.read.currentEpoch()
      const good = await jobs('w1', 2, epoch)
      const forged = await signedJob(world, { worker: 'w1', epoch, gateway: 'stranger', fee: ETHER / 100n })
      await endEpoch(world)
      const c = await commit(world, 'w1', epoch, [good[0].item, forged.item, good[1].item])
      const escrowBefore = await world.read.settlement.read.escrowOf([world.projectId])
      const r = await send(world, 'challenger', 'Settlement', 'proveInvalidLeaf', [c.header, c.batch.leaves[1], c.batch.proof(1)])
      await assertVoided(c, 1, 'challenger', r)
      assert.equal(await world.read.settlement.read.escrowOf([world.projectId]), escrowBefore + c.batch.total)
      await sendReverts(world, 'challenger', 'Settlement', 'proveInvalidLeaf', [c.header, c.batch.leaves[1], c.batch.proof(1)], 'SettlementBatchNotChallengeable', [c.batchId])
      await sendReverts(world, 'w1', 'Settlement', 'commitBatches', [[], [c.header]], 'SettlementBatchNotCommitted', [c.batchId])
    })

    it('voids a batch claiming a ticket for another project\'s function, or for another worker or epoch', async () => {
      const epoch = await world.read.settlement.read.currentEpoch()
      const otherProject = await signedJob(world, { worker: 'w1', epoch, functionId: world.otherFunctionId })
      const otherWorker = await signedJob(world, { worker: 'w2', epoch })
      const otherEpoch = await signedJob(world, { worker: 'w1', epoch: epoch + 1n })
      await endEpoch(world)
      for (const [worker, bad] of [['w1', otherProject], ['w3', otherWorker], ['w4', otherEpoch]] as const) {
        const c = await commit(world, worker, epoch, [bad.item])
        const r = await send(world, 'challenger', 'Settlement', 'proveInvalidLeaf', [c.header, c.batch.leaves[0], c.batch.proof(0)])
        const [ev] = parseEventLogs({ abi: settlementAbi, logs: r.logs, eventName: 'BatchVoided' })
        assert.equal(ev.args.fault, 1)
      }
    })

    it('voids an inflated total: last leaf\'s prefix sum differs from the committed total', async () => {
      const epoch = await world.read.settlement.read.currentEpoch()
      const js = await jobs('w1', 3, epoch)
      await endEpoch(world)
      const { buildSettlementBatch } = await import('../../contracts/abi/index.ts')
      const honestTree = buildSettlementBatch(js.map(j => j.item))
      const inflated = fromLeaves(honestTree.leaves, honestTree.total * 10n)
      const c = await commit(world, 'w1', epoch, inflated)
      for (const i of [0, 1]) await sendReverts(world, 'challenger', 'Settlement', 'proveInvalidLeaf', [c.header, c.batch.leaves[i], c.batch.proof(i)], 'SettlementNoFault')
      const r = await send(world, 'challenger', 'Settlement', 'proveInvalidLeaf', [c.header, c.batch.leaves[2], c.batch.proof(2)])
      await assertVoided(c, 3, 'challenger', r)
    })

    it('voids a leaf beyond the committed count, and a first leaf whose prefix sum is not its fee', async () => {
      const epoch = await world.read.settlement.read.currentEpoch()
      const js = await jobs('w1', 3, epoch)
      const js2 = await jobs('w2', 2, epoch)
      await endEpoch(world)
      const { buildSettlementBatch } = await import('../../contracts/abi/index.ts')
      const t = buildSettlementBatch(js.map(j => j.item))
      const hidden = fromLeaves(t.leaves, t.leaves[1].cumulativeFee)
      const c = await commit(world, 'w1', epoch, { ...hidden, count: 2 })
      const r = await send(world, 'challenger', 'Settlement', 'proveInvalidLeaf', [c.header, c.batch.leaves[2], c.batch.proof(2)])
      await assertVoided(c, 2, 'challenger', r)
      const t2 = buildSettlementBatch(js2.map(j => j.item))
      const leaves: SettlementLeaf[] = t2.leaves.map((l, i) => ({ ...l, cumulativeFee: l.cumulativeFee + (i === 0 ? 5n : 5n) }))
      const c2 = await commit(world, 'w2', epoch, fromLeaves(leaves))
      const r2 = await send(world, 'stranger', 'Settlement', 'proveInvalidLeaf', [c2.header, c2.batch.leaves[0], c2.batch.proof(0)])
      await assertVoided(c2, 3, 'stranger', r2)
    })

    it('proveBrokenSum: voids a batch whose adjacent prefix sums do not add up; SettlementNotAdjacent, SettlementNoFault', async () => {
      honest = ['w2']
      const epoch = await world.read.settlement.read.currentEpoch()
      const js = await jobs('w1', 4, epoch)
      await endEpoch(world)
      const { buildSettlementBatch } = await import('../../contracts/abi/index.ts')
      const t = buildSettlementBatch(js.map(j => j.item))
      // leaf 2 skips ahead by 1 ETH; leaf 3 is consistent with leaf 2, so the total matches the last leaf
      const leaves = t.leaves.map((l, i) => i >= 2 ? { ...l, cumulativeFee: l.cumulativeFee + ETHER } : l)
      const c = await commit(world, 'w1', epoch, fromLeaves(leaves))
      const L = c.batch.leaves
      const P = (i: number) => c.batch.proof(i)
      await sendReverts(world, 'challenger', 'Settlement', 'proveInvalidLeaf', [c.header, L[3], P(3)], 'SettlementNoFault')
      await sendReverts(world, 'challenger', 'Settlement', 'proveBrokenSum', [c.header, L[0], P(0), L[2], P(2)], 'SettlementNotAdjacent', [0n, 2n])
      await sendReverts(world, 'challenger', 'Settlement', 'proveBrokenSum', [c.header, L[0], P(0), L[0], P(0)], 'SettlementNotAdjacent', [0n, 0n])
      await sendReverts(world, 'challenger', 'Settlement', 'proveBrokenSum', [c.header, L[0], P(0), L[1], P(1)], 'SettlementNoFault')
      await sendReverts(world, 'challenger', 'Settlement', 'proveBrokenSum', [c.header, L[2], P(2), L[3], P(3)], 'SettlementNoFault')
      await sendReverts(world, 'challenger', 'Settlement', 'proveBrokenSum', [c.header, L[1], P(1), L[2], P(0)], 'SettlementInvalidProof')
      const r = await send(world, 'challenger', 'Settlement', 'proveBrokenSum', [c.header, L[1], P(1), L[2], P(2)])
      await assertVoided(c, 3, 'challenger', r)
    })

    it('disputeDuplicateJob: the same ticket twice in one batch is a double claim (fault)', async () => {
      const epoch = await world.read.settlement.read.currentEpoch()
      const js = await jobs('w1', 2, epoch)
      await endEpoch(world)
      const c = await commit(world, 'w1', epoch, [js[0].item, js[1].item, js[0].item])
      const L = c.batch.leaves
      const r = await send(world, 'challenger', 'Settlement', 'disputeDuplicateJob', [c.header, L[0], c.batch.proof(0), c.header, L[2], c.batch.proof(2)])
      await assertVoided(c, 4, 'challenger', r)
    })

    it('disputeDuplicateJob: a retried job (attempt 1 to another worker) excludes the lower attempt without slashing anyone', async () => {
      honest = ['w1', 'w2']
      const epoch = await world.read.settlement.read.currentEpoch()
      const jobId = newJobId()
      const first = await signedJob(world, { worker: 'w1', epoch, jobId, attempt: 0, fee: ETHER / 10n })
      const retry = await signedJob(world, { worker: 'w2', epoch, jobId, attempt: 1, fee: ETHER / 10n })
      const other = await jobs('w1', 1, epoch)
      await endEpoch(world)
      const a = await commit(world, 'w2', epoch, [retry.item])
      const b = await commit(world, 'w1', epoch, [other[0].item, first.item])
      const escrow0 = await world.read.settlement.read.escrowOf([world.projectId])
      // the lower attempt cannot push out the higher one
      await sendReverts(world, 'owner', 'Settlement', 'disputeDuplicateJob', [b.header, b.batch.leaves[1], b.batch.proof(1), a.header, a.batch.leaves[0], a.batch.proof(0)], 'SettlementNoFault')
      const r = await send(world, 'owner', 'Settlement', 'disputeDuplicateJob', [a.header, a.batch.leaves[0], a.batch.proof(0), b.header, b.batch.leaves[1], b.batch.proof(1)])
      const [ev] = parseEventLogs({ abi: settlementAbi, logs: r.logs, eventName: 'LeafExcluded' })
      assert.equal(ev.args.fee, ETHER / 10n)
      assert.equal(await world.read.settlement.read.escrowOf([world.projectId]), escrow0 + ETHER / 10n)
      assert.equal(await world.read.settlement.read.isExcluded([b.batchId, 1n]), true)
      await sendReverts(world, 'owner', 'Settlement', 'disputeDuplicateJob', [a.header, a.batch.leaves[0], a.batch.proof(0), b.header, b.batch.leaves[1], b.batch.proof(1)], 'SettlementLeafExcluded', [b.batchId, 1n])
      await increaseTime(world, PARAMS.challengeWindow)
      await send(world, 'stranger', 'Settlement', 'commitBatches', [[], [b.header]])
      await send(world, 'stranger', 'Settlement', 'commitBatches', [[], [a.header]])
      // the client paid the job once
      assert.equal(await owed(world, 'w1'), other[0].ticket.fee + BOND)
      assert.equal(await owed(world, 'w2'), ETHER / 10n + BOND)
    })

    it('disputeDuplicateJob: a leaf of a finalized batch outranks a later claim of the same job', async () => {
      honest = ['w1', 'w2']
      const e0 = await world.read.settlement.read.currentEpoch()
      const jobId = newJobId()
      const first = await signedJob(world, { worker: 'w1', epoch: e0, jobId, attempt: 0 })
      await endEpoch(world)
      const a = await commit(world, 'w1', e0, [first.item])
      await increaseTime(world, PARAMS.challengeWindow)
      await send(world, 'stranger', 'Settlement', 'commitBatches', [[], [a.header]])
      const e1 = await world.read.settlement.read.currentEpoch()
      const late = await signedJob(world, { worker: 'w2', epoch: e1, jobId, attempt: 0 })
      await endEpoch(world)
      const b = await commit(world, 'w2', e1, [late.item])
      await sendReverts(world, 'owner', 'Settlement', 'disputeDuplicateJob', [b.header, b.batch.leaves[0], b.batch.proof(0), a.header, a.batch.leaves[0], a.batch.proof(0)], 'SettlementBatchNotChallengeable', [a.batchId])
      await send(world, 'owner', 'Settlement', 'disputeDuplicateJob', [a.header, a.batch.leaves[0], a.batch.proof(0), b.header, b.batch.leaves[0], b.batch.proof(0)])
      assert.equal(await world.read.settlement.read.isExcluded([b.batchId, 0n]), true)
    })

    it('disputeDuplicateJob reverts: SettlementNotDuplicate, SettlementUnknownBatch, SettlementInvalidTicket, SettlementLeafExcluded (voided keeper)', async () => {
      const epoch = await world.read.settlement.read.currentEpoch()
      const jobId = newJobId()
      const x = await signedJob(world, { worker: 'w1', epoch, jobId, attempt: 0 })
      const y = await signedJob(world, { worker: 'w2', epoch, jobId, attempt: 1 })
      const z = await signedJob(world, { worker: 'w3', epoch, jobId, attempt: 2, gateway: 'gateway2' })
      const forged = await signedJob(world, { worker: 'w4', epoch, jobId, attempt: 3, gateway: 'stranger' })
      const other = await jobs('w1', 1, epoch)
      const v = await signedJob(world, { worker: 'w5', epoch, jobId, attempt: 9 })
      const vForged = await signedJob(world, { worker: 'w5', epoch, gateway: 'stranger' })
      await endEpoch(world)
      const a = await commit(world, 'w1', epoch, [x.item, other[0].item])
      const vb = await commit(world, 'w5', epoch, [v.item, vForged.item])
      const b = await commit(world, 'w2', epoch, [y.item])
      const c = await commit(world, 'w3', epoch, [z.item], { gateway: 'gateway2' })
      const f = await commit(world, 'w4', epoch, [forged.item])
      const A = [a.header, a.batch.leaves[0], a.batch.proof(0)] as const
      const B = [b.header, b.batch.leaves[0], b.batch.proof(0)] as const
      await sendReverts(world, 'owner', 'Settlement', 'disputeDuplicateJob', [...A, a.header, a.batch.leaves[1], a.batch.proof(1)], 'SettlementNotDuplicate')
      await sendReverts(world, 'owner', 'Settlement', 'disputeDuplicateJob', [...A, ...A], 'SettlementNotDuplicate')
      await sendReverts(world, 'owner', 'Settlement', 'disputeDuplicateJob', [c.header, c.batch.leaves[0], c.batch.proof(0), ...A], 'SettlementNotDuplicate')
      await sendReverts(world, 'owner', 'Settlement', 'disputeDuplicateJob', [unknownHeader(world), b.batch.leaves[0], b.batch.proof(0), ...A], 'SettlementUnknownBatch', [await unknownBatchId()])
      // a forged keeper never pushes out a genuine leaf
      await sendReverts(world, 'owner', 'Settlement', 'disputeDuplicateJob', [f.header, f.batch.leaves[0], f.batch.proof(0), ...B], 'SettlementInvalidTicket', [f.batchId, 0n])
      await sendReverts(world, 'owner', 'Settlement', 'disputeDuplicateJob', [...B, f.header, f.batch.leaves[0], f.batch.proof(0)], 'SettlementInvalidTicket', [f.batchId, 0n])
      // a voided batch's leaf is no keeper
      await send(world, 'challenger', 'Settlement', 'proveInvalidLeaf', [f.header, f.batch.leaves[0], f.batch.proof(0)])
      await send(world, 'challenger', 'Settlement', 'proveInvalidLeaf', [vb.header, vb.batch.leaves[1], vb.batch.proof(1)])
      await sendReverts(world, 'owner', 'Settlement', 'disputeDuplicateJob', [vb.header, vb.batch.leaves[0], vb.batch.proof(0), ...B], 'SettlementLeafExcluded', [vb.batchId, 0n])
      await send(world, 'owner', 'Settlement', 'disputeDuplicateJob', [...B, ...A])
      await sendReverts(world, 'owner', 'Settlement', 'disputeDuplicateJob', [...A, ...B], 'SettlementLeafExcluded', [a.batchId, 0n])
    })

    it('disputeDuplicateJob reverts: SettlementLeafOutOfRange, SettlementExclusionExceedsTotal (exclusions never refund more than a batch holds)', async () => {
      const epoch = await world.read.settlement.read.currentEpoch()
      const fee = ETHER / 100n
      const [p, q, y] = [newJobId(), newJobId(), newJobId()]
      const keepP = await signedJob(world, { worker: 'w1', epoch, jobId: p, attempt: 1, fee })
      const keepQ = await signedJob(world, { worker: 'w1', epoch, jobId: q, attempt: 1, fee })
      const keepY = await signedJob(world, { worker: 'w1', epoch, jobId: y, attempt: 1, fee })
      const oldP = await signedJob(world, { worker: 'w2', epoch, jobId: p, attempt: 0, fee: 5n * fee })
      const oldQ = await signedJob(world, { worker: 'w4', epoch, jobId: q, attempt: 0, fee })
      const x = await signedJob(world, { worker: 'w3', epoch, fee })
      const oldY = await signedJob(world, { worker: 'w3', epoch, jobId: y, attempt: 0, fee })
      await endEpoch(world)
      const { buildSettlementBatch } = await import('../../contracts/abi/index.ts')
      const a = await commit(world, 'w1', epoch, [keepP.item, keepQ.item, keepY.item])
      // w2: one leaf whose fee (5) is more than its prefix sum and the total (1): a broken batch,
      // provable with proveInvalidLeaf, which an exclusion must not drain
      const one = buildSettlementBatch([oldP.item])
      const b = await commit(world, 'w2', epoch, fromLeaves([{ ...one.leaves[0], cumulativeFee: fee }]))
      const d = await commit(world, 'w4', epoch, [oldQ.item])
      // w3: a leaf beyond the count
      const three = buildSettlementBatch([x.item, oldY.item])
      const c = await commit(world, 'w3', epoch, { ...fromLeaves(three.leaves, fee), count: 1 })
      const A = (i: number) => [a.header, a.batch.leaves[i], a.batch.proof(i)] as const
      await sendReverts(world, 'owner', 'Settlement', 'disputeDuplicateJob', [...A(2), c.header, c.batch.leaves[1], c.batch.proof(1)], 'SettlementLeafOutOfRange', [c.batchId, 1n])
      await sendReverts(world, 'owner', 'Settlement', 'disputeDuplicateJob', [...A(0), b.header, b.batch.leaves[0], b.batch.proof(0)], 'SettlementExclusionExceedsTotal', [b.batchId])
      await send(world, 'owner', 'Settlement', 'disputeDuplicateJob', [...A(1), d.header, d.batch.leaves[0], d.batch.proof(0)])
      assert.equal((await batchState(world, d.header)).excluded, fee)
      await send(world, 'challenger', 'Settlement', 'proveInvalidLeaf', [b.header, b.batch.leaves[0], b.batch.proof(0)])
    })

    it('proveEquivocation: voids a batch when its worker signed another output for the same job; SettlementNoFault, SettlementInvalidReceiptSignature', async () => {
      const epoch = await world.read.settlement.read.currentEpoch()
      const js = await jobs('w1', 2, epoch)
      await endEpoch(world)
      const c = await commit(world, 'w1', epoch, js.map(j => j.item))
      const other = keccak256(toHex('another output'))
      const sameSig = await signReceipt(world.actors.w1.account, world.domain, js[1].receipt)
      await sendReverts(world, 'challenger', 'Settlement', 'proveEquivocation', [c.header, c.batch.leaves[1], c.batch.proof(1), js[1].receipt.outputHash, sameSig], 'SettlementNoFault')
      const byOther = await signReceipt(world.actors.w2.account, world.domain, { ...js[1].receipt, outputHash: other })
      await sendReverts(world, 'challenger', 'Settlement', 'proveEquivocation', [c.header, c.batch.leaves[1], c.batch.proof(1), other, byOther], 'SettlementInvalidReceiptSignature', [0n])
      // another attempt or another job is not equivocation
      const otherAttempt = await signReceipt(world.actors.w1.account, world.domain, { ...js[1].receipt, attempt: 1, outputHash: other })
      await sendReverts(world, 'challenger', 'Settlement', 'proveEquivocation', [c.header, c.batch.leaves[1], c.batch.proof(1), other, otherAttempt], 'SettlementInvalidReceiptSignature', [0n])
      const sig = await signReceipt(world.actors.w1.account, world.domain, { ...js[1].receipt, outputHash: other })
      const r = await send(world, 'challenger', 'Settlement', 'proveEquivocation', [c.header, c.batch.leaves[1], c.batch.proof(1), other, sig])
      await assertVoided(c, 5, 'challenger', r)
    })

    it('proveReceiptEquivocation: slashes a worker that signed two outputs for one ticket, once; every negative reverts', async () => {
      honest = ['w2']
      const epoch = await world.read.settlement.read.currentEpoch()
      const j = await signedJob(world, { worker: 'w1', epoch })
      const other = keccak256(toHex('other output'))
      const b = { ...j.receipt, outputHash: other }
      const sigB = await signReceipt(world.actors.w1.account, world.domain, b)
      const go = async (x: typeof b, sx: Hex, y: typeof b, sy: Hex, name: string, args?: unknown[]) => await sendReverts(world, 'challenger', 'Settlement', 'proveReceiptEquivocation', [j.ticket, j.ticketSignature, x, sx, y, sy], name, args)
      // the ticket must be signed by its gateway: a signature by anyone else (here the worker) proves nothing
      const wrongTicketSig = await signTicket(world.actors.w1.account, world.domain, j.ticket)
      await sendReverts(world, 'challenger', 'Settlement', 'proveReceiptEquivocation', [j.ticket, wrongTicketSig, j.receipt, j.receiptSignature, b, sigB], 'SettlementInvalidTicketSignature', [0n])
      // …and that gateway must be staked as a gateway now
      const s2 = await snapshot(world)
      await send(world, 'gateway', 'WorkerStaking', 'requestWithdrawal', [STAKE])
      await sendReverts(world, 'challenger', 'Settlement', 'proveReceiptEquivocation', [j.ticket, j.ticketSignature, j.receipt, j.receiptSignature, b, sigB], 'SettlementGatewayNotStaked', [world.actors.gateway.address])
      await revertTo(world, s2)
      // identical results are no equivocation
      await go(j.receipt, j.receiptSignature, j.receipt, j.receiptSignature, 'SettlementNoFault')
      // another attempt, another job, another input, another gateway, another worker: different tickets
      for (const change of [{ attempt: 1 }, { jobId: newJobId() }, { jobHash: keccak256('0x06') }, { deadline: 4_000_000_001n }, { inputHash: keccak256('0x05') }, { gateway: world.actors.gateway2.address }, { worker: world.actors.w2.address }]) {
        const c = { ...b, ...change }
        const who = c.worker === world.actors.w2.address ? world.actors.w2 : world.actors.w1
        await go(j.receipt, j.receiptSignature, c, await signReceipt(who.account, world.domain, c), 'SettlementNoFault')
      }
      // signed by a key that is not the receipt's worker, or under another domain, or high-s
      await go(j.receipt, j.receiptSignature, b, await signReceipt(world.actors.w2.account, world.domain, b), 'SettlementInvalidReceiptSignature', [1n])
      const { peerHostDomain } = await import('../../protocol/eip712.ts')
      await go(j.receipt, j.receiptSignature, b, await signReceipt(world.actors.w1.account, peerHostDomain(137, world.addresses.Settlement), b), 'SettlementInvalidReceiptSignature', [1n])
      await go(b, await signReceipt(world.actors.w2.account, world.domain, b), j.receipt, j.receiptSignature, 'SettlementInvalidReceiptSignature', [0n])
      const r = await send(world, 'challenger', 'Settlement', 'proveReceiptEquivocation', [j.ticket, j.ticketSignature, j.receipt, j.receiptSignature, b, sigB])
      const [ev] = parseEventLogs({ abi: settlementAbi, logs: r.logs, eventName: 'EquivocationProven' })
      const slashed = STAKE * BigInt(PARAMS.slashBps) / 10_000n
      assert.equal(ev.args.slashed, slashed)
      assert.equal(await stakeOf('w1'), STAKE - slashed)
      assert.equal(await owed(world, 'challenger'), slashed * BigInt(PARAMS.challengerShareBps) / 10_000n)
      // once: the same pair, the swapped pair, or a third output for the same ticket
      const key = keccak256(encodeAbiParameters([{ type: 'address' }, { type: 'address' }, { type: 'bytes32' }, { type: 'uint32' }], [world.actors.w1.address, world.actors.gateway.address, j.receipt.jobId, j.receipt.attempt]))
      await go(j.receipt, j.receiptSignature, b, sigB, 'SettlementAlreadyProven', [key])
      await go(b, sigB, j.receipt, j.receiptSignature, 'SettlementAlreadyProven', [key])
      const third = { ...b, outputHash: keccak256('0x0333') }
      await go(j.receipt, j.receiptSignature, third, await signReceipt(world.actors.w1.account, world.domain, third), 'SettlementAlreadyProven', [key])
    })

    it('proveDisagreement: voids a batch contradicted by a quorum of other staked workers; every negative case reverts', async () => {
      honest = ['w2', 'w3', 'w4']
      const epoch = await world.read.settlement.read.currentEpoch()
      const inputHash = keccak256(toHex('the input'))
      const right = keccak256(toHex('right'))
      const wrong = keccak256(toHex('wrong'))
      const bad = await signedJob(world, { worker: 'w1', epoch, inputHash, outputHash: wrong })
      const peers = await Promise.all((['w2', 'w3', 'w4'] as const).map(async w => await signedJob(world, { worker: w, epoch, inputHash, outputHash: right })))
      peers.sort((x, y) => x.receipt.worker.toLowerCase() < y.receipt.worker.toLowerCase() ? -1 : 1)
      await endEpoch(world)
      const c = await commit(world, 'w1', epoch, [bad.item])
      const leaf = c.batch.leaves[0]
      const proof = c.batch.proof(0)
      const R = peers.map(p => p.receipt)
      const S = peers.map(p => p.receiptSignature)
      const T = peers.map(p => p.ticketSignature)
      const call = async (receipts: any[], sigs: Hex[], name: string, args?: unknown[], tsigs: Hex[] = T.slice(0, receipts.length)) => await sendReverts(world, 'challenger', 'Settlement', 'proveDisagreement', [c.header, leaf, proof, receipts, sigs, tsigs], name, args)
      await call(R, S.slice(0, 2), 'SettlementLengthMismatch')
      await call(R.slice(0, 2), S.slice(0, 2), 'SettlementLengthMismatch', undefined, T.slice(0, 1))
      // each receipt needs the ticket it answers, signed by the batch's gateway
      const forgedTicketSig = await signTicket(world.actors.stranger.account, world.domain, { ...peers[1].ticket })
      await call(R.slice(0, 2), S.slice(0, 2), 'SettlementInvalidTicketSignature', [1n], [T[0], forgedTicketSig])
      await call(R.slice(0, 2), S.slice(0, 2), 'SettlementInvalidTicketSignature', [0n], [T[1], T[0]])
      // receipts for tickets of another gateway are another job
      const viaOther = await Promise.all((['w2', 'w3'] as const).map(async w => await signedJob(world, { worker: w, epoch, inputHash, outputHash: right, gateway: 'gateway2' })))
      viaOther.sort((x, y) => x.receipt.worker.toLowerCase() < y.receipt.worker.toLowerCase() ? -1 : 1)
      await call(viaOther.map(p => p.receipt), viaOther.map(p => p.receiptSignature), 'SettlementReceiptMismatch', [0n], viaOther.map(p => p.ticketSignature))
      await call(R.slice(0, 1), S.slice(0, 1), 'SettlementQuorumTooSmall', [1n, 2n])
      await call([R[1], R[0]], [S[1], S[0]], 'SettlementSignersNotAscending', [1n], [T[1], T[0]])
      await call([R[0], R[0]], [S[0], S[0]], 'SettlementSignersNotAscending', [1n])
      await call([R[0], { ...R[1], inputHash: keccak256('0x01') }], [S[0], S[1]], 'SettlementReceiptMismatch', [1n])
      // another job of the same function and input (other env, options or bundle) is no disagreement
      await call([R[0], { ...R[1], jobHash: keccak256('0x01') }], [S[0], S[1]], 'SettlementReceiptMismatch', [1n])
      await call([R[0], { ...R[1], outputHash: keccak256('0x01') }], [S[0], S[1]], 'SettlementReceiptMismatch', [1n])
      await call([R[0], R[1]], [S[0], S[0]], 'SettlementInvalidReceiptSignature', [1n])
      // agreeing with the leaf is no disagreement
      const agree = await Promise.all(peers.slice(0, 2).map(async p => await signReceipt(world.actors[(['w2', 'w3', 'w4'] as const).find(w => world.actors[w].address === p.receipt.worker)!].account, world.domain, { ...p.receipt, outputHash: wrong })))
      await call(R.slice(0, 2).map(r => ({ ...r, outputHash: wrong })), agree, 'SettlementNoFault')
      // a signer without active stake does not count
      const unstaked = peers[0].receipt.worker
      const who = (['w2', 'w3', 'w4'] as const).find(w => world.actors[w].address === unstaked)!
      const s2 = await snapshot(world)
      await send(world, who, 'WorkerStaking', 'requestWithdrawal', [STAKE])
      await call(R.slice(0, 2), S.slice(0, 2), 'SettlementSignerNotStaked', [0n])
      await revertTo(world, s2)
      // the batch's gateway must be staked as a gateway
      const s3 = await snapshot(world)
      await send(world, 'gateway', 'WorkerStaking', 'requestWithdrawal', [STAKE])
      await call(R.slice(0, 2), S.slice(0, 2), 'SettlementGatewayNotStaked', [world.actors.gateway.address])
      await revertTo(world, s3)
      const r = await send(world, 'challenger', 'Settlement', 'proveDisagreement', [c.header, leaf, proof, R.slice(0, 2), S.slice(0, 2), T.slice(0, 2)])
      await assertVoided(c, 6, 'challenger', r)
    })

    it('data availability: a requested leaf must be published in time; the answer extends the window and pays the bond to the worker', async () => {
      honest = ['w1']
      const { c } = await honestBatch('w1', 4)
      const b0 = await batchState(world, c.header)
      await sendReverts(world, 'challenger', 'Settlement', 'requestLeaf', [c.header, 4n], 'SettlementLeafOutOfRange', [c.batchId, 4n], BOND)
      await sendReverts(world, 'challenger', 'Settlement', 'requestLeaf', [c.header, 3n], 'SettlementBondTooSmall', [BOND - 1n, BOND], BOND - 1n)
      await sendReverts(world, 'challenger', 'Settlement', 'requestLeaf', [unknownHeader(world), 3n], 'SettlementUnknownBatch', [await unknownBatchId()], BOND)
      await increaseTime(world, PARAMS.challengeWindow - 5n)
      const rq = await send(world, 'challenger', 'Settlement', 'requestLeaf', [c.header, 3n], BOND)
      const [ev] = parseEventLogs({ abi: settlementAbi, logs: rq.logs, eventName: 'LeafRequested' })
      await sendReverts(world, 'stranger', 'Settlement', 'requestLeaf', [c.header, 3n], 'SettlementLeafAlreadyRequested', [c.batchId, 3n], BOND)
      await sendReverts(world, 'stranger', 'Settlement', 'proveUnanswered', [c.header, 3n], 'SettlementAnswerWindowOpen', [ev.args.deadline])
      await sendReverts(world, 'stranger', 'Settlement', 'proveUnanswered', [c.header, 2n], 'SettlementNoLeafRequest', [c.batchId, 2n])
      await sendReverts(world, 'w1', 'Settlement', 'answerLeaf', [c.header, c.batch.leaves[2], c.batch.proof(2)], 'SettlementNoLeafRequest', [c.batchId, 2n])
      await sendReverts(world, 'w1', 'Settlement', 'answerLeaf', [c.header, { ...c.batch.leaves[3], fee: 1n }, c.batch.proof(3)], 'SettlementInvalidProof')
      await increaseTime(world, 10)
      // past the original window, the batch is still challengeable and cannot finalize while a request is open
      await sendReverts(world, 'w1', 'Settlement', 'commitBatches', [[], [c.header]], 'SettlementChallengeWindowOpen')
      await sendReverts(world, 'stranger', 'Settlement', 'requestLeaf', [c.header, 1n], 'SettlementBatchNotChallengeable', [c.batchId], BOND)
      const an = await send(world, 'stranger', 'Settlement', 'answerLeaf', [c.header, c.batch.leaves[3], c.batch.proof(3)])
      const [answered] = parseEventLogs({ abi: settlementAbi, logs: an.logs, eventName: 'LeafAnswered' })
      assert.equal(answered.args.leaf.cumulativeFee, c.batch.total)
      await sendReverts(world, 'w1', 'Settlement', 'answerLeaf', [c.header, c.batch.leaves[3], c.batch.proof(3)], 'SettlementNoLeafRequest', [c.batchId, 3n])
      assert.equal(await owed(world, 'w1'), BOND)
      await sendReverts(world, 'challenger', 'Settlement', 'proveInvalidLeaf', [c.header, c.batch.leaves[3], c.batch.proof(3)], 'SettlementNoFault')
      const b1 = await batchState(world, c.header)
      assert.equal(b1.extendedUntil, ev.args.deadline + PARAMS.commitWindow)
      await increaseTime(world, b1.extendedUntil - b0.committedAt - PARAMS.challengeWindow)
      await send(world, 'stranger', 'Settlement', 'commitBatches', [[], [c.header]])
      assert.equal(await owed(world, 'w1'), BOND + c.batch.total + BOND)
    })

    it('data availability: a withheld leaf voids the batch (fault 7) and pays the requester; late answers revert', async () => {
      honest = ['w2']
      const epoch = await world.read.settlement.read.currentEpoch()
      const js = await Promise.all([1n, 2n].map(async f => await signedJob(world, { worker: 'w1', epoch, fee: f * ETHER / 10n })))
      await endEpoch(world)
      const { buildSettlementBatch } = await import('../../contracts/abi/index.ts')
      // claims 1,000 requests worth 50 ETH but holds two real leaves
      const t = buildSettlementBatch(js.map(j => j.item))
      const c = await commit(world, 'w1', epoch, { ...fromLeaves(t.leaves, 50n * ETHER), count: 1000 })
      for (const i of [0, 1]) await sendReverts(world, 'challenger', 'Settlement', 'proveInvalidLeaf', [c.header, c.batch.leaves[i], c.batch.proof(i)], 'SettlementNoFault')
      await send(world, 'challenger', 'Settlement', 'requestLeaf', [c.header, 999n], BOND)
      await send(world, 'stranger', 'Settlement', 'requestLeaf', [c.header, 1n], BOND)
      await send(world, 'stranger', 'Settlement', 'requestLeaf', [c.header, 0n], BOND)
      await send(world, 'w1', 'Settlement', 'answerLeaf', [c.header, c.batch.leaves[1], c.batch.proof(1)])
      await increaseTime(world, PARAMS.commitWindow)
      const rq = await world.read.settlement.read.getLeafRequest([c.batchId, 999n])
      await sendReverts(world, 'w1', 'Settlement', 'answerLeaf', [c.header, c.batch.leaves[1], c.batch.proof(1)], 'SettlementNoLeafRequest', [c.batchId, 1n])
      const r0 = await world.read.settlement.read.getLeafRequest([c.batchId, 0n])
      await sendReverts(world, 'w1', 'Settlement', 'answerLeaf', [c.header, c.batch.leaves[0], c.batch.proof(0)], 'SettlementAnswerWindowClosed', [r0.deadline])
      const escrow = await world.read.settlement.read.escrowOf([world.projectId])
      const r = await send(world, 'stranger', 'Settlement', 'proveUnanswered', [c.header, 999n])
      await assertVoided(c, 7, 'challenger', r, BOND)
      assert.equal(await world.read.settlement.read.escrowOf([world.projectId]), escrow + 50n * ETHER)
      assert.equal(rq.open, true)
      assert.equal((await world.read.settlement.read.getLeafRequest([c.batchId, 999n])).open, false)
    })

    it('data availability: a request on a batch voided meanwhile only returns the bond', async () => {
      const epoch = await world.read.settlement.read.currentEpoch()
      const forged = await signedJob(world, { worker: 'w1', epoch, gateway: 'stranger' })
      const good = await signedJob(world, { worker: 'w1', epoch })
      await endEpoch(world)
      const c = await commit(world, 'w1', epoch, [good.item, forged.item])
      await send(world, 'stranger', 'Settlement', 'requestLeaf', [c.header, 0n], BOND)
      await send(world, 'challenger', 'Settlement', 'proveInvalidLeaf', [c.header, c.batch.leaves[1], c.batch.proof(1)])
      await sendReverts(world, 'w1', 'Settlement', 'answerLeaf', [c.header, c.batch.leaves[0], c.batch.proof(0)], 'SettlementBatchNotChallengeable', [c.batchId])
      await increaseTime(world, PARAMS.commitWindow)
      const r = await send(world, 'w2', 'Settlement', 'proveUnanswered', [c.header, 0n])
      assert.equal(parseEventLogs({ abi: settlementAbi, logs: r.logs, eventName: 'BatchVoided' }).length, 0)
      assert.equal(await owed(world, 'stranger'), BOND)
    })

    it('proofs after the challenge window revert with SettlementBatchNotChallengeable; the batch finalizes', async () => {
      honest = ['w1']
      const { c } = await honestBatch('w1', 2)
      await increaseTime(world, PARAMS.challengeWindow)
      await sendReverts(world, 'challenger', 'Settlement', 'proveInvalidLeaf', [c.header, c.batch.leaves[0], c.batch.proof(0)], 'SettlementBatchNotChallengeable', [c.batchId])
      await send(world, 'stranger', 'Settlement', 'commitBatches', [[], [c.header]])
    })
  })
})

const registryAcceptAbi = [{ type: 'function', name: 'acceptProject', inputs: [{ name: 'projectId', type: 'bytes32' }], outputs: [], stateMutability: 'nonpayable' }] as const
