/**
 * Wire message types. Every message carries `v` (PROTOCOL_VERSION) and `type`.
 * Binary fields are `Uint8Array`; hashes, addresses and signatures are `0x` hex strings (they are
 * handed to viem and the contracts as such); peer ids are base58 strings.
 *
 * Decoding (codec.ts) validates every field against these shapes and rejects anything else with
 * a `ProtocolError`; see `validate.ts`.
 */
import type { WireError } from './errors.ts'
import type { Address, Hex } from 'viem'

/** A request as a worker sees it: what the canonical encoding and `inputHash` cover, plus `url`. */
export interface WireRequest {
  method: string
  /** absolute URL as the function will see it in `request.url` */
  url: string
  /** lower-cased names, in arrival order; repeated names allowed */
  headers: Array<[string, string]>
  body: Uint8Array
}

export interface WireResponse {
  status: number
  headers: Array<[string, string]>
  body: Uint8Array
}

/** The function a job runs, fully named and pinned to a bundle. */
export interface FunctionRef {
  /** `0x` wallet address of the owner */
  wallet: Address
  project: string
  name: string
  /** EIP-712 `functionId` (see eip712.ts) */
  id: Hex
  /** CIDv1 (raw, sha2-256) of the bundle bytes */
  bundleCid: string
}

/** Per-function execution options the gateway forwards (from peerhost.json). */
export interface FunctionOptions {
  memoryMb: number
  timeoutMs: number
  /** hosts the function may `fetch()`; empty = no network */
  network: string[]
  isolation: 'function' | 'execution'
}

/** Worker advert, gossiped on `workersTopic()` every few seconds. */
export interface WorkerAdvert {
  v: number
  type: 'advert'
  /** base58 libp2p peer id of the worker; must equal the gossip message's `from` */
  peerId: string
  /** secp256k1 address that signs this worker's receipts */
  address: Address
  /** multiaddrs the worker listens on (without /p2p/), so gateways can dial it for job streams */
  addrs: string[]
  /** jobs the worker runs at once */
  capacity: number
  /** jobs running now */
  load: number
  /**
   * WebSocket sessions held now, and the most the worker holds: sessions take no job slot, so
   * gateways spread them by these. Optional so adverts from workers that predate them stay valid.
   */
  sessions?: number
  maxSessions?: number
  /**
   * Set when the worker's admission queue is full (a new job would be refused with OVERLOADED, or
   * could not start within its share of any deadline): gateways send it no job until an advert
   * without it. Optional so adverts from workers that predate it stay valid.
   */
  full?: boolean
  /**
   * The worker's price per request: the ticket fee (wei, uint256 as a decimal string) it accepts at
   * least. Absent means it works for free (adverts from workers that predate settlement).
   */
  price?: string
  /**
   * The worker's metered price for a WebSocket session, on top of `price` (which the session's
   * opening ticket pays): wei per message (either way) and per minute of session time, uint256 as
   * decimal strings ('0' allowed). The gateway pays it with cumulative `ticket` frames during the
   * session. Absent means sessions cost `price` only (adverts from workers that predate it).
   */
  sessionPrice?: SessionPrice
  /** bundle CIDs with a warm sandbox */
  warm: string[]
  /** unix ms when the advert was made */
  ts: number
  /** monotonically increasing per worker; older sequence numbers are ignored */
  seq: number
  /** Ed25519 signature by the peer key over the advert encoded without `sig` */
  sig: Uint8Array
}

/** A session's metered price (WorkerAdvert.sessionPrice). */
export interface SessionPrice {
  /** wei per WebSocket message, counted both ways */
  perMessage: string
  /** wei per minute of session time (accrued per millisecond, rounded down) */
  perMinute: string
}

/** Job request frame, gateway → worker on JOB_PROTOCOL. */
export interface JobRequest {
  v: number
  type: 'job'
  /** bytes32 hex, one per HTTP request; the same across retry attempts */
  jobId: Hex
  /** 1 for the first worker, +1 for each retry */
  attempt: number
  fn: FunctionRef
  options: FunctionOptions
  request: WireRequest
  /** keccak256 of the canonical request encoding */
  inputHash: Hex
  /** public configuration; secrets arrive in `secrets` and are never persisted */
  env: Record<string, string>
  /**
   * The project's decrypted secrets, for this one execution only: absent when the project has
   * none. They travel only on the Noise-encrypted job stream, are not covered by the ticket,
   * `inputHash` or the receipt, and a worker must never write them to disk or logs. In `env` the
   * function sees them merged over the public variables.
   */
  secrets?: Record<string, string>
  /** unix ms after which the worker must not start (and must stop) the execution */
  deadline: number
  /** EIP-712 ticket fields that are not already above (see eip712.ts `Ticket`) */
  ticket: { worker: Address, gateway: Address, fee: string, epoch: string, deadline: string }
  /** gateway's EIP-712 signature over the ticket */
  ticketSig: Hex
  /**
   * A WebSocket upgrade: the job stream stays open for the session. The worker answers with
   * `session-open` (the function accepted) and then `ws` / `ws-close` frames both ways until
   * `session-end`, or with a `result` (the function answered without a WebSocket) or `error`.
   */
  session?: true
}

