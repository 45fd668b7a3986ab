/**
 * The gateway's HTTP surface (hono on node:http):
 *
 * - `ANY /<wallet>/<project>/<function>[/rest]` → a job through the mesh → the function's response,
 *   with `x-peerhost-job`, `x-peerhost-worker`, `x-peerhost-attempts`, `x-peerhost-receipt` and
 *   `Server-Timing` (dispatch, queue, sandbox, exec, total); a quorum function's answer also carries
 *   `x-peerhost-quorum` (`agreeing/n`) and `x-peerhost-receipts` (every agreeing receipt); its 502
 *   QUORUM_DISAGREEMENT carries the same two headers with every receipt it got. This path form puts every tenant on
 *   one web origin: fine for APIs and local development, unsafe for cookies and browser storage.
 * - With `walletDomain` d: `ANY https://<wallet>.<d>/<project>/<function>[/rest]`, one web origin
 *   per wallet (the wallet from the Host header; a host under d that is not a known wallet is 404).
 *
 * Before routing, ingress.ts enforces connection and request caps and the body cap (GW-02/03/07);
 * a project's `rateLimit` is enforced per gateway before dispatch, and so is a function's `auth`
 * (node/auth: 401/403 JSON, the credential header stripped before dispatch), ahead of both the
 * mesh and the chain fallback. The chain path itself is gated by chain-gate.ts: a client may force it
 * only where the project opts in (`"chainPath": "client"`, else 403), and each client IP gets a
 * small budget of chain requests (`chainRateLimit`, 429 + `Retry-After`).
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
  DEV_DOMAIN, inputHash, LIMITS, newJobId, PEERHOST_HEADER_PREFIX, WIRE_ERROR_CODES,
  type JobRequest, type JobResult, type PeerHostDomain, type WireErrorCode, type WireRequest
} from '#protocol'
import { NODE_DEFAULTS } from '../constants.ts'
import type { Logger } from '../logger.ts'
import { clientKey, endThenClose, ingress, type IngressInit } from './ingress.ts'
import { chainGate } from './chain-gate.ts'
import { rateLimiter, type RateLimit } from './rate-limit.ts'
import { chainFallbackAllowed, meshDeadline, type Dispatcher } from './dispatch.ts'
import type { QuorumOutcome } from './quorum.ts'
import type { FunctionEntry, FunctionTable } from './functions.ts'
import { fallbackFailure, type ChainFallback } from '../fallback/gateway-fallback.ts'
import type { LogBook } from './logs.ts'
import { answerUpgrade, sessionRelay, upgradeError, type SessionLimitsInit } from './sessions.ts'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { authGuard, type AuthGuard } from '../auth/guard.ts'
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response'
import type { ServerResponse } from 'node:http'
import { encodeReceipt, receiptBook, receiptRecord, relayStream } from './stream-relay.ts'

/** Request headers never forwarded to a function: per-connection and hop-by-hop. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'expect'])
/** Response headers the gateway sets itself. */
const RESPONSE_DROP = new Set([...HOP_BY_HOP, 'content-length', 'server-timing'])

const WALLET = /^0x[0-9a-fA-F]{40}$/
const NAME = /^[a-z0-9][a-z0-9-]{0,62}$/

