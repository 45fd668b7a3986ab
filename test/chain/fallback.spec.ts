/**
 * The chain pieces in one process against a real local chain (`hardhat node`): registration
 * (stakeAndBind), admission (isActiveWorker + peerOf with the peer key's signature, cached,
 * invalidated by events), the
 * contracts file, the fallback documents, and a full fallback round (gateway component →
 * ExecutionCoordinator → chain watcher → commit → reveal → answer) with in-memory block storage.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { randomUUID } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PeerId, PrivateKey } from '@libp2p/interface'
import { parseEther, type Hex } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { executionCoordinatorAbi, workerStakingAbi } from '#contracts'
import { functionId, inputHash, outputHash, rawCid, type FunctionOptions, type FunctionRef, type WireRequest } from '#protocol'
import { silentLogger } from '#node'
import { chainClient, loadContracts, parseContracts, type ChainClient } from '../../node/chain/index.ts'
import { stakeAndBind, stakingAdmission } from '../../node/staking/index.ts'
import { depositEscrow, allowGateway, escrowStatus } from '../../node/escrow/index.ts'
import { HARDHAT_KEY_0 } from '../protocol/fixtures.ts'
import { chainFallback, cidBytes, fallbackFailure, FALLBACK_DEFAULTS, decodeFallbackInput, decodeFallbackOutput, encodeFallbackInput, encodeFallbackOutput, type FallbackStorage } from '../../node/fallback/index.ts'
import { chainWatcher } from '../../node/worker/chain-watcher.ts'
import { openFallbackInput } from '../../node/fallback/sealed.ts'
import { loadSecretKey, type SecretKeyPair } from '../../node/secrets/sealed.ts'
import type { LocalJob } from '../../node/worker/worker.ts'
import { startTestChain, type TestChain } from './helpers.ts'
import { waitFor } from '../helpers/network.ts'
import { request as httpRequest } from 'node:http'
import { Registry } from 'prom-client'
import { newJobId } from '#protocol'
import { gatewayHttp, type GatewayHttp } from '../../node/gateway/http.ts'
import { functionTable, type FunctionEntry } from '../../node/gateway/functions.ts'

function memoryStorage (blocks = new Map<string, Uint8Array>()): FallbackStorage & { blocks: Map<string, Uint8Array> } {
  return {
    blocks,
    async put (cid, bytes) { assert.equal(rawCid(bytes), cid); blocks.set(cid, bytes) },
    async fetch (cid) {
      const b = blocks.get(cid)
      if (b === undefined) throw Object.assign(new Error('not found'), { code: 'BLOCK_FETCH_TIMEOUT' })
      return b
    }
  }
}

/** A fresh X25519 key pair, as a worker or gateway keeps in its data dir. */
function newKey (): SecretKeyPair {
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-key-'))
  try { return loadSecretKey(dir) } finally { rmSync(dir, { recursive: true, force: true }) }
}

const OPTIONS: FunctionOptions = { memoryMb: 128, timeoutMs: 1000, network: [], isolation: 'function' }

