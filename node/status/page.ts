/**
 * The status page at `/_peerhost/` (gateways, and other nodes on their admin port): one HTML page
 * with live charts of requests per second and latency percentiles (uPlot, served from its npm
 * package by this node — no CDN), the node's workers with load and latency, recent jobs with their
 * receipts and the deployed projects. The page reads `/_peerhost/series` once and then follows
 * `/_peerhost/events` (server-sent events: one point and the node's status JSON per second).
 *
 * Routes are plain `Request → Response` so the gateway (hono) and the admin server (node:http) mount
 * the same thing. The page's scripts are files, never inline, so a strict Content-Security-Policy
 * (`script-src 'self'`) holds, and they render every value with textContent: a worker or a status
 * field carrying markup is shown as text, never run.
 */
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { NODE_DEFAULTS } from '../constants.ts'
import type { Logger } from '../logger.ts'

export interface StatusPageInit {
  /** what the page calls this node ("gateway", "worker", "bootstrap"); @default 'node' */
  role?: string
  /** @default NODE_DEFAULTS.statusSeriesSeconds */
  seriesSeconds?: number
  /** @default NODE_DEFAULTS.statusTickMs */
  tickMs?: number
  /** @default NODE_DEFAULTS.statusMaxSamples */
  maxSamples?: number
  /** @default NODE_DEFAULTS.statusMaxStreams */
  maxStreams?: number
}

export interface StatusPageComponents {
  /** the node's `/_peerhost/status` JSON, sent with every point */
  status: () => Record<string, unknown>
  logger?: Logger
  /**
   * uPlot's script and stylesheet; @default read from the `uplot` npm package, or none when it is
   * not installed (the page then draws its charts with its own small canvas plotter)
   */
  chartLibrary?: { js: string, css: string } | null
}

/** One second of requests: how many, and their latency percentiles (null when there were none). */
export interface StatusPoint {
  /** unix seconds of the start of the second */
  t: number
  rps: number
  p50: number | null
  p95: number | null
  p99: number | null
}

export interface StatusPage {
  /** true for the paths this page serves (mount it before a catch-all) */
  owns: (path: string) => boolean
  /** the page's answer for one of its paths, 404 JSON for others */
  handle: (req: Request) => Response
  /** records one finished request's latency */
  observe: (ms: number, atMs?: number) => void
  /** the charted series, oldest first, ending with the last complete second */
  series: (nowMs?: number) => StatusPoint[]
  /** ends every open event stream (so the HTTP server can close) and stops the ticker */
  close: () => void
}

const PREFIX = '/_peerhost'
const UI = new URL('./ui/', import.meta.url)
const SECURITY_HEADERS = {
  // the page's own files only: an injected <script> or inline handler would not run
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer'
}

function defaultChartLibrary (): { js: string, css: string } | null {
  try {
    const req = createRequire(import.meta.url)
    return {
      js: readFileSync(req.resolve('uplot/dist/uPlot.iife.min.js'), 'utf8'),
      css: readFileSync(req.resolve('uplot/dist/uPlot.min.css'), 'utf8')
    }
  } catch {
    return null
  }
}

function percentile (sorted: number[], p: number): number {
  // nearest rank: the smallest value with at least p of the samples at or below it
  const rank = Math.max(1, Math.ceil(p * sorted.length))
  return Math.round(sorted[rank - 1] * 100) / 100
}

function json (body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' } })
}

