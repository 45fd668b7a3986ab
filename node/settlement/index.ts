/** node/settlement: Settlement's epoch clock and the worker's settlement loop (batches, commits, answers, finalization). */
export { settlementClock, clockOf, type SettlementClock } from './clock.ts'
export {
  settler, settlementGrace, ticketEpochCheck, sessionEpochs, leafFromJson, cidBytes, cidOfBytes,
  type Settler, type SettlerInit, type SettlerComponents, type StoredBatch, type BatchState, type BatchDocument, type BatchDocumentIndex, type BatchDocumentChunk, type TickReport
} from './settler.ts'
export { allowanceTracker, type AllowanceTracker, type AllowanceTrackerInit, type AllowanceTrackerComponents, type SpendVerdict } from './allowance.ts'
export {
  ticketLog, batchChecker, findFault, findOutvoted, boundPeerOf,
  type Disagreement, type HeldReceipt, type TicketLog, type TicketLogInit, type IssuedTicket, type BatchChecker, type BatchCheckerInit, type BatchCheckerComponents, type CheckedBatch, type LeafChallenge, type Verdict
} from './checker.ts'
