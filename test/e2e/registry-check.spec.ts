/**
 * The equivocation attack of issue 9 item 1, performed against real processes and a real chain:
 * a Hardhat chain, a bootstrap node, a staked gateway following the registry and a staked worker
 * (dev executor), each its own process on 127.0.0.1. A builder deploys a project; a rogue
 * "gateway" (a test libp2p node with its own secp256k1 key, signing valid tickets) then talks to
 * the worker over the real job stream:
 *
 * 1. unstaked, its ticket is refused with TICKET_INVALID before any work (no registry read, no run);
 * 2. once staked as a gateway, it can run the function only as registered: a bundle that is not
 *    the active one gets BUNDLE_NOT_ACTIVE, raised memory / an opened network / another env get
 *    OPTIONS_MISMATCH, and a replay of a (jobId, attempt) with other options or env — the way to
 *    get two receipts with different outputs and slash the worker — gets DUPLICATE_TICKET, never
 *    a second output;
 * 3. after `kill -9` of the worker (one job signed, one cut short mid-execution) and a restart on
 *    the same data dir, both replays are still refused.
 *
 * WebSocket sessions (issue 12) are jobs too and pass the same checks: an unstaked key's session
 * ticket is refused; a staked one's session runs only as registered, its transcript receipt is in
 * the receipt log before `session-end` leaves, and a replayed (jobId, attempt) — as a session or as
 * a request — gets DUPLICATE_TICKET.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { bytesToHex, parseEther, type Address, type Hex } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import {
  decodeMessage, functionId, inputHash, JOB_PROTOCOL, PROTOCOL_VERSION, rawCid, receiptDigest, receiptOf, ticketDigest, ticketOf,
  transcript, transcriptOutputHash, type FunctionOptions, type JobRequest, type Message, type WireRequest
} from '#protocol'
import { chainClient, chainDomain, createMeshNode, deployProject, frames, loadContracts, loadEvmAccount, type DeployResult, type PeerHostLibp2p } from '#node'
import { recoverDigestSigner } from '../../node/signing.ts'
import { ensureStake } from '../../node/staking/index.ts'
import { startTestNetwork, status, waitFor, type TestNetwork } from '../helpers/network.ts'
import { startTestChain, type TestChain } from '../chain/helpers.ts'
import { BUILDER_KEY } from '../deploy/chain-network.ts'

const root = resolve(import.meta.dirname, '..', '..')
const builder = privateKeyToAccount(BUILDER_KEY)
/** what the fixture's peerhost.json gives `greet` and `slow` (no entry: the defaults) */
const REGISTERED: FunctionOptions = { memoryMb: 128, timeoutMs: 10_000, network: [], isolation: 'function' }
const ENV = { GREETING: 'hello' }

async function metric (admin: string, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`${admin}/_peerhost/metrics`)).text()
  let sum = 0
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue
    if (labels === '' ? line.startsWith(`${name} `) || line.startsWith(`${name}{`) : line.startsWith(`${name}${labels} `)) sum += Number(line.split(' ').at(-1))
  }
  return sum
}

