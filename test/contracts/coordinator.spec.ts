import assert from 'node:assert/strict'
import { keccak256, parseEventLogs, toHex, type Hex } from 'viem'
import { executionCoordinatorAbi } from '../../contracts/abi/index.ts'
import { reentrantReceiverAbi } from '../../contracts/abi/test-abis.ts'
import {
  ETHER, PARAMS, deployRaw, executionCommitment, expectRawRevert, expectRevertAny, increaseTime, now, revertTo, send, sendReverts, setup, snapshot,
  type ActorName, type World, STAKE, assertHonestKeptStake
} from './fixture.ts'

const CID = ('0x01551220' + 'cd'.repeat(32)) as Hex

describe('contracts: ExecutionCoordinator', function () {
  this.timeout(120_000)
  let world: World
  let snap: string
  let honest: ActorName[]
  const inputHash = keccak256(toHex('input'))
  const right = keccak256(toHex('right'))
  const wrong = keccak256(toHex('wrong'))

  before(async () => { world = await setup() })
  after(async () => { await world.close() })
  beforeEach(async () => { snap = await snapshot(world); honest = [] })
  afterEach(async () => {
    await assertHonestKeptStake(world, honest)
    await revertTo(world, snap)
  })

  async function request (from: ActorName = 'gateway', o: { redundancy?: number, fee?: bigint, window?: bigint, fromEscrow?: boolean, value?: bigint } = {}): Promise<bigint> {
    const fee = o.fee ?? 3n * ETHER / 100n + 2n
    const deadline = (await now(world)) + (o.window ?? 120n)
    const r = await send(world, from, 'ExecutionCoordinator', 'requestExecution', [{
      functionId: world.functionId, inputHash, inputCid: CID, redundancy: o.redundancy ?? 3, fee, deadline, fromEscrow: o.fromEscrow ?? false
    }], o.value ?? (o.fromEscrow === true ? 0n : fee))
    const [ev] = parseEventLogs({ abi: executionCoordinatorAbi, logs: r.logs, eventName: 'ExecutionRequested' })
    return ev.args.requestId
  }
  const salt = (w: ActorName): Hex => keccak256(toHex(`salt-${w}`))
  async function commitAs (id: bigint, w: ActorName, output: Hex): Promise<void> {
    await send(world, w, 'ExecutionCoordinator', 'commit', [id, executionCommitment(id, world.actors[w].address, output, salt(w))])
  }
  async function revealAs (id: bigint, w: ActorName, output: Hex) {
    return await send(world, w, 'ExecutionCoordinator', 'reveal', [id, output, salt(w), CID])
  }
  const owedC = async (who: ActorName): Promise<bigint> => await world.read.coordinator.read.owed([world.actors[who].address])
  const stakeOf = async (who: ActorName): Promise<bigint> => {
    const s = await world.read.staking.read.stakeOf([world.actors[who].address])
    return s.amount + s.pending
  }

  it('finalizes on a majority, pays agreeing workers, penalises the dissenter and refunds the rest', async () => {
    honest = ['w1', 'w2']
    const fee = 3n * ETHER / 100n + 2n
    const id = await request('gateway', { fee })
    await commitAs(id, 'w1', right)
    await commitAs(id, 'w2', right)
    await commitAs(id, 'w3', wrong)
    await revealAs(id, 'w1', right)
    await revealAs(id, 'w3', wrong)
    const r = await revealAs(id, 'w2', right)
    const [fin] = parseEventLogs({ abi: executionCoordinatorAbi, logs: r.logs, eventName: 'ExecutionFinalized' })
    assert.equal(fin.args.outputHash, right)
    assert.equal(fin.args.outputCid, CID)
    const s = await send(world, 'stranger', 'ExecutionCoordinator', 'settle', [id])
    const share = fee / 3n
    assert.equal(await owedC('w1'), share)
    assert.equal(await owedC('w2'), share)
    assert.equal(await owedC('w3'), 0n)
    const penalty = STAKE * BigInt(PARAMS.penaltyBps) / 10_000n
    assert.equal(await stakeOf('w3'), STAKE - penalty)
    assert.equal(await owedC('stranger'), penalty * BigInt(PARAMS.keeperShareBps) / 10_000n)
    assert.equal(await owedC('gateway'), fee - 2n * share)
    const [ev] = parseEventLogs({ abi: executionCoordinatorAbi, logs: s.logs, eventName: 'ExecutionSettled' })
    assert.equal(ev.args.paid + ev.args.refunded, fee)
    await send(world, 'w1', 'ExecutionCoordinator', 'withdraw', [])
    assert.equal(await owedC('w1'), 0n)
  })

  it('refunds the whole fee at the deadline when no majority exists, penalising only workers that never revealed', async () => {
    honest = ['w1', 'w2']
    const fee = ETHER / 10n
    const id = await request('stranger', { fee })
    await commitAs(id, 'w1', right)
    await commitAs(id, 'w2', wrong)
    await commitAs(id, 'w3', right)
    await revealAs(id, 'w1', right)
    await revealAs(id, 'w2', wrong)
    await sendReverts(world, 'stranger', 'ExecutionCoordinator', 'settle', [id], 'CoordinatorNotSettleable')
    await increaseTime(world, 200)
    await send(world, 'challenger', 'ExecutionCoordinator', 'settle', [id])
    assert.equal(await owedC('stranger'), fee)
    assert.equal(await stakeOf('w3'), STAKE - STAKE * BigInt(PARAMS.penaltyBps) / 10_000n)
  })

  it('refunds a request nobody took, and reveals open at the commit deadline when slots stay empty', async () => {
    honest = ['w1']
    const id = await request('stranger', { fee: ETHER, redundancy: 1 })
    await increaseTime(world, 200)
    await send(world, 'stranger', 'ExecutionCoordinator', 'settle', [id])
    assert.equal(await owedC('stranger'), ETHER)
    const id2 = await request('stranger', { fee: ETHER, redundancy: 3 })
    await commitAs(id2, 'w1', right)
    await sendReverts(world, 'w1', 'ExecutionCoordinator', 'reveal', [id2, right, salt('w1'), CID], 'CoordinatorNotRevealPhase', [id2])
    await increaseTime(world, 61)
    await revealAs(id2, 'w1', right)
  })

  it('pays from and refunds to the project escrow for an authorised gateway', async () => {
    honest = ['w1', 'w2']
    const escrow0 = await world.read.settlement.read.escrowOf([world.projectId])
    const fee = ETHER / 10n
    const id = await request('gateway', { fee, fromEscrow: true, redundancy: 2 })
    assert.equal(await world.read.settlement.read.escrowOf([world.projectId]), escrow0 - fee)
    const [, spent] = await world.read.settlement.read.allowanceOf([world.projectId, world.actors.gateway.address])
    assert.equal(spent, fee)
    await commitAs(id, 'w1', right)
    await commitAs(id, 'w2', right)
    await revealAs(id, 'w1', right)
    await revealAs(id, 'w2', right)
    await send(world, 'stranger', 'ExecutionCoordinator', 'settle', [id])
    assert.equal(await owedC('w1'), fee / 2n)
    assert.equal(await world.read.settlement.read.escrowOf([world.projectId]), escrow0 - fee)
    // a 3-way request with one slot empty returns that share to the escrow
    const id2 = await request('owner', { fee: 3n, fromEscrow: true, redundancy: 3 })
    await commitAs(id2, 'w1', right)
    await commitAs(id2, 'w2', right)
    await increaseTime(world, 61)
    await revealAs(id2, 'w1', right)
    await revealAs(id2, 'w2', right)
    await increaseTime(world, 60)
    await send(world, 'stranger', 'ExecutionCoordinator', 'settle', [id2])
    assert.equal(await world.read.settlement.read.escrowOf([world.projectId]), escrow0 - fee - 2n)
  })

  describe('reverts', () => {
    it('requestExecution: CoordinatorUnknownFunction, CoordinatorInvalidRedundancy, CoordinatorInvalidFee, CoordinatorInvalidDeadline, CoordinatorInvalidInputCid, CoordinatorWrongValue', async () => {
      const t = await now(world)
      const base = { functionId: world.functionId, inputHash, inputCid: CID, redundancy: 3, fee: 100n, deadline: t + 100n, fromEscrow: false }
      const go = async (p: Partial<typeof base>, name: string, args?: unknown[], value = 100n) => await sendReverts(world, 'gateway', 'ExecutionCoordinator', 'requestExecution', [{ ...base, ...p }], name, args, value)
      const unknown = keccak256('0x01')
      await go({ functionId: unknown }, 'CoordinatorUnknownFunction', [unknown])
      await go({ redundancy: 0 }, 'CoordinatorInvalidRedundancy', [0])
      await go({ redundancy: 16 }, 'CoordinatorInvalidRedundancy', [16])
      await go({ fee: 0n }, 'CoordinatorInvalidFee', [0n], 0n)
      await go({ deadline: t + 5n }, 'CoordinatorInvalidDeadline', [t + 5n])
      await go({ deadline: t + 2n * 86_400n }, 'CoordinatorInvalidDeadline', [t + 2n * 86_400n])
      await go({ inputCid: '0x' }, 'CoordinatorInvalidInputCid')
      await go({ inputCid: ('0x' + '01'.repeat(129)) as Hex }, 'CoordinatorInvalidInputCid')
      await go({}, 'CoordinatorWrongValue', [100n, 99n], 99n)
      await go({ fromEscrow: true }, 'CoordinatorWrongValue', [0n, 100n], 100n)
    })
    it('requestExecution from escrow: SettlementAllowanceExceeded for an unauthorised caller, SettlementInsufficientEscrow', async () => {
      const t = await now(world)
      const p = { functionId: world.functionId, inputHash, inputCid: CID, redundancy: 1, fee: ETHER, deadline: t + 100n, fromEscrow: true }
      await sendReverts(world, 'stranger', 'ExecutionCoordinator', 'requestExecution', [p], 'SettlementAllowanceExceeded', [ETHER, 0n], 0n)
      await sendReverts(world, 'owner', 'ExecutionCoordinator', 'requestExecution', [{ ...p, fee: 2_000n * ETHER }], 'SettlementInsufficientEscrow', [2_000n * ETHER, 1_000n * ETHER], 0n)
    })
    it('commit: CoordinatorUnknownRequest, CoordinatorInvalidCommitment, CoordinatorNotStakedWorker, CoordinatorAlreadyCommitted, CoordinatorRequestFull, CoordinatorCommitPhaseOver, CoordinatorAlreadySettled', async () => {
      const c = (w: ActorName, id: bigint, commitment: Hex = keccak256('0x01')) => ['ExecutionCoordinator', 'commit', [id, commitment]] as const
      await sendReverts(world, 'w1', ...c('w1', 99n), 'CoordinatorUnknownRequest', [99n])
      const id = await request('gateway', { redundancy: 2 })
      await sendReverts(world, 'w1', ...c('w1', id, ('0x' + '00'.repeat(32)) as Hex), 'CoordinatorInvalidCommitment')
      await sendReverts(world, 'stranger', ...c('stranger', id), 'CoordinatorNotStakedWorker', [world.actors.stranger.address])
      await commitAs(id, 'w1', right)
      await sendReverts(world, 'w1', ...c('w1', id), 'CoordinatorAlreadyCommitted', [id, world.actors.w1.address])
      await commitAs(id, 'w2', right)
      await sendReverts(world, 'w3', ...c('w3', id), 'CoordinatorRequestFull', [id])
      const id2 = await request('gateway', { redundancy: 2 })
      await increaseTime(world, 60)
      await sendReverts(world, 'w3', ...c('w3', id2), 'CoordinatorCommitPhaseOver', [id2])
      await increaseTime(world, 60)
      await send(world, 'w3', 'ExecutionCoordinator', 'settle', [id2])
      await sendReverts(world, 'w3', ...c('w3', id2), 'CoordinatorAlreadySettled', [id2])
    })
    it('reveal: CoordinatorUnknownRequest, CoordinatorNotCommitted, CoordinatorNotRevealPhase, CoordinatorInvalidOutputCid, CoordinatorCommitmentMismatch, CoordinatorAlreadyRevealed, CoordinatorAlreadySettled', async () => {
      await sendReverts(world, 'w1', 'ExecutionCoordinator', 'reveal', [99n, right, salt('w1'), CID], 'CoordinatorUnknownRequest', [99n])
      const id = await request('gateway', { redundancy: 2 })
      await commitAs(id, 'w1', right)
      await sendReverts(world, 'w2', 'ExecutionCoordinator', 'reveal', [id, right, salt('w2'), CID], 'CoordinatorNotCommitted', [id, world.actors.w2.address])
      await sendReverts(world, 'w1', 'ExecutionCoordinator', 'reveal', [id, right, salt('w1'), CID], 'CoordinatorNotRevealPhase', [id])
      await commitAs(id, 'w2', right)
      await sendReverts(world, 'w1', 'ExecutionCoordinator', 'reveal', [id, right, salt('w1'), '0x'], 'CoordinatorInvalidOutputCid')
      await sendReverts(world, 'w1', 'ExecutionCoordinator', 'reveal', [id, wrong, salt('w1'), CID], 'CoordinatorCommitmentMismatch', [id, world.actors.w1.address])
      await sendReverts(world, 'w1', 'ExecutionCoordinator', 'reveal', [id, right, salt('w2'), CID], 'CoordinatorCommitmentMismatch', [id, world.actors.w1.address])
      await revealAs(id, 'w1', right)
      await sendReverts(world, 'w1', 'ExecutionCoordinator', 'reveal', [id, right, salt('w1'), CID], 'CoordinatorAlreadyRevealed', [id, world.actors.w1.address])
      await increaseTime(world, 120)
      await sendReverts(world, 'w2', 'ExecutionCoordinator', 'reveal', [id, right, salt('w2'), CID], 'CoordinatorNotRevealPhase', [id])
      await send(world, 'w2', 'ExecutionCoordinator', 'settle', [id])
      await sendReverts(world, 'w2', 'ExecutionCoordinator', 'reveal', [id, right, salt('w2'), CID], 'CoordinatorAlreadySettled', [id])
    })
    it('settle: CoordinatorUnknownRequest, CoordinatorNotSettleable, CoordinatorAlreadySettled', async () => {
      await sendReverts(world, 'w1', 'ExecutionCoordinator', 'settle', [7n], 'CoordinatorUnknownRequest', [7n])
      const id = await request('gateway', { redundancy: 1 })
      const r = await world.read.coordinator.read.getRequest([id])
      await sendReverts(world, 'w1', 'ExecutionCoordinator', 'settle', [id], 'CoordinatorNotSettleable', [id, r.deadline])
      await increaseTime(world, 120)
      await send(world, 'w1', 'ExecutionCoordinator', 'settle', [id])
      await sendReverts(world, 'w1', 'ExecutionCoordinator', 'settle', [id], 'CoordinatorAlreadySettled', [id])
    })
    it('withdraw: CoordinatorNothingToWithdraw, CoordinatorTransferFailed; receive: CoordinatorUnauthorized; constructor: CoordinatorInvalidParams', async () => {
      await sendReverts(world, 'w1', 'ExecutionCoordinator', 'withdraw', [], 'CoordinatorNothingToWithdraw')
      const receiver = await deployRaw(world, 'w5', 'ReentrantReceiver', [])
      const rc = { address: receiver, abi: reentrantReceiverAbi }
      const { encodeFunctionData } = await import('viem')
      const t = await now(world)
      await send(world, 'w5', rc, 'execute', [world.addresses.ExecutionCoordinator, ETHER, encodeFunctionData({ abi: executionCoordinatorAbi, functionName: 'requestExecution', args: [{ functionId: world.functionId, inputHash, inputCid: CID, redundancy: 1, fee: ETHER, deadline: t + 100n, fromEscrow: false }] })], ETHER)
      await increaseTime(world, 120)
      await send(world, 'w5', 'ExecutionCoordinator', 'settle', [1n])
      await send(world, 'w5', rc, 'setRejectPayments', [true])
      await sendReverts(world, 'w5', rc, 'execute', [world.addresses.ExecutionCoordinator, 0n, encodeFunctionData({ abi: executionCoordinatorAbi, functionName: 'withdraw' })], 'CoordinatorTransferFailed', [receiver, ETHER])
      await expectRawRevert(world, 'w1', world.addresses.ExecutionCoordinator, 1n, '0x', 'CoordinatorUnauthorized')
      await expectRawRevert(world, 'w1', world.addresses.Settlement, 1n, '0x', 'SettlementUnauthorized')
      const staking = await deployRaw(world, 'w3', 'WorkerStaking', [ETHER, ETHER, 86_400n])
      await expectRevertAny(deployRaw(world, 'w3', 'ExecutionCoordinator', [world.addresses.FunctionRegistry, staking, world.addresses.Settlement, 1, 1, world.actors.w3.address]), 'CoordinatorInvalidParams')
      await expectRevertAny(deployRaw(world, 'w3', 'ExecutionCoordinator', [world.addresses.FunctionRegistry, world.addresses.WorkerStaking, world.addresses.Settlement, 10_001, 1, world.actors.w3.address]), 'CoordinatorInvalidParams')
    })
  })
})
