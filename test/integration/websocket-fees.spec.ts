/**
 * Metered WebSocket session fees (issue 12's last item, issue 11's pricing), with real libp2p on
 * 127.0.0.1, a real worker (dev executor: the fee logic is the worker's, not the sandbox's) and a
 * real gateway with real `ws` clients:
 *
 * - an honest gateway pays a priced session with cumulative tickets: the session outlives the
 *   worker's credit, and its receipt signs the final cumulative fee (verified by the gateway);
 * - attacks, from a raw gateway-side client (a libp2p peer speaking the job protocol's frames with
 *   its own ticket key): a gateway that never tops up is closed 4402 at the credit limit; forged,
 *   lower, equal and other-job tickets are ignored and the receipt signs the highest valid one.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { Registry } from 'prom-client'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { createBootstrap } from '#bootstrap'
import {
  atFee, DEV_DOMAIN, PROTOCOL_VERSION, rawCid, receiptDigest, receiptOf, ticketDigest, ticketOf,
  type JobRequest, type Message
} from '#protocol'
import { devExecutor } from '#sandbox'
import {
  addProject, createGateway, createWorker, fastSigner, functionTable, receiptLog, recoverDigestSigner, silentLogger,
  type GatewayNode, type PeerHostLibp2p, type ReceiptLog, type WorkerNode
} from '#node'
import { signedJob } from '../helpers/jobs.ts'
import { waitFor } from '../helpers/network.ts'
import { openWebSocket } from '../helpers/ws.ts'
import { openRawSession, RAW_ECHO_SOURCE, rawGateway, untilSessionEnd, type RawSession } from '../helpers/raw-gateway.ts'

const root = resolve(import.meta.dirname, '..', '..')
const ECHO = RAW_ECHO_SOURCE
/** wei per message either way */
const PER_MESSAGE = 10n
/** the worker's credit: 250 messages' worth (2,500 wei); an honest gateway tops up every 100 */
const CREDIT_MESSAGES = 250

