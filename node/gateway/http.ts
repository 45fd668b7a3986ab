/**
 * The gateway's HTTP surface (hono on node:http):
 *
 * - `ANY /<wallet>/<project>/<function>[/rest]` → a job through the mesh → the function's response,
 *   with `x-peerhost-job`, `x-peerhost-worker`, `x-peerhost-attempts`, `x-peerhost-receipt` and
 *   `Server-Timing` (dispatch, queue, sandbox, exec, total).
 * - `/_peerhost/health`, `/_peerhost/ready`, `/_peerhost/metrics`, `/_peerhost/status`.
 *
 * Every error is JSON `{ "error": { "code", "message" } }` with the status of its wire code.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { getRequestListener } from '@hono/node-server'
import { Hono, type Context } from 'hono'
import type { Registry } from 'prom-client'
import type { Address } from 'viem'
import { Counter, Histogram } from 'prom-client'
import {
  DEV_DOMAIN, inputHash, LIMITS, newJobId, PEERHOST_HEADER_PREFIX, receiptOf, WIRE_ERROR_CODES,
  type JobRequest, type JobResult, type PeerHostDomain, type WireErrorCode, type WireRequest
} from '#protocol'
import { NODE_DEFAULTS } from '../constants.ts'
import type { Logger } from '../logger.ts'
import type { Dispatcher } from './dispatch.ts'
import type { FunctionTable } from './functions.ts'
import type { ChainFallback } from '../fallback/gateway-fallback.ts'
import type { LogBook } from './logs.ts'

/** Request headers never forwarded to a function: per-connection and hop-by-hop. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'expect'])
/** Response headers the gateway sets itself. */
const RESPONSE_DROP = new Set([...HOP_BY_HOP, 'content-length', 'server-timing'])

const WALLET = /^0x[0-9a-fA-F]{40}$/
const NAME = /^[a-z0-9][a-z0-9-]{0,62}$/

export interface GatewayHttpInit {
  port?: number
  host?: string
  domain?: PeerHostDomain
}

export interface GatewayHttpComponents {
  functions: FunctionTable
  dispatch: Dispatcher
  registry: Registry
  logger: Logger
  /** JSON for /_peerhost/status */
  status: () => Record<string, unknown>
  /**
   * Ready means the gateway can serve a deployed function: at least one worker is known and at
   * least one function is loaded. Otherwise the reason (NO_WORKER / NO_FUNCTION) and a sentence.
   */
  ready: () => true | { code: 'NO_WORKER' | 'NO_FUNCTION', message: string }
  /** jobs for the status page */
  recordJob: (job: RecentJob) => void
  /** extra routes under /_peerhost/ (e.g. uploads), mounted before the catch-all */
  routes?: (app: Hono) => void
  /**
   * The chain fallback (node/fallback): asked when the client sends `x-peerhost-mode: onchain`, or
   * when the mesh gave no answer (NO_WORKER, WORKER_FAILED, DEADLINE_EXCEEDED) within `meshShare`
   * of the deadline. Answers then carry `x-peerhost-path: chain`, mesh answers `mesh`.
   */
  fallback?: Pick<ChainFallback, 'meshShare' | 'run'>
  /**
   * The project's opened secrets for one job (node/secrets), or undefined when it has none. On the
   * chain path they stay with the gateway and go to the workers that ask over SECRETS_PROTOCOL.
   */
  secrets?: (wallet: Address, project: string) => Record<string, string> | undefined
  /** where mesh answers leave their function logs for the builder (logs.ts) */
  logs?: Pick<LogBook, 'record'>
}

/** Mesh outcomes after which the chain is asked. */
const FALLBACK_CODES = new Set(['NO_WORKER', 'WORKER_FAILED', 'DEADLINE_EXCEEDED'])

export interface RecentJob {
  jobId: string
  function: string
  status: number
  worker?: string
  attempts: number
  ms: number
  at: string
}

export interface GatewayHttp {
  readonly server: Server
  readonly url: string
  start: () => Promise<void>
  stop: () => Promise<void>
}

export function jsonError (code: WireErrorCode, message?: string, details?: Record<string, unknown>): Response {
  const body: Record<string, unknown> = { code, message: message ?? WIRE_ERROR_CODES[code].message }
  if (details !== undefined) body.details = details
  return new Response(JSON.stringify({ error: body }), {
    status: WIRE_ERROR_CODES[code].status,
    headers: { 'content-type': 'application/json; charset=utf-8' }
  })
}

