/**
 * `peerhost dev <dir>`: serves a project's functions at `http://127.0.0.1:<port>/<function>[/rest]`,
 * running each in the sandbox exactly as a worker does (same executor, same options from
 * peerhost.json, same limits and error codes), rebuilding on file change, and reporting each
 * function's logs and per-request timings through `onLog`. Like `wrangler dev`. Secrets come
 * from the project's `.dev.vars` (dev-vars.ts), re-read on change.
 */
import { randomBytes } from 'node:crypto'
import { watch, type FSWatcher } from 'node:fs'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { relative, resolve } from 'node:path'
import { LIMITS, WIRE_ERROR_CODES, type WireErrorCode, type WireRequest } from '#protocol'
import { devExecutor, gvisorExecutor, type AddressFilter, type Executor } from '#sandbox'
import { bundleProject, type BuiltFunction } from '../build/bundle.ts'
import { loadProjectConfig, type ResolvedProject } from '../project/config.ts'
import { executeWithSecrets } from '../secrets/redact.ts'
import { loadDevVars } from './dev-vars.ts'

export interface DevServerInit {
  /** project folder (with functions/ and optional peerhost.json) */
  dir: string
  /** @default 8787 (0 picks a free port) */
  port?: number
  /** @default '127.0.0.1' */
  host?: string
  /** `gvisor` (as a worker runs functions) or `dev-vm` (NOT a security boundary). @default 'gvisor' */
  executor?: 'gvisor' | 'dev-vm'
  /** sandbox state (rootfs, runsc root); e.g. `<dir>/.peerhost/dev` */
  dataDir: string
  /** receives every log line: function output and one timing line per request */
  onLog?: (line: string) => void
}

export interface DevServerComponents {
  /**
   * Which addresses functions' fetch() may reach, passed to the executor's broker.
   * @default publicAddressesOnly (private, loopback, link-local and metadata refused)
   */
  addressFilter?: AddressFilter
}

export interface DevServer {
  url: string
  stop: () => Promise<void>
  /** resolves after the next rebuild finishes (tests) */
  rebuilt: () => Promise<void>
}

interface Build {
  project: ResolvedProject
  functions: Map<string, BuiltFunction>
  /** local secret values from `.dev.vars` */
  secrets: Record<string, string>
}

function jsonError (res: ServerResponse, code: WireErrorCode, message?: string): void {
  const body = JSON.stringify({ error: { code, message: message ?? WIRE_ERROR_CODES[code].message } })
  res.writeHead(WIRE_ERROR_CODES[code].status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) })
  res.end(body)
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'host', 'content-length'])

async function readBody (req: IncomingMessage, max: number): Promise<Uint8Array | undefined> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const c of req) {
    size += (c as Buffer).byteLength
    if (size > max) return undefined
    chunks.push(c as Buffer)
  }
  return new Uint8Array(Buffer.concat(chunks))
}