describe('chain: staking, admission and the fallback round against a local chain', function () {
  // the machine is shared: starting the chain (an incremental build, then `hardhat node`) can take a minute
  this.timeout(180_000)
  let chain: TestChain
  let owner: `0x${string}`
  let fn: FunctionRef

  before(async () => {
    chain = await startTestChain()
    owner = chain.deployer
    await chain.registerProject('hello', ['hello', 'det'], ['det'])
    fn = { wallet: owner, project: 'hello', name: 'hello', id: functionId(owner, 'hello', 'hello'), bundleCid: rawCid(new TextEncoder().encode('bundle')) }
  })
  after(async () => {
    await chain?.stop()
    if (chain !== undefined) rmSync(chain.dir, { recursive: true, force: true })
  })

  async function newWorker (fund = true): Promise<{ client: ChainClient, peerId: PeerId, peerKey: PrivateKey }> {
    const account = privateKeyToAccount(generatePrivateKey())
    if (fund) await chain.fund(account.address)
    const contracts = loadContracts(chain.contractsFile)
    const peerKey = await generateKeyPair('Ed25519')
    return { client: chainClient(contracts, account), peerId: peerIdFromPrivateKey(peerKey), peerKey }
  }

  /** Takes a worker out of the coordinator's draw pool, so later tests draw only their own workers. */
  async function leavePool (client: ChainClient): Promise<void> {
    const [weight] = await client.publicClient.readContract({ address: chain.addresses.ExecutionCoordinator, abi: executionCoordinatorAbi, functionName: 'poolMember', args: [client.account!.address] })
    if (weight !== 0n) await client.send({ address: chain.addresses.ExecutionCoordinator, abi: executionCoordinatorAbi, functionName: 'leave', args: [] })
  }

  describe('contracts file', () => {
    it('reads what startLocalChain writes, with the (chainId, Settlement) domain', () => {
      const c = loadContracts(chain.contractsFile)
      assert.equal(c.chainId, 31337)
      assert.equal(c.finality, 'latest')
      assert.deepEqual(chainClient(c).domain, { name: 'PeerHost', version: '1', chainId: 31337, verifyingContract: chain.addresses.Settlement })
    })

    it('reports every problem at once', () => {
      assert.throws(() => parseContracts(JSON.stringify({ chainId: 0, rpcUrl: 'ftp://x', addresses: { WorkerStaking: 'nope' } }), 'c.json'), (err: any) => {
        assert.equal(err.code, 'BAD_CONTRACTS_FILE')
        assert.match(err.message, /^c\.json has 6 problems: rpcUrl: .*; chainId: .*; addresses\.FunctionRegistry: .*; addresses\.WorkerStaking: .*; addresses\.Settlement: .*; addresses\.ExecutionCoordinator: /)
        return true
      })
      assert.throws(() => loadContracts('/nonexistent/contracts.json'), { code: 'NO_CONTRACTS_FILE' })
    })
  })

  describe('stakeAndBind', () => {
    it('refuses without a stake amount, with too little, and without funds', async () => {
      const { client, peerId, peerKey } = await newWorker()
      await assert.rejects(stakeAndBind(client, peerKey), { code: 'NOT_STAKED' })
      await assert.rejects(stakeAndBind(client, peerKey, { stake: parseEther('0.5') }), { code: 'STAKE_TOO_SMALL' })
      const broke = await newWorker(false)
      await assert.rejects(stakeAndBind(broke.client, broke.peerKey, { stake: parseEther('1') }), { code: 'NO_FUNDS' })
    })

    it('stakes, binds, and does nothing the second time', async () => {
      const { client, peerId, peerKey } = await newWorker()
      const first = await stakeAndBind(client, peerKey, { stake: parseEther('1') })
      assert.equal(first.staked, parseEther('1'))
      assert.equal(first.bound, true)
      const second = await stakeAndBind(client, peerKey, { stake: parseEther('1') })
      assert.equal(second.staked, 0n)
      assert.equal(second.bound, false)
      // another account claiming the same peer id is not refused on chain (no first-come squatting);
      // without the peer key its claim is ignored by admission (test/contracts/peer-binding.spec.ts)
      assert.equal(second.peerIdHash, first.peerIdHash)
    })
  })

  describe('admission', () => {
    it('admits an active worker with its bound peer id only, caches, and re-reads after a staking event', async () => {
      const gw = chainClient(loadContracts(chain.contractsFile))
      let reads = 0
      const counting = { ...gw, publicClient: new Proxy(gw.publicClient, { get (t, k) { if (k === 'readContract') reads++; return Reflect.get(t, k) } }) }
      const admission = stakingAdmission({ ttlMs: 60_000 })({ chain: counting, logger: silentLogger() })
      await admission.start()
      try {
        const { client, peerId, peerKey } = await newWorker()
        const advert = { address: client.account!.address, peerId: peerId.toString() }
        assert.equal(await admission.admit(advert), false)
        const afterFirst = reads
        assert.equal(afterFirst, 2, 'isActiveWorker and peerOf')
        assert.equal(await admission.admit(advert), false)
        assert.equal(reads, afterFirst, 'the second verdict came from the cache')
        await stakeAndBind(client, peerKey, { stake: parseEther('1') })
        await waitFor('the staking events to invalidate the verdict', async () => await admission.admit(advert) ? true : undefined, 5_000, 50)
        // the same address from another peer id is not admitted
        const stranger = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
        assert.equal(await admission.admit({ address: advert.address, peerId: stranger.toString() }), false)
        // a withdrawal request drops it again
        await client.send({ address: chain.addresses.WorkerStaking, abi: workerStakingAbi, functionName: 'requestWithdrawal', args: [parseEther('1')] })
        await waitFor('the withdrawal to invalidate the verdict', async () => await admission.admit(advert) ? undefined : true, 5_000, 50)
      } finally {
        await admission.stop()
      }
    })
  })

  describe('documents', () => {
    const request: WireRequest = { method: 'GET', url: 'http://gw/x/hello/hello?name=A', headers: [['accept', 'text/plain']], body: new Uint8Array() }

    it('round-trips the input and checks it against the chain', () => {
      const doc = encodeFallbackInput({ jobId: `0x${'11'.repeat(32)}`, fn, options: OPTIONS, env: { A: 'b' }, request, deadline: 1, gateway: '12D3KooW' })
      const back = decodeFallbackInput(doc.bytes, { inputHash: inputHash(request), functionId: fn.id })
      assert.equal(back.request.url, request.url)
      assert.deepEqual(back.fn, fn)
      assert.throws(() => decodeFallbackInput(doc.bytes, { inputHash: `0x${'00'.repeat(32)}`, functionId: fn.id }), { code: 'FALLBACK_MISMATCH' })
      assert.throws(() => decodeFallbackInput(doc.bytes, { inputHash: inputHash(request), functionId: `0x${'00'.repeat(32)}` }), { code: 'FALLBACK_MISMATCH' })
      assert.throws(() => decodeFallbackInput(new Uint8Array([1, 2, 3]), { inputHash: inputHash(request), functionId: fn.id }), { code: 'BAD_FALLBACK_DOCUMENT' })
    })

    it('checks the output against the finalized outputHash', () => {
      const response = { status: 200, headers: [['content-type', 'text/plain']] as Array<[string, string]>, body: new TextEncoder().encode('hi') }
      const doc = encodeFallbackOutput({ response })
      assert.equal(new TextDecoder().decode(decodeFallbackOutput(doc.bytes, outputHash({ response })).response!.body), 'hi')
      assert.throws(() => decodeFallbackOutput(doc.bytes, outputHash({ response: { ...response, status: 201 } })), { code: 'FALLBACK_MISMATCH' })
    })
  })

  describe('a worker restarted between commit and reveal', () => {
    it('reveals from its saved commitment after the restart', async () => {
      const storage = memoryStorage()
      const stateDir = mkdtempSync(join(tmpdir(), 'peerhost-watcher-'))
      const { client, peerId, peerKey } = await newWorker()
      await stakeAndBind(client, peerKey, { stake: parseEther('1') })
      const worker = {
        address: client.account!.address,
        async execute () {
          const response = { status: 200, headers: [] as Array<[string, string]>, body: new TextEncoder().encode('ok') }
          return { response, outputHash: outputHash({ response }) }
        }
      }
      // a second pool member that never answers keeps the reveal phase closed until the commit deadline
      const silent = await newWorker()
      await stakeAndBind(silent.client, silent.peerKey, { stake: parseEther('1') })
      await silent.client.send({ address: chain.addresses.ExecutionCoordinator, abi: executionCoordinatorAbi, functionName: 'join', args: [`0x${'5a'.repeat(32)}`] })
      const sealKey = newKey()
      const first = chainWatcher({ stateDir })({ chain: client, worker, storage, sealKey, logger: silentLogger() })
      await first.start()
      const gatewayAccount = privateKeyToAccount(generatePrivateKey())
      await chain.fund(gatewayAccount.address)
      const gw = chainClient(loadContracts(chain.contractsFile), gatewayAccount)
      // two slots, both drawn (the pool holds two), one answering: the reveal phase opens only at the commit deadline
      const fallback = chainFallback({ deadlineSec: 20, redundancy: 2 })({ chain: gw, storage, peerId: 'x', logger: silentLogger() })
      const request: WireRequest = { method: 'GET', url: 'http://gw/x/hello/hello?name=Restart', headers: [], body: new Uint8Array() }
      const pending = fallback.run({ fn, options: OPTIONS, env: {}, request, inputHash: inputHash(request) }).catch((err: Error) => err)
      const coordinator = chain.addresses.ExecutionCoordinator
      const id = await waitFor('the commit', async () => {
        const n = await gw.publicClient.readContract({ address: coordinator, abi: executionCoordinatorAbi, functionName: 'requestCount' }) as bigint
        const req = await gw.publicClient.readContract({ address: coordinator, abi: executionCoordinatorAbi, functionName: 'getRequest', args: [n] }) as any
        return req.commits === 1 ? n : undefined
      }, 10_000, 50)
      await first.stop()
      const saved = JSON.parse(readFileSync(join(stateDir, 'chain-commits.json'), 'utf8'))
      assert.equal(saved.length, 1)
      assert.equal(saved[0].requestId, id.toString())
      // past the commit deadline (chain time), then the restarted worker reveals
      await chain.rpc('evm_increaseTime', [16])
      await chain.rpc('evm_mine')
      const second = chainWatcher({ stateDir })({ chain: client, worker, storage, sealKey, logger: silentLogger() })
      await second.start()
      try {
        await waitFor('the reveal after the restart', async () => {
          const slots = await gw.publicClient.readContract({ address: coordinator, abi: executionCoordinatorAbi, functionName: 'getSlots', args: [id] }) as unknown as Array<{ worker: string, revealed: boolean }>
          return slots.find(x => x.worker === client.account!.address)?.revealed === true ? true : undefined
        }, 10_000, 50)
        await waitFor('the saved commitment dropped', () => JSON.parse(readFileSync(join(stateDir, 'chain-commits.json'), 'utf8')).length === 0 ? true : undefined, 5_000, 50)
      } finally {
        await second.stop()
        await fallback.stop()
        await pending
        await leavePool(client)
        await leavePool(silent.client)
        rmSync(stateDir, { recursive: true, force: true })
      }
    })
  })

  describe('a fallback round', () => {
    it('requests, the watchers commit and reveal, and the gateway answers from the finalized output', async () => {
      const storage = memoryStorage()
      const ran: LocalJob[] = []
      const watchers = []
      const clients: ChainClient[] = []
      for (let i = 0; i < 2; i++) {
        const { client, peerId, peerKey } = await newWorker()
        await stakeAndBind(client, peerKey, { stake: parseEther('1') })
        const worker = {
          address: client.account!.address,
          async execute (job: LocalJob) {
            ran.push(job)
            const name = new URL(job.request.url).searchParams.get('name')
            const response = { status: 200, headers: [['content-type', 'text/plain'], ['date', `worker ${i}`]] as Array<[string, string]>, body: new TextEncoder().encode(`Hello, ${name}!`) }
            return { response, outputHash: outputHash({ response }) }
          }
        }
        const w = chainWatcher()({ chain: client, worker, storage, sealKey: newKey(), logger: silentLogger() })
        await w.start()
        watchers.push(w)
        clients.push(client)
      }
      const gatewayAccount = privateKeyToAccount(generatePrivateKey())
      await chain.fund(gatewayAccount.address)
      const gw = chainClient(loadContracts(chain.contractsFile), gatewayAccount)
      const fallback = chainFallback({ deadlineSec: 30 })({ chain: gw, storage, peerId: '12D3KooWGatewayPeer', knownWorkers: () => 2, logger: silentLogger() })
      try {
        const request: WireRequest = { method: 'GET', url: 'http://gw/x/hello/hello?name=Round', headers: [], body: new Uint8Array() }
        const r = await fallback.run({ fn, options: OPTIONS, env: {}, request, inputHash: inputHash(request) })
        assert.equal(new TextDecoder().decode(r.response!.body), 'Hello, Round!')
        assert.equal(r.redundancy, 2)
        assert.equal(ran.length, 2)
        assert.ok(r.finalizedBlock - r.requestBlock >= 3n, 'two commits and a reveal after the request (a non-deterministic function is final with its first reveal)')

        // a request whose input document does not hash to its inputHash is never committed to
        const bogus = encodeFallbackInput({ jobId: `0x${'22'.repeat(32)}`, fn, options: OPTIONS, env: {}, request, deadline: Date.now() + 30_000, gateway: 'x' })
        await storage.put(bogus.cid, bogus.bytes)
        const head = await gw.publicClient.getBlock()
        const receipt = await gw.send({
          address: chain.addresses.ExecutionCoordinator,
          abi: executionCoordinatorAbi,
          functionName: 'requestExecution',
          args: [{ functionId: fn.id, inputHash: `0x${'33'.repeat(32)}` as Hex, inputCid: cidBytes(bogus.cid), redundancy: 1, fee: 1000n, deadline: head.timestamp + 30n, fromEscrow: false }],
          value: 1000n
        })
        assert.equal(receipt.status, 'success')
        await new Promise(resolve => setTimeout(resolve, 1_000))
        const id = await gw.publicClient.readContract({ address: chain.addresses.ExecutionCoordinator, abi: executionCoordinatorAbi, functionName: 'requestCount' }) as bigint
        const req = await gw.publicClient.readContract({ address: chain.addresses.ExecutionCoordinator, abi: executionCoordinatorAbi, functionName: 'getRequest', args: [id] }) as any
        assert.equal(req.commits, 0)
        assert.equal(ran.length, 2, 'nothing ran')
      } finally {
        await fallback.stop()
        for (const w of watchers) await w.stop()
        for (const c of clients) await leavePool(c)
      }
    })

    it('charges the project\'s escrow when its builder allowed the gateway, the gateway otherwise', async () => {
      const storage = memoryStorage()
      const { client, peerId, peerKey } = await newWorker()
      await stakeAndBind(client, peerKey, { stake: parseEther('1') })
      const worker = {
        address: client.account!.address,
        async execute () {
          const response = { status: 200, headers: [] as Array<[string, string]>, body: new TextEncoder().encode('paid') }
          return { response, outputHash: outputHash({ response }) }
        }
      }
      const watcher = chainWatcher()({ chain: client, worker, storage, sealKey: newKey(), logger: silentLogger() })
      await watcher.start()
      const contracts = loadContracts(chain.contractsFile)
      const builder = chainClient(contracts, privateKeyToAccount(HARDHAT_KEY_0))
      assert.equal(builder.account!.address, owner, 'the project owner is Hardhat account #0')
      const gatewayAccount = privateKeyToAccount(generatePrivateKey())
      await chain.fund(gatewayAccount.address)
      const gw = chainClient(contracts, gatewayAccount)
      const fee = parseEther('0.001')
      const auto = chainFallback({ deadlineSec: 30, redundancy: 1, fee })({ chain: gw, storage, peerId: 'x', logger: silentLogger() })
      const strict = chainFallback({ deadlineSec: 30, redundancy: 1, fee, pay: 'escrow' })({ chain: gw, storage, peerId: 'x', logger: silentLogger() })
      const request: WireRequest = { method: 'GET', url: 'http://gw/x/hello/hello?paid', headers: [], body: new Uint8Array() }
      const job = { fn, options: OPTIONS, env: {}, request, inputHash: inputHash(request) }
      try {
        // no escrow yet: auto falls back to the gateway's balance, escrow-only refuses before any transaction
        assert.equal((await auto.run(job)).paidFrom, 'gateway')
        await assert.rejects(strict.run(job), (e: any) => e.code === 'FALLBACK_NO_ESCROW' && /peerhost escrow deposit/.test(e.message))
        await depositEscrow(builder, 'hello', parseEther('0.01'))
        await assert.rejects(strict.run(job), (e: any) => e.code === 'FALLBACK_NO_ESCROW', 'a deposit without an allowance for this gateway')
        await allowGateway(builder, 'hello', gatewayAccount.address, fee)
        const before = await escrowStatus(gw, owner, 'hello', gatewayAccount.address)
        assert.equal(before.allowance?.available, fee)
        const r = await strict.run(job)
        assert.equal(r.paidFrom, 'escrow')
        assert.equal(new TextDecoder().decode(r.response!.body), 'paid')
        const req = await gw.publicClient.readContract({ address: chain.addresses.ExecutionCoordinator, abi: executionCoordinatorAbi, functionName: 'getRequest', args: [r.requestId] }) as any
        assert.equal(req.fromEscrow, true)
        const after = await escrowStatus(gw, owner, 'hello', gatewayAccount.address)
        assert.equal(after.balance, before.balance - fee)
        assert.equal(after.allowance?.available, 0n, 'this epoch\'s allowance is used up')
        // the allowance is spent: auto pays from the gateway again
        assert.equal((await auto.run(job)).paidFrom, 'gateway')
        await assert.rejects(depositEscrow(builder, 'nope', 1n), (e: any) => e.code === 'UNKNOWN_PROJECT')
      } finally {
        await auto.stop()
        await strict.stop()
        await watcher.stop()
        await leavePool(client)
      }
    })
  })

  describe('the chain path made sound (issues 9 and 14)', () => {
    /** n staked watchers in the draw pool whose executor answers `answer(i)`. */
    async function watchers (n: number, answer: (i: number, job: LocalJob) => string, storage: FallbackStorage) {
      const out: Array<{ client: ChainClient, stop: () => Promise<void>, runs: number, jobs: LocalJob[] }> = []
      for (let i = 0; i < n; i++) {
        const { client, peerKey } = await newWorker()
        await stakeAndBind(client, peerKey, { stake: parseEther('1') })
        const entry = { client, stop: async () => {}, runs: 0, jobs: [] as LocalJob[] }
        const worker = {
          address: client.account!.address,
          async execute (job: LocalJob) {
            entry.runs++
            entry.jobs.push(job)
            const response = { status: 200, headers: [] as Array<[string, string]>, body: new TextEncoder().encode(answer(i, job)) }
            return { response, outputHash: outputHash({ response }) }
          }
        }
        const w = chainWatcher()({ chain: client, worker, storage, sealKey: newKey(), logger: silentLogger() })
        await w.start()
        entry.stop = async () => { await w.stop(); await leavePool(client) }
        out.push(entry)
      }
      return out
    }
    async function gatewayClient (): Promise<ChainClient> {
      const a = privateKeyToAccount(generatePrivateKey())
      await chain.fund(a.address)
      return chainClient(loadContracts(chain.contractsFile), a)
    }
    async function stakeOf (address: Hex): Promise<bigint> {
      const s = await chain.publicClient.readContract({ address: chain.addresses.WorkerStaking, abi: workerStakingAbi, functionName: 'stakeOf', args: [address] }) as { amount: bigint, pending: bigint }
      return s.amount + s.pending
    }

    it('a Math.random function with redundancy 3: answered with the first reveal, settled by the gateway itself, no honest worker slashed', async () => {
      const storage = memoryStorage()
      const ws = await watchers(3, () => `random ${Math.random()}`, storage)
      const gw = await gatewayClient()
      const fallback = chainFallback({ deadlineSec: 30, redundancy: 3 })({ chain: gw, storage, peerId: 'x', logger: silentLogger() })
      try {
        const request: WireRequest = { method: 'GET', url: 'http://gw/x/hello/hello?random', headers: [], body: new Uint8Array() }
        const r = await fallback.run({ fn, options: OPTIONS, env: {}, request, inputHash: inputHash(request) })
        assert.match(new TextDecoder().decode(r.response!.body), /^random 0\.\d+/)
        const coordinator = chain.addresses.ExecutionCoordinator
        // the gateway settles once all three revealed; nobody else is asked to
        await waitFor('the gateway to settle', async () => {
          const req = await gw.publicClient.readContract({ address: coordinator, abi: executionCoordinatorAbi, functionName: 'getRequest', args: [r.requestId] }) as any
          return req.settled === true ? req : undefined
        }, 20_000, 100)
        for (const w of ws) {
          assert.equal(await stakeOf(w.client.account!.address), parseEther('1'), 'an honest worker kept its whole stake')
          assert.equal(w.runs, 1)
          const owed = await gw.publicClient.readContract({ address: coordinator, abi: executionCoordinatorAbi, functionName: 'owed', args: [w.client.account!.address] }) as bigint
          assert.equal(owed, FALLBACK_DEFAULTS.fee / 3n, 'every revealer is paid its share')
        }
      } finally {
        await fallback.stop()
        for (const w of ws) await w.stop()
      }
    })

    it('a deterministic function whose drawn workers all disagree: answered at once naming why (no majority possible), refunded by the gateway itself', async () => {
      const storage = memoryStorage()
      const ws = await watchers(3, (i) => `worker ${i}`, storage)
      const gw = await gatewayClient()
      const detFn = { ...fn, name: 'det', id: functionId(owner, 'hello', 'det') }
      const deadlineSec = 60
      const fallback = chainFallback({ deadlineSec, redundancy: 3 })({ chain: gw, storage, peerId: 'x', logger: silentLogger() })
      try {
        const request: WireRequest = { method: 'GET', url: 'http://gw/x/hello/det', headers: [], body: new Uint8Array() }
        const started = Date.now()
        const err = await fallback.run({ fn: detFn, options: OPTIONS, env: {}, request, inputHash: inputHash(request) }).then(() => undefined, (e: any) => e)
        const ms = Date.now() - started
        assert.equal(err?.code, 'FALLBACK_NO_RESULT', String(err?.message))
        assert.match(err.message, /declared deterministic but the drawn workers disagree: 3 of 3 revealed, at most 1 agreeing, and a majority needs 2/)
        assert.ok(ms < deadlineSec * 1000 / 2, `answered after ${ms} ms, long before the ${deadlineSec} s deadline`)
        const requestId = BigInt(err.details.requestId)
        const coordinator = chain.addresses.ExecutionCoordinator
        const req = await waitFor('the gateway to settle', async () => {
          const q = await gw.publicClient.readContract({ address: coordinator, abi: executionCoordinatorAbi, functionName: 'getRequest', args: [requestId] }) as any
          return q.settled === true ? q : undefined
        }, 10_000, 100)
        assert.ok(req.settled)
        const owed = await gw.publicClient.readContract({ address: coordinator, abi: executionCoordinatorAbi, functionName: 'owed', args: [gw.account!.address] }) as bigint
        assert.equal(owed, FALLBACK_DEFAULTS.fee, 'the whole fee came back to the gateway')
        for (const w of ws) assert.equal(await stakeOf(w.client.account!.address), parseEther('1'))
        // the client's message names the path that failed: the chain, not a mesh that was never asked
        assert.match(fallbackFailure(err, false).message, /^the client asked for the chain \(x-peerhost-mode: onchain\) and chain request \d+ cannot produce a result/)
        assert.doesNotMatch(fallbackFailure(err, false).message, /mesh gave no result/)
        assert.match(fallbackFailure(err, true).message, /^the mesh gave no result and chain request/)
      } finally {
        await fallback.stop()
        for (const w of ws) await w.stop()
      }
    })

    it('issue 14: the deadline comes from a correct chain time: a request after the chain sat idle is accepted', async () => {
      const storage = memoryStorage()
      const ws = await watchers(1, () => 'after idle', storage)
      const gw = await gatewayClient()
      // deadline 20 s + 10 s slack: with the stale head's time, an idle spell over 10 s made the
      // coordinator refuse every request (CoordinatorInvalidDeadline) until something mined a block
      const fallback = chainFallback({ deadlineSec: 20, redundancy: 1 })({ chain: gw, storage, peerId: 'x', logger: silentLogger() })
      try {
        const head = await chain.publicClient.getBlock()
        // 13 s of idling without the wait: Hardhat stamps its next block with its clock plus the
        // offset evm_increaseTime adds, and mines nothing meanwhile, so the latest block is 13 s
        // older than the block that will include the request, as after 13 idle seconds
        await chain.rpc('evm_increaseTime', [13])
        assert.equal((await chain.publicClient.getBlock()).number, head.number, 'the chain stayed idle')
        const request: WireRequest = { method: 'GET', url: 'http://gw/x/hello/hello?idle', headers: [], body: new Uint8Array() }
        const r = await fallback.run({ fn, options: OPTIONS, env: {}, request, inputHash: inputHash(request) })
        assert.equal(new TextDecoder().decode(r.response!.body), 'after idle')
      } finally {
        await fallback.stop()
        for (const w of ws) await w.stop()
      }
    })

    it('issue 9 (R9), attack at the HTTP edge on a real chain: forcing the chain on a function that did not opt in is 403; a flood from one address gets its budget and 429s; a mesh-failure fallback takes from the same budget', async () => {
      const storage = memoryStorage()
      const ws = await watchers(1, (_i, job) => `chain ${new URL(job.request.url).searchParams.get('n')}`, storage)
      const gw = await gatewayClient()
      const fallback = chainFallback({ deadlineSec: 30, redundancy: 1 })({ chain: gw, storage, peerId: 'x', logger: silentLogger() })
      const table = functionTable()
      const options = { ...OPTIONS, timeoutMs: 10_000 }
      // both registered on chain: `hello` opts in to client-forced chain requests, `det` does not
      const open: FunctionEntry = { ref: fn, options, env: {}, chainPath: 'client' }
      const closed: FunctionEntry = { ref: { ...fn, name: 'det', id: functionId(owner, 'hello', 'det') }, options, env: {} }
      table.add(open, new Uint8Array([1]))
      table.add(closed, new Uint8Array([2]))
      let meshTries = 0
      // the mesh is cut: every dispatch ends NO_WORKER, which the gateway may take to the chain
      const dispatch = async (): Promise<any> => { meshTries++; return { jobId: newJobId(), attempts: [], dispatchMs: 0, error: { code: 'NO_WORKER', message: 'partition' } } }
      const http: GatewayHttp = gatewayHttp({ port: 0, chainRateLimit: { requests: 2, perSeconds: 600 } }, {
        functions: table, dispatch, registry: new Registry(), logger: silentLogger(), status: () => ({}), ready: () => true, recordJob: () => {}, fallback
      })
      await http.start()
      const get = async (name: string, n: string, from: string, onchain: boolean): Promise<{ status: number, headers: Record<string, any>, body: any }> => await new Promise((resolve, reject) => {
        const u = new URL(http.url)
        const req = httpRequest({ host: u.hostname, port: u.port, path: `/${owner}/hello/${name}?n=${n}`, agent: false, localAddress: from, headers: onchain ? { 'x-peerhost-mode': 'onchain' } : {} }, res => {
          let text = ''
          res.on('data', d => { text += String(d) })
          res.on('end', () => { let body: any = text; try { body = JSON.parse(text) } catch {} resolve({ status: res.statusCode ?? 0, headers: res.headers, body }) })
        })
        req.on('error', reject)
        req.end()
      })
      const coordinator = chain.addresses.ExecutionCoordinator
      const requestCount = async (): Promise<bigint> => await gw.publicClient.readContract({ address: coordinator, abi: executionCoordinatorAbi, functionName: 'requestCount' }) as bigint
      try {
        // 1. forcing the chain on `det` (no "chainPath": "client"): 403 naming the setting, nothing dispatched, no chain request
        const before = await requestCount()
        const forbidden = await get('det', 'f', '127.0.0.6', true)
        assert.equal(forbidden.status, 403, JSON.stringify(forbidden.body))
        assert.equal(forbidden.body.error.code, 'FORBIDDEN')
        assert.equal(forbidden.body.error.details.setting, 'chainPath')
        assert.match(forbidden.body.error.message, /"chainPath": "client"/)
        assert.equal(meshTries, 0)
        assert.equal(await requestCount(), before)
        // 2. a flood of four forced requests from 127.0.0.7 on `hello` (opted in): its budget of 2 reaches the chain, 2 × 429
        const flood = await Promise.all(['a', 'b', 'c', 'd'].map(async n => await get('hello', n, '127.0.0.7', true)))
        const served = flood.filter(r => r.status === 200)
        const limited = flood.filter(r => r.status === 429)
        assert.equal(served.length, 2, `statuses ${flood.map(r => `${r.status} ${JSON.stringify(r.body)}`).join('; ')}`)
        for (const r of served) { assert.equal(r.headers['x-peerhost-path'], 'chain'); assert.match(r.body, /^chain [a-d]$/) }
        assert.equal(limited.length, 2)
        for (const r of limited) {
          assert.equal(r.body.error.code, 'RATE_LIMITED')
          assert.equal(r.body.error.details.limit, 'chainRateLimit')
          assert.ok(Number(r.headers['retry-after']) >= 1)
        }
        assert.equal(await requestCount(), before + 2n, 'exactly the budget reached the chain')
        assert.equal(meshTries, 0, 'forced requests skip the mesh')
        // 3. the same address without the header: the mesh fails, and its fallback is refused by the used-up budget
        const fallbackRefused = await get('hello', 'e', '127.0.0.7', false)
        assert.equal(fallbackRefused.status, 429)
        assert.match(fallbackRefused.body.error.message, /^the mesh gave no result, but your address used its 2 chain-path requests/)
        assert.equal(meshTries, 1)
        assert.equal(await requestCount(), before + 2n)
        // 4. another address: its own budget; the mesh-failure fallback reaches the chain for `det` (no opt-in needed)
        const other = await get('det', 'g', '127.0.0.8', false)
        assert.equal(other.status, 200, JSON.stringify(other.body))
        assert.equal(other.headers['x-peerhost-path'], 'chain')
        assert.equal(await requestCount(), before + 3n)
      } finally {
        await http.stop()
        await fallback.stop()
        for (const w of ws) await w.stop()
      }
    })

    it('sealed: a request with a bearer token, a random body and a secret leaves no plaintext in IPFS blocks or on chain (and the same grep finds them in a public request)', async () => {
      const token = `tok-${randomUUID()}`
      const bodyText = `body-${randomUUID()}`
      const secret = `sec-${randomUUID()}`
      const answerText = `answer-${randomUUID()}`
      const storage = memoryStorage()
      const ws = await watchers(2, () => answerText, storage)
      const gw = await gatewayClient()
      const sealKey = newKey()
      const sealedFallback = chainFallback({ deadlineSec: 30, redundancy: 2 })({ chain: gw, storage, peerId: 'x', sealKey, logger: silentLogger() })
      const fromBlock = (await chain.publicClient.getBlock()).number
      const request: WireRequest = { method: 'POST', url: 'http://gw/x/hello/hello', headers: [['authorization', `Bearer ${token}`]], body: new TextEncoder().encode(bodyText) }
      const job = { fn, options: OPTIONS, env: {}, secrets: { API_KEY: secret }, request, inputHash: inputHash(request) }
      /** every byte the chain holds from `from` on: transaction calldata and log data/topics */
      async function chainBytes (from: bigint): Promise<string> {
        const head = await chain.publicClient.getBlockNumber()
        const parts: string[] = []
        for (let b = from; b <= head; b++) {
          const block = await chain.publicClient.getBlock({ blockNumber: b, includeTransactions: true })
          for (const tx of block.transactions) parts.push(tx.input)
          const logs = await chain.publicClient.getLogs({ fromBlock: b, toBlock: b })
          for (const l of logs) parts.push(l.data, ...l.topics)
        }
        return parts.join('\n')
      }
      const needles = [token, bodyText, secret, answerText]
      const inBlocks = (n: string): boolean => [...storage.blocks.values()].some(b => Buffer.from(b).includes(Buffer.from(n)))
      const onChain = (hex: string, n: string): boolean => hex.toLowerCase().includes(Buffer.from(n).toString('hex'))
      try {
        const r = await sealedFallback.run(job)
        assert.equal(r.sealed, true)
        assert.equal(new TextDecoder().decode(r.response!.body), answerText)
        // the drawn workers got the plaintext request and the secret (inside the sealed input)
        for (const w of ws) {
          const got = w.jobs[0]
          assert.equal(got.request.headers.find(([k]) => k === 'authorization')?.[1], `Bearer ${token}`)
          assert.equal(new TextDecoder().decode(got.request.body), bodyText)
          assert.equal(got.secrets?.API_KEY, secret)
        }
        const hex = await chainBytes(fromBlock)
        for (const n of needles) {
          assert.equal(inBlocks(n), false, `${n} is in an IPFS block`)
          assert.equal(onChain(hex, n), false, `${n} is on chain`)
        }
        // the grep can fail: the same request through the public (unsealed) flow puts them in IPFS
        const publicFallback = chainFallback({ deadlineSec: 30, redundancy: 2 })({ chain: gw, storage, peerId: 'x', logger: silentLogger() })
        try {
          await publicFallback.run({ ...job, secrets: undefined })
        } finally { await publicFallback.stop() }
        assert.equal(inBlocks(token), true, 'the grep finds the token in a public input document')
        assert.equal(inBlocks(bodyText), true)
        assert.equal(inBlocks(answerText), true, 'and the answer in a public output document')
        // a sealed input opens only for the drawn workers: a worker that was not drawn has no envelope
        const sealedDocs = [...storage.blocks.values()].filter(b => Buffer.from(b).includes(Buffer.from('fallback-sealed-input')))
        assert.equal(sealedDocs.length, 1)
        assert.throws(() => openFallbackInput(sealedDocs[0], { chainId: chain.chainId, coordinator: chain.addresses.ExecutionCoordinator, requestId: r.requestId }, `0x${'77'.repeat(20)}`, newKey()), { code: 'FALLBACK_NOT_RECIPIENT' })
        // and a drawn worker's envelope does not open with another key
        const drawnAddr = ws[0].client.account!.address
        assert.throws(() => openFallbackInput(sealedDocs[0], { chainId: chain.chainId, coordinator: chain.addresses.ExecutionCoordinator, requestId: r.requestId }, drawnAddr, newKey()), { code: 'SECRET_UNSEALABLE' })
      } finally {
        await sealedFallback.stop()
        for (const w of ws) await w.stop()
      }
    })
  })
})
