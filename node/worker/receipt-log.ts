/**
 * The worker's receipt log: a durable record of every ticket it answered, so it signs at most one
 * receipt per (gateway, jobId, attempt), ever — the defence against the equivocation attack of
 * issue 9 (two receipts with different outputs for one ticket key get the worker slashed).
 *
 * SQLite in WAL mode (`node:sqlite` DatabaseSync) in `<dataDir>/receipts.sqlite`:
 *
 * * `reserve` inserts the key in state `reserved` before the worker fetches or runs anything; the
 *   primary key makes a concurrent or later duplicate fail at once. A reservation whose execution
 *   never finished (the process was killed) stays in the table, so the key stays refused after a
 *   restart: the worker cannot know whether a receipt left before it died.
 * * `commit` records the output hash and receipt signature (state `signed`) and resolves only once
 *   the row is durable; the receipt leaves the worker after that. Commits that arrive in the same
 *   event-loop turn share one transaction (group commit), so one fsync covers them all.
 * * Durability: every commit uses `synchronous=NORMAL` by default: in WAL mode a committed row is in
 *   the OS once `commit` resolves, so it survives `kill -9` and any crash of the process; only a
 *   power loss or kernel crash can drop the last commits (fsync per receipt costs ~6.7 ms per job on
 *   a virtual disk: docs/benchmarks.md). What such a loss could do — let a replayed ticket be
 *   answered a second time with another output — is closed by the **reboot guard**: the log keeps
 *   the kernel's boot id and whether it was closed cleanly (checkpointed and fsync'ed); opened after
 *   a reboot that followed an unclean close, it refuses every ticket whose deadline falls before
 *   boot time + TICKET_HORIZON_MS (`refusesBefore`), i.e. every
 *   ticket that could have been issued before the machine went down (the worker refuses tickets
 *   whose deadline lies further than that in its future). `synchronous: 'FULL'` (fsync per group of receipts) remains
 *   for operators who want no such window.
 * * Retention: rows are kept `retentionMs` (default 30 days) and pruned by a timer, off the job
 *   path. A pruned key cannot be replayed: a ticket is accepted only before its deadline, and only
 *   when that deadline is at most TICKET_HORIZON_MS away (the worker
 *   checks both), and retention is required to be far longer.
 *
 * * A WebSocket session's fee is metered (issue 12): the gateway sends cumulative tickets during the
 *   session, and `raiseFee` replaces the reserved row's fee and ticket signature with a higher one
 *   (durable against `kill -9` on return, before the worker counts it as paid). The receipt signs,
 *   and settlement pays, the highest one on record.
 *
 * The `(project_id, gateway, epoch)` index serves settlement (issue 11): one Merkle batch per
 * project, gateway and epoch is `receiptsOf({ projectId, gateway, epoch })`.
 */
import { mkdirSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import type { Hex } from 'viem'
import { LIMITS, TICKET_HORIZON_MS } from '#protocol'
import { NodeError } from '../errors.ts'
import type { Logger } from '../logger.ts'

export const RECEIPT_LOG_DEFAULTS = {
  /** File name inside the worker's data dir. */
  fileName: 'receipts.sqlite',
  /**
   * How long a row is kept. Settlement epochs are hours and challenge windows days at most; 30 days
   * leaves room for a worker that was offline through a whole window.
   */
  retentionMs: 30 * 24 * 3_600_000,
  /** How often old rows are pruned. */
  pruneIntervalMs: 3_600_000,
  /** Rows deleted per prune statement: keeps each write lock short. */
  pruneBatch: 1_000
} as const

/**
 * The schema version in `PRAGMA user_version`. Version 1 kept receipts in a WITHOUT ROWID table
 * keyed by (gateway, job_id, attempt); version 2 (below) is migrated to on open.
 */
const SCHEMA_VERSION = 2

/** The receipts table's columns (both versions). */
const COLUMNS = `
  gateway     TEXT    NOT NULL,  -- ticket.gateway, lower-case 0x address
  job_id      TEXT    NOT NULL,  -- bytes32 hex
  attempt     INTEGER NOT NULL,
  state       TEXT    NOT NULL CHECK (state IN ('reserved', 'signed')),
  project_id  TEXT    NOT NULL,  -- projectId(wallet, project), bytes32 hex
  function_id TEXT    NOT NULL,
  job_hash    TEXT    NOT NULL,
  input_hash  TEXT    NOT NULL,
  worker      TEXT    NOT NULL,  -- lower-case 0x address
  fee         TEXT    NOT NULL,  -- uint256, decimal
  epoch       INTEGER NOT NULL,
  deadline    INTEGER NOT NULL,  -- the ticket's deadline, unix seconds
  ticket_sig  TEXT    NOT NULL,
  output_hash TEXT,              -- set when signed
  receipt_sig TEXT,              -- set when signed
  created_at  INTEGER NOT NULL,  -- unix ms of the reservation
  signed_at   INTEGER            -- unix ms of the receipt commit
`

/**
 * Rows in a rowid table, appended in the order of their reservations, and the ticket key in a
 * unique index beside it. Version 1 made the key the table's own (WITHOUT ROWID): every
 * reservation then went to a random place among ~700-byte rows, and a log of a day's traffic
 * (75,000 receipts, 100 MB, pages half empty) cost ≈ 240 µs per job, the largest single cost of a
 * loaded devnet's main thread. Here a reservation writes the table's last page and one small
 * index entry (`npm run bench:receipts`, docs/benchmarks.md "Receipt log (worker)").
 */
const SCHEMA = `
CREATE TABLE IF NOT EXISTS receipts (${COLUMNS},
  UNIQUE (gateway, job_id, attempt)
);
-- epoch first: the settler asks every tick which (project, gateway) have signed receipts in a range
-- of epochs, and with project_id first that scanned every signed receipt kept (2 % of a loaded
-- devnet's main thread); a batch's own query names all three columns either way
DROP INDEX IF EXISTS receipts_batch;
CREATE INDEX IF NOT EXISTS receipts_batch_epoch ON receipts (epoch, project_id, gateway) WHERE state = 'signed';
CREATE INDEX IF NOT EXISTS receipts_created ON receipts (created_at);
-- the (epoch, project, gateway) triples that have signed receipts: the settler asks for them every
-- tick, and a DISTINCT over the receipts themselves read every signed receipt of the lookback
-- epochs each time (an idle devnet's largest cost: 15 ms of CPU per second with 75,000 receipts)
CREATE TABLE IF NOT EXISTS receipt_batches (
  epoch      INTEGER NOT NULL,
  project_id TEXT    NOT NULL,
  gateway    TEXT    NOT NULL,
  PRIMARY KEY (epoch, project_id, gateway)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
`

/** Version 1 → 2: the same rows, in reservation order, in the rowid table; one transaction. */
const MIGRATE_V1 = `
BEGIN IMMEDIATE;
ALTER TABLE receipts RENAME TO receipts_v1;
DROP INDEX IF EXISTS receipts_batch;
DROP INDEX IF EXISTS receipts_batch_epoch;
DROP INDEX IF EXISTS receipts_created;
${SCHEMA}
INSERT INTO receipts SELECT gateway, job_id, attempt, state, project_id, function_id, job_hash, input_hash, worker, fee, epoch, deadline,
  ticket_sig, output_hash, receipt_sig, created_at, signed_at FROM receipts_v1 ORDER BY created_at;
DROP TABLE receipts_v1;
PRAGMA user_version = 2;
COMMIT;
`

/** A ticket's key and every signed field, as the worker verified it. */
export interface TicketRecord {
  gateway: string
  jobId: Hex
  attempt: number
  projectId: Hex
  functionId: Hex
  jobHash: Hex
  inputHash: Hex
  worker: string
  /** uint256 as a decimal string */
  fee: string
  /** uint64 as a decimal string (below 2^63) */
  epoch: string
  /** the ticket's deadline in unix seconds, decimal (below 2^63) */
  deadline: string
  ticketSig: Hex
}

export interface StoredReceipt extends TicketRecord {
  state: 'reserved' | 'signed'
  outputHash?: Hex
  receiptSig?: Hex
  createdAt: number
  signedAt?: number
}

export type ReceiptKey = Pick<TicketRecord, 'gateway' | 'jobId' | 'attempt'>

export interface ReceiptLogInit {
  /** the worker's data dir; the log is `<dataDir>/receipts.sqlite` unless `path` is given */
  dataDir: string
  /** @default `<dataDir>/receipts.sqlite` */
  path?: string
  /**
   * `NORMAL`: a commit survives `kill -9` and process crashes; after a power loss the reboot guard
   * refuses tickets that may predate it. `FULL`: every group of receipt commits is fsync'ed.
   * @default 'NORMAL'
   */
  synchronous?: 'FULL' | 'NORMAL'
  /**
   * The running kernel's boot: its id and when it booted (unix ms), for the reboot guard.
   * @default read from /proc/sys/kernel/random/boot_id and /proc/stat (btime)
   */
  boot?: { id: string, atMs: number }
  /** @default RECEIPT_LOG_DEFAULTS.retentionMs; at least 2 × LIMITS.maxDeadlineMs */
  retentionMs?: number
  /** @default RECEIPT_LOG_DEFAULTS.pruneIntervalMs; 0 = no timer (call `prune` yourself) */
  pruneIntervalMs?: number
  now?: () => number
}

export interface ReceiptLogComponents {
  logger: Logger
}

export type Reservation = { ok: true } | { ok: false, existing: StoredReceipt }

export interface ReceiptLog {
  /**
   * Reserves the ticket's key (durable against `kill -9` on return). `ok: false` with the stored
   * row when the key was ever reserved before.
   */
  reserve: (ticket: TicketRecord) => Reservation
  /**
   * Replaces a reserved key's fee and ticket signature with a higher cumulative ticket's (a
   * session's); durable against `kill -9` on return. False (nothing changed) when the key is not
   * reserved (unknown, or already signed) or `fee` is not higher than the one on record. The
   * caller has verified the signature.
   */
  raiseFee: (key: ReceiptKey, fee: string, ticketSig: Hex) => boolean
  /** Records the receipt of a reserved key; resolves once the row is durable. */
  commit: (key: ReceiptKey, outputHash: Hex, receiptSig: Hex) => Promise<void>
  /**
   * Frees a reserved key that produced no receipt (refused before execution: no output was
   * signed, so answering it later cannot equivocate). A signed key is never released.
   */
  release: (key: ReceiptKey) => void
  get: (key: ReceiptKey) => StoredReceipt | undefined
  /** Signed receipts of one (project, gateway, epoch), by job id and attempt: one settlement batch. */
  receiptsOf: (batch: { projectId: Hex, gateway: string, epoch: string | bigint }) => StoredReceipt[]
  /** The (project, gateway, epoch) triples with signed receipts in epochs `from..to` (inclusive): the batches to settle. */
  batchKeys: (from: bigint, to: bigint) => Array<{ projectId: Hex, gateway: string, epoch: bigint }>
  /**
   * Names the Settlement this log's receipts are for (`chainId:address:genesis`), once per start,
   * before any job. When it differs from the one on record (the chain was replaced: a devnet
   * restarted within the ticket horizon, whose fresh chain has the same id and contract address and
   * counts its epochs from 0 again), every receipt already in the log stays, so its ticket is still
   * refused (a replay of it would be a second receipt for one key), but is never offered to the
   * settler again: `receiptsOf` and `batchKeys` see only receipts recorded for this Settlement. A
   * log with no Settlement on record (older than this check) keeps its receipts batchable.
   * Returns how many receipts were set aside by this call.
   */
  bindSettlement: (id: string) => number
  /** Reservations that never got a receipt (executions cut short by a crash, or running now). */
  unsigned: () => number
  /** Deletes rows older than the retention; returns how many. */
  prune: () => number
  /**
   * The reboot guard: tickets whose deadline (unix ms) is before this may have been answered before
   * a power loss whose last commits the log lost; the worker refuses them. Undefined when the log
   * was closed cleanly, or the machine did not reboot, since its last use.
   */
  readonly refusesBefore: number | undefined
  close: () => void
}

const U63 = (1n << 63n) - 1n

/** The running kernel's boot id and boot time; undefined where /proc does not tell (not Linux). */
function currentBoot (): { id: string, atMs: number } | undefined {
  try {
    const id = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
    const m = /^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))
    if (id === '' || m === null) return undefined
    return { id, atMs: Number(m[1]) * 1000 }
  } catch {
    return undefined
  }
}

