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
export type ShimErrorCode = 'FUNCTION_ERROR' | 'RESULT_INVALID' | 'LIMIT_TIMEOUT' | 'LIMIT_CPU' | 'LIMIT_MEMORY' | 'LIMIT_RESPONSE_SIZE' | 'LIMIT_SUBREQUESTS'

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
  /**
   * The request is a WebSocket upgrade the host can hold open: a 101 answer starts a session
   * (`ws-open`, then `ws-in`/`ws-out`/`ws-close-*` until it ends) that may last this many ms
   * (`timeoutMs` bounds the handler until it answers). Without it a 101 answer is RESULT_INVALID.
   */
  session?: number
  /**
   * The host can relay a streamed body: a response body the function is still producing (or one
   * over STREAM_BUFFER_MAX_BYTES) goes out as `body-head` and `body-chunk` messages, at most this
   * many bytes in all (LIMIT_RESPONSE_SIZE beyond). Without it every body is read whole.
   */
  stream?: number
}

/**
 * The host forwarded `bytes` more of an execution's streamed body: the shim keeps at most
 * STREAM_WINDOW_BYTES unacknowledged, so a slow client makes the function's writes wait.
 */
export interface BodyAckMessage {
  t: 'body-ack'
  id: number
  bytes: number
  /** nobody reads the body any more (the client or the gateway went away): stop the stream */
  cancel?: true
}

/**
 * A message from the client to the function's WebSocket. Text travels as its UTF-8 bytes too: the
 * channel's JSON part is capped (1 MiB) and bytes go as attachments without escaping.
 */
export interface WsInMessage { t: 'ws-in', id: number, data: Uint8Array, binary: boolean }

/** The client closed, or the host ended the session (limits, shutdown): the function sees `close`. */
export interface WsCloseInMessage { t: 'ws-close-in', id: number, code: number, reason: string }

export interface FetchResultMessage {
  t: 'fetch-result'
  id: number
  fid: number
  response?: ShimResponse
  /** a public sentence: why the broker refused or failed the request */
  error?: string
}

export interface PingMessage { t: 'ping', id: number }

/**
 * The host passed on `bytes` more of what a session's function sent (`ws-out`): the shim keeps at
 * most SESSION_WINDOW_BYTES per session unacknowledged, so a slow client holds back only its own
 * session's messages (in the sandbox), never the sandbox's other sessions and executions.
 */
export interface WsAckMessage { t: 'ws-ack', id: number, bytes: number }

export type HostMessage = ExecMessage | FetchResultMessage | PingMessage | WsInMessage | WsCloseInMessage | BodyAckMessage | WsAckMessage

export interface ReadyMessage { t: 'ready' }

/**
 * Sent after a cleanup that collected garbage (the result said `gc`): ready for the next. A
 * cleanup without a collection (wipe /tmp, next realm) takes well under a millisecond and is not
 * announced: under gVisor's ptrace platform every write is a round trip through the tracer.
 */
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
  /**
   * Body bytes sent as `body-chunk` when the body was streamed (then `response.body` is empty and
   * an `error` means the stream was cut after its head went out).
   */
  streamed?: number
}

export interface ResultMessage extends RealmOutcome {
  t: 'result'
  id: number
  /** the shim collects garbage now and sends `idle` when done */
  gc?: boolean
}

export interface FetchMessage { t: 'fetch', id: number, fid: number, request: ShimRequest }

export interface PongMessage { t: 'pong', id: number }

/** The function answered an upgrade with 101 and an accepted WebSocket: the session is open. */
export interface WsOpenMessage { t: 'ws-open', id: number, headers: Array<[string, string]> }

/** The function sent a message to the client. */
export interface WsOutMessage { t: 'ws-out', id: number, data: Uint8Array, binary: boolean }

/**
 * The shim's event loop finished delivering one `ws-in` (the function's message listeners ran):
 * a `ws-in` left unanswered past the function's `timeoutMs` means a listener holds the CPU, and
 * the host ends the sandbox (CPU per event, issue 12).
 */
export interface WsDoneMessage { t: 'ws-done', id: number }

/** The function closed its WebSocket; the execution's `result` follows. */
export interface WsCloseOutMessage { t: 'ws-close-out', id: number, code: number, reason: string }

/** The function's body is a stream: its status and headers, before any `body-chunk`. */
export interface BodyHeadMessage { t: 'body-head', id: number, status: number, headers: Array<[string, string]> }

/** The next piece of a streamed body (at most STREAM_CHUNK_BYTES). */
export interface BodyChunkMessage { t: 'body-chunk', id: number, data: Uint8Array }

export type ShimMessage = WsDoneMessage | BodyHeadMessage | BodyChunkMessage | ReadyMessage | IdleMessage | ResultMessage | FetchMessage | PongMessage | WsOpenMessage | WsOutMessage | WsCloseOutMessage

/** Largest `body-chunk`: the wire's LIMITS.maxStreamChunkBytes (this folder imports nothing else). */
export const STREAM_CHUNK_BYTES = 256 * 1024
/**
 * Body bytes the shim sends ahead of the host's `body-ack`: enough to keep the pipe busy (four
 * chunks), small enough that a client that stops reading stops the function within ~1 MiB.
 */
export const STREAM_WINDOW_BYTES = 4 * 1024 * 1024
/**
 * Bytes of `ws-out` one session may have unacknowledged by the host: the worker's own high-water
 * mark (NODE_DEFAULTS.sessionHighWaterBytes, 1 MiB) stops its acks, so at most this much more
 * waits in the worker per session.
 */
export const SESSION_WINDOW_BYTES = 1024 * 1024
/**
 * Bytes a session's function may have sent and the shim holds back (its client reads too slowly)
 * before the shim closes that session alone with WS_SLOW_CLIENT_CODE: sessions of one function
 * version share a sandbox, and one client that never reads must not fill the memory they share.
 * Four of the largest messages (1 MiB).
 */
export const SESSION_QUEUE_MAX_BYTES = 4 * 1024 * 1024
/** Close code of a session whose client read too slowly (RFC 6455 1008: policy violation). */
export const WS_SLOW_CLIENT_CODE = 1008

/**
 * A body the function already holds whole and that is no larger than this is sent in the
 * `result`, as before streaming existed (the fast path); anything larger, or still being
 * produced, is streamed.
 */
export const STREAM_BUFFER_MAX_BYTES = 1024 * 1024
