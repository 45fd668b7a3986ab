import assert from 'node:assert/strict'
import { keccak256, parseEventLogs, toHex, zeroAddress } from 'viem'
import { functionRegistryAbi } from '../../contracts/abi/index.ts'
import { functionId, projectId } from '../../protocol/eip712.ts'
import { deterministicMask } from '../../node/deploy/deploy.ts'
import type { Manifest } from '../../node/deploy/manifest.ts'
import { revertTo, send, sendReverts, setup, snapshot, type World } from './fixture.ts'

describe('contracts: FunctionRegistry', function () {
  this.timeout(120_000)
  let world: World
  let snap: string
  const cid = '0x01711220' + '11'.repeat(32)
  const commitHash = keccak256(toHex('commit'))
  before(async () => { world = await setup({ prepare: false }) })
  after(async () => { await world.close() })
  beforeEach(async () => { snap = await snapshot(world) })
  afterEach(async () => { await revertTo(world, snap) })

  it('creates a project in the caller\'s namespace, records versions and registers functions', async () => {
    const me = world.actors.w1.address
    const r = await send(world, 'w1', 'FunctionRegistry', 'deploy', [me, 'shop', cid, commitHash, ['api', 'cart'], 0n])
    const events = parseEventLogs({ abi: functionRegistryAbi, logs: r.logs })
    assert.deepEqual(events.map(e => e.eventName), ['ProjectCreated', 'FunctionRegistered', 'FunctionRegistered', 'VersionDeployed', 'VersionActivated'])
    const pid = projectId(me, 'shop')
    assert.equal(await world.read.registry.read.ownerOf([pid]), me)
    assert.equal(await world.read.registry.read.projectOfFunction([functionId(me, 'shop', 'cart')]), pid)
    await send(world, 'w1', 'FunctionRegistry', 'deploy', [me, 'shop', '0x0155', commitHash, ['api'], 0n])
    assert.equal(await world.read.registry.read.activeVersion([pid]), 2)
    assert.equal(await world.read.registry.read.versionCount([pid]), 2)
    const v1 = await world.read.registry.read.getVersion([pid, 1])
    assert.equal(v1.manifestCid, cid)
    assert.equal(v1.sourceCommit, commitHash)
  })

  it('rolls back to an earlier version and forward again', async () => {
    const pid = world.projectId
    await send(world, 'owner', 'FunctionRegistry', 'deploy', [world.actors.owner.address, 'demo', cid, commitHash, ['hello'], 0n])
    const r = await send(world, 'owner', 'FunctionRegistry', 'rollback', [pid, 1])
    const [ev] = parseEventLogs({ abi: functionRegistryAbi, logs: r.logs, eventName: 'VersionActivated' })
    assert.equal(ev.args.version, 1)
    assert.equal(ev.args.previousVersion, 2)
    assert.equal(await world.read.registry.read.activeVersion([pid]), 1)
    await send(world, 'owner', 'FunctionRegistry', 'rollback', [pid, 2])
    assert.equal(await world.read.registry.read.activeVersion([pid]), 2)
  })

  it('transfers a project in two steps; the namespace (and ids) stay', async () => {
    const pid = world.projectId
    await send(world, 'owner', 'FunctionRegistry', 'transferProject', [pid, world.actors.w2.address])
    assert.equal(await world.read.registry.read.pendingOwnerOf([pid]), world.actors.w2.address)
    await send(world, 'w2', 'FunctionRegistry', 'acceptProject', [pid])
    assert.equal(await world.read.registry.read.ownerOf([pid]), world.actors.w2.address)
    // the new owner deploys into the original namespace; the old one no longer can
    await send(world, 'w2', 'FunctionRegistry', 'deploy', [world.actors.owner.address, 'demo', cid, commitHash, ['hello'], 0n])
    await sendReverts(world, 'owner', 'FunctionRegistry', 'deploy', [world.actors.owner.address, 'demo', cid, commitHash, ['hello'], 0n], 'RegistryNotProjectOwner', [pid, world.actors.owner.address])
  })

  it('records which functions are deterministic; the latest deploy listing a function sets its flag', async () => {
    const me = world.actors.w1.address
    const r = await send(world, 'w1', 'FunctionRegistry', 'deploy', [me, 'shop', cid, commitHash, ['api', 'cart', 'pure'], 0b101n])
    const set = parseEventLogs({ abi: functionRegistryAbi, logs: r.logs, eventName: 'FunctionDeterminismSet' })
    assert.deepEqual(set.map(e => [e.args.functionId, e.args.deterministic]), [[functionId(me, 'shop', 'api'), true], [functionId(me, 'shop', 'pure'), true]])
    const det = async (name: string): Promise<boolean> => await world.read.registry.read.isDeterministic([functionId(me, 'shop', name)])
    assert.deepEqual([await det('api'), await det('cart'), await det('pure')], [true, false, true])
    // v2 drops the declaration on api and adds it on cart; pure is not listed and keeps its flag
    await send(world, 'w1', 'FunctionRegistry', 'deploy', [me, 'shop', cid, commitHash, ['cart', 'api'], 0b01n])
    assert.deepEqual([await det('api'), await det('cart'), await det('pure')], [false, true, true])
    // a rollback is about code versions, not the declaration
    await send(world, 'w1', 'FunctionRegistry', 'rollback', [projectId(me, 'shop'), 1])
    assert.deepEqual([await det('api'), await det('cart')], [false, true])
    assert.equal(await world.read.registry.read.isDeterministic([keccak256('0x1234')]), false)
  })

  it('the deploy command\'s mask: only `"deterministic": true` sets a bit (absent, false or a non-boolean do not)', async () => {
    const me = world.actors.w1.address
    const fns = { pure: { deterministic: true }, clock: {}, off: { deterministic: false }, odd: { deterministic: 'true' } }
    const manifest = { functions: fns } as unknown as Manifest
    const names = ['clock', 'pure', 'off', 'odd']
    assert.equal(deterministicMask(manifest, names), 0b10n)
    await send(world, 'w1', 'FunctionRegistry', 'deploy', [me, 'shop', cid, commitHash, names, deterministicMask(manifest, names)])
    const flags = await Promise.all(names.map(async n => await world.read.registry.read.isDeterministic([functionId(me, 'shop', n)])))
    assert.deepEqual(flags, [false, true, false, false])
  })

  describe('reverts', () => {
    it('deploy: RegistryInvalidDeterministicMask for a bit past the function list', async () => {
      const me = world.actors.w1.address
      await sendReverts(world, 'w1', 'FunctionRegistry', 'deploy', [me, 'p', cid, commitHash, ['f', 'g'], 0b100n], 'RegistryInvalidDeterministicMask', [0b100n, 2n])
      await sendReverts(world, 'w1', 'FunctionRegistry', 'deploy', [me, 'p', cid, commitHash, ['f'], 1n << 255n], 'RegistryInvalidDeterministicMask', [1n << 255n, 1n])
      await send(world, 'w1', 'FunctionRegistry', 'deploy', [me, 'p', cid, commitHash, ['f', 'g'], 0b11n])
    })
    it('deploy: RegistryInvalidManifest for an empty or oversized CID', async () => {
      const me = world.actors.w1.address
      await sendReverts(world, 'w1', 'FunctionRegistry', 'deploy', [me, 'p', '0x', commitHash, ['f'], 0n], 'RegistryInvalidManifest')
      await sendReverts(world, 'w1', 'FunctionRegistry', 'deploy', [me, 'p', '0x' + 'aa'.repeat(129), commitHash, ['f'], 0n], 'RegistryInvalidManifest')
    })
    it('deploy: RegistryInvalidFunctionCount for 0 or 65 functions', async () => {
      const me = world.actors.w1.address
      await sendReverts(world, 'w1', 'FunctionRegistry', 'deploy', [me, 'p', cid, commitHash, [], 0n], 'RegistryInvalidFunctionCount', [0n])
      const many = Array.from({ length: 65 }, (_, i) => `f${i}`)
      await sendReverts(world, 'w1', 'FunctionRegistry', 'deploy', [me, 'p', cid, commitHash, many, 0n], 'RegistryInvalidFunctionCount', [65n])
    })
    it('deploy: RegistryNotNamespaceOwner when creating in someone else\'s namespace', async () => {
      await sendReverts(world, 'w1', 'FunctionRegistry', 'deploy', [world.actors.w2.address, 'p', cid, commitHash, ['f'], 0n], 'RegistryNotNamespaceOwner', [world.actors.w2.address, world.actors.w1.address])
    })
    it('deploy: RegistryNotProjectOwner when deploying to another owner\'s project', async () => {
      await sendReverts(world, 'w1', 'FunctionRegistry', 'deploy', [world.actors.owner.address, 'demo', cid, commitHash, ['f'], 0n], 'RegistryNotProjectOwner', [world.projectId, world.actors.w1.address])
    })
    it('deploy: RegistryInvalidName for bad project and function names', async () => {
      const me = world.actors.w1.address
      for (const bad of ['', 'Upper', 'a_b', 'a/b', 'x'.repeat(65), 'é']) {
        await sendReverts(world, 'w1', 'FunctionRegistry', 'deploy', [me, bad, cid, commitHash, ['f'], 0n], 'RegistryInvalidName', [bad])
        await sendReverts(world, 'w1', 'FunctionRegistry', 'deploy', [me, 'ok', cid, commitHash, ['f', bad], 0n], 'RegistryInvalidName', [bad])
      }
    })
    it('rollback: RegistryUnknownProject, RegistryNotProjectOwner, RegistryUnknownVersion, RegistryVersionAlreadyActive', async () => {
      const unknown = keccak256('0x1234')
      await sendReverts(world, 'owner', 'FunctionRegistry', 'rollback', [unknown, 1], 'RegistryUnknownProject', [unknown])
      await sendReverts(world, 'w1', 'FunctionRegistry', 'rollback', [world.projectId, 1], 'RegistryNotProjectOwner', [world.projectId, world.actors.w1.address])
      await sendReverts(world, 'owner', 'FunctionRegistry', 'rollback', [world.projectId, 0], 'RegistryUnknownVersion', [world.projectId, 0])
      await sendReverts(world, 'owner', 'FunctionRegistry', 'rollback', [world.projectId, 2], 'RegistryUnknownVersion', [world.projectId, 2])
      await sendReverts(world, 'owner', 'FunctionRegistry', 'rollback', [world.projectId, 1], 'RegistryVersionAlreadyActive', [world.projectId, 1])
    })
    it('transferProject: RegistryUnknownProject, RegistryNotProjectOwner, RegistryInvalidNewOwner', async () => {
      const unknown = keccak256('0x1234')
      await sendReverts(world, 'owner', 'FunctionRegistry', 'transferProject', [unknown, world.actors.w1.address], 'RegistryUnknownProject', [unknown])
      await sendReverts(world, 'w1', 'FunctionRegistry', 'transferProject', [world.projectId, world.actors.w1.address], 'RegistryNotProjectOwner')
      await sendReverts(world, 'owner', 'FunctionRegistry', 'transferProject', [world.projectId, zeroAddress], 'RegistryInvalidNewOwner', [zeroAddress])
      await sendReverts(world, 'owner', 'FunctionRegistry', 'transferProject', [world.projectId, world.actors.owner.address], 'RegistryInvalidNewOwner', [world.actors.owner.address])
    })
    it('acceptProject: RegistryUnknownProject, RegistryNotPendingOwner', async () => {
      const unknown = keccak256('0x1234')
      await sendReverts(world, 'w1', 'FunctionRegistry', 'acceptProject', [unknown], 'RegistryUnknownProject', [unknown])
      await sendReverts(world, 'w1', 'FunctionRegistry', 'acceptProject', [world.projectId], 'RegistryNotPendingOwner', [world.projectId, world.actors.w1.address])
      await send(world, 'owner', 'FunctionRegistry', 'transferProject', [world.projectId, world.actors.w2.address])
      await sendReverts(world, 'w1', 'FunctionRegistry', 'acceptProject', [world.projectId], 'RegistryNotPendingOwner', [world.projectId, world.actors.w1.address])
    })
    it('getVersion: RegistryUnknownVersion', async () => {
      await assert.rejects(world.read.registry.read.getVersion([world.projectId, 5]), /RegistryUnknownVersion/)
    })
  })
})