function int63 (value: string, field: string): bigint {
  const n = BigInt(value)
  if (n < 0n || n > U63) throw new NodeError('RECEIPT_LOG_RANGE', `${field} ${value} does not fit the receipt log (at most 2^63 - 1)`)
  return n
}

function row (r: Record<string, unknown>): StoredReceipt {
  const out: StoredReceipt = {
    gateway: r.gateway as string,
    jobId: r.job_id as Hex,
    attempt: Number(r.attempt),
    projectId: r.project_id as Hex,
    functionId: r.function_id as Hex,
    jobHash: r.job_hash as Hex,
    inputHash: r.input_hash as Hex,
    worker: r.worker as string,
    fee: r.fee as string,
    epoch: String(r.epoch),
    deadline: String(r.deadline),
    ticketSig: r.ticket_sig as Hex,
    state: r.state as StoredReceipt['state'],
    createdAt: Number(r.created_at)
  }
  if (r.output_hash !== null) out.outputHash = r.output_hash as Hex
  if (r.receipt_sig !== null) out.receiptSig = r.receipt_sig as Hex
  if (r.signed_at !== null) out.signedAt = Number(r.signed_at)
  return out
}

export function receiptLog (init: ReceiptLogInit): (components: ReceiptLogComponents) => ReceiptLog {
  return (components) => {
    const log = components.logger.child({ component: 'peerhost:worker:receipts' })
    const path = init.path ?? join(init.dataDir, RECEIPT_LOG_DEFAULTS.fileName)
    const retentionMs = init.retentionMs ?? RECEIPT_LOG_DEFAULTS.retentionMs
    if (retentionMs < 2 * LIMITS.maxDeadlineMs) {
      // shorter, and a pruned ticket could still be inside its deadline: it would run a second time
      throw new NodeError('BAD_CONFIG', `receipt retention must be at least ${2 * LIMITS.maxDeadlineMs} ms (twice the longest job deadline); got ${retentionMs}`)
    }
    const boot = init.boot ?? currentBoot()
    // without a boot id the reboot guard cannot work: every receipt is fsync'ed instead
    const synchronous = boot === undefined ? 'FULL' : (init.synchronous ?? 'NORMAL')
    const now = init.now ?? Date.now
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
    const db = new DatabaseSync(path)
    db.exec('PRAGMA journal_mode = WAL')
    db.exec('PRAGMA synchronous = NORMAL')
    // a second process on the same data dir waits instead of failing at once
    db.exec('PRAGMA busy_timeout = 5000')
    const version = Number((db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version)
    if (version > SCHEMA_VERSION) {
      db.close()
      throw new NodeError('RECEIPT_LOG_VERSION', `${path} has schema version ${version}; this worker knows up to ${SCHEMA_VERSION}: upgrade peerhost`)
    }
    if (version === 1) {
      const t0 = performance.now()
      try {
        db.exec(MIGRATE_V1)
      } catch (err) {
        if (db.isTransaction) db.exec('ROLLBACK')
        throw err
      }
      log.info({ path, ms: Math.round(performance.now() - t0) }, 'receipt log migrated to schema 2 (rows in reservation order)')
    }
    db.exec(SCHEMA)
    const getMeta = db.prepare('SELECT value FROM meta WHERE key = ?')
    const setMeta = db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value')
    // a log whose triples were never recorded (schema 1 migrated above, or a schema 2 log from
    // before the table): derived once from its signed receipts
    if ((getMeta.get('batches_indexed') as { value: string } | undefined)?.value !== '1') {
      db.exec('BEGIN IMMEDIATE')
      db.exec("INSERT OR IGNORE INTO receipt_batches SELECT DISTINCT epoch, project_id, gateway FROM receipts WHERE state = 'signed'")
      setMeta.run('batches_indexed', '1')
      db.exec('COMMIT')
    }
    db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`)

    // the reboot guard: was the log left uncleanly by an earlier boot of the machine?
    const lastBoot = (getMeta.get('boot_id') as { value: string } | undefined)?.value
    const wasClean = (getMeta.get('clean') as { value: string } | undefined)?.value === '1'
    // a guard set by an earlier open outlives restarts within the same boot
    const stored = Number((getMeta.get('refuses_before') as { value: string } | undefined)?.value ?? 0)
    const fresh = boot !== undefined && lastBoot !== undefined && lastBoot !== boot.id && !wasClean ? boot.atMs + TICKET_HORIZON_MS : 0
    const guardUntil = Math.max(stored, fresh)
    const refusesBefore = guardUntil > now() ? guardUntil : undefined
    if (refusesBefore !== undefined) log.warn({ path, refusesBefore: new Date(refusesBefore).toISOString() }, 'the machine rebooted after this receipt log was left uncleanly: tickets that may predate the reboot are refused')
    // marked unclean (fsync'ed) until close() checkpoints and marks it clean
    db.exec('PRAGMA synchronous = FULL')
    setMeta.run('boot_id', boot?.id ?? '')
    setMeta.run('clean', '0')
    setMeta.run('refuses_before', String(refusesBefore ?? 0))
    db.exec('PRAGMA synchronous = NORMAL')

    const insert = db.prepare(`INSERT OR IGNORE INTO receipts
      (gateway, job_id, attempt, state, project_id, function_id, job_hash, input_hash, worker, fee, epoch, deadline, ticket_sig, created_at)
      VALUES (?, ?, ?, 'reserved', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
    const select = db.prepare('SELECT * FROM receipts WHERE gateway = ? AND job_id = ? AND attempt = ?')
    const sign = db.prepare(`UPDATE receipts SET state = 'signed', output_hash = ?, receipt_sig = ?, signed_at = ?
      WHERE gateway = ? AND job_id = ? AND attempt = ? AND state = 'reserved'`)
    // fees are decimal strings without leading zeros: longer is larger, equal lengths compare as text
    const raise = db.prepare(`UPDATE receipts SET fee = ?, ticket_sig = ?
      WHERE gateway = ? AND job_id = ? AND attempt = ? AND state = 'reserved' AND (length(?) > length(fee) OR (length(?) = length(fee) AND ? > fee))`)
    const free = db.prepare("DELETE FROM receipts WHERE gateway = ? AND job_id = ? AND attempt = ? AND state = 'reserved'")
    // (named: without statistics the planner took the primary key's gateway prefix, every receipt of the gateway)
    // receipts from rowid `batchFrom` on are this Settlement's (bindSettlement)
    let batchFrom = Number((getMeta.get('settlement_from') as { value: string } | undefined)?.value ?? 0)
    const batch = db.prepare("SELECT * FROM receipts INDEXED BY receipts_batch_epoch WHERE project_id = ? AND gateway = ? AND epoch = ? AND state = 'signed' AND rowid >= ? ORDER BY job_id, attempt")
    const keys = db.prepare('SELECT project_id, gateway, epoch FROM receipt_batches WHERE epoch >= ? AND epoch <= ? ORDER BY epoch, project_id, gateway')
    const addBatch = db.prepare('INSERT OR IGNORE INTO receipt_batches (epoch, project_id, gateway) SELECT epoch, project_id, gateway FROM receipts WHERE gateway = ? AND job_id = ? AND attempt = ? AND rowid >= ?')
    const nextRowid = db.prepare('SELECT coalesce(max(rowid), 0) + 1 AS n FROM receipts')
    const countBefore = db.prepare("SELECT count(*) AS n FROM receipts WHERE rowid < ? AND state = 'signed'")
    // a triple whose last signed receipt was pruned (receipts INDEXED BY its batch index: one lookup per triple)
    const pruneBatches = db.prepare(`DELETE FROM receipt_batches WHERE NOT EXISTS (SELECT 1 FROM receipts INDEXED BY receipts_batch_epoch
      WHERE receipts.state = 'signed' AND receipts.epoch = receipt_batches.epoch AND receipts.project_id = receipt_batches.project_id AND receipts.gateway = receipt_batches.gateway)`)
    const countUnsigned = db.prepare("SELECT count(*) AS n FROM receipts WHERE state = 'reserved'")
    const pruneOld = db.prepare(`DELETE FROM receipts WHERE (gateway, job_id, attempt) IN
      (SELECT gateway, job_id, attempt FROM receipts WHERE created_at < ? LIMIT ${RECEIPT_LOG_DEFAULTS.pruneBatch})`)

    const unsignedAtStart = Number((countUnsigned.get() as { n: number }).n)
    if (unsignedAtStart > 0) log.warn({ count: unsignedAtStart, path }, 'reservations without a receipt found (executions cut short): those tickets stay refused')

    let queue: Array<{ key: ReceiptKey, outputHash: Hex, receiptSig: Hex, resolve: () => void, reject: (err: unknown) => void }> = []
    let closed = false

    function flush (): void {
      const jobs = queue
      queue = []
      if (jobs.length === 0) return
      try {
        if (closed) throw new NodeError('RECEIPT_LOG_CLOSED', 'the receipt log is closed')
        const at = now()
        const failed = new Set<number>()
        // the one commit of the group is fsync'ed when FULL (the level is set outside a transaction)
        if (synchronous === 'FULL') db.exec('PRAGMA synchronous = FULL')
        try {
          db.exec('BEGIN IMMEDIATE')
          try {
            for (let i = 0; i < jobs.length; i++) {
              const j = jobs[i]
              const { changes } = sign.run(j.outputHash, j.receiptSig, at, j.key.gateway.toLowerCase(), j.key.jobId, j.key.attempt)
              if (Number(changes) !== 1) failed.add(i)
              else addBatch.run(j.key.gateway.toLowerCase(), j.key.jobId, j.key.attempt, batchFrom)
            }
            db.exec('COMMIT')
          } catch (err) {
            if (db.isTransaction) db.exec('ROLLBACK')
            throw err
          }
        } finally {
          if (synchronous === 'FULL') db.exec('PRAGMA synchronous = NORMAL')
        }
        jobs.forEach((j, i) => {
          if (failed.has(i)) j.reject(new NodeError('RECEIPT_NOT_RESERVED', `ticket ${j.key.gateway}/${j.key.jobId}/${j.key.attempt} is not reserved (or already signed)`))
          else j.resolve()
        })
      } catch (err) {
        for (const j of jobs) j.reject(err)
      }
    }

    const timerMs = init.pruneIntervalMs ?? RECEIPT_LOG_DEFAULTS.pruneIntervalMs
    const timer = timerMs > 0
      ? setInterval(() => {
        try {
          const n = prune()
          if (n > 0) log.info({ pruned: n }, 'old receipts pruned')
        } catch (err) {
          log.warn({ err }, 'receipt pruning failed')
        }
      }, timerMs).unref()
      : undefined

    function prune (): number {
      const before = now() - retentionMs
      let total = 0
      for (;;) {
        const n = Number(pruneOld.run(before).changes)
        total += n
        if (n < RECEIPT_LOG_DEFAULTS.pruneBatch) break
      }
      if (total > 0) pruneBatches.run()
      return total
    }

    return {
      reserve (t) {
        const { changes } = insert.run(
          t.gateway.toLowerCase(), t.jobId, t.attempt, t.projectId, t.functionId, t.jobHash, t.inputHash, t.worker.toLowerCase(),
          t.fee, int63(t.epoch, 'epoch'), int63(t.deadline, 'deadline'), t.ticketSig, now()
        )
        if (Number(changes) === 1) return { ok: true }
        const existing = select.get(t.gateway.toLowerCase(), t.jobId, t.attempt)
        if (existing === undefined) throw new NodeError('RECEIPT_LOG_CONFLICT', 'the ticket key could not be reserved nor read back')
        return { ok: false, existing: row(existing) }
      },
      async commit (key, outputHash, receiptSig) {
        return await new Promise<void>((resolve, reject) => {
          queue.push({ key, outputHash, receiptSig, resolve, reject })
          // everything committed in this turn of the event loop shares one transaction
          if (queue.length === 1) setImmediate(flush)
        })
      },
      raiseFee (key, fee, ticketSig) {
        if (closed) throw new NodeError('RECEIPT_LOG_CLOSED', 'the receipt log is closed')
        if (!/^(0|[1-9][0-9]{0,77})$/.test(fee)) throw new NodeError('RECEIPT_LOG_RANGE', `fee ${fee} is not a uint256 as a decimal string`)
        return Number(raise.run(fee, ticketSig, key.gateway.toLowerCase(), key.jobId, key.attempt, fee, fee, fee).changes) === 1
      },
      release (key) {
        free.run(key.gateway.toLowerCase(), key.jobId, key.attempt)
      },
      get (key) {
        const r = select.get(key.gateway.toLowerCase(), key.jobId, key.attempt)
        return r === undefined ? undefined : row(r)
      },
      receiptsOf (b) {
        return batch.all(b.projectId, b.gateway.toLowerCase(), BigInt(b.epoch), batchFrom).map(row)
      },
      bindSettlement (id) {
        if (closed) throw new NodeError('RECEIPT_LOG_CLOSED', 'the receipt log is closed')
        const onRecord = (getMeta.get('settlement') as { value: string } | undefined)?.value
        if (onRecord === id) return 0
        db.exec('BEGIN IMMEDIATE')
        try {
          let setAside = 0
          if (onRecord !== undefined) {
            // another Settlement's receipts: kept for their keys, out of every batch from now on
            batchFrom = Number((nextRowid.get() as { n: number }).n)
            setAside = Number((countBefore.get(batchFrom) as { n: number }).n)
            db.exec('DELETE FROM receipt_batches')
            setMeta.run('settlement_from', String(batchFrom))
          }
          setMeta.run('settlement', id)
          db.exec('COMMIT')
          if (setAside > 0) log.warn({ path, settlement: id, previous: onRecord, receipts: setAside }, 'the receipt log holds receipts signed for another Settlement (the chain was replaced): their tickets stay refused, and they are never settled on this one')
          return setAside
        } catch (err) {
          if (db.isTransaction) db.exec('ROLLBACK')
          throw err
        }
      },
      batchKeys (from, to) {
        return keys.all(from, to).map(r => ({ projectId: r.project_id as Hex, gateway: r.gateway as string, epoch: BigInt(r.epoch as number) }))
      },
      unsigned () {
        return Number((countUnsigned.get() as { n: number }).n)
      },
      prune,
      refusesBefore,
      close () {
        if (closed) return
        clearInterval(timer)
        flush()
        closed = true
        // everything on disk (fsync'ed checkpoint), then marked clean: the next open needs no guard
        db.exec('PRAGMA synchronous = FULL')
        db.exec('PRAGMA wal_checkpoint(TRUNCATE)')
        setMeta.run('clean', '1')
        db.close()
      }
    }
  }
}

