/**
 * Every sandbox default and limit, with its reason. Wire-level limits (response body, log bytes)
 * come from `LIMITS` in protocol/constants.ts so gateways and workers agree on them.
 */
import { LIMITS } from '#protocol'

export const SANDBOX_LIMITS = {
  /** Response body cap a function may return: the wire limit every worker enforces alike. */
  maxResponseBytes: LIMITS.maxResponseBodyBytes,
  /** Captured console bytes per execution; beyond it logs are truncated and flagged. */
  maxLogBytes: LIMITS.maxLogBytes,
  /** Outbound fetch() calls per execution (Cloudflare's free-plan figure). */
  maxSubrequests: 50,
  /**
   * Brokered fetches of one execution in flight at once (browsers' per-host figure): enough for
   * parallel API calls, not enough for one execution to hold dozens of host sockets.
   */
  maxConcurrentSubrequests: 6,
  /** Bytes of one brokered fetch response; the same as what a function may return. */
  maxSubrequestResponseBytes: LIMITS.maxResponseBodyBytes,
  /** Bytes of all brokered fetch responses of one execution together. */
  maxSubrequestTotalBytes: 16 * 1024 * 1024,
  /** Longest single brokered fetch (further capped by the execution's deadline). */
  subrequestTimeoutMs: 10_000,
  /**
   * Grace the host adds to `timeoutMs` before it kills the process running the function. The shim
   * answers LIMIT_TIMEOUT itself at `timeoutMs` when its event loop is free; the host kill covers a
   * synchronous endless loop (kill latency ≤ limit + 1 s, SBX-06).
   */
  killGraceMs: 500,
  /**
   * How old a sandbox's run-queue delay reading may be when an execution starts (gvisor/sandbox.ts
   * runDelayNs): the starvation verdict counts waiting up to this long before the start as
   * waiting. 250 ms until 2026-12-03; one reading is a file per Sentry thread (dozens), and at
   * 250 ms they still took 3.5 % of a loaded devnet's main thread.
   */
  runDelaySampleMs: 1_000,
  /**
   * How old a sandbox's cgroup CPU reading may be as an execution's starting point (gvisor/sandbox.ts
   * cpuNs): a LIMIT_CPU report and the starvation verdict then count up to this much of the
   * sandbox's CPU before the start (with concurrent executions they count their neighbours' anyway);
   * read on every start it was 2.5 % of a loaded devnet's main thread.
   */
  cpuSampleMs: 250,
  /** Bytes of a sandbox's own stderr kept for diagnosis (the function cannot write there). */
  maxStderrBytes: 16 * 1024,
  /** Largest host↔shim frame: a request/response body plus envelope, or a bundle. */
  maxChannelFrameBytes: LIMITS.maxBundleBytes + LIMITS.maxFrameBytes
} as const

export const GVISOR_POOL_DEFAULTS = {
  /**
   * Executions at once in one isolation-`function` sandbox (each in its own realm). Measured on the
   * devnet (docs/benchmarks.md, "Hot path"): one at a time left a worker's 8 job slots spread over
   * 2 sandboxes as hidden queueing or, before the pool was bounded, as sandbox boots under load.
   * 4 × 2 sandboxes = NODE_DEFAULTS.workerCapacity, so the admission queue decides, not the pool.
   */
  concurrencyPerSandbox: 4,
  /**
   * Sandboxes one function version may hold (busy, idle, booting). Boots are for warming, never
   * for load: each costs ~0.5 s of a core, which is what turned overload into collapse.
   */
  maxSandboxesPerFunction: 2,
  /**
   * V8 heap budgeted per WebSocket session when sessions of one function version share a sandbox
   * (docs/sandbox.md, warm pool): an idle session holds a realm (a vm context: ~170 KB of V8 heap
   * measured in plain Node), the function's listeners and its channel state; 1 MB leaves the
   * function room for its own per-session state. A 128 MB function holds 128 sessions per sandbox.
   */
  sessionMemoryMb: 1,
  /**
   * Executions and age after which a sandbox retires (`maxExecutionsPerSandbox`,
   * `maxSandboxAgeMs`): it is replaced at the pool's next quiet moment and serves on until then,
   * up to `retireGraceFactor` times these.
   */
  maxExecutionsPerSandbox: 50_000,
  maxSandboxAgeMs: 300_000,
  retireGraceFactor: 4,
  /**
   * ms without an execution before the pool boots in the background (targets, replacements). On
   * the devnet a background boot beside running executions stalled them for seconds, at nice 15
   * or not (docs/benchmarks.md, "Boots beside executions"): boots wait for a pause in the traffic.
   */
  bootQuietMs: 500
} as const

export const DEV_EXECUTOR_DEFAULTS = {
  /** Worker threads kept idle between executions (one execution per thread at a time). */
  maxIdleThreads: 4,
  /**
   * Function versions remembered as warm (least recently used forgotten): the list only feeds
   * adverts, which carry at most LIMITS.maxWarmFunctions (32) of them; remembering every CID ever
   * run grew without bound on a worker serving many functions (bench:functions-memory).
   */
  maxWarmFunctions: 32
} as const
