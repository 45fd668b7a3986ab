/**
 * A gateway's check of the settlement batches that name it (issue 11): the gateway logs every
 * ticket it signs (SQLite WAL, before the ticket leaves), follows `BatchCommitted` events whose
 * gateway is itself, fetches each batch's published leaves (`dataCid`), and compares them with
 * its log and with the committed count and total. A fault it can prove with the published leaves
 * is proven at once with the matching Settlement call:
 *
 * | what is wrong | call | fault |
 * |---|---|---|
 * | leaf 0's cumulativeFee is not its fee | `proveInvalidLeaf(leaf 0)` | broken sum |
 * | a leaf's cumulativeFee is not the previous one plus its fee | `proveBrokenSum(prev, leaf)` | broken sum |
 * | the last leaf's cumulativeFee is not the committed total (an inflated total) | `proveInvalidLeaf(last)` | broken sum |
 * | a leaf names a job this gateway never ticketed (to this worker, project, epoch, fee) | `proveInvalidLeaf(leaf)` | invalid ticket |
 * | a session's leaf claims more than the latest cumulative fee this gateway signed for it | `proveInvalidLeaf(leaf)` | invalid ticket |
 * | one job claimed twice in the batch | `disputeDuplicateJob` | double claim |
 * | a leaf of a quorum job where the worker was outvoted (its output not the majority's) | `proveDisagreement(leaf, majority receipts)` | disagreement |
 * | such a leaf claiming another output than the one the worker signed | `proveEquivocation(leaf, its receipt)` | equivocation |
 *
 * Without a ticket log the same checker is a watcher (`peerhost watch`, a "fisherman"): it follows
 * every batch, and a leaf's ticket must carry a valid EIP-712 signature of the batch's gateway
 * (checked locally) instead of matching the log; it earns the challenger share of what it proves.
 *
 * A batch whose leaves cannot be fetched or do not rebuild the committed root (or count) is
 * recorded as `unverifiable`, logged at error level and challenged for data availability (SE-11):
 * the checker asks Settlement for one leaf chosen at random (`requestLeaf`, with a bond of
 * `minBatchBond`); the worker must answer it on chain (`answerLeaf`, the leaf and its Merkle proof)
 * within the answer window, or anyone proves it withheld the data (`proveUnanswered`: the batch is
 * voided, the worker slashed, the requester gets its bond back plus the challenger share). An
 * answered request pays the bond to the worker: a challenge costs the challenger only when the data
 * was available after all. The request is stored (`leaf_requests`) before its transaction leaves
 * and read back from the chain after a restart, so a batch is challenged once.
 *
 * Each batch is judged once: the verdict is stored before any proof is sent, and a proof whose
 * transaction failed is retried on the next tick while the batch is still open.
 */
