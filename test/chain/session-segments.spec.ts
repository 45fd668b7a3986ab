/**
 * Sessions that outlive their epoch are paid (docs/chain.md "Sessions that outlive their epoch"),
 * on a real Hardhat chain with real Settlement: a bootstrap, a gateway with its ticket log and
 * batch checker, two workers with a session price (dev executor) each with its receipt log and
 * settler; real `ws` clients. Chain time is moved by the test (`evm_setNextBlockTimestamp`), and
 * the gateway's and the workers' view of Settlement's epoch follows the chain's head.
 *
 * - A session held across two epoch ends is settled as three leaves (its segments) in three
 *   batches of three epochs, whose fees add up to `sessionOwed` for the whole session, to the wei:
 *   the worker is paid exactly that (plus its bonds) and the escrow falls by the same.
 * - `/_peerhost/receipts/<jobId>` lists the segments' receipts in order, each verified, the
 *   transcript running on (each a prefix of the next).
 * - Attack: a worker composed with a batch builder (the settler's `batch` part; no production
 *   switch) claims its session's second segment above the last cumulative ticket the gateway
 *   signed for it: the gateway's checker proves it (`proveInvalidLeaf`), the batch is voided.
 * - A gateway that never sends `segment` (a raw gateway-side client with its own funded key): the
 *   worker closes the segment itself at the last cumulative ticket it holds, and is paid for it.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Hex } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { settlementAbi } from '#contracts'
import { atFee, PROTOCOL_VERSION, rawCid, segmentJobId, ticketDigest, ticketOf, type JobRequest, type Message } from '#protocol'
import {
  chainDomain, loadContracts, sessionEpochs, settlementGrace, silentLogger,
  type ReceiptLog, type Settler, type WorkerNode
} from '#node'
import { buildSettlementBatch, type SettlementItem } from '../../contracts/abi/leaf.ts'
import { waitFor } from '../helpers/network.ts'
import { openWebSocket } from '../helpers/ws.ts'
import { signedJob } from '../helpers/jobs.ts'
import { openRawSession, RAW_ECHO_SOURCE, rawGateway, untilSessionEnd } from '../helpers/raw-gateway.ts'
import { startSettlementChain, type SettlementChain } from './helpers.ts'
import { sessionNetwork } from './session-network.ts'
import { committedBatch, earned, fundProject, party, type Party } from './settlement-helpers.ts'

const GWEI = 1_000_000_000n
const PRICE = 1_000n * GWEI
const PER_MESSAGE = 3n * GWEI
/** what the lying worker adds to its session's second segment */
const INFLATE = 50_000n * GWEI