export interface GatewayHttpInit {
  port?: number
  host?: string
  /** the EIP-712 domain tickets and receipts are signed in */
  domain?: PeerHostDomain
  /**
   * Serve `<wallet>.<walletDomain>/<project>/<function>` (one origin per wallet) besides the path
   * form, e.g. `peerhost.example` or `localhost`; @default none (path form only)
   */
  walletDomain?: string
  /** connection and request caps (ingress.ts); @default NODE_DEFAULTS.gateway* */
  ingress?: Omit<IngressInit, 'maxBodyBytes'>
  /** chain-path requests per client IP per window (chain-gate.ts); @default NODE_DEFAULTS.gatewayChainRate* */
  chainRateLimit?: RateLimit
  /** @default NODE_DEFAULTS.httpHeadersTimeoutMs */
  headersTimeoutMs?: number
  /** @default NODE_DEFAULTS.httpRequestTimeoutMs */
  requestTimeoutMs?: number
  /** WebSocket session limits (sessions.ts); @default NODE_DEFAULTS.session* */
  sessions?: SessionLimitsInit
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
   * when the mesh was unreachable or a worker misbehaved (dispatch.ts `chainFallbackAllowed`: never
   * for overload or a function's own error, never without time left for the chain path) within
   * `meshShare` of the deadline. Answers then carry `x-peerhost-path: chain`, mesh answers `mesh`.
   */
  fallback?: Pick<ChainFallback, 'meshShare' | 'run'>
  /**
   * The project's opened secrets for one job (node/secrets), or undefined when it has none. On the
   * chain path they stay with the gateway and go to the workers that ask over SECRETS_PROTOCOL.
   */
  secrets?: (wallet: Address, project: string) => Record<string, string> | undefined
  /** where mesh answers leave their function logs for the builder (logs.ts) */
  logs?: Pick<LogBook, 'record'>
  /**
   * The check of a function's `auth` (node/auth), run before dispatch to the mesh or the chain;
   * @default wallet-signed requests only (api-key functions are refused: no key store)
   */
  auth?: AuthGuard
}

export interface RecentJob {
  jobId: string
  function: string
  status: number
  worker?: string
  attempts: number
  ms: number
  at: string
  /** the worker's signed receipt, as sent in `x-peerhost-receipt` (mesh answers only) */
  receipt?: string
}

export interface GatewayHttp {
  readonly server: Server
  /** WebSocket sessions open now */
  readonly sessions: number
  readonly url: string
  start: () => Promise<void>
  stop: () => Promise<void>
}

export function jsonError (code: WireErrorCode, message?: string, details?: Record<string, unknown>): Response {
  const body: Record<string, unknown> = { code, message: message ?? WIRE_ERROR_CODES[code].message }
  if (details !== undefined) body.details = details
  const headers: Record<string, string> = { 'content-type': 'application/json; charset=utf-8' }
  if (code === 'RATE_LIMITED') headers['retry-after'] = String(details?.retryAfterSec ?? NODE_DEFAULTS.gatewayRetryAfterSec)
  return new Response(JSON.stringify({ error: body }), { status: WIRE_ERROR_CODES[code].status, headers })
}

/**
 * The function a request names: from the path `/<wallet>/<project>/<function>`, or with a
 * wallet domain from the Host `<wallet>.<domain>` and the path `/<project>/<function>`. A host
 * under the domain whose label is not a wallet is an error, never the path form (a tenant's
 * origin must not serve another wallet's functions).
 */
export function routeOf (host: string | undefined, pathname: string, walletDomain: string | undefined): { wallet: string, project: string, fn: string } | { error: string } {
  const parts = pathname.split('/')
  const hostname = (host ?? '').toLowerCase().replace(/:\d+$/, '').replace(/\.$/, '')
  if (walletDomain !== undefined && hostname.endsWith(`.${walletDomain}`)) {
    const label = hostname.slice(0, -walletDomain.length - 1)
    if (!WALLET.test(label)) return { error: `the host ${hostname.slice(0, 100)} names no wallet; expected <wallet 0x…>.${walletDomain}` }
    const [, project, fn] = parts
    if (project === undefined || fn === undefined || fn === '' || !NAME.test(project) || !NAME.test(fn)) return { error: `expected a path /<project>/<function>[/rest] on ${label}.${walletDomain}` }
    return { wallet: label, project, fn }
  }
  const [, wallet, project, fn] = parts
  if (wallet === undefined || project === undefined || fn === undefined || fn === '' || !WALLET.test(wallet) || !NAME.test(project) || !NAME.test(fn)) {
    return { error: 'expected a path /<wallet 0x…>/<project>/<function>[/rest]' }
  }
  return { wallet, project, fn }
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
  // every uint field (fee, epoch, deadline, and any the Receipt type gains) as a decimal string
  return encodeReceipt(receiptRecord(domain, request, result.outputHash, result.receiptSig))
}

export function gatewayHttp (init: GatewayHttpInit, components: GatewayHttpComponents): GatewayHttp {
  const { functions, dispatch, registry } = components
  const log = components.logger.child({ component: 'peerhost:gateway:http' })
  const domain = init.domain ?? DEV_DOMAIN
  const walletDomain = init.walletDomain?.toLowerCase().replace(/^\.+|\.+$/g, '')
  const projectRates = rateLimiter()
  const chainGateway = chainGate({ perIp: init.chainRateLimit })
  const auth = components.auth ?? authGuard({}, { logger: components.logger })
  const requests = new Counter({ name: 'peerhost_gateway_requests_total', help: 'function requests, by status', labelNames: ['status'], registers: [registry] })
  const latency = new Histogram({ name: 'peerhost_gateway_request_seconds', help: 'function request latency', buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30], registers: [registry] })
  const refused = new Counter({ name: 'peerhost_gateway_refused_total', help: 'connections and requests refused before dispatch, by the limit that refused them', labelNames: ['limit'], registers: [registry] })
  const guard = ingress({ ...init.ingress, maxBodyBytes: LIMITS.maxRequestBodyBytes }, { logger: components.logger, onRefused: limit => refused.inc({ limit }) })
  const attemptsTotal = new Counter({ name: 'peerhost_gateway_attempts_total', help: 'dispatch attempts, by outcome', labelNames: ['outcome'], registers: [registry] })