export interface JobTimings {
  /** ms from frame arrival to execution start (bundle fetch, sandbox acquisition) */
  queueMs: number
  /** ms inside the function */
  execMs: number
  /** ms of sandbox overhead around the function (realm setup, transfer) */
  sandboxMs: number
}

/** Job result frame, worker → gateway on JOB_PROTOCOL. Exactly one per request frame. */
export interface JobResult {
  v: number
  type: 'result'
  jobId: Hex
  attempt: number
  /** the function's response, or absent when `error` is set */
  response?: WireResponse
  /** a wire error when the execution did not produce a response */
  error?: WireError
  /** captured console output, bounded by LIMITS.maxLogBytes */
  logs: string
  logsTruncated: boolean
  timings: JobTimings
  /** keccak256 of the canonical response encoding, or of the error code when `error` is set */
  outputHash: Hex
  /** worker's EIP-712 signature over the Receipt for this job */
  receiptSig: Hex
}

/** Error frame: sent instead of a result when the request frame itself is unacceptable. */
export interface ErrorMessage {
  v: number
  type: 'error'
  jobId?: Hex
  error: WireError
}

/** Bundle request frame, worker → gateway on BUNDLE_PROTOCOL. */
export interface BundleRequest {
  v: number
  type: 'bundle-request'
  cid: string
}

/** Bundle response frame, gateway → worker on BUNDLE_PROTOCOL. */
export interface BundleResponse {
  v: number
  type: 'bundle'
  cid: string
  bytes: Uint8Array
}

/** Secrets request frame, worker → gateway on SECRETS_PROTOCOL (chain fallback path). */
export interface SecretsRequest {
  v: number
  type: 'secrets-request'
  /** CID of the chain request's input document, as in `requestExecution` */
  inputCid: string
}

/** Secrets response frame, gateway → worker on SECRETS_PROTOCOL. */
export interface SecretsResponse {
  v: number
  type: 'secrets'
  inputCid: string
  /** the project's secrets for this one execution (see JobRequest.secrets) */
  secrets: Record<string, string>
}

/** Worker → gateway: the function accepted the WebSocket; the gateway completes the upgrade. */
export interface SessionOpen {
  v: number
  type: 'session-open'
  jobId: Hex
  attempt: number
  /** the function's 101 response headers (the gateway forwards the safe ones) */
  headers: Array<[string, string]>
}

/** One WebSocket message, either way on a session's job stream. Text travels as its UTF-8 bytes. */
export interface WsFrame {
  v: number
  type: 'ws'
  binary: boolean
  /** at most LIMITS.maxWsMessageBytes */
  data: Uint8Array
}

/** A WebSocket close, either way: the client's, the function's, or the gateway's (limits). */
export interface WsClose {
  v: number
  type: 'ws-close'
  /** 1000–4999 */
  code: number
  /** at most 123 bytes of UTF-8 (a close frame's payload limit) */
  reason: string
  /**
   * Gateway → worker only: how many function → client messages the gateway delivered before the
   * client's socket stopped taking them (its Close, or the gateway's own). Messages the function sent
   * after those never reached the client; the worker signs the transcript of the delivered ones.
   */
  delivered?: number
}

/**
 * What a session's receipt covers: two running hashes, one per direction (each side sees its
 * own direction's order exactly; the interleaving of the two is not observable by both), and the
 * counts. See transcript.ts.
 */
export interface TranscriptSummary {
  /** SHA-256 chain over client → function messages (transcript.ts) */
  inHash: Hex
  /** SHA-256 chain over function → client messages */
  outHash: Hex
  messagesIn: number
  messagesOut: number
  bytesIn: number
  bytesOut: number
}

/**
 * Gateway → worker, during a session: a cumulative ticket. The same EIP-712 Ticket as the job's
 * opening one (same jobId, attempt, jobHash, epoch, deadline, worker, gateway) with a higher `fee`:
 * everything the session owes so far, not an increment. The worker keeps the highest valid one
 * (durably) and settles it; a lower, equal or badly signed one is ignored.
 */
export interface SessionTicket {
  v: number
  type: 'ticket'
  jobId: Hex
  attempt: number
  /** cumulative fee, wei (uint256 as a decimal string) */
  fee: string
  /** the gateway's EIP-712 signature over the job's ticket with this fee */
  ticketSig: Hex
}

