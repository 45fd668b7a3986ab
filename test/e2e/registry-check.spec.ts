/**
 * Workers run only the bundle FunctionRegistry names as active, with real processes and a real
 * chain: a Hardhat chain, a bootstrap node, a gateway following the registry and a staked worker
 * (dev executor), each its own process on 127.0.0.1. A builder deploys a project; then a rogue
 * "gateway" (a test libp2p node with its own key, signing valid tickets) sends the worker job
 * frames over the real job stream naming the function with a bundle that is not its active one.
 * The worker answers BUNDLE_NOT_ACTIVE and never runs it; the same frame with the active bundle runs.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { bytesToHex, type Address, type Hex } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import {
  functionId, inputHash, JOB_PROTOCOL, PROTOCOL_VERSION, rawCid, ticketDigest, ticketOf,
  type JobRequest, type WireRequest
} from '#protocol'
import { chainDomain, createMeshNode, deployProject, frames, loadContracts, loadEvmAccount, type DeployResult, type PeerHostLibp2p } from '#node'
import { startTestNetwork, status, waitFor, type TestNetwork } from '../helpers/network.ts'
import { startTestChain, type TestChain } from '../chain/helpers.ts'
import { BUILDER_KEY } from '../deploy/chain-network.ts'

const root = resolve(import.meta.dirname, '..', '..')
const builder = privateKeyToAccount(BUILDER_KEY)

async function metric (admin: string, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`${admin}/_peerhost/metrics`)).text()
  const line = text.split('\n').find(l => l.startsWith(`${name}${labels} `))
  return line === undefined ? 0 : Number(line.split(' ').at(-1))
}

describe('e2e: a staked worker runs only the bundle FunctionRegistry names as active', function () {
  this.timeout(120_000)
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-registry-check-e2e-'))
  let chain: TestChain
  let net: TestNetwork
  let deployed: DeployResult
  let probe: PeerHostLibp2p
  // the rogue gateway's ticket key: any key signs a valid ticket, the check is about the bundle
  const rogue = privateKeyToAccount(generatePrivateKey())

  before(async () => {
    chain = await startTestChain()
    net = await startTestNetwork({
      workers: 1,
      gatewayArgs: ['--contracts', chain.contractsFile],
      async workerArgsFor (_i, dataDir) {
        await chain.fund(loadEvmAccount(dataDir).address)
        return ['--contracts', chain.contractsFile, '--stake', '1']
      }
    })
    await waitFor('the staked worker in the gateway view', async () => (await status(net)).workers.length >= 1, 20_000)
    const app = join(dir, 'app')
    cpSync(join(root, 'test', 'fixtures', 'deploy-app'), app, { recursive: true })
    deployed = await deployProject({ source: app, gateway: net.gatewayUrl, contracts: loadContracts(chain.contractsFile), account: BUILDER_KEY })
    probe = await createMeshNode({ privateKey: await generateKeyPair('Ed25519') })
    await probe.start()
  })
  after(async () => {
    await probe?.stop()
    await net?.stop()
    await chain?.stop()
    if (chain !== undefined) rmSync(chain.dir, { recursive: true, force: true })
    rmSync(dir, { recursive: true, force: true })
  })

  function bundleOf (name: string): string {
    const f = deployed.functions.find(f => f.name === name)
    assert.ok(f !== undefined)
    return f.bundleCid
  }

  /** A job for `<builder>/app/greet` naming `bundleCid`, with a ticket the rogue key signs. */
  async function job (bundleCid: string): Promise<JobRequest> {
    const worker = net.workerInfo[0]
    const request: WireRequest = { method: 'GET', url: `${net.gatewayUrl}/${builder.address}/app/greet?name=Eve`, headers: [], body: new Uint8Array() }
    const deadline = Date.now() + 10_000
    const unsigned: JobRequest = {
      v: PROTOCOL_VERSION,
      type: 'job',
      jobId: bytesToHex(randomBytes(32)),
      attempt: 1,
      fn: { wallet: builder.address, project: 'app', name: 'greet', id: functionId(builder.address, 'app', 'greet'), bundleCid },
      options: { memoryMb: 128, timeoutMs: 5_000, network: [], isolation: 'function' },
      request,
      inputHash: inputHash(request),
      env: { GREETING: 'pwned' },
      deadline,
      ticket: { worker: worker.address as Address, gateway: rogue.address, fee: '0', epoch: '0', deadline: String(Math.ceil(deadline / 1000)) },
      ticketSig: '0x'
    }
    const ticketSig: Hex = await rogue.sign({ hash: ticketDigest(chainDomain(loadContracts(chain.contractsFile)), ticketOf(unsigned)) })
    return { ...unsigned, ticketSig }
  }

  /** Sends one job frame to the worker over the real job stream and returns its answer. */
  async function send (frame: JobRequest): Promise<any> {
    const stream = await probe.dialProtocol(multiaddr(net.workerInfo[0].addrs[0]), JOB_PROTOCOL)
    try {
      const f = frames(stream)
      await f.write(frame, AbortSignal.timeout(10_000))
      return await f.read('result', AbortSignal.timeout(15_000))
    } finally {
      await stream.close().catch(() => {})
    }
  }

  it('serves the deployed function through the gateway (the worker accepts the active bundle)', async () => {
    const res = await fetch(`${net.gatewayUrl}/${builder.address}/app/greet?name=Ada`)
    assert.equal(res.status, 200, await res.clone().text())
    assert.equal(await res.text(), 'hello, Ada (v1)')
  })

  it('refuses a job naming another function\'s bundle or an unregistered one, and never runs it', async () => {
    const admin = net.workerInfo[0].admin as string
    const executionsBefore = await metric(admin, 'peerhost_worker_execution_seconds_count')
    assert.ok(executionsBefore >= 1, 'the gateway request above ran')

    // `time` is registered, but not as `greet`: the bytes are on the gateway, so only the check stops it
    const timeBundle = bundleOf('time')
    const other = await send(await job(timeBundle))
    assert.equal(other.type, 'error', JSON.stringify(other))
    assert.equal(other.error.code, 'BUNDLE_NOT_ACTIVE')
    assert.ok(other.error.message.includes(`${builder.address}/app/greet`), other.error.message)
    assert.ok(other.error.message.includes(timeBundle) && other.error.message.includes(bundleOf('greet')), other.error.message)
    assert.equal(other.error.details.expected, bundleOf('greet'))
    assert.equal(other.error.details.given, timeBundle)

    const random = rawCid(new Uint8Array(randomBytes(256)))
    const unregistered = await send(await job(random))
    assert.equal(unregistered.type, 'error')
    assert.equal(unregistered.error.code, 'BUNDLE_NOT_ACTIVE')

    // nothing ran; both refusals are counted and logged at warn
    assert.equal(await metric(admin, 'peerhost_worker_execution_seconds_count'), executionsBefore)
    assert.equal(await metric(admin, 'peerhost_worker_registry_checks_total', '{verdict="refused"}'), 2)
    assert.equal(await metric(admin, 'peerhost_worker_rejected_frames_total', '{code="BUNDLE_NOT_ACTIVE"}'), 2)
    const log = await waitFor('the refusals in the worker log', () => {
      const lines = readFileSync(join(net.dir, 'logs', 'worker-1.log'), 'utf8').split('\n').filter(l => l.includes('job refused: its bundle is not the active one'))
      return lines.length >= 2 ? lines : undefined
    }, 5_000)
    assert.equal(JSON.parse(log[0]).level, 40, 'warn')
  })

  it('runs the same rogue frame when it names the active bundle', async () => {
    const ok = await send(await job(bundleOf('greet')))
    assert.equal(ok.type, 'result', JSON.stringify(ok))
    assert.equal(new TextDecoder().decode(ok.response.body), 'pwned, Eve (v1)')
  })
})
