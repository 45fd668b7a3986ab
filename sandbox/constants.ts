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
  /** Bytes of a sandbox's own stderr kept for diagnosis (the function cannot write there). */
  maxStderrBytes: 16 * 1024,
  /** Largest host↔shim frame: a request/response body plus envelope, or a bundle. */
  maxChannelFrameBytes: LIMITS.maxBundleBytes + LIMITS.maxFrameBytes
} as const

export const DEV_EXECUTOR_DEFAULTS = {
  /** Worker threads kept idle between executions (one execution per thread at a time). */
  maxIdleThreads: 4
} as const
