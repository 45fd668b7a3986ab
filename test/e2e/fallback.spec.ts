/**
 * The chain fallback with real processes: a local Hardhat chain (`hardhat node`), a bootstrap
 * node, three staked workers, and a gateway composed in-process with a job dialer that always fails
 * (the partition) while gossip, IPFS and the chain stay reachable. Requests are then
 * answered by ExecutionCoordinator: request → commit → reveal → finalized → output from IPFS.
 */
import assert from 'node:assert/strict'
import { join, resolve } from 'node:path'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { request as httpRequest } from 'node:http'
import { tmpdir } from 'node:os'
import type { Address, Hex } from 'viem'
import { executionCoordinatorAbi, workerStakingAbi } from '#contracts'
import { functionId } from '#protocol'
import { loadEvmAccount } from '#node'
import { runGateway, type RunningGateway } from '../../bin/commands/gateway.ts'
import { startTestNetwork, waitFor, type TestNetwork } from '../helpers/network.ts'
import { startTestChain, type TestChain } from '../chain/helpers.ts'
import { filesContaining } from '../helpers/files.ts'

const root = resolve(import.meta.dirname, '..', '..')

/** A GET from `localAddress` (127.0.0.x stands for another client IP); status, headers and JSON or text. */
async function getFrom (url: string, localAddress: string, headers: Record<string, string> = {}): Promise<{ status: number, headers: Record<string, string | string[] | undefined>, body: any }> {
  const u = new URL(url)
  return await new Promise((resolve, reject) => {
    const req = httpRequest({ host: u.hostname, port: u.port, path: `${u.pathname}${u.search}`, agent: false, localAddress, headers: { ...headers, connection: 'close' } }, res => {
      let text = ''
      res.on('data', d => { text += String(d) })
      res.on('end', () => {
        let body: any = text
        try { body = JSON.parse(text) } catch {}
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body })
      })
    })
    req.on('error', reject)
    req.end()
  })
}

