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
  /** Gateway HTTP port for `peerhost gateway` and `peerhost devnet`. */
  gatewayPort: 8080
} as const
