/**
 * Host-brokered `fetch()`: the sandbox has no network device, so a function's fetch travels over
 * the stdio channel and this broker performs it, only to hosts on the function's `network`
 * allow-list, with limits on count, concurrency, bytes and time, all counted here on the host. Names are resolved here
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

/**
 * Decides whether the broker may connect to a resolved address (the DNS answer, or the literal IP
 * of the URL). The production filter is `isRefusedAddress` (refuse private, loopback, link-local,
 * metadata and reserved space, also when embedded in IPv6); a test that fetches from its own
 * loopback server injects a permissive one as a component. There is no flag for it.
 */
export type AddressFilter = (address: string) => 'allow' | 'refuse'

/** The production address filter. */
export const publicAddressesOnly: AddressFilter = (address) => isRefusedAddress(address) ? 'refuse' : 'allow'

export interface FetchBrokerInit {
  /** @default SANDBOX_LIMITS.maxSubrequestResponseBytes (6 MiB) */
  maxResponseBytes?: number
  /** @default SANDBOX_LIMITS.maxSubrequestTotalBytes (16 MiB) */
  maxTotalBytes?: number
  /** @default SANDBOX_LIMITS.subrequestTimeoutMs (10 s) */
  timeoutMs?: number
  /** fetches per execution, counted here on the host. @default SANDBOX_LIMITS.maxSubrequests (50) */
  maxSubrequests?: number
  /** fetches of one execution in flight at once; more wait. @default SANDBOX_LIMITS.maxConcurrentSubrequests (6) */
  maxConcurrentSubrequests?: number
}

export interface FetchBrokerComponents {
  /** @default publicAddressesOnly */
  addressFilter?: AddressFilter
}

/** Refused IPv4 ranges (IANA special-purpose registry). */
const BLOCKED_V4 = new BlockList()
for (const [net, prefix] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16],
  ['172.16.0.0', 12], ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.88.99.0', 24], ['192.168.0.0', 16],
  ['198.18.0.0', 15], ['198.51.100.0', 24], ['203.0.113.0', 24], ['224.0.0.0', 4], ['240.0.0.0', 4]
] as const) BLOCKED_V4.addSubnet(net, prefix, 'ipv4')

/**
 * Refused IPv6 ranges that carry no IPv4 address: unspecified, loopback, ULA, link-local,
 * site-local, multicast, documentation, discard, ORCHID, and the benchmarking range.
 */
const BLOCKED_V6 = new BlockList()
for (const [net, prefix] of [
  ['::', 128], ['::1', 128], ['fc00::', 7], ['fe80::', 10], ['fec0::', 10], ['ff00::', 8],
  ['2001:db8::', 32], ['100::', 64], ['2001:10::', 28], ['2001:20::', 28], ['2001:2::', 48], ['3fff::', 20], ['5f00::', 16]
] as const) BLOCKED_V6.addSubnet(net, prefix, 'ipv6')