describe('chain fallback: a gateway cut off from the workers answers through the chain', function () {
  // three gVisor workers that each stake, bind and join the draw pool on a loaded machine
  this.timeout(480_000)
  let chain: TestChain
  let net: TestNetwork
  let hello: string
  let cut: RunningGateway | undefined

  let random: string
  let randDir: string

  before(async () => {
    chain = await startTestChain()
    // hello is deterministic (a majority of the drawn workers must agree); rand uses Math.random
    await chain.registerProject('hello', ['hello'], ['hello'])
    await chain.registerProject('rand', ['random'])
    randDir = mkdtempSync(join(tmpdir(), 'peerhost-rand-'))
    mkdirSync(join(randDir, 'functions'))
    writeFileSync(join(randDir, 'peerhost.json'), JSON.stringify({ name: 'rand', functions: { random: {} } }))
    writeFileSync(join(randDir, 'functions', 'random.ts'), 'export default { async fetch () { return new Response(`random ${Math.random()}`) } }\n')
    net = await startTestNetwork({
      workers: 3,
      projects: [join(root, 'examples/hello'), randDir],
      owner: chain.deployer,
      // two chain-path requests per client IP for the flood attack below (the default is 10 per minute)
      gatewayArgs: ['--contracts', chain.contractsFile, '--fallback-deadline', '60', '--fallback-mesh-share', '90', '--chain-rate-limit', '2/600'],
      // the mesh gateway stakes: workers on a chain answer only tickets of staked gateways
      async gatewayArgsFor (dataDir) {
        await chain.fund(loadEvmAccount(dataDir).address)
        return ['--stake', '1']
      },
      async workerArgsFor (_i, dataDir) {
        await chain.fund(loadEvmAccount(dataDir).address)
        // the gateway serves examples/hello from its folder (registered with a dummy manifest): no registry check
        return ['--contracts', chain.contractsFile, '--stake', '1', '--unsafe-skip-registry-check']
      }
    })
    await chain.fund((await net.gateway.ready).address as Address)
    // the partition: every job stream this gateway opens fails as an unreachable worker's would
    cut = await runGateway({
      bootstrap: net.bootstrapAddrs, port: 0, host: '127.0.0.1', listen: [], announce: [], dataDir: join(net.dir, 'gateway-cut'),
      project: [join(root, 'examples/hello'), randDir], owner: chain.deployer, contracts: chain.contractsFile, fallbackDeadline: 60, fallbackPay: 'auto', logLevel: 'error'
    }, { dial: async () => { throw new Error('no route to the worker (partition)') } })
    await chain.fund(cut.address)
    hello = cut.urls.find(u => u.endsWith('/hello/hello'))!
    random = cut.urls.find(u => u.endsWith('/rand/random'))!
    await waitFor('the three staked workers in the view', () => cut!.gateway.view.size() === 3 ? true : undefined, 60_000)
    // each worker joins the coordinator's draw pool when its chain watcher starts
    await waitFor('the three workers in the draw pool', async () => await chain.publicClient.readContract({ address: chain.addresses.ExecutionCoordinator, abi: executionCoordinatorAbi, functionName: 'poolSize' }) === 3n ? true : undefined, 15_000)
  })
  after(async () => {
    await cut?.stop()
    await net?.stop()
    await chain?.stop()
    if (chain !== undefined) rmSync(chain.dir, { recursive: true, force: true })
    if (randDir !== undefined) rmSync(randDir, { recursive: true, force: true })
  })

  it('answers from the finalized on-chain result when no job stream reaches a worker', async () => {
    const started = Date.now()
    const res = await fetch(`${hello}?name=Chain`)
    const body = await res.text()
    assert.equal(res.status, 200, body)
    assert.equal(body, 'Hello, Chain!\n')
    assert.equal(res.headers.get('x-peerhost-path'), 'chain')
    assert.ok(Number(res.headers.get('x-peerhost-attempts')) >= 1, 'the mesh was tried first')
    const requestId = BigInt(res.headers.get('x-peerhost-chain-request')!)
    const req = await chain.publicClient.readContract({ address: chain.addresses.ExecutionCoordinator, abi: executionCoordinatorAbi, functionName: 'getRequest', args: [requestId] }) as any
    assert.equal(req.finalized, true)
    assert.equal(req.functionId, functionId(chain.deployer, 'hello', 'hello'))
    assert.match(req.inputHash, /^0x[0-9a-f]{64}$/)
    assert.notEqual(req.inputHash, `0x${'00'.repeat(32)}`)
    // three staked workers known → redundancy 3, all three drawn (the pool holds three); a majority revealed the same output
    const slots = await chain.publicClient.readContract({ address: chain.addresses.ExecutionCoordinator, abi: executionCoordinatorAbi, functionName: 'getSlots', args: [requestId] }) as unknown as Array<{ worker: Address, revealed: boolean, outputHash: Hex }>
    assert.equal(slots.length, 3)
    const workers = net.workerInfo.map(w => w.address.toLowerCase()).sort()
    assert.deepEqual(slots.map(s => s.worker.toLowerCase()).sort(), workers)
    assert.ok(slots.filter(s => s.revealed && s.outputHash === req.outputHash).length >= 2)
    assert.ok(Date.now() - started < 75_000)
  })

  it('a Math.random function with redundancy 3 on real workers: answered (first reveal), and no honest worker is slashed', async () => {
    const res = await fetch(random)
    const body = await res.text()
    assert.equal(res.status, 200, body)
    assert.match(body, /^random 0\.\d+$/)
    assert.equal(res.headers.get('x-peerhost-path'), 'chain')
    const requestId = BigInt(res.headers.get('x-peerhost-chain-request')!)
    const coordinator = chain.addresses.ExecutionCoordinator
    const req = await waitFor('the gateway to settle the request itself', async () => {
      const r = await chain.publicClient.readContract({ address: coordinator, abi: executionCoordinatorAbi, functionName: 'getRequest', args: [requestId] }) as any
      return r.settled === true ? r : undefined
    }, 40_000)
    assert.equal(req.deterministic, false)
    const slots = await chain.publicClient.readContract({ address: coordinator, abi: executionCoordinatorAbi, functionName: 'getSlots', args: [requestId] }) as unknown as Array<{ worker: Address, revealed: boolean, outputHash: Hex }>
    assert.equal(slots.length, 3)
    assert.equal(new Set(slots.filter(s => s.revealed).map(s => s.outputHash)).size, slots.filter(s => s.revealed).length, 'the workers really disagreed')
    const penalties = await chain.publicClient.getContractEvents({ address: coordinator, abi: executionCoordinatorAbi, eventName: 'WorkerPenalized', fromBlock: 0n })
    assert.equal(penalties.length, 0, 'no worker was penalised')
    for (const w of net.workerInfo) {
      const s = await chain.publicClient.readContract({ address: chain.addresses.WorkerStaking, abi: workerStakingAbi, functionName: 'stakeOf', args: [w.address] }) as any
      assert.equal(s.amount + s.pending, 10n ** 18n, `worker ${w.address} kept its stake`)
    }
  })

  it('a chain-path request\'s bearer token and body appear in no IPFS block, data dir, log, or chain transaction/log', async () => {
    const token = `tok_${randomBytes(24).toString('hex')}`
    const body = `body_${randomBytes(24).toString('hex')}`
    const res = await fetch(`${hello}?name=Sealed`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'x-peerhost-mode': 'onchain' }, body })
    assert.equal(res.status, 200, await res.clone().text())
    assert.equal(await res.text(), 'Hello, Sealed!\n')
    assert.equal(res.headers.get('x-peerhost-path'), 'chain')
    const requestId = BigInt(res.headers.get('x-peerhost-chain-request')!)
    const coordinator = chain.addresses.ExecutionCoordinator
    const inputCid = await chain.publicClient.readContract({ address: coordinator, abi: executionCoordinatorAbi, functionName: 'inputCidOf', args: [requestId] }) as Hex
    assert.notEqual(inputCid, '0x', 'a sealed input was posted')
    // every process log and every node's data dir (blockstores, caches, keys) and the chain's dir
    for (const needle of [token, body]) {
      assert.deepEqual(filesContaining(net.dir, needle), [], 'no file of the network holds it')
      assert.deepEqual(filesContaining(chain.dir, needle), [], 'no file of the chain holds it')
    }
    // every transaction's calldata and every log on the chain
    const head = await chain.publicClient.getBlockNumber()
    const hex: string[] = []
    for (let b = 0n; b <= head; b++) {
      const block = await chain.publicClient.getBlock({ blockNumber: b, includeTransactions: true })
      for (const tx of block.transactions) hex.push(tx.input)
    }
    for (const l of await chain.publicClient.getLogs({ fromBlock: 0n, toBlock: head })) hex.push(l.data, ...l.topics)
    const all = hex.join('').toLowerCase()
    for (const needle of [token, body]) assert.ok(!all.includes(Buffer.from(needle).toString('hex')), 'not on chain')
    // the grep can fail: the sealed input document is in the blockstores, found by its type tag,
    // and its CID (posted with postInput) is in the chain's calldata
    assert.ok(filesContaining(net.dir, 'fallback-sealed-input').length > 0, 'the blockstores are searched as plain bytes')
    assert.ok(all.includes(inputCid.slice(2).toLowerCase()), 'the calldata is searched')
  })

  it('says so when the function is not registered on chain, so the fallback cannot run it', async () => {
    const echo = cut!.urls.find(u => u.endsWith('/hello/echo'))!
    const res = await fetch(echo, { method: 'POST', body: 'x' })
    assert.equal(res.status, 502)
    assert.equal(res.headers.get('x-peerhost-path'), 'chain')
    const body = await res.json() as any
    assert.equal(body.error.code, 'WORKER_FAILED')
    assert.match(body.error.message, /not registered in FunctionRegistry/)
  })

  const requestCount = async (): Promise<bigint> => await chain.publicClient.readContract({ address: chain.addresses.ExecutionCoordinator, abi: executionCoordinatorAbi, functionName: 'requestCount' }) as bigint

  it('attack: a client forcing the chain path on a project that did not opt in gets 403 naming chainPath; no chain request, no job', async () => {
    const ready = await net.gateway.ready
    await waitFor('workers in the second gateway view', async () => {
      const st = await (await fetch(`${ready.url}/_peerhost/status`)).json() as any
      return st.workers.length === 3 ? true : undefined
    }, 15_000)
    // rand has no "chainPath": "client" in its peerhost.json
    const url = net.functions.find(u => u.endsWith('/rand/random'))!
    const before = await requestCount()
    for (let i = 0; i < 3; i++) {
      const res = await fetch(url, { headers: { 'x-peerhost-mode': 'onchain' } })
      const body = await res.json() as any
      assert.equal(res.status, 403, JSON.stringify(body))
      assert.equal(body.error.code, 'FORBIDDEN')
      assert.match(body.error.message, /"chainPath": "client"/)
      assert.equal(body.error.details.setting, 'chainPath')
      assert.equal(res.headers.get('x-peerhost-job'), null, 'no job was created')
      assert.equal(res.headers.get('x-peerhost-path'), null)
    }
    assert.equal(await requestCount(), before, 'no chain request was made')
    // the refusals took nothing from this address's chain budget, and without the header the mesh serves it
    const mesh = await fetch(url)
    assert.equal(mesh.status, 200)
    assert.equal(mesh.headers.get('x-peerhost-path'), 'mesh')
  })

  it('attack: a client flooding chain-path requests gets 429 with Retry-After past --chain-rate-limit; only its budget reaches the chain; other clients unaffected', async () => {
    const url = net.functions.find(u => u.endsWith('/hello/hello'))!
    const before = await requestCount()
    // six at once from one address (127.0.0.7) on an opted-in function; the limit is 2 per 600 s
    const flood = await Promise.all(Array.from({ length: 6 }, async (_, i) => await getFrom(`${url}?name=Flood${i}`, '127.0.0.7', { 'x-peerhost-mode': 'onchain' })))
    const limited = flood.filter(r => r.status === 429)
    const chained = flood.filter(r => r.status !== 429)
    const seen = flood.map(r => `${r.status} ${typeof r.body === 'string' ? r.body.trim() : JSON.stringify(r.body)}`).join('; ')
    assert.equal(limited.length, 4, seen)
    // the two within the budget went to the chain (their answers are the chain's, whatever it gave
    // on a loaded machine); the point here is that no more than two did
    assert.equal(chained.length, 2, seen)
    for (const r of chained) assert.equal(r.headers['x-peerhost-path'], 'chain', seen)
    assert.ok(chained.some(r => r.status === 200), `at least one chain answer: ${seen}`)
    for (const r of limited) {
      assert.equal(r.body.error.code, 'RATE_LIMITED')
      assert.equal(r.body.error.details.limit, 'chainRateLimit')
      assert.match(r.body.error.message, /2 chain-path requests per 600 s/)
      assert.ok(Number(r.headers['retry-after']) >= 1 && Number(r.headers['retry-after']) <= 600, `retry-after ${String(r.headers['retry-after'])}`)
    }
    assert.equal(await requestCount(), before + 2n, 'exactly the budget reached the chain')
    // the flooding address still gets the mesh
    const mesh = await getFrom(`${url}?name=Still`, '127.0.0.7')
    assert.equal(mesh.status, 200)
    assert.equal(mesh.headers['x-peerhost-path'], 'mesh')
  })

  it('uses the chain when the client sends x-peerhost-mode: onchain, and the mesh otherwise (from 127.0.0.1: the flood above took nothing from this address)', async () => {
    // the gateway process: same chain, no partition
    const ready = await net.gateway.ready
    const url = net.functions.find(u => u.endsWith('/hello/hello'))!
    await waitFor('workers in the second gateway view', async () => {
      const st = await (await fetch(`${ready.url}/_peerhost/status`)).json() as any
      return st.workers.length === 3 ? true : undefined
    }, 15_000)

    const mesh = await fetch(`${url}?name=Mesh`)
    assert.equal(mesh.status, 200)
    assert.equal(await mesh.text(), 'Hello, Mesh!\n')
    assert.equal(mesh.headers.get('x-peerhost-path'), 'mesh')
    // mesh receipts are signed in the chain's domain
    const receipt = JSON.parse(Buffer.from(mesh.headers.get('x-peerhost-receipt')!, 'base64url').toString())
    assert.deepEqual(receipt.domain, { name: 'PeerHost', version: '1', chainId: chain.chainId, verifyingContract: chain.addresses.Settlement })

    const before = await chain.publicClient.readContract({ address: chain.addresses.ExecutionCoordinator, abi: executionCoordinatorAbi, functionName: 'requestCount' }) as bigint
    const onchain = await fetch(`${url}?name=Onchain`, { headers: { 'x-peerhost-mode': 'onchain' } })
    assert.equal(onchain.status, 200)
    assert.equal(await onchain.text(), 'Hello, Onchain!\n')
    assert.equal(onchain.headers.get('x-peerhost-path'), 'chain')
    assert.equal(onchain.headers.get('x-peerhost-attempts'), '0')
    const after = await chain.publicClient.readContract({ address: chain.addresses.ExecutionCoordinator, abi: executionCoordinatorAbi, functionName: 'requestCount' }) as bigint
    assert.equal(after, before + 1n)
  })

  it('pays the workers that agreed once the request settles', async () => {
    const coordinator = chain.addresses.ExecutionCoordinator
    // the gateway settles as soon as every slot revealed
    await waitFor('request 1 settled', async () => {
      const req = await chain.publicClient.readContract({ address: coordinator, abi: executionCoordinatorAbi, functionName: 'getRequest', args: [1n] }) as any
      return req.settled === true ? true : undefined
    }, 15_000)
    for (const w of net.workerInfo) {
      const owed = await chain.publicClient.readContract({ address: coordinator, abi: executionCoordinatorAbi, functionName: 'owed', args: [w.address] }) as bigint
      assert.ok(owed > 0n, `worker ${w.address} is owed its share`)
    }
  })
})
