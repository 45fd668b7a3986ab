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
  /**
   * Longest a request waits in the gateway's queue for a worker with room (node/gateway/wait-queue.ts).
   * Past saturation a closed-loop client (browsers, proxies, wrk) answered 503 at once sends the
   * next request at once, and answering those refusals takes the CPU the workers need: waiting a
   * bounded time keeps goodput at the peak. A request joins when its expected wait is at most half
   * of this: 3 s covers 4× saturation at this machine's ~100 req/s with 128 connections (Little's
   * law: 128 / 100 per s ≈ 1.3 s); beyond it refusals are immediate.
   */
  gatewayQueueMaxMs: 3_000,
  /** Requests waiting in a gateway's queue at once; more are refused at once (memory stays bounded). */
  gatewayQueueMaxLength: 4_096,
  /**
   * Share of a request's remaining deadline it may spend in the gateway's queue: the rest is for
   * the work. 0.25 until 2026-12-03: at c=256 on the devnet (8× saturation) it queued ≈ 190 and
   * refused the rest, whose clients came straight back (thousands of fast 503s, goodput halved);
   * at 0.5 the same load queued all and was served at the peak rate (docs/mesh.md).
   */
  gatewayQueueShare: 0.5,
  /** Window over which the gateway measures its completion rate (the queue's expected-wait estimate). */
  gatewayQueueRateWindowMs: 2_000,
  /**
   * Fewer completions than this in the window and the rate is not known: nothing queues and the
   * answer is an immediate 503 (a mesh full of long jobs gives no evidence a slot will free soon).
   */
  gatewayQueueMinSamples: 8,
  /** While requests wait, the first one re-checks this often (an advert may have lifted a worker's `full`). */
  gatewayQueuePollMs: 50,
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
  /**
   * How long a worker waits for the first frame on a new job stream before it resets the stream
   * (a stream that never brings a job is abandoned or hostile). It was 2 × dialTimeoutMs (4 s):
   * with 500 sessions opened at once on a CPU-starved 2-core machine (load 12, gVisor sandboxes
   * booting for the burst) the worker's event loop stalled past 4 s and the timer fired before the
   * frame that had already arrived was read — 81 streams reset, each a WORKER_FAILED at the gateway
   * (test/e2e/websocket-many.spec.ts, docs/benchmarks.md). A stream without a frame holds no job
   * slot or session place, and a connection's job streams are bounded (maxOutboundJobStreams).
   */
  firstFrameWaitMs: 10_000,
  /** Time to fetch a bundle from the dispatching gateway. */
  bundleFetchTimeoutMs: 5_000,
  /** Most connections a node keeps: a gateway talks to every worker of its region (≤ 1,000 per topic). */
  maxConnections: 1_200,
  /** Unfinished inbound handshakes held at once; bounds handshake floods (P2P-03). */
  maxIncomingPendingConnections: 64,
  /** Inbound job streams per connection at once: a gateway never needs more than a worker's capacity × 4. */
  maxInboundJobStreams: 64,
  /** streams a peer may open on a new connection before it is fully set up (yamux's default is 10: see node/libp2p.ts) */
  maxEarlyStreams: 64,
  /**
   * libp2p's connection monitor pings every connected peer every 10 s and, by default, aborts the
   * connection (every stream and session on it) when a ping is not answered within 5 s or is cut
   * by the answering side after 10 s. A loaded 2-core machine (a burst of 500 session opens, three
   * gVisor workers booting) stalls event loops past both: the monitor aborted live gateway–worker
   * connections, losing their sessions ("connection muxer is closed") and failing bundle fetches
   * (docs/benchmarks.md). So a failed ping is only measured, never a reason to abort: a connection
   * ends when its transport does (a worker that exits or is killed closes its TCP connections at
   * once; test/e2e/websocket.spec.ts), a worker that stops advertising leaves the gateway's view
   * within workerExpiryMs, and streams to a stalled worker are bounded by their own timeouts.
   */
  abortConnectionOnPingFailure: false,
  /**
   * How many of a session's latest function → client messages a worker can leave out of the
   * transcript it signs when the gateway delivered fewer (WsClose.delivered): those in flight when
   * the client's Close came, bounded by the relay's buffers (a 4 MiB stream window, the client
   * socket's high-water mark). About 50 bytes each per session.
   */
  sessionRewindableMessages: 256,
  /** a yamux stream's largest receive window (yamux's default grows to 16 MiB): see node/libp2p.ts */
  maxStreamWindowBytes: 4 * 1024 * 1024,
  /**
   * Job streams a gateway opens to one worker at once, sessions included (each holds one while it
   * lasts): below yamux's 1,000 streams per connection, above a worker's default job and session
   * room (64 + workerMaxSessions).
   */
  maxOutboundJobStreams: 900,
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
  /** What a gateway assumes of a worker it has no latency samples for, ms. */
  latencyPriorMs: 5,
  /** A worker's latency estimate without new samples halves its distance to the prior this often. */
  latencyHalfLifeMs: 10_000,
  /** Latency above this counts as this much in a worker's score (1.0: as much as a full worker's load). */
  latencyScoreCapMs: 100,
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
   * How long past its TTL a cached active version still admits a matching job while the re-read
   * it started has not answered (a loaded chain node, a slow RPC): a job then runs instead of
   * waiting on the chain. Seen on the devnet at c=128: jobs waited out their whole attempt on a
   * re-read behind a saturated event loop. TTL + this (30 s) is also how long a previous version
   * stays runnable after a change (`registryCheckGraceMs`); past it the job waits for the read
   * and is refused if the chain cannot answer (fail closed).
   */
  registryCheckStaleMs: 25_000,
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
   * Bundle bytes a node keeps in memory (least recently used dropped; every bundle stays on disk
   * and is re-read and re-verified on a miss). A count alone bounds nothing: 256 bundles of up to
   * 16 MiB (LIMITS.maxBundleBytes) would be 4 GiB. 64 MiB holds hundreds of typical bundles
   * (examples/hello is under 1 KiB; a bundled API with dependencies some 100 KiB–1 MiB).
   */
  bundleCacheBytes: 64 * 1024 * 1024,
  /** Bundles a node keeps in memory, whatever their size (least recently used dropped). */
  bundleCacheEntries: 256,
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
  /**
   * Chain-path requests per client IP (IPv6 /64) per window at a gateway (`--chain-rate-limit`):
   * each one costs a fee and gas, paid from the project's escrow or the gateway's balance, and
   * holds workers for a commit and a reveal, so a single client gets few: 10 per minute covers a
   * person checking answers on chain, not a script turning the gateway's funds into requests.
   * Counts client-forced (`x-peerhost-mode: onchain`) and mesh-failure fallbacks alike.
   */
  gatewayChainRateRequests: 10,
  /** The window of the per-IP chain-path limit, in seconds. */
  gatewayChainRatePerSeconds: 60,
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
  gatewayPort: 8080,
  /**
   * WebSocket sessions a worker holds at once (`--max-sessions`). Sessions of one function version
   * share its sandboxes (128 to a 128 MB sandbox, GVISOR_POOL_DEFAULTS.sessionMemoryMb) and take no
   * job slot while they wait for messages (an event's CPU is the function's own limit), so the cap
   * is memory: an idle echo session cost the worker process ~20 KiB of RSS (50 per worker,
   * test/e2e/websocket-many.spec.ts) and 1 MB of a 128 MB sandbox's budget, so 256 take ~5 MB of
   * the worker and two sandboxes, leaving the pool's other sandboxes to requests.
   */
  workerMaxSessions: 256,
  /**
   * Weight of a worker's session share (sessions / maxSessions) when a gateway picks a worker for
   * a new session: at 4 a worker holding 1/16 of its room scores as a cold one (0.25), so sessions
   * spread over workers instead of filling the warm one first.
   */
  sessionShareWeight: 4,
  /**
   * What one recent failure (a session open that timed out or broke, within 30 s, reset by the
   * next success there) adds to a worker's score for a new session: 0.25 is 16 sessions' share at
   * the default room, so a worker that missed one open under load takes fewer of a burst, not none
   * of it. A job failure weighs 1 (a job is retried elsewhere at once; a session is long-lived, and
   * at 1 a single failure counted as 64 sessions: a burst of 150 left one worker with 9, CI stop 17).
   * Consecutive failures add up, so a worker that keeps failing is soon passed over.
   */
  sessionFailureWeight: 0.25,
  /** Longest a WebSocket session lasts (close 4410 after it); a session holds a sandbox meanwhile. */
  sessionMaxMs: 15 * 60_000,
  /** A session with no message either way for this long is closed with 4408. */
  sessionIdleMs: 60_000,
  /** Client messages per second per session; past it the gateway closes with 4429. */
  sessionMessagesPerSec: 1_000,
  /**
   * How much later than the gateway a worker applies a session's idle and length limits itself
   * (node/worker/session-guard.ts): an honest gateway, which sees each message a moment earlier or
   * later, closes first; a gateway that does not is cut off by the worker with the same code.
   */
  workerSessionGraceMs: 1_000,
  /**
   * Seconds of a session's message rate a worker lets arrive in one burst (its token bucket): an
   * honest gateway's fixed one-second windows pass up to twice the rate across a boundary, and a
   * loaded network may bunch another second or two together; a sustained flood still drains it.
   */
  workerSessionBurstSec: 4,
  /**
   * Bytes a relay lets wait for a slow receiver before it stops reading from the sender (a client
   * that does not read slows the function's sends; gateway and worker memory stay bounded).
   */
  sessionHighWaterBytes: 1024 * 1024,
  /**
   * Fragments one WebSocket message may arrive in (close 1008 beyond): each costs a buffer object,
   * so a flood of 1-byte fragments would cost ~100× its bytes in heap before maxPayload stopped it.
   */
  sessionMaxFragments: 1_024,
  /** Time a gateway gives the worker to answer `session-end` after the socket closed. */
  sessionEndWaitMs: 2_000,
  /**
   * Metered sessions (issue 12): a gateway sends a cumulative ticket after every this many
   * messages (both ways) of a priced session — one billing unit (protocol SESSION_UNIT_MESSAGES).
   */
  sessionTicketEveryMessages: 100,
  /** …and at least this often while a priced session lasts (half a per-minute billing unit). */
  sessionTicketEveryMs: 30_000,
  /**
   * The credit a worker extends to a priced session's gateway, in messages and in time: when what
   * the session owes exceeds the highest cumulative ticket by more than
   * `perMessage × sessionCreditMessages + perMinute × sessionCreditMs / 60 000`, the worker closes
   * it with 4402. Ten top-up intervals of messages and four of time: an honest gateway's lag (the
   * frames in flight between a ticket and its count, a loaded event loop) never reaches it, and a
   * gateway that stops paying gets at most this much free service.
   */
  sessionCreditMessages: 1_000,
  sessionCreditMs: 120_000,
  /** How often a worker re-checks a priced session's credit when no message moves (time accrues). */
  sessionCreditCheckMs: 1_000,
  /**
   * After the function ends a priced session, how long the worker waits for its gateway's final
   * cumulative ticket (an honest gateway answers the worker's close with one at once) before it
   * signs the receipt with the highest ticket it holds.
   */
  sessionFinalTicketWaitMs: 1_000,
  /**
   * Segments (docs/chain.md "Sessions that outlive their epoch"): how often a gateway checks whether
   * Settlement's epoch has moved past an open session's segment (then it sends `segment`), and how
   * often a worker checks whether it must close a segment itself (no `segment` came by the epoch's
   * end plus half the settler's grace).
   */
  sessionSegmentCheckMs: 1_000,
  /**
   * A gateway opens a session's next segment this long after Settlement's epoch ended by its clock:
   * the worker checks the new segment's epoch against its own clock, which may be a little behind.
   */
  sessionSegmentLagMs: 2_000,
  /**
   * A `segment` frame the worker has not answered (no receipt of the segment it closes, at its
   * closing fee) is sent again this often, at most `sessionSegmentResends` times: a worker whose
   * clock lags the gateway's by more than `sessionSegmentLagMs` ignores it as a wrong epoch at
   * first, and would otherwise close the segment itself and leave the next one without a ticket.
   * A worker that already took it ignores the copy (`wrong-segment`).
   */
  sessionSegmentResendMs: 2_000,
  sessionSegmentResends: 3,
  /**
   * Client → function transcript states a gateway keeps per session to check a segment's receipt
   * (a prefix of the session's transcript: the worker closes it after the messages it received so
   * far, while later ones may still be in flight). Far above what a stream's window holds in flight.
   */
  sessionSegmentHistory: 4_096,
  /** Session receipts (transcript summaries) a gateway keeps for /_peerhost/receipts/<jobId>. */
  sessionReceiptsKept: 10_000,
  /**
   * Streamed-response receipts a gateway keeps for /_peerhost/receipts/<jobId> (least recently
   * used dropped first): ~1 KB each, so 10,000 cost ~10 MB at most.
   */
  streamReceiptsKept: 10_000,
  /**
   * Read buffer of a job stream relaying a streamed body. The gateway stops reading (yamux stops
   * granting window) while the client's socket is full; what the worker had already been granted
   * (the stream window, at most 16 MiB in yamux) may still arrive, and must fit instead of
   * aborting the stream (libp2p's default is 4 MiB).
   */
  streamReadBufferBytes: 20 * 1024 * 1024,
  /**
   * Time past the job's deadline a gateway waits for the next frame of a streamed body before it
   * cuts the client's response: the worker's own limits end the stream before the deadline, and
   * its last frames (flushed chunks, the signed stream-end) need a moment on a loaded host.
   */
  streamGraceMs: 5_000
} as const