/**
 * Gateway → worker, during a session, when Settlement's epoch of the session's current segment has
 * ended (docs/chain.md "Sessions that outlive their epoch"): the final cumulative ticket of segment
 * `segment - 1` (`closeFee`, `closeSig`: the EIP-712 Ticket of that segment, as a `ticket` frame's)
 * and the opening ticket of segment `segment`, a ticket of its own job id
 * `segmentJobId(jobId, segment)` (Settlement counts one (gateway, project, jobId) once, so each
 * segment is its own leaf), with the same jobHash and deadline, the new `epoch`, and a `fee` of what
 * the session owes beyond what the earlier segments were paid. Later `ticket` frames raise this
 * segment's fee (cumulative within the segment; their `jobId` is the segment's).
 */
export interface SegmentFrame {
  v: number
  type: 'segment'
  /** the session's job id (its opening ticket's) */
  jobId: Hex
  attempt: number
  /** the segment this frame opens, 1 and up */
  segment: number
  /** the closing segment's final cumulative fee, wei (uint256, decimal) */
  closeFee: string
  /** the gateway's signature over the closing segment's ticket at `closeFee` */
  closeSig: Hex
  /** segmentJobId(jobId, segment) */
  segmentJobId: Hex
  /** Settlement's epoch of the new segment (uint64, decimal) */
  epoch: string
  /** the new segment's opening fee, wei (uint256, decimal) */
  fee: string
  /** the gateway's signature over the new segment's ticket */
  ticketSig: Hex
}

/**
 * Worker → gateway: a segment of the session was closed (on the gateway's `segment` frame, or by
 * the worker itself when none came in time); its receipt is in the worker's receipt log. The
 * receipt signs segment `segment`'s ticket at `fee` with the transcript so far (a prefix of the
 * session's: the hash runs on across segments).
 */
export interface SegmentEnd {
  v: number
  type: 'segment-end'
  /** the session's job id */
  jobId: Hex
  attempt: number
  /** the segment closed, 0 = the opening one */
  segment: number
  /** the ticket fee the receipt signs (the segment's highest cumulative ticket) */
  fee: string
  transcript: TranscriptSummary
  /** transcriptOutputHash(transcript) */
  outputHash: Hex
  receiptSig: Hex
}

/** Worker → gateway: the session ended; the receipt's outputHash is the transcript's hash. */
export interface SessionEnd {
  v: number
  type: 'session-end'
  jobId: Hex
  attempt: number
  transcript: TranscriptSummary
  /** transcriptOutputHash(transcript) */
  outputHash: Hex
  receiptSig: Hex
  /**
   * The ticket fee the receipt signs: the highest cumulative `ticket` the worker accepted. Absent
   * when it is the opening ticket's fee.
   */
  fee?: string
  /** the segment whose ticket the receipt signs, when the session was segmented (absent = 0) */
  segment?: number
  logs: string
  logsTruncated: boolean
  /** set when the execution failed (e.g. LIMIT_CPU, the sandbox died) */
  error?: WireError
}

/**
 * Worker → gateway, instead of a `result`: the function's response body is a stream that is
 * still being produced. `stream-chunk` frames follow, then exactly one `stream-end`.
 */
export interface StreamHead {
  v: number
  type: 'stream-head'
  jobId: Hex
  attempt: number
  status: number
  headers: Array<[string, string]>
}

/** Worker → gateway: the next piece of a streamed body (at most LIMITS.maxStreamChunkBytes). */
export interface StreamChunk {
  v: number
  type: 'stream-chunk'
  data: Uint8Array
}

/**
 * Worker → gateway: the streamed body ended (or was cut: `error` set). The receipt's outputHash
 * is `streamOutputHash` over the status, the SHA-256 of every body byte sent, their count and the
 * error code (transcript.ts); the gateway recomputes it from what it relayed.
 */
export interface StreamEnd {
  v: number
  type: 'stream-end'
  jobId: Hex
  attempt: number
  /** body bytes sent in `stream-chunk` frames */
  bytes: number
  /** SHA-256 of those bytes, in order */
  bodyHash: Hex
  outputHash: Hex
  receiptSig: Hex
  logs: string
  logsTruncated: boolean
  timings: JobTimings
  /** set when the stream was cut (LIMIT_RESPONSE_SIZE, LIMIT_TIMEOUT, FUNCTION_ERROR, …) */
  error?: WireError
}

export type Message = WorkerAdvert | JobRequest | JobResult | ErrorMessage | BundleRequest | BundleResponse | SecretsRequest | SecretsResponse | SessionOpen | WsFrame | WsClose | SessionTicket | SegmentFrame | SegmentEnd | SessionEnd | StreamHead | StreamChunk | StreamEnd
export type MessageType = Message['type']