  const app = new Hono()
  let stopping = false

  app.get('/_peerhost/health', c => c.json({ status: 'ok' }))
  app.get('/_peerhost/ready', c => {
    const ready = components.ready()
    return ready === true ? c.json({ ready: true }) : c.json({ ready: false, error: ready }, 503)
  })
  app.get('/_peerhost/metrics', async c => c.body(await registry.metrics(), 200, { 'content-type': registry.contentType }))
  app.get('/_peerhost/status', c => c.json(components.status()))
  const relay = sessionRelay({ ...init.sessions, domain }, { logger: components.logger })
  const streamReceipts = receiptBook()
  /** responses streaming now: a stopping gateway cuts them (server.close() waits for none) */
  const liveStreams = new Set<ServerResponse>()
  app.get('/_peerhost/receipts/:jobId', c => {
    const r = relay.receipt(c.req.param('jobId')) ?? streamReceipts.get(c.req.param('jobId'))
    return r === undefined ? jsonError('NOT_FOUND', 'no session or stream receipt for that job id on this gateway') : c.json(r)
  })
  components.routes?.(app)
  app.all('/_peerhost/*', () => jsonError('NOT_FOUND', 'no such gateway endpoint; try /_peerhost/status'))

  /**
   * The admission every call goes through, a request or a WebSocket upgrade alike: routing, the
   * deployed function, the project's rate limit, the body cap, the function's auth, then the
   * request as the function will see it (hop-by-hop and credential headers dropped).
   */
  async function admitCall (call: { host: string | undefined, url: URL, method: string, headers: Headers, declared: number, body: () => Promise<Uint8Array | undefined> }): Promise<{ ok: true, entry: FunctionEntry, project: string, fn: string, request: WireRequest } | { ok: false, response: Response }> {
    const route = routeOf(call.host, call.url.pathname, walletDomain)
    if ('error' in route) return { ok: false, response: jsonError('NOT_FOUND', route.error) }
    const { wallet, project, fn } = route
    const entry = functions.resolve(wallet, project, fn)
    if (entry === undefined) return { ok: false, response: jsonError('NOT_FOUND', `no function ${project}/${fn} is deployed for ${wallet}`) }
    const limited = projectRateLimited(entry)
    if (limited !== undefined) return { ok: false, response: limited }

    if (call.declared > LIMITS.maxRequestBodyBytes) return { ok: false, response: jsonError('PAYLOAD_TOO_LARGE', `the request body is ${call.declared} bytes; the limit is ${LIMITS.maxRequestBodyBytes}`) }
    const body = await call.body()
    if (body === undefined) return { ok: false, response: jsonError('PAYLOAD_TOO_LARGE', `the request body exceeds the limit of ${LIMITS.maxRequestBodyBytes} bytes`) }

    // who may call: before any dispatch (mesh or chain), so a refused request costs no worker anything
    const verdict = await auth.check(entry.auth, { wallet: entry.ref.wallet, project: entry.ref.project, fn: entry.ref.name, method: call.method, path: `${call.url.pathname}${call.url.search}`, headers: call.headers, body })
    if (!verdict.ok) {
      requests.inc({ status: String(WIRE_ERROR_CODES[verdict.code].status) })
      refused.inc({ limit: 'auth' })
      return { ok: false, response: jsonError(verdict.code, verdict.message) }
    }
    const strip = new Set(verdict.strip)

    const headers: Array<[string, string]> = []
    for (const [name, value] of call.headers) if (!HOP_BY_HOP.has(name) && !strip.has(name)) headers.push([name, value])
    if (headers.length > LIMITS.maxHeaders) return { ok: false, response: jsonError('HEADERS_TOO_LARGE', `${headers.length} headers; the limit is ${LIMITS.maxHeaders}`) }
    return { ok: true, entry, project, fn, request: { method: call.method.toUpperCase(), url: call.url.toString(), headers, body } }
  }

