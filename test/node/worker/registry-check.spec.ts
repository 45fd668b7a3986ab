/**
 * The worker's registry check against a real Hardhat chain: FunctionRegistry deploys and rollbacks
 * by the chain's deployer, manifests in a real block storage, and the check answering "is this
 * bundle the active one of <wallet>/<project>/<function>?" — including a deploy one block old, the
 * grace period for the previous version, and a chain that cannot be reached (fail closed).
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { Registry } from 'prom-client'
import { createWalletClient, http, type Address } from 'viem'
import { generatePrivateKey } from 'viem/accounts'
import { functionRegistryAbi } from '#contracts'
import { functionId, projectId, rawCid, type FunctionRef } from '#protocol'
import {
  blockStorage, chainClient, cidToBytes, createMeshNode, createWorker, encodeManifest, fastSigner, loadContracts, registryCheck, silentLogger,
  type BlockStorage, type ChainClient, type PeerHostLibp2p, type RegistryCheck
} from '../../../node/index.ts'
import { chainOf } from '../../../node/chain/client.ts'
import { startTestChain, type TestChain } from '../../chain/helpers.ts'

const GRACE_MS = 1_500
const OPTIONS = { isolation: 'function', memoryMb: 128, network: [], timeoutMs: 5_000 } as const

describe('worker registry check: only the bundle FunctionRegistry names as active runs', function () {
  this.timeout(60_000)
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-registry-check-'))
  let chain: TestChain
  let client: ChainClient
  let libp2p: PeerHostLibp2p
  let storage: BlockStorage
  let metrics: Registry
  let check: RegistryCheck
  let owner: Address
  const v1 = randomBundle()
  const v2 = randomBundle()
  const other = randomBundle()

  function randomBundle (): string {
    return rawCid(new Uint8Array(randomBytes(64)))
  }

  function ref (name: string, bundleCid: string, project = 'app'): FunctionRef {
    return { wallet: owner, project, name, id: functionId(owner, project, name), bundleCid }
  }

  /** Stores a manifest for `functions` and registers it as a new version of `<owner>/<project>`. */
  async function deploy (project: string, functions: Record<string, string>): Promise<void> {
    const { bytes, cid } = encodeManifest({
      type: 'peerhost-manifest',
      v: 1,
      sourceCommit: `0x${'00'.repeat(32)}`,
      env: {},
      functions: Object.fromEntries(Object.entries(functions).map(([name, bundle]) => [name, { bundle, entry: `functions/${name}.ts`, options: { ...OPTIONS, network: [] } }]))
    })
    await storage.put(cid, bytes)
    await send('deploy', [owner, project, cidToBytes(cid), `0x${'00'.repeat(32)}`, Object.keys(functions), 0n])
  }

  async function send (functionName: 'deploy' | 'rollback', args: readonly unknown[]): Promise<void> {
    const wallet = createWalletClient({ account: owner, chain: chainOf(chain), transport: http(chain.rpcUrl) })
    const hash = await wallet.writeContract({ address: chain.addresses.FunctionRegistry, abi: functionRegistryAbi, functionName, args } as any)
    await chain.publicClient.waitForTransactionReceipt({ hash, pollingInterval: 50 })
  }

  async function count (verdict: string): Promise<number> {
    const m = await metrics.getSingleMetric('peerhost_worker_registry_checks_total')?.get()
    return m?.values.find(v => v.labels.verdict === verdict)?.value ?? 0
  }

  before(async () => {
    chain = await startTestChain()
    owner = chain.deployer
    client = chainClient(loadContracts(chain.contractsFile))
    libp2p = await createMeshNode({ privateKey: await generateKeyPair('Ed25519') })
    await libp2p.start()
    storage = blockStorage({ dataDir: join(dir, 'storage'), fetchTimeoutMs: 1_000 })({ libp2p, logger: silentLogger() })
    await storage.start()
    metrics = new Registry()
    // a long TTL: every change below is learnt through a miss, never through expiry
    check = registryCheck({ graceMs: GRACE_MS, ttlMs: 60_000, blockNumberCacheMs: 0 })({ chain: client, storage, logger: silentLogger(), registry: metrics })
  })
  after(async () => {
    await storage?.stop()
    await libp2p?.stop()
    await chain?.stop()
    if (chain !== undefined) rmSync(chain.dir, { recursive: true, force: true })
    rmSync(dir, { recursive: true, force: true })
  })

  it('accepts the active bundle of version 1 and refuses a random CID, naming both', async () => {
    await deploy('app', { greet: v1, time: other })
    assert.deepEqual(await check.check(ref('greet', v1)), { ok: true, via: 'active', version: 1 })
    const random = randomBundle()
    assert.deepEqual(await check.check(ref('greet', random)), { ok: false, reason: 'not-active', version: 1, expected: v1 })
    const refusal = await check.refusal(ref('greet', random))
    assert.equal(refusal?.code, 'BUNDLE_NOT_ACTIVE')
    assert.ok(refusal.message.includes(`${owner}/app/greet`), refusal.message)
    assert.ok(refusal.message.includes(random) && refusal.message.includes(v1), refusal.message)
    assert.deepEqual(refusal.details, { reason: 'not-active', given: random, version: 1, expected: v1 })
    assert.equal(await check.refusal(ref('greet', v1)), undefined)
    assert.equal(await count('refused'), 1)
    assert.equal(await count('active'), 1)
  })

  it('refuses another function\'s bundle, an unknown function, an unknown project and a forged function id', async () => {
    // `time`'s bundle is registered, but not as `greet`
    assert.equal((await check.check(ref('greet', other))).ok, false)
    assert.deepEqual(await check.check(ref('nope', v1)), { ok: false, reason: 'unknown-function', version: 1 })
    assert.deepEqual(await check.check(ref('greet', v1, 'never-deployed')), { ok: false, reason: 'unknown-project', version: 0 })
    const forged = { ...ref('greet', v1), id: functionId(owner, 'app', 'time') }
    assert.deepEqual(await check.check(forged), { ok: false, reason: 'function-id', version: 0 })
    assert.equal((await check.refusal(ref('greet', v1, 'never-deployed')))?.code, 'BUNDLE_NOT_ACTIVE')
  })

  it('accepts version 2 one block after its deploy, and version 1 only during the grace period', async () => {
    await deploy('app', { greet: v2, time: other })
    // the cached entry (version 1) is fresh: the miss alone makes the check re-read the chain
    assert.deepEqual(await check.check(ref('greet', v2)), { ok: true, via: 'active', version: 2 })
    assert.deepEqual(await check.check(ref('greet', v1)), { ok: true, via: 'grace', version: 1 })
    // an unchanged function keeps being accepted as active
    assert.deepEqual(await check.check(ref('time', other)), { ok: true, via: 'active', version: 2 })
    assert.equal(await check.refusal(ref('greet', v1)), undefined)
    assert.equal(await count('grace'), 1)
    await new Promise(resolve => setTimeout(resolve, GRACE_MS + 100))
    assert.deepEqual(await check.check(ref('greet', v1)), { ok: false, reason: 'not-active', version: 2, expected: v2 })
    assert.deepEqual(await check.check(ref('greet', v2)), { ok: true, via: 'active', version: 2 })
  })

  it('follows a rollback: version 1 active again, version 2 in grace, then refused', async () => {
    await send('rollback', [projectId(owner, 'app'), 1])
    assert.deepEqual(await check.check(ref('greet', v1)), { ok: true, via: 'active', version: 1 })
    assert.deepEqual(await check.check(ref('greet', v2)), { ok: true, via: 'grace', version: 2 })
    await new Promise(resolve => setTimeout(resolve, GRACE_MS + 100))
    assert.deepEqual(await check.check(ref('greet', v2)), { ok: false, reason: 'not-active', version: 1, expected: v1 })
  })

  it('re-reads a project after its TTL, and not at all for a flood of misses while no block is mined', async () => {
    let reads = 0
    const counting = { ...client, publicClient: new Proxy(client.publicClient, { get (target, p) { if (p === 'readContract') reads++; return (target as any)[p] } }) }
    const short = registryCheck({ graceMs: GRACE_MS, ttlMs: 300, blockNumberCacheMs: 0 })({ chain: counting, storage, logger: silentLogger() })
    assert.equal((await short.check(ref('greet', v1))).ok, true)
    const first = reads
    assert.ok(first >= 2, 'activeVersion and getVersion read')
    assert.equal((await short.check(ref('greet', v1))).ok, true)
    assert.equal(reads, first, 'a hit within the TTL reads nothing')
    await new Promise(resolve => setTimeout(resolve, 350))
    assert.equal((await short.check(ref('greet', v1))).ok, true)
    assert.equal(reads, first * 2, 'a hit after the TTL reads the chain again')
    // 50 refused jobs at once: one shared block-number read, no contract read (no new block)
    const verdicts = await Promise.all(Array.from({ length: 50 }, async () => await short.check(ref('greet', randomBundle()))))
    assert.ok(verdicts.every(v => !v.ok))
    assert.equal(reads, first * 2, `${reads - first * 2} contract reads for 50 refused jobs`)
  })

  it('keeps at most maxProjects projects: an evicted one is read from the chain again', async () => {
    let reads = 0
    const counting = { ...client, publicClient: new Proxy(client.publicClient, { get (target, p) { if (p === 'readContract') reads++; return (target as any)[p] } }) }
    const small = registryCheck({ ttlMs: 60_000, maxProjects: 1, maxManifests: 1, blockNumberCacheMs: 0 })({ chain: counting, storage, logger: silentLogger() })
    assert.equal((await small.check(ref('greet', v1))).ok, true)
    const once = reads
    assert.equal((await small.check(ref('greet', v1))).ok, true)
    assert.equal(reads, once, 'cached')
    assert.equal((await small.check(ref('greet', v1, 'never-deployed'))).ok, false)
    const afterOther = reads
    assert.equal((await small.check(ref('greet', v1))).ok, true)
    assert.equal(reads, afterOther + once, 'app was evicted by the second project and read again')
  })

  it('makes the worker\'s execute path (the chain fallback) refuse a bundle that is not active, before fetching or running it', async () => {
    let fetched = 0
    let executed = 0
    const executor = { kind: 'stub', start: async () => {}, stop: async () => {}, warm: () => [], execute: async () => { executed++; throw new Error('must not run') } }
    const worker = await createWorker({ dataDir: join(dir, 'worker'), bootstrap: [] }, {
      privateKey: await generateKeyPair('Ed25519'),
      signer: fastSigner(generatePrivateKey()),
      executor: executor as any,
      logger: silentLogger(),
      registry: new Registry(),
      libp2p,
      fetchBundle: async () => { fetched++; return undefined },
      checkBundle: async (fn, from, signal) => await check.refusal(fn, { from, signal })
    })
    const random = randomBundle()
    const job = {
      jobId: `0x${'11'.repeat(32)}` as const,
      fn: ref('greet', random),
      options: { ...OPTIONS, network: [] },
      env: {},
      request: { method: 'GET', url: 'http://localhost/', headers: [], body: new Uint8Array() },
      deadline: Date.now() + 5_000
    }
    await assert.rejects(worker.execute(job, {}), (err: any) => {
      assert.equal(err.code, 'BUNDLE_NOT_ACTIVE')
      assert.ok(err.message.includes(random) && err.message.includes(v1), err.message)
      return true
    })
    assert.equal(fetched, 0)
    assert.equal(executed, 0)
  })

  it('refuses with BUNDLE_UNAVAILABLE when the chain cannot be read (fail closed)', async () => {
    const contracts = loadContracts(chain.contractsFile)
    const dead = chainClient({ ...contracts, rpcUrl: 'http://127.0.0.1:9' })
    const offline = registryCheck()({ chain: dead, storage, logger: silentLogger() })
    await assert.rejects(offline.check(ref('greet', v1)), { code: 'REGISTRY_UNAVAILABLE' })
    const refusal = await offline.refusal(ref('greet', v1))
    assert.equal(refusal?.code, 'BUNDLE_UNAVAILABLE')
  })

  it('refuses with BUNDLE_UNAVAILABLE when the manifest cannot be fetched', async () => {
    const { cid } = encodeManifest({ type: 'peerhost-manifest', v: 1, sourceCommit: `0x${'00'.repeat(32)}`, env: {}, functions: { lost: { bundle: v1, entry: 'functions/lost.ts', options: { ...OPTIONS, network: [] } } } })
    // registered, but its bytes are nowhere
    await send('deploy', [owner, 'lost', cidToBytes(cid), `0x${'00'.repeat(32)}`, ['lost'], 0n])
    const refusal = await check.refusal(ref('lost', v1, 'lost'))
    assert.equal(refusal?.code, 'BUNDLE_UNAVAILABLE')
    assert.ok(refusal.message.includes(`${owner}/lost/lost`), refusal.message)
  })

})