/** Parses an IPv6 address (any textual form, incl. a dotted IPv4 tail) into 8 16-bit groups. */
export function ipv6Groups (address: string): number[] | undefined {
  let a = address.toLowerCase()
  const zone = a.indexOf('%')
  if (zone >= 0) a = a.slice(0, zone)
  if (isIP(a) !== 6) return undefined
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(a)
  if (dotted !== null) {
    const p = dotted[1].split('.').map(Number)
    a = a.slice(0, -dotted[1].length) + `${((p[0] << 8) | p[1]).toString(16)}:${((p[2] << 8) | p[3]).toString(16)}`
  }
  const halves = a.split('::')
  const head = halves[0] === '' ? [] : halves[0].split(':')
  const tail = halves.length > 1 && halves[1] !== '' ? halves[1].split(':') : []
  const fill = halves.length > 1 ? 8 - head.length - tail.length : 0
  const groups = [...head, ...Array<string>(fill).fill('0'), ...tail].map(g => parseInt(g, 16))
  return groups.length === 8 && groups.every(g => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : undefined
}

const v4 = (hi: number, lo: number): string => `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`

/**
 * The IPv4 addresses an IPv6 address carries in a form some network will route to that IPv4
 * host: IPv4-compatible `::/96`, IPv4-mapped `::ffff:0:0/96`, IPv4-translated `::ffff:0:0:0/96`,
 * NAT64 `64:ff9b::/96` and the local-use `64:ff9b:1::/48` (RFC 8215: the v4 address is in the
 * last 32 bits as with the well-known prefix, the usual layout for /96 local prefixes; an
 * operator's other layouts are refused outright below), 6to4 `2002::/16` (bits 16–47) and Teredo
 * `2001::/32` (the server at bits 32–63, the client as the inverted last 32 bits).
 */
export function embeddedIPv4 (address: string): string[] {
  const g = ipv6Groups(address)
  if (g === undefined) return []
  const out: string[] = []
  const zeros = (from: number, to: number): boolean => g.slice(from, to).every(x => x === 0)
  if (zeros(0, 6)) out.push(v4(g[6], g[7])) // ::a.b.c.d (deprecated compatible form)
  if (zeros(0, 5) && g[5] === 0xffff) out.push(v4(g[6], g[7])) // ::ffff:a.b.c.d
  if (zeros(0, 4) && g[4] === 0xffff && g[5] === 0) out.push(v4(g[6], g[7])) // ::ffff:0:a.b.c.d
  if (g[0] === 0x64 && g[1] === 0xff9b) out.push(v4(g[6], g[7])) // 64:ff9b::/96 and 64:ff9b:1::/48
  if (g[0] === 0x2002) out.push(v4(g[1], g[2]))
  if (g[0] === 0x2001 && g[1] === 0) { out.push(v4(g[2], g[3])); out.push(v4(g[6] ^ 0xffff, g[7] ^ 0xffff)) }
  return out
}

/** True when an address may not be fetched from production (private, loopback, link-local…). */
export function isRefusedAddress (address: string): boolean {
  const family = isIP(address)
  if (family === 4) return BLOCKED_V4.check(address, 'ipv4')
  if (family !== 6) return true
  const g = ipv6Groups(address)
  if (g === undefined) return true
  // any IPv4 an IPv6 address embeds must itself pass the IPv4 check
  if (embeddedIPv4(address).some(a => BLOCKED_V4.check(a, 'ipv4'))) return true
  // NAT64 local-use prefixes may place the IPv4 address elsewhere (RFC 6052 layouts): too many
  // forms to check each; a function has no reason to use them. Same for IPv4-compatible and
  // IPv4-translated forms, which no public host needs.
  if (g[0] === 0x64 && g[1] === 0xff9b && g[2] === 1) return true
  if (g.slice(0, 5).every(x => x === 0)) return true
  if (g.slice(0, 4).every(x => x === 0) && g[4] === 0xffff && g[5] === 0) return true
  const canonical = g.map(x => x.toString(16)).join(':')
  return BLOCKED_V6.check(canonical, 'ipv6')
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
export interface BrokeredFetch {
  (request: ShimRequest): Promise<ShimResponse>
  /** fetches this execution started (refused ones over the cap not counted) */
  stats: { count: number, peakInFlight: number }
}

export interface FetchBroker {
  forExecution: (allow: readonly string[], deadline: number) => BrokeredFetch
}

/**
 * Creates the broker. Every limit is counted here, on the host, per execution: the shim's own
 * count only gives a function a clear error early; a function that escapes its realm and writes
 * `fetch` frames to the channel itself meets the same caps.
 */
export function fetchBroker (init: FetchBrokerInit = {}, components: FetchBrokerComponents = {}): FetchBroker {
  const filter = components.addressFilter ?? publicAddressesOnly
  const maxResponseBytes = init.maxResponseBytes ?? SANDBOX_LIMITS.maxSubrequestResponseBytes
  const maxTotalBytes = init.maxTotalBytes ?? SANDBOX_LIMITS.maxSubrequestTotalBytes
  const perFetchTimeout = init.timeoutMs ?? SANDBOX_LIMITS.subrequestTimeoutMs
  const maxSubrequests = init.maxSubrequests ?? SANDBOX_LIMITS.maxSubrequests
  const maxConcurrent = init.maxConcurrentSubrequests ?? SANDBOX_LIMITS.maxConcurrentSubrequests

  return {
    forExecution (allow, deadline) {
      let totalBytes = 0
      let count = 0
      let inFlight = 0
      const brokered: BrokeredFetch = async (req) => {
        if (count >= maxSubrequests) throw new FetchRefused(`fetch refused: at most ${maxSubrequests} subrequests per execution`)
        count++
        brokered.stats.count = count
        // past the concurrency cap a fetch waits for a slot (the count cap bounds the queue)
        if (inFlight >= maxConcurrent) await new Promise<void>(resolve => { waiting.push(resolve) })
        else inFlight++
        brokered.stats.peakInFlight = Math.max(brokered.stats.peakInFlight, inFlight)
        try {
          return await one(req)
        } finally {
          const next = waiting.shift()
          if (next !== undefined) next()
          else inFlight--
        }
      }
      const waiting: Array<() => void> = []
      brokered.stats = { count: 0, peakInFlight: 0 }
      const one = async (req: ShimRequest): Promise<ShimResponse> => {
        let url: URL
        try { url = new URL(req.url) } catch { throw new FetchRefused('fetch refused: invalid URL') }
        if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new FetchRefused(`fetch refused: only http and https are brokered, not ${url.protocol}`)
        if (url.username !== '' || url.password !== '') throw new FetchRefused('fetch refused: credentials in URLs are not allowed')
        const host = url.hostname.toLowerCase().replace(/^\[|\]$/g, '')
        const port = url.port !== '' ? url.port : (url.protocol === 'https:' ? '443' : '80')
        if (!hostAllowed(host, port, allow)) throw new FetchRefused(`fetch refused: ${host} is not in this function's network allow-list`)
        const timeout = Math.min(perFetchTimeout, deadline - Date.now())
        if (timeout <= 0) throw new FetchRefused('fetch refused: the execution deadline has passed')
        if (totalBytes >= maxTotalBytes) throw new FetchRefused(`fetch refused: this execution already received ${maxTotalBytes} bytes from fetches`)

        let address: string
        let family: number
        if (isIP(host) !== 0) {
          address = host
          family = isIP(host)
          if (filter(address) !== 'allow') throw new FetchRefused(`fetch refused: ${host} is a private or reserved address`)
        } else {
          let addrs
          try {
            addrs = await lookup(host, { all: true, verbatim: true })
          } catch {
            throw new FetchRefused(`fetch failed: ${host} did not resolve`)
          }
          // the connection goes to this checked address (pinned below): no second lookup to rebind
          const ok = addrs.filter(a => filter(a.address) === 'allow')
          if (ok.length === 0) throw new FetchRefused(`fetch refused: ${host} resolves only to private or reserved addresses`)
          address = ok[0].address
          family = ok[0].family
        }

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
      return brokered
    }
  }
}