/** WebSocket close codes the mesh sends, stable for clients (RFC 6455 §7.4; 4xxx are PeerHost's). */
export const WS_CLOSE = {
  /** a message over LIMITS.maxWsMessageBytes */
  tooBig: 1009,
  /** the worker or the session failed: reconnect (another worker will take it) */
  internalError: 1011,
  /** the worker holding the session is restarting / went away */
  serviceRestart: 1012,
  /** no worker could take a session now */
  tryAgainLater: 1013,
  /** the gateway is shutting down */
  goingAway: 1001,
  /** no message either way for NODE_DEFAULTS.sessionIdleMs */
  idleTimeout: 4408,
  /** the session reached NODE_DEFAULTS.sessionMaxMs */
  sessionTooLong: 4410,
  /** more client messages per second than NODE_DEFAULTS.sessionMessagesPerSec */
  rateLimited: 4429,
  /**
   * a priced session's gateway fell behind its payments by more than the worker's credit
   * (NODE_DEFAULTS.sessionCreditMessages / sessionCreditMs), or the project's allowance or maxFee
   * cannot pay the session further (the gateway closes it)
   */
  paymentRequired: 4402
} as const

/** A worker's settlement loop (issue 11). */
export const SETTLEMENT_DEFAULTS = {
  /**
   * Settlement ticks every 2 s: the devnet's epochs and windows are seconds long, and one tick is a
   * handful of reads when there is nothing to do.
   */
  intervalMs: 2_000,
  /** The settlement state file under the worker's data dir (SQLite WAL, survives `kill -9`). */
  fileName: 'settlement.sqlite',
  /**
   * Epochs looked back for unsettled receipts: a batch can only be committed in the commit window
   * right after its epoch, so older receipts can never be paid; 64 covers any window / epoch ratio
   * the deployments use (docs/contracts.md) without scanning the whole log.
   */
  lookbackEpochs: 64n
} as const

