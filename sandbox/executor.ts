/**
 * The executor interface: how a worker runs one job. Two implementations sit behind it:
 * the gVisor sandbox (the default, a security boundary) and the development `node:vm` executor
 * (NOT a security boundary; refused unless the worker runs with `--unsafe-dev-executor`).
 *
 * `execute()` never throws for anything the function did: a throw, a limit breach or a bad
 * return value comes back as `result.error` with a stable wire code (LIMIT_*, FUNCTION_ERROR,
 * RESULT_INVALID). Infrastructure faults (runsc missing, sandbox crashed outside the function's
 * control) come back as `SANDBOX_INFRA`, which gateways retry elsewhere and which is never
 * slashable. Only programming errors of ours throw.
 */
import type { FunctionOptions, JobTimings, WireError, WireRequest, WireResponse } from '#protocol'

export interface AbortOptions {
  signal?: AbortSignal
}

/** What a WebSocket session execution reports while it runs (the worker relays it to the gateway). */
export interface SessionHooks {
  /** the function accepted the WebSocket (101): the session is open */
  onOpen: (headers: Array<[string, string]>) => void
  /** the function sent a message (text as UTF-8 bytes, `binary` false) */
  onMessage: (data: Uint8Array, binary: boolean) => void
  /** the function closed its WebSocket */
  onClose: (code: number, reason: string) => void
  /** called once, before the execution starts, with the way in */
  bind: (control: SessionControl) => void
  /** longest the session may last once open (the job's timeoutMs bounds the handler until then) */
  maxSessionMs: number
}

/** The way into a running session. */
export interface SessionControl {
  /** delivers a client message to the function (text as UTF-8 bytes, `binary` false) */
  send: (data: Uint8Array, binary: boolean) => void
  /** the client closed, or the session ends (limits, shutdown) */
  close: (code: number, reason: string) => void
  /** stops / resumes reading what the function sends (backpressure from a slow client) */
  pause: () => void
  resume: () => void
}

/**
 * How a streamed response body leaves the executor (the worker relays it to the gateway). A body
 * the function holds whole and small still comes back in `result.response`; one it is still
 * producing (SSE, large files) arrives here chunk by chunk, and the result then has `streamed`.
 */
export interface StreamHooks {
  /** most body bytes in all (LIMIT_RESPONSE_SIZE beyond, the stream cut there) */
  maxBytes: number
  /** the response's status and headers, once, before any chunk */
  onHead: (status: number, headers: Array<[string, string]>) => void
  /**
   * One piece of the body, in order. The returned promise settles when the piece has been passed
   * on: until then the function gets no more room (backpressure from a slow client).
   */
  onChunk: (data: Uint8Array) => Promise<void>
}

export interface ExecuteOptions extends AbortOptions {
  /** Relay a streamed response body through these hooks instead of reading it whole. */
  stream?: StreamHooks
  /**
   * Run the job as a WebSocket session: a 101 answer keeps the execution alive (the job's
   * timeoutMs is then the session's longest life) and its traffic goes through these hooks.
   */
  session?: SessionHooks
}

/**
 * A function bundle: a CommonJS script (esbuild `format: 'cjs'`) whose `module.exports.default`
 * (or `module.exports`) is `{ fetch(request, env, ctx) }`.
 */
export interface BundleRef {
  /** CIDv1 of `bytes`; the key of warm pools and caches */
  cid: string
  bytes: Uint8Array
}

export interface ExecutionJob {
  jobId: string
  bundle: BundleRef
  request: WireRequest
  /** public env plus, for this execution only, decrypted secrets */
  env: Record<string, string>
  options: FunctionOptions
  /** unix ms; the execution is stopped with LIMIT_TIMEOUT at min(deadline, now + timeoutMs) */
  deadline: number
}

export interface ExecutionResult {
  /**
   * Set when the body was streamed through `ExecuteOptions.stream` (the head went out): the bytes
   * passed to `onChunk`. `response` then has an empty body, and `error` means the stream was cut.
   */
  streamed?: { status: number, bytes: number }
  response?: WireResponse
  error?: WireError
  logs: string
  logsTruncated: boolean
  timings: JobTimings
}

export interface Executor {
  /** `gvisor` or `dev-vm` */
  readonly kind: string
  start: (options?: AbortOptions) => Promise<void>
  stop: (options?: AbortOptions) => Promise<void>
  execute: (job: ExecutionJob, options?: ExecuteOptions) => Promise<ExecutionResult>
  /** whether `execute` can run WebSocket sessions (`options.session`) */
  readonly sessions?: boolean
  /** Prepares sandboxes for a bundle ahead of demand (no-op where nothing can be prepared). */
  prewarm: (bundle: BundleRef, options: FunctionOptions, abort?: AbortOptions) => Promise<void>
  /** Bundle CIDs that have a warm sandbox now (advertised to gateways). */
  warm: () => string[]
  /** Counters for operators (worker metrics); absent where there is nothing to count. */
  stats?: () => ExecutorStats
}

export interface ExecutorStats {
  /** sandboxes alive now, idle and busy */
  sandboxes: number
  /** sandboxes booted since start */
  booted: number
  /** boots in flight now */
  booting: number
  /** executions that waited for a sandbox slot since start (load queued, not booted for) */
  waitedForSlot: number
  /** background boots put off until the pool was quiet (gVisor; absent elsewhere) */
  bootsDeferred?: number
  /** sandboxes the pool's targets want now that are neither there nor booting (gVisor) */
  bootsWanted?: number
}
