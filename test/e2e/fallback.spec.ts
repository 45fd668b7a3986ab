/**
 * The chain fallback with real processes: a local Hardhat chain (`hardhat node`), a bootstrap
 * node, two staked workers and a gateway process on the same chain. A second gateway, the same
 * `peerhost gateway` composed in this process (runGateway), is given a job dialer that fails: its
 * job streams to every worker are cut while gossip, IPFS and the chain stay reachable. Its requests
 * are then answered by ExecutionCoordinator: request → commit → reveal → finalized → output from IPFS.
 */
import assert from 'node:assert/strict'
import { join, resolve } from 'node:path'
import { rmSync } from 'node:fs'
import type { Address, Hex } from 'viem'
import { executionCoordinatorAbi } from '#contracts'
import { functionId } from '#protocol'
import { loadEvmAccount } from '#node'
import { runGateway, type RunningGateway } from '../../bin/commands/gateway.ts'
import { startTestNetwork, waitFor, type TestNetwork } from '../helpers/network.ts'
import { startTestChain, type TestChain } from '../chain/helpers.ts'

const root = resolve(import.meta.dirname, '..', '..')

describe('chain fallback: a gateway cut off from the workers answers through the chain', function () {
  this.timeout(240_000)
  let chain: TestChain
  let net: TestNetwork
  let hello: string
  let cut: RunningGateway | undefined

  before(async () => {
    const t0 = Date.now()
    chain = await startTestChain()
    process.stderr.write(`fallback.spec: chain up after ${Date.now() - t0} ms\n`)
    await chain.registerProject('hello', ['hello'])
    net = await startTestNetwork({
      workers: 2,
      projects: [join(root, 'examples/hello')],
      owner: chain.deployer,
      gatewayArgs: ['--contracts', chain.contractsFile, '--fallback-deadline', '30'],
      async workerArgsFor (_i, dataDir) {
        await chain.fund(loadEvmAccount(dataDir).address)
        // the gateway serves examples/hello from its folder (registered with a dummy manifest): no registry check
        return ['--contracts', chain.contractsFile, '--stake', '1', '--unsafe-skip-registry-check']
      }
    })
    process.stderr.write(`fallback.spec: network up after ${Date.now() - t0} ms\n`)
    await chain.fund((await net.gateway.ready).address as Address)
    // the partition: every job stream this gateway opens fails as an unreachable worker's would
    cut = await runGateway({
      bootstrap: net.bootstrapAddrs, port: 0, host: '127.0.0.1', listen: [], dataDir: join(net.dir, 'gateway-cut'),
      project: [join(root, 'examples/hello')], owner: chain.deployer, contracts: chain.contractsFile, fallbackDeadline: 30, fallbackPay: 'auto', logLevel: 'error'
    }, { dial: async () => { throw new Error('no route to the worker (partition)') } })
    process.stderr.write(`fallback.spec: cut gateway up after ${Date.now() - t0} ms\n`)
    await chain.fund(cut.address)
    hello = cut.urls.find(u => u.endsWith('/hello/hello'))!
    await waitFor('both staked workers in the view', () => cut!.gateway.view.size() === 2 ? true : undefined, 60_000)
  })
  after(async () => {
    await cut?.stop()
    await net?.stop()
    await chain?.stop()
    if (chain !== undefined) rmSync(chain.dir, { recursive: true, force: true })
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
    // two staked workers known → redundancy 2, both revealed the same output
    const slots = await chain.publicClient.readContract({ address: chain.addresses.ExecutionCoordinator, abi: executionCoordinatorAbi, functionName: 'getSlots', args: [requestId] }) as unknown as Array<{ worker: Address, revealed: boolean, outputHash: Hex }>
    assert.equal(slots.length, 2)
    const workers = net.workerInfo.map(w => w.address.toLowerCase()).sort()
    assert.deepEqual(slots.map(s => s.worker.toLowerCase()).sort(), workers)
    assert.ok(slots.every(s => s.revealed && s.outputHash === req.outputHash))
    assert.ok(Date.now() - started < 30_000)
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

  it('uses the chain when the client sends x-peerhost-mode: onchain, and the mesh otherwise', async () => {
    // the gateway process: same chain, no partition
    const ready = await net.gateway.ready
    const url = net.functions.find(u => u.endsWith('/hello/hello'))!
    await waitFor('workers in the second gateway view', async () => {
      const st = await (await fetch(`${ready.url}/_peerhost/status`)).json() as any
      return st.workers.length === 2 ? true : undefined
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
