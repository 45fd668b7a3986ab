/**
 * `peerhost dev <dir>`: serves a project's functions at `http://127.0.0.1:<port>/<function>[/rest]`,
 * running each in the sandbox exactly as a worker does (same executor, same options from
 * peerhost.json, same limits and error codes), rebuilding on file change, and reporting each
 * function's logs and per-request timings through `onLog`. Like `wrangler dev`. Secrets come
 * from the project's `.dev.vars` (dev-vars.ts), re-read on change.
 *
 * A function with `verify: { "quorum": n }` runs n times per request, one run after the other, each
 * in a fresh realm, and answers as the mesh's quorum does (node/gateway/quorum.ts: the same votes,
 * the same majority): the majority's output with `x-peerhost-quorum: agreeing/n` and
 * `x-peerhost-output-hash`, or `502 QUORUM_DISAGREEMENT` naming each output hash and how many runs
 * gave it. Whenever the runs differ a `warning:` line goes to the log, so a builder sees locally
 * that a function declared deterministic is not (on the mesh a minority worker is outvoted and its
 * batch proven faulty; without a majority every request fails). Its WebSocket upgrades are refused
 * (400), as on the mesh.
 */
import { randomBytes } from 'node:crypto'
import { watch, type FSWatcher } from 'node:fs'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { relative, resolve } from 'node:path'
import { LIMITS, outputHash, WIRE_ERROR_CODES, type WireErrorCode, type WireRequest } from '#protocol'
import { devExecutor, gvisorExecutor, type AddressFilter, type ExecutionResult, type Executor, type StreamHooks } from '#sandbox'
import { bundleProject, type BuiltFunction } from '../build/bundle.ts'
import { loadProjectConfig, type ResolvedProject } from '../project/config.ts'
import { executeWithSecrets } from '../secrets/redact.ts'
import { loadDevVars } from './dev-vars.ts'
import { WebSocketServer, type WebSocket } from 'ws'
import type { Duplex } from 'node:stream'
import { NODE_DEFAULTS, WS_CLOSE } from '../constants.ts'
import { answerUpgrade, upgradeError } from '../gateway/sessions.ts'
import { quorumMajority, votes } from '../gateway/quorum.ts'

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

function jsonError (res: ServerResponse, code: WireErrorCode, message?: string, details?: Record<string, unknown>, headers: Record<string, string> = {}): void {
  const body = JSON.stringify({ error: { code, message: message ?? WIRE_ERROR_CODES[code].message, ...(details !== undefined ? { details } : {}) } })
  res.writeHead(WIRE_ERROR_CODES[code].status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), ...headers })
  res.end(body)
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'host', 'content-length'])

