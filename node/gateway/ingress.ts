/**
 * The gateway's ingress guard: what a client may hold before any route runs (GW-02, GW-03, GW-07).
 * It sits between node:http and the router as two small hooks, so the WebSocket upgrade path can
 * use the same checks:
 *
 * - `onConnection`: open connections, globally and per client IP. A connection over a cap gets
 *   `503 OVERLOADED` JSON with `Retry-After` and is closed at once (answered rather than silently
 *   dropped, so a client behind a busy NAT learns why); it never reaches the router.
 * - `upgrade`: the same per-request checks for a WebSocket upgrade (which node:http hands to its
 *   own event, past `guard`), held while the upgrade is dispatched; an open session then counts
 *   as the connection it is.
 * - `guard`: per request, in this order: the per-IP rate limit (if set), concurrent requests
 *   globally and per IP (`429 RATE_LIMITED`, `Retry-After`, `details.limit` names the limit), and
 *   a declared `Content-Length` above the body cap (`413`, then the socket is destroyed without
 *   reading the body). Any 413 a route answers later (an endless chunked body), and any answer
 *   given before the request body ended, also closes the connection: the unread rest of a body
 *   is never drained.
 *
 * Client IP: the socket's peer address (IPv4-mapped IPv6 as IPv4; IPv6 by its /64, which one host
 * gets for free). No forwarding header is trusted: a gateway behind a proxy sees the proxy.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { isIPv6, type Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { WIRE_ERROR_CODES, type WireErrorCode } from '#protocol'
import { NODE_DEFAULTS } from '../constants.ts'
import type { Logger } from '../logger.ts'
import { fixedRateLimiter, type RateLimit } from './rate-limit.ts'

export interface IngressInit {
  /** @default NODE_DEFAULTS.gatewayMaxConnections */
  maxConnections?: number
  /** @default NODE_DEFAULTS.gatewayMaxConnectionsPerIp */
  maxConnectionsPerIp?: number
  /** @default NODE_DEFAULTS.gatewayMaxRequests */
  maxRequests?: number
  /** @default NODE_DEFAULTS.gatewayMaxRequestsPerIp */
  maxRequestsPerIp?: number
  /** largest declared body of any route; @default LIMITS.maxRequestBodyBytes (set by the caller) */
  maxBodyBytes: number
  /** requests per client IP per window; none = unlimited; @default none */
  ipRateLimit?: RateLimit
}

export interface Ingress {
  /** for `server.prependListener('connection', …)` */
  onConnection: (socket: Socket) => void
  /** wraps the router: requests over a limit are answered here */
  guard: (next: (req: IncomingMessage, res: ServerResponse) => void) => (req: IncomingMessage, res: ServerResponse) => void
  /**
   * For `server.on('upgrade')`: the per-request checks of `guard`. Refused: the answer is written
   * and the socket closed, and undefined is returned; admitted: call the release when the upgrade
   * is answered (101 or an error).
   */
  upgrade: (req: IncomingMessage, socket: Duplex) => (() => void) | undefined
  /** what is held now (status page, tests) */
  stats: () => { connections: number, requests: number }
}

const REFUSED = Symbol('peerhost.refused')

/** The rate-limit key of a peer address: IPv4 as is, IPv6 by its /64. */
export function clientKey (address: string | undefined): string {
  if (address === undefined) return 'unknown'
  const a = address.toLowerCase()
  if (a.startsWith('::ffff:') && a.includes('.')) return a.slice(7)
  if (!isIPv6(a)) return a
  const [head, tail = ''] = a.split('::')
  const left = head === '' ? [] : head.split(':')
  const right = a.includes('::') ? (tail === '' ? [] : tail.split(':')) : []
  const groups = a.includes('::') ? [...left, ...Array(8 - left.length - right.length).fill('0'), ...right] : left
  return `${groups.slice(0, 4).map(g => g.replace(/^0+(?=.)/, '')).join(':')}::/64`
}

/** Bytes and time a refused body may still flow after the answer, so the client can read it before the close. */
const LINGER_BYTES = 64 * 1024
const LINGER_MS = 1_000