describe('chain: a session that outlives its epoch is settled segment by segment', function () {
  this.timeout(600_000)
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-session-segments-'))
  const logger = silentLogger()
  let chain: SettlementChain
  const closers: Array<() => Promise<void> | void> = []
  /** chain time as the gateway and the workers see it: the head the test last moved to */
  let head = 0n
  let pid: Hex
  let honest: { w: Party, receipts: ReceiptLog, worker: WorkerNode, s: Settler }

  before(async () => { chain = await startSettlementChain() })
  after(async () => {
    for (const c of closers.reverse()) await c()
    await chain?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  const moveTo = async (t: bigint): Promise<void> => { await chain.advanceTo(t); head = await chain.chainNow() }
  /** each settler's tick after a fresh block (each tick's transaction takes the next timestamp) */
  async function tick (s: Settler): Promise<number> {
    await chain.advanceTo((await chain.chainNow()) + 1n)
    return (await s.tick()).committed
  }

  it('three segments in three batches add up to what the session owes, to the wei; a segment claimed above its last ticket is proven faulty', async function () {
    const { clock } = chain
    const contracts = loadContracts(chain.contractsFile)
    const domain = chainDomain(contracts)
    await chain.registerProject('ws', ['echo'])
    const gw = await party(chain)
    pid = await fundProject(chain, gw.signer.address, 10n ** 18n, 10n ** 17n, 'ws')
    const escrowBefore = await chain.read<bigint>('escrowOf', [pid])
    await moveTo(clock.epochEnd(clock.epochAt(BigInt(Math.ceil(Date.now() / 1000)) + BigInt(Math.ceil(this.timeout() / 1000)))) + 1n)
    const e = clock.epochAt(head)

    let liarTarget: Hex | undefined
    const lie = (items: SettlementItem[]) => buildSettlementBatch(items.map(i => i.ticket.jobId === liarTarget ? { ...i, ticket: { ...i.ticket, fee: i.ticket.fee + INFLATE } } : i))
    // the workers' Settlement clock is the chain's head too (their own grace: the settler's default)
    const net = await sessionNetwork(chain, { dir, gw, domain, head: () => head, price: PRICE, perMessage: PER_MESSAGE, lie, closers, logger, workerParts: () => ({ sessionEpochs: sessionEpochs(clock, undefined, () => Number(head) * 1000) }) })
    const { gateway, tickets, checker, liar, wsUrl } = net
    honest = net.honest
    const parts = [liar, honest]

    type Session = { ws: Awaited<ReturnType<typeof openWebSocket>>['ws'], jobId: Hex, echoes: number, sent: number }
    const opened: Session[] = []
    for (let k = 0; k < 2; k++) {
      const { ws, headers } = await waitFor('a session', async () => await openWebSocket(wsUrl), 30_000, 250)
      const s: Session = { ws, jobId: String(headers['x-peerhost-job']) as Hex, echoes: 0, sent: 0 }
      ws.on('message', () => { s.echoes++ })
      opened.push(s)
    }
    const holder = (p: typeof honest, s: Session): boolean => p.receipts.get({ gateway: gw.signer.address, jobId: s.jobId, attempt: 1 }) !== undefined
    const hs = opened.find(s => holder(honest, s))
    const ls = opened.find(s => holder(liar, s))
    assert.ok(hs !== undefined && ls !== undefined && hs !== ls, 'one session on each worker')
    const talk = async (s: Session, n: number): Promise<void> => {
      for (let i = 0; i < n; i++) {
        s.ws.send(`m${s.sent++}`)
        if (i % 10 === 9 || i === n - 1) await waitFor(`echo ${s.sent}`, () => s.echoes >= s.sent || undefined, 20_000, 5)
      }
    }
    const key = (jobId: Hex) => ({ gateway: gw.signer.address, jobId, attempt: 1 })
    /** the epoch ends: the gateway opens segment `k` of `s` on its worker, which closes segment k − 1 first */
    const segmentOpened = async (p: typeof honest, s: Session, k: number): Promise<void> => {
      await waitFor(`segment ${k} of a session reserved on its worker`, () => p.receipts.get(key(segmentJobId(s.jobId, k)))?.state === 'reserved' || undefined, 20_000)
      assert.equal(p.receipts.get(key(segmentJobId(s.jobId, k - 1)))?.state, 'signed', `segment ${k - 1}'s receipt is signed first`)
    }

    // epoch e: 30 messages each way on both sessions
    await talk(hs, 30)
    await talk(ls, 30)
    await moveTo(clock.epochEnd(e) + 1n)
    await segmentOpened(honest, hs, 1)
    await segmentOpened(liar, ls, 1)
    // epoch e's batches: the sessions' first segments, while the sessions go on
    assert.equal(await tick(honest.s), 1)
    assert.equal(await tick(liar.s), 1)

    // epoch e + 1: 20 more each; the liar's session ends in it
    await talk(hs, 20)
    await talk(ls, 20)
    liarTarget = segmentJobId(ls.jobId, 1)
    const closeSession = async (s: Session): Promise<any> => {
      const closed = new Promise<number>(resolve => s.ws.once('close', code => resolve(code)))
      s.ws.close(1000)
      assert.equal(await closed, 1000)
      return await waitFor('the session receipt at the gateway', async () => {
        const res = await fetch(`${gateway.url}/_peerhost/receipts/${s.jobId}`)
        return res.status === 200 ? await res.json() as any : undefined
      }, 20_000)
    }
    const liarReceipt = await closeSession(ls)
    assert.equal(liarReceipt.verified, true, liarReceipt.problem)
    assert.deepEqual(liarReceipt.segments.map((x: any) => [x.segment, x.verified, x.epoch]), [[0, true, e.toString()], [1, true, (e + 1n).toString()]])

    await moveTo(clock.epochEnd(e + 1n) + 1n)
    await segmentOpened(honest, hs, 2)
    assert.equal(await tick(honest.s), 1)
    assert.equal(await tick(liar.s), 1)

    // epoch e + 2: 10 more, then the honest session ends
    await talk(hs, 10)
    const r = await closeSession(hs)
    assert.equal(r.verified, true, r.problem)
    const segs = r.segments as any[]
    assert.deepEqual(segs.map(x => [x.segment, x.verified, x.epoch, x.jobId]), [0, 1, 2].map(k => [k, true, (e + BigInt(k)).toString(), segmentJobId(hs.jobId, k)]), JSON.stringify(segs.map(x => x.problem)))
    assert.deepEqual(segs[2].receipt, r.receipt, 'the last segment\'s receipt is the session\'s')
    // the transcript runs on: each segment's a prefix of the next
    for (let k = 1; k < 3; k++) assert.ok(segs[k].transcript.messagesIn >= segs[k - 1].transcript.messagesIn && segs[k].transcript.messagesOut >= segs[k - 1].transcript.messagesOut)
    assert.deepEqual(segs[2].transcript, r.transcript)
    assert.equal(r.transcript.messagesIn, 60)
    const owed = PRICE + PER_MESSAGE * 2n * 60n
    const fees = segs.map(x => BigInt(x.fee))
    assert.equal(fees.reduce((a, b) => a + b, 0n), owed, 'the segments\' fees add up to sessionOwed for the whole session')
    for (let k = 0; k < 3; k++) assert.equal(tickets.get(segmentJobId(hs.jobId, k), 1, honest.w.signer.address)?.fee, fees[k], `the gateway logged segment ${k}'s final fee`)

    await moveTo(clock.epochEnd(e + 2n) + 1n)
    assert.equal(await tick(honest.s), 1)
    assert.equal(await tick(liar.s), 0)

    // three batches of the honest worker, one leaf each: its segments at their fees
    const hb = honest.s.batches()
    assert.equal(hb.length, 3)
    const totals = await Promise.all(hb.map(async b => (await committedBatch(chain, b.batchId)).total))
    assert.deepEqual([...totals].sort(), [...fees].sort())
    // the liar's second segment was committed above its last ticket
    const lb = liar.s.batches()
    assert.equal(lb.length, 2)
    const liarFees = (liarReceipt.segments as any[]).map(x => BigInt(x.fee))
    const lTotals = await Promise.all(lb.map(async b => [b.batchId, (await committedBatch(chain, b.batchId)).total] as const))
    const inflated = lTotals.find(([, t]) => t === liarFees[1] + INFLATE)
    assert.ok(inflated !== undefined, 'the inflated segment leaf is on chain')

    const verdicts = await checker.tick()
    const of = (id: Hex) => verdicts.find(v => v.batchId === id)
    for (const b of hb) assert.equal(of(b.batchId)?.verdict, 'ok', of(b.batchId)?.reason)
    const v = of(inflated[0])
    assert.equal(v?.verdict, 'faulty')
    assert.equal(v?.proof, 'proveInvalidLeaf')
    assert.match(v?.reason ?? '', new RegExp(`fee ${liarFees[1] + INFLATE}`))
    const fine = lTotals.find(([id]) => id !== inflated[0])
    assert.equal(of(fine![0])?.verdict, 'ok')
    const voided = await chain.publicClient.getContractEvents({ address: chain.addresses.Settlement, abi: settlementAbi, eventName: 'BatchVoided', fromBlock: 0n })
    assert.deepEqual(voided.map(x => (x.args as any).batchId), [inflated[0]])

    // after the challenge window: every sound batch finalizes; the honest worker is paid the session to the wei
    const earnedBefore = await earned(chain, honest.w.signer.address)
    assert.equal(earnedBefore, 0n)
    await moveTo(head + clock.challengeWindow + 1n)
    for (const p of parts) await tick(p.s)
    assert.deepEqual(honest.s.batches().map(b => b.state), ['finalized', 'finalized', 'finalized'])
    const bond = await chain.read<bigint>('minBatchBond')
    assert.equal(await earned(chain, honest.w.signer.address), owed + 3n * bond, 'the honest worker is paid what the whole session owed, and its bonds')
    assert.equal(await chain.read<bigint>('escrowOf', [pid]), escrowBefore - owed - liarFees[0], 'the escrow paid the honest session and the liar\'s sound first segment, nothing else')
    await chain.assertNobodySlashed()
  })

  it('a gateway that never sends `segment`: the worker closes the segment itself at its last cumulative ticket and is paid for it', async () => {
    const { clock } = chain
    const domain = chainDomain(loadContracts(chain.contractsFile))
    // another gateway key, allowed by the project: a raw client that pays tickets but never segments
    const gw2 = await party(chain)
    await fundProject(chain, gw2.signer.address, 0n, 10n ** 17n, 'ws')
    const account = privateKeyToAccount(gw2.key)
    const bytes = new TextEncoder().encode(RAW_ECHO_SOURCE)
    const cid = rawCid(bytes)
    const client = await rawGateway(cid, bytes)
    closers.push(async () => await client.stop())
    await moveTo(head + 1n)
    const E = clock.epochAt(head)
    const unsigned = await signedJob({
      worker: honest.w.signer.address,
      gateway: account,
      fn: { wallet: chain.deployer, project: 'ws', name: 'echo', bundleCid: cid },
      request: { method: 'GET', url: 'http://peerhost.test/echo', headers: [['upgrade', 'websocket']], body: new Uint8Array() },
      options: { memoryMb: 32, timeoutMs: 60_000, network: [], isolation: 'function' },
      session: true
    })
    const job: JobRequest = { ...unsigned, ticket: { ...unsigned.ticket, fee: PRICE.toString(), epoch: E.toString() } }
    const sign = async (j: JobRequest): Promise<Hex> => await account.sign({ hash: ticketDigest(domain, ticketOf(j)) })
    job.ticketSig = await sign(job)
    await waitFor('no session left on the honest worker', () => honest.worker.sessions === 0, 30_000)
    const s = await openRawSession(client, honest.worker.addrs()[0], job, 30_000)
    const send = async (m: Message): Promise<void> => { await s.f.write(m, AbortSignal.timeout(10_000)) }
    for (let i = 0; i < 3; i++) {
      await send({ v: PROTOCOL_VERSION, type: 'ws', binary: false, data: new TextEncoder().encode(`m${i}`) })
      const m = await s.f.readAny(AbortSignal.timeout(20_000))
      assert.equal(m.type, 'ws')
    }
    const held = (PRICE + 6n * PER_MESSAGE).toString()
    await send({ v: PROTOCOL_VERSION, type: 'ticket', jobId: job.jobId, attempt: 1, fee: held, ticketSig: await sign(atFee(job, held)) })
    // the epoch ends and half the settler's grace passes: no segment came
    const earnedBefore = await earned(chain, honest.w.signer.address)
    const grace = settlementGrace(clock)
    await moveTo(clock.epochEnd(E) + grace / 2n + 1n)
    const end0 = await s.f.readAny(AbortSignal.timeout(20_000))
    assert.ok(end0.type === 'segment-end', `a segment-end, got ${end0.type}`)
    assert.equal(end0.fee, held, 'closed at the last cumulative ticket the worker holds')
    await send({ v: PROTOCOL_VERSION, type: 'ws-close', code: 1000, reason: '' })
    const got = await untilSessionEnd(s, 30_000)
    assert.equal(got.at(-1)?.type, 'error', 'the next segment never got a ticket: nothing more to sign')
    await s.stream.close().catch(() => {})

    // the worker's settler commits the segment in epoch E's batch for that gateway, and is paid it
    assert.equal(await tick(honest.s), 1)
    const batch = honest.s.batches().find(b => b.gateway.toLowerCase() === gw2.signer.address.toLowerCase())
    assert.ok(batch !== undefined)
    assert.equal((await committedBatch(chain, batch.batchId)).total, BigInt(held))
    await moveTo(head + clock.challengeWindow + 1n)
    await tick(honest.s)
    const bond = await chain.read<bigint>('minBatchBond')
    assert.equal(await earned(chain, honest.w.signer.address), earnedBefore + BigInt(held) + bond, 'paid the self-closed segment to the wei')
    await chain.assertNobodySlashed()
  })
})