describe('metered session fees (cumulative tickets)', function () {
  this.timeout(120_000)
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-ws-fees-'))
  const logger = silentLogger()
  const bytes = new TextEncoder().encode(ECHO)
  const cid = rawCid(bytes)
  const rogue = privateKeyToAccount(generatePrivateKey())
  const wallet = privateKeyToAccount(generatePrivateKey()).address
  const metrics = new Registry()
  let boot: Awaited<ReturnType<typeof createBootstrap>>
  let gateway: GatewayNode
  let worker: WorkerNode
  let receipts: ReceiptLog
  let client: PeerHostLibp2p
  let wsBase: string

  before(async () => {
    boot = await createBootstrap({}, { privateKey: await generateKeyPair('Ed25519'), logger, registry: new Registry() })
    await boot.start()
    const functions = functionTable()
    const owner = fastSigner(generatePrivateKey()).address
    await addProject(functions, owner, join(root, 'test/fixtures/websocket'))
    gateway = await createGateway({ port: 0, bootstrap: boot.addrs() }, { privateKey: await generateKeyPair('Ed25519'), signer: fastSigner(generatePrivateKey()), functions, logger, registry: new Registry() })
    await gateway.start()
    receipts = receiptLog({ dataDir: join(dir, 'w'), pruneIntervalMs: 0 })({ logger })
    worker = await createWorker({
      dataDir: join(dir, 'w'),
      bootstrap: boot.addrs(),
      sessionPrice: { perMessage: PER_MESSAGE, perMinute: 0n },
      sessionCredit: { messages: CREDIT_MESSAGES, ms: 0 }
    }, { privateKey: await generateKeyPair('Ed25519'), signer: fastSigner(generatePrivateKey()), executor: devExecutor({})({}), logger, registry: metrics, receipts })
    await worker.start()
    await waitFor('the worker and its session price in the gateway view', () => gateway.view.list().some(w => w.advert.sessionPrice?.perMessage === PER_MESSAGE.toString()), 30_000)
    wsBase = `${gateway.url.replace(/^http/, 'ws')}/${owner}/ws`
    client = await rawGateway(cid, bytes)
  })
  beforeEach(async () => { if (worker !== undefined) await waitFor('no session left open at the worker', () => worker.sessions === 0, 30_000) })
  after(async () => {
    await client?.stop()
    await gateway?.stop()
    await worker?.stop()
    receipts?.close()
    await boot?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it('an honest gateway pays a priced session past the worker\'s credit; the receipt signs the final cumulative fee', async () => {
    const { ws, headers } = await waitFor('an echo session', async () => await openWebSocket(`${wsBase}/echo`), 30_000, 250)
    const jobId = String(headers['x-peerhost-job'])
    const rounds = 300
    let echoes = 0
    const all = new Promise<void>((resolve, reject) => {
      ws.on('message', () => { if (++echoes === rounds) resolve() })
      ws.once('close', code => reject(new Error(`closed ${code} after ${echoes} echoes`)))
    })
    // one at a time would take long; in bursts of 10 (600 messages either way: 2.4 × the credit)
    for (let i = 0; i < rounds; i++) {
      ws.send(`m${i}`)
      if (i % 10 === 9) await waitFor(`echo ${i + 1}`, () => echoes >= i + 1 || undefined, 20_000, 5)
    }
    await all
    ws.removeAllListeners('close')
    ws.close(1000)
    const receipt = await waitFor('the session receipt', async () => {
      const res = await fetch(`${gateway.url}/_peerhost/receipts/${jobId}`)
      return res.status === 200 ? await res.json() as any : undefined
    }, 20_000)
    assert.equal(receipt.verified, true, receipt.problem)
    assert.equal(receipt.receipt.fee, String(PER_MESSAGE * BigInt(2 * rounds)), 'the final ticket pays every message either way')
    const row = await waitFor('the signed receipt in the worker\'s log', () => { const r = receipts.get({ gateway: receipt.receipt.gateway, jobId: jobId as `0x${string}`, attempt: receipt.receipt.attempt }); return r?.state === 'signed' ? r : undefined })
    assert.equal(row.fee, String(PER_MESSAGE * BigInt(2 * rounds)), 'the worker settles that fee')
  })

  // ---- a raw gateway-side client ----

  async function rawSession (): Promise<RawSession & { job: JobRequest }> {
    const job = await signedJob({
      worker: worker.address,
      gateway: rogue,
      fn: { wallet, project: 'raw', name: 'echo', bundleCid: cid },
      request: { method: 'GET', url: 'http://peerhost.test/echo', headers: [['upgrade', 'websocket']], body: new Uint8Array() },
      options: { memoryMb: 32, timeoutMs: 30_000, network: [], isolation: 'function' },
      session: true
    })
    return { ...await openRawSession(client, worker.addrs()[0], job, 30_000), job }
  }

  const send = async (s: RawSession, msg: Message): Promise<void> => { await s.f.write(msg, AbortSignal.timeout(10_000)) }
  const text = (data: string): Message => ({ v: PROTOCOL_VERSION, type: 'ws', binary: false, data: new TextEncoder().encode(data) })
  const ticket = async (s: RawSession & { job: JobRequest }, fee: string, signer = rogue, jobId = s.job.jobId): Promise<Message> =>
    ({ v: PROTOCOL_VERSION, type: 'ticket', jobId, attempt: 1, fee, ticketSig: await signer.sign({ hash: ticketDigest(DEV_DOMAIN, ticketOf(atFee({ ...s.job, jobId }, fee))) }) })

  async function ticketOutcomes (): Promise<Record<string, number>> {
    const m = await metrics.getSingleMetric('peerhost_worker_session_tickets_total')?.get()
    return Object.fromEntries((m?.values ?? []).map(v => [String(v.labels.outcome), v.value]))
  }

  it('attack: a gateway that never sends top-up tickets: the worker closes the session 4402 at its credit limit', async () => {
    const s = await rawSession()
    const sent = 400
    const writes = (async () => { for (let i = 0; i < sent; i++) await send(s, text(`m${i}`)).catch(() => {}) })()
    const got = await untilSessionEnd(s, 60_000)
    await writes
    const close = got.find(m => m.type === 'ws-close')
    assert.ok(close?.type === 'ws-close', `a ws-close: ${got.map(m => m.type).join(', ')}`)
    assert.equal(close.code, 4402)
    assert.match(close.reason, /payment required/)
    // in + out messages until owed (10 wei each) exceeded the 2,500 wei credit: ~126 echoes, not 400
    const echoes = got.filter(m => m.type === 'ws').length
    assert.ok(echoes <= CREDIT_MESSAGES / 2 + 2, `${echoes} of ${sent} messages were served on credit`)
    const end = got.at(-1)
    assert.ok(end?.type === 'session-end')
    assert.equal(end.fee, undefined, 'nothing beyond the opening ticket was paid')
    await s.stream.close().catch(() => {})
  })

  it('attack: forged, lower, equal and other-job cumulative tickets are ignored; the receipt signs the highest valid one', async () => {
    const before = await ticketOutcomes()
    const s = await rawSession()
    const other = privateKeyToAccount(generatePrivateKey())
    await send(s, await ticket(s, '5000', other))
    await send(s, await ticket(s, '700'))
    await send(s, await ticket(s, '600'))
    await send(s, await ticket(s, '700'))
    await send(s, await ticket(s, '9000', rogue, `0x${'77'.repeat(32)}`))
    // a forged ticket that reuses a valid signature with a higher fee
    const valid = await ticket(s, '800') as Extract<Message, { type: 'ticket' }>
    await send(s, { ...valid, fee: '8000' })
    await send(s, valid)
    await send(s, text('hello'))
    const echo = await s.f.readAny(AbortSignal.timeout(20_000))
    assert.equal(echo.type, 'ws')
    await send(s, { v: PROTOCOL_VERSION, type: 'ws-close', code: 1000, reason: '' })
    const got = await untilSessionEnd(s, 30_000)
    const end = got.at(-1)
    assert.ok(end?.type === 'session-end', got.map(m => m.type).join(', '))
    assert.equal(end.fee, '800')
    const signer = recoverDigestSigner(receiptDigest(DEV_DOMAIN, receiptOf(atFee(s.job, '800'), end.outputHash)), end.receiptSig)
    assert.equal(signer?.toLowerCase(), worker.address.toLowerCase(), 'the receipt signs the fee of 800')
    const stored = receipts.get({ gateway: rogue.address, jobId: s.job.jobId, attempt: 1 })
    assert.equal(stored?.fee, '800', 'the receipt log settles 800')
    assert.equal(stored?.ticketSig, (valid as any).ticketSig)
    const after = await ticketOutcomes()
    const delta = (k: string): number => (after[k] ?? 0) - (before[k] ?? 0)
    assert.deepEqual({ accepted: delta('accepted'), notHigher: delta('not-higher'), badSignature: delta('bad-signature'), otherJob: delta('other-job') }, { accepted: 2, notHigher: 2, badSignature: 2, otherJob: 1 })
    await s.stream.close().catch(() => {})
  })
})
