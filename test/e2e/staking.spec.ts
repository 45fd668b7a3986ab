/**
 * Staked workers only, with real processes and a real chain: workers with --contracts stake and
 * bind their peer id on start (or refuse to start), the gateway admits only adverts whose address
 * is an active worker with that peer id bound, and requests only ever go to those workers. A worker
 * that withdraws its stake drops out of the view (the WithdrawalRequested event invalidates the
 * cached verdict).
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { rmSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { createWalletClient, http, type Address } from 'viem'
import { workerStakingAbi } from '#contracts'
import { advertSigningBytes, encodeMessage, PROTOCOL_VERSION, workersTopic, type WorkerAdvert } from '#protocol'
import { createMeshNode, loadEvmAccount, type PeerHostLibp2p } from '#node'
import { CLI } from '../../bin/spawn.ts'
import { peerIdBytes } from '../../node/staking/index.ts'
import { chainOf } from '../../node/chain/client.ts'
import { startTestNetwork, status, waitFor, type TestNetwork } from '../helpers/network.ts'
import { startTestChain, type TestChain } from '../chain/helpers.ts'

const root = resolve(import.meta.dirname, '..', '..')

async function metric (net: TestNetwork, check: string): Promise<number> {
  const text = await (await fetch(`${net.gatewayUrl}/_peerhost/metrics`)).text()
  const m = new RegExp(`peerhost_gateway_adverts_total\\{check="${check}"\\} (\\d+)`).exec(text)
  return m === null ? 0 : Number(m[1])
}

describe('staking: gateways dispatch only to staked workers bound to their peer id', function () {
  this.timeout(300_000)
  let chain: TestChain
  let net: TestNetwork
  let hello: string
  let probe: PeerHostLibp2p | undefined

  before(async () => {
    chain = await startTestChain()
    net = await startTestNetwork({
      workers: 3,
      projects: [join(root, 'examples/hello')],
      gatewayArgs: ['--contracts', chain.contractsFile],
      // staked workers answer only tickets of staked gateways
      async gatewayArgsFor (dataDir) {
        await chain.fund(loadEvmAccount(dataDir).address)
        return ['--stake', '1']
      },
      // workers 1 and 2 stake on start; worker 3 runs without a chain: unstaked, but its adverts are genuine
      async workerArgsFor (i, dataDir) {
        if (i === 2) return []
        await chain.fund(loadEvmAccount(dataDir).address)
        // the gateway serves examples/hello from its folder, not from the chain: no registry check
        return ['--contracts', chain.contractsFile, '--stake', '1', '--unsafe-skip-registry-check']
      }
    })
    hello = net.functions.find(u => u.endsWith('/hello/hello'))!
  })
  after(async () => {
    await probe?.stop()
    await net?.stop()
    await chain?.stop()
    if (chain !== undefined) rmSync(chain.dir, { recursive: true, force: true })
  })

  it('refuses to start a worker whose stake is below the minimum, in one sentence', async () => {
    const dataDir = join(net.dir, 'worker-unfunded')
    const proc = spawn(process.execPath, [CLI, 'worker', '--bootstrap', net.bootstrapAddrs.join(','), '--data-dir', dataDir, '--contracts', chain.contractsFile, '--unsafe-dev-executor', '--log-level', 'silent'], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stderr = ''
    proc.stderr.on('data', d => { stderr += d })
    const code = await new Promise<number | null>(resolve => proc.once('exit', resolve))
    assert.equal(code, 2)
    const address = loadEvmAccount(dataDir).address
    assert.match(stderr, new RegExp(`^peerhost: worker ${address} has 0 ETH staked and the minimum is 1 ETH; fund that address and start again with --stake <amount> \\(at least 1\\)\\n$`))
    // with --stake but no funds: also one sentence
    const again = spawn(process.execPath, [CLI, 'worker', '--bootstrap', net.bootstrapAddrs.join(','), '--data-dir', dataDir, '--contracts', chain.contractsFile, '--stake', '1', '--unsafe-dev-executor', '--log-level', 'silent'], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stderr2 = ''
    again.stderr.on('data', d => { stderr2 += d })
    assert.equal(await new Promise<number | null>(resolve => again.once('exit', resolve)), 2)
    assert.match(stderr2, /^peerhost: worker 0x[0-9a-fA-F]{40} holds 0 ETH, not enough to stake 1 ETH and pay gas; fund that address first\n$/)
  })

  it('stakes and binds each --contracts worker on start', async () => {
    for (const w of net.workerInfo.slice(0, 2)) {
      assert.equal(w.stake, (10n ** 18n).toString(), 'the ready line reports the active stake')
      const staking = chain.addresses.WorkerStaking
      assert.equal(await chain.publicClient.readContract({ address: staking, abi: workerStakingAbi, functionName: 'isActiveWorker', args: [w.address] }), true)
      const [bound] = await chain.publicClient.readContract({ address: staking, abi: workerStakingAbi, functionName: 'peerOf', args: [w.address] })
      assert.equal(bound, peerIdBytes(w.peerId))
    }
  })

  it('keeps the unstaked worker out of the view and never dispatches to it', async () => {
    const staked = new Set(net.workerInfo.slice(0, 2).map(w => w.peerId))
    await waitFor('the two staked workers in the view', async () => (await status(net)).workers.length === 2 ? true : undefined, 15_000)
    await waitFor('an UNSTAKED verdict', async () => await metric(net, 'UNSTAKED') > 0 ? true : undefined, 10_000)
    const st = await status(net)
    assert.deepEqual(new Set(st.workers.map((w: any) => w.peerId)), staked)
    for (let i = 0; i < 12; i++) {
      const res = await fetch(`${hello}?name=S${i}`)
      assert.equal(await res.text(), `Hello, S${i}!\n`)
      assert.ok(staked.has(res.headers.get('x-peerhost-worker')!), `request ${i} went to ${res.headers.get('x-peerhost-worker')}`)
    }
  })

  it('does not admit an advert that names a staked address from a peer id not bound to it', async () => {
    const key = await generateKeyPair('Ed25519')
    probe = await createMeshNode({ privateKey: key })
    await probe.start()
    const st = await status(net)
    await probe.dial(multiaddr(st.addrs[0]))
    const topic = workersTopic()
    probe.services.pubsub.subscribe(topic)
    await waitFor('the gateway in the probe topic peers', () => probe!.services.pubsub.getSubscribers(topic).some(p => p.toString() === st.peerId))
    // the unstaked worker stops first, so every UNSTAKED verdict from now on is the probe's
    await net.workers[2].stop()
    await new Promise(resolve => setTimeout(resolve, 500))
    const before = await metric(net, 'UNSTAKED')
    const advert: Omit<WorkerAdvert, 'sig'> = {
      v: PROTOCOL_VERSION, type: 'advert', peerId: probe.peerId.toString(), address: net.workerInfo[0].address as Address,
      addrs: probe.getMultiaddrs().map(m => m.toString().replace(/\/p2p\/[^/]+$/, '')), capacity: 64, load: 0, warm: [], ts: Date.now(), seq: 1
    }
    // a genuine advert (signed by the probe's own peer key) claiming worker 1's staked address
    await probe.services.pubsub.publish(topic, encodeMessage({ ...advert, sig: await key.sign(advertSigningBytes(advert)) }))
    await waitFor('the impostor advert judged UNSTAKED', async () => await metric(net, 'UNSTAKED') > before ? true : undefined, 10_000)
    assert.equal(await metric(net, 'BAD_SIGNATURE'), 0)
    assert.ok(!(await status(net)).workers.some((w: any) => w.peerId === probe!.peerId.toString()))
  })

  it('drops a worker from the view once it requests withdrawal of its stake', async () => {
    const leaving = net.workerInfo[1]
    const account = loadEvmAccount(join(net.dir, 'worker-2'))
    const wallet = createWalletClient({ account, chain: chainOf(chain), transport: http(chain.rpcUrl) })
    const hash = await wallet.writeContract({ address: chain.addresses.WorkerStaking, abi: workerStakingAbi, functionName: 'requestWithdrawal', args: [10n ** 18n] })
    await chain.publicClient.waitForTransactionReceipt({ hash })
    await waitFor('the withdrawn worker gone from the view', async () => {
      const st = await status(net)
      return st.workers.length === 1 && st.workers[0].peerId === net.workerInfo[0].peerId ? true : undefined
    }, 15_000)
    for (let i = 0; i < 4; i++) {
      const res = await fetch(`${hello}?name=W${i}`)
      assert.equal(await res.text(), `Hello, W${i}!\n`)
      assert.notEqual(res.headers.get('x-peerhost-worker'), leaving.peerId)
    }
  })
})
