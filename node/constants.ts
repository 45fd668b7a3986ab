/**
 * Node defaults (intervals, timeouts, connection limits), each with its reason. Wire limits that
 * two peers must agree on live in protocol/constants.ts.
 */
export const NODE_DEFAULTS = {
  /** Adverts every 2 s: a gateway sees load changes quickly and a dead worker ages out in ~3 adverts. */
  advertIntervalMs: 2_000,
  /** A worker not heard from for this long leaves the gateway's view. */
  workerExpiryMs: 7_000,
  /** Jobs a worker runs at once: 2 cores here, and sandboxes are mostly waiting on I/O. */
  workerCapacity: 8,
  /** Jobs a worker queues per unit of capacity before answering OVERLOADED: absorbs bursts without unbounded memory. */
  workerQueueFactor: 4,
  /**
   * Longest a job waits in a worker's queue. Past it (or when the expected wait is longer) the worker
   * answers OVERLOADED at once: a quick refusal leaves the gateway time to try a worker with room or
   * to answer 503 fast (issue 10: within 100 ms), where a long wait would only turn into a timeout
   * (queueing collapse). Bursts shorter than this are still absorbed.
   */
  workerMaxQueueMs: 100,
  /** Share of a job's remaining deadline it may spend queued (a short deadline queues for less). */
  workerQueueShare: 0.25,
  /** Weight of the newest sample in a worker's moving average of job service time (drives the expected queue wait). */
  serviceAlpha: 0.2,
  /** A worker whose queue fills or drains re-adverts at once, but not more often than this (gossip is shared). */
  fullAdvertMinIntervalMs: 200,
  /**
   * A gateway sends nothing to a worker that answered OVERLOADED for this long, unless a newer
   * advert says it has room again.
   */
  overloadBackoffMs: 1_000,
  /**
   * Retry budget (as gRPC retry throttling and Finagle's RetryBudget): retries may add at most this
   * share of first attempts made in the last retryBudgetWindowMs. A failing mesh then costs 1.1× the
   * attempts, not maxAttempts× (a retry storm is what turns an overload into a collapse).
   */
  retryBudgetRatio: 0.1,
  /** Sliding window of the retry budget. */
  retryBudgetWindowMs: 10_000,
  /** Retries always allowed per window, so a quiet gateway still retries one failed worker. */
  retryBudgetMinRetries: 3,
  /** `Retry-After` (seconds) on a 503 OVERLOADED: long enough for a worker's queue to drain. */
  overloadRetryAfterSec: 1,
  /**
   * Time past a function's own limit (timeoutMs) a worker gets to report the limit error before the
   * gateway calls the attempt failed: sandbox start, the kill and the answer's way back.
   */
  limitGraceMs: 1_000,
  /**
   * Least time left on a request for the gateway to ask the chain fallback: a request, a commit and
   * a reveal in three blocks, then the output fetch (an automining devnet; Polygon needs far more).
   */
  chainPathMinMs: 3_000,
  /** Default request deadline when a function sets no timeout: API gateways commonly use 30 s. */
  requestTimeoutMs: 30_000,
  /** Default per-function wall-clock limit (peerhost.json `timeoutMs`). */
  functionTimeoutMs: 10_000,
  /** Default per-function memory limit (peerhost.json `memoryMb`), Cloudflare Workers' 128 MB. */
  functionMemoryMb: 128,
  /**
   * Attempts per request: the first worker plus two retries. More would mostly repeat a failure
   * caused by the function itself.
   */
  maxAttempts: 3,
  /**
   * Share of the remaining deadline one attempt may use before the gateway moves on, unless it
   * is the last attempt. A stalled worker thus costs at most half of what is left.
   */
  attemptShare: 0.5,
  /** Floor for one attempt's budget, so a short deadline still gives a warm worker time to answer. */
  minAttemptMs: 250,
  /** Time to open a job stream (dial + protocol negotiation) before trying the next worker. */
  dialTimeoutMs: 2_000,
  /** Time to fetch a bundle from the dispatching gateway. */
  bundleFetchTimeoutMs: 5_000,
  /** Most connections a node keeps: a gateway talks to every worker of its region (≤ 1,000 per topic). */
  maxConnections: 1_200,
  /** Unfinished inbound handshakes held at once; bounds handshake floods (P2P-03). */
  maxIncomingPendingConnections: 64,
  /** Inbound job streams per connection at once: a gateway never needs more than a worker's capacity × 4. */
  maxInboundJobStreams: 64,
  /** Outbound job streams per connection at once. */
  maxOutboundJobStreams: 256,
  /**
   * A worker ends a job stream idle this long. Gateways keep idle job streams for reuse (a new
   * stream costs a peer-store write on both ends, more than a small job), for less than this.
   */
  jobStreamIdleMs: 30_000,
  /** How long a gateway keeps an idle job stream for reuse: well inside the worker's idle limit. */
  jobStreamReuseMs: 10_000,
  /** Idle job streams a gateway keeps per worker. */
  jobStreamPoolSize: 16,
  /** Jobs kept in the gateway's recent-jobs list on /_peerhost/status. */
  recentJobs: 50,
  /** Seconds of requests-per-second and latency history the status page (/_peerhost/) charts: five minutes is what an operator watching a deploy looks back over. */
  statusSeriesSeconds: 300,
  /** How often the status page's event stream pushes a point: once a second matches the chart's resolution. */
  statusTickMs: 1000,
  /** Request samples the status page keeps at most (about 3 MB at 16 B each): bounds memory under a flood. */
  statusMaxSamples: 200_000,
  /** Open status page event streams per node: each costs a timer tick of JSON; more are refused with 503. */
  statusMaxStreams: 32,
  /** Latency samples a gateway keeps per worker for its moving average. */
  latencyAlpha: 0.2,
  /** Gateway HTTP request timeout when a client sends its body too slowly (slowloris, GW-03). */
  httpRequestTimeoutMs: 60_000,
  /** Gateway HTTP header timeout. */
  httpHeadersTimeoutMs: 10_000,
  /** How long graceful shutdown waits for running jobs. */
  drainTimeoutMs: 10_000,
  /**
   * A worker re-reads a project's active version from FunctionRegistry at most this long after its
   * last read even when every job matches: bounds how long a rolled-back bundle stays runnable.
   */
  registryCheckTtlMs: 5_000,
  /**
   * After a worker sees a project's active version change, it still runs the version just before
   * for this long: jobs a gateway dispatched across a deploy or rollback do not fail.
   */
  registryCheckGraceMs: 30_000,
  /** Projects whose active version a worker keeps in memory (least recently used dropped). */
  registryCheckMaxProjects: 4_096,
  /** Parsed manifests (function → bundle CID) a worker keeps in memory (least recently used dropped). */
  registryCheckMaxManifests: 1_024,
  /**
   * How often node:http checks connections against headersTimeout and requestTimeout. Its default
   * (30 s) would let a slowloris socket live up to 30 s past its timeout.
   */
  httpConnectionsCheckIntervalMs: 1_000,
  /**
   * Open HTTP connections a gateway holds at once (GW-03). Far below a typical 65,536 file
   * descriptor limit, leaving room for libp2p (maxConnections) and the blockstore.
   */
  gatewayMaxConnections: 10_000,
  /**
   * Open HTTP connections per client IP (IPv6: per /64, which one host gets for free). A browser
   * opens about 6 per origin; 256 leaves room for an office or carrier NAT, while one host cannot
   * take more than a few percent of gatewayMaxConnections.
   */
  gatewayMaxConnectionsPerIp: 256,
  /**
   * Requests a gateway handles at once (GW-07 floods). Each may hold a body of up to
   * LIMITS.maxRequestBodyBytes (6 MiB) while it is dispatched: 1,024 bound that at 6 GiB in the
   * worst case, and far exceed what a region's workers run at once today.
   */
  gatewayMaxRequests: 1_024,
  /** Requests one client IP (IPv6 /64) has in flight at once: a quarter of the gateway's, so four hosts are needed to fill it. */
  gatewayMaxRequestsPerIp: 256,
  /**
   * Requests per client IP per window at the gateway (`--ip-rate-limit`). Off by default (0): one
   * IP may be a large NAT, and the devnet and benchmarks send everything from 127.0.0.1; operators
   * on the internet should set it.
   */
  gatewayIpRateRequests: 0,
  /** The window of the per-IP rate limit, in seconds. */
  gatewayIpRatePerSeconds: 1,
  /** Retry-After (seconds) of a 429 for a concurrency cap: in-flight requests usually end within a second. */
  gatewayRetryAfterSec: 1,
  /** Client keys (IPs, projects) a rate limiter remembers; the least recently seen is forgotten first, bounding memory under a spoofed-source flood. */
  rateLimiterMaxKeys: 100_000,
  /**
   * How long a gateway trusts a project's owner read from FunctionRegistry.ownerOf before reading
   * it again: a transfer takes effect for secrets and logs within this time.
   */
  projectOwnerTtlMs: 5_000,
  /**
   * How far a wallet-signed request's timestamp (`x-peerhost-signature`, node/auth) may be from the
   * gateway's clock, in seconds: long enough for a loaded client and ordinary clock drift, short
   * enough that the seen-signature cache only has to remember this window twice over.
   */
  authRequestSkewSec: 60,
  /**
   * Signed requests a gateway remembers to refuse replays (per gateway, the oldest forgotten first).
   * At 100,000 entries of ~100 bytes this is ~10 MB; a flood beyond it within one window could
   * make the gateway forget an entry, so a full cache refuses new signatures instead of evicting
   * ones still inside the window.
   */
  authSeenMax: 100_000,
  /** Largest clock difference a builder's signed api-key change tolerates (as for secret changes). */
  authKeyChangeSkewSec: 600,
  /** API keys one project may hold on a gateway (live and revoked): each is one row and one lookup entry. */
  authMaxKeysPerProject: 256,
  /** Gateway HTTP port for `peerhost gateway` and `peerhost devnet`. */
  gatewayPort: 8080
} as const