export function statusPage (init: StatusPageInit, components: StatusPageComponents): StatusPage {
  const role = init.role ?? 'node'
  const seriesSeconds = init.seriesSeconds ?? NODE_DEFAULTS.statusSeriesSeconds
  const tickMs = init.tickMs ?? NODE_DEFAULTS.statusTickMs
  const maxSamples = init.maxSamples ?? NODE_DEFAULTS.statusMaxSamples
  const maxStreams = init.maxStreams ?? NODE_DEFAULTS.statusMaxStreams
  const log = components.logger?.child({ component: 'peerhost:status' })
  const chart = components.chartLibrary === undefined ? defaultChartLibrary() : components.chartLibrary
  const html = readFileSync(new URL('index.html', UI), 'utf8')
    .replace('{{ROLE}}', role.replace(/[^a-z0-9-]/gi, ''))
    .replace('{{CHARTS}}', chart === null ? 'builtin' : 'uplot')
    .replace('{{UPLOT_CSS}}', chart === null ? '' : `<link rel="stylesheet" href="${PREFIX}/ui/uplot.css">`)
    .replace('{{UPLOT_JS}}', chart === null ? '' : `<script src="${PREFIX}/ui/uplot.js"></script>`)
  const files: Record<string, { type: string, body: string }> = {
    [`${PREFIX}/ui/app.js`]: { type: 'text/javascript; charset=utf-8', body: readFileSync(new URL('app.js', UI), 'utf8') },
    [`${PREFIX}/ui/style.css`]: { type: 'text/css; charset=utf-8', body: readFileSync(new URL('style.css', UI), 'utf8') }
  }
  if (chart !== null) {
    files[`${PREFIX}/ui/uplot.js`] = { type: 'text/javascript; charset=utf-8', body: chart.js }
    files[`${PREFIX}/ui/uplot.css`] = { type: 'text/css; charset=utf-8', body: chart.css }
  }

  // a ring of (time, latency) samples: bounded memory however many requests arrive
  const at = new Float64Array(maxSamples)
  const ms = new Float32Array(maxSamples)
  let next = 0
  let count = 0

  function series (nowMs = Date.now()): StatusPoint[] {
    const end = Math.floor(nowMs / 1000)
    const start = end - seriesSeconds
    const buckets: number[][] = Array.from({ length: seriesSeconds }, () => [])
    for (let i = 0; i < count; i++) {
      const s = Math.floor(at[i] / 1000)
      if (s >= start && s < end) buckets[s - start].push(ms[i])
    }
    return buckets.map((b, i) => {
      b.sort((x, y) => x - y)
      return { t: start + i, rps: b.length, p50: b.length === 0 ? null : percentile(b, 0.5), p95: b.length === 0 ? null : percentile(b, 0.95), p99: b.length === 0 ? null : percentile(b, 0.99) }
    })
  }

  const streams = new Set<ReadableStreamDefaultController<Uint8Array>>()
  let ticker: ReturnType<typeof setInterval> | undefined
  const encoder = new TextEncoder()

  function safeStatus (): Record<string, unknown> {
    try {
      return components.status()
    } catch (err) {
      log?.warn({ err: (err as Error)?.message }, 'status failed for the status page')
      return { error: { code: 'INTERNAL', message: 'status unavailable' } }
    }
  }

  function send (c: ReadableStreamDefaultController<Uint8Array>, event: string, data: unknown): void {
    try {
      c.enqueue(encoder.encode(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`))
    } catch {
      streams.delete(c)
    }
  }

  function tick (): void {
    const now = Date.now()
    const points = series(now)
    const payload = { point: points[points.length - 1], status: safeStatus() }
    for (const c of streams) send(c, 'tick', payload)
  }

  function drop (c: ReadableStreamDefaultController<Uint8Array>): void {
    streams.delete(c)
    if (streams.size === 0 && ticker !== undefined) {
      clearInterval(ticker)
      ticker = undefined
    }
  }

  function events (): Response {
    if (streams.size >= maxStreams) return json({ error: { code: 'BUSY', message: `at most ${maxStreams} status streams are open on this node; close one or poll /_peerhost/series` } }, 503)
    let mine: ReadableStreamDefaultController<Uint8Array> | undefined
    const body = new ReadableStream<Uint8Array>({
      start (c) {
        mine = c
        streams.add(c)
        c.enqueue(encoder.encode(`retry: ${tickMs * 2}\n\n`))
        send(c, 'snapshot', { role, series: series(), status: safeStatus() })
        ticker ??= setInterval(tick, tickMs)
      },
      cancel () { if (mine !== undefined) drop(mine) }
    })
    return new Response(body, { headers: { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', 'x-accel-buffering': 'no' } })
  }

  const owns = (path: string): boolean =>
    path === PREFIX || path === `${PREFIX}/` || path === `${PREFIX}/events` || path === `${PREFIX}/series` || path in files

  return {
    owns,
    handle (req) {
      const path = new URL(req.url).pathname
      if (req.method !== 'GET' && req.method !== 'HEAD') return json({ error: { code: 'BAD_REQUEST', message: `the status page answers GET only, not ${req.method}` } }, 405)
      if (path === PREFIX) return new Response(null, { status: 308, headers: { location: `${PREFIX}/` } })
      if (path === `${PREFIX}/`) return new Response(html, { headers: { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', ...SECURITY_HEADERS } })
      if (path === `${PREFIX}/series`) return json({ role, series: series() })
      if (path === `${PREFIX}/events`) return events()
      const file = files[path]
      if (file !== undefined) return new Response(file.body, { headers: { 'content-type': file.type, 'cache-control': 'max-age=300', ...SECURITY_HEADERS } })
      return json({ error: { code: 'NOT_FOUND', message: `no status page file ${path}; the page is ${PREFIX}/` } }, 404)
    },
    observe (latencyMs, atMs = Date.now()) {
      at[next] = atMs
      ms[next] = latencyMs
      next = (next + 1) % maxSamples
      if (count < maxSamples) count++
    },
    series,
    close () {
      for (const c of streams) { try { c.close() } catch {} }
      streams.clear()
      if (ticker !== undefined) clearInterval(ticker)
      ticker = undefined
    }
  }
}