  async function invoke (c: Context): Promise<Response> {
    const started = performance.now()
    const url = new URL(c.req.url)
    const raw = c.req.raw
    const call = await admitCall({ host: c.req.header('host'), url, method: raw.method, headers: raw.headers, declared: Number(raw.headers.get('content-length') ?? '0'), body: async () => await readBody(raw, LIMITS.maxRequestBodyBytes) })
    if (!call.ok) return call.response
    const { entry, project, fn, request } = call

    const deadline = Date.now() + Math.min(entry.options.timeoutMs + 2_000, LIMITS.maxDeadlineMs)
    const secrets = components.secrets?.(entry.ref.wallet, entry.ref.project)
    const fallback = components.fallback
    const onchain = fallback !== undefined && chainGateway.asked(raw.headers)
    const client = clientKey(c.env?.incoming?.socket?.remoteAddress)
    const forcedRefusal = onchain ? chainRefused(entry, client, true, 0) : undefined
    if (forcedRefusal !== undefined) return forcedRefusal
    const hash = inputHash(request)
    const meshUntil = fallback === undefined ? deadline : meshDeadline(Date.now(), deadline, entry.options.timeoutMs, fallback.meshShare)
    const outcome = onchain
      ? { jobId: newJobId(), attempts: [], dispatchMs: 0, error: { code: 'NO_WORKER' as const, message: 'the client asked for the chain' } }
      : await dispatch({ entry, request, inputHash: hash, deadline: meshUntil, signal: raw.signal, secrets })
    // a client that left gets no chain request made on its behalf (and no money spent for nobody)
    if (fallback !== undefined && !raw.signal.aborted && (onchain || chainFallbackAllowed(outcome, deadline - Date.now()))) {
      const refusal = onchain ? undefined : chainRefused(entry, client, false, outcome.attempts.length)
      if (refusal !== undefined) return refusal
      const response = await chainAnswer(fallback, { fn: entry.ref, options: entry.options, env: entry.env, secrets, request, inputHash: hash, jobId: outcome.jobId, signal: raw.signal }, started, outcome.attempts.length, onchain)
      requests.inc({ status: String(response.status) })
      latency.observe((performance.now() - started) / 1000)
      components.recordJob({ jobId: outcome.jobId, function: `${project}/${fn}`, status: response.status, worker: 'chain', attempts: outcome.attempts.length, ms: Math.round((performance.now() - started) * 100) / 100, at: new Date().toISOString() })
      return response
    }
    for (const a of outcome.attempts) attemptsTotal.inc({ outcome: a.ok ? 'ok' : (a.code ?? 'failed') })
    if (outcome.stream !== undefined) return await streamAnswer(c, { ...outcome, stream: outcome.stream }, `${project}/${fn}`, entry, started, fallback !== undefined)

    const totalMs = performance.now() - started
    const base: Record<string, string> = {
      'x-peerhost-job': outcome.jobId,
      'x-peerhost-attempts': String(outcome.attempts.length)
    }
    let response: Response
    const result = outcome.result
    if (result === undefined) {
      const quorum = (outcome as QuorumOutcome).quorum
      const received = quorum?.received ?? []
      // a quorum without a majority: every vote that came in (most agreeing output first), in the
      // body by worker and output hash, and each signed receipt in `x-peerhost-receipts`
      const details = received.length === 0
        ? outcome.error?.details
        : { ...outcome.error?.details, received: received.map(m => ({ worker: m.request.ticket.worker, jobId: m.request.jobId, outputHash: m.result.outputHash })) }
      response = jsonError(outcome.error?.code ?? 'WORKER_FAILED', outcome.error?.message, details)
      if (quorum !== undefined && received.length > 0) {
        base['x-peerhost-quorum'] = `${Number(outcome.error?.details?.agreeing ?? 0)}/${quorum.n}`
        base['x-peerhost-receipts'] = received.map(m => receiptHeader(domain, m.request, m.result)).join(', ')
      }
      // overload is answered at once with when to come back, instead of waiting out the deadline
      if (outcome.error?.code === 'OVERLOADED') response.headers.set('retry-after', String(Math.max(1, Math.ceil((outcome.retryAfterMs ?? 1000) / 1000))))
    } else {
      base['x-peerhost-worker'] = outcome.worker?.peerId ?? ''
      if (outcome.request !== undefined) base['x-peerhost-receipt'] = receiptHeader(domain, outcome.request, result)
      const quorum = (outcome as QuorumOutcome).quorum
      if (quorum !== undefined) {
        // a quorum answer: how many agreed, and every agreeing worker's receipt (comma-separated)
        base['x-peerhost-quorum'] = `${quorum.majority.length}/${quorum.n}`
        base['x-peerhost-receipts'] = quorum.majority.map(m => receiptHeader(domain, m.request, m.result)).join(', ')
      }
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
      at: new Date().toISOString(),
      receipt: base['x-peerhost-receipt']
    }
    components.recordJob(job)
    components.logs?.record(entry.ref.wallet, project, { at: job.at, function: fn, jobId: job.jobId, status: job.status, worker: job.worker, ms: job.ms, logs: result?.logs ?? '', logsTruncated: result?.logsTruncated ?? false })
    return response
  }

