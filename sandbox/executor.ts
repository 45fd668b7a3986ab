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
  execute: (job: ExecutionJob, options?: AbortOptions) => Promise<ExecutionResult>
  /** Prepares sandboxes for a bundle ahead of demand (no-op where nothing can be prepared). */
  prewarm: (bundle: BundleRef, options: FunctionOptions, abort?: AbortOptions) => Promise<void>
  /** Bundle CIDs that have a warm sandbox now (advertised to gateways). */
  warm: () => string[]
}
