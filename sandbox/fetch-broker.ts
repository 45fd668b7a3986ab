/**
 * Host-brokered `fetch()`: the sandbox has no network device, so a function's fetch travels over
 * the stdio channel and this broker performs it, only to hosts on the function's `network`
 * allow-list, with limits on count (counted in the shim), bytes and time. Names are resolved here
 * and every resolved address is checked: private, loopback, link-local (169.254.169.254, the cloud
 * metadata address), CGNAT, multicast and reserved ranges are refused even when an allow-listed
 * name resolves to them, and the connection goes to the checked address (no DNS rebinding).
 * Redirects are returned to the function, not followed (each hop is then checked again).
 */
import { lookup } from 'node:dns/promises'
import http from 'node:http'
import https from 'node:https'
import { BlockList, isIP } from 'node:net'
import type { LookupFunction } from 'node:net'
import { SANDBOX_LIMITS } from './constants.ts'
import type { ShimRequest, ShimResponse } from './runtime/messages.ts'

export interface FetchBrokerInit {
  /**
   * Allows private/loopback addresses. Only tests set this (their allowed host is a local HTTP
   * server); no production path does.
   * @default false
   */
  allowPrivateAddressesForTests?: boolean
  /** @default SANDBOX_LIMITS.maxSubrequestResponseBytes (6 MiB) */
  maxResponseBytes?: number
  /** @default SANDBOX_LIMITS.maxSubrequestTotalBytes (16 MiB) */
  maxTotalBytes?: number
  /** @default SANDBOX_LIMITS.subrequestTimeoutMs (10 s) */
  timeoutMs?: number
}

/** Refused address ranges (IANA special-purpose registries, v4 and v6). */
const BLOCKED = new BlockList()
for (const [net, prefix] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16],
  ['172.16.0.0', 12], ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.88.99.0', 24], ['192.168.0.0', 16],
  ['198.18.0.0', 15], ['198.51.100.0', 24], ['203.0.113.0', 24], ['224.0.0.0', 4], ['240.0.0.0', 4]
] as const) BLOCKED.addSubnet(net, prefix, 'ipv4')
for (const [net, prefix] of [
  ['::', 128], ['::1', 128], ['fc00::', 7], ['fe80::', 10], ['fec0::', 10], ['ff00::', 8],
  ['2001:db8::', 32], ['100::', 64], ['2002::', 16], ['2001::', 32]
] as const) BLOCKED.addSubnet(net, prefix, 'ipv6')

/** True when an address may not be fetched from production (private, loopback, link-local…). */
export function isRefusedAddress (address: string): boolean {
  const family = isIP(address)
  if (family === 4) return BLOCKED.check(address, 'ipv4')
  if (family === 6) {
    const lower = address.toLowerCase()
    // IPv4-mapped / NAT64 forms carry a v4 address that must pass the v4 check
    const mapped = /^(?:::ffff:|64:ff9b::)(\d+\.\d+\.\d+\.\d+)$/.exec(lower)
    if (mapped !== null) return BLOCKED.check(mapped[1], 'ipv4')
    if (/^::ffff:[0-9a-f]{1,4}:[0-9a-f]{1,4}$/.test(lower)) return true
    return BLOCKED.check(lower, 'ipv6')
  }
  return true
}

/** Whether `host` (lower-case, no port) matches an allow-list entry (`example.com`, `*.example.com`). */
export function hostAllowed (host: string, port: string, allow: readonly string[]): boolean {
  for (const raw of allow) {
    const entry = raw.trim().toLowerCase()
    let h = entry
    let p: string | undefined
    const m = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(entry)
    if (m !== null) { h = m[1]; p = m[2] }
    h = h.replace(/^\[|\]$/g, '')
    if (p !== undefined && p !== port) continue
    if (h === host) return true
    if (h.startsWith('*.') && host.endsWith(h.slice(1)) && host.length > h.length - 1) return true
  }
  return false
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'host', 'content-length'])

export class FetchRefused extends Error {}

/** Per-execution fetch: bound to one function's allow-list and deadline. */
export type BrokeredFetch = (request: ShimRequest) => Promise<ShimResponse>

export interface FetchBroker {
  forExecution: (allow: readonly string[], deadline: number) => BrokeredFetch
}