/**
 * Closes after an answer without draining the body: our side ends (FIN) and the socket is
 * destroyed once LINGER_BYTES more arrive or LINGER_MS pass. Destroying at once would reset the
 * connection while the client is still sending, and a reset can discard the answer before the
 * client reads it.
 */
/**
 * Writes a final answer and closes: the socket is destroyed once the answer is handed to the
 * kernel (which still delivers it), or after a second if the client does not even let it be
 * written. A client that never reads and never closes must not keep the descriptor, nor count
 * against the connection caps (GW-04: 1,000 non-reading sockets).
 */
export function endThenClose (socket: Duplex, data: string | Uint8Array): void {
  socket.end(data, () => socket.destroy())
  const timer = setTimeout(() => socket.destroy(), 1_000)
  timer.unref()
  socket.once('close', () => clearTimeout(timer))
}

export function lingerClose (socket: Socket): void {
  if (socket.destroyed) return
  const start = socket.bytesRead
  const until = Date.now() + LINGER_MS
  socket.end()
  const timer = setInterval(() => {
    if (socket.destroyed || socket.bytesRead - start > LINGER_BYTES || Date.now() > until) {
      clearInterval(timer)
      socket.destroy()
    }
  }, 5)
  timer.unref()
}

function errorBody (code: WireErrorCode, message: string, details?: Record<string, string | number>): string {
  return JSON.stringify({ error: details === undefined ? { code, message } : { code, message, details } })
}

export interface IngressComponents {
  logger: Logger
  /** called with the limit's name each time a connection or request is refused (metrics) */
  onRefused?: (limit: string) => void
}