  /**
   * A streamed answer: the head goes to the client at once, then the body as the worker sends it
   * (stream-relay.ts), written straight to the node response so the gateway controls the
   * backpressure, the trailer and an abnormal end.
   */
  async function streamAnswer (c: Context, outcome: Awaited<ReturnType<Dispatcher>> & { stream: NonNullable<Awaited<ReturnType<Dispatcher>>['stream']> }, name: string, entry: FunctionEntry, started: number, mesh: boolean): Promise<Response> {
    const res = c.env?.outgoing as ServerResponse | undefined
    const { stream } = outcome
    if (res === undefined || outcome.request === undefined || outcome.worker === undefined) {
      stream.done(false)
      return jsonError('INTERNAL', 'a streamed answer needs the node HTTP server')
    }
    const raw = c.req.raw
    const headers: Array<[string, string]> = stream.head.headers.filter(([name]) => !RESPONSE_DROP.has(name) && !name.startsWith(PEERHOST_HEADER_PREFIX))
    headers.push(['x-peerhost-job', outcome.jobId], ['x-peerhost-attempts', String(outcome.attempts.length)], ['x-peerhost-worker', outcome.worker.peerId], ['x-peerhost-stream', '1'])
    headers.push(['server-timing', `dispatch;dur=${outcome.dispatchMs.toFixed(2)}, head;dur=${(performance.now() - started).toFixed(2)}`])
    if (mesh) headers.push(['x-peerhost-path', 'mesh'])
    const status = stream.head.status
    liveStreams.add(res)
    res.once('close', () => liveStreams.delete(res))
    const r = await relayStream({
      res,
      answer: stream,
      request: outcome.request,
      worker: { peerId: outcome.worker.peerId, address: outcome.worker.advert.address },
      domain,
      status,
      headers,
      nullBody: [204, 205, 304].includes(status) || raw.method === 'HEAD',
      // from the node request: a Web Request may not carry the hop-by-hop TE header
      trailers: /(^|,)\s*trailers\s*(;|,|$)/i.test(String((c.env?.incoming as IncomingMessage | undefined)?.headers.te ?? '')),
      deadline: outcome.request.deadline,
      book: streamReceipts,
      log
    })
    const totalMs = performance.now() - started
    requests.inc({ status: String(status) })
    latency.observe(totalMs / 1000)
    const at = new Date().toISOString()
    components.recordJob({ jobId: outcome.jobId, function: name, status, worker: outcome.worker.peerId, attempts: outcome.attempts.length, ms: Math.round(totalMs * 100) / 100, at, ...(r.receipt.receipt !== undefined ? { receipt: encodeReceipt(r.receipt.receipt) } : {}) })
    components.logs?.record(entry.ref.wallet, entry.ref.project, { at, function: entry.ref.name, jobId: outcome.jobId, status, worker: outcome.worker.peerId, ms: Math.round(totalMs * 100) / 100, logs: r.logs, logsTruncated: r.logsTruncated })
    return RESPONSE_ALREADY_SENT
  }