/** Reads a body up to `max` bytes; undefined when it is larger (reading stops there). */
export async function readBody (req: Request, max: number): Promise<Uint8Array | undefined> {
  if (req.body === null) return new Uint8Array(0)
  const chunks: Uint8Array[] = []
  let size = 0
  const reader = req.body.getReader()
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    size += value.byteLength
    if (size > max) {
      await reader.cancel().catch(() => {})
      return undefined
    }
    chunks.push(value)
  }
  return new Uint8Array(Buffer.concat(chunks))
}

/**
 * `x-peerhost-receipt`: base64url JSON with the EIP-712 domain, every Receipt field (uint fields
 * as decimal strings) and the worker's signature — all a client needs to verify who ran its job.
 */
function receiptHeader (domain: PeerHostDomain, request: JobRequest, result: JobResult): string {
  const r = receiptOf(request, result.outputHash)
  const receipt = {
    domain: { ...domain },
    ...r,
    fee: r.fee.toString(),
    epoch: r.epoch.toString(),
    // a uint64 since tickets bind their deadline: JSON has no bigint
    deadline: r.deadline.toString(),
    signature: result.receiptSig
  }
  return Buffer.from(JSON.stringify(receipt)).toString('base64url')
}

export function gatewayHttp (init: GatewayHttpInit, components: GatewayHttpComponents): GatewayHttp {
  const { functions, dispatch, registry } = components
  const log = components.logger.child({ component: 'peerhost:gateway:http' })
  const domain = init.domain ?? DEV_DOMAIN
  const requests = new Counter({ name: 'peerhost_gateway_requests_total', help: 'function requests, by status', labelNames: ['status'], registers: [registry] })
  const latency = new Histogram({ name: 'peerhost_gateway_request_seconds', help: 'function request latency', buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30], registers: [registry] })
  const attemptsTotal = new Counter({ name: 'peerhost_gateway_attempts_total', help: 'dispatch attempts, by outcome', labelNames: ['outcome'], registers: [registry] })

  const app = new Hono()

  app.get('/_peerhost/health', c => c.json({ status: 'ok' }))
  app.get('/_peerhost/ready', c => {
    const ready = components.ready()
    return ready === true ? c.json({ ready: true }) : c.json({ ready: false, error: ready }, 503)
  })
  app.get('/_peerhost/metrics', async c => c.body(await registry.metrics(), 200, { 'content-type': registry.contentType }))
  app.get('/_peerhost/status', c => c.json(components.status()))
  components.routes?.(app)
  app.all('/_peerhost/*', () => jsonError('NOT_FOUND', 'no such gateway endpoint; try /_peerhost/status'))

  async function invoke (c: Context): Promise<Response> {
    const started = performance.now()
    const url = new URL(c.req.url)
    const [, wallet, project, fn] = url.pathname.split('/')
    if (wallet === undefined || project === undefined || fn === undefined || fn === '' || !WALLET.test(wallet) || !NAME.test(project) || !NAME.test(fn)) {
      return jsonError('NOT_FOUND', 'expected a path /<wallet 0x…>/<project>/<function>[/rest]')
    }
    const entry = functions.resolve(wallet, project, fn)
    if (entry === undefined) return jsonError('NOT_FOUND', `no function ${project}/${fn} is deployed for ${wallet}`)

    const raw = c.req.raw
    const declared = Number(raw.headers.get('content-length') ?? '0')
    if (declared > LIMITS.maxRequestBodyBytes) return jsonError('PAYLOAD_TOO_LARGE', `the request body is ${declared} bytes; the limit is ${LIMITS.maxRequestBodyBytes}`)
    const body = await readBody(raw, LIMITS.maxRequestBodyBytes)
    if (body === undefined) return jsonError('PAYLOAD_TOO_LARGE', `the request body exceeds the limit of ${LIMITS.maxRequestBodyBytes} bytes`)

    const headers: Array<[string, string]> = []
    for (const [name, value] of raw.headers) if (!HOP_BY_HOP.has(name)) headers.push([name, value])
    if (headers.length > LIMITS.maxHeaders) return jsonError('HEADERS_TOO_LARGE', `${headers.length} headers; the limit is ${LIMITS.maxHeaders}`)
    const request: WireRequest = { method: raw.method.toUpperCase(), url: url.toString(), headers, body }

    const deadline = Date.now() + Math.min(entry.options.timeoutMs + 2_000, LIMITS.maxDeadlineMs)
    const secrets = components.secrets?.(entry.ref.wallet, entry.ref.project)
    const fallback = components.fallback
    const onchain = fallback !== undefined && raw.headers.get('x-peerhost-mode')?.trim().toLowerCase() === 'onchain'
    const hash = inputHash(request)
    const meshDeadline = fallback === undefined ? deadline : Math.floor(Date.now() + Math.max(0, deadline - Date.now()) * fallback.meshShare)
    const outcome = onchain
      ? { jobId: newJobId(), attempts: [], dispatchMs: 0, error: { code: 'NO_WORKER' as const, message: 'the client asked for the chain' } }
      : await dispatch({ entry, request, inputHash: hash, deadline: meshDeadline, signal: raw.signal, secrets })
    if (fallback !== undefined && outcome.result === undefined && (onchain || FALLBACK_CODES.has(outcome.error?.code ?? ''))) {
      const response = await chainAnswer(fallback, { fn: entry.ref, options: entry.options, env: entry.env, secrets, request, inputHash: hash, jobId: outcome.jobId, signal: raw.signal }, started, outcome.attempts.length)
      requests.inc({ status: String(response.status) })
      latency.observe((performance.now() - started) / 1000)
      components.recordJob({ jobId: outcome.jobId, function: `${project}/${fn}`, status: response.status, worker: 'chain', attempts: outcome.attempts.length, ms: Math.round((performance.now() - started) * 100) / 100, at: new Date().toISOString() })
      return response
    }
    for (const a of outcome.attempts) attemptsTotal.inc({ outcome: a.ok ? 'ok' : (a.code ?? 'failed') })

    const totalMs = performance.now() - started
    const base: Record<string, string> = {
      'x-peerhost-job': outcome.jobId,
      'x-peerhost-attempts': String(outcome.attempts.length)
    }
    let response: Response
    const result = outcome.result
    if (result === undefined) {
      response = jsonError(outcome.error?.code ?? 'WORKER_FAILED', outcome.error?.message, outcome.error?.details)
    } else {
      base['x-peerhost-worker'] = outcome.worker?.peerId ?? ''
      if (outcome.request !== undefined) base['x-peerhost-receipt'] = receiptHeader(domain, outcome.request, result)
      const t = result.timings
      base['server-timing'] = [
        `dispatch;dur=${outcome.dispatchMs.toFixed(2)}`,
        `queue;dur=${t.queueMs.toFixed(2)}`,
        `sandbox;dur=${t.sandboxMs.toFixed(2)}`,
        `exec;dur=${t.execMs.toFixed(2)}`,
        `total;dur=${totalMs.toFixed(2)}`
      ].join(', ')
      if (result.response !== undefined) {
        const h = new Headers()
        for (const [name, value] of result.response.headers) {
          if (RESPONSE_DROP.has(name) || name.startsWith(PEERHOST_HEADER_PREFIX)) continue
          h.append(name, value)
        }
        const nullBody = [101, 204, 205, 304].includes(result.response.status) || raw.method === 'HEAD'
        response = new Response(nullBody ? null : result.response.body, { status: result.response.status, headers: h })
      } else {
        const err = result.error ?? { code: 'INTERNAL' as const, message: 'no result' }
        response = jsonError(err.code, err.message, err.details)
      }
    }
    for (const [k, v] of Object.entries(base)) response.headers.set(k, v)
    if (fallback !== undefined) response.headers.set('x-peerhost-path', 'mesh')
    requests.inc({ status: String(response.status) })
    latency.observe(totalMs / 1000)
    const job: RecentJob = {
      jobId: outcome.jobId,
      function: `${project}/${fn}`,
      status: response.status,
      worker: outcome.worker?.peerId,
      attempts: outcome.attempts.length,
      ms: Math.round(totalMs * 100) / 100,
      at: new Date().toISOString()
    }
    components.recordJob(job)
    components.logs?.record(entry.ref.wallet, project, { at: job.at, function: fn, jobId: job.jobId, status: job.status, worker: job.worker, ms: job.ms, logs: result?.logs ?? '', logsTruncated: result?.logsTruncated ?? false })
    return response
  }

  /** The chain's answer: the finalized output, or a wire error when the chain gave none in time. */
  async function chainAnswer (fallback: Pick<ChainFallback, 'run'>, job: Parameters<ChainFallback['run']>[0], started: number, meshAttempts: number): Promise<Response> {
    const chainStarted = performance.now()
    let response: Response
    const base: Record<string, string> = { 'x-peerhost-path': 'chain', 'x-peerhost-job': job.jobId ?? '', 'x-peerhost-attempts': String(meshAttempts) }
    try {
      const r = await fallback.run(job)
      base['x-peerhost-chain-request'] = r.requestId.toString()
      base['x-peerhost-output-cid'] = r.outputCid
      base['x-peerhost-chain-blocks'] = (r.finalizedBlock - r.requestBlock).toString()
      if (r.response !== undefined) {
        const h = new Headers()
        for (const [name, value] of r.response.headers) {
          if (RESPONSE_DROP.has(name) || name.startsWith(PEERHOST_HEADER_PREFIX)) continue
          h.append(name, value)
        }
        const nullBody = [101, 204, 205, 304].includes(r.response.status) || job.request.method === 'HEAD'
        response = new Response(nullBody ? null : r.response.body, { status: r.response.status, headers: h })
      } else {
        const err = r.error ?? { code: 'INTERNAL' as const, message: 'no result' }
        response = jsonError(err.code, err.message, err.details)
      }
    } catch (err: any) {
      log.warn({ err: err?.message, code: err?.code, jobId: job.jobId }, 'chain fallback gave no answer')
      const refused: string | undefined = err?.code === 'CHAIN_REVERTED' ? err?.details?.error : undefined
      response = err?.code === 'FALLBACK_DEADLINE'
        ? jsonError('DEADLINE_EXCEEDED', 'the chain did not finalize a result before the request deadline')
        : err?.code === 'FALLBACK_NO_ESCROW'
          ? jsonError('WORKER_FAILED', `the mesh gave no result and the chain fallback was not asked: ${String(err.message)}`)
          : jsonError('WORKER_FAILED', refused === 'CoordinatorUnknownFunction'
          ? 'the mesh gave no result and the chain fallback cannot run this function: it is not registered in FunctionRegistry'
          : refused !== undefined
            ? `the mesh gave no result and ExecutionCoordinator refused the fallback request (${refused})`
            : 'neither the mesh nor the chain fallback produced a result')
    }
    const now = performance.now()
    base['server-timing'] = `mesh;dur=${(chainStarted - started).toFixed(2)}, chain;dur=${(now - chainStarted).toFixed(2)}, total;dur=${(now - started).toFixed(2)}`
    for (const [k, v] of Object.entries(base)) response.headers.set(k, v)
    return response
  }

  app.all('/*', invoke)
  app.onError((err, c) => {
    log.error({ err, path: c.req.path }, 'request failed')
    return jsonError('INTERNAL')
  })

  const listener = getRequestListener(app.fetch, { overrideGlobalObjects: false })
  const server = createServer({
    maxHeaderSize: LIMITS.maxHeaderBytes,
    requestTimeout: NODE_DEFAULTS.httpRequestTimeoutMs,
    headersTimeout: NODE_DEFAULTS.httpHeadersTimeoutMs
  }, listener)
  // malformed requests and oversize headers get a JSON answer too, then the socket closes
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable) { socket.destroy(); return }
    const code: WireErrorCode = err.code === 'HPE_HEADER_OVERFLOW' ? 'HEADERS_TOO_LARGE' : 'BAD_REQUEST'
    const status = WIRE_ERROR_CODES[code].status
    const body = JSON.stringify({ error: { code, message: WIRE_ERROR_CODES[code].message } })
    socket.end(`HTTP/1.1 ${status} ${code === 'HEADERS_TOO_LARGE' ? 'Request Header Fields Too Large' : 'Bad Request'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`)
  })

  let url = ''
  return {
    server,
    get url () { return url },
    async start () {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen(init.port ?? NODE_DEFAULTS.gatewayPort, init.host ?? '127.0.0.1', () => { server.off('error', reject); resolve() })
      })
      const addr = server.address() as AddressInfo
      url = `http://${addr.address.includes(':') ? `[${addr.address}]` : addr.address}:${addr.port}`
    },
    async stop () {
      server.closeIdleConnections()
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
}
