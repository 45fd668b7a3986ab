/**
 * Errors shared by every PeerHost component.
 *
 * `PeerHostError` carries a stable `code` (what programs branch on), `details` (plain data that
 * survives `structuredClone`) and an optional `cause`. Domain classes narrow the family:
 * `ProtocolError` here, `SandboxError` in `sandbox/`, `NodeError` and `ConfigError` in `node/`.
 *
 * Wire errors — the only error information that ever crosses to a peer or an HTTP client — are
 * the closed set `WIRE_ERROR_CODES`. Stacks and internal messages never leave the process.
 */

export interface PeerHostErrorOptions {
  details?: Record<string, unknown>
  cause?: unknown
}

export class PeerHostError extends Error {
  readonly code: string
  readonly details: Record<string, unknown>

  constructor (code: string, message: string, options: PeerHostErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'PeerHostError'
    this.code = code
    this.details = options.details ?? {}
  }
}

/** Codes raised while decoding or validating wire data. */
export const PROTOCOL_ERROR_CODES = {
  FRAME_TOO_LARGE: 'a frame exceeded the maximum frame size',
  MALFORMED: 'bytes did not decode as a PeerHost message',
  UNSUPPORTED_VERSION: 'the message version is not one this node speaks',
  UNKNOWN_TYPE: 'the message type is not known',
  INVALID_FIELD: 'a field is missing, of the wrong type, or out of range',
  LIMIT_EXCEEDED: 'a string, binary, array, map or nesting limit was exceeded',
  BAD_SIGNATURE: 'a signature did not verify',
  STALE: 'a timestamp is too old or too far in the future'
} as const

export type ProtocolErrorCode = keyof typeof PROTOCOL_ERROR_CODES

export class ProtocolError extends PeerHostError {
  declare readonly code: ProtocolErrorCode

  constructor (code: ProtocolErrorCode, message: string, options: PeerHostErrorOptions = {}) {
    super(code, message, options)
    this.name = 'ProtocolError'
  }
}

/**
 * The closed set of error codes that may cross the wire (job result frames, error frames and
 * HTTP JSON errors). Each names the HTTP status a gateway answers with and whether the fault is
 * the function's (user), the infrastructure's (infra: never slashable, retried elsewhere) or the
 * caller's (client).
 */
export const WIRE_ERROR_CODES = {
  BAD_REQUEST: { status: 400, kind: 'client', message: 'the request is malformed' },
  UNAUTHORIZED: { status: 401, kind: 'client', message: 'credentials are missing or invalid' },
  FORBIDDEN: { status: 403, kind: 'client', message: 'the credentials are valid but not allowed to call this function' },
  NOT_FOUND: { status: 404, kind: 'client', message: 'no such function' },
  PAYLOAD_TOO_LARGE: { status: 413, kind: 'client', message: 'the request body is too large' },
  HEADERS_TOO_LARGE: { status: 431, kind: 'client', message: 'the request headers are too large' },
  RATE_LIMITED: { status: 429, kind: 'client', message: 'too many requests' },
  PAYMENT_REQUIRED: { status: 402, kind: 'client', message: 'the project has no escrow or gateway allowance left for this request' },
  PROTOCOL: { status: 502, kind: 'infra', message: 'a peer sent a frame that broke the protocol' },
  UNSUPPORTED_VERSION: { status: 502, kind: 'infra', message: 'the peer speaks another protocol version' },
  TICKET_INVALID: { status: 502, kind: 'infra', message: 'the job ticket was rejected' },
  BUNDLE_UNAVAILABLE: { status: 502, kind: 'infra', message: 'the function bundle could not be fetched' },
  BUNDLE_MISMATCH: { status: 502, kind: 'infra', message: 'the function bundle does not match its CID' },
  BUNDLE_NOT_ACTIVE: { status: 502, kind: 'infra', message: 'the bundle is not the version of the function that FunctionRegistry says is active' },
  DUPLICATE_TICKET: { status: 502, kind: 'infra', message: 'the worker already answered (or is answering) a ticket for this gateway, job id and attempt' },
  OPTIONS_MISMATCH: { status: 502, kind: 'infra', message: 'the job options or env differ from the function\'s registered manifest' },
  OVERLOADED: { status: 503, kind: 'infra', message: 'the worker has no free capacity' },
  SHUTTING_DOWN: { status: 503, kind: 'infra', message: 'the worker is shutting down' },
  NO_WORKER: { status: 503, kind: 'infra', message: 'no worker is available' },
  WORKER_FAILED: { status: 502, kind: 'infra', message: 'every worker attempt failed' },
  QUORUM_DISAGREEMENT: { status: 502, kind: 'infra', message: 'the workers of a quorum function disagree: no output reached the majority' },
  DEADLINE_EXCEEDED: { status: 504, kind: 'infra', message: 'the request deadline passed' },
  SANDBOX_INFRA: { status: 502, kind: 'infra', message: 'the sandbox failed for a reason outside the function' },
  INTERNAL: { status: 500, kind: 'infra', message: 'internal error' },
  FUNCTION_ERROR: { status: 500, kind: 'user', message: 'the function threw an error' },
  RESULT_INVALID: { status: 502, kind: 'user', message: 'the function did not return a Response' },
  LIMIT_TIMEOUT: { status: 504, kind: 'user', message: 'the function exceeded its wall-clock limit' },
  LIMIT_CPU: { status: 508, kind: 'user', message: 'the function exceeded its CPU limit' },
  LIMIT_MEMORY: { status: 507, kind: 'user', message: 'the function exceeded its memory limit' },
  LIMIT_PIDS: { status: 508, kind: 'user', message: 'the function exceeded its process/thread limit' },
  LIMIT_RESPONSE_SIZE: { status: 502, kind: 'user', message: 'the function response exceeded its size limit' },
  LIMIT_LOG_SIZE: { status: 502, kind: 'user', message: 'the function wrote more logs than allowed' },
  LIMIT_SUBREQUESTS: { status: 502, kind: 'user', message: 'the function exceeded its outbound fetch limits' }
} as const satisfies Record<string, { status: number, kind: 'client' | 'user' | 'infra', message: string }>

export type WireErrorCode = keyof typeof WIRE_ERROR_CODES

export function isWireErrorCode (code: unknown): code is WireErrorCode {
  return typeof code === 'string' && Object.hasOwn(WIRE_ERROR_CODES, code)
}

/** The only shape of error that crosses the wire. `message` is a short public sentence. */
export interface WireError {
  code: WireErrorCode
  message: string
  /** plain, public data: measured and configured values of a limit, for example */
  details?: Record<string, string | number | boolean>
}
