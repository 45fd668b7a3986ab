/**
 * Protocol ids, topic names and every limit of the wire protocol, each with its reason.
 * Node-level defaults (ports, intervals, pool sizes) live in `node/constants.ts`; this module holds
 * only what two peers must agree on.
 */

/** The message version every frame carries (`v`). Bumped on any incompatible change. */
export const PROTOCOL_VERSION = 1

/** Direct stream protocol for jobs: gateway → worker request frame, worker → gateway result frame. */
export const JOB_PROTOCOL = '/peerhost/job/1.0.0'

/**
 * Direct stream protocol a worker uses to fetch a bundle it does not hold from the gateway that
 * dispatched the job (content-addressed, verified against the CID). Bitswap takes over once
 * bundles live in IPFS; this stays as the fast path from the dispatching gateway.
 */
export const BUNDLE_PROTOCOL = '/peerhost/bundle/1.0.0'

/**
 * Direct stream protocol a worker uses on the chain fallback path to get the secrets of a job it
 * took a slot of: worker → gateway `secrets-request` (the job's input document CID), gateway →
 * worker `secrets`. The gateway answers only staked workers it admitted, only while that request
 * is pending; the secrets never enter the public input document.
 */
export const SECRETS_PROTOCOL = '/peerhost/secrets/1.0.0'

/**
 * Gossip topic for worker adverts. Kept behind `workersTopic(region)` so adverts can be sharded by
 * region (ARCHITECTURE §12) without changing callers; `global` is the one region until then.
 */
export const WORKERS_TOPIC_PREFIX = '/peerhost/workers/1'
export const DEFAULT_REGION = 'global'
export function workersTopic (region: string = DEFAULT_REGION): string {
  return `${WORKERS_TOPIC_PREFIX}/${region}`
}

export const LIMITS = {
  /**
   * Largest WebSocket message on a session stream (and the gateway's `maxPayload`): 1 MiB, as
   * Cloudflare Workers allow; a larger one closes the client with 1009.
   */
  maxWsMessageBytes: 1024 * 1024,
  /**
   * Largest body chunk of a streamed response (`stream-chunk`): 256 KiB keeps a frame small next to
   * the job stream's flow-control window, so one chunk never stalls behind another for long.
   */
  maxStreamChunkBytes: 256 * 1024,
  /**
   * Most body bytes one streamed response may carry (LIMIT_RESPONSE_SIZE beyond; a worker may set
   * less): 1 GiB covers large downloads and long SSE feeds while bounding what one request costs.
   */
  maxStreamBytes: 1024 * 1024 * 1024,
  /**
   * Largest job request or result frame. Function bodies are capped at 6 MiB (like AWS Lambda's
   * synchronous payload) plus headers and envelope; anything bigger travels through IPFS.
   */
  maxFrameBytes: 8 * 1024 * 1024,
  /** Largest advert on gossip: a signed advert is ~200–600 bytes; 4 KiB leaves room for warm lists. */
  maxAdvertBytes: 4 * 1024,
  /** Largest bundle frame on the bundle protocol (bundles are small JS; 16 MiB is generous). */
  maxBundleBytes: 16 * 1024 * 1024,
  /** Longest string in a decoded message: header values and paths never need more. */
  maxStringBytes: 64 * 1024,
  /** Largest binary field: a request or response body. */
  maxBinaryBytes: 7 * 1024 * 1024,
  /** Most elements in an array (header lists, warm function lists). */
  maxArrayLength: 1024,
  /** Most keys in a map (env variables, details). */
  maxMapSize: 256,
  /** Deepest nesting: our messages are at most 5 levels deep; 16 bounds recursion on hostile input. */
  maxDepth: 16,
  /** Most multiaddrs in one advert: a node listens on a few transports and interfaces (TCP, WS, IPv4/6). */
  maxAdvertAddrs: 16,
  /** Most warm functions listed in one advert (bounded so the advert fits maxAdvertBytes). */
  maxWarmFunctions: 32,
  /** Adverts older than this are stale: a worker re-adverts every few seconds. */
  advertMaxAgeMs: 30_000,
  /** Adverts this far in the future are rejected: tolerates modest clock skew between nodes. */
  advertMaxFutureMs: 5_000,
  /** Request body limit enforced by gateways before canonicalization. */
  maxRequestBodyBytes: 6 * 1024 * 1024,
  /** Response body limit a worker enforces on a function's Response. */
  maxResponseBodyBytes: 6 * 1024 * 1024,
  /** Most headers in a request or response. */
  maxHeaders: 128,
  /** Total header bytes of an HTTP request (431 above it); Node's own default is 16 KiB. */
  maxHeaderBytes: 16 * 1024,
  /** Longest captured log stream per execution; beyond it logs are truncated and flagged. */
  maxLogBytes: 64 * 1024,
  /** Longest job deadline a gateway may ask for. */
  maxDeadlineMs: 5 * 60_000,
  /**
   * How far a worker's clock may trail a gateway's: a worker refuses a ticket whose deadline lies
   * more than maxDeadlineMs + this in its own future. Without that bound a ticket could be
   * presented again once the worker's receipt log had pruned it (or lost it to a power loss past
   * the reboot guard), and a second receipt for the same key is an equivocation the worker is
   * slashed for.
   */
  ticketClockSkewMs: 60_000,
  /**
   * Most msgpack values (of any kind) in one frame. The largest legitimate frame, a job with 128
   * headers and 256 env entries, holds ~1,500; without this an 8 MiB frame of one-byte values
   * would expand into millions of JavaScript values (an allocation amplification attack).
   */
  maxValues: 16_384,
  /**
   * Highest `attempt` of a job. Gateways retry a handful of times (node default 3); 16 leaves room
   * for policy changes while keeping ticket fields small and retry storms bounded.
   */
  maxAttempts: 16,
  /**
   * Segments one WebSocket session may have (one per Settlement epoch it lasts, docs/chain.md): a
   * bound on the `segment` field, far above a session's length over the shortest epoch.
   */
  maxSessionSegments: 1_000_000,
  /** Highest advertised capacity or load: far above what one machine runs, so a bogus advert stands out. */
  maxWorkerCapacity: 10_000,
  /** Highest advertised session count or session cap: idle sessions cost memory only, so far more than jobs. */
  maxWorkerSessions: 1_000_000,
  /** Longest public error sentence on the wire: wire messages are short fixed sentences, never stacks. */
  maxErrorMessageBytes: 1024,
  /** Longest bundle CID, peer id or allowed host string (a CIDv1 base32 sha2-256 is 59 characters). */
  maxIdBytes: 256,
  /** Largest `memoryMb` a job may ask for: the same bound as peerhost.json and the manifest. */
  maxMemoryMb: 2048,
  /**
   * Largest job timing (queue, execution, sandbox ms): a job never outlives maxDeadlineMs; twice
   * that tolerates clock jitter around the deadline.
   */
  maxTimingMs: 2 * 5 * 60_000,
  /** Largest value of one secret (Cloudflare Workers allows 5 KiB too). */
  maxSecretBytes: 5 * 1024,
  /** Most secrets a project may hold; they travel in every job frame of that project. */
  maxSecrets: 64,
  /** Longest secret or env variable name. */
  maxEnvNameBytes: 64
} as const

