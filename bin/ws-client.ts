/**
 * `peerhost ws`: a WebSocket client session with a function, and the client's own check of the
 * session's receipt. The client keeps the transcript of every message it sent and received
 * (protocol/transcript.ts); after the close it fetches /_peerhost/receipts/<jobId> from the same
 * gateway and checks, without trusting the gateway's `verified`, that the worker the receipt
 * names signed exactly that transcript (node/gateway/session-receipt.ts).
 */
import { createInterface } from 'node:readline'
import WebSocket from 'ws'
import { transcript } from '#protocol'
import { NodeError } from '../node/errors.ts'
import { checkSessionReceipt } from '../node/gateway/session-receipt.ts'

export interface SessionOptions {
  /** text messages to send in order; empty: stdin's lines */
  send: string[]
  headers: Array<[string, string]>
  /** with `send`: close once nothing arrived for this long after the last message */
  waitMs: number
  /** fetch and check the receipt after the close */
  receipt: boolean
  print: (human: string, data: Record<string, unknown>) => void
}

/** How long after the close the receipt may take to be kept by the gateway. */
const RECEIPT_WAIT_MS = 5_000
/** Longest received message printed whole (the rest is summarized). */
const PRINT_MAX = 4_096

function shown (data: Buffer, binary: boolean): string {
  if (binary) return `(binary, ${data.byteLength} bytes${data.byteLength > 0 ? `: ${data.subarray(0, 32).toString('hex')}${data.byteLength > 32 ? '…' : ''}` : ''})`
  const text = data.toString('utf8')
  return text.length > PRINT_MAX ? `${text.slice(0, PRINT_MAX)}… (${data.byteLength} bytes)` : text
}