  /** 429 when the project's `rateLimit` (peerhost.json) is used up on this gateway; before any dispatch. */
  function projectRateLimited (entry: FunctionEntry): Response | undefined {
    const limit = entry.rateLimit
    if (limit === undefined) return undefined
    const verdict = projectRates.take(`${entry.ref.wallet.toLowerCase()}/${entry.ref.project}`, limit)
    if (verdict.ok) return undefined
    requests.inc({ status: '429' })
    refused.inc({ limit: 'rateLimit' })
    return jsonError('RATE_LIMITED', `project ${entry.ref.project} allows ${limit.requests} requests per ${limit.perSeconds} s (its rateLimit in peerhost.json); retry in ${verdict.retryAfterSec} s`, { limit: 'rateLimit', requests: limit.requests, perSeconds: limit.perSeconds, retryAfterSec: verdict.retryAfterSec })
  }

  /**
   * 403 when the client forced the chain for a function that did not opt in, 429 when the client
   * IP's chain budget is used up; undefined (one token taken) when a chain request may be made.
   */
  function chainRefused (entry: FunctionEntry, client: string, forced: boolean, meshAttempts: number): Response | undefined {
    const verdict = chainGateway.check({ project: entry.ref.project, name: entry.ref.name, chainPath: entry.chainPath }, client, forced)
    if (verdict.ok) return undefined
    requests.inc({ status: String(WIRE_ERROR_CODES[verdict.code].status) })
    refused.inc({ limit: verdict.code === 'FORBIDDEN' ? 'chainPath' : 'chainRateLimit' })
    const response = jsonError(verdict.code, verdict.message, verdict.details)
    response.headers.set('x-peerhost-attempts', String(meshAttempts))
    return response
  }

