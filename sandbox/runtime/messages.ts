/**
 * Messages between the host (a worker's executor) and the runtime shim that runs function code.
 * The same messages travel over the gVisor sandbox's stdio (framed by channel.ts) and over a
 * worker_thread MessagePort for the development executor, so both executors behave the same.
 *
 * This folder (sandbox/runtime/) is copied into the sandbox's root filesystem: it imports only
 * `node:` built-ins and its own files.
 */

export interface ShimRequest {
  method: string
  url: string
  headers: Array<[string, string]>
  body: Uint8Array
}

export interface ShimResponse {
  status: number
  headers: Array<[string, string]>
  body: Uint8Array
}

/** Limits the shim applies inside one execution (the host enforces its own copies as well). */
export interface ShimLimits {
  timeoutMs: number
  maxResponseBytes: number
  maxLogBytes: number
  /** whether `fetch()` is forwarded to the host broker at all (false: it rejects at once) */
  network: boolean
  /** most `fetch()` calls forwarded per execution */
  maxSubrequests: number
}

/** Error codes the shim may report; a subset of the wire codes in protocol/errors.ts. */
export type ShimErrorCode = 'FUNCTION_ERROR' | 'RESULT_INVALID' | 'LIMIT_TIMEOUT' | 'LIMIT_CPU' | 'LIMIT_RESPONSE_SIZE' | 'LIMIT_SUBREQUESTS'

export interface ShimError {
  code: ShimErrorCode
  message: string
  details?: Record<string, string | number | boolean>
}

export interface ExecMessage {
  t: 'exec'
  id: number
  /** bundle CID: the key of the shim's compiled-script cache */
  cid: string
  /** bundle bytes; omitted when the host knows the shim already holds `cid` */
  bundle?: Uint8Array
  request: ShimRequest
  env: Record<string, string>
  limits: ShimLimits
  /** empty /tmp after the execution (function isolation reuses the sandbox) */
  wipeTmp: boolean
}

export interface FetchResultMessage {
  t: 'fetch-result'
  id: number
  fid: number
  response?: ShimResponse
  /** a public sentence: why the broker refused or failed the request */
  error?: string
}

export interface PingMessage { t: 'ping', id: number }

export type HostMessage = ExecMessage | FetchResultMessage | PingMessage

export interface ReadyMessage { t: 'ready' }

/** Sent after each execution's cleanup (wipe /tmp, next realm, maybe GC): ready for the next. */
export interface IdleMessage {
  t: 'idle'
  /** V8 heap bytes in use after the last between-executions collection */
  heap?: number
}

/** What one execution in a realm produced. */
export interface RealmOutcome {
  response?: ShimResponse
  error?: ShimError
  logs: string
  logsTruncated: boolean
  /** ms spent inside the function (module evaluation, handler, body, waitUntil) */
  execMs: number
  /** ms of shim work around it (realm creation, compilation, conversion) */
  setupMs: number
}

export interface ResultMessage extends RealmOutcome {
  t: 'result'
  id: number
  /** the shim collects garbage now and sends `idle` when done */
  gc?: boolean
}

export interface FetchMessage { t: 'fetch', id: number, fid: number, request: ShimRequest }

export interface PongMessage { t: 'pong', id: number }

export type ShimMessage = ReadyMessage | IdleMessage | ResultMessage | FetchMessage | PongMessage