/** Runs one session; resolves with the process exit code (0 clean, 1 refused, failed or receipt not verified). */
export async function runSession (url: URL, opts: SessionOptions): Promise<number> {
  const tr = transcript()
  const ws = new WebSocket(url, { headers: Object.fromEntries(opts.headers), handshakeTimeout: 60_000, maxPayload: 64 * 1024 * 1024 })
  let jobId: string | undefined
  let worker: string | undefined

  // the upgrade: 101 (with the gateway's job id), or a refusal the function or gateway explains
  const opened = await new Promise<{ ok: true } | { ok: false, code: number }>((settle) => {
    let settled = false
    const resolve = (v: { ok: true } | { ok: false, code: number }): void => { if (!settled) { settled = true; settle(v) } }
    ws.once('upgrade', (res) => {
      const job = res.headers['x-peerhost-job']
      const w = res.headers['x-peerhost-worker']
      jobId = typeof job === 'string' ? job : undefined
      worker = typeof w === 'string' ? w : undefined
    })
    ws.once('open', () => { resolve({ ok: true }) })
    ws.once('unexpected-response', (_req, res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => { if (body.length < 16_384) body += d })
      res.on('end', () => {
        let message = body.trim().slice(0, 2_000)
        let code: string | undefined
        try {
          const e = JSON.parse(body).error
          if (typeof e?.message === 'string') {
            code = e.code
            // the cause, where the error names one (e.g. a function that never called accept())
            message = typeof e.details?.reason === 'string' ? `${e.message}: ${e.details.reason}` : e.message
          }
        } catch {}
        const status = res.statusCode ?? 0
        // a 2xx/3xx is the function answering as to a plain request: it did not accept a WebSocket
        const what = status < 400 ? `the function answered HTTP ${status} instead of accepting the WebSocket` : `refused: HTTP ${status}${code !== undefined ? ` ${code}` : ''}`
        opts.print(`${what}${message !== '' ? `: ${message}` : ''}`, { event: 'refused', status: res.statusCode, code, message, job: res.headers['x-peerhost-job'] })
        resolve({ ok: false, code: 1 })
      })
      res.on('error', () => { resolve({ ok: false, code: 1 }) })
    })
    // (registered once; before the open any error means no session: a refused or failed connection)
    ws.on('error', (err: NodeJS.ErrnoException) => {
      if (ws.readyState === WebSocket.OPEN || settled) return
      const why = err.code === 'ECONNREFUSED' ? `nothing listens at ${url.host}; is the gateway (or \`peerhost dev\`) running?` : err.message
      opts.print(`cannot connect to ${url.href}: ${why}`, { event: 'error', message: why })
      resolve({ ok: false, code: 1 })
    })
  })
  if (!opened.ok) { ws.terminate(); return opened.code }
  opts.print(`connected to ${url.href}${jobId !== undefined ? ` (job ${jobId}${worker !== undefined ? `, worker ${worker}` : ''})` : ''}`, { event: 'open', url: url.href, jobId, worker })

  let lastActivity = Date.now()
  ws.on('message', (data: Buffer, binary: boolean) => {
    lastActivity = Date.now()
    tr.add('out', binary, data)
    opts.print(shown(data, binary), { event: 'message', binary, data: binary ? data.toString('base64') : data.toString('utf8') })
  })
  ws.on('error', (err) => { opts.print(`error: ${err.message}`, { event: 'error', message: err.message }) })
  const closed = new Promise<{ code: number, reason: string }>((resolve) => {
    ws.once('close', (code, reason) => { resolve({ code, reason: reason.toString('utf8') }) })
  })

  const sendText = (text: string): boolean => {
    if (ws.readyState !== WebSocket.OPEN) return false
    const bytes = Buffer.from(text, 'utf8')
    tr.add('in', false, bytes)
    ws.send(bytes, { binary: false })
    lastActivity = Date.now()
    return true
  }

  // after the last message: close once nothing has arrived for waitMs (or the function closed
  // first). Closing at once would race the answers still on their way: the gateway answers a
  // client's Close at once and can deliver nothing after it, although the function sent it (and
  // the receipt counts it)
  const closeWhenQuiet = async (): Promise<void> => {
    const ended = await Promise.race([closed.then(() => true), (async () => {
      while (ws.readyState === WebSocket.OPEN && Date.now() - lastActivity < opts.waitMs) {
        await new Promise(resolve => setTimeout(resolve, Math.min(100, Math.max(1, opts.waitMs - (Date.now() - lastActivity)))))
      }
      return false
    })()])
    if (!ended && ws.readyState === WebSocket.OPEN) ws.close(1000, 'done')
  }
  if (opts.send.length > 0) {
    for (const m of opts.send) if (!sendText(m)) break
    await closeWhenQuiet()
  } else {
    const lines = createInterface({ input: process.stdin, terminal: false })
    lines.on('line', (line) => { sendText(line) })
    lines.once('close', () => { void closeWhenQuiet() })
    void closed.then(() => { lines.close() })
  }
  const { code, reason } = await closed
  process.stdin.unref?.()
  opts.print(`closed ${code}${reason !== '' ? ` ${reason}` : ''}`, { event: 'close', code, reason })
  const clean = code === 1000 || code === 1001 || code === 1005
  if (!opts.receipt) return clean ? 0 : 1
  if (jobId === undefined) {
    opts.print('receipt: none (this server names no job: `peerhost dev` signs no receipts)', { event: 'receipt', verified: false, problem: 'no x-peerhost-job' })
    return clean ? 0 : 1
  }
  const receiptUrl = new URL(`/_peerhost/receipts/${jobId}`, url)
  receiptUrl.protocol = url.protocol === 'wss:' ? 'https:' : 'http:'
  const record = await fetchReceipt(receiptUrl)
  if (record === undefined) {
    opts.print(`receipt: not kept by ${receiptUrl.origin} within ${RECEIPT_WAIT_MS / 1000} s`, { event: 'receipt', verified: false, problem: 'not found' })
    return 1
  }
  const summary = tr.summary()
  const check = checkSessionReceipt(record, summary, jobId)
  if (!check.verified) {
    opts.print(`receipt NOT verified: ${check.problem}`, { event: 'receipt', verified: false, problem: check.problem, url: receiptUrl.href })
    return 1
  }
  const r = check.receipt
  opts.print([
    `receipt verified: worker ${check.signer} signed the transcript of exactly what this client sent and received`,
    check.segments > 1
      ? `  ${summary.messagesIn} message(s) in (${summary.bytesIn} bytes), ${summary.messagesOut} out (${summary.bytesOut} bytes), in ${check.segments} segments (the session outlived its Settlement epoch: each epoch's part is paid in that epoch's batch); the last segment's fee ${String(r.fee)} wei, epoch ${String(r.epoch)}`
      : `  ${summary.messagesIn} message(s) in (${summary.bytesIn} bytes), ${summary.messagesOut} out (${summary.bytesOut} bytes); fee ${String(r.fee)} wei, epoch ${String(r.epoch)}`,
    `  chain ${check.domain.chainId}, Settlement ${check.domain.verifyingContract}; the receipt: ${receiptUrl.href}`
  ].join('\n'), { event: 'receipt', verified: true, signer: check.signer, transcript: summary, segments: check.segments, receipt: r, url: receiptUrl.href })
  return clean ? 0 : 1
}

/** The gateway's receipt record, polled until it is kept (a session's receipt follows its close). */
async function fetchReceipt (url: URL): Promise<unknown> {
  const until = Date.now() + RECEIPT_WAIT_MS
  for (;;) {
    let res: Response
    try {
      res = await fetch(url, { signal: AbortSignal.timeout(5_000) })
    } catch (err) {
      throw new NodeError('GATEWAY_UNREACHABLE', `cannot fetch the receipt from ${url.href}: ${(err as Error).message}`)
    }
    if (res.status === 200) return await res.json()
    await res.body?.cancel()
    if (res.status !== 404 || Date.now() >= until) return undefined
    await new Promise(resolve => setTimeout(resolve, 200))
  }
}