  /** The chain's answer: the finalized output, or a wire error when the chain gave none in time. */
  async function chainAnswer (fallback: Pick<ChainFallback, 'run'>, job: Parameters<ChainFallback['run']>[0], started: number, meshAttempts: number, onchain: boolean): Promise<Response> {
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
      const failure = fallbackFailure(err, meshAttempts > 0 || !onchain)
      response = jsonError(failure.code, failure.message)
    }
    const now = performance.now()
    base['server-timing'] = `mesh;dur=${(chainStarted - started).toFixed(2)}, chain;dur=${(now - chainStarted).toFixed(2)}, total;dur=${(now - started).toFixed(2)}`
    for (const [k, v] of Object.entries(base)) response.headers.set(k, v)
    return response
  }

  /**
   * A WebSocket upgrade: the same routing, rate limits and request shape as `invoke`, then a
   * session job. The upgrade completes only when a worker's function accepted; any other answer
   * (the function's own response, or an error) goes back as plain HTTP.
   */
  async function upgrade (req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', () => {})
    if (stopping) { upgradeError(socket, 'SHUTTING_DOWN', 'the gateway is shutting down'); return }
    if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') { upgradeError(socket, 'BAD_REQUEST', 'only WebSocket upgrades are served'); return }
    if (dispatch.session === undefined) { upgradeError(socket, 'BAD_REQUEST', 'this gateway does not serve WebSocket sessions'); return }
    // the handshake is checked before any worker is asked: one that `ws` would refuse after
    // dispatch would cost a worker a session (and a paid ticket) for nobody
    const handshake = handshakeProblem(req)
    if (handshake !== undefined) { upgradeError(socket, 'BAD_REQUEST', handshake, req.headers['sec-websocket-version'] !== undefined && req.headers['sec-websocket-version'] !== '13' ? [['sec-websocket-version', '13']] : []); return }
    const url = new URL(req.url ?? '/', `http://${req.headers.host ?? 'localhost'}`)
    const given = new Headers()
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      try { given.append(req.rawHeaders[i], req.rawHeaders[i + 1]) } catch { upgradeError(socket, 'BAD_REQUEST', `the header ${req.rawHeaders[i].slice(0, 64)} is not a valid HTTP header`); return }
    }
    // an upgrade has no body (RFC 6455 §4.1); the same admission as any request otherwise
    const call = await admitCall({ host: req.headers.host, url, method: 'GET', headers: given, declared: Number(req.headers['content-length'] ?? '0'), body: async () => new Uint8Array(0) })
    if (!call.ok) { await answerUpgradeWith(socket, call.response); return }
    const { entry, project, fn } = call
    const route = { project, fn }
    // the function tells an upgrade by this header, as in Workers
    const request: WireRequest = { ...call.request, headers: [...call.request.headers, ['upgrade', 'websocket']] }
    if (request.headers.length > LIMITS.maxHeaders) { upgradeError(socket, 'HEADERS_TOO_LARGE'); return }
    // the function's own cap on concurrent sessions (peerhost.json websocket.maxSessions), per
    // gateway, held from before dispatch so a burst cannot overshoot it
    const maxForFunction = entry.websocket?.maxSessions
    const place = maxForFunction === undefined ? () => {} : relay.reserve(`${entry.ref.wallet.toLowerCase()}/${entry.ref.project}/${entry.ref.name}`, maxForFunction)
    if (place === undefined) {
      refused.inc({ limit: 'sessionsPerFunction' })
      upgradeError(socket, 'RATE_LIMITED', `${route.project}/${route.fn} holds ${maxForFunction} WebSocket sessions on this gateway, the most its peerhost.json allows (websocket.maxSessions); retry later`, [['retry-after', String(NODE_DEFAULTS.gatewayRetryAfterSec)]])
      return
    }
    const closed = new AbortController()
    const onGone = (): void => { closed.abort() }
    socket.once('close', onGone)
    const started = performance.now()
    const outcome = await dispatch.session({
      entry,
      request,
      inputHash: inputHash(request),
      deadline: Date.now() + Math.min(entry.options.timeoutMs + 2_000, LIMITS.maxDeadlineMs),
      signal: closed.signal,
      secrets: components.secrets?.(entry.ref.wallet, entry.ref.project)
    })
    socket.off('close', onGone)
    for (const a of outcome.attempts) attemptsTotal.inc({ outcome: a.ok ? 'ok' : (a.code ?? 'failed') })
    const base: Array<[string, string]> = [['x-peerhost-job', outcome.jobId], ['x-peerhost-attempts', String(outcome.attempts.length)]]
    if (outcome.worker !== undefined) base.push(['x-peerhost-worker', outcome.worker.peerId])
    const status = outcome.open !== undefined ? 101 : outcome.result?.response?.status ?? WIRE_ERROR_CODES[outcome.result?.error?.code ?? outcome.error?.code ?? 'WORKER_FAILED'].status
    requests.inc({ status: String(status) })
    components.recordJob({ jobId: outcome.jobId, function: `${route.project}/${route.fn}`, status, worker: outcome.worker?.peerId, attempts: outcome.attempts.length, ms: Math.round((performance.now() - started) * 100) / 100, at: new Date().toISOString() })
    if (outcome.open !== undefined && outcome.request !== undefined && outcome.worker !== undefined) {
      if (closed.signal.aborted || stopping) {
        outcome.open.stream.abort(new Error('the client left before the upgrade'))
        outcome.open.release()
        place()
        socket.destroy()
        return
      }
      // the function's own 101 headers (safe ones: set-cookie, its x- headers) and ours
      const own = outcome.open.headers.filter(([name]) => !RESPONSE_DROP.has(name) && !name.startsWith(PEERHOST_HEADER_PREFIX) && !name.startsWith('sec-websocket-') && name !== 'content-type')
      const open = outcome.open
      const releaseAll = (): void => { open.release(); place() }
      relay.accept(req, socket, head, { jobId: outcome.jobId, request: outcome.request, worker: outcome.worker, open: { ...open, release: releaseAll } }, [...own, ...base], entry.websocket)
      return
    }
    place()
    const result = outcome.result
    if (result?.response !== undefined) {
      const h: Array<[string, string]> = result.response.headers.filter(([name]) => !RESPONSE_DROP.has(name) && !name.startsWith(PEERHOST_HEADER_PREFIX))
      answerUpgrade(socket, result.response.status, [...h, ...base], result.response.body)
      return
    }
    const err = result?.error ?? outcome.error ?? { code: 'WORKER_FAILED' as const, message: WIRE_ERROR_CODES.WORKER_FAILED.message }
    const body = Buffer.from(JSON.stringify({ error: { code: err.code, message: err.message, ...(err.details !== undefined ? { details: err.details } : {}) } }))
    answerUpgrade(socket, WIRE_ERROR_CODES[err.code].status, [['content-type', 'application/json; charset=utf-8'], ...base], body)
  }

  /** Writes a refusal `Response` on a socket that asked to upgrade. */
  async function answerUpgradeWith (socket: Duplex, response: Response): Promise<void> {
    const headers: Array<[string, string]> = [...response.headers]
    answerUpgrade(socket, response.status, headers, new Uint8Array(await response.arrayBuffer()))
  }

  app.all('/*', invoke)
  app.onError((err, c) => {
    log.error({ err, path: c.req.path }, 'request failed')
    return jsonError('INTERNAL')
  })

  const listener = guard.guard(getRequestListener(app.fetch, { overrideGlobalObjects: false }))
  const server = createServer({
    maxHeaderSize: LIMITS.maxHeaderBytes,
    // slowloris and slow POST (GW-03): a request's headers and whole body each have a deadline
    requestTimeout: init.requestTimeoutMs ?? NODE_DEFAULTS.httpRequestTimeoutMs,
    headersTimeout: init.headersTimeoutMs ?? NODE_DEFAULTS.httpHeadersTimeoutMs,
    connectionsCheckingInterval: Math.min(NODE_DEFAULTS.httpConnectionsCheckIntervalMs, init.headersTimeoutMs ?? Infinity)
  }, listener)
  // before node:http sets up its parser: a connection over a cap is answered and closed
  server.prependListener('connection', guard.onConnection)
  // no `100 Continue` for a body the guard will refuse
  server.on('checkContinue', (req, res) => { listener(req, res); if (!res.headersSent) res.writeContinue() })
  // malformed requests and oversize headers get a JSON answer too, then the socket closes
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable) { socket.destroy(); return }
    const code: WireErrorCode = err.code === 'HPE_HEADER_OVERFLOW' ? 'HEADERS_TOO_LARGE' : 'BAD_REQUEST'
    const status = WIRE_ERROR_CODES[code].status
    // headersTimeout / requestTimeout (slowloris, slow POST: GW-03) end here too
    const message = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'the request headers or body took too long to arrive' : WIRE_ERROR_CODES[code].message
    const body = JSON.stringify({ error: { code, message } })
    endThenClose(socket, `HTTP/1.1 ${status} ${code === 'HEADERS_TOO_LARGE' ? 'Request Header Fields Too Large' : 'Bad Request'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`)
  })

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    // the ingress caps of any request hold while the upgrade is dispatched (connection caps held already)
    const release = guard.upgrade(req, socket)
    if (release === undefined) return
    upgrade(req, socket, head).catch((err: unknown) => {
      log.error({ err }, 'upgrade failed')
      upgradeError(socket, 'INTERNAL')
    }).finally(release)
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
    get sessions () { return relay.open },
    async stop () {
      stopping = true
      // open sessions hear 1001 before the listener goes
      await relay.shutdown()
      for (const res of liveStreams) res.destroy()
      server.closeIdleConnections()
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
}

/**
 * What is wrong with a WebSocket opening handshake (RFC 6455 §4.2.1), or undefined when it is one
 * `ws` will complete: GET, a `Sec-WebSocket-Key` of 16 base64 bytes, version 13.
 */
export function handshakeProblem (req: Pick<IncomingMessage, 'method' | 'headers'>): string | undefined {
  if (req.method !== 'GET') return `a WebSocket upgrade must be a GET request, not ${String(req.method).slice(0, 16)}`
  // (Node emits 'upgrade' only with "Connection: Upgrade"; without it the request is a plain one)
  const key = req.headers['sec-websocket-key']
  if (typeof key !== 'string' || !/^[A-Za-z0-9+/]{22}==$/.test(key.trim())) return 'Sec-WebSocket-Key must be 16 random bytes in base64 (24 characters ending in "==")'
  const version = req.headers['sec-websocket-version']
  if (version !== '13') return `Sec-WebSocket-Version must be 13, not ${version === undefined ? 'missing' : String(version).slice(0, 16)}`
  return undefined
}
