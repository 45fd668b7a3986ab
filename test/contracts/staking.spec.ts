import assert from 'node:assert/strict'
import { keccak256, parseEventLogs, zeroAddress, type Address, type Hex } from 'viem'
import { peerBindingTypedData, workerStakingAbi } from '../../contracts/abi/index.ts'
import { reentrantReceiverAbi } from '../../contracts/abi/test-abis.ts'
import { ETHER, PARAMS, deployRaw, increaseTime, now, revertTo, send, sendReverts, setup, snapshot, type ActorName, type World } from './fixture.ts'


export async function bindingSignature (world: World, who: ActorName, peerId: Hex, deadline: bigint, options: { nonce?: bigint, chainId?: number, staking?: Address } = {}): Promise<Hex> {
  const actor = world.actors[who]
  const nonce = options.nonce ?? await world.read.staking.read.nonces([actor.address])
  return await actor.account.signTypedData(peerBindingTypedData(options.chainId ?? world.chainId, options.staking ?? world.addresses.WorkerStaking, { account: actor.address, peerId, nonce, deadline }))
}

describe('contracts: WorkerStaking', function () {
  this.timeout(120_000)
  let world: World
  let snap: string
  const peerId: Hex = '0x0024080112207d0a1b2c3d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcdef'
  /** the chain only stores the peer key's signature (nodes verify it: peer-binding.spec.ts) */
  const peerSig: Hex = `0x${'55'.repeat(64)}`
  before(async () => { world = await setup({ prepare: false }) })
  after(async () => { await world.close() })
  beforeEach(async () => { snap = await snapshot(world) })
  afterEach(async () => { await revertTo(world, snap) })

  it('stakes, tops up, unbonds and withdraws after the unbonding period', async () => {
    await send(world, 'w1', 'WorkerStaking', 'stake', [1], ETHER)
    await send(world, 'w1', 'WorkerStaking', 'stake', [1], 2n * ETHER)
    assert.equal(await world.read.staking.read.isActiveWorker([world.actors.w1.address]), true)
    assert.equal(await world.read.staking.read.isActiveGateway([world.actors.w1.address]), false)
    await send(world, 'w1', 'WorkerStaking', 'requestWithdrawal', [2n * ETHER])
    const s = await world.read.staking.read.stakeOf([world.actors.w1.address])
    assert.equal(s.amount, ETHER)
    assert.equal(s.pending, 2n * ETHER)
    await sendReverts(world, 'w1', 'WorkerStaking', 'withdraw', [], 'StakingStillUnbonding', [s.unlockAt])
    await increaseTime(world, PARAMS.unbondingPeriod)
    const before = await world.publicClient.getBalance({ address: world.actors.w1.address })
    const r = await send(world, 'w1', 'WorkerStaking', 'withdraw', [])
    const after = await world.publicClient.getBalance({ address: world.actors.w1.address })
    assert.equal(after - before + r.gasUsed * r.effectiveGasPrice, 2n * ETHER)
  })

  it('binds a peer id with the staking address\'s EIP-712 signature, submitted by anyone', async () => {
    await send(world, 'w1', 'WorkerStaking', 'stake', [1], ETHER)
    const deadline = (await now(world)) + 600n
    const sig = await bindingSignature(world, 'w1', peerId, deadline)
    const r = await send(world, 'stranger', 'WorkerStaking', 'bindPeer', [world.actors.w1.address, peerId, deadline, sig, peerSig])
    const [ev] = parseEventLogs({ abi: workerStakingAbi, logs: r.logs, eventName: 'PeerBound' })
    assert.equal(ev.args.peerId, peerId)
    assert.equal(ev.args.peerSig, peerSig)
    assert.equal(ev.args.peerIdHash, keccak256(peerId))
    assert.deepEqual(await world.read.staking.read.peerOf([world.actors.w1.address]), [peerId, peerSig])
    assert.equal((await world.read.staking.read.stakeOf([world.actors.w1.address])).peerIdHash, keccak256(peerId))
    // replaying the same signature fails: the nonce was used
    await sendReverts(world, 'stranger', 'WorkerStaking', 'bindPeer', [world.actors.w1.address, peerId, deadline, sig, peerSig], 'StakingInvalidSignature', [world.actors.w1.address])
  })

  it('publishes a gateway endpoint and encryption key', async () => {
    await send(world, 'gateway', 'WorkerStaking', 'stake', [2], ETHER)
    const r = await send(world, 'gateway', 'WorkerStaking', 'setGatewayInfo', ['https://gw.example', '0x' + '42'.repeat(32)])
    const [ev] = parseEventLogs({ abi: workerStakingAbi, logs: r.logs, eventName: 'GatewayInfoSet' })
    assert.equal(ev.args.endpoint, 'https://gw.example')
  })

  describe('reverts', () => {
    it('stake: StakingInvalidRole, StakingZeroAmount, StakingRoleMismatch, StakingBelowMinimum', async () => {
      await sendReverts(world, 'w1', 'WorkerStaking', 'stake', [0], 'StakingInvalidRole', [0], ETHER)
      await sendReverts(world, 'w1', 'WorkerStaking', 'stake', [3], 'StakingInvalidRole', [3], ETHER)
      await sendReverts(world, 'w1', 'WorkerStaking', 'stake', [1], 'StakingZeroAmount', [], 0n)
      await sendReverts(world, 'w1', 'WorkerStaking', 'stake', [1], 'StakingBelowMinimum', [ETHER - 1n, ETHER], ETHER - 1n)
      await send(world, 'w1', 'WorkerStaking', 'stake', [1], ETHER)
      await sendReverts(world, 'w1', 'WorkerStaking', 'stake', [2], 'StakingRoleMismatch', [1, 2], ETHER)
    })
    it('requestWithdrawal: StakingZeroAmount, StakingInsufficientStake, StakingBelowMinimum', async () => {
      await send(world, 'w1', 'WorkerStaking', 'stake', [1], 2n * ETHER)
      await sendReverts(world, 'w1', 'WorkerStaking', 'requestWithdrawal', [0n], 'StakingZeroAmount')
      await sendReverts(world, 'w1', 'WorkerStaking', 'requestWithdrawal', [3n * ETHER], 'StakingInsufficientStake', [3n * ETHER, 2n * ETHER])
      await sendReverts(world, 'w1', 'WorkerStaking', 'requestWithdrawal', [ETHER + 1n], 'StakingBelowMinimum', [ETHER - 1n, ETHER])
    })
    it('withdraw: StakingNothingPending, StakingStillUnbonding, StakingTransferFailed', async () => {
      await sendReverts(world, 'w1', 'WorkerStaking', 'withdraw', [], 'StakingNothingPending')
      await send(world, 'w1', 'WorkerStaking', 'stake', [1], ETHER)
      await send(world, 'w1', 'WorkerStaking', 'requestWithdrawal', [ETHER])
      const s = await world.read.staking.read.stakeOf([world.actors.w1.address])
      await sendReverts(world, 'w1', 'WorkerStaking', 'withdraw', [], 'StakingStillUnbonding', [s.unlockAt])
      // a receiver that rejects payment gets a named error, not a silent loss
      const receiver = await deployRaw(world, 'w2', 'ReentrantReceiver', [])
      const rc = { address: receiver, abi: reentrantReceiverAbi }
      const staking = world.addresses.WorkerStaking
      const { encodeFunctionData } = await import('viem')
      await send(world, 'w2', rc, 'execute', [staking, ETHER, encodeFunctionData({ abi: workerStakingAbi, functionName: 'stake', args: [1] })], ETHER)
      await send(world, 'w2', rc, 'execute', [staking, 0n, encodeFunctionData({ abi: workerStakingAbi, functionName: 'requestWithdrawal', args: [ETHER] })])
      await send(world, 'w2', rc, 'setRejectPayments', [true])
      await increaseTime(world, PARAMS.unbondingPeriod)
      await sendReverts(world, 'w2', rc, 'execute', [staking, 0n, encodeFunctionData({ abi: workerStakingAbi, functionName: 'withdraw' })], 'StakingTransferFailed', [receiver, ETHER])
    })
    it('bindPeer: StakingSignatureExpired, StakingInvalidPeerId, StakingInvalidPeerSignature, StakingNotStaked, StakingInvalidSignature; no first-come ownership', async () => {
      const deadline = (await now(world)) + 600n
      const w1 = world.actors.w1.address
      await sendReverts(world, 'w1', 'WorkerStaking', 'bindPeer', [w1, peerId, 1n, '0x', peerSig], 'StakingSignatureExpired', [1n])
      await sendReverts(world, 'w1', 'WorkerStaking', 'bindPeer', [w1, '0x', deadline, '0x', peerSig], 'StakingInvalidPeerId')
      await sendReverts(world, 'w1', 'WorkerStaking', 'bindPeer', [w1, '0x' + '01'.repeat(129), deadline, '0x', peerSig], 'StakingInvalidPeerId')
      for (const short of ['0x', `0x${'55'.repeat(63)}`, `0x${'55'.repeat(65)}`]) {
        await sendReverts(world, 'w1', 'WorkerStaking', 'bindPeer', [w1, peerId, deadline, '0x', short], 'StakingInvalidPeerSignature')
      }
      await sendReverts(world, 'w1', 'WorkerStaking', 'bindPeer', [w1, peerId, deadline, await bindingSignature(world, 'w1', peerId, deadline), peerSig], 'StakingNotStaked', [w1])
      await send(world, 'w1', 'WorkerStaking', 'stake', [1], ETHER)
      await send(world, 'w2', 'WorkerStaking', 'stake', [1], ETHER)
      // signed by someone else, for another chain, for another contract, with a wrong nonce, malformed
      const bad = [
        await bindingSignature(world, 'w2', peerId, deadline),
        await bindingSignature(world, 'w1', peerId, deadline, { chainId: 137 }),
        await bindingSignature(world, 'w1', peerId, deadline, { staking: world.addresses.Settlement }),
        await bindingSignature(world, 'w1', peerId, deadline, { nonce: 5n }),
        '0x1234' as Hex
      ]
      for (const sig of bad) await sendReverts(world, 'stranger', 'WorkerStaking', 'bindPeer', [w1, peerId, deadline, sig, peerSig], 'StakingInvalidSignature', [w1])
      await send(world, 'w1', 'WorkerStaking', 'bindPeer', [w1, peerId, deadline, await bindingSignature(world, 'w1', peerId, deadline), peerSig])
      // a second account binding the same peer id is not refused (first come would let a squatter
      // block the real holder); nodes tell the two apart by the peer signature
      await send(world, 'w2', 'WorkerStaking', 'bindPeer', [world.actors.w2.address, peerId, deadline, await bindingSignature(world, 'w2', peerId, deadline), peerSig])
      assert.deepEqual(await world.read.staking.read.peerOf([w1]), [peerId, peerSig])
    })
    it('setGatewayInfo: StakingNotGateway, StakingInvalidGatewayInfo', async () => {
      await send(world, 'w1', 'WorkerStaking', 'stake', [1], ETHER)
      await sendReverts(world, 'w1', 'WorkerStaking', 'setGatewayInfo', ['https://x', '0x01'], 'StakingNotGateway', [world.actors.w1.address])
      await send(world, 'gateway', 'WorkerStaking', 'stake', [2], ETHER)
      for (const [endpoint, key] of [['', '0x01'], ['x'.repeat(257), '0x01'], ['https://x', '0x'], ['https://x', '0x' + '00'.repeat(129)]]) {
        await sendReverts(world, 'gateway', 'WorkerStaking', 'setGatewayInfo', [endpoint, key], 'StakingInvalidGatewayInfo')
      }
    })
    it('slash: StakingUnauthorizedSlasher for anyone but Settlement and ExecutionCoordinator', async () => {
      await send(world, 'w1', 'WorkerStaking', 'stake', [1], ETHER)
      for (const who of ['w1', 'deployer', 'owner'] as const) {
        await sendReverts(world, who, 'WorkerStaking', 'slash', [world.actors.w1.address, 10_000n], 'StakingUnauthorizedSlasher', [world.actors[who].address])
      }
    })
    it('slash: StakingInvalidSlashBps and StakingTransferFailed (on a staking contract whose slasher is a test account)', async () => {
      const staking = await deployRaw(world, 'w3', 'WorkerStaking', [ETHER, ETHER, 86_401n])
      const st = { address: staking, abi: workerStakingAbi }
      const receiver = await deployRaw(world, 'w3', 'ReentrantReceiver', [])
      await send(world, 'w3', st, 'setSlashers', [world.actors.w4.address, receiver])
      await send(world, 'w1', st, 'stake', [1], ETHER)
      await sendReverts(world, 'w4', st, 'slash', [world.actors.w1.address, 10_001n], 'StakingInvalidSlashBps', [10_001n])
      await send(world, 'w4', st, 'slash', [world.actors.w5.address, 10_000n]) // nothing staked: a no-op
      const { encodeFunctionData } = await import('viem')
      await send(world, 'w3', { address: receiver, abi: reentrantReceiverAbi }, 'setRejectPayments', [true])
      await sendReverts(world, 'w3', { address: receiver, abi: reentrantReceiverAbi }, 'execute', [staking, 0n, encodeFunctionData({ abi: workerStakingAbi, functionName: 'slash', args: [world.actors.w1.address, 5_000n] })], 'StakingTransferFailed', [receiver, ETHER / 2n])
    })
    it('setSlashers: StakingUnauthorizedInitializer, StakingSlashersAlreadySet, StakingInvalidSlasher', async () => {
      await sendReverts(world, 'w1', 'WorkerStaking', 'setSlashers', [world.actors.w1.address, world.actors.w1.address], 'StakingUnauthorizedInitializer', [world.actors.w1.address])
      await sendReverts(world, 'deployer', 'WorkerStaking', 'setSlashers', [world.actors.w1.address, world.actors.w1.address], 'StakingSlashersAlreadySet')
      const staking = await deployRaw(world, 'w3', 'WorkerStaking', [ETHER, ETHER, 86_401n])
      await sendReverts(world, 'w3', { address: staking, abi: workerStakingAbi }, 'setSlashers', [zeroAddress, world.actors.w1.address], 'StakingInvalidSlasher')
    })
  })
})
