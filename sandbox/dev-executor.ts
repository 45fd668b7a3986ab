/**
 * The development executor. **NOT A SECURITY BOUNDARY.** It runs function code inside the worker's
 * own process (a worker thread, a fresh `node:vm` realm per execution); a function can escape the
 * realm and do anything the worker process can. The worker refuses it unless started with
 * `--unsafe-dev-executor`; use it for `peerhost dev --executor dev-vm`, tests and benchmarks only.
 *
 * It behaves like the gVisor executor (same shim session, same result shaping, same fetch
 * broker): fresh realm per execution, Web-standard Request/Response, bounded console capture,
 * ctx.waitUntil, wall-clock limit (a hung thread is terminated and replaced), V8 heap limit per
 * function (`resourceLimits`), response size limit.
 */
import { Worker } from 'node:worker_threads'
import type { Logger } from 'pino'
import { SandboxError } from './errors.ts'
import { DEV_EXECUTOR_DEFAULTS, SANDBOX_LIMITS } from './constants.ts'
import { abortedError, deadlineCut, effectiveTimeoutMs, errorResult, hostStream, limitError, shapeResult, wireError } from './result.ts'
import { fetchBroker, type AddressFilter, type FetchBroker, type FetchBrokerInit } from './fetch-broker.ts'
import { eventWatch, sessionCredit, type EventWatch } from './session-flow.ts'
import type { BundleRef, ExecuteOptions, ExecutionJob, ExecutionResult, Executor } from './executor.ts'
import type { ExecMessage, ResultMessage, ShimMessage } from './runtime/messages.ts'
import type { FunctionOptions } from '#protocol'

export interface DevExecutorInit {
  /** @default 4 — idle worker threads kept between executions */
  maxIdleThreads?: number
  /** options of the host-brokered fetch (limits; the address filter is a component) */
  fetch?: FetchBrokerInit
  /** @default SANDBOX_LIMITS.maxResponseBytes */
  maxResponseBytes?: number
  /** @default SANDBOX_LIMITS.maxLogBytes */
  maxLogBytes?: number
  /** @default DEV_EXECUTOR_DEFAULTS.maxWarmFunctions — function versions `warm()` remembers (LRU) */
  maxWarmFunctions?: number
}

export interface ExecutorComponents {
  /** per-component logger (`peerhost:sandbox:…`); silent when absent */
  logger?: Pick<Logger, 'debug' | 'info' | 'warn' | 'error'>
  /**
   * Which resolved addresses the fetch broker may connect to. @default publicAddressesOnly
   * (tests that fetch from a loopback server pass a permissive filter)
   */
  addressFilter?: AddressFilter
}

const THREAD_URL = new URL('./runtime/dev-thread.ts', import.meta.url)

class DevThread {
  readonly worker: Worker
  readonly memoryMb: number
  readonly bundles = new Set<string>()
  readonly ready: Promise<void>
  dead = false
  exitReason?: string
  listener?: (msg: ShimMessage) => void
  onDeath?: (reason: string) => void

  constructor (memoryMb: number) {
    this.memoryMb = memoryMb
    this.worker = new Worker(THREAD_URL, {
      resourceLimits: { maxOldGenerationSizeMb: memoryMb, maxYoungGenerationSizeMb: Math.min(32, Math.max(4, Math.floor(memoryMb / 8))) },
      stdout: true,
      stderr: true,
      env: {}
    })
    // a thread's own stdio is never the function's (it has console capture); drain and drop it
    this.worker.stdout.resume()
    this.worker.stderr.resume()
    this.ready = new Promise((resolve, reject) => {
      const onMsg = (msg: ShimMessage): void => {
        if (msg.t === 'ready') { this.worker.off('message', onMsg); resolve() }
      }
      this.worker.on('message', onMsg)
      this.worker.once('exit', () => { reject(new SandboxError('SANDBOX_START_FAILED', 'the dev executor thread exited during start')) })
    })
    this.ready.catch(() => {})
    this.worker.on('message', (msg: ShimMessage) => { this.listener?.(msg) })
    this.worker.on('error', (err: any) => {
      this.exitReason = err?.code === 'ERR_WORKER_OUT_OF_MEMORY' ? 'oom' : 'error'
    })
    this.worker.on('exit', () => {
      this.dead = true
      this.onDeath?.(this.exitReason ?? 'exit')
    })
  }

  async terminate (): Promise<void> {
    this.dead = true
    await this.worker.terminate().catch(() => {})
  }
}

class DevExecutor implements Executor {
  readonly kind = 'dev-vm'
  readonly sessions = true
  private readonly init: DevExecutorInit
  private readonly log?: ExecutorComponents['logger']
  private readonly broker: FetchBroker
  private readonly idle: DevThread[] = []
  private readonly busy = new Set<DevThread>()
  private readonly seen = new Set<string>()
  private started = false
  private nextId = 1

