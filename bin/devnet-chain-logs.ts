/**
 * The devnet's chain-bound logs: each gateway's ticket log and each worker's receipt log name
 * tickets, epochs and batches of one chain. Every devnet run starts a fresh chain whose epochs
 * count from 0 again, and the logs of earlier runs stayed: a worker's batch for epoch 0 carried the
 * receipts of every earlier run's epoch 0 (20,183 of them after a day of runs, claimed again from
 * the new chain's escrow), the epoch-based prune never removed them, and the growing tables made every
 * ticket cost more to record (≈ 320 µs per request at c=1 with 293,387 tickets kept).
 *
 * So a devnet that starts a fresh chain removes them, but only once no ticket of the earlier run
 * can still be presented: a worker accepts a ticket up to TICKET_HORIZON_MS before its deadline, and a receipt log that forgot a ticket still inside
 * that horizon could answer it a second time (an equivocation, provable on a chain with the same
 * contract addresses). A log written to within the horizon is kept, and the devnet says so; each
 * worker then sets the kept receipts aside when it names the new chain's Settlement to its receipt
 * log (`ReceiptLog.bindSettlement`): their tickets stay refused, and none is batched again.
 */
import { existsSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { TICKET_HORIZON_MS } from '#protocol'
import { CHECKER_DEFAULTS } from '../node/constants.ts'
import { RECEIPT_LOG_DEFAULTS } from '../node/worker/receipt-log.ts'

export type ChainLogReset =
  | { removed: string[] }
  | { kept: string[], lastWriteMs: number, safeAtMs: number }

/** Removes the ticket and receipt logs under these data dirs, unless one was written within the ticket horizon. */
export function resetChainLogs (dirs: { gateways: string[], workers: string[] }, now = Date.now()): ChainLogReset {
  const logs = [
    ...dirs.gateways.map(d => join(d, CHECKER_DEFAULTS.fileName)),
    ...dirs.workers.map(d => join(d, RECEIPT_LOG_DEFAULTS.fileName))
  ]
  // a database, its write-ahead log and its shared-memory index: the last write may be in either of the first two
  const files = logs.flatMap(f => [f, `${f}-wal`, `${f}-shm`]).filter(f => existsSync(f))
  if (files.length === 0) return { removed: [] }
  const lastWriteMs = Math.max(...files.map(f => statSync(f).mtimeMs))
  if (now - lastWriteMs < TICKET_HORIZON_MS) return { kept: logs.filter(f => existsSync(f)), lastWriteMs, safeAtMs: lastWriteMs + TICKET_HORIZON_MS }
  for (const f of files) rmSync(f, { force: true })
  return { removed: logs.filter(f => files.includes(f)) }
}
