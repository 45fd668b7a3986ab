/**
 * Sessions that outlive their Settlement epoch (docs/chain.md "Sessions that outlive their
 * epoch"), at the worker, with real libp2p on 127.0.0.1, a real worker (dev executor: the segment
 * logic is the worker's) and a raw gateway-side client speaking the job protocol's frames with its
 * own ticket key. The worker's view of Settlement's epochs is injected (`sessionEpochs`), moved by
 * the test.
 *
 * Attacks performed, each a `segment` frame the worker must ignore (no segment closed, no key
 * reserved): a wrong segment job id, a wrong epoch (not the worker's current one, or not after the
 * closing segment's), a closing ticket signed by another key, a closing fee below the cumulative
 * ticket the worker holds, and an opening ticket signed for another job. Then a valid one: the
 * closing segment's receipt is durable in the receipt log before the new segment's ticket is
 * counted, and the session's receipt signs the new segment. And a gateway that never sends
 * `segment`: the worker closes the segment itself at the last cumulative ticket it holds. And
 * restart safety: a worker process (test/integration/segment-worker-child.ts) killed with SIGKILL
 * right after it closed a segment has that segment's receipt in its log when the log is reopened.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import type { Hex } from 'viem'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { Registry } from 'prom-client'
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from 'viem/accounts'
import { createBootstrap } from '#bootstrap'
import {
  atFee, atSegment, DEV_DOMAIN, projectId, PROTOCOL_VERSION, rawCid, receiptDigest, receiptOf, segmentJobId, ticketDigest, ticketOf, transcriptOutputHash,
  type JobRequest, type Message, type SegmentFrame
} from '#protocol'
import { devExecutor } from '#sandbox'
import { createWorker, fastSigner, receiptLog, recoverDigestSigner, silentLogger, type PeerHostLibp2p, type ReceiptLog, type WorkerNode } from '#node'
import { signedJob } from '../helpers/jobs.ts'
import { openRawSession, RAW_ECHO_SOURCE, rawGateway, untilSessionEnd, type RawSession } from '../helpers/raw-gateway.ts'

const PER_MESSAGE = 10n
const PRICE = 1_000n
const EPOCH = 10n

describe('session segments at the worker (sessions that outlive their epoch)', function () {
  this.timeout(120_000)
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-segments-'))
  const logger = silentLogger()
  const bytes = new TextEncoder().encode(RAW_ECHO_SOURCE)
  const cid = rawCid(bytes)
  const gw = privateKeyToAccount(generatePrivateKey())
  const wallet = privateKeyToAccount(generatePrivateKey()).address
  const metrics = new Registry()
  /** the worker's view of Settlement: the current epoch, and the epochs whose segments it must close itself */
  let epochNow = EPOCH
  let dueBelow = 0n
  let boot: Awaited<ReturnType<typeof createBootstrap>>
  let worker: WorkerNode
  let receipts: ReceiptLog
  /** the worker's receipt-log calls, in order */
  const calls: string[] = []
  let client: PeerHostLibp2p

  before(async () => {
    boot = await createBootstrap({}, { privateKey: await generateKeyPair('Ed25519'), logger, registry: new Registry() })
    await boot.start()
    receipts = receiptLog({ dataDir: join(dir, 'w'), pruneIntervalMs: 0 })({ logger })
    worker = await createWorker({
      dataDir: join(dir, 'w'),
      bootstrap: boot.addrs(),
      price: PRICE,
      sessionPrice: { perMessage: PER_MESSAGE, perMinute: 0n }
    }, {
      privateKey: await generateKeyPair('Ed25519'),
      signer: fastSigner(generatePrivateKey()),
      executor: devExecutor({})({}),
      logger,
      registry: metrics,
      // the worker's log, its calls traced in order (the log itself is the real one)
      receipts: {
        ...receipts,
        refusesBefore: receipts.refusesBefore,
        reserve: (t) => { calls.push(`reserve ${t.jobId}`); return receipts.reserve(t) },
        raiseFee: (k, fee, sig) => { calls.push(`raiseFee ${k.jobId} ${fee}`); return receipts.raiseFee(k, fee, sig) },
        commit: async (k, out, sig) => { await receipts.commit(k, out, sig); calls.push(`committed ${k.jobId}`) }
      },
      sessionEpochs: { current: () => epochNow, segmentDue: (e) => e < dueBelow }
    })
    await worker.start()
    client = await rawGateway(cid, bytes)
  })
  beforeEach(() => { epochNow = EPOCH; dueBelow = 0n })
  after(async () => {
    await client?.stop()
    await worker?.stop()
    receipts?.close()
    await boot?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  async function rawSession (target: { address: `0x${string}`, addr: string } = { address: worker.address, addr: worker.addrs()[0] }): Promise<RawSession & { job: JobRequest }> {
    const unsigned = await signedJob({
      worker: target.address,
      gateway: gw,
      fn: { wallet, project: 'raw', name: 'echo', bundleCid: cid },
      request: { method: 'GET', url: 'http://peerhost.test/echo', headers: [['upgrade', 'websocket']], body: new Uint8Array() },
      options: { memoryMb: 32, timeoutMs: 60_000, network: [], isolation: 'function' },
      session: true
    })
    const job = { ...unsigned, ticket: { ...unsigned.ticket, fee: PRICE.toString(), epoch: EPOCH.toString() } }
    job.ticketSig = await gw.sign({ hash: ticketDigest(DEV_DOMAIN, ticketOf(job)) })
    return { ...await openRawSession(client, target.addr, job, 30_000), job }
  }

  const send = async (s: RawSession, msg: Message): Promise<void> => { await s.f.write(msg, AbortSignal.timeout(10_000)) }
  const text = (data: string): Message => ({ v: PROTOCOL_VERSION, type: 'ws', binary: false, data: new TextEncoder().encode(data) })
  const sign = async (job: JobRequest, by: PrivateKeyAccount = gw): Promise<Hex> => await by.sign({ hash: ticketDigest(DEV_DOMAIN, ticketOf(job)) })
  /** a round trip: every frame sent before it has been handled by the worker when its echo comes */
  /** a cumulative ticket for segment 0 of `s` at `fee`, signed by the gateway */
  const ticketAt = async (s: RawSession & { job: JobRequest }, fee: string): Promise<void> => { await send(s, { v: PROTOCOL_VERSION, type: 'ticket', jobId: s.job.jobId, attempt: 1, fee, ticketSig: await sign(atFee(s.job, fee)) }) }
  /** the epoch ends, and its end plus half the grace passes with no segment frame: the worker's next frame */
  async function epochPassed (s: RawSession): Promise<Message> {
    epochNow = EPOCH + 1n
    dueBelow = EPOCH + 1n
    return await s.f.readAny(AbortSignal.timeout(10_000))
  }
  async function echo (s: RawSession, data: string): Promise<Message[]> {
    await send(s, text(data))
    const before: Message[] = []
    for (;;) {
      const m = await s.f.readAny(AbortSignal.timeout(20_000))
      if (m.type === 'ws' && new TextDecoder().decode(m.data) === `echo: ${data}`) return before
      before.push(m)
    }
  }
  async function segmentFrame (s: { job: JobRequest }, o: { segment?: number, closeFee: string, fee: string, epoch?: bigint, segmentJobId?: Hex, closeBy?: PrivateKeyAccount, openJob?: JobRequest }): Promise<SegmentFrame> {
    const segment = o.segment ?? 1
    const id = o.segmentJobId ?? segmentJobId(s.job.jobId, segment)
    const epoch = (o.epoch ?? EPOCH + 1n).toString()
    return {
      v: PROTOCOL_VERSION,
      type: 'segment',
      jobId: s.job.jobId,
      attempt: 1,
      segment,
      closeFee: o.closeFee,
      closeSig: await sign(atFee(s.job, o.closeFee), o.closeBy),
      segmentJobId: id,
      epoch,
      fee: o.fee,
      ticketSig: await sign(atSegment(o.openJob ?? s.job, id, epoch, o.fee))
    }
  }
  async function outcomes (): Promise<Record<string, number>> {
    const m = await metrics.getSingleMetric('peerhost_worker_session_segments_total')?.get()
    return Object.fromEntries((m?.values ?? []).map(v => [String(v.labels.outcome), v.value]))
  }
  const key = (jobId: Hex) => ({ gateway: gw.address, jobId, attempt: 1 })

  it('attack: segment frames with a wrong job id, a wrong epoch, a bad signature, a lower fee or another job\'s ticket are ignored; a valid one closes the segment durably before the next counts', async () => {
    const before = await outcomes()
    const s = await rawSession()
    await echo(s, 'a')
    // a cumulative ticket for the two messages so far: the segment holds 1,020
    const held = (PRICE + 2n * PER_MESSAGE).toString()
    await ticketAt(s, held)
    epochNow = EPOCH + 1n
    const seg1 = segmentJobId(s.job.jobId, 1)
    const other = await signedJob({ worker: worker.address, gateway: gw, fn: s.job.fn, request: { ...s.job.request, url: 'http://peerhost.test/other' }, options: s.job.options, session: true })
    const attacks: Array<[string, SegmentFrame]> = [
      ['wrong-job-id', await segmentFrame(s, { closeFee: '1040', fee: '0', segmentJobId: `0x${'77'.repeat(32)}` })],
      ['wrong-job-id', { ...await segmentFrame(s, { closeFee: '1040', fee: '0' }), jobId: other.jobId }],
      ['wrong-epoch', await segmentFrame(s, { closeFee: '1040', fee: '0', epoch: EPOCH + 2n })],
      ['wrong-epoch', await segmentFrame(s, { closeFee: '1040', fee: '0', epoch: EPOCH })],
      ['bad-signature', await segmentFrame(s, { closeFee: '1040', fee: '0', closeBy: privateKeyToAccount(generatePrivateKey()) })],
      ['bad-signature', { ...await segmentFrame(s, { closeFee: '1040', fee: '0' }), closeFee: '99999' }],
      ['lower-fee', await segmentFrame(s, { closeFee: '1000', fee: '40' })],
      ['bad-signature', await segmentFrame(s, { closeFee: '1040', fee: '0', openJob: other })]
    ]
    for (const [, frame] of attacks) await send(s, frame)
    const during = await echo(s, 'b')
    assert.deepEqual(during.map(m => m.type), [], 'no segment was closed')
    assert.equal(receipts.get(key(s.job.jobId))?.state, 'reserved', 'segment 0 is still open')
    assert.equal(receipts.get(key(seg1)), undefined, 'no key reserved for segment 1')
    const mid = await outcomes()
    // 'wrong-job-id' for the frame naming another session is counted as other-job
    const delta = (k: string, a: Record<string, number>, b: Record<string, number>): number => (b[k] ?? 0) - (a[k] ?? 0)
    assert.deepEqual(
      { wrongJobId: delta('wrong-job-id', before, mid) + delta('other-job', before, mid), wrongEpoch: delta('wrong-epoch', before, mid), badSignature: delta('bad-signature', before, mid), lowerFee: delta('lower-fee', before, mid), opened: delta('opened', before, mid) },
      { wrongJobId: 2, wrongEpoch: 2, badSignature: 3, lowerFee: 1, opened: 0 })

    // the valid one: segment 0 closes at 1,040 (4 messages), segment 1 opens at 0
    await send(s, await segmentFrame(s, { closeFee: '1040', fee: '0' }))
    const [end0] = await echo(s, 'c')
    assert.ok(end0?.type === 'segment-end', `a segment-end, got ${end0?.type}`)
    assert.equal(end0.segment, 0)
    assert.equal(end0.fee, '1040')
    assert.equal(end0.transcript.messagesIn, 2)
    assert.equal(end0.transcript.messagesOut, 2)
    assert.equal(end0.outputHash, transcriptOutputHash(end0.transcript))
    const by = recoverDigestSigner(receiptDigest(DEV_DOMAIN, receiptOf(atFee(s.job, '1040'), end0.outputHash)), end0.receiptSig)
    assert.equal(by?.toLowerCase(), worker.address.toLowerCase())
    const row0 = receipts.get(key(s.job.jobId))
    assert.equal(row0?.state, 'signed', 'segment 0\'s receipt is durable')
    assert.equal(row0?.fee, '1040')
    assert.equal(row0?.outputHash, end0.outputHash)
    const row1 = receipts.get(key(seg1))
    assert.equal(row1?.state, 'reserved', 'segment 1 is reserved as a session\'s opening')
    assert.equal(row1?.epoch, (EPOCH + 1n).toString())
    assert.ok(row0.signedAt !== undefined && row0.signedAt <= row1.createdAt, 'segment 0 was signed before segment 1 was reserved')
    // in that order: the closing ticket, the closed segment's receipt durable, then the next key
    const mine = calls.filter(c => c.includes(s.job.jobId) || c.includes(seg1))
    assert.deepEqual(mine.slice(-4), [`raiseFee ${s.job.jobId} 1020`, `raiseFee ${s.job.jobId} 1040`, `committed ${s.job.jobId}`, `reserve ${seg1}`])
    // durable, not only in this process's view: another connection to the log's file (as a
    // restarted worker after kill -9 would open it) reads segment 0 signed
    const second = new DatabaseSync(join(dir, 'w', 'receipts.sqlite'), { readOnly: true })
    try {
      const rows = second.prepare('SELECT job_id, state, fee FROM receipts WHERE job_id IN (?, ?) ORDER BY created_at').all(s.job.jobId, seg1)
      assert.deepEqual(rows.map(r => [r.job_id, r.state, r.fee]), [[s.job.jobId, 'signed', '1040'], [seg1, 'reserved', '0']])
    } finally {
      second.close()
    }
    // a replay of the same segment frame is ignored (segment 1 is open: the next is 2)
    await send(s, await segmentFrame(s, { closeFee: '1040', fee: '0' }))
    // a ticket for the closed segment counts for nothing; one for segment 1 raises it
    await send(s, { v: PROTOCOL_VERSION, type: 'ticket', jobId: s.job.jobId, attempt: 1, fee: '5000', ticketSig: await sign(atFee(s.job, '5000')) })
    await send(s, { v: PROTOCOL_VERSION, type: 'ticket', jobId: seg1, attempt: 1, fee: '40', ticketSig: await sign(atSegment(s.job, seg1, (EPOCH + 1n).toString(), '40')) })
    assert.deepEqual((await echo(s, 'd')).map(m => m.type), [])
    assert.equal(receipts.get(key(s.job.jobId))?.fee, '1040')
    assert.equal(receipts.get(key(seg1))?.fee, '40')
    await send(s, { v: PROTOCOL_VERSION, type: 'ws-close', code: 1000, reason: '' })
    const got = await untilSessionEnd(s, 30_000)
    const end = got.at(-1)
    assert.ok(end?.type === 'session-end', got.map(m => m.type).join(', '))
    assert.equal(end.segment, 1)
    assert.equal(end.fee, '40')
    assert.equal(end.transcript.messagesIn, 4, 'the transcript runs on across segments')
    const byEnd = recoverDigestSigner(receiptDigest(DEV_DOMAIN, receiptOf(atSegment(s.job, seg1, (EPOCH + 1n).toString(), '40'), end.outputHash)), end.receiptSig)
    assert.equal(byEnd?.toLowerCase(), worker.address.toLowerCase(), 'the session\'s receipt signs segment 1\'s ticket')
    assert.equal(receipts.get(key(seg1))?.state, 'signed')
    await s.stream.close().catch(() => {})
  })

  it('a gateway that never sends `segment`: the worker closes the segment itself at the last cumulative ticket it holds', async () => {
    const s = await rawSession()
    await echo(s, 'a')
    await echo(s, 'b')
    const held = (PRICE + 4n * PER_MESSAGE).toString()
    await ticketAt(s, held)
    await echo(s, 'c')
    const m = await epochPassed(s)
    assert.ok(m.type === 'segment-end', `a segment-end, got ${m.type}`)
    assert.equal(m.segment, 0)
    assert.equal(m.fee, held, 'closed at the last cumulative ticket the worker holds')
    const row = receipts.get(key(s.job.jobId))
    assert.equal(row?.state, 'signed')
    assert.equal(row?.fee, held)
    assert.equal(row?.epoch, EPOCH.toString())
    // later tickets for the closed segment are not counted; the session goes on (on credit)
    await ticketAt(s, '9000')
    assert.deepEqual((await echo(s, 'd')).map(x => x.type), [])
    assert.equal(receipts.get(key(s.job.jobId))?.fee, held)
    await send(s, { v: PROTOCOL_VERSION, type: 'ws-close', code: 1000, reason: '' })
    const got = await untilSessionEnd(s, 30_000)
    const last = got.at(-1)
    // the segment after it never got a ticket: nothing more to sign
    assert.ok(last?.type === 'error', got.map(x => x.type).join(', '))
    assert.equal(last.error.code, 'PAYMENT_REQUIRED')
    assert.equal(receipts.get(key(segmentJobId(s.job.jobId, 1))), undefined)
    await s.stream.close().catch(() => {})
  })

  it('a segment frame that comes after the worker closed the segment itself still opens the next segment (the closed one stays as committed)', async () => {
    const s = await rawSession()
    await echo(s, 'a')
    const held = (PRICE + 2n * PER_MESSAGE).toString()
    await ticketAt(s, held)
    await echo(s, 'b')
    const m = await epochPassed(s)
    assert.ok(m.type === 'segment-end' && m.fee === held, `a segment-end at ${held}`)
    // the gateway's segment, late: its closing fee (4 messages) is above what the worker committed
    const seg1 = segmentJobId(s.job.jobId, 1)
    await send(s, await segmentFrame(s, { closeFee: '1040', fee: '0' }))
    assert.deepEqual((await echo(s, 'c')).map(x => x.type), [], 'no second segment-end')
    assert.equal(receipts.get(key(s.job.jobId))?.fee, held, 'a committed segment is never raised')
    assert.equal(receipts.get(key(seg1))?.state, 'reserved')
    await send(s, { v: PROTOCOL_VERSION, type: 'ticket', jobId: seg1, attempt: 1, fee: '20', ticketSig: await sign(atSegment(s.job, seg1, (EPOCH + 1n).toString(), '20')) })
    await send(s, { v: PROTOCOL_VERSION, type: 'ws-close', code: 1000, reason: '' })
    const got = await untilSessionEnd(s, 30_000)
    const end = got.at(-1)
    assert.ok(end?.type === 'session-end', got.map(x => x.type).join(', '))
    assert.deepEqual([end.segment, end.fee], [1, '20'])
    assert.equal(receipts.get(key(seg1))?.state, 'signed')
    await s.stream.close().catch(() => {})
  })

  it('restart safety: a worker killed with SIGKILL right after it closed a segment has that segment\'s receipt in its log, in the epoch\'s batch', async () => {
    const childDir = join(dir, 'child')
    mkdirSync(childDir, { recursive: true })
    writeFileSync(join(childDir, 'epoch'), EPOCH.toString())
    const child = spawn(process.execPath, [join(import.meta.dirname, 'segment-worker-child.ts'), JSON.stringify({ key: generatePrivateKey(), dataDir: childDir, price: PRICE.toString(), perMessage: PER_MESSAGE.toString() })], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', d => { stderr += d })
    const exited = new Promise<string | null>(resolve => child.once('exit', (_c, signal) => resolve(signal)))
    // a hung child must not outlive the test
    const guard = setTimeout(() => child.kill('SIGKILL'), 60_000)
    try {
      const started = await new Promise<{ address: `0x${string}`, addr: string }>((resolve, reject) => {
        let out = ''
        child.stdout.on('data', d => { out += d; const nl = out.indexOf('\n'); if (nl >= 0) resolve(JSON.parse(out.slice(0, nl))) })
        void exited.then(() => { reject(new Error(`the worker process exited before it started: ${stderr}`)) })
      })
      const s = await rawSession(started)
      await echo(s, 'a')
      const held = (PRICE + 2n * PER_MESSAGE).toString()
      await ticketAt(s, held)
      writeFileSync(join(childDir, 'epoch'), (EPOCH + 1n).toString())
      await send(s, await segmentFrame(s, { closeFee: '1040', fee: '0' }))
      const end0 = await s.f.readAny(AbortSignal.timeout(20_000))
      assert.ok(end0.type === 'segment-end', `a segment-end, got ${end0.type}`)
      // killed the moment its segment-end arrived, mid-session
      child.kill('SIGKILL')
      assert.equal(await exited, 'SIGKILL')
      await s.stream.close().catch(() => {})
      const log = receiptLog({ dataDir: childDir, pruneIntervalMs: 0 })({ logger })
      try {
        const row = log.get(key(s.job.jobId))
        assert.deepEqual([row?.state, row?.fee, row?.outputHash, row?.receiptSig], ['signed', '1040', end0.outputHash, end0.receiptSig], 'the closed segment\'s receipt survived the kill')
        assert.equal(log.get(key(segmentJobId(s.job.jobId, 1)))?.state, 'reserved', 'the open segment stays reserved (never answered twice)')
        const batch = log.receiptsOf({ projectId: projectId(wallet, 'raw'), gateway: gw.address, epoch: EPOCH })
        assert.deepEqual(batch.map(r => [r.jobId, r.fee]), [[s.job.jobId, '1040']], 'what the settler batches for the epoch')
      } finally {
        log.close()
      }
    } finally {
      clearTimeout(guard)
      child.kill('SIGKILL')
      await exited
    }
  })
})