  constructor (init: DevExecutorInit, components: ExecutorComponents) {
    this.init = init
    this.log = components.logger
    this.broker = fetchBroker(init.fetch, { addressFilter: components.addressFilter })
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    this.log?.warn('dev-vm executor started: function code runs in this process WITHOUT a security boundary')
  }

  async stop (): Promise<void> {
    this.started = false
    const all = [...this.idle, ...this.busy]
    this.idle.length = 0
    this.busy.clear()
    await Promise.all(all.map(async t => { await t.terminate() }))
  }

  /** most recently used first */
  warm (): string[] {
    return [...this.seen].reverse()
  }

  /** Marks a version used now; bounded (the least recently used falls out). */
  private touch (cid: string): void {
    this.seen.delete(cid)
    this.seen.add(cid)
    const max = this.init.maxWarmFunctions ?? DEV_EXECUTOR_DEFAULTS.maxWarmFunctions
    while (this.seen.size > max) this.seen.delete(this.seen.values().next().value as string)
  }

  async prewarm (bundle: BundleRef, options: FunctionOptions): Promise<void> {
    this.touch(bundle.cid)
    if (!this.idle.some(t => t.memoryMb === options.memoryMb)) {
      const t = new DevThread(options.memoryMb)
      await t.ready.catch(() => {})
      if (!t.dead && this.started) this.idle.push(t)
      else await t.terminate()
    }
  }

  private acquire (memoryMb: number): DevThread {
    const i = this.idle.findIndex(t => t.memoryMb === memoryMb && !t.dead)
    const t = i >= 0 ? this.idle.splice(i, 1)[0] : new DevThread(memoryMb)
    this.busy.add(t)
    return t
  }

  private release (t: DevThread): void {
    this.busy.delete(t)
    if (t.dead || !this.started) { void t.terminate(); return }
    t.listener = undefined
    t.onDeath = undefined
    this.idle.push(t)
    const max = this.init.maxIdleThreads ?? DEV_EXECUTOR_DEFAULTS.maxIdleThreads
    while (this.idle.length > max) void this.idle.shift()?.terminate()
  }