import { randomInt } from 'node:crypto'
import { mkdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { DatabaseSync, type StatementSync } from 'node:sqlite'
import { hexToBytes, recoverAddress, serializeSignature, type Address, type Hex } from 'viem'
import { peerIdFromMultihash } from '@libp2p/peer-id'
import type { PeerId } from '@libp2p/interface'
import * as Digest from 'multiformats/hashes/digest'
import { settlementAbi, workerStakingAbi } from '#contracts'
import { ticketDigest, verifyRawCid, type PeerHostDomain, type Receipt } from '#protocol'
import { batchHeader, fromLeaves, type SettlementBatchHeader, type SettlementLeaf } from '../../contracts/abi/leaf.ts'
import type { ChainClient } from '../chain/client.ts'
import { revertName } from '../chain/client.ts'
import { CHECKER_DEFAULTS } from '../constants.ts'
import { NodeError } from '../errors.ts'
import type { Logger } from '../logger.ts'
import { cidOfBytes, leafFromJson, type BatchDocument, type BatchDocumentChunk, type BatchDocumentIndex } from './settler.ts'

/** One ticket as the gateway signed it (what a batch leaf must match). */
export interface IssuedTicket {
  jobId: Hex
  attempt: number
  worker: Address
  projectId: Hex
  epoch: bigint
  /** wei */
  fee: bigint
  /** a WebSocket session's ticket (its fee the latest cumulative one), not a request's */
  session?: boolean
}

/** The fees of this gateway's tickets for one project and epoch, requests and metered sessions apart (status, `peerhost escrow show`). */
export interface IssuedFees {
  projectId: Hex
  epoch: bigint
  requests: { count: number, fees: bigint }
  /** WebSocket sessions: each counted once, at its latest cumulative fee (the opening ticket's price included) */
  sessions: { count: number, fees: bigint }
}

/**
 * A receipt the gateway holds as evidence: the EIP-712 Receipt (uint fields as bigint), the
 * worker's signature of it, and the gateway's own signature of the ticket it answers.
 */
export interface HeldReceipt {
  receipt: Receipt
  signature: Hex
  ticketSignature: Hex
}

/**
 * A quorum job (node/gateway/quorum.ts) where `minority` signed an output other than the decided
 * majority's: the evidence `proveDisagreement` needs against the leaf of that job in the
 * minority worker's batch (the majority's receipts), and `proveEquivocation` if the worker's leaf
 * claims another output than the one it signed (its own receipt).
 */
export interface Disagreement {
  minority: HeldReceipt
  projectId: Hex
  /** the majority's receipts (same job hash, one output), at least the quorum's majority */
  majority: HeldReceipt[]
}

export interface TicketLog {
  /**
   * Records a signed ticket; call before the ticket leaves the gateway. A session's cumulative
   * ticket (same jobId, attempt and worker, a higher fee) replaces the fee on record: the log keeps
   * the latest cumulative fee per (jobId, attempt, worker), never a lower one.
   */
  record: (t: IssuedTicket) => void
  /** Records (or extends with more majority receipts) the evidence against a quorum job's minority worker. */
  recordDisagreement: (d: Disagreement) => void
  /** The evidence against `worker` for its ticket (jobId, attempt), if it was outvoted. */
  disagreement: (jobId: Hex, attempt: number, worker: Address) => Disagreement | undefined
  /** How many outvoted receipts are on record (for the status). */
  disagreements: () => number
  /** The ticket of (jobId, attempt, worker), if this gateway signed it. */
  get: (jobId: Hex, attempt: number, worker: Address) => IssuedTicket | undefined
  /** How many tickets and how much fee this gateway issued to `worker` for (project, epoch). */
  totals: (worker: Address, projectId: Hex, epoch: bigint) => { count: number, total: bigint }
  /** The fees of the tickets on record per (project, epoch), newest epoch first; `projectId` keeps one project's. */
  fees: (projectId?: Hex) => IssuedFees[]
  /** Drops tickets of epochs before `epoch` (their batches can no longer be challenged). */
  prune: (beforeEpoch: bigint) => number
  close: () => void
}

export interface TicketLogInit {
  /** the gateway's data dir: `<dataDir>/CHECKER_DEFAULTS.fileName` */
  dataDir: string
  /** @default `<dataDir>/CHECKER_DEFAULTS.fileName` */
  path?: string
}

export type Verdict = 'ok' | 'faulty' | 'unverifiable'

export interface CheckedBatch {
  batchId: Hex
  worker: Address
  projectId: Hex
  epoch: bigint
  count: number
  total: bigint
  verdict: Verdict
  /** what was wrong (faulty / unverifiable), in words */
  reason?: string
  /** the Settlement call that proves it */
  proof?: string
  /** the proof's transaction, once mined */
  tx?: Hex
  /** the tickets this gateway issued to the worker for (project, epoch) */
  issued: { count: number, total: bigint }
  checkedAt: number
}

export interface BatchCheckerInit extends TicketLogInit {
  /** @default CHECKER_DEFAULTS.intervalMs; 0 = no timer (call `tick` yourself) */
  intervalMs?: number
}

export interface BatchCheckerComponents {
  /** a chain client with the account that sends the proofs (the gateway's, or the watcher's) */
  client: ChainClient
  /**
   * The gateway's ticket log: only batches naming the account are checked, each leaf against the
   * log. @default none: a watcher, checking every batch, each leaf's ticket signature.
   */
  tickets?: TicketLog
  /** fetches a published batch document by CID (the gateway's helia) */
  fetch: (cid: string, options?: { signal?: AbortSignal, timeoutMs?: number, worker?: Address }) => Promise<Uint8Array>
  logger: Logger
}

export interface BatchChecker {
  /** One pass over new BatchCommitted events (and proofs to retry). Never runs twice at once. */
  tick: () => Promise<CheckedBatch[]>
  checked: () => CheckedBatch[]
  /** The data-availability challenges this checker sent (one per unverifiable batch), newest first. */
  leafRequests: () => LeafChallenge[]
  /** for /_peerhost/status */
  status: () => Record<string, unknown>
  close: () => void
}

/**
 * A `requestLeaf` challenge of an unverifiable batch: `requesting` (stored, transaction not known
 * to be mined) → `requested` → `answered` (the worker published the leaf on chain) | `proven` (it
 * did not: `proveUnanswered` voided the batch) | `voided` (voided by another proof first) |
 * `closed` (Settlement refused the request, e.g. the challenge window was over).
 */
export interface LeafChallenge {
  batchId: Hex
  index: number
  state: 'requesting' | 'requested' | 'answered' | 'proven' | 'voided' | 'closed'
  reason?: string
  tx?: Hex
  updatedAt: number
}

const TICKET_SCHEMA = `
CREATE TABLE IF NOT EXISTS tickets (
  job_id      TEXT NOT NULL,
  attempt     INTEGER NOT NULL,
  worker      TEXT NOT NULL,   -- lower case
  project_id  TEXT NOT NULL,
  epoch       INTEGER NOT NULL,
  fee         TEXT NOT NULL,   -- wei, decimal
  session     INTEGER NOT NULL DEFAULT 0, -- 1: a WebSocket session's ticket (fee: its latest cumulative one)
  UNIQUE (job_id, attempt, worker)
) STRICT;
CREATE INDEX IF NOT EXISTS tickets_batch ON tickets (worker, project_id, epoch);
CREATE TABLE IF NOT EXISTS disagreements (
  job_id      TEXT NOT NULL,
  attempt     INTEGER NOT NULL,
  worker      TEXT NOT NULL,   -- the outvoted worker, lower case
  epoch       INTEGER NOT NULL,
  evidence    TEXT NOT NULL,   -- JSON of the Disagreement (bigints as {"$big": "…"})
  PRIMARY KEY (job_id, attempt, worker)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checked (
  batch_id    TEXT PRIMARY KEY,
  worker      TEXT NOT NULL,
  project_id  TEXT NOT NULL,
  epoch       INTEGER NOT NULL,
  count       INTEGER NOT NULL,
  total       TEXT NOT NULL,
  verdict     TEXT NOT NULL,
  reason      TEXT,
  proof       TEXT,
  proof_args  TEXT,            -- JSON of the proof call's arguments, until its transaction is mined
  tx          TEXT,
  issued_count INTEGER NOT NULL,
  issued_total TEXT NOT NULL,
  checked_at  INTEGER NOT NULL,
  header      TEXT             -- JSON of the batch's ISettlement.BatchHeader: every call naming the batch passes it
) STRICT;
CREATE TABLE IF NOT EXISTS cursor (k TEXT PRIMARY KEY, block TEXT NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS leaf_requests (
  batch_id    TEXT PRIMARY KEY, -- an unverifiable batch this checker challenged (one request per batch)
  idx         INTEGER NOT NULL,
  state       TEXT NOT NULL,    -- requesting (durable before the transaction) | requested | answered | proven | voided | closed
  reason      TEXT,
  tx          TEXT,             -- the requestLeaf, then the proveUnanswered transaction
  updated_at  INTEGER NOT NULL
) STRICT;
`

/**
 * A log from before tickets were rows in issue order: its table was keyed by (job_id, attempt,
 * worker) itself (WITHOUT ROWID), so every ticket went to a random place in the table (a random
 * page write per ticket: ≈ 97 µs against ≈ 71 µs here with 200,000 tickets kept). The same rows,
 * in the rowid table with the key in a unique index beside it; one transaction.
 */
function migrateTickets (db: DatabaseSync): void {
  const old = db.prepare("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'tickets'").get() as { sql: string } | undefined
  if (old === undefined || !/WITHOUT\s+ROWID/i.test(old.sql)) return
  const columns = (db.prepare('PRAGMA table_info(tickets)').all() as Array<{ name: string }>).map(c => c.name)
  db.exec('BEGIN IMMEDIATE')
  try {
    db.exec('ALTER TABLE tickets RENAME TO tickets_v1')
    db.exec('DROP INDEX IF EXISTS tickets_batch')
    db.exec(TICKET_SCHEMA)
    // (a log from before session fees has no session column: it defaults to 0)
    const kept = ['job_id', 'attempt', 'worker', 'project_id', 'epoch', 'fee', 'session'].filter(c => columns.includes(c)).join(', ')
    db.exec(`INSERT INTO tickets (${kept}) SELECT ${kept} FROM tickets_v1 ORDER BY epoch`)
    db.exec('DROP TABLE tickets_v1')
    db.exec('COMMIT')
  } catch (err) {
    if (db.isTransaction) db.exec('ROLLBACK')
    throw err
  }
}

function openDb (init: TicketLogInit): DatabaseSync {
  const path = init.path ?? join(init.dataDir, CHECKER_DEFAULTS.fileName)
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
  const db = new DatabaseSync(path)
  db.exec('PRAGMA journal_mode = WAL')
  // NORMAL in WAL mode: a crash loses at most the last transactions, never corrupts; one insert per
  // ticket stays off the request's critical path (the gateway's money is not at stake, its proofs are)
  db.exec('PRAGMA synchronous = NORMAL')
  db.exec('PRAGMA busy_timeout = 5000')
  migrateTickets(db)
  db.exec(TICKET_SCHEMA)
  // a log from before Settlement stored only a hash of each batch's header
  const columns = db.prepare('PRAGMA table_info(checked)').all() as Array<{ name: string }>
  if (!columns.some(c => c.name === 'header')) db.exec('ALTER TABLE checked ADD COLUMN header TEXT')
  // a log from before session fees were told apart
  const ticketColumns = db.prepare('PRAGMA table_info(tickets)').all() as Array<{ name: string }>
  if (!ticketColumns.some(c => c.name === 'session')) db.exec('ALTER TABLE tickets ADD COLUMN session INTEGER NOT NULL DEFAULT 0')
  return db
}

/** The gateway's ticket log (SQLite WAL): what a batch naming this gateway is checked against. */
export function ticketLog (init: TicketLogInit): TicketLog {
  const db = openDb(init)
  // fees are decimal strings without leading zeros: longer is larger, equal lengths compare as text
  const insert = db.prepare(`INSERT INTO tickets (job_id, attempt, worker, project_id, epoch, fee, session) VALUES (?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (job_id, attempt, worker) DO UPDATE SET fee = excluded.fee, session = max(tickets.session, excluded.session)
    WHERE length(excluded.fee) > length(tickets.fee) OR (length(excluded.fee) = length(tickets.fee) AND excluded.fee > tickets.fee)`)
  const one = db.prepare('SELECT * FROM tickets WHERE job_id = ? AND attempt = ? AND worker = ?')
  const sums = db.prepare('SELECT fee FROM tickets WHERE worker = ? AND project_id = ? AND epoch = ?')
  const allFees = db.prepare('SELECT project_id, epoch, session, fee FROM tickets ORDER BY epoch DESC, project_id')
  const projectFees = db.prepare('SELECT project_id, epoch, session, fee FROM tickets WHERE project_id = ? ORDER BY epoch DESC')
  const prune = db.prepare('DELETE FROM tickets WHERE epoch < ?')
  const putDisagreement = db.prepare('INSERT OR REPLACE INTO disagreements (job_id, attempt, worker, epoch, evidence) VALUES (?, ?, ?, ?, ?)')
  const getDisagreement = db.prepare('SELECT evidence FROM disagreements WHERE job_id = ? AND attempt = ? AND worker = ?')
  const countDisagreements = db.prepare('SELECT COUNT(*) AS n FROM disagreements')
  const pruneDisagreements = db.prepare('DELETE FROM disagreements WHERE epoch < ?')
  let closed = false
  // the tickets of one event-loop turn go in one transaction (a busy gateway issues dozens per turn;
  // a transaction each cost ~0.2 ms of the request path); every read flushes first
  let pending: IssuedTicket[] = []
  const flush = (): void => {
    if (pending.length === 0 || closed) return
    const rows = pending
    pending = []
    db.exec('BEGIN')
    try {
      for (const t of rows) insert.run(t.jobId.toLowerCase(), t.attempt, t.worker.toLowerCase(), t.projectId.toLowerCase(), t.epoch, t.fee.toString(), t.session === true ? 1 : 0)
      db.exec('COMMIT')
    } catch (err) {
      db.exec('ROLLBACK')
      throw err
    }
  }
  return {
    record (t) {
      pending.push(t)
      if (pending.length === 1) setImmediate(flush)
    },
    recordDisagreement (d) {
      const r = d.minority.receipt
      putDisagreement.run(r.jobId.toLowerCase(), r.attempt, r.worker.toLowerCase(), r.epoch, JSON.stringify(d, bigJson))
    },
    disagreement (jobId, attempt, worker) {
      const r = getDisagreement.get(jobId.toLowerCase(), attempt, worker.toLowerCase()) as { evidence: string } | undefined
      return r === undefined ? undefined : JSON.parse(r.evidence, bigParse) as Disagreement
    },
    disagreements: () => Number((countDisagreements.get() as { n: number }).n),
    get (jobId, attempt, worker) {
      flush()
      const r = one.get(jobId.toLowerCase(), attempt, worker.toLowerCase()) as Record<string, string | number> | undefined
      if (r === undefined) return undefined
      return { jobId: r.job_id as Hex, attempt: Number(r.attempt), worker: r.worker as Address, projectId: r.project_id as Hex, epoch: BigInt(r.epoch), fee: BigInt(r.fee), ...(Number(r.session) === 1 ? { session: true } : {}) }
    },
    totals (worker, projectId, epoch) {
      flush()
      const rows = sums.all(worker.toLowerCase(), projectId.toLowerCase(), epoch) as Array<{ fee: string }>
      return { count: rows.length, total: rows.reduce((s, r) => s + BigInt(r.fee), 0n) }
    },
    fees (projectId) {
      flush()
      // fees are summed here, not in SQL: they are decimal strings of up to 78 digits
      const rows = (projectId === undefined ? allFees.all() : projectFees.all(projectId.toLowerCase())) as Array<{ project_id: string, epoch: number | bigint, session: number | bigint, fee: string }>
      const out = new Map<string, IssuedFees>()
      for (const r of rows) {
        const k = `${r.project_id}/${r.epoch}`
        let f = out.get(k)
        if (f === undefined) out.set(k, f = { projectId: r.project_id as Hex, epoch: BigInt(r.epoch), requests: { count: 0, fees: 0n }, sessions: { count: 0, fees: 0n } })
        const kind = Number(r.session) === 1 ? f.sessions : f.requests
        kind.count++
        kind.fees += BigInt(r.fee)
      }
      return [...out.values()]
    },
    prune: (before) => { flush(); return Number(prune.run(before).changes) + Number(pruneDisagreements.run(before).changes) },
    close () { if (!closed) { flush(); closed = true; db.close() } }
  }
}

interface Finding { reason: string, proof: string, args: unknown[] }

/** Whether a leaf's ticket is one the batch's gateway issued: from its log, or from the signature. */
export type TicketCheck = (leaf: SettlementLeaf, batch: { worker: Address, gateway: Address, projectId: Hex, epoch: bigint }) => Promise<boolean>

/**
 * A gateway's check: the ticket is in its log for this worker, project and epoch, and the leaf's fee
 * is the one on record. A session's leaf may claim less than the latest cumulative fee (the worker
 * settled an earlier cumulative ticket: the final one reached it too late), never more; a lower fee
 * must carry this gateway's valid signature of it (`signedTicket` with `domain`).
 */
export function loggedTicket (tickets: Pick<TicketLog, 'get'>, domain?: PeerHostDomain): TicketCheck {
  const signed = domain === undefined ? undefined : signedTicket(domain)
  return async (l, b) => {
    const t = tickets.get(l.jobId, l.attempt, b.worker)
    if (t === undefined || t.projectId.toLowerCase() !== b.projectId.toLowerCase() || t.epoch !== b.epoch) return false
    if (l.fee === t.fee) return true
    return l.fee < t.fee && signed !== undefined && await signed(l, b)
  }
}

/** Anyone's check: the leaf's (v, r, s) is the batch gateway's EIP-712 signature of the ticket rebuilt from the leaf and the batch. */
export function signedTicket (domain: PeerHostDomain): TicketCheck {
  return async (l, b) => {
    const digest = ticketDigest(domain, {
      jobId: l.jobId, attempt: l.attempt, functionId: l.functionId, jobHash: l.jobHash, inputHash: l.inputHash,
      worker: b.worker, gateway: b.gateway, fee: l.fee, epoch: b.epoch, deadline: l.deadline
    })
    // Settlement refuses high-s signatures (OpenZeppelin ECDSA): so does this check
    if (BigInt(l.s) > SECP256K1_HALF_N || (l.v !== 27 && l.v !== 28)) return false
    try {
      const signer = await recoverAddress({ hash: digest, signature: serializeSignature({ r: l.r, s: l.s, v: BigInt(l.v) }) })
      return signer.toLowerCase() === b.gateway.toLowerCase()
    } catch {
      return false
    }
  }
}
const SECP256K1_HALF_N = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0n

/** What is provably wrong with a batch's published leaves, given the committed total and the ticket check (first finding wins). */
export async function findFault (leaves: SettlementLeaf[], total: bigint, batch: { header: SettlementBatchHeader, worker: Address, gateway: Address, projectId: Hex, epoch: bigint }, ticketOk: TicketCheck): Promise<Finding | undefined> {
  // every proof names the batch by its header (Settlement checks it against the committed hash)
  const named = batch.header
  const tree = fromLeaves(leaves, total)
  const proof = (i: number): Hex[] => tree.proof(i)
  let sum = 0n
  for (let i = 0; i < leaves.length; i++) {
    const l = leaves[i]
    const expected = sum + l.fee
    if (l.cumulativeFee !== expected) {
      return i === 0
        ? { reason: `leaf 0 carries cumulativeFee ${l.cumulativeFee} for a fee of ${l.fee}`, proof: 'proveInvalidLeaf', args: [named, l, proof(0)] }
        : { reason: `leaf ${i} carries cumulativeFee ${l.cumulativeFee}, expected ${expected}`, proof: 'proveBrokenSum', args: [named, leaves[i - 1], proof(i - 1), l, proof(i)] }
    }
    sum = expected
  }
  const last = leaves.length - 1
  if (sum !== total) return { reason: `the committed total ${total} is not the leaves' sum ${sum}`, proof: 'proveInvalidLeaf', args: [named, leaves[last], proof(last)] }
  const seen = new Map<string, number>()
  for (let i = 0; i < leaves.length; i++) {
    const l = leaves[i]
    if (!await ticketOk(l, batch)) {
      return { reason: `leaf ${i} (job ${l.jobId}, attempt ${l.attempt}, fee ${l.fee}) matches no ticket the batch's gateway issued to the worker for this project and epoch`, proof: 'proveInvalidLeaf', args: [named, l, proof(i)] }
    }
    const j = seen.get(l.jobId.toLowerCase())
    if (j !== undefined) return { reason: `job ${l.jobId} is claimed twice (leaves ${j} and ${i})`, proof: 'disputeDuplicateJob', args: [named, leaves[j], proof(j), named, l, proof(i)] }
    seen.set(l.jobId.toLowerCase(), i)
  }
  return undefined
}

/**
 * A leaf of a job where the batch's worker was outvoted under quorum (the gateway's evidence, see
 * `Disagreement`): `proveDisagreement` with the majority's receipts (signers ascending, as the
 * contract requires) when the leaf claims the output the worker signed; `proveEquivocation` with
 * the worker's own receipt when the leaf claims another output than the one it signed. Null when
 * no leaf was outvoted; a leaf whose majority is smaller than the contract's `disagreementQuorum`
 * is reported in `unprovable` instead (it cannot be proven on this chain).
 */
export function findOutvoted (
  leaves: SettlementLeaf[], total: bigint, batch: { header: SettlementBatchHeader, worker: Address },
  evidence: (jobId: Hex, attempt: number, worker: Address) => Disagreement | undefined, needed: number
): { finding?: Finding, unprovable: string[] } {
  const unprovable: string[] = []
  let tree: ReturnType<typeof fromLeaves> | undefined
  for (let i = 0; i < leaves.length; i++) {
    const l = leaves[i]
    const d = evidence(l.jobId, l.attempt, batch.worker)
    if (d === undefined) continue
    tree ??= fromLeaves(leaves, total)
    const signed = d.minority.receipt.outputHash
    if (l.outputHash.toLowerCase() !== signed.toLowerCase()) {
      return {
        finding: { reason: `leaf ${i} (job ${l.jobId}) claims output ${l.outputHash}, but the worker signed ${signed} for that ticket`, proof: 'proveEquivocation', args: [batch.header, l, tree.proof(i), signed, d.minority.signature] },
        unprovable
      }
    }
    if (d.majority.length < needed) {
      unprovable.push(`leaf ${i} (job ${l.jobId}): outvoted by ${d.majority.length} receipts, fewer than the contract's disagreementQuorum of ${needed}`)
      continue
    }
    const majority = [...d.majority].sort((a, b) => BigInt(a.receipt.worker) < BigInt(b.receipt.worker) ? -1 : 1)
    return {
      finding: {
        reason: `leaf ${i} (job ${l.jobId}): the worker's output ${signed} disagrees with the ${majority.length} workers of the quorum majority (${majority[0].receipt.outputHash})`,
        proof: 'proveDisagreement',
        args: [batch.header, l, tree.proof(i), majority.map(m => m.receipt), majority.map(m => m.signature), majority.map(m => m.ticketSignature)]
      },
      unprovable
    }
  }
  return { unprovable }
}

/**
 * The libp2p peer a worker bound to its staking address (WorkerStaking.peerOf): where its batch
 * documents are, so a watcher that is not connected to it yet dials it first.
 */
export async function boundPeerOf (client: Pick<ChainClient, 'publicClient' | 'contracts'>, worker: Address): Promise<PeerId | undefined> {
  try {
    const [bytes] = await client.publicClient.readContract({ address: client.contracts.addresses.WorkerStaking, abi: workerStakingAbi, functionName: 'peerOf', args: [worker] }) as readonly [Hex, Hex]
    return bytes === '0x' ? undefined : peerIdFromMultihash(Digest.decode(hexToBytes(bytes)))
  } catch {
    return undefined
  }
}

function bigJson (_k: string, v: unknown): unknown { return typeof v === 'bigint' ? { $big: v.toString() } : v }
function bigParse (_k: string, v: any): unknown { return v !== null && typeof v === 'object' && typeof v.$big === 'string' ? BigInt(v.$big) : v }
function jsonArgs (args: unknown[]): string {
  return JSON.stringify(args, bigJson)
}
function parseArgs (json: string): unknown[] {
  return JSON.parse(json, bigParse) as unknown[]
}

export function batchChecker (init: BatchCheckerInit): (components: BatchCheckerComponents) => BatchChecker {
  return (components) => {
    const { client, tickets } = components
    const log = components.logger.child({ component: 'peerhost:gateway:settlement' })
    const account = client.account
    if (account === undefined) throw new NodeError('CHAIN_NO_ACCOUNT', 'the batch checker needs a chain client with the gateway\'s account (it sends proofs)')
    const me = account.address.toLowerCase()
    const ticketOk = tickets === undefined ? signedTicket(client.domain) : loggedTicket(tickets, client.domain)
    const settlement = client.contracts.addresses.Settlement
    const db = openDb(init)
    const insert = db.prepare(`INSERT OR IGNORE INTO checked (batch_id, worker, project_id, epoch, count, total, verdict, reason, proof, proof_args, issued_count, issued_total, checked_at, header)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
    const proven: StatementSync = db.prepare('UPDATE checked SET tx = ?, proof_args = NULL, reason = COALESCE(?, reason) WHERE batch_id = ?')
    const pending = db.prepare('SELECT batch_id, proof, proof_args FROM checked WHERE proof_args IS NOT NULL')
    const all = db.prepare('SELECT * FROM checked ORDER BY checked_at DESC')
    const known = db.prepare('SELECT 1 FROM checked WHERE batch_id = ?')
    const getCursor = db.prepare("SELECT block FROM cursor WHERE k = 'batches'")
    const setCursor = db.prepare("INSERT INTO cursor (k, block) VALUES ('batches', ?) ON CONFLICT (k) DO UPDATE SET block = excluded.block")

    function row (r: Record<string, unknown>): CheckedBatch {
      const b: CheckedBatch = {
        batchId: r.batch_id as Hex,
        worker: r.worker as Address,
        projectId: r.project_id as Hex,
        epoch: BigInt(r.epoch as number),
        count: Number(r.count),
        total: BigInt(r.total as string),
        verdict: r.verdict as Verdict,
        issued: { count: Number(r.issued_count), total: BigInt(r.issued_total as string) },
        checkedAt: Number(r.checked_at)
      }
      if (r.reason !== null) b.reason = r.reason as string
      if (r.proof !== null) b.proof = r.proof as string
      if (r.tx !== null) b.tx = r.tx as Hex
      return b
    }

    let needed: number | undefined
    /** Settlement's `disagreementQuorum` (immutable: read once) */
    async function disagreementQuorum (): Promise<number> {
      needed ??= Number(await client.publicClient.readContract({ address: settlement, abi: settlementAbi, functionName: 'disagreementQuorum' }))
      return needed
    }

    type Committed = { batchId: Hex, worker: Address, gateway: Address, projectId: Hex, epoch: bigint, root: Hex, count: number, total: bigint, bond: bigint, dataCid: Hex }
    /** batches whose leaves could not be fetched yet (in memory: a restart judges them from the saved block on) */
    const retries = new Map<Hex, { event: Committed, tries: number }>()

    /** One block of a batch document, checked against its CID and parsed. */
    async function fetchJson<T> (cid: string, worker: Address): Promise<T> {
      const signal = AbortSignal.timeout(CHECKER_DEFAULTS.fetchTimeoutMs)
      // raced with the timeout: a dial inside the fetch that ignores the signal must not stall every later batch
      const bytes = await Promise.race([
        components.fetch(cid, { signal, timeoutMs: CHECKER_DEFAULTS.fetchTimeoutMs, worker }),
        new Promise<never>((_resolve, reject) => signal.addEventListener('abort', () => reject(new NodeError('BATCH_DATA_TIMEOUT', `block ${cid} was not fetched within ${CHECKER_DEFAULTS.fetchTimeoutMs} ms`)), { once: true }))
      ])
      if (!verifyRawCid(cid, bytes)) throw new NodeError('BATCH_DATA_MISMATCH', `the bytes fetched for ${cid} do not hash to it`)
      return JSON.parse(new TextDecoder().decode(bytes)) as T
    }

    /** The leaves of a chunked document, in index order; each chunk must be the next run of leaves of this batch. */
    async function chunkedLeaves (doc: BatchDocumentIndex, e: { worker: Address, count: number, root: Hex }): Promise<Array<Record<string, string | number>>> {
      // at most one chunk per leaf: a document cannot make the checker fetch more than the batch's count
      if (!Array.isArray(doc.chunks) || doc.chunks.length === 0 || doc.chunks.length > e.count) throw new NodeError('BATCH_DATA_INVALID', `the batch document index lists ${Array.isArray(doc.chunks) ? doc.chunks.length : 'no'} chunks for ${e.count} leaves`)
      const leaves: Array<Record<string, string | number>> = []
      for (const c of doc.chunks) {
        const chunk = await fetchJson<BatchDocumentChunk>(String(c.cid), e.worker)
        if (chunk.first !== leaves.length || !Array.isArray(chunk.leaves) || chunk.leaves.length !== c.count || chunk.leaves.length === 0 || String(chunk.root).toLowerCase() !== e.root.toLowerCase()) {
          throw new NodeError('BATCH_DATA_INVALID', `chunk ${c.cid} is not leaves ${leaves.length}… of batch root ${e.root}`)
        }
        if (leaves.length + chunk.leaves.length > e.count) throw new NodeError('BATCH_DATA_INVALID', `the chunks hold more than the batch's ${e.count} leaves`)
        leaves.push(...chunk.leaves)
      }
      return leaves
    }

    /** Judges a batch once; false when its leaves could not be fetched yet (retried next tick). */
    async function judge (e: Committed): Promise<boolean> {
      const header = batchHeader(e)
      // a watcher knows no tickets: -1 says "not known" in the status
      const issued = tickets?.totals(e.worker, e.projectId, e.epoch) ?? { count: -1, total: 0n }
      let verdict: Verdict = 'ok'
      let finding: Finding | undefined
      let reason: string | undefined
      try {
        const doc = await fetchJson<BatchDocument | BatchDocumentIndex>(cidOfBytes(e.dataCid), e.worker)
        // SE-07: a document over one block is an index of chunks, fetched one after another
        const leaves = (doc.v === 2 ? await chunkedLeaves(doc, e) : doc.leaves ?? []).map(leafFromJson)
        if (leaves.length === 0) throw new NodeError('BATCH_DATA_INVALID', 'the batch document has no leaves')
        if (fromLeaves(leaves).root.toLowerCase() !== e.root.toLowerCase() || leaves.length !== e.count) {
          verdict = 'unverifiable'
          reason = `the published leaves (${leaves.length}) do not rebuild the committed root and count (${e.count})`
        } else {
          finding = await findFault(leaves, e.total, { ...e, header }, ticketOk)
          // a batch that is sound in itself may still claim a job whose quorum outvoted its worker
          if (finding === undefined && tickets !== undefined && tickets.disagreements() > 0) {
            const outvoted = findOutvoted(leaves, e.total, { ...e, header }, tickets.disagreement, await disagreementQuorum())
            finding = outvoted.finding
            if (outvoted.unprovable.length > 0) log.warn({ batchId: e.batchId, unprovable: outvoted.unprovable }, 'an outvoted worker\'s leaf cannot be proven: the quorum majority is smaller than the contract needs')
          }
          if (finding !== undefined) { verdict = 'faulty'; reason = finding.reason }
        }
      } catch (err: any) {
        // a fetch can fail for a while (the worker's node busy or restarting): try again on later
        // ticks, and only then record the batch as unverifiable
        const tries = (retries.get(e.batchId)?.tries ?? 0) + 1
        if (tries < CHECKER_DEFAULTS.fetchAttempts) {
          retries.set(e.batchId, { event: e, tries })
          log.warn({ batchId: e.batchId, tries, err: err?.message }, 'batch leaves not fetched yet; trying again next tick')
          return false
        }
        retries.delete(e.batchId)
        verdict = 'unverifiable'
        reason = `the batch's leaves could not be read (${tries} tries): ${err?.message ?? err}`
      }
      insert.run(e.batchId, e.worker.toLowerCase(), e.projectId, e.epoch, e.count, e.total.toString(), verdict, reason ?? null,
        finding?.proof ?? null, finding === undefined ? null : jsonArgs(finding.args), issued.count, issued.total.toString(), Date.now(), jsonArgs([header]))
      const fields = { batchId: e.batchId, worker: e.worker, epoch: e.epoch.toString(), count: e.count, total: e.total.toString(), issuedCount: issued.count, issuedTotal: issued.total.toString() }
      if (verdict === 'ok') log.info(fields, 'settlement batch checked: no fault')
      else if (verdict === 'faulty') log.error({ ...fields, reason, proof: finding?.proof }, 'settlement batch is faulty; proving it')
      else log.error({ ...fields, reason }, 'settlement batch could not be verified')
      return true
    }

    async function prove (batchId: Hex, proof: string, argsJson: string): Promise<void> {
      try {
        const receipt = await client.send({ address: settlement, abi: settlementAbi, functionName: proof as any, args: parseArgs(argsJson) as any })
        const tx = receipt.transactionHash
        proven.run(tx, null, batchId)
        log.warn({ batchId, proof, tx }, 'fault proven: the batch is voided and its worker slashed')
      } catch (err) {
        const name = revertName(err)
        // already voided (by us before a restart, or by a watcher), finalized, or no fault after all: stop trying
        if (name !== undefined && name !== '') {
          proven.run(null, `proof not accepted (${name})`, batchId)
          log.warn({ batchId, proof, revert: name }, 'fault proof not accepted')
          return
        }
        log.warn({ batchId, proof, err: (err as Error).message }, 'fault proof failed; retrying next tick')
      }
    }

    const unchallenged = db.prepare(`SELECT c.batch_id, c.count FROM checked c LEFT JOIN leaf_requests l ON l.batch_id = c.batch_id
      WHERE c.verdict = 'unverifiable' AND l.batch_id IS NULL`)
    const putRequest = db.prepare("INSERT OR IGNORE INTO leaf_requests (batch_id, idx, state, updated_at) VALUES (?, ?, 'requesting', ?)")
    const setRequest = db.prepare('UPDATE leaf_requests SET state = ?, reason = COALESCE(?, reason), tx = COALESCE(?, tx), updated_at = ? WHERE batch_id = ?')
    const liveRequests = db.prepare("SELECT l.batch_id, l.idx, l.state, c.header FROM leaf_requests l JOIN checked c ON c.batch_id = l.batch_id WHERE l.state IN ('requesting', 'requested')")
    const allRequests = db.prepare('SELECT * FROM leaf_requests ORDER BY updated_at DESC')
    const provenUnanswered = db.prepare("UPDATE checked SET proof = 'proveUnanswered', tx = ?, reason = ? WHERE batch_id = ?")
    let bond: Promise<bigint> | undefined
    const read = async <T>(functionName: string, args: readonly unknown[]): Promise<T> =>
      await client.publicClient.readContract({ address: settlement, abi: settlementAbi, functionName: functionName as any, args: args as any }) as T

    /**
     * SE-11: challenges every unverifiable batch for one random leaf, then follows each open
     * challenge to its end: answered, or proven unanswered once the answer window closed.
     */
    async function challenge (): Promise<void> {
      // stored before the transaction leaves: a restart finds the request on chain instead of sending a second one
      for (const r of unchallenged.all() as Array<{ batch_id: Hex, count: number }>) putRequest.run(r.batch_id, randomInt(Math.max(1, r.count)), Date.now())
      const live = liveRequests.all() as Array<{ batch_id: Hex, idx: number, state: LeafChallenge['state'], header: string | null }>
      if (live.length === 0) return
      const head = (await client.publicClient.getBlock({ blockTag: 'latest' })).timestamp
      for (const r of live) {
        try {
          if (r.header === null) throw new NodeError('BATCH_HEADER_UNKNOWN', 'the batch was checked before headers were recorded: it cannot be named to Settlement')
          await followRequest(r.batch_id, parseArgs(r.header)[0], r.idx, r.state, head)
        } catch (err) {
          log.warn({ batchId: r.batch_id, index: r.idx, err: (err as Error).message }, 'leaf request step failed; retrying next tick')
        }
      }
    }

    async function followRequest (batchId: Hex, header: unknown, index: number, state: LeafChallenge['state'], head: bigint): Promise<void> {
      const req = await read<{ requester: Address, deadline: bigint, open: boolean }>('getLeafRequest', [batchId, BigInt(index)])
      const now = Date.now()
      if (state === 'requesting' && BigInt(req.requester) === 0n) {
        bond ??= read<bigint>('minBatchBond', [])
        try {
          const receipt = await client.send({ address: settlement, abi: settlementAbi, functionName: 'requestLeaf', args: [header, BigInt(index)] as any, value: await bond })
          setRequest.run('requested', null, receipt.transactionHash, now, batchId)
          log.warn({ batchId, index, tx: receipt.transactionHash }, 'unverifiable batch challenged: its worker must publish the requested leaf on chain or be slashed')
        } catch (err) {
          const name = revertName(err)
          // not challengeable any more (finalized, voided, window over): nothing left to do
          if (name !== undefined && name !== '') {
            setRequest.run('closed', `requestLeaf not accepted (${name})`, null, now, batchId)
            log.warn({ batchId, index, revert: name }, 'leaf request not accepted')
          } else {
            log.warn({ batchId, index, err: (err as Error).message }, 'leaf request failed; retrying next tick')
          }
        }
        return
      }
      if (state === 'requesting') setRequest.run('requested', null, null, now, batchId)
      if (!req.open) {
        const h = header as { worker: Address, projectId: Hex, epoch: bigint, gateway: Address }
        const b = await read<{ status: number }>('getBatch', [h.worker, h.projectId, h.epoch, h.gateway])
        const end = b.status === 3 ? 'voided' : 'answered'
        setRequest.run(end, null, null, now, batchId)
        log.info({ batchId, index, state: end }, end === 'answered' ? 'the worker answered the leaf request: the data was available' : 'the challenged batch was voided')
        return
      }
      // the next block is later than the head: proveUnanswered needs block.timestamp ≥ deadline
      if (head < req.deadline) return
      try {
        const receipt = await client.send({ address: settlement, abi: settlementAbi, functionName: 'proveUnanswered', args: [header, BigInt(index)] as any })
        const reason = `the worker withheld leaf ${index}: not answered within the answer window`
        setRequest.run('proven', reason, receipt.transactionHash, now, batchId)
        provenUnanswered.run(receipt.transactionHash, reason, batchId)
        log.warn({ batchId, index, tx: receipt.transactionHash }, 'withheld leaf proven: the batch is voided and its worker slashed')
      } catch (err) {
        const name = revertName(err)
        if (name === 'SettlementNoLeafRequest') setRequest.run('answered', null, null, now, batchId)
        else if (name !== undefined && name !== '' && name !== 'SettlementAnswerWindowOpen') setRequest.run('closed', `proveUnanswered not accepted (${name})`, null, now, batchId)
        else log.warn({ batchId, index, err: (err as Error).message }, 'proveUnanswered failed; retrying next tick')
      }
    }

    function requestRow (r: Record<string, unknown>): LeafChallenge {
      const c: LeafChallenge = { batchId: r.batch_id as Hex, index: Number(r.idx), state: r.state as LeafChallenge['state'], updatedAt: Number(r.updated_at) }
      if (r.reason !== null) c.reason = r.reason as string
      if (r.tx !== null) c.tx = r.tx as Hex
      return c
    }

    let running: Promise<CheckedBatch[]> | undefined
    async function tickOnce (): Promise<CheckedBatch[]> {
      const latest = await client.publicClient.getBlockNumber({ cacheTime: 0 })
      const saved = getCursor.get() as { block: string } | undefined
      const from = saved === undefined ? client.contracts.deployBlock : BigInt(saved.block) + 1n
      const judged: Hex[] = []
      /** batches first seen in this tick (already tried once) */
      const seen = new Set<Hex>()
      if (from <= latest) {
        const events = await client.publicClient.getContractEvents({ address: settlement, abi: settlementAbi, eventName: 'BatchCommitted', fromBlock: from, toBlock: latest })
        for (const ev of events) {
          const a = ev.args as { batchId: Hex, worker: Address, projectId: Hex, gateway: Address, epoch: bigint, root: Hex, count: number, total: bigint, bond: bigint, dataCid: Hex }
          // a gateway checks the batches naming it; a watcher every batch
          if (tickets !== undefined && a.gateway.toLowerCase() !== me) continue
          // one verdict per batch, ever (a restart re-reads from the saved block)
          if (known.get(a.batchId) !== undefined) continue
          seen.add(a.batchId)
          if (await judge({ ...a, count: Number(a.count) })) judged.push(a.batchId)
          if (a.epoch > CHECKER_DEFAULTS.keepEpochs) tickets?.prune(a.epoch - CHECKER_DEFAULTS.keepEpochs)
        }
        setCursor.run(latest.toString())
      }
      for (const [batchId, r] of [...retries]) {
        if (seen.has(batchId)) continue
        if (await judge(r.event)) judged.push(batchId)
      }
      for (const p of pending.all() as Array<{ batch_id: Hex, proof: string, proof_args: string }>) await prove(p.batch_id, p.proof, p.proof_args)
      await challenge()
      return (all.all() as Array<Record<string, unknown>>).map(row).filter(b => judged.includes(b.batchId))
    }

    function tick (): Promise<CheckedBatch[]> {
      if (closed) return Promise.reject(new NodeError('CHECKER_CLOSED', 'the batch checker is closed'))
      running ??= tickOnce().finally(() => { running = undefined })
      return running
    }

    let closed = false
    const intervalMs = init.intervalMs ?? CHECKER_DEFAULTS.intervalMs
    const timer = intervalMs > 0
      ? setInterval(() => {
        if (running !== undefined || closed) return
        tick().catch(err => log.warn({ err: (err as Error).message }, 'batch check failed'))
      }, intervalMs).unref()
      : undefined

    return {
      tick,
      checked: () => (all.all() as Array<Record<string, unknown>>).map(row),
      leafRequests: () => (allRequests.all() as Array<Record<string, unknown>>).map(requestRow),
      status () {
        const rows = (all.all() as Array<Record<string, unknown>>).map(row)
        const requests = (allRequests.all() as Array<Record<string, unknown>>).map(requestRow)
        return {
          checked: rows.length,
          ok: rows.filter(r => r.verdict === 'ok').length,
          faulty: rows.filter(r => r.verdict === 'faulty').length,
          unverifiable: rows.filter(r => r.verdict === 'unverifiable').length,
          // quorum receipts that disagreed with their majority (each proven once its batch is committed)
          outvoted: tickets?.disagreements() ?? 0,
          // SE-11 challenges of unverifiable batches, by state (open: requesting or requested)
          leafRequests: {
            open: requests.filter(r => r.state === 'requesting' || r.state === 'requested').length,
            answered: requests.filter(r => r.state === 'answered').length,
            proven: requests.filter(r => r.state === 'proven').length
          },
          // what this gateway's tickets promised per project and epoch, requests and metered sessions apart
          ...(tickets === undefined
            ? {}
            : {
                fees: tickets.fees().slice(0, CHECKER_DEFAULTS.statusRows).map(f => ({
                  projectId: f.projectId,
                  epoch: f.epoch.toString(),
                  requests: { count: f.requests.count, fees: f.requests.fees.toString() },
                  sessions: { count: f.sessions.count, fees: f.sessions.fees.toString() }
                }))
              }),
          recent: rows.slice(0, CHECKER_DEFAULTS.statusRows).map(r => ({
            batchId: r.batchId, worker: r.worker, epoch: r.epoch.toString(), count: r.count, total: r.total.toString(),
            issued: { count: r.issued.count, total: r.issued.total.toString() }, verdict: r.verdict, reason: r.reason ?? null, proof: r.proof ?? null, tx: r.tx ?? null
          }))
        }
      },
      close () {
        if (closed) return
        closed = true
        clearInterval(timer)
        db.close()
      }
    }
  }
}
