/**
 * Peer-id squatting (issue 9, item 9): WorkerStaking.bindPeer used to give a peer id to whoever
 * bound it first, with no proof of holding the peer key, so a squatter could bind a victim's peer
 * id to its own stake and lock the victim out. Now the chain stores the peer key's Ed25519
 * signature and nodes verify it. Real chain (Hardhat EDR), real libp2p Ed25519 keys, the real
 * admission component the gateway runs.
 */
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { bytesToHex, keccak256, parseEventLogs, type Hex } from 'viem'
import { PEER_BINDING_MESSAGE_LENGTH, PEER_BINDING_TAG, peerBindingMessage, peerBindingTypedData, workerStakingAbi } from '../../contracts/abi/index.ts'
import { stakingAdmission, type StakingAdmission } from '../../node/staking/admission.ts'
import { signPeerBinding, verifyPeerBinding } from '../../node/staking/peer-binding.ts'
import { peerIdBytes } from '../../node/staking/register.ts'
import { silentLogger } from '../../node/logger.ts'
import { now, revertTo, send, setup, snapshot, type ActorName, type World } from './fixture.ts'

describe('contracts + node: peer bindings need the peer key (no squatting)', function () {
  this.timeout(120_000)
  let world: World
  let snap: string
  let admission: StakingAdmission

  before(async () => {
    world = await setup()
    const chain = { publicClient: world.publicClient, contracts: { addresses: world.addresses, finality: 'latest' as const, chainId: world.chainId } }
    // ttl 0: every verdict is read from the chain, so the test sees each binding at once
    admission = stakingAdmission({ ttlMs: 0 })({ chain: chain as any, logger: silentLogger() })
  })
  after(async () => { await world.close() })
  beforeEach(async () => { snap = await snapshot(world) })
  afterEach(async () => { await revertTo(world, snap) })

  async function bind (who: ActorName, peerKeyOrId: PrivateKey | string, peerSig?: Hex) {
    const id = typeof peerKeyOrId === 'string' ? peerKeyOrId : peerIdFromPrivateKey(peerKeyOrId).toString()
    const bytes = peerIdBytes(id)
    const deadline = (await now(world)) + 600n
    const sig = peerSig ?? await signPeerBinding(peerKeyOrId as PrivateKey, world.chainId, world.addresses.WorkerStaking, world.actors[who].address)
    return await send(world, who, 'WorkerStaking', 'bindPeer', [world.actors[who].address, bytes, deadline, await bindingSignature(who, bytes, deadline), sig])
  }
  async function bindingSignature (who: ActorName, peerId: Hex, deadline: bigint): Promise<Hex> {
    const actor = world.actors[who]
    const nonce = await world.read.staking.read.nonces([actor.address])
    return await actor.account.signTypedData(peerBindingTypedData(world.chainId, world.addresses.WorkerStaking, { account: actor.address, peerId, nonce, deadline }))
  }
  const admit = async (who: ActorName, peerId: string): Promise<boolean> => await admission.admit({ address: world.actors[who].address, peerId })

  it('defines the signed message as 96 packed bytes: tag, chain id, WorkerStaking, account', () => {
    const m = peerBindingMessage(world.chainId, world.addresses.WorkerStaking, world.actors.w1.address)
    assert.equal(m.byteLength, PEER_BINDING_MESSAGE_LENGTH)
    assert.equal(new TextDecoder().decode(m.subarray(0, 24)), PEER_BINDING_TAG)
    assert.equal(BigInt(bytesToHex(m.subarray(24, 56))), BigInt(world.chainId))
    assert.equal(bytesToHex(m.subarray(56, 76)), world.addresses.WorkerStaking.toLowerCase())
    assert.equal(bytesToHex(m.subarray(76, 96)), world.actors.w1.address.toLowerCase())
  })

  it('a real binding (signed by the peer key) is admitted; the event carries the signature', async () => {
    const key = await generateKeyPair('Ed25519')
    const id = peerIdFromPrivateKey(key).toString()
    assert.equal(await admit('w1', id), false, 'not admitted before binding')
    const r = await bind('w1', key)
    const [ev] = parseEventLogs({ abi: workerStakingAbi, logs: r.logs, eventName: 'PeerBound' })
    assert.equal(ev.args.peerIdHash, keccak256(peerIdBytes(id)))
    assert.equal(await verifyPeerBinding(id, ev.args.peerSig, world.chainId, world.addresses.WorkerStaking, world.actors.w1.address), true)
    assert.equal(await admit('w1', id), true)
  })

  it('a squatter binding the victim\'s peer id is ignored and does not stop the victim binding', async () => {
    const victimKey = await generateKeyPair('Ed25519')
    const victimId = peerIdFromPrivateKey(victimKey).toString()
    const squatterKey = await generateKeyPair('Ed25519')
    // 1. the squatter (staked worker w2) binds the victim's peer id first, with garbage, with a
    //    signature by its own peer key, and with a signature over its account by a key that is not the victim's
    for (const sig of [`0x${'00'.repeat(64)}` as Hex, await signPeerBinding(squatterKey, world.chainId, world.addresses.WorkerStaking, world.actors.w2.address)]) {
      await bind('w2', victimId, sig)
      assert.equal(await admit('w2', victimId), false, 'the squatter is not admitted under the victim\'s peer id')
    }
    // 2. the victim binds its own peer id afterwards: not refused, and admitted
    const r = await bind('w1', victimKey)
    assert.equal(await admit('w1', victimId), true)
    // 3. replaying the victim's real peer signature under the squatter's account does not help:
    //    it names the victim's account
    const [ev] = parseEventLogs({ abi: workerStakingAbi, logs: r.logs, eventName: 'PeerBound' })
    await bind('w2', victimId, ev.args.peerSig)
    assert.equal(await admit('w2', victimId), false)
    assert.equal(await admit('w1', victimId), true, 'the squatter\'s later binding does not displace the victim')
  })

  it('a peer signature made for another chain or another WorkerStaking is not accepted', async () => {
    const key = await generateKeyPair('Ed25519')
    const id = peerIdFromPrivateKey(key).toString()
    for (const [chainId, staking] of [[137, world.addresses.WorkerStaking], [world.chainId, world.addresses.Settlement]] as const) {
      await bind('w1', id, await signPeerBinding(key, chainId, staking, world.actors.w1.address))
      assert.equal(await admit('w1', id), false)
    }
  })

  it('an advert from an unstaked account is not admitted even with a valid binding signature', async () => {
    const key = await generateKeyPair('Ed25519')
    const id = peerIdFromPrivateKey(key).toString()
    await bind('w3', key)
    assert.equal(await admit('w3', id), true)
    await send(world, 'w3', 'WorkerStaking', 'requestWithdrawal', [(await world.read.staking.read.stakeOf([world.actors.w3.address])).amount])
    assert.equal(await admit('w3', id), false)
  })
})
