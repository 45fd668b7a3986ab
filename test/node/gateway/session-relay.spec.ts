/**
 * The gateway's session relay facing a lying worker: the relay hashes what it actually relayed
 * each way and keeps a session receipt as verified only when the worker signed exactly that. The
 * worker here is an adversary speaking the job-stream frames by hand (a stand-in for the one
 * component this unit test is not about); the client is a real `ws` client over real HTTP.
 */
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { generatePrivateKey } from 'viem/accounts'
import { WebSocket } from 'ws'
import { createLogger, fastSigner, NODE_DEFAULTS, silentLogger, type FrameStream } from '#node'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { atFee, atSegment, DEV_DOMAIN, segmentJobId, encodeMessage, jobHashOf, projectId, PROTOCOL_VERSION, receiptDigest, receiptOf, recoverTicketSigner, ticketOf, transcript, transcriptOutputHash, type Message, type SessionTicket, type TranscriptSummary } from '#protocol'
import { ticketLog } from '../../../node/index.ts'
import { sessionBilling, type SessionBilling } from '../../../node/gateway/session-billing.ts'
import { sessionRelay, type SessionReceipt, type SessionRelay } from '../../../node/gateway/sessions.ts'
import { job } from '../../protocol/fixtures.ts'
import { waitFor } from '../../helpers/network.ts'

/** A worker's side of a job stream, scripted by the test. */
function scriptedWorker (): { f: FrameStream, stream: any, send: (m: Message) => void, received: Message[], aborted: () => Error | undefined } {
  const inbox: Uint8Array[] = []
  const waiting: Array<(b: Uint8Array) => void> = []
  const received: Message[] = []
  let abortedWith: Error | undefined
  const f = {
    lp: {
      async read () {
        const bytes = inbox.shift() ?? await new Promise<Uint8Array>(resolve => waiting.push(resolve))
        return { subarray: () => bytes }
      }
    },
    async write (msg: Message) { received.push(msg) },
    async read () { throw new Error('not used by the relay') }
  } as unknown as FrameStream
  return {
    f,
    stream: { abort (err: Error) { abortedWith = err }, async close () {} },
    send (m) { const b = encodeMessage(m); const w = waiting.shift(); if (w !== undefined) w(b); else inbox.push(b) },
    received,
    aborted: () => abortedWith
  }
}

