/**
 * The devnet's chain-bound state. Every devnet run starts a fresh chain whose epochs count from 0
 * again, with the same chain id and contract addresses, and what nodes kept of earlier runs'
 * chains stayed in their data dirs:
 *
 * * a worker's settlement state (`settlement.sqlite`) holds its batches by (project, gateway,
 *   epoch): the fresh chain's batches of every epoch an earlier run had settled were taken as
 *   already built and never committed, so those requests were never paid;
 * * the gateway's ticket log (`tickets.sqlite`) holds the block its batch checker had read up to,
 *   and its verdicts by batch id: the fresh chain's first batches were never checked;
 * * a worker's receipt log (`receipts.sqlite`) holds every ticket it answered: a worker's batch for
 *   epoch 0 carried the receipts of every earlier run's epoch 0 (20,183 of them after a day of
 *   runs, claimed again from the new chain's escrow), and the growing tables made every ticket cost
 *   more to record (≈ 320 µs per request at c=1 with 293,387 tickets kept).
 *
 * The first two describe only the previous chain, which is gone, and protect nothing on the new
 * one: they are removed at every start. The receipt log also refuses a ticket answered before,
 * and a ticket of the previous run is valid on the new chain (same chain id and Settlement
 * address in its EIP-712 domain): a worker that forgot one still inside its deadline could answer
 * it a second time, an equivocation. So receipt logs are removed only once no ticket of theirs can
 * be presented (TICKET_HORIZON_MS after their last write), and kept otherwise, the devnet saying
 * so; each worker then sets the kept receipts aside when it names the new chain's Settlement to its
 * receipt log (`ReceiptLog.bindSettlement`): their tickets stay refused, and none is batched again.
 */
import { existsSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { TICKET_HORIZON_MS } from '#protocol'
import { CHECKER_DEFAULTS, SETTLEMENT_DEFAULTS } from '../node/constants.ts'
import { RECEIPT_LOG_DEFAULTS } from '../node/worker/receipt-log.ts'

export type ChainLogReset =
  | { removed: string[] }
  | { removed: string[], kept: string[], lastWriteMs: number, safeAtMs: number }

/** A database, its write-ahead log and its shared-memory index, those that exist. */
function filesOf (db: string): string[] {
  return [db, `${db}-wal`, `${db}-shm`].filter(f => existsSync(f))
}

/**
 * Removes the previous chain's state under these data dirs: the gateways' ticket logs and the
 * workers' settlement state always, the workers' receipt logs unless one was written within the
 * ticket horizon. `removed` names the databases removed.
 */
export function resetChainLogs (dirs: { gateways: string[], workers: string[] }, now = Date.now()): ChainLogReset {
  const always = [
    ...dirs.gateways.map(d => join(d, CHECKER_DEFAULTS.fileName)),
    ...dirs.workers.map(d => join(d, SETTLEMENT_DEFAULTS.fileName))
  ].filter(db => filesOf(db).length > 0)
  for (const db of always) for (const f of filesOf(db)) rmSync(f, { force: true })
  const receiptLogs = dirs.workers.map(d => join(d, RECEIPT_LOG_DEFAULTS.fileName)).filter(db => filesOf(db).length > 0)
  if (receiptLogs.length === 0) return { removed: always }
  // the last write may be in the database or its write-ahead log
  const lastWriteMs = Math.max(...receiptLogs.flatMap(filesOf).map(f => statSync(f).mtimeMs))
  if (now - lastWriteMs < TICKET_HORIZON_MS) return { removed: always, kept: receiptLogs, lastWriteMs, safeAtMs: lastWriteMs + TICKET_HORIZON_MS }
  for (const db of receiptLogs) for (const f of filesOf(db)) rmSync(f, { force: true })
  return { removed: [...always, ...receiptLogs] }
}
