import assert from 'node:assert/strict'
import { keccak256, parseEventLogs, toHex, type Hex } from 'viem'
import { executionCoordinatorAbi } from '../../contracts/abi/index.ts'
import { reentrantReceiverAbi } from '../../contracts/abi/test-abis.ts'
import {
  ETHER, PARAMS, deployRaw, executionCommitment, expectRawRevert, expectRevertAny, increaseTime, now, revertTo, send, sendReverts, setup, snapshot,
  type ActorName, type World, STAKE, assertHonestKeptStake, ACTOR_NAMES
} from './fixture.ts'
import { functionId as functionIdOf } from '../../protocol/eip712.ts'

const CID = ('0x01551220' + 'cd'.repeat(32)) as Hex
/** a worker's published X25519 key (any non-zero 32 bytes for the contract) */
const KEY = ('0x' + '5a'.repeat(32)) as Hex

describe('contracts: ExecutionCoordinator', function () {
  this.timeout(120_000)
  let world: World
  let snap: string
  let honest: ActorName[]
  const inputHash = keccak256(toHex('input'))
  const right = keccak256(toHex('right'))
  const wrong = keccak256(toHex('wrong'))

  before(async () => {
    world = await setup()
    for (const w of ['w1', 'w2', 'w3', 'w4', 'w5'] as const) await send(world, w, 'ExecutionCoordinator', 'join', [KEY])
  })
  after(async () => { await world.close() })
  beforeEach(async () => { snap = await snapshot(world); honest = [] })
  afterEach(async () => {
    await assertHonestKeptStake(world, honest)
    await revertTo(world, snap)
  })

  async function request (from: ActorName = 'gateway', o: { redundancy?: number, fee?: bigint, window?: bigint, fromEscrow?: boolean, value?: bigint, functionId?: Hex } = {}): Promise<bigint> {
    const fee = o.fee ?? 3n * ETHER / 100n + 2n
    const deadline = (await now(world)) + (o.window ?? 120n)
    const r = await send(world, from, 'ExecutionCoordinator', 'requestExecution', [{
      functionId: o.functionId ?? world.functionId, inputHash, inputCid: CID, redundancy: o.redundancy ?? 3, fee, deadline, fromEscrow: o.fromEscrow ?? false
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

  /** The actor names of a request's drawn workers, in slot order. */
  async function drawn (id: bigint): Promise<ActorName[]> {
    // the seed is the request block's hash, readable from the next block: ask the pending one
    const addrs = await world.read.coordinator.read.drawnWorkers([id], { blockTag: 'pending' })
    return addrs.map(a => ACTOR_NAMES.find(n => world.actors[n].address.toLowerCase() === a.toLowerCase()) as ActorName)
  }
  const WORKERS = ['w1', 'w2', 'w3', 'w4', 'w5'] as const

  it('finalizes on a majority of the drawn slots, pays agreeing workers, penalises the dissenter (deterministic function) and refunds the rest', async () => {
    const fee = 3n * ETHER / 100n + 2n
    const id = await request('gateway', { fee })
    const [a, b, c] = await drawn(id)
    honest = [a, b]
    await commitAs(id, a, right)
    await commitAs(id, b, right)
    await commitAs(id, c, wrong)
    await revealAs(id, a, right)
    await revealAs(id, c, wrong)
    const r = await revealAs(id, b, right)
    const [fin] = parseEventLogs({ abi: executionCoordinatorAbi, logs: r.logs, eventName: 'ExecutionFinalized' })
    assert.equal(fin.args.outputHash, right)
    assert.equal(fin.args.outputCid, CID)
    const s = await send(world, 'stranger', 'ExecutionCoordinator', 'settle', [id])
    const share = fee / 3n
    assert.equal(await owedC(a), share)
    assert.equal(await owedC(b), share)
    assert.equal(await owedC(c), 0n)
    const penalty = STAKE * BigInt(PARAMS.penaltyBps) / 10_000n
    assert.equal(await stakeOf(c), STAKE - penalty)
    assert.equal(await owedC('stranger'), penalty * BigInt(PARAMS.keeperShareBps) / 10_000n)
    assert.equal(await owedC('gateway'), fee - 2n * share)
    const [ev] = parseEventLogs({ abi: executionCoordinatorAbi, logs: s.logs, eventName: 'ExecutionSettled' })
    assert.equal(ev.args.paid + ev.args.refunded, fee)
    await send(world, a, 'ExecutionCoordinator', 'withdraw', [])
    assert.equal(await owedC(a), 0n)
  })

  it('draws distinct pool members, records the draw on first commit, and the stored draw equals the view', async () => {
    const id = await request('gateway', { redundancy: 3 })
    const before = await drawn(id)
    assert.equal(new Set(before).size, 3)
    for (const w of before) assert.ok((WORKERS as readonly string[]).includes(w))
    const r = await send(world, before[0], 'ExecutionCoordinator', 'commit', [id, executionCommitment(id, world.actors[before[0]].address, right, salt(before[0]))])
    const [ev] = parseEventLogs({ abi: executionCoordinatorAbi, logs: r.logs, eventName: 'SlotsDrawn' })
    assert.deepEqual(ev.args.workers.map(x => x.toLowerCase()), before.map(n => world.actors[n].address.toLowerCase()))
    assert.deepEqual(await drawn(id), before)
    // different requests draw differently: over 12 requests of 1 slot, more than one worker is drawn
    const seen = new Set<string>()
    for (let i = 0; i < 12; i++) seen.add((await drawn(await request('gateway', { redundancy: 1 })))[0])
    assert.ok(seen.size > 1, `always the same worker: ${[...seen].join()}`)
  })

  it('attack: two colluding staked accounts cannot take slots they were not drawn for, nor buy weight or join once the seed is known', async () => {
    const id = await request('gateway', { redundancy: 3 })
    const d = await drawn(id)
    honest = d
    const colluders = WORKERS.filter(w => !d.includes(w))
    assert.equal(colluders.length, 2)
    // both commit the answer they want without running anything: not drawn, refused
    for (const w of colluders) {
      await sendReverts(world, w, 'ExecutionCoordinator', 'commit', [id, executionCommitment(id, world.actors[w].address, wrong, salt(w))], 'CoordinatorNotDrawn', [id, world.actors[w].address])
    }
    // staking 10× more and re-joining after the request changes nothing for it
    for (const w of colluders) {
      await send(world, w, 'WorkerStaking', 'stake', [1], 100n * ETHER)
      await send(world, w, 'ExecutionCoordinator', 'join', [KEY])
    }
    assert.deepEqual(await drawn(id), d)
    // a fresh account that stakes and joins after the request is not eligible either
    await send(world, 'challenger', 'WorkerStaking', 'stake', [1], 1_000n * ETHER)
    await send(world, 'challenger', 'ExecutionCoordinator', 'join', [KEY])
    assert.ok(!(await drawn(id)).includes('challenger'))
    await sendReverts(world, 'challenger', 'ExecutionCoordinator', 'commit', [id, executionCommitment(id, world.actors.challenger.address, wrong, salt('challenger'))], 'CoordinatorNotDrawn', [id, world.actors.challenger.address])
    // the drawn, honest workers answer; the colluders got nothing and slashed no one
    for (const w of d) await commitAs(id, w, right)
    for (const w of d) await revealAs(id, w, right)
    await send(world, 'stranger', 'ExecutionCoordinator', 'settle', [id])
    assert.equal((await world.read.coordinator.read.getRequest([id])).outputHash, right)
    for (const w of colluders) assert.equal(await owedC(w), 0n)
    // but their weight counts for later requests: the 1,000 ETH account is drawn most of the time
    let wins = 0
    for (let i = 0; i < 8; i++) if ((await drawn(await request('gateway', { redundancy: 1 })))[0] === 'challenger') wins++
    assert.ok(wins >= 4, `a stake 10-100× the others was drawn ${wins}/8 times`)
  })

  it('a non-deterministic function (Math.random) with redundancy 3: the first reveal answers, every revealer is paid, no honest worker is slashed', async () => {
    const echo = functionIdOf(world.actors.owner.address, 'demo', 'echo')
    assert.equal(await world.read.registry.read.isDeterministic([echo]), false)
    const fee = 3n * 1000n
    const id = await request('gateway', { fee, functionId: echo })
    const d = await drawn(id)
    honest = d
    const outs = d.map((_, i) => keccak256(toHex(`random-${i}`)))
    for (let i = 0; i < 3; i++) await commitAs(id, d[i], outs[i])
    const r = await revealAs(id, d[0], outs[0])
    const [fin] = parseEventLogs({ abi: executionCoordinatorAbi, logs: r.logs, eventName: 'ExecutionFinalized' })
    assert.equal(fin.args.outputHash, outs[0])
    assert.equal(await world.read.coordinator.read.outcome([id]), 1)
    await revealAs(id, d[1], outs[1])
    await revealAs(id, d[2], outs[2])
    const s = await send(world, 'stranger', 'ExecutionCoordinator', 'settle', [id])
    assert.equal(parseEventLogs({ abi: executionCoordinatorAbi, logs: s.logs, eventName: 'WorkerPenalized' }).length, 0)
    for (const w of d) assert.equal(await owedC(w), fee / 3n)
  })

  it('a non-deterministic function: only a worker that committed and never revealed is penalised, at the deadline', async () => {
    const echo = functionIdOf(world.actors.owner.address, 'demo', 'echo')
    const id = await request('gateway', { functionId: echo })
    const [a, b, c] = await drawn(id)
    honest = [a, b]
    await commitAs(id, a, right)
    await commitAs(id, b, wrong)
    await commitAs(id, c, keccak256(toHex('third')))
    await revealAs(id, a, right)
    await revealAs(id, b, wrong)
    await sendReverts(world, 'stranger', 'ExecutionCoordinator', 'settle', [id], 'CoordinatorNotSettleable')
    await increaseTime(world, 200)
    await send(world, 'stranger', 'ExecutionCoordinator', 'settle', [id])
    assert.equal(await stakeOf(c), STAKE - STAKE * BigInt(PARAMS.penaltyBps) / 10_000n)
  })

  it('the determinism flag is read at request time: redeploying the function as deterministic mid-request cannot turn dissent into a penalty', async () => {
    const echo = functionIdOf(world.actors.owner.address, 'demo', 'echo')
    const id = await request('gateway', { functionId: echo })
    const [a, b, c] = await drawn(id)
    honest = [a, b, c]
    await send(world, 'owner', 'FunctionRegistry', 'deploy', [world.actors.owner.address, 'demo', '0x01711220' + 'ef'.repeat(32), keccak256('0x03'), ['hello', 'echo'], 3n])
    assert.equal(await world.read.registry.read.isDeterministic([echo]), true)
    await commitAs(id, a, right)
    await commitAs(id, b, right)
    await commitAs(id, c, wrong)
    for (const [w, o] of [[a, right], [b, right], [c, wrong]] as const) await revealAs(id, w, o)
    await send(world, 'stranger', 'ExecutionCoordinator', 'settle', [id])
  })

  it('no possible majority (deterministic): outcome says so at once and the requester settles early, refunded, no one penalised before the deadline', async () => {
    const fee = ETHER / 10n
    const id = await request('stranger', { fee })
    const [a, b, c] = await drawn(id)
    honest = [a, b, c]
    await commitAs(id, a, right)
    await commitAs(id, b, wrong)
    await commitAs(id, c, keccak256(toHex('third')))
    assert.equal(await world.read.coordinator.read.outcome([id]), 0)
    await revealAs(id, a, right)
    await revealAs(id, b, wrong)
    assert.equal(await world.read.coordinator.read.outcome([id]), 0) // c could still agree with one of them
    await revealAs(id, c, keccak256(toHex('third')))
    assert.equal(await world.read.coordinator.read.outcome([id]), 2)
    await send(world, 'stranger', 'ExecutionCoordinator', 'settle', [id])
    assert.equal(await owedC('stranger'), fee)
    assert.equal(await world.read.coordinator.read.outcome([id]), 3)
  })

  it('undecidable before every reveal: two of three reveal different outputs and the third never committed after the commit phase', async () => {
    const fee = ETHER / 10n
    const id = await request('stranger', { fee })
    const [a, b] = await drawn(id)
    honest = [a, b]
    await commitAs(id, a, right)
    await commitAs(id, b, wrong)
    await increaseTime(world, 61)
    await revealAs(id, a, right)
    assert.equal(await world.read.coordinator.read.outcome([id]), 0)
    await revealAs(id, b, wrong)
    assert.equal(await world.read.coordinator.read.outcome([id]), 2)
    await send(world, 'stranger', 'ExecutionCoordinator', 'settle', [id])
    assert.equal(await owedC('stranger'), fee)
  })

  it('refunds the whole fee at the deadline when no majority exists, penalising only workers that committed and never revealed', async () => {
    const fee = ETHER / 10n
    const id = await request('stranger', { fee })
    const [a, b, c] = await drawn(id)
    honest = [a, b]
    await commitAs(id, a, right)
    await commitAs(id, b, wrong)
    await commitAs(id, c, right)
    await revealAs(id, a, right)
    await revealAs(id, b, wrong)
    await sendReverts(world, 'stranger', 'ExecutionCoordinator', 'settle', [id], 'CoordinatorNotSettleable')
    await increaseTime(world, 200)
    await send(world, 'challenger', 'ExecutionCoordinator', 'settle', [id])
    assert.equal(await owedC('stranger'), fee)
    assert.equal(await stakeOf(c), STAKE - STAKE * BigInt(PARAMS.penaltyBps) / 10_000n)
  })

  it('refunds a request nobody took (drawn workers that never committed are not penalised), and reveals open at the commit deadline when slots stay empty', async () => {
    const id = await request('stranger', { fee: ETHER, redundancy: 1 })
    honest = [...WORKERS]
    await increaseTime(world, 200)
    await send(world, 'stranger', 'ExecutionCoordinator', 'settle', [id])
    assert.equal(await owedC('stranger'), ETHER)
    const id2 = await request('stranger', { fee: ETHER, redundancy: 3 })
    const [a] = await drawn(id2)
    await commitAs(id2, a, right)
    await sendReverts(world, a, 'ExecutionCoordinator', 'reveal', [id2, right, salt(a), CID], 'CoordinatorNotRevealPhase', [id2])
    await increaseTime(world, 61)
    await revealAs(id2, a, right)
  })

  it('pays from and refunds to the project escrow for an authorised gateway', async () => {
    const escrow0 = await world.read.settlement.read.escrowOf([world.projectId])
    const fee = ETHER / 10n
    const id = await request('gateway', { fee, fromEscrow: true, redundancy: 2 })
    const [a, b] = await drawn(id)
    honest = [a, b]
    assert.equal(await world.read.settlement.read.escrowOf([world.projectId]), escrow0 - fee)
    const [, spent] = await world.read.settlement.read.allowanceOf([world.projectId, world.actors.gateway.address])
    assert.equal(spent, fee)
    await commitAs(id, a, right)
    await commitAs(id, b, right)
    await revealAs(id, a, right)
    await revealAs(id, b, right)
    await send(world, 'stranger', 'ExecutionCoordinator', 'settle', [id])
    assert.equal(await owedC(a), fee / 2n)
    assert.equal(await world.read.settlement.read.escrowOf([world.projectId]), escrow0 - fee)
    // a 3-way request with one slot empty returns that share to the escrow
    const id2 = await request('owner', { fee: 3n, fromEscrow: true, redundancy: 3 })
    const [c, e] = await drawn(id2)
    await commitAs(id2, c, right)
    await commitAs(id2, e, right)
    await increaseTime(world, 61)
    await revealAs(id2, c, right)
    await revealAs(id2, e, right)
    await send(world, 'stranger', 'ExecutionCoordinator', 'settle', [id2])
    assert.equal(await world.read.settlement.read.escrowOf([world.projectId]), escrow0 - fee - 2n)
  })

  it('pool: join needs an active worker, leave and prune remove, a pool of one draws one slot for three asked', async () => {
    await sendReverts(world, 'stranger', 'ExecutionCoordinator', 'join', [KEY], 'CoordinatorNotStakedWorker', [world.actors.stranger.address])
    await sendReverts(world, 'w1', 'ExecutionCoordinator', 'join', [('0x' + '00'.repeat(32)) as Hex], 'CoordinatorInvalidKey')
    await sendReverts(world, 'w1', 'ExecutionCoordinator', 'prune', [world.actors.w1.address], 'CoordinatorStillActive', [world.actors.w1.address])
    assert.equal(await world.read.coordinator.read.poolSize(), 5n)
    for (const w of ['w2', 'w3', 'w4'] as const) await send(world, w, 'ExecutionCoordinator', 'leave', [])
    await sendReverts(world, 'w2', 'ExecutionCoordinator', 'leave', [], 'CoordinatorNotInPool', [world.actors.w2.address])
    await send(world, 'w5', 'WorkerStaking', 'requestWithdrawal', [STAKE])
    await send(world, 'stranger', 'ExecutionCoordinator', 'prune', [world.actors.w5.address])
    assert.equal(await world.read.coordinator.read.poolSize(), 1n)
    const id = await request('gateway', { redundancy: 3 })
    assert.deepEqual(await drawn(id), ['w1'])
    await commitAs(id, 'w1', right)
    const r = await world.read.coordinator.read.getRequest([id])
    assert.equal(r.drawnSlots, 1)
    await revealAs(id, 'w1', right)
    assert.equal(await world.read.coordinator.read.outcome([id]), 1)
  })

  it('sealed request: no input at request time; only the requester posts it, once, after drawing, and workers read it', async () => {
    const t = await now(world)
    const r = await send(world, 'gateway', 'ExecutionCoordinator', 'requestExecution', [{ functionId: world.functionId, inputHash, inputCid: '0x', redundancy: 2, fee: 100n, deadline: t + 100n, fromEscrow: false }], 100n)
    const [ev] = parseEventLogs({ abi: executionCoordinatorAbi, logs: r.logs, eventName: 'ExecutionRequested' })
    const id = ev.args.requestId
    assert.equal(ev.args.inputCid, '0x')
    assert.equal(await world.read.coordinator.read.inputCidOf([id]), '0x')
    await sendReverts(world, 'stranger', 'ExecutionCoordinator', 'postInput', [id, CID], 'CoordinatorNotRequester', [id, world.actors.stranger.address])
    await sendReverts(world, 'gateway', 'ExecutionCoordinator', 'postInput', [id, '0x'], 'CoordinatorInvalidInputCid')
    const p = await send(world, 'gateway', 'ExecutionCoordinator', 'postInput', [id, CID])
    assert.equal(parseEventLogs({ abi: executionCoordinatorAbi, logs: p.logs, eventName: 'SlotsDrawn' }).length, 1, 'posting drew the slots')
    assert.equal(parseEventLogs({ abi: executionCoordinatorAbi, logs: p.logs, eventName: 'InputPosted' })[0].args.inputCid, CID)
    assert.equal(await world.read.coordinator.read.inputCidOf([id]), CID)
    await sendReverts(world, 'gateway', 'ExecutionCoordinator', 'postInput', [id, CID], 'CoordinatorInputAlreadySet', [id])
    const [a] = await drawn(id)
    const [, , key] = await world.read.coordinator.read.poolMember([world.actors[a].address])
    assert.equal(key, KEY)
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
    it('commit: CoordinatorUnknownRequest, CoordinatorInvalidCommitment, CoordinatorNotDrawn, CoordinatorNotStakedWorker, CoordinatorAlreadyCommitted, CoordinatorCommitPhaseOver, CoordinatorAlreadySettled', async () => {
      const c = (w: ActorName, id: bigint, commitment: Hex = keccak256('0x01')) => ['ExecutionCoordinator', 'commit', [id, commitment]] as const
      await sendReverts(world, 'w1', ...c('w1', 99n), 'CoordinatorUnknownRequest', [99n])
      const id = await request('gateway', { redundancy: 2 })
      const [a, b] = await drawn(id)
      const out = WORKERS.find(w => w !== a && w !== b) as ActorName
      await sendReverts(world, a, ...c(a, id, ('0x' + '00'.repeat(32)) as Hex), 'CoordinatorInvalidCommitment')
      await sendReverts(world, 'stranger', ...c('stranger', id), 'CoordinatorNotDrawn', [id, world.actors.stranger.address])
      await sendReverts(world, out, ...c(out, id), 'CoordinatorNotDrawn', [id, world.actors[out].address])
      await commitAs(id, a, right)
      await sendReverts(world, a, ...c(a, id), 'CoordinatorAlreadyCommitted', [id, world.actors[a].address])
      // a drawn worker that withdrew its stake since cannot commit
      await send(world, b, 'WorkerStaking', 'requestWithdrawal', [STAKE])
      await sendReverts(world, b, ...c(b, id), 'CoordinatorNotStakedWorker', [world.actors[b].address])
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
      const [a, b] = await drawn(id)
      honest = [a]
      await commitAs(id, a, right)
      await sendReverts(world, b, 'ExecutionCoordinator', 'reveal', [id, right, salt(b), CID], 'CoordinatorNotCommitted', [id, world.actors[b].address])
      await sendReverts(world, 'stranger', 'ExecutionCoordinator', 'reveal', [id, right, salt('stranger'), CID], 'CoordinatorNotCommitted', [id, world.actors.stranger.address])
      await sendReverts(world, a, 'ExecutionCoordinator', 'reveal', [id, right, salt(a), CID], 'CoordinatorNotRevealPhase', [id])
      await commitAs(id, b, right)
      await sendReverts(world, a, 'ExecutionCoordinator', 'reveal', [id, right, salt(a), '0x'], 'CoordinatorInvalidOutputCid')
      await sendReverts(world, a, 'ExecutionCoordinator', 'reveal', [id, wrong, salt(a), CID], 'CoordinatorCommitmentMismatch', [id, world.actors[a].address])
      await sendReverts(world, a, 'ExecutionCoordinator', 'reveal', [id, right, salt(b), CID], 'CoordinatorCommitmentMismatch', [id, world.actors[a].address])
      await revealAs(id, a, right)
      await sendReverts(world, a, 'ExecutionCoordinator', 'reveal', [id, right, salt(a), CID], 'CoordinatorAlreadyRevealed', [id, world.actors[a].address])
      await increaseTime(world, 120)
      await sendReverts(world, b, 'ExecutionCoordinator', 'reveal', [id, right, salt(b), CID], 'CoordinatorNotRevealPhase', [id])
      await send(world, b, 'ExecutionCoordinator', 'settle', [id])
      await sendReverts(world, b, 'ExecutionCoordinator', 'reveal', [id, right, salt(b), CID], 'CoordinatorAlreadySettled', [id])
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
