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
import { functionId, projectId, rawCid, type FunctionOptions, type FunctionRef } from '#protocol'
import {
  blockStorage, chainClient, cidToBytes, createMeshNode, createWorker, encodeManifest, fastSigner, loadContracts, registryCheck, silentLogger,
  type BlockStorage, type ChainClient, type PeerHostLibp2p, type RegistryCheck
} from '../../../node/index.ts'
import { chainOf } from '../../../node/chain/client.ts'
import { startTestChain, type TestChain } from '../../chain/helpers.ts'
import { waitFor } from '../../helpers/network.ts'

const GRACE_MS = 1_500
const OPTIONS = { isolation: 'function', memoryMb: 128, network: [], timeoutMs: 5_000 } as const
const NETWORK = ['api.example.com', '*.example.org'] as const
const ENV = { GREETING: 'hi' }
/** what an accepted verdict carries: the manifest's options and env, which the job runs with */
const REGISTERED = { options: { ...OPTIONS, network: [...NETWORK] }, env: ENV }

describe('worker registry check: only the bundle FunctionRegistry names as active runs', function () {
  this.timeout(300_000)
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
      env: ENV,
      functions: Object.fromEntries(Object.entries(functions).map(([name, bundle]) => [name, { bundle, entry: `functions/${name}.ts`, options: { ...OPTIONS, network: [...NETWORK] }, deterministic: false }]))
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
    assert.deepEqual(await check.check(ref('greet', v1)), { ok: true, via: 'active', version: 1, ...REGISTERED })
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
    assert.deepEqual(await check.check(ref('greet', v2)), { ok: true, via: 'active', version: 2, ...REGISTERED })
    assert.deepEqual(await check.check(ref('greet', v1)), { ok: true, via: 'grace', version: 1, ...REGISTERED })
    // an unchanged function keeps being accepted as active
    assert.deepEqual(await check.check(ref('time', other)), { ok: true, via: 'active', version: 2, ...REGISTERED })
    assert.equal(await check.refusal(ref('greet', v1)), undefined)
    assert.equal(await count('grace'), 1)
    await new Promise(resolve => setTimeout(resolve, GRACE_MS + 100))
    assert.deepEqual(await check.check(ref('greet', v1)), { ok: false, reason: 'not-active', version: 2, expected: v2 })
    assert.deepEqual(await check.check(ref('greet', v2)), { ok: true, via: 'active', version: 2, ...REGISTERED })
  })

  it('follows a rollback: version 1 active again, version 2 in grace, then refused', async () => {
    await send('rollback', [projectId(owner, 'app'), 1])
    assert.deepEqual(await check.check(ref('greet', v1)), { ok: true, via: 'active', version: 1, ...REGISTERED })
    assert.deepEqual(await check.check(ref('greet', v2)), { ok: true, via: 'grace', version: 2, ...REGISTERED })
    await new Promise(resolve => setTimeout(resolve, GRACE_MS + 100))
    assert.deepEqual(await check.check(ref('greet', v2)), { ok: false, reason: 'not-active', version: 1, expected: v1 })
  })

  it('re-reads a project after its TTL, and not at all for a flood of misses while no block is mined', async () => {
    let reads = 0
    const counting = { ...client, publicClient: new Proxy(client.publicClient, { get (target, p) { if (p === 'readContract') reads++; return (target as any)[p] } }) }
    // refreshMs = ttlMs and no stale window: no background re-read, so every read here is one a job waited for
    const short = registryCheck({ graceMs: GRACE_MS, ttlMs: 300, refreshMs: 300, staleMs: 0, blockNumberCacheMs: 0 })({ chain: counting, storage, logger: silentLogger() })
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

  it('never makes a matching job wait on the chain: past refreshMs the project is re-read in the background', async () => {
    let reads = 0
    let open: () => void = () => {}
    let gate = Promise.resolve()
    // every contract read waits for the gate: a check that returns while it is shut did not wait on the chain
    const gated = { ...client, publicClient: new Proxy(client.publicClient, { get (target, p) {
      const v = (target as any)[p]
      if (p !== 'readContract') return v
      return async (...args: unknown[]) => { reads++; await gate; return await v.apply(target, args) }
    } }) }
    const fresh = registryCheck({ graceMs: GRACE_MS, ttlMs: 60_000, refreshMs: 0, blockNumberCacheMs: 0 })({ chain: gated, storage, logger: silentLogger() })
    assert.equal((await fresh.check(ref('greet', v1))).ok, true)
    const first = reads
    gate = new Promise(resolve => { open = resolve })
    // the chain is now "slow": the cached verdict answers, and a re-read starts behind it
    assert.equal((await fresh.check(ref('greet', v1))).ok, true)
    await waitFor('a background re-read', () => reads > first ? true : undefined, 10_000, 10)
    open()
    // a bundle that is not active is still never accepted from the cache
    assert.equal((await fresh.check(ref('greet', randomBundle()))).ok, false)
  })

  it('past its TTL, a matching entry serves while the re-read is stuck on a slow chain, up to staleMs; then a matching job waits for the chain', async () => {
    let open: () => void = () => {}
    let gate = Promise.resolve()
    let reads = 0
    const gated = { ...client, publicClient: new Proxy(client.publicClient, { get (target, p) {
      const v = (target as any)[p]
      if (p !== 'readContract') return v
      return async (...args: unknown[]) => { reads++; await gate; return await v.apply(target, args) }
    } }) }
    const slow = registryCheck({ graceMs: GRACE_MS, ttlMs: 200, refreshMs: 100, staleMs: 600, blockNumberCacheMs: 0 })({ chain: gated, storage, logger: silentLogger() })
    assert.equal((await slow.check(ref('greet', v1))).ok, true)
    gate = new Promise(resolve => { open = resolve })
    const before = reads
    await new Promise(resolve => setTimeout(resolve, 300))
    // past the TTL, the chain stuck: the job is answered from the cache at once, a re-read is started
    const t0 = performance.now()
    assert.equal((await slow.check(ref('greet', v1))).ok, true)
    assert.ok(performance.now() - t0 < 100, 'did not wait on the chain')
    await waitFor('the re-read', () => reads > before ? true : undefined, 10_000, 10)
    // a bundle that is not active is still never accepted from the stale entry: it waits for the read
    const miss = new AbortController()
    const waiting = slow.check(ref('greet', randomBundle()), { signal: miss.signal })
    // past TTL + staleMs the entry admits nothing: a matching job waits for the chain too
    await new Promise(resolve => setTimeout(resolve, 600))
    const late = new AbortController()
    let settled = false
    const lateCheck = slow.check(ref('greet', v1), { signal: late.signal }).finally(() => { settled = true })
    await new Promise(resolve => setTimeout(resolve, 150))
    assert.equal(settled, false, 'past TTL + staleMs a matching job waits for the chain')
    open()
    assert.equal((await lateCheck).ok, true)
    assert.equal((await waiting).ok, false)
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
      checkJob: async (job, from, signal) => await check.checkJob(job, { from, signal })
    })
    const random = randomBundle()
    const job = {
      jobId: `0x${'11'.repeat(32)}` as const,
      fn: ref('greet', random),
      options: { ...OPTIONS, network: [...NETWORK] },
      env: { ...ENV },
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

  it('refuses a job whose options or env are not the manifest\'s (a gateway raising memory, opening the network, changing env), and hands back the manifest\'s', async () => {
    const fn = ref('greet', v1)
    const exact = await check.checkJob({ fn, options: { ...OPTIONS, network: [...NETWORK].reverse() }, env: { ...ENV } })
    assert.equal(exact.refused, undefined)
    assert.deepEqual(exact.refused === undefined && exact.run, { options: { ...OPTIONS, network: [...NETWORK] }, env: ENV })
    const changes: Array<[{ options?: FunctionOptions, env?: Record<string, string> }, string]> = [
      [{ options: { ...OPTIONS, network: [...NETWORK], memoryMb: 2048 } }, 'memoryMb'],
      [{ options: { ...OPTIONS, network: [...NETWORK, 'metadata.google.internal'] } }, 'network'],
      [{ options: { ...OPTIONS, network: [...NETWORK], timeoutMs: 300_000, isolation: 'execution' } }, 'timeoutMs,isolation'],
      [{ env: { GREETING: 'pwned' } }, 'env'],
      [{ env: { ...ENV, EXTRA: '1' } }, 'env']
    ]
    for (const [change, fields] of changes) {
      const job = { fn, options: { ...OPTIONS, network: [...NETWORK] }, env: { ...ENV }, ...change }
      const verdict = await check.checkJob(job)
      assert.equal(verdict.refused?.code, 'OPTIONS_MISMATCH', JSON.stringify(change))
      assert.equal(verdict.refused?.details?.fields, fields)
      assert.equal(verdict.refused?.details?.memoryMb, 128)
    }
    // a bundle refusal still comes first
    assert.equal((await check.checkJob({ fn: ref('greet', other), options: { ...OPTIONS, network: [...NETWORK] }, env: ENV })).refused?.code, 'BUNDLE_NOT_ACTIVE')
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
    const { cid } = encodeManifest({ type: 'peerhost-manifest', v: 1, sourceCommit: `0x${'00'.repeat(32)}`, env: {}, functions: { lost: { bundle: v1, entry: 'functions/lost.ts', options: { ...OPTIONS, network: [] }, deterministic: false } } })
    // registered, but its bytes are nowhere
    await send('deploy', [owner, 'lost', cidToBytes(cid), `0x${'00'.repeat(32)}`, ['lost'], 0n])
    const refusal = await check.refusal(ref('lost', v1, 'lost'))
    assert.equal(refusal?.code, 'BUNDLE_UNAVAILABLE')
    assert.ok(refusal.message.includes(`${owner}/lost/lost`), refusal.message)
  })

})
