/**
 * WebSocket sessions at the gateway: the upgrade is accepted only after a worker's function
 * accepted the WebSocket (so a function that never calls accept() fails as an HTTP error, never as
 * an open socket that goes nowhere); then frames are relayed both ways over the session's job
 * stream with bounded buffering, the limits are enforced with stable close codes (constants.ts
 * WS_CLOSE), and when the session ends the worker's signed transcript is checked against the
 * gateway's own and kept for `/_peerhost/receipts/<jobId>`.
 */
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { bytesToHex } from 'viem'
import { WebSocketServer, type RawData, type WebSocket } from 'ws'
import {
  decodeMessage, LIMITS, PROTOCOL_VERSION, receiptDigest, receiptOf, transcript, transcriptOutputHash, WIRE_ERROR_CODES,
  type JobRequest, type Message, type PeerHostDomain, type SegmentEnd, type SegmentFrame, type SessionLimits, type TranscriptSummary, type WireErrorCode
} from '#protocol'
import { NODE_DEFAULTS, WS_CLOSE } from '../constants.ts'
import type { FrameStream } from '../frames.ts'
import type { Logger } from '../logger.ts'
import { recoverDigestSigner, sameAddress } from '../signing.ts'
import type { SessionBilling, SessionDispatch } from './dispatch.ts'
import { endThenClose } from './ingress.ts'
import { receiptRecord } from './stream-relay.ts'

export interface SessionLimitsInit {
  /** @default NODE_DEFAULTS.sessionIdleMs */
  idleMs?: number
  /** @default NODE_DEFAULTS.sessionMaxMs */
  maxMs?: number
  /** @default NODE_DEFAULTS.sessionMessagesPerSec */
  messagesPerSec?: number
  /** @default LIMITS.maxWsMessageBytes */
  maxMessageBytes?: number
  /** @default NODE_DEFAULTS.sessionHighWaterBytes */
  highWaterBytes?: number
}

/** One segment's receipt of a session that outlived its Settlement epoch. */
export interface SegmentReceipt {
  /** 0 = the opening segment */
  segment: number
  /** the segment's own job id (segmentJobId(jobId, segment)), its leaf in a batch */
  jobId: string
  epoch: string
  /** the ticket fee the receipt signs, wei */
  fee: string
  /** the transcript up to the segment's end (a prefix of the session's; the hashes run on) */
  transcript: TranscriptSummary
  /** whether the worker signed this segment's ticket at a fee this gateway signed, over a prefix of what it relayed */
  verified: boolean
  problem?: string
  receipt?: Record<string, unknown>
}

/** What /_peerhost/receipts/<jobId> answers for a session. */
export interface SessionReceipt {
  jobId: string
  worker: string
  /** the gateway's own transcript, equal to the one the worker signed when `verified` */
  transcript: TranscriptSummary
  /** whether the worker's signed session-end matched the gateway's transcript */
  verified: boolean
  /** why not, when not */
  problem?: string
  /** EIP-712 receipt fields, the domain and the worker's signature (as x-peerhost-receipt) */
  receipt?: Record<string, unknown>
  /**
   * A session that outlived its Settlement epoch: every segment's receipt in order, the last one
   * the session's own receipt (`receipt`) when it ended signed
   */
  segments?: SegmentReceipt[]
  closeCode?: number
  endedAt: string
}

export interface SessionRelay {
  /** the ws server (noServer) */
  readonly wss: WebSocketServer
  /** sessions open now */
  readonly open: number
  /**
   * Completes the upgrade of an accepted session and relays until it ends. `limits` are the
   * function's own (peerhost.json `websocket`): each applies where lower than the gateway's.
   */
  accept: (req: IncomingMessage, socket: Duplex, head: Buffer, session: Required<Pick<SessionDispatch, 'jobId' | 'request' | 'worker' | 'open'>>, headers?: Array<[string, string]>, limits?: SessionLimits) => void
  /**
   * Holds one of `max` session places of function `key` while its session is dispatched and
   * open; undefined when all are taken. Call the returned release exactly once (it is idempotent).
   */
  reserve: (key: string, max: number) => (() => void) | undefined
  receipt: (jobId: string) => SessionReceipt | undefined
  /** Closes every open session with 1001 (the gateway is shutting down). */
  shutdown: () => Promise<void>
}