describe('gateway session relay: a worker that lies about the session', function () {
  this.timeout(30_000)
  let server: Server
  let relay: SessionRelay
  let url: string
  const ended: SessionReceipt[] = []
  const workerKey = generatePrivateKey()
  const workerSigner = fastSigner(workerKey)
  let next: ReturnType<typeof scriptedWorker> & { jobId: `0x${string}`, request: ReturnType<typeof job> }

  before(async () => {
    relay = sessionRelay({ domain: DEV_DOMAIN }, { logger: silentLogger(), onEnd: r => ended.push(r) })
    server = createServer()
    server.on('upgrade', (req, socket, head) => {
      const w = next
      relay.accept(req, socket, head, {
        jobId: w.jobId,
        request: w.request,
        worker: { peerId: 'worker-peer', advert: { address: workerSigner.address } } as any,
        open: { headers: [], stream: w.stream, f: w.f, release: () => {} }
      })
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}/s`
  })
  after(async () => {
    await relay?.shutdown()
    await new Promise(resolve => server?.close(resolve))
  })

  /** One session: the client sends "hi", the worker answers "hello", then the worker ends it with `end`. */
  async function session (n: number, end: (own: TranscriptSummary, request: ReturnType<typeof job>) => Message): Promise<SessionReceipt> {
    const request = { ...job(), jobId: `0x${n.toString(16).padStart(64, '0')}` as `0x${string}`, ticket: { ...job().ticket, worker: workerSigner.address } }
    next = { ...scriptedWorker(), jobId: request.jobId, request }
    const w = next
    const ws = new WebSocket(url)
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
    const got = new Promise<string>(resolve => ws.once('message', d => resolve(String(d))))
    ws.send('hi')
    await waitFor('the client message at the worker', () => w.received.some(m => m.type === 'ws'))
    w.send({ v: PROTOCOL_VERSION, type: 'ws', binary: false, data: new TextEncoder().encode('hello') })
    assert.equal(await got, 'hello')
    // what an honest worker would have seen: the same two messages
    const own = transcript()
    own.add('in', false, new TextEncoder().encode('hi'))
    own.add('out', false, new TextEncoder().encode('hello'))
    const closed = new Promise<number>(resolve => ws.once('close', code => resolve(code)))
    ws.close(1000)
    await waitFor('the client close at the worker', () => w.received.some(m => m.type === 'ws-close'))
    w.send(end(own.summary(), request))
    await closed
    return await waitFor('the session receipt', () => relay.receipt(request.jobId))
  }

  const signed = (t: TranscriptSummary, request: ReturnType<typeof job>, key = workerKey): Message => {
    const outputHash = transcriptOutputHash(t)
    return { v: PROTOCOL_VERSION, type: 'session-end', jobId: request.jobId, attempt: request.attempt, transcript: t, outputHash, receiptSig: fastSigner(key).signDigest(receiptDigest(DEV_DOMAIN, receiptOf(request, outputHash))), logs: '', logsTruncated: false }
  }

  it('keeps an honest worker\'s session receipt as verified, signed by that worker', async () => {
    const r = await session(1, (own, request) => signed(own, request))
    assert.equal(r.verified, true, r.problem)
    assert.equal((r.receipt as any).worker.toLowerCase(), workerSigner.address.toLowerCase())
  })

  it('attack: a worker signing a transcript with a message the client never sent is not verified, and the stream is cut', async () => {
    let w!: ReturnType<typeof scriptedWorker>
    const r = await session(2, (own, request) => {
      w = next
      // claims one more inbound message than the client sent (e.g. to bill more, or to blame the client)
      return signed({ ...own, messagesIn: own.messagesIn + 1, bytesIn: own.bytesIn + 3 }, request)
    })
    assert.equal(r.verified, false)
    assert.match(r.problem ?? '', /transcript that differs from what the gateway relayed/)
    assert.equal(r.receipt, undefined)
    assert.match(w.aborted()?.message ?? '', /differs/)
  })

  it('attack: a session-end signed by another key is not verified', async () => {
    const r = await session(3, (own, request) => signed(own, request, generatePrivateKey()))
    assert.equal(r.verified, false)
    assert.match(r.problem ?? '', /not signed by the worker/)
  })

  it('attack: an outputHash that is not the transcript\'s hash is not verified', async () => {
    const r = await session(4, (own, request) => ({ ...signed(own, request) as any, outputHash: `0x${'ab'.repeat(32)}` }))
    assert.equal(r.verified, false)
    assert.match(r.problem ?? '', /not signed by the worker/)
  })

  it('every ended session was reported once', () => {
    assert.deepEqual(ended.map(r => r.verified), [true, false, false, false])
  })
})

describe('gateway session relay: metered fees (cumulative tickets)', function () {
  this.timeout(30_000)
  let server: Server
  let relay: SessionRelay
  let url: string
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-relay-fees-'))
  const tickets = ticketLog({ dataDir: dir })
  const workerKey = generatePrivateKey()
  const workerSigner = fastSigner(workerKey)
  const gatewaySigner = fastSigner(generatePrivateKey())
  let next: { w: ReturnType<typeof scriptedWorker>, request: ReturnType<typeof job>, billing: SessionBilling }
  const spent: bigint[] = []
  /** the epoch each reservation was made against */
  const spentIn: bigint[] = []
  let allowance = 10n ** 18n

  /** the relay's warnings (a refused segment receipt is one, with its problem) */
  const warnings: string[] = []

  before(async () => {
    relay = sessionRelay({ domain: DEV_DOMAIN }, { logger: createLogger({ level: 'warn', destination: { write: (line: string) => { warnings.push(line) } } }) })
    server = createServer()
    server.on('upgrade', (req, socket, head) => {
      const { w, request, billing } = next
      relay.accept(req, socket, head, {
        jobId: request.jobId,
        request,
        worker: { peerId: 'worker-peer', advert: { address: workerSigner.address } } as any,
        open: { headers: [], stream: w.stream, f: w.f, release: () => {}, billing }
      })
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}/s`
  })
  after(async () => {
    await relay?.shutdown()
    await new Promise(resolve => server?.close(resolve))
    tickets.close()
    rmSync(dir, { recursive: true, force: true })
  })

  function prepare (n: number, maxFee?: bigint, epochOf?: () => bigint): void {
    const base = job()
    const unsigned = { ...base, jobId: `0x${(1000 + n).toString(16).padStart(64, '0')}` as `0x${string}`, ticket: { ...base.ticket, worker: workerSigner.address, gateway: gatewaySigner.address, fee: '1000', epoch: '3' } }
    const hash = jobHashOf(unsigned)
    const request = { ...unsigned, ticketSig: gatewaySigner.signDigest(receiptDigest(DEV_DOMAIN, receiptOf(unsigned, `0x${'00'.repeat(32)}`))) }
    const pid = projectId(request.fn.wallet, request.fn.project)
    const spend = { async reserve (_p: unknown, _n: unknown, e: bigint, fee: bigint) { if (fee > allowance) return { ok: false as const, reason: 'allowance', message: 'the project\'s allowance for this epoch is spent; run peerhost escrow allow', details: {} }; allowance -= fee; spent.push(fee); spentIn.push(e); return { ok: true as const } } }
    const billing = sessionBilling({ domain: DEV_DOMAIN, signer: gatewaySigner, spend: spend as any, tickets, maxFee, project: request.fn.project, projectId: pid, epochOf }, request, hash, { address: workerSigner.address, sessionPrice: { perMessage: '10', perMinute: '0' } })
    next = { w: scriptedWorker(), request, billing }
  }

  async function exchange (count: number): Promise<{ ws: WebSocket, w: ReturnType<typeof scriptedWorker>, closed: Promise<number> }> {
    const { w } = next
    const ws = new WebSocket(url)
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
    const closed = new Promise<number>(resolve => ws.once('close', code => resolve(code)))
    for (let i = 0; i < count; i++) ws.send(`m${i}`)
    await waitFor(`${count} client messages at the worker`, () => w.received.filter(m => m.type === 'ws').length === count, 20_000)
    return { ws, w, closed }
  }

  const ticketsOf = (w: ReturnType<typeof scriptedWorker>): SessionTicket[] => w.received.filter((m): m is SessionTicket => m.type === 'ticket')

  it('sends a cumulative ticket every 100 messages and a final one before its close; the worker\'s receipt at that fee is verified and logged', async () => {
    prepare(1)
    const { ws, w, closed } = await exchange(250)
    // 100 and 200 messages: 1000 + 10 × count, signed by the gateway over the job's ticket at that fee
    await waitFor('two cumulative tickets', () => ticketsOf(w).length === 2).catch(err => { throw new Error(`${err.message}: ${JSON.stringify(ticketsOf(w).map(t => t.fee))} ${spent.join(",")}`) })
    assert.deepEqual(ticketsOf(w).map(t => t.fee), ['2000', '3000'])
    for (const t of ticketsOf(w)) {
      assert.equal((await recoverTicketSigner(DEV_DOMAIN, ticketOf(atFee(next.request, t.fee)), t.ticketSig)).toLowerCase(), gatewaySigner.address.toLowerCase())
    }
    ws.close(1000)
    await waitFor('the client close at the worker', () => w.received.some(m => m.type === 'ws-close'))
    const types = w.received.filter(m => m.type !== 'ws').map(m => m.type)
    assert.deepEqual(types, ['ticket', 'ticket', 'ticket', 'ws-close'], 'the final ticket precedes the close')
    assert.equal(ticketsOf(w).at(-1)?.fee, '3500')
    assert.equal(tickets.get(next.request.jobId, 1, workerSigner.address)?.fee, 3500n, 'the ticket log holds the latest cumulative fee')
    assert.deepEqual(spent.splice(0), [1000n, 1000n, 500n], 'each increase reserved against the allowance')
    const own = transcript()
    for (let i = 0; i < 250; i++) own.add('in', false, new TextEncoder().encode(`m${i}`))
    const t = own.summary()
    const outputHash = transcriptOutputHash(t)
    w.send({ v: PROTOCOL_VERSION, type: 'session-end', jobId: next.request.jobId, attempt: 1, transcript: t, outputHash, receiptSig: workerSigner.signDigest(receiptDigest(DEV_DOMAIN, receiptOf(atFee(next.request, '3500'), outputHash))), fee: '3500', logs: '', logsTruncated: false })
    await closed
    const r = await waitFor('the session receipt', () => relay.receipt(next.request.jobId))
    assert.equal(r.verified, true, r.problem)
    assert.equal((r.receipt as any).fee, '3500')
  })

  it('attack: a worker whose receipt claims a fee the gateway never signed is not verified', async () => {
    prepare(2)
    const { ws, w } = await exchange(120)
    await waitFor('one cumulative ticket', () => ticketsOf(w).length === 1)
    ws.close(1000)
    await waitFor('the client close at the worker', () => w.received.some(m => m.type === 'ws-close'))
    const own = transcript()
    for (let i = 0; i < 120; i++) own.add('in', false, new TextEncoder().encode(`m${i}`))
    const t = own.summary()
    const outputHash = transcriptOutputHash(t)
    // the final ticket was 2200; the worker claims 9999
    w.send({ v: PROTOCOL_VERSION, type: 'session-end', jobId: next.request.jobId, attempt: 1, transcript: t, outputHash, receiptSig: workerSigner.signDigest(receiptDigest(DEV_DOMAIN, receiptOf(atFee(next.request, '9999'), outputHash))), fee: '9999', logs: '', logsTruncated: false })
    const r = await waitFor('the session receipt', () => relay.receipt(next.request.jobId))
    assert.equal(r.verified, false)
    assert.match(r.problem ?? '', /claims a fee of 9999 wei, which this gateway never signed/)
    spent.splice(0)
  })

  it('ends a session with 4402 when the project\'s allowance cannot pay its next ticket', async () => {
    prepare(3)
    // the opening ticket was reserved at dispatch; the first cumulative one needs 1000 more
    allowance = 500n
    const { w, closed } = await exchange(100)
    let code: number | undefined
    void closed.then(c => { code = c })
    await waitFor('the client\'s socket closed', () => code, 15_000)
    assert.equal(code, 4402)
    await waitFor('the gateway\'s close at the worker', () => w.received.some(m => m.type === 'ws-close'))
    const close = w.received.find(m => m.type === 'ws-close')
    assert.equal(close?.type === 'ws-close' && close.code, 4402)
    assert.equal(ticketsOf(w).length, 0, 'no ticket the allowance could not pay')
    allowance = 10n ** 18n
  })

  it('segments: once Settlement\'s epoch moves on it closes the segment and opens the next (each reserved in its own epoch and logged); it keeps every segment\'s receipt, refusing one that is not over a prefix of what it relayed', async () => {
    let epochNow = 3n
    prepare(4, undefined, () => epochNow)
    spent.splice(0)
    spentIn.splice(0)
    const { ws, w, closed } = await exchange(50)
    epochNow = 4n
    const fr = await waitFor('a segment frame', () => w.received.find((m): m is Extract<Message, { type: 'segment' }> => m.type === 'segment'), 10_000)
    const seg1 = segmentJobId(next.request.jobId, 1)
    // segment 0 closes at 1000 + 10 × 50; segment 1 opens at what is owed beyond that: 0
    assert.deepEqual([fr.segment, fr.closeFee, fr.segmentJobId, fr.epoch, fr.fee], [1, '1500', seg1, '4', '0'])
    assert.equal((await recoverTicketSigner(DEV_DOMAIN, ticketOf(atFee(next.request, '1500')), fr.closeSig)).toLowerCase(), gatewaySigner.address.toLowerCase())
    assert.equal((await recoverTicketSigner(DEV_DOMAIN, ticketOf(atSegment(next.request, seg1, '4', '0')), fr.ticketSig)).toLowerCase(), gatewaySigner.address.toLowerCase())
    assert.deepEqual([spent, spentIn], [[500n], [3n]], 'the closing segment\'s increase reserved in its own epoch')
    assert.deepEqual([tickets.get(next.request.jobId, 1, workerSigner.address)?.fee, tickets.get(next.request.jobId, 1, workerSigner.address)?.epoch], [1500n, 3n])
    assert.deepEqual([tickets.get(seg1, 1, workerSigner.address)?.fee, tickets.get(seg1, 1, workerSigner.address)?.epoch], [0n, 4n])
    // the worker's segment receipts: first one over a transcript the gateway never relayed
    const own = transcript()
    for (let i = 0; i < 50; i++) own.add('in', false, new TextEncoder().encode(`m${i}`))
    const t0 = own.summary()
    const segEnd = (t: TranscriptSummary, fee: string): Message => {
      const outputHash = transcriptOutputHash(t)
      return { v: PROTOCOL_VERSION, type: 'segment-end', jobId: next.request.jobId, attempt: 1, segment: 0, fee, transcript: t, outputHash, receiptSig: workerSigner.signDigest(receiptDigest(DEV_DOMAIN, receiptOf(atFee(next.request, fee), outputHash))) }
    }
    w.send(segEnd({ ...t0, inHash: `0x${'99'.repeat(32)}` }, '1500'))
    w.send(segEnd(t0, '9999'))
    w.send(segEnd(t0, '1500'))
    // 20 more messages in segment 1, then the close: its final ticket is 200 (1000 + 700 − 1500)
    for (let i = 50; i < 70; i++) { ws.send(`m${i}`); own.add('in', false, new TextEncoder().encode(`m${i}`)) }
    await waitFor('70 client messages at the worker', () => w.received.filter(m => m.type === 'ws').length === 70)
    ws.close(1000)
    await waitFor('the client close at the worker', () => w.received.some(m => m.type === 'ws-close'))
    const last = ticketsOf(w).at(-1)
    assert.deepEqual([last?.jobId, last?.fee], [seg1, '200'])
    assert.equal((await recoverTicketSigner(DEV_DOMAIN, ticketOf(atSegment(next.request, seg1, '4', '200')), last!.ticketSig)).toLowerCase(), gatewaySigner.address.toLowerCase())
    const t = own.summary()
    const outputHash = transcriptOutputHash(t)
    w.send({ v: PROTOCOL_VERSION, type: 'session-end', jobId: next.request.jobId, attempt: 1, transcript: t, outputHash, receiptSig: workerSigner.signDigest(receiptDigest(DEV_DOMAIN, receiptOf(atSegment(next.request, seg1, '4', '200'), outputHash))), fee: '200', segment: 1, logs: '', logsTruncated: false })
    await closed
    const r = await waitFor('the session receipt', () => relay.receipt(next.request.jobId))
    assert.equal(r.verified, true, r.problem)
    assert.deepEqual(r.segments?.map(x => [x.segment, x.verified, x.fee, x.epoch, x.jobId]), [[0, true, '1500', '3', next.request.jobId], [1, true, '200', '4', seg1]])
    assert.deepEqual(r.segments?.[1].receipt, r.receipt)
    assert.equal(r.segments?.[0].transcript.messagesIn, 50)
    spent.splice(0)
    spentIn.splice(0)
  })

  it('a segment frame the worker has not answered is sent again (a worker whose clock lags ignores the first), and no more once it has', async () => {
    let epochNow = 11n
    prepare(8, undefined, () => epochNow)
    const { w } = await exchange(10)
    epochNow = 12n
    const segments = (): Array<Extract<Message, { type: 'segment' }>> => w.received.filter((m): m is Extract<Message, { type: 'segment' }> => m.type === 'segment')
    await waitFor('a segment frame', () => segments().length >= 1, 10_000)
    // unanswered: the same frame again after NODE_DEFAULTS.sessionSegmentResendMs
    await waitFor('the frame sent again', () => segments().length >= 2, 10_000)
    const [first, again] = segments()
    assert.deepEqual(again, first, 'the very same frame (same tickets)')
    // the worker takes it: its receipt of segment 0 at the frame's closing fee
    const own = transcript()
    for (let i = 0; i < 10; i++) own.add('in', false, new TextEncoder().encode(`m${i}`))
    const t0 = own.summary()
    const outputHash = transcriptOutputHash(t0)
    warnings.splice(0)
    w.send({ v: PROTOCOL_VERSION, type: 'segment-end', jobId: next.request.jobId, attempt: 1, segment: 0, fee: first.closeFee, transcript: t0, outputHash, receiptSig: workerSigner.signDigest(receiptDigest(DEV_DOMAIN, receiptOf(atFee(next.request, first.closeFee), outputHash))) })
    // a moment for the receipt to be checked (a copy already on its way may still arrive)
    await new Promise(resolve => setTimeout(resolve, 500))
    assert.deepEqual(warnings, [], 'the receipt is not refused')
    const sent = segments().length
    await new Promise(resolve => setTimeout(resolve, NODE_DEFAULTS.sessionSegmentResendMs + 1_500))
    assert.equal(segments().length, sent, 'not sent again once answered')
    assert.ok(sent <= 1 + NODE_DEFAULTS.sessionSegmentResends)
  })

  it('attack: a worker\'s segment receipt at a fee the gateway never signed, or over a transcript it did not relay, is kept unverified', async () => {
    let epochNow = 7n
    prepare(5, undefined, () => epochNow)
    const { ws, w } = await exchange(10)
    epochNow = 8n
    await waitFor('a segment frame', () => w.received.some(m => m.type === 'segment'), 10_000)
    const own = transcript()
    for (let i = 0; i < 10; i++) own.add('in', false, new TextEncoder().encode(`m${i}`))
    const t0 = own.summary()
    const segEnd = (t: TranscriptSummary, fee: string, signer = workerSigner): Message => {
      const outputHash = transcriptOutputHash(t)
      return { v: PROTOCOL_VERSION, type: 'segment-end', jobId: next.request.jobId, attempt: 1, segment: 0, fee, transcript: t, outputHash, receiptSig: signer.signDigest(receiptDigest(DEV_DOMAIN, receiptOf(atFee(next.request, fee), outputHash))) }
    }
    const problems: string[] = []
    warnings.splice(0)
    for (const [m, expected] of [
      [segEnd(t0, '9999'), /claims a fee of 9999 wei, which this gateway never signed for segment 0/],
      [segEnd({ ...t0, inHash: `0x${'99'.repeat(32)}` }, '1100'), /client → function transcript is not a prefix/],
      [segEnd({ ...t0, messagesOut: 1 }, '1100'), /function → client transcript differs/],
      [segEnd(t0, '1100', fastSigner(generatePrivateKey())), /not signed by the worker/]
    ] as Array<[Message, RegExp]>) {
      w.send(m)
      ws.send('ping')
      own.add('in', false, new TextEncoder().encode('ping'))
      await waitFor('the frame handled', () => w.received.filter(x => x.type === 'ws').length === 11 + problems.length)
      const refused = await waitFor('the refusal logged', () => warnings[problems.length], 5_000)
      assert.match(JSON.parse(refused).problem, expected)
      problems.push(String(expected))
    }
    assert.equal(warnings.length, 4)
    ws.close(1000)
    await waitFor('the client close at the worker', () => w.received.some(m => m.type === 'ws-close'))
    w.send({ v: PROTOCOL_VERSION, type: 'ws-close', code: 1000, reason: '' })
    const r = await waitFor('the session receipt', () => relay.receipt(next.request.jobId), 10_000)
    assert.equal(r.segments?.[0].segment, 0)
    assert.equal(r.segments?.[0].verified, false)
    assert.match(r.segments?.[0].problem ?? '', /not signed by the worker/, 'the last refused one is kept')
    spent.splice(0)
    spentIn.splice(0)
  })

  it('keeps the receipt of a segment the worker closed itself (no `segment` came), and a session that then ends without a receipt says so', async () => {
    // the gateway's epoch has not moved (its clock is behind the worker's): it sends no `segment`
    prepare(6, undefined, () => 3n)
    const { ws, w } = await exchange(10)
    const own = transcript()
    for (let i = 0; i < 10; i++) own.add('in', false, new TextEncoder().encode(`m${i}`))
    const t0 = own.summary()
    const outputHash = transcriptOutputHash(t0)
    // the worker closes segment 0 itself at the opening ticket, the only one it holds
    w.send({ v: PROTOCOL_VERSION, type: 'segment-end', jobId: next.request.jobId, attempt: 1, segment: 0, fee: '1000', transcript: t0, outputHash, receiptSig: workerSigner.signDigest(receiptDigest(DEV_DOMAIN, receiptOf(atFee(next.request, '1000'), outputHash))) })
    ws.close(1000)
    await waitFor('the client close at the worker', () => w.received.some(m => m.type === 'ws-close'))
    w.send({ v: PROTOCOL_VERSION, type: 'error', jobId: next.request.jobId, error: { code: 'PAYMENT_REQUIRED', message: 'the session\'s segment 1 has no ticket from the gateway: no receipt for it' } } as Message)
    const r = await waitFor('the session receipt', () => relay.receipt(next.request.jobId), 10_000)
    assert.equal(r.verified, false)
    assert.match(r.problem ?? '', /without a receipt: PAYMENT_REQUIRED/)
    assert.deepEqual(r.segments?.map(x => [x.segment, x.verified, x.fee]), [[0, true, '1000']])
    spent.splice(0)
    spentIn.splice(0)
  })

  it('segments a session that pays only its opening fee (no session price), and never one that pays nothing', async () => {
    let epochNow = 5n
    const request = { ...job(), ticket: { ...job().ticket, fee: '1000', epoch: '5' } }
    const hash = jobHashOf(request)
    const parts = { domain: DEV_DOMAIN, signer: gatewaySigner, project: 'p', projectId: `0x${'00'.repeat(32)}` as const, epochOf: () => epochNow }
    const billing = sessionBilling(parts, request, hash, { address: workerSigner.address })
    assert.equal(await billing.segment(10, 1000), undefined, 'the epoch has not moved')
    epochNow = 6n
    assert.equal(await billing.bill(10, 1000, true), undefined, 'no cumulative tickets without a session price')
    const fr = await billing.segment(10, 1000)
    assert.ok(fr !== undefined && !('refused' in fr))
    assert.deepEqual([fr.segment, fr.closeFee, fr.fee, fr.epoch], [1, '1000', '0', '6'])
    assert.equal(await billing.segment(10, 1000), undefined, 'one segment per epoch')
    assert.equal(billing.current.index, 1)
    assert.equal(billing.signed('0', 1), true)
    const free = sessionBilling(parts, { ...request, ticket: { ...request.ticket, fee: '0' } }, hash, { address: workerSigner.address })
    epochNow = 9n
    assert.equal(await free.segment(10, 1000), undefined, 'a session that pays nothing has nothing to settle')
  })

  it('caps a cumulative ticket at maxFee per billing unit', async () => {
    const billing = sessionBilling({ domain: DEV_DOMAIN, signer: gatewaySigner, maxFee: 1500n, project: 'p', projectId: `0x${'00'.repeat(32)}` }, { ...job(), ticket: { ...job().ticket, fee: '1000' } }, `0x${'00'.repeat(32)}`, { address: workerSigner.address, sessionPrice: { perMessage: '100', perMinute: '0' } })
    // owed 1000 + 100 × 100 = 11000; cap 1500 × (1 + 1 + 1) = 4500
    const t = await billing.bill(100, 1, false)
    assert.ok(t !== undefined && !('refused' in t))
    assert.equal(t.fee, '4500')
    assert.equal(await billing.bill(100, 1, false), undefined, 'nothing more owed within the cap')
    assert.equal(billing.signed('4500'), true)
    assert.equal(billing.signed('11000'), false)
  })
})