export function ingress (init: IngressInit, components: IngressComponents): Ingress {
  const log = components.logger.child({ component: 'peerhost:gateway:ingress' })
  const maxConnections = init.maxConnections ?? NODE_DEFAULTS.gatewayMaxConnections
  const maxConnectionsPerIp = init.maxConnectionsPerIp ?? NODE_DEFAULTS.gatewayMaxConnectionsPerIp
  const maxRequests = init.maxRequests ?? NODE_DEFAULTS.gatewayMaxRequests
  const maxRequestsPerIp = init.maxRequestsPerIp ?? NODE_DEFAULTS.gatewayMaxRequestsPerIp
  const retryAfter = String(NODE_DEFAULTS.gatewayRetryAfterSec)
  const ipRate = init.ipRateLimit === undefined ? undefined : fixedRateLimiter(init.ipRateLimit)
  const connectionsByIp = new Map<string, number>()
  const requestsByIp = new Map<string, number>()
  let connections = 0
  let requests = 0

  const dec = (map: Map<string, number>, key: string): void => {
    const n = (map.get(key) ?? 1) - 1
    if (n <= 0) map.delete(key)
    else map.set(key, n)
  }

  function refuseConnection (socket: Socket, limit: string, value: number): void {
    (socket as any)[REFUSED] = true
    components.onRefused?.(limit)
    const body = errorBody('OVERLOADED', `this gateway holds its limit of ${value} open connections${limit.endsWith('PerIp') ? ' from your address' : ''}; retry later`, { limit, value })
    endThenClose(socket, `HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json; charset=utf-8\r\nretry-after: ${retryAfter}\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`)
    log.debug({ limit, remote: socket.remoteAddress }, 'connection refused')
  }

  function answer (req: IncomingMessage, res: ServerResponse, code: WireErrorCode, message: string, details: Record<string, string | number>, close: boolean): void {
    components.onRefused?.(String(details.limit))
    const body = errorBody(code, message, details)
    const headers: Record<string, string | number> = { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) }
    if (code === 'RATE_LIMITED') headers['retry-after'] = details.retryAfterSec ?? retryAfter
    // no `connection: close` header: node would then destroy the socket itself right after the
    // answer (a reset while the client sends); lingerClose closes it instead
    res.writeHead(WIRE_ERROR_CODES[code].status, headers)
    // a body still arriving is not drained (node would read it all to keep the connection)
    res.end(body, () => { if (close || !req.complete) lingerClose(req.socket) })
  }

  interface Refusal { code: WireErrorCode, message: string, details: Record<string, string | number>, close: boolean }

  /** The per-request limits, in order; a refusal or undefined. */
  function check (req: IncomingMessage, ip: string): Refusal | undefined {
    if (ipRate !== undefined) {
      const verdict = ipRate.take(ip)
      if (!verdict.ok) {
        const { requests: n, perSeconds: s } = init.ipRateLimit!
        return { code: 'RATE_LIMITED', message: `your address sent more than ${n} requests in ${s} s to this gateway (ipRateLimit); retry in ${verdict.retryAfterSec} s`, details: { limit: 'ipRateLimit', requests: n, perSeconds: s, retryAfterSec: verdict.retryAfterSec }, close: false }
      }
    }
    if (requests >= maxRequests) return { code: 'RATE_LIMITED', message: `this gateway is handling its limit of ${maxRequests} requests at once (maxRequests); retry shortly`, details: { limit: 'maxRequests', value: maxRequests }, close: false }
    if ((requestsByIp.get(ip) ?? 0) >= maxRequestsPerIp) return { code: 'RATE_LIMITED', message: `your address has its limit of ${maxRequestsPerIp} requests in flight at this gateway (maxRequestsPerIp); retry when one ends`, details: { limit: 'maxRequestsPerIp', value: maxRequestsPerIp }, close: false }
    const declared = Number(req.headers['content-length'] ?? '0')
    if (declared > init.maxBodyBytes) {
      return { code: 'PAYLOAD_TOO_LARGE', message: `the request body is ${declared} bytes; the limit is ${init.maxBodyBytes}`, details: { limit: 'maxRequestBodyBytes', value: init.maxBodyBytes, declared }, close: true }
    }
    return undefined
  }

  /** Counts a request in flight; the release is idempotent. */
  function hold (ip: string): () => void {
    requests++
    requestsByIp.set(ip, (requestsByIp.get(ip) ?? 0) + 1)
    let done = false
    return () => {
      if (done) return
      done = true
      requests--
      dec(requestsByIp, ip)
    }
  }

  return {
    onConnection (socket) {
      const ip = clientKey(socket.remoteAddress)
      if (connections >= maxConnections) return refuseConnection(socket, 'maxConnections', maxConnections)
      if ((connectionsByIp.get(ip) ?? 0) >= maxConnectionsPerIp) return refuseConnection(socket, 'maxConnectionsPerIp', maxConnectionsPerIp)
      connections++
      connectionsByIp.set(ip, (connectionsByIp.get(ip) ?? 0) + 1)
      socket.once('close', () => { connections--; dec(connectionsByIp, ip) })
    },
    guard: (next) => (req, res) => {
      const socket = req.socket
      // a refused connection's request never reaches a route (its 503 is already on the wire)
      if ((socket as any)[REFUSED] === true) { socket.destroy(); return }
      const ip = clientKey(socket.remoteAddress)
      const refusal = check(req, ip)
      if (refusal !== undefined) return answer(req, res, refusal.code, refusal.message, refusal.details, refusal.close)
      const release = hold(ip)
      res.once('close', release)
      res.once('finish', () => {
        release()
        // a route's 413 (an endless chunked body, a smaller per-route cap), or any answer given
        // before the body ended (a 401 or 404 that never reads it): close rather than drain the rest
        if (res.statusCode === 413 || !req.complete) lingerClose(socket)
      })
      next(req, res)
    },
    upgrade (req, socket) {
      if ((req.socket as any)[REFUSED] === true) { socket.destroy(); return undefined }
      const ip = clientKey(req.socket.remoteAddress)
      const refusal = check(req, ip)
      if (refusal !== undefined) {
        components.onRefused?.(String(refusal.details.limit))
        const body = errorBody(refusal.code, refusal.message, refusal.details)
        const retry = refusal.code === 'RATE_LIMITED' ? `retry-after: ${refusal.details.retryAfterSec ?? retryAfter}\r\n` : ''
        if (socket.writable) socket.end(`HTTP/1.1 ${WIRE_ERROR_CODES[refusal.code].status} Not Upgraded\r\ncontent-type: application/json; charset=utf-8\r\n${retry}content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`)
        else socket.destroy()
        return undefined
      }
      return hold(ip)
    },
    stats: () => ({ connections, requests })
  }
}