/** A function's response headers for node:http (repeated names as arrays), without the framing ones node sets itself. */
function headerObject (list: Array<[string, string]>): Record<string, string | string[]> {
  const plain: Record<string, string | string[]> = {}
  for (const [k, v] of list) {
    const prev = plain[k]
    plain[k] = prev === undefined ? v : (Array.isArray(prev) ? [...prev, v] : [prev, v])
  }
  delete plain['content-length']
  delete plain['transfer-encoding']
  return plain
}

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

  /**
   * A quorum function's request: `n` runs in turn (not in parallel: the dev sandbox pool is one
   * sandbox, and runs apart in time show a clock-dependent output more surely), tallied as the
   * mesh tallies its workers' results.
   */
  async function serveQuorum (res: ServerResponse, name: string, n: number, run: () => Promise<ExecutionResult>, head: boolean, done: (status: number, extra: string) => void): Promise<void> {
    const needed = quorumMajority(n)
    const groups = new Map<string, ExecutionResult[]>()
    const failed: ExecutionResult[] = []
    for (let i = 1; i <= n; i++) {
      const r = await run()
      for (const line of r.logs.split('\n')) if (line !== '') log(`[${name} ${i}/${n}] ${line}`)
      if (r.logsTruncated) log(`[${name} ${i}/${n}] (logs truncated at ${LIMITS.maxLogBytes} bytes)`)
      if (!votes(r) || (r.response === undefined && r.error === undefined)) { failed.push(r); continue }
      const hash = r.error !== undefined ? outputHash({ error: r.error }) : outputHash({ response: r.response! })
      groups.set(hash, [...groups.get(hash) ?? [], r])
    }
    const ranked = [...groups.entries()].sort((a, b) => b[1].length - a[1].length)
    const outputs = ranked.map(([hash, g]) => `${hash} ×${g.length}`).join(', ')
    const [best, group] = ranked[0] ?? []
    const timing = (r: ExecutionResult): string => ` (exec ${r.timings.execMs.toFixed(1)} ms, sandbox ${r.timings.sandboxMs.toFixed(1)} ms, queue ${r.timings.queueMs.toFixed(1)} ms)`
    if (ranked.length > 1) {
      log(`warning: ${name} is declared deterministic but ${n} runs of one request gave ${ranked.length} different outputs (${outputs}); ${group!.length >= needed
        ? `the majority answers here, but on the mesh the workers with another output are outvoted and their batches proven faulty`
        : 'on the mesh every such request fails with 502 QUORUM_DISAGREEMENT'}: make the output depend on the request only (no Math.random, Date.now or other state)`)
    }
    if (best !== undefined && group!.length >= needed) {
      const r = group![0]
      const status = r.response?.status ?? WIRE_ERROR_CODES[r.error!.code].status
      const quorumHeaders = { 'x-peerhost-quorum': `${group!.length}/${n}`, 'x-peerhost-output-hash': best }
      if (r.response !== undefined) {
        res.writeHead(status, { ...headerObject(r.response.headers), ...quorumHeaders, 'x-peerhost-exec-ms': r.timings.execMs.toFixed(2) })
        res.end(head ? undefined : r.response.body)
      } else {
        jsonError(res, r.error!.code, r.error!.message, r.error!.details, quorumHeaders)
      }
      done(status, ` quorum ${group!.length}/${n}${timing(r)}`)
      return
    }
    if (ranked.length > 1) {
      const counts = ranked.map(([, g]) => g.length)
      jsonError(res, 'QUORUM_DISAGREEMENT',
        `the ${n} runs of quorum function ${name} disagree: ${ranked.length} different outputs (${outputs}), ${failed.length} failed, and an answer needs ${needed} equal outputs; a function declared "deterministic" must answer the same request with the same output`,
        { quorum: n, needed, outputs: ranked.length, agreeing: counts[0], failed: failed.length, outputHashes: ranked.map(([hash, g]) => ({ outputHash: hash, runs: g.length })) },
        { 'x-peerhost-quorum': `${counts[0]}/${n}` })
      done(502, ` QUORUM_DISAGREEMENT ${outputs}`)
      return
    }
    // too few runs answered at all: the runs' own failure (a limit error) speaks, as on the mesh
    const answered = group?.length ?? 0
    const e = answered === 0 && failed[0]?.error !== undefined
      ? failed[0].error
      : { code: 'WORKER_FAILED' as const, message: `only ${answered} of the ${n} runs of quorum function ${name} answered; an answer needs ${needed} equal outputs${failed[0]?.error === undefined ? '' : ` (${failed[0].error.code}: ${failed[0].error.message})`}` }
    jsonError(res, e.code, e.message, e.details)
    done(WIRE_ERROR_CODES[e.code].status, ` ${e.code} quorum ${answered}/${n}`)
  }
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
      const run = async (hooks?: { stream: StreamHooks }): Promise<ExecutionResult> => await executeWithSecrets(executor, {
        jobId: `0x${randomBytes(32).toString('hex')}`,
        bundle: { cid: fn.cid, bytes: fn.bytes },
        request,
        env: project.env,
        options,
        deadline: Date.now() + options.timeoutMs + 5_000
      }, Object.keys(secrets).length > 0 ? secrets : undefined, hooks)
      const quorum = project.quorumFor(name)
      if (quorum !== undefined) {
        // buffered runs (no stream hooks): their outputs are compared before anything is answered
        await serveQuorum(res, name, quorum, run, req.method === 'HEAD', done)
        return
      }
      // a streamed body goes out as on the mesh: chunk by chunk, the function waiting while the
      // client does not read (the same sandbox code path and window)
      const stream: StreamHooks = {
        maxBytes: LIMITS.maxStreamBytes,
        onHead: (status, list) => {
          res.writeHead(status, { ...headerObject(list), 'x-peerhost-stream': '1' })
          res.flushHeaders()
        },
        onChunk: async (data) => {
          // a client that left cancels the stream (the function stops instead of producing for nobody)
          if (res.destroyed) throw new Error('the client went away')
          if (req.method === 'HEAD' || res.write(data)) return
          await new Promise<void>(resolve => {
            // both listeners go once either fires: a long stream drains thousands of times
            const done = (): void => { res.off('drain', done); res.off('close', done); resolve() }
            res.on('drain', done)
            res.on('close', done)
          })
        }
      }
      const result = await run({ stream })
      for (const line of result.logs.split('\n')) if (line !== '') log(`[${name}] ${line}`)
      if (result.logsTruncated) log(`[${name}] (logs truncated at ${LIMITS.maxLogBytes} bytes)`)
      const t = result.timings
      const timing = ` (exec ${t.execMs.toFixed(1)} ms, sandbox ${t.sandboxMs.toFixed(1)} ms, queue ${t.queueMs.toFixed(1)} ms)`
      if (result.streamed !== undefined) {
        // the head is out: a limit or failure cuts the connection mid-body, as the gateway does
        if (result.error !== undefined) res.destroy()
        else res.end()
        done(result.streamed.status, ` stream ${result.streamed.bytes} bytes${result.error !== undefined ? ` cut: ${result.error.code}` : ''}${timing}`)
        return
      }
      if (result.error !== undefined) {
        const e = result.error
        jsonError(res, e.code, e.message, e.details)
        done(WIRE_ERROR_CODES[e.code].status, ` ${e.code}${timing}`)
        return
      }
      const r = result.response!
      res.writeHead(r.status, { ...headerObject(r.headers), 'x-peerhost-exec-ms': t.execMs.toFixed(2) })
      res.end(req.method === 'HEAD' ? undefined : r.body)
      done(r.status, timing)
    })().catch((err: unknown) => {
      log(`internal error: ${String(err)}`)
      if (!res.headersSent) jsonError(res, 'INTERNAL')
      else res.destroy()
    })
  })
  /*
   * WebSockets as on the mesh: the function runs in the same sandbox as a session execution; the
   * upgrade completes only once it accepted, with the same message size limit (1009) and idle
   * timeout (4408); any other answer goes back as plain HTTP.
   */
  const wss = new WebSocketServer({ noServer: true, maxPayload: LIMITS.maxWsMessageBytes, perMessageDeflate: false, clientTracking: true, maxFragments: NODE_DEFAULTS.sessionMaxFragments })
  async function upgrade (req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', () => {})
    const started = performance.now()
    const url = new URL(req.url ?? '/', `http://${req.headers.host ?? '127.0.0.1'}`)
    const name = url.pathname.split('/')[1] ?? ''
    const fn = build.functions.get(name)
    if (fn === undefined || (req.headers.upgrade ?? '').toLowerCase() !== 'websocket') { upgradeError(socket, 'NOT_FOUND', `no function "${name}"`); return }
    const { project, secrets } = build
    const quorum = project.quorumFor(name)
    if (quorum !== undefined) {
      upgradeError(socket, 'BAD_REQUEST', `${name} is a quorum function ("verify": { "quorum": ${quorum} }): it answers requests, not WebSocket sessions (a session has no single output to vote on)`)
      log(`WS ${url.pathname} 400 refused: quorum function`)
      return
    }
    const headers: Array<[string, string]> = []
    for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
      const h = req.rawHeaders[i].toLowerCase()
      if (!HOP_BY_HOP.has(h)) headers.push([h, req.rawHeaders[i + 1]])
    }
    headers.push(['upgrade', 'websocket'])
    const options = project.optionsFor(name)
    let control: import('#sandbox').SessionControl | undefined
    let ws: WebSocket | undefined
    const early: Array<{ data: Uint8Array, binary: boolean } | { code: number, reason: string }> = []
    let opened!: (h: Array<[string, string]>) => void
    const openP = new Promise<Array<[string, string]>>(resolve => { opened = resolve })
    const exec = executeWithSecrets(executor, {
      jobId: `0x${randomBytes(32).toString('hex')}`,
      bundle: { cid: fn.cid, bytes: fn.bytes },
      request: { method: 'GET', url: url.toString(), headers, body: new Uint8Array(0) },
      env: project.env,
      options,
      deadline: Date.now() + options.timeoutMs + 5_000
    }, Object.keys(secrets).length > 0 ? secrets : undefined, {
      session: {
        maxSessionMs: NODE_DEFAULTS.sessionMaxMs,
        bind: (c) => { control = c },
        onOpen: (h) => { opened(h) },
        onMessage: (data, binary) => {
          if (data.byteLength > LIMITS.maxWsMessageBytes) { control?.close(WS_CLOSE.tooBig, 'message too big'); ws?.close(WS_CLOSE.tooBig, 'message too big'); return }
          if (ws !== undefined) ws.send(data, { binary })
          else early.push({ data, binary })
        },
        onClose: (code, reason) => { if (ws !== undefined) ws.close(code, reason); else early.push({ code, reason }) }
      }
    })
    const first = await Promise.race([openP, exec.then(() => undefined)])
    if (first === undefined) {
      const result = await exec
      for (const line of result.logs.split('\n')) if (line !== '') log(`[${name}] ${line}`)
      if (result.response !== undefined && result.response.status !== 101) {
        answerUpgrade(socket, result.response.status, result.response.headers, result.response.body)
      } else {
        const e = result.error ?? { code: 'RESULT_INVALID' as const, message: WIRE_ERROR_CODES.RESULT_INVALID.message }
        answerUpgrade(socket, WIRE_ERROR_CODES[e.code].status, [['content-type', 'application/json; charset=utf-8']], Buffer.from(JSON.stringify({ error: { code: e.code, message: e.message, ...(e.details !== undefined ? { details: e.details } : {}) } })))
      }
      log(`WS ${url.pathname} not upgraded (${(performance.now() - started).toFixed(1)} ms)`)
      return
    }
    log(`WS ${url.pathname} 101 ${(performance.now() - started).toFixed(1)} ms`)
    wss.handleUpgrade(req, socket, head, (client) => {
      ws = client
      const idle = setTimeout(() => { control?.close(WS_CLOSE.idleTimeout, 'idle timeout'); client.close(WS_CLOSE.idleTimeout, 'idle timeout') }, NODE_DEFAULTS.sessionIdleMs)
      for (const e of early.splice(0)) {
        if ('data' in e) client.send(e.data, { binary: e.binary })
        else client.close(e.code, e.reason)
      }
      client.on('message', (data: Buffer, binary: boolean) => {
        idle.refresh()
        control?.send(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), binary)
      })
      client.on('close', (code: number, reason: Buffer) => {
        clearTimeout(idle)
        control?.close(code === 1005 ? 1000 : code === 1006 ? 1001 : code, reason.toString('utf8').slice(0, 100))
      })
      client.on('error', () => {})
      void exec.then((result) => {
        clearTimeout(idle)
        for (const line of result.logs.split('\n')) if (line !== '') log(`[${name}] ${line}`)
        if (client.readyState === client.OPEN) client.close(result.error !== undefined ? WS_CLOSE.internalError : 1000, result.error?.code ?? '')
      })
    })
  }
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    upgrade(req, socket, head).catch((err: unknown) => { log(`internal error: ${String(err)}`); upgradeError(socket, 'INTERNAL') })
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
      for (const c of wss.clients) c.close(WS_CLOSE.goingAway, 'the dev server is stopping')
      server.closeAllConnections()
      await new Promise<void>(resolve => server.close(() => { resolve() }))
      await executor.stop()
    }
  }
}