/**
 * How far in a worker's future a ticket's deadline may lie: the longest job deadline plus clock
 * skew. A worker refuses a ticket beyond it, so no ticket outlives what the receipt log's reboot
 * guard and retention cover; the devnet removes a previous run's logs only this long after their
 * last write.
 */
export const TICKET_HORIZON_MS = LIMITS.maxDeadlineMs + LIMITS.ticketClockSkewMs

/**
 * Request headers that enter the canonical request encoding (and so `inputHash`). Hop-by-hop and
 * per-connection headers (host, connection, user-agent, x-forwarded-*) are left out so the same
 * logical request hashes the same on every gateway.
 */
export const HASHED_REQUEST_HEADERS = [
  'accept',
  'accept-language',
  'authorization',
  'content-type',
  'cookie',
  'if-match',
  'if-none-match',
  'origin',
  'range'
] as const

/** Prefix of headers PeerHost sets on responses; functions may not set these themselves. */
export const PEERHOST_HEADER_PREFIX = 'x-peerhost-'

/**
 * Bounds of function options (`FunctionOptions`), the one place peerhost.json validation, the
 * deploy manifest and the wire validator read them from (protocol/options.ts), so a value a
 * builder cannot configure can never reach a worker either.
 */
export const FUNCTION_OPTION_BOUNDS = {
  /**
   * peerhost.json `websocket`: a function's own session limits, each at most what the gateway
   * allows (the gateway applies the lower of the two). Message size: 1 byte to the wire's
   * LIMITS.maxWsMessageBytes; idle timeout from 1 s (a heartbeat every second is the least a
   * client can keep up) to 1 h; session length from 1 s to 24 h; messages per second 1–100,000;
   * concurrent sessions per function on one gateway 1–1,000,000.
   */
  websocket: {
    maxMessageBytes: { min: 1, max: LIMITS.maxWsMessageBytes },
    idleTimeoutMs: { min: 1_000, max: 3_600_000 },
    maxSessionMs: { min: 1_000, max: 86_400_000 },
    messagesPerSecond: { min: 1, max: 100_000 },
    maxSessions: { min: 1, max: 1_000_000 }
  },
  /** 16 MB runs a trivial function; 2048 MB is the most a worker's sandbox grants (LIMITS.maxMemoryMb). */
  memoryMb: { min: 16, max: LIMITS.maxMemoryMb },
  /** 10 ms is below any useful function; the longest job deadline bounds the rest. */
  timeoutMs: { min: 10, max: LIMITS.maxDeadlineMs },
  /** Hosts in one allow-list: a function talks to a handful of APIs; 64 leaves room for wildcards and ports. */
  maxNetworkHosts: 64,
  /** Longest allowed host entry (a DNS name is at most 253 characters, plus `*.` and `:port`). */
  maxHostBytes: 261,
  /**
   * `verify: { quorum: n }`: n distinct workers run each request and the majority ⌈(n+1)/2⌉ answers.
   * 2 is the least that can detect a lie (both must agree); 15 bounds what one request may cost the
   * builder (n tickets) and the mesh (n executions).
   */
  quorum: { min: 2, max: 15 }
} as const