/** A gateway's check of the settlement batches naming it (node/settlement/checker.ts). */
export const CHECKER_DEFAULTS = {
  /** New BatchCommitted events are read every 2 s: a fault must be proven inside the challenge window, which is seconds long on the devnet. */
  intervalMs: 2_000,
  /** The gateway's ticket log and verdicts (SQLite WAL) under its data dir. */
  fileName: 'tickets.sqlite',
  /** A batch document not fetched within 30 s is recorded as unverifiable (bitswap from a worker that went away never answers). */
  fetchTimeoutMs: 30_000,
  /** Ticks a batch's leaves are fetched before it is recorded unverifiable (the worker's node may be busy or restarting). */
  fetchAttempts: 5,
  /** Batches listed in /_peerhost/status (the newest). */
  statusRows: 20,
  /** Tickets of epochs this far behind are dropped: their batches' commit and challenge windows are long over on every deployment. */
  keepEpochs: 256n
} as const

/** A gateway's view of what a project may still spend through it (node/settlement/allowance.ts). */
export const ALLOWANCE_DEFAULTS = {
  /**
   * The chain's escrow and allowance are read at most every 5 s per project: between reads the
   * gateway counts its own tickets, so a burst cannot outrun the allowance, and a builder's
   * deposit is seen within seconds.
   */
  refreshMs: 5_000,
  /**
   * Past `refreshMs` the chain is re-read in the background and requests go on with the last view;
   * only a view older than 30 s (the chain unreachable for that long) makes a request wait for a
   * fresh read. Before, every paid request arriving in the moment of a re-read waited for the RPC
   * (two calls): every 5 s on the devnet under load that stalled the mesh path for seconds
   * (`node bench/dispatch.ts --settlement`).
   */
  maxStaleMs: 30_000
} as const

