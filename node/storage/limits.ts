/** Storage and deploy limits, each with its reason. */
export const STORAGE_LIMITS = {
  /**
   * Largest block stored, served or fetched: 2 MiB, the block size bitswap implementations
   * (Kubo/boxo) accept. A bundle is one raw block, so this is also the largest deployable bundle.
   */
  maxBlockBytes: 2 * 1024 * 1024,
  /** Largest manifest: names, CIDs and options for at most 64 functions fit many times over. */
  maxManifestBytes: 256 * 1024,
  /** Time to fetch one block over bitswap before giving up (a job's bundle fetch shares this). */
  fetchTimeoutMs: 5_000,
  /** Time to announce a block on the DHT; in the background, so it never delays a deploy. */
  provideTimeoutMs: 10_000,
  /**
   * Bytes of uploaded blocks no registered version references yet, per wallet: 64 MiB is 32
   * maximal bundles — a large project uploaded twice over (a retried deploy) — and bounds what
   * one key can park on a gateway's disk.
   */
  uploadQuotaBytes: 64 * 1024 * 1024,
  /**
   * Bytes of unreferenced uploads of all wallets together. Wallets are free, so the per-wallet
   * quota alone bounds nothing: 1 GiB (16 full wallet quotas) bounds what strangers can park on a
   * gateway's disk until their leases end.
   */
  uploadGlobalQuotaBytes: 1024 * 1024 * 1024,
  /**
   * How long an uploaded block may wait for a registered version to reference it before it is
   * deleted: a deploy registers seconds after its upload; an hour covers a slow chain and a
   * retried transaction.
   */
  uploadLeaseMs: 60 * 60 * 1000,
  /** Clock difference accepted between a builder's `issuedAt` and the gateway: 10 min, either way. */
  uploadClockSkewSec: 600,
  /**
   * Versions of a project a gateway keeps pinned besides the active one: the usual rollback goes
   * one or two versions back, and five bounds a project's footprint at six versions of bundles.
   */
  keepVersions: 5
} as const