export function fetchBroker (init: FetchBrokerInit = {}): FetchBroker {
  const allowPrivate = init.allowPrivateAddressesForTests === true
  const maxResponseBytes = init.maxResponseBytes ?? SANDBOX_LIMITS.maxSubrequestResponseBytes
  const maxTotalBytes = init.maxTotalBytes ?? SANDBOX_LIMITS.maxSubrequestTotalBytes
  const perFetchTimeout = init.timeoutMs ?? SANDBOX_LIMITS.subrequestTimeoutMs

  return {
    forExecution (allow, deadline) {
      let totalBytes = 0
      return async (req) => {
        let url: URL
        try { url = new URL(req.url) } catch { throw new FetchRefused('fetch refused: invalid URL') }
        if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new FetchRefused(`fetch refused: only http and https are brokered, not ${url.protocol}`)
        if (url.username !== '' || url.password !== '') throw new FetchRefused('fetch refused: credentials in URLs are not allowed')
        const host = url.hostname.toLowerCase().replace(/^\[|\]$/g, '')
        const port = url.port !== '' ? url.port : (url.protocol === 'https:' ? '443' : '80')
        if (!hostAllowed(host, port, allow)) throw new FetchRefused(`fetch refused: ${host} is not in this function's network allow-list`)
        const timeout = Math.min(perFetchTimeout, deadline - Date.now())
        if (timeout <= 0) throw new FetchRefused('fetch refused: the execution deadline has passed')

        let address: string
        let family: number
        if (isIP(host) !== 0) {
          address = host
          family = isIP(host)
        } else {
          let addrs
          try {
            addrs = await lookup(host, { all: true, verbatim: true })
          } catch {
            throw new FetchRefused(`fetch failed: ${host} did not resolve`)
          }
          const ok = addrs.filter(a => allowPrivate || !isRefusedAddress(a.address))
          if (ok.length === 0) throw new FetchRefused(`fetch refused: ${host} resolves only to private or reserved addresses`)
          address = ok[0].address
          family = ok[0].family
        }
        if (!allowPrivate && isRefusedAddress(address)) throw new FetchRefused(`fetch refused: ${host} is a private or reserved address`)

        const headers: Record<string, string> = {}
        for (const [k, v] of req.headers) {
          const name = k.toLowerCase()
          if (HOP_BY_HOP.has(name)) continue
          headers[name] = headers[name] === undefined ? v : `${headers[name]}, ${v}`
        }
        const pinned: LookupFunction = (_h, opts, cb) => {
          if ((opts as any)?.all === true) (cb as any)(null, [{ address, family }])
          else cb(null, address, family)
        }
        const mod = url.protocol === 'https:' ? https : http
        return await new Promise<ShimResponse>((resolve, reject) => {
          const r = mod.request(url, { method: req.method, headers, lookup: pinned, timeout, agent: false }, (res) => {
            const chunks: Buffer[] = []
            let size = 0
            res.on('data', (c: Buffer) => {
              size += c.byteLength
              totalBytes += c.byteLength
              if (size > maxResponseBytes || totalBytes > maxTotalBytes) {
                res.destroy()
                reject(new FetchRefused(`fetch failed: the response exceeded ${size > maxResponseBytes ? maxResponseBytes : maxTotalBytes} bytes`))
                return
              }
              chunks.push(c)
            })
            res.on('end', () => {
              const out: Array<[string, string]> = []
              for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) {
                const name = res.rawHeaders[i].toLowerCase()
                if (HOP_BY_HOP.has(name)) continue
                out.push([name, res.rawHeaders[i + 1]])
              }
              resolve({ status: res.statusCode ?? 502, headers: out, body: new Uint8Array(Buffer.concat(chunks)) })
            })
            res.on('error', () => { reject(new FetchRefused('fetch failed: the connection broke')) })
          })
          const timer = setTimeout(() => { r.destroy(); reject(new FetchRefused(`fetch failed: no response within ${timeout} ms`)) }, timeout)
          r.on('close', () => { clearTimeout(timer) })
          r.on('timeout', () => { r.destroy(); reject(new FetchRefused(`fetch failed: no response within ${timeout} ms`)) })
          r.on('error', (err: any) => { reject(new FetchRefused(`fetch failed: ${err?.code ?? 'connection error'}`)) })
          r.end(req.body.byteLength > 0 ? req.body : undefined)
        })
      }
    }
  }
}