/**
 * A project deployed to a local development chain (Hardhat's chain id 31337: `peerhost devnet`,
 * `peerhost chain up`) is given an escrow and an allowance for the gateway it was deployed to, so
 * its first request is served: the devnet's workers ask a price, and without escrow the gateway
 * answers 402. The money is the local chain's; on any other chain nothing is spent for the
 * builder (deploy prints the `peerhost escrow` commands instead).
 */
export const LOCAL_CHAIN_ESCROW = {
  chainId: 31337,
  /** 50 (native currency, wei): 5,000,000 requests at the devnet's price of 0.00001 */
  deposit: 50n * 10n ** 18n,
  /** 1 per settlement epoch: 100,000 requests per epoch at the devnet's price */
  perEpoch: 10n ** 18n
} as const

/** How nodes follow chain events (node/chain). */
export const CHAIN_EVENTS = {
  /**
   * Event watchers (stake changes at the gateway's admission and the worker's gateway-stake check,
   * ExecutionRequested at the worker) poll once a second: a local chain mines a block a second (the
   * devnet) and Polygon one every 2 s, so polling faster finds nothing new. At the chain client's
   * local-chain interval (50 ms, kept for transaction receipts) the three watchers cost an idle
   * worker ≈ 9 % and an idle gateway ≈ 7 % of a core on the 2-core bench machine
   * (`node bench/dispatch.ts --settlement`, docs/benchmarks.md).
   */
  pollMs: 1_000
} as const