/** Writes a plain HTTP answer on a socket that asked to upgrade, then ends it. */
export function answerUpgrade (socket: Duplex, status: number, headers: Array<[string, string]>, body: Uint8Array): void {
  if (!socket.writable) { socket.destroy(); return }
  const lines = [`HTTP/1.1 ${status} ${status === 101 ? 'Switching Protocols' : 'Not Upgraded'}`]
  for (const [k, v] of headers) {
    if (/^(content-length|connection|transfer-encoding|upgrade)$/i.test(k)) continue
    lines.push(`${k}: ${v}`)
  }
  lines.push(`content-length: ${body.byteLength}`, 'connection: close', '', '')
  endThenClose(socket, Buffer.concat([Buffer.from(lines.join('\r\n'), 'latin1'), body]))
}

export function upgradeError (socket: Duplex, code: WireErrorCode, message?: string, extra: Array<[string, string]> = []): void {
  const body = Buffer.from(JSON.stringify({ error: { code, message: message ?? WIRE_ERROR_CODES[code].message } }))
  answerUpgrade(socket, WIRE_ERROR_CODES[code].status, [['content-type', 'application/json; charset=utf-8'], ...extra], body)
}

/** Close codes a client may send that the function may see as they are; others become 1000/1001. */
function forwardableCode (code: number): number {
  if (code === 1005) return 1000
  if (code === 1006 || code === 1015 || code === 1004) return 1001
  return code
}