  async execute (job: ExecutionJob, options: ExecuteOptions = {}): Promise<ExecutionResult> {
    if (!this.started) throw new SandboxError('NOT_STARTED', 'the executor is not started; call start() first')
    options.signal?.throwIfAborted()
    const t0 = performance.now()
    const maxResponseBytes = this.init.maxResponseBytes ?? SANDBOX_LIMITS.maxResponseBytes
    const maxLogBytes = this.init.maxLogBytes ?? SANDBOX_LIMITS.maxLogBytes
    const timeoutMs = effectiveTimeoutMs(job.options.timeoutMs, job.deadline)
    const thread = this.acquire(job.options.memoryMb)
    this.touch(job.bundle.cid)
    try {
      await thread.ready
    } catch {
      this.busy.delete(thread)
      return errorResult(wireError('SANDBOX_INFRA'), { queueMs: performance.now() - t0, execMs: 0, sandboxMs: 0 })
    }
    const tSent = performance.now()
    const queueMs = tSent - t0
    const deadline = Date.now() + timeoutMs
    const fetch = this.broker.forExecution(job.options.network, deadline)
    const id = this.nextId++
    const msg: ExecMessage = {
      t: 'exec',
      id,
      cid: job.bundle.cid,
      bundle: thread.bundles.has(job.bundle.cid) ? undefined : job.bundle.bytes,
      request: job.request,
      env: job.env,
      limits: { timeoutMs, maxResponseBytes, maxLogBytes, network: job.options.network.length > 0, maxSubrequests: SANDBOX_LIMITS.maxSubrequests },
      wipeTmp: false
    }
    const session = options.session
    const body = options.stream === undefined || session !== undefined ? undefined : hostStream(options.stream, (bytes, cancel) => { if (!thread.dead) thread.worker.postMessage(cancel === true ? { t: 'body-ack', id, bytes, cancel } : { t: 'body-ack', id, bytes }) })
    if (body !== undefined) msg.stream = options.stream!.maxBytes
    const credit = sessionCredit((bytes) => { if (!thread.dead) thread.worker.postMessage({ t: 'ws-ack', id, bytes }) })
    /** CPU per event, as in the gVisor executor: a message listener that has not returned by then holds the thread */
    let watch: EventWatch | undefined
    /** set by the watch: ends the execution with LIMIT_CPU (the promise below sets it) */
    let breach = (): void => {}
    if (session !== undefined) {
      msg.session = session.maxSessionMs
      const limitMs = job.options.timeoutMs + SANDBOX_LIMITS.killGraceMs
      watch = eventWatch(limitMs, () => { breach() })
      const w = watch
      session.bind({
        send: (data, binary) => { if (!thread.dead) { w.sent(); thread.worker.postMessage({ t: 'ws-in', id, data, binary }) } },
        close: (code, reason) => { if (!thread.dead) thread.worker.postMessage({ t: 'ws-close-in', id, code, reason }) },
        pause: credit.pause,
        resume: credit.resume
      })
    }

    let result = await new Promise<ExecutionResult>((resolve) => {
      let settled = false
      const done = (r: ExecutionResult): void => {
        if (settled) return
        settled = true
        clearTimeout(watchdog)
        watch?.stop()
        resolve(r)
      }
      const timings = (execMs = 0): { queueMs: number, execMs: number, sandboxMs: number } => {
        const total = performance.now() - t0
        return { queueMs, execMs, sandboxMs: Math.max(0, total - queueMs - execMs) }
      }
      const watchdog = setTimeout(() => {
        void thread.terminate()
        // the thread's own LIMIT_TIMEOUT timer could not fire: its event loop was blocked
        // no cgroup here to measure CPU time: the value is left out rather than guessed from the clock
        done(errorResult(limitError('LIMIT_CPU', 'cpuMs', undefined, timeoutMs, { source: 'unavailable' }), timings(performance.now() - tSent)))
      }, timeoutMs + (options.session?.maxSessionMs ?? 0) + SANDBOX_LIMITS.killGraceMs)
      // a session's message listener held the thread's event loop past the function's timeoutMs
      breach = () => {
        void thread.terminate()
        done(errorResult(limitError('LIMIT_CPU', 'cpuMs', undefined, job.options.timeoutMs, { source: 'event', wallMs: Math.round(performance.now() - tSent) }), timings(performance.now() - tSent)))
      }
      thread.onDeath = (reason) => {
        if (reason === 'oom') done(errorResult(limitError('LIMIT_MEMORY', 'memoryMb', undefined, job.options.memoryMb, { source: 'unavailable' }), timings(performance.now() - tSent)))
        else done(errorResult(wireError('SANDBOX_INFRA'), timings()))
      }
      thread.listener = (m: ShimMessage) => {
        if (m.t === 'fetch' && m.id === id) {
          fetch(m.request).then(
            response => { if (!thread.dead) thread.worker.postMessage({ t: 'fetch-result', id, fid: m.fid, response }) },
            (err: unknown) => { if (!thread.dead) thread.worker.postMessage({ t: 'fetch-result', id, fid: m.fid, error: err instanceof Error ? err.message : 'fetch failed' }) }
          )
        } else if (body !== undefined && (m.t === 'body-head' || m.t === 'body-chunk') && m.id === id) {
          body.onMessage(m)
        } else if (session !== undefined && m.t === 'ws-done' && m.id === id) {
          watch?.done()
        } else if (session !== undefined && m.t === 'ws-open' && m.id === id) {
          session.onOpen(m.headers)
        } else if (session !== undefined && m.t === 'ws-out' && m.id === id) {
          session.onMessage(m.data, m.binary)
          credit.passed(m.data.byteLength)
        } else if (session !== undefined && m.t === 'ws-close-out' && m.id === id) {
          session.onClose(m.code, m.reason)
        } else if (m.t === 'result' && m.id === id) {
          if (msg.bundle !== undefined) thread.bundles.add(job.bundle.cid)
          const shaped = shapeResult(m as ResultMessage, { maxResponseBytes, maxLogBytes, session: session !== undefined }, timings(typeof m.execMs === 'number' ? m.execMs : 0))
          // an allocation the thread could not get: its limit, with no cgroup here to measure it
          done(shaped.error?.code === 'LIMIT_MEMORY' ? { ...shaped, error: limitError('LIMIT_MEMORY', 'memoryMb', undefined, job.options.memoryMb, { source: 'unavailable', reason: 'allocation-failed' }) } : shaped)
        }
      }
      thread.worker.postMessage(msg)
    })
    this.release(thread)
    // as in the gVisor executor, an abort lets the execution end on its own terms (no thread is
    // killed for a closed stream) and only the answer is dropped
    // (a session's signal includes its opening deadline, long past when it ends: its own outcome
    // is what its client and receipt must say, as in the gVisor executor)
    if (options.signal?.aborted === true && session === undefined) return errorResult(abortedError(job), result.timings)
    if (session === undefined) result = deadlineCut(result, job.options.timeoutMs, timeoutMs)
    return body === undefined ? result : body.finish(result)
  }
}

/**
 * Creates the development executor (NOT a security boundary; see the file header).
 *
 * @example
 * const executor = devExecutor({})({ logger })
 * await executor.start()
 * const result = await executor.execute({ jobId, bundle, request, env, options, deadline })
 */
export function devExecutor (init: DevExecutorInit = {}): (components?: ExecutorComponents) => Executor {
  return (components = {}) => new DevExecutor(init, components)
}