describe('e2e: equivocation attack — a worker answers only staked gateways, only as registered, once per ticket', function () {
  this.timeout(300_000)
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-registry-check-e2e-'))
  let chain: TestChain
  let net: TestNetwork
  let deployed: DeployResult
  let probe: PeerHostLibp2p
  // the rogue gateway's ticket key: a valid signature, and (at first) no stake
  const rogueKey = generatePrivateKey()
  const rogue = privateKeyToAccount(rogueKey)

  before(async () => {
    chain = await startTestChain()
    net = await startTestNetwork({
      workers: 1,
      gatewayArgs: ['--contracts', chain.contractsFile],
      // the honest gateway stakes: workers answer only staked gateways
      async gatewayArgsFor (dataDir) {
        await chain.fund(loadEvmAccount(dataDir).address)
        return ['--stake', '1']
      },
      async workerArgsFor (_i, dataDir) {
        await chain.fund(loadEvmAccount(dataDir).address)
        return ['--contracts', chain.contractsFile, '--stake', '1']
      }
    })
    await waitFor('the staked worker in the gateway view', async () => (await status(net)).workers.length >= 1, 60_000)
    const app = join(dir, 'app')
    cpSync(join(root, 'test', 'fixtures', 'deploy-app'), app, { recursive: true })
    cpSync(join(root, 'test', 'fixtures', 'slow', 'functions', 'slow.ts'), join(app, 'functions', 'slow.ts'))
    cpSync(join(root, 'test', 'fixtures', 'websocket', 'functions', 'echo.ts'), join(app, 'functions', 'echo.ts'))
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

  /** A job for `<builder>/app/<name>` with a ticket the rogue key signs; `change` alters it before signing. */
  async function job (name: string, change: (j: JobRequest) => void = () => {}, query = 'name=Eve'): Promise<JobRequest> {
    const worker = net.workerInfo[0]
    const request: WireRequest = { method: 'GET', url: `${net.gatewayUrl}/${builder.address}/app/${name}?${query}`, headers: [], body: new Uint8Array() }
    // long enough to replay the ticket after a worker restart
    const deadline = Date.now() + 240_000
    const unsigned: JobRequest = {
      v: PROTOCOL_VERSION,
      type: 'job',
      jobId: bytesToHex(randomBytes(32)),
      attempt: 1,
      fn: { wallet: builder.address, project: 'app', name, id: functionId(builder.address, 'app', name), bundleCid: bundleOf(name) },
      options: { ...REGISTERED, network: [] },
      request,
      inputHash: inputHash(request),
      env: { ...ENV },
      deadline,
      ticket: { worker: worker.address as Address, gateway: rogue.address, fee: '0', epoch: '0', deadline: String(Math.ceil(deadline / 1000)) },
      ticketSig: '0x'
    }
    change(unsigned)
    return await signed(unsigned)
  }

  /** `j` with a fresh rogue signature (after changing fields of a signed job). */
  async function signed (j: JobRequest): Promise<JobRequest> {
    const ticketSig: Hex = await rogue.sign({ hash: ticketDigest(chainDomain(loadContracts(chain.contractsFile)), ticketOf(j)) })
    return { ...j, ticketSig }
  }

  /** Sends one job frame to the worker over the real job stream and returns its answer. */
  async function send (frame: JobRequest, timeoutMs = 30_000): Promise<any> {
    const stream = await probe.dialProtocol(multiaddr(net.workerInfo[0].addrs[0]), JOB_PROTOCOL)
    try {
      const f = frames(stream)
      await f.write(frame, AbortSignal.timeout(10_000))
      return await f.read('result', AbortSignal.timeout(timeoutMs))
    } finally {
      await stream.close().catch(() => {})
    }
  }

  /** A session job frame (a WebSocket upgrade of `<builder>/app/<name>`). */
  async function sessionJob (name: string, change: (j: JobRequest) => void = () => {}): Promise<JobRequest> {
    return await job(name, j => {
      j.session = true
      j.request = { ...j.request, headers: [['upgrade', 'websocket']] }
      j.inputHash = inputHash(j.request)
      change(j)
    })
  }

  /**
   * Opens a session on the worker's job stream: the first answer, and when it is `session-open`,
   * sends each of `messages` and then a close, and collects everything until the stream's last frame.
   */
  async function session (frame: JobRequest, messages: string[] = []): Promise<Message[]> {
    const stream = await probe.dialProtocol(multiaddr(net.workerInfo[0].addrs[0]), JOB_PROTOCOL)
    const got: Message[] = []
    try {
      const f = frames(stream)
      const next = async (): Promise<Message> => { const m = decodeMessage((await f.lp.read({ signal: AbortSignal.timeout(30_000) })).subarray()); got.push(m); return m }
      await f.write(frame, AbortSignal.timeout(10_000))
      const first = await next()
      if (first.type !== 'session-open') return got
      for (const text of messages) {
        await f.write({ v: PROTOCOL_VERSION, type: 'ws', binary: false, data: new TextEncoder().encode(text) }, AbortSignal.timeout(10_000))
        await next()
      }
      await f.write({ v: PROTOCOL_VERSION, type: 'ws-close', code: 1000, reason: 'done' }, AbortSignal.timeout(10_000))
      for (;;) {
        const m = await next()
        if (m.type === 'session-end' || m.type === 'error' || m.type === 'result') return got
      }
    } finally {
      await stream.close().catch(() => {})
    }
  }

  const admin = (): string => net.workerInfo[0].admin as string
  const executions = async (): Promise<number> => await metric(admin(), 'peerhost_worker_execution_seconds_count')
  const registryReads = async (): Promise<number> => await metric(admin(), 'peerhost_worker_registry_checks_total')
  let signedJob: JobRequest
  let signedAnswer: any
  let cutShort: JobRequest

  it('serves the deployed function through the (staked) gateway', async () => {
    const res = await fetch(`${net.gatewayUrl}/${builder.address}/app/greet?name=Ada`)
    assert.equal(res.status, 200, await res.clone().text())
    assert.equal(await res.text(), 'hello, Ada (v1)')
  })

  it('refuses a ticket signed by an unstaked key with TICKET_INVALID, before any work', async () => {
    const [runsBefore, readsBefore] = [await executions(), await registryReads()]
    assert.ok(runsBefore >= 1, 'the gateway request above ran')
    const answer = await send(await job('greet', j => { j.env = { GREETING: 'pwned' } }))
    assert.equal(answer.type, 'error', JSON.stringify(answer))
    assert.equal(answer.error.code, 'TICKET_INVALID')
    assert.equal(answer.error.details.reason, 'gateway-not-staked')
    assert.ok(answer.error.message.includes(rogue.address) && answer.error.message.includes('not staked as a gateway'), answer.error.message)
    // nothing ran and the registry was not even asked
    assert.equal(await executions(), runsBefore)
    assert.equal(await registryReads(), readsBefore)
    assert.equal(await metric(admin(), 'peerhost_worker_rejected_frames_total', '{code="TICKET_INVALID"}'), 1)
  })

  it('refuses an unstaked key\'s WebSocket session ticket with TICKET_INVALID, before any work', async () => {
    const runsBefore = await executions()
    const [answer, ...rest] = await session(await sessionJob('echo'))
    assert.equal(answer.type, 'error', JSON.stringify(answer))
    assert.equal((answer as any).error.code, 'TICKET_INVALID')
    assert.equal((answer as any).error.details.reason, 'gateway-not-staked')
    assert.equal(rest.length, 0, 'no session opened')
    assert.equal(await executions(), runsBefore, 'nothing ran')
  })

  it('once the key stakes as a gateway, runs only the active bundle (BUNDLE_NOT_ACTIVE otherwise)', async () => {
    await chain.fund(rogue.address)
    await ensureStake(chainClient(loadContracts(chain.contractsFile), rogue), 'gateway', { stake: parseEther('1') })
    // the worker learns of the stake from WorkerStaking's Staked event (its cached "not staked" is dropped)
    const first = await waitFor('the worker to accept the newly staked gateway', async () => {
      const a = await send(await job('greet'))
      return a.type === 'result' ? a : undefined
    }, 30_000, 500)
    assert.equal(new TextDecoder().decode(first.response.body), 'hello, Eve (v1)')

    const timeBundle = bundleOf('time')
    const runsBefore = await executions()
    const other = await send(await job('greet', j => { j.fn.bundleCid = timeBundle }))
    assert.equal(other.error?.code, 'BUNDLE_NOT_ACTIVE', JSON.stringify(other))
    assert.equal(other.error.details.expected, bundleOf('greet'))
    assert.equal(other.error.details.given, timeBundle)
    const unregistered = await send(await job('greet', j => { j.fn.bundleCid = rawCid(new Uint8Array(randomBytes(256))) }))
    assert.equal(unregistered.error?.code, 'BUNDLE_NOT_ACTIVE')
    assert.equal(await executions(), runsBefore)
    const log = await waitFor('the refusals in the worker log', () => {
      const lines = readFileSync(join(net.dir, 'logs', 'worker-1.log'), 'utf8').split('\n').filter(l => l.includes('job refused: its bundle is not the active one'))
      return lines.length >= 2 ? lines : undefined
    }, 5_000)
    assert.equal(JSON.parse(log[0]).level, 40, 'warn')
  })

  it('refuses options or env other than the registered manifest\'s (OPTIONS_MISMATCH): no raised memory, no opened network, no chosen env', async () => {
    const runsBefore = await executions()
    for (const [change, fields] of [
      [(j: JobRequest) => { j.options.memoryMb = 2048 }, 'memoryMb'],
      [(j: JobRequest) => { j.options.network = ['169.254.169.254', 'evil.example'] }, 'network'],
      [(j: JobRequest) => { j.options.timeoutMs = 300_000 }, 'timeoutMs'],
      [(j: JobRequest) => { j.env = { GREETING: 'pwned' } }, 'env']
    ] as const) {
      const answer = await send(await job('greet', change))
      assert.equal(answer.error?.code, 'OPTIONS_MISMATCH', JSON.stringify(answer))
      assert.equal(answer.error.details.fields, fields)
    }
    assert.equal(await executions(), runsBefore, 'nothing ran')
  })

  it('never signs a second output for a (jobId, attempt): replays with other options or env get DUPLICATE_TICKET', async () => {
    signedJob = await job('greet')
    signedAnswer = await send(signedJob)
    assert.equal(signedAnswer.type, 'result', JSON.stringify(signedAnswer))
    // the receipt is the worker's signature over this exact job
    const domain = chainDomain(loadContracts(chain.contractsFile))
    assert.equal(recoverDigestSigner(receiptDigest(domain, receiptOf(signedJob, signedAnswer.outputHash)), signedAnswer.receiptSig)?.toLowerCase(), net.workerInfo[0].address.toLowerCase())
    const runsAfterFirst = await executions()

    const replays = [
      await signed({ ...signedJob, options: { ...signedJob.options, memoryMb: 2048 } }),
      await signed({ ...signedJob, env: { GREETING: 'pwned' } }),
      await signed({ ...signedJob, request: { ...signedJob.request, url: `${signedJob.request.url}x` }, inputHash: inputHash({ ...signedJob.request, url: `${signedJob.request.url}x` }) }),
      signedJob
    ]
    for (const replay of replays) {
      const answer = await send(replay)
      assert.equal(answer.type, 'error', `a second answer: ${JSON.stringify(answer)}`)
      assert.equal(answer.error.code, 'DUPLICATE_TICKET')
      assert.equal(answer.error.details.state, 'signed')
      // the one output this ticket key ever got, handed back
      assert.equal(answer.error.details.outputHash, signedAnswer.outputHash)
      assert.equal(answer.error.details.receiptSig, signedAnswer.receiptSig)
      assert.equal(answer.error.details.sameJob, replay === signedJob)
    }
    assert.equal(await executions(), runsAfterFirst, 'no replay ran')
  })

  it('a staked key\'s session runs only as registered; its transcript receipt is signed once: a replayed (jobId, attempt) gets DUPLICATE_TICKET', async () => {
    const mismatch = await session(await sessionJob('echo', j => { j.options.memoryMb = 2048 }))
    assert.equal(mismatch.length, 1)
    assert.equal((mismatch[0] as any).error?.code, 'OPTIONS_MISMATCH', JSON.stringify(mismatch[0]))

    const frame = await sessionJob('echo')
    const runsBefore = await executions()
    const frames = await session(frame, ['hi', 'there'])
    // the client (here the rogue gateway) closed first: the worker ends without a close of its own
    assert.deepEqual(frames.map(m => m.type), ['session-open', 'ws', 'ws', 'session-end'], JSON.stringify(frames.map(m => m.type)))
    assert.equal(new TextDecoder().decode((frames[1] as any).data), 'echo: hi')
    const end = frames.at(-1) as Extract<Message, { type: 'session-end' }>
    // the receipt signs the transcript of exactly what went each way
    const tr = transcript()
    tr.add('in', false, new TextEncoder().encode('hi'))
    tr.add('out', false, new TextEncoder().encode('echo: hi'))
    tr.add('in', false, new TextEncoder().encode('there'))
    tr.add('out', false, new TextEncoder().encode('echo: there'))
    assert.equal(end.outputHash, transcriptOutputHash(tr.summary()))
    const domain = chainDomain(loadContracts(chain.contractsFile))
    assert.equal(recoverDigestSigner(receiptDigest(domain, receiptOf(frame, end.outputHash)), end.receiptSig)?.toLowerCase(), net.workerInfo[0].address.toLowerCase())
    assert.equal(await executions(), runsBefore + 1)

    // the same ticket key again, as a session with another env, as the same session, and as a request
    const { session: _session, ...asRequest } = frame
    for (const replay of [await signed({ ...frame, env: { GREETING: 'pwned' } }), frame, await signed(asRequest)]) {
      const [answer, ...rest] = await session(replay)
      assert.equal(rest.length, 0)
      assert.equal(answer.type, 'error', `a second answer: ${JSON.stringify(answer)}`)
      assert.equal((answer as any).error.code, 'DUPLICATE_TICKET')
      assert.equal((answer as any).error.details.state, 'signed', 'the session receipt was recorded before session-end left')
      assert.equal((answer as any).error.details.outputHash, end.outputHash)
      assert.equal((answer as any).error.details.receiptSig, end.receiptSig)
    }
    assert.equal(await executions(), runsBefore + 1, 'no replay ran')
  })

  it('still refuses both replays after kill -9 and a restart: one signed, one cut short mid-execution', async () => {
    cutShort = await job('slow', () => {}, 'ms=20000')
    const pending = send(cutShort, 60_000).catch((err: Error) => err)
    const worker = net.workers[0]
    await waitFor('the slow job running on the worker', async () => await metric(admin(), 'peerhost_worker_running_jobs') >= 1, 30_000, 100)
    const exited = new Promise(resolve => worker.proc.once('exit', (_code, signal) => resolve(signal)))
    worker.proc.kill('SIGKILL')
    assert.equal(await exited, 'SIGKILL')
    const lost = await pending
    assert.ok(lost instanceof Error || lost.type === 'error', `the killed worker answered: ${JSON.stringify(lost)}`)

    const info = await net.startWorker(0)
    assert.equal(info.address, signedJob.ticket.worker, 'same data dir, same key')
    const again = await send(signedJob)
    assert.equal(again.error?.code, 'DUPLICATE_TICKET', JSON.stringify(again))
    assert.equal(again.error.details.outputHash, signedAnswer.outputHash)
    const replayOfCut = await send(await signed({ ...cutShort, options: { ...cutShort.options, memoryMb: 2048 } }))
    assert.equal(replayOfCut.error?.code, 'DUPLICATE_TICKET', JSON.stringify(replayOfCut))
    assert.equal(replayOfCut.error.details.state, 'reserved', 'the worker cannot know whether a receipt left before it died')
    assert.equal(await executions(), 0, 'the restarted worker ran nothing')
    // the refusal is about those keys only: a fresh ticket runs
    const fresh = await send(await job('greet'))
    assert.equal(fresh.type, 'result', JSON.stringify(fresh))
  })
})