export async function startDevServer (init: DevServerInit, components: DevServerComponents = {}): Promise<DevServer> {
  const dir = resolve(init.dir)
  const log = init.onLog ?? (() => {})
  const load = async (): Promise<Build> => {
    const project = loadProjectConfig(dir)
    const secrets = loadDevVars(dir)
    const built = await bundleProject(dir)
    return { project, functions: new Map(built.map(f => [f.name, f])), secrets }
  }
  let build = await load()

  const executorComponents = { addressFilter: components.addressFilter }
  const executor: Executor = (init.executor ?? 'gvisor') === 'dev-vm'
    ? devExecutor({})(executorComponents)
    : gvisorExecutor({ dataDir: init.dataDir, genericPoolSize: 1 })(executorComponents)
  if (init.executor === 'dev-vm') log('warning: the dev-vm executor is NOT a security boundary; functions run in this process')
  await executor.start()
  const prewarm = async (b: Build): Promise<void> => {
    for (const [name, f] of b.functions) await executor.prewarm({ cid: f.cid, bytes: f.bytes }, b.project.optionsFor(name))
  }
  await prewarm(build)

  let rebuildWaiters: Array<() => void> = []
  let timer: ReturnType<typeof setTimeout> | undefined
  const rebuild = (): void => {
    clearTimeout(timer)
    timer = setTimeout(() => {
      load().then(async (b) => {
        build = b
        await prewarm(b)
        log(`rebuilt ${b.functions.size} function${b.functions.size === 1 ? '' : 's'}: ${[...b.functions.keys()].join(', ')}`)
      }, (err: any) => {
        log(`build failed (still serving the previous build): ${err?.message ?? String(err)}`)
      }).finally(() => {
        const w = rebuildWaiters
        rebuildWaiters = []
        for (const f of w) f()
      })
    }, 100)
  }
  const dataDir = resolve(init.dataDir)
  const watcher: FSWatcher = watch(dir, { recursive: true }, (_event, file) => {
    if (file == null) return rebuild()
    const abs = resolve(dir, String(file))
    const rel = relative(dir, abs)
    if (rel.startsWith('node_modules') || rel.startsWith('.peerhost') || rel.startsWith('.git') || abs.startsWith(dataDir)) return
    rebuild()
  })

  const server = createServer((req, res) => {
    const started = performance.now()
    const url = new URL(req.url ?? '/', `http://${req.headers.host ?? '127.0.0.1'}`)
    const name = url.pathname.split('/')[1] ?? ''
    const fn = build.functions.get(name)
    const done = (status: number, extra: string): void => {
      log(`${req.method ?? 'GET'} ${url.pathname}${url.search} ${status} ${(performance.now() - started).toFixed(1)} ms${extra}`)
    }
    if (fn === undefined) {
      jsonError(res, 'NOT_FOUND', `no function "${name}"; this project has ${[...build.functions.keys()].join(', ')}`)
      done(404, '')
      return
    }
    const { project, secrets } = build
    void (async () => {
      const body = await readBody(req, LIMITS.maxRequestBodyBytes)
      if (body === undefined) { jsonError(res, 'PAYLOAD_TOO_LARGE'); done(413, ''); return }
      const headers: Array<[string, string]> = []
      for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
        const h = req.rawHeaders[i].toLowerCase()
        if (!HOP_BY_HOP.has(h)) headers.push([h, req.rawHeaders[i + 1]])
      }
      if (headers.length > LIMITS.maxHeaders) { jsonError(res, 'HEADERS_TOO_LARGE'); done(431, ''); return }
      const request: WireRequest = { method: (req.method ?? 'GET').toUpperCase(), url: url.toString(), headers, body }
      const options = project.optionsFor(name)
      // as on a worker: secrets merged over the public env, and their values kept out of the logs
      const result = await executeWithSecrets(executor, {
        jobId: `0x${randomBytes(32).toString('hex')}`,
        bundle: { cid: fn.cid, bytes: fn.bytes },
        request,
        env: project.env,
        options,
        deadline: Date.now() + options.timeoutMs + 5_000
      }, Object.keys(secrets).length > 0 ? secrets : undefined)
      for (const line of result.logs.split('\n')) if (line !== '') log(`[${name}] ${line}`)
      if (result.logsTruncated) log(`[${name}] (logs truncated at ${LIMITS.maxLogBytes} bytes)`)
      const t = result.timings
      const timing = ` (exec ${t.execMs.toFixed(1)} ms, sandbox ${t.sandboxMs.toFixed(1)} ms, queue ${t.queueMs.toFixed(1)} ms)`
      if (result.error !== undefined) {
        const e = result.error
        const status = WIRE_ERROR_CODES[e.code].status
        const bodyText = JSON.stringify({ error: { code: e.code, message: e.message, ...(e.details !== undefined ? { details: e.details } : {}) } })
        res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' })
        res.end(bodyText)
        done(status, ` ${e.code}${timing}`)
        return
      }
      const r = result.response!
      const plain: Record<string, string | string[]> = {}
      for (const [k, v] of r.headers) {
        const prev = plain[k]
        plain[k] = prev === undefined ? v : (Array.isArray(prev) ? [...prev, v] : [prev, v])
      }
      delete plain['content-length']
      delete plain['transfer-encoding']
      res.writeHead(r.status, { ...plain, 'x-peerhost-exec-ms': t.execMs.toFixed(2) })
      res.end(req.method === 'HEAD' ? undefined : r.body)
      done(r.status, timing)
    })().catch((err: unknown) => {
      log(`internal error: ${String(err)}`)
      if (!res.headersSent) jsonError(res, 'INTERNAL')
      else res.destroy()
    })
  })
  server.headersTimeout = 10_000
  server.requestTimeout = LIMITS.maxDeadlineMs
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(init.port ?? 8787, init.host ?? '127.0.0.1', () => { resolve() })
  })
  const addr = server.address() as AddressInfo
  const host = addr.address.includes(':') ? `[${addr.address}]` : addr.address
  const url = `http://${host}:${addr.port}`
  for (const name of build.functions.keys()) log(`${name}: ${url}/${name}`)

  return {
    url,
    rebuilt: async () => { await new Promise<void>(resolve => rebuildWaiters.push(resolve)) },
    async stop () {
      clearTimeout(timer)
      watcher.close()
      server.closeAllConnections()
      await new Promise<void>(resolve => server.close(() => { resolve() }))
      await executor.stop()
    }
  }
}