export function sessionRelay (init: SessionLimitsInit & { domain: PeerHostDomain }, components: { logger: Logger, onEnd?: (r: SessionReceipt) => void }): SessionRelay {
  const log = components.logger.child({ component: 'peerhost:gateway:ws' })
  const gatewayIdleMs = init.idleMs ?? NODE_DEFAULTS.sessionIdleMs
  const gatewayMaxMs = init.maxMs ?? NODE_DEFAULTS.sessionMaxMs
  const gatewayPerSec = init.messagesPerSec ?? NODE_DEFAULTS.sessionMessagesPerSec
  /** sessions held (dispatching or open) per function key */
  const held = new Map<string, number>()
  const hwm = init.highWaterBytes ?? NODE_DEFAULTS.sessionHighWaterBytes
  const wss = new WebSocketServer({
    noServer: true,
    // a message over the limit closes the socket with 1009 (ws enforces it while reading)
    maxPayload: init.maxMessageBytes ?? LIMITS.maxWsMessageBytes,
    // no compression: a compression bomb cannot inflate in the gateway (GW-04)
    perMessageDeflate: false,
    clientTracking: false,
    // a fragment flood is closed with 1008 after this many fragments of one message (GW-04)
    maxFragments: NODE_DEFAULTS.sessionMaxFragments
  })
  // the 101 carries the session's job id, worker and attempts, as any answer does
  const extraHeaders = new WeakMap<IncomingMessage, Array<[string, string]>>()
  wss.on('headers', (headers: string[], req: IncomingMessage) => {
    for (const [k, v] of extraHeaders.get(req) ?? []) headers.push(`${k}: ${v}`)
  })
  const receipts = new Map<string, SessionReceipt>()
  const live = new Set<{ ws: WebSocket, end: (code: number, reason: string) => void }>()

  function keep (r: SessionReceipt): void {
    receipts.set(r.jobId, r)
    while (receipts.size > NODE_DEFAULTS.sessionReceiptsKept) receipts.delete(receipts.keys().next().value as string)
    components.onEnd?.(r)
  }

  function relay (ws: WebSocket, jobId: string, request: JobRequest, worker: SessionDispatch['worker'] & {}, f: FrameStream, stream: NonNullable<SessionDispatch['open']>['stream'], release: () => void, limits: SessionLimits = {}, billing?: SessionBilling): void {
    const tr = transcript()
    // what the worker was granted before a pause must fit (see NODE_DEFAULTS.streamReadBufferBytes)
    try { stream.maxReadBufferLength = NODE_DEFAULTS.streamReadBufferBytes } catch {}
    // the function's own limits, where lower than the gateway's
    const idleMs = Math.min(gatewayIdleMs, limits.idleTimeoutMs ?? Infinity)
    const maxMs = Math.min(gatewayMaxMs, limits.maxSessionMs ?? Infinity)
    const perSec = Math.min(gatewayPerSec, limits.messagesPerSecond ?? Infinity)
    const maxMessageBytes = limits.maxMessageBytes ?? Infinity
    let ended = false
    let clientClosed = false
    let workerClosed = false
    let closeCode: number | undefined
    let windowStart = Date.now()
    let windowCount = 0
    // frames to the worker go out in order; while too many bytes wait, the client is not read
    let chain: Promise<void> = Promise.resolve()
    let pendingToWorker = 0
    let pausedClient = false
    const toWorker = (msg: Message, size: number): void => {
      pendingToWorker += size
      if (!pausedClient && pendingToWorker > hwm) { pausedClient = true; ws.pause() }
      chain = chain.then(async () => { await f.write(msg) }).catch(() => {}).finally(() => {
        pendingToWorker -= size
        if (pausedClient && pendingToWorker <= hwm / 2) { pausedClient = false; ws.resume() }
      })
    }
    // Metered fees (issue 12): a priced session is paid with cumulative tickets, in order with the
    // frames to the worker: every sessionTicketEveryMessages messages either way, every
    // sessionTicketEveryMs, and a final one when the session ends (before the gateway's close, or in
    // answer to the worker's). A ticket the allowance cannot pay ends the session with 4402.
    const priced = billing?.priced === true
    let messages = 0
    let billedAt = 0
    let billingStopped = false
    const pay = (final: boolean): void => {
      if (!priced || billing === undefined || billingStopped) return
      if (final) billingStopped = true
      // what is owed now, not when the frames before it are written
      const n = messages
      const ms = Date.now() - billing.openedAt
      billedAt = n
      chain = chain.then(async () => {
        const t = await billing.bill(n, ms, final)
        if (t === undefined) return
        if ('refused' in t) {
          log.info({ jobId, worker: worker.peerId, reason: t.refused }, 'session ended: its fee cannot be paid further')
          billingStopped = true
          end(WS_CLOSE.paymentRequired, 'payment required: the project cannot pay this session further')
          return
        }
        await f.write(t)
      }).catch(() => {})
    }
    const counted = (): void => {
      messages++
      if (priced && messages - billedAt >= NODE_DEFAULTS.sessionTicketEveryMessages) pay(false)
    }
    const billTimer = priced ? setInterval(() => { pay(false) }, NODE_DEFAULTS.sessionTicketEveryMs) : undefined
    billTimer?.unref()
    // Segments (docs/chain.md): once Settlement's epoch moves past the current segment's, the
    // gateway closes it and opens the next (`segment`, in order with the frames to the worker); the
    // worker answers with the closed segment's receipt (`segment-end`), checked here against a
    // prefix of the relayed transcript: the client → function states since the session opened are
    // remembered (bounded), the function → client direction is exact (its frames come in order)
    const segmented = billing?.paid === true
    const inStates = new Map<number, { hash: Uint8Array, bytes: number }>()
    const remember = (): void => {
      const t = tr.inState()
      inStates.set(t.messages, { hash: t.hash, bytes: t.bytes })
      if (inStates.size > NODE_DEFAULTS.sessionSegmentHistory) inStates.delete(inStates.keys().next().value as number)
    }
    const segmentReceipts: SegmentReceipt[] = []
    let segmenting = false
    /** the latest `segment` frame while the worker has not answered it (NODE_DEFAULTS.sessionSegmentResendMs) */
    let unanswered: { frame: SegmentFrame, at: number, resends: number } | undefined
    const segmentTimer = segmented
      ? setInterval(() => {
        if (segmenting || billingStopped || clientClosed || workerClosed || billing === undefined) return
        segmenting = true
        const n = messages
        const ms = Date.now() - billing.openedAt
        chain = chain.then(async () => {
          if (billingStopped) return
          const fr = await billing.segment(n, ms)
          if (fr === undefined) {
            // no new segment: the last one again, if its worker has not answered it for a while
            const u = unanswered
            if (u === undefined || Date.now() - u.at < NODE_DEFAULTS.sessionSegmentResendMs) return
            if (u.resends >= NODE_DEFAULTS.sessionSegmentResends) { unanswered = undefined; return }
            u.resends++
            u.at = Date.now()
            log.debug({ jobId, worker: worker.peerId, segment: u.frame.segment, resends: u.resends }, 'session segment frame sent again')
            await f.write(u.frame)
            return
          }
          if ('refused' in fr) {
            log.info({ jobId, worker: worker.peerId, reason: fr.refused }, 'session ended: its next segment cannot be paid')
            billingStopped = true
            end(WS_CLOSE.paymentRequired, 'payment required: the project cannot pay this session further')
            return
          }
          log.debug({ jobId, worker: worker.peerId, segment: fr.segment, epoch: fr.epoch }, 'session segment opened')
          unanswered = { frame: fr, at: Date.now(), resends: 0 }
          await f.write(fr)
        }).catch(() => {}).finally(() => { segmenting = false })
      }, NODE_DEFAULTS.sessionSegmentCheckMs)
      : undefined
    segmentTimer?.unref()
    /** the worker's receipt of a closed segment: kept, verified or with the reason it is not */
    const segmentEnded = (msg: SegmentEnd): void => {
      if (billing === undefined) return
      const seg = billing.segmentOf(msg.segment)
      const record: SegmentReceipt = { segment: msg.segment, jobId: seg?.jobId ?? '', epoch: seg?.epoch.toString() ?? '', fee: msg.fee, transcript: msg.transcript, verified: false }
      const own = tr.summary()
      const remembered = inStates.get(msg.transcript.messagesIn)
      const inState = msg.transcript.messagesIn === 0 ? { inHash: `0x${'00'.repeat(32)}`, bytesIn: 0 } : remembered === undefined ? undefined : { inHash: bytesToHex(remembered.hash), bytesIn: remembered.bytes }
      let problem: string | undefined
      if (msg.jobId !== jobId || msg.attempt !== request.attempt) problem = 'segment-end for another job or attempt'
      // (the current one too: a worker closes it itself when no `segment` came in time)
      else if (seg === undefined) problem = `segment ${msg.segment} is not a segment of this session`
      else if (segmentReceipts.some(r => r.segment === msg.segment && r.verified)) problem = `segment ${msg.segment} was ended twice`
      else if (!billing.signed(msg.fee, msg.segment)) problem = `the worker's segment receipt claims a fee of ${msg.fee} wei, which this gateway never signed for segment ${msg.segment}`
      else if (msg.transcript.messagesOut !== own.messagesOut || msg.transcript.outHash !== own.outHash || msg.transcript.bytesOut !== own.bytesOut) problem = 'the segment\'s function → client transcript differs from what the gateway relayed'
      else if (inState === undefined || inState.inHash !== msg.transcript.inHash || inState.bytesIn !== msg.transcript.bytesIn || msg.transcript.messagesIn > own.messagesIn) problem = 'the segment\'s client → function transcript is not a prefix of what the gateway relayed'
      else if (transcriptOutputHash(msg.transcript) !== msg.outputHash) problem = 'the segment receipt\'s outputHash is not its transcript\'s'
      else {
        const charged = billing.requestOf(msg.segment, msg.fee)
        const by = recoverDigestSigner(receiptDigest(init.domain, receiptOf(charged, msg.outputHash)), msg.receiptSig)
        if (by === undefined || !sameAddress(by, worker.advert.address)) problem = 'the segment receipt is not signed by the worker'
        else record.receipt = receiptRecord(init.domain, charged, msg.outputHash, msg.receiptSig)
      }
      if (problem !== undefined) {
        record.problem = problem
        log.warn({ jobId, worker: worker.peerId, segment: msg.segment, problem }, 'segment receipt refused')
      } else {
        record.verified = true
        // the worker took the frame that closed this segment (its receipt at the frame's closing
        // fee): no copy needed. One it closed itself, at less, still wants the frame for the next.
        if (unanswered !== undefined && msg.segment === unanswered.frame.segment - 1 && msg.fee === unanswered.frame.closeFee) unanswered = undefined
      }
      // one record per segment opened (memory bounded by the segments): a verified one is final,
      // an unverified one gives way to the next
      if (seg === undefined || segmentReceipts.some(r => r.segment === msg.segment && r.verified)) return
      const at = segmentReceipts.findIndex(r => r.segment === msg.segment)
      if (at >= 0) segmentReceipts[at] = record
      else segmentReceipts.push(record)
    }
    const closeClient = (code: number, reason: string): void => {
      closeCode ??= code
      if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close(code, reason)
      else if (ws.readyState !== ws.CLOSED) ws.terminate()
    }
    /** the gateway ends the session (limits, shutdown): the client and the function both hear it */
    const end = (code: number, reason: string): void => {
      if (!workerClosed && !clientClosed) {
        pay(true)
        toWorker({ v: PROTOCOL_VERSION, type: 'ws-close', code, reason, delivered: tr.summary().messagesOut }, 128)
      }
      clientClosed = true
      closeClient(code, reason)
    }
    const entry = { ws, end }
    live.add(entry)

    let idle = setTimeout(() => { end(WS_CLOSE.idleTimeout, 'idle timeout') }, idleMs)
    const touch = (): void => { idle.refresh() }
    const lifetime = setTimeout(() => { end(WS_CLOSE.sessionTooLong, 'session time limit') }, maxMs)

    ws.on('message', (data: RawData, isBinary: boolean) => {
      if (clientClosed) return
      const now = Date.now()
      if (now - windowStart >= 1000) { windowStart = now; windowCount = 0 }
      if (++windowCount > perSec) { end(WS_CLOSE.rateLimited, `more than ${perSec} messages per second`); return }
      touch()
      const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data)
      const payload = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
      // the gateway's own maxPayload is enforced by ws while reading; a function's lower one here
      if (payload.byteLength > maxMessageBytes) { end(WS_CLOSE.tooBig, `message over ${maxMessageBytes} bytes`); return }
      tr.add('in', isBinary, payload)
      if (segmented) remember()
      toWorker({ v: PROTOCOL_VERSION, type: 'ws', binary: isBinary, data: payload }, payload.byteLength)
      counted()
    })
    ws.on('close', (code: number, reason: Buffer) => {
      if (!clientClosed && !workerClosed) {
        pay(true)
        // the function → client messages that reached the client: the worker signs those
        toWorker({ v: PROTOCOL_VERSION, type: 'ws-close', code: forwardableCode(code), reason: reason.toString('utf8').slice(0, 100), delivered: tr.summary().messagesOut }, 128)
      }
      clientClosed = true
      closeCode ??= code
      // the worker has a moment to sign the transcript, then the stream goes
      setTimeout(() => { finish('the worker did not end the session in time') }, NODE_DEFAULTS.sessionEndWaitMs).unref()
    })
    // protocol errors (oversize 1009, bad UTF-8 1007, bad frames 1002): ws closes the socket itself
    ws.on('error', (err: Error & { code?: string }) => { log.debug({ jobId, code: err.code, err: err.message }, 'client WebSocket error') })

    let finished = false
    /** the segment the worker's session-end signs */
    let endSegment: number | undefined
    function finish (problem?: string, receipt?: Record<string, unknown>): void {
      if (finished) return
      finished = true
      ended = true
      clearTimeout(idle)
      clearTimeout(lifetime)
      clearInterval(billTimer)
      clearInterval(segmentTimer)
      live.delete(entry)
      release()
      if (problem !== undefined) stream.abort(new Error(problem))
      else void stream.close().catch(() => stream.abort(new Error('close failed')))
      // a segmented session lists every segment's receipt in order, its own (the last) included
      const segments: SegmentReceipt[] = [...segmentReceipts].sort((a, b) => a.segment - b.segment)
      const last = billing?.segmentOf(endSegment ?? billing.current.index)
      if (last !== undefined && (last.index > 0 || segments.length > 0) && !segments.some(x => x.segment === last.index && x.verified)) {
        const at = segments.findIndex(x => x.segment === last.index)
        if (at >= 0) segments.splice(at, 1)
        segments.push({ segment: last.index, jobId: last.jobId, epoch: last.epoch.toString(), fee: typeof receipt?.fee === 'string' ? receipt.fee : last.fee.toString(), transcript: tr.summary(), verified: receipt !== undefined, ...(problem !== undefined ? { problem } : {}), ...(receipt !== undefined ? { receipt } : {}) })
      }
      keep({ jobId, worker: worker.peerId, transcript: tr.summary(), verified: receipt !== undefined, ...(problem !== undefined ? { problem } : {}), ...(receipt !== undefined ? { receipt } : {}), ...(segments.length > 0 ? { segments } : {}), ...(closeCode !== undefined ? { closeCode } : {}), endedAt: new Date().toISOString() })
    }

    // frames from the worker: messages for the client (waiting while the client is slow), its
    // close, and finally session-end
    void (async () => {
      try {
        for (;;) {
          const list = await f.lp.read()
          const msg = decodeMessage(list.subarray())
          if (msg.type === 'ws') {
            // once the client's Close arrived (ws answers it at once: CLOSING) nothing more reaches
            // the client: not relayed, not in the transcript (the worker is told how many were)
            if (clientClosed || ws.readyState !== ws.OPEN) continue
            touch()
            tr.add('out', msg.binary, msg.data)
            counted()
            const flushed = new Promise<void>(resolve => { ws.send(msg.data, { binary: msg.binary }, () => { resolve() }) })
            // a client that does not read makes this loop (and so the worker, and the function)
            // wait: the job stream is paused meanwhile, so yamux grants the worker no more window
            // (without it yamux keeps granting, and the stream's read buffer overflows at ~20 MiB)
            if (ws.bufferedAmount > hwm) {
              try { stream.pause() } catch {}
              await flushed
              try { stream.resume() } catch {}
            }
          } else if (msg.type === 'ws-close') {
            // the worker ended the session: it waits a moment for the final cumulative ticket and
            // this answer, which names the messages that reached the client (its receipt signs
            // those); a client that closed first was answered so already
            if (!workerClosed && !clientClosed) {
              pay(true)
              toWorker({ v: PROTOCOL_VERSION, type: 'ws-close', code: msg.code, reason: '', delivered: tr.summary().messagesOut }, 128)
            }
            workerClosed = true
            closeClient(msg.code, msg.reason)
          } else if (msg.type === 'segment-end') {
            segmentEnded(msg)
          } else if (msg.type === 'session-end') {
            const own = tr.summary()
            const same = JSON.stringify(own) === JSON.stringify(msg.transcript)
            const hash = transcriptOutputHash(own)
            // a metered session's receipt signs a cumulative fee this gateway signed (the latest, or
            // an earlier one when the final ticket came too late); never one it did not. A segmented
            // session's receipt signs its current segment's ticket (the hash runs on: the whole session)
            const segment = msg.segment ?? 0
            // (an earlier one than the gateway's current when the session ended before the worker read the last `segment`)
            if (segment > (billing?.current.index ?? 0) || segmentReceipts.some(r => r.segment === segment && r.verified)) { finish(`the worker's receipt signs segment ${segment}, which is not the session's open segment`); break }
            endSegment = segment
            const fee = msg.fee ?? (segment === 0 ? request.ticket.fee : undefined)
            if (fee === undefined) { finish('the worker\'s receipt of a later segment names no fee'); break }
            if ((msg.fee !== undefined || segment > 0) && billing?.signed(fee, segment) !== true) { finish(`the worker's receipt claims a fee of ${fee} wei, which this gateway never signed for the session`); break }
            const charged = billing === undefined ? request : billing.requestOf(segment, fee)
            const signerOf = same && msg.outputHash === hash ? recoverDigestSigner(receiptDigest(init.domain, receiptOf(charged, hash)), msg.receiptSig) : undefined
            if (!same) { finish('the worker signed a transcript that differs from what the gateway relayed'); break }
            if (signerOf === undefined || !sameAddress(signerOf, worker.advert.address)) { finish('the session receipt is not signed by the worker'); break }
            if (!workerClosed) closeClient(msg.error !== undefined ? WS_CLOSE.internalError : 1000, msg.error?.code ?? '')
            finish(undefined, receiptRecord(init.domain, charged, hash, msg.receiptSig))
            break
          } else if (msg.type === 'error') {
            // the worker ended the session without a receipt (it could not record one, or its last
            // segment never got a ticket: docs/chain.md); the segments it closed keep theirs
            log.info({ jobId, worker: worker.peerId, code: msg.error.code }, 'session ended without a receipt')
            clientClosed = true
            closeClient(WS_CLOSE.serviceRestart, 'the worker ended the session')
            finish(`the worker ended the session without a receipt: ${msg.error.code} ${msg.error.message}`)
            break
          } else {
            throw new Error(`unexpected "${msg.type}" frame in a session`)
          }
        }
      } catch (err) {
        if (ended) return
        // the worker died or the stream broke: the client hears it at once and may reconnect
        log.info({ jobId, worker: worker.peerId, err: (err as Error)?.message }, 'session lost its worker')
        clientClosed = true
        closeClient(WS_CLOSE.serviceRestart, 'the worker went away; reconnect')
        finish('the worker stream ended before session-end')
      }
    })()
  }

  return {
    wss,
    get open () { return live.size },
    accept (req, socket, head, session, headers = [], limits) {
      extraHeaders.set(req, headers)
      // a socket that dies during the handshake never reaches relay(): its places are freed here
      let upgraded = false
      // (and the worker's session, opened for nobody, is ended: it would otherwise hold its place
      // on the worker until its maximum length)
      socket.once('close', () => {
        if (upgraded) return
        session.open.stream.abort(new Error('the client left during the WebSocket handshake'))
        session.open.release()
      })
      wss.handleUpgrade(req, socket, head, (ws) => {
        upgraded = true
        relay(ws, session.jobId, session.request, session.worker, session.open.f, session.open.stream, session.open.release, limits, session.open.billing)
      })
    },
    reserve (key, max) {
      const n = held.get(key) ?? 0
      if (n >= max) return undefined
      held.set(key, n + 1)
      let done = false
      return () => {
        if (done) return
        done = true
        const left = (held.get(key) ?? 1) - 1
        if (left <= 0) held.delete(key)
        else held.set(key, left)
      }
    },
    receipt: (jobId) => receipts.get(jobId),
    async shutdown () {
      const all = [...live]
      for (const s of all) s.end(WS_CLOSE.goingAway, 'the gateway is shutting down')
      // the close handshakes and the workers' session-end frames get a moment
      const until = Date.now() + NODE_DEFAULTS.sessionEndWaitMs
      while (live.size > 0 && Date.now() < until) await new Promise(resolve => setTimeout(resolve, 20))
      for (const s of all) s.ws.terminate()
    }
  }
}
