/**
 * A worker's settlement loop (issue 11): turns the signed receipts of its receipt log into one
 * Merkle batch per (project, gateway, epoch), publishes the batch's leaves (`dataCid`), commits it
 * in Settlement's commit window with the bond, answers `requestLeaf` challenges and finalizes it
 * once the challenge window is over.
 *
 * Exactly once: a batch's id is a function of (worker, project, epoch, gateway), so the chain
 * itself says whether it was committed. The settler keeps each batch's state in SQLite (WAL):
 * `built` (leaves and root fixed, data published) → `sending` (durable before the transaction
 * leaves) → `committed` → `finalized` | `voided`; or `expired` when the commit window closed first.
 * Before every send it reads `getBatch(worker, project, epoch, gateway)`: a `kill -9` anywhere (before, during or after
 * the transaction) leaves a row that the next tick either finds on chain or sends once more while
 * the chain still has no batch for that id — and Settlement refuses a second commit of one id
 * (`SettlementBatchExists`), which the settler also treats as "committed".
 *
 * One transaction per tick: the batches to commit and the batches due for finalization go
 * together in `commitBatches`, which also pays the worker its finalized batches at once (no
 * withdraw transaction); `commitBatch` when there is one batch to commit and nothing due; each
 * alone when the combined transaction fails. Settlement keeps only a hash of each batch's
 * header, so the settler passes the header (its row, with the bond it recorded before sending) to
 * finalize and answer leaf requests.
 *
 * The leaves are fixed when the batch is built and never rebuilt: a batch built, sent and
 * recommitted after a restart carries the same root, so no double claim is possible.
 */
import { mkdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { CID } from 'multiformats/cid'
import { bytesToHex, type Address, type Hex } from 'viem'
import { settlementAbi } from '#contracts'
import { batchHeader, buildSettlementBatch, fromLeaves, type SettlementBatch, type SettlementBatchHeader, type SettlementItem, type SettlementLeaf } from '../../contracts/abi/leaf.ts'
import { LIMITS } from '#protocol'
import { STORAGE_LIMITS } from '../storage/limits.ts'
import type { ChainClient } from '../chain/client.ts'
import { revertName } from '../chain/client.ts'
import { SETTLEMENT_DEFAULTS } from '../constants.ts'
import { NodeError } from '../errors.ts'
import type { Logger } from '../logger.ts'
import type { ReceiptLog, StoredReceipt } from '../worker/receipt-log.ts'
import { settlementClock, type SettlementClock } from './clock.ts'

export type BatchState = 'built' | 'sending' | 'committed' | 'finalized' | 'voided' | 'expired'

export interface StoredBatch {
  batchId: Hex
  projectId: Hex
  gateway: Address
  epoch: bigint
  root: Hex
  count: number
  /** wei */
  total: bigint
  dataCid: string
  state: BatchState
  /** the last error of a commit, answer or finalize attempt */
  error?: string
  /** wei: the bond sent with the commit (known once a commit was sent) */
  bond?: bigint
  updatedAt: number
}

/**
 * The document published for a batch (`dataCid`): everything a gateway or watcher needs to check
 * it. When it does not fit in one block (`SettlerInit.maxBlockBytes`, 2 MiB: about 3,100 leaves)
 * `dataCid` names a `BatchDocumentIndex` instead, whose chunks hold the leaves (SE-07).
 */
/** The fields a batch document and a chunked batch's index share: what the batch commits to. */
export interface BatchHeader {
  worker: Address
  projectId: Hex
  gateway: Address
  epoch: string
  root: Hex
  count: number
  total: string
}

export interface BatchDocument extends BatchHeader {
  v: 1
  /** `ISettlement.Leaf`s in index order, every uint as a decimal string */
  leaves: Array<Record<string, string | number>>
}

/**
 * A batch document over one block: the batch's fields and, in index order, the blocks holding its
 * leaves (`BatchDocumentChunk`s), each at most one block. One Merkle batch, one commit: the chunks
 * only split where its leaves are published.
 */
export interface BatchDocumentIndex extends BatchHeader {
  v: 2
  chunks: Array<{ cid: string, first: number, count: number }>
}

/** One block of a chunked batch document: `leaves` are the batch's leaves `first`, `first + 1`, … */
export interface BatchDocumentChunk {
  v: 2
  root: Hex
  first: number
  leaves: Array<Record<string, string | number>>
}

export interface SettlerInit {
  /** the worker's data dir; the state is `<dataDir>/settlement.sqlite` unless `path` is given */
  dataDir: string
  /** @default `<dataDir>/SETTLEMENT_DEFAULTS.fileName` */
  path?: string
  /** bond sent with each commit, wei; @default Settlement.minBatchBond */
  bond?: bigint
  /**
   * Seconds after an epoch ends before its batch is built, so jobs whose ticket was issued late in
   * the epoch have signed their receipt. @default min(LIMITS.maxDeadlineMs in s, commitWindow / 3)
   */
  graceSeconds?: bigint
  /** @default SETTLEMENT_DEFAULTS.intervalMs; 0 = no timer (call `tick` yourself) */
  intervalMs?: number
  /**
   * Largest block `publish` takes: a batch document over it is published as a
   * `BatchDocumentIndex` and chunks of at most this size. @default STORAGE_LIMITS.maxBlockBytes
   */
  maxBlockBytes?: number
}

export interface SettlerComponents {
  /** a chain client with the worker's account (it commits, answers and finalizes) */
  client: ChainClient
  receipts: ReceiptLog
  /** stores bytes where anyone can fetch them (the worker's helia); returns their CIDv1 */
  publish: (bytes: Uint8Array) => Promise<string>
  logger: Logger
  /**
   * Turns one (project, gateway, epoch)'s served jobs into the batch that is committed and
   * published. @default buildSettlementBatch (prefix sums in log order). Tests compose a dishonest
   * worker with one that inflates the total or adds a leaf; gateways and watchers must prove it.
   */
  batch?: (items: SettlementItem[]) => SettlementBatch
}

export interface TickReport {
  built: number
  committed: number
  answered: number
  finalized: number
  voided: number
  expired: number
}

export interface Settler {
  /** One pass: build due batches, commit, answer leaf requests, finalize. Never runs twice at once. */
  tick: () => Promise<TickReport>
  batches: () => StoredBatch[]
  /** The batch's published document, as stored. */
  document: (batchId: Hex) => BatchDocument | undefined
  /** What Settlement owes the worker (finalized batches, answered request bonds), wei. */
  owed: () => Promise<bigint>
  /** Withdraws everything owed; returns the amount (0n when nothing was owed). */
  withdraw: () => Promise<bigint>
  readonly clock: Promise<SettlementClock>
  close: () => void
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS batches (
  batch_id    TEXT PRIMARY KEY,
  project_id  TEXT NOT NULL,
  gateway     TEXT NOT NULL,
  epoch       INTEGER NOT NULL,
  root        TEXT NOT NULL,
  count       INTEGER NOT NULL,
  total       TEXT NOT NULL,   -- wei, decimal
  data_cid    TEXT NOT NULL,
  document    TEXT NOT NULL,   -- BatchDocument JSON: the leaves, so answers and restarts never rebuild them
  state       TEXT NOT NULL,
  error       TEXT,
  updated_at  INTEGER NOT NULL,
  bond        TEXT             -- wei, decimal: the bond sent with the commit (part of the batch header), durable before it leaves
) STRICT;
CREATE UNIQUE INDEX IF NOT EXISTS batches_key ON batches (project_id, gateway, epoch);
`

const STATUS_COMMITTED = 1
const STATUS_FINALIZED = 2
const STATUS_VOIDED = 3

function leafJson (l: SettlementLeaf): Record<string, string | number> {
  return {
    index: l.index.toString(), cumulativeFee: l.cumulativeFee.toString(), jobId: l.jobId, attempt: l.attempt, functionId: l.functionId,
    jobHash: l.jobHash, inputHash: l.inputHash, outputHash: l.outputHash, fee: l.fee.toString(), deadline: l.deadline.toString(), v: l.v, r: l.r, s: l.s
  }
}

/** Parses a published leaf (BatchDocument.leaves[i]) back into `ISettlement.Leaf`. */
export function leafFromJson (j: Record<string, string | number>): SettlementLeaf {
  return {
    index: BigInt(j.index), cumulativeFee: BigInt(j.cumulativeFee), jobId: j.jobId as Hex, attempt: Number(j.attempt),
    functionId: j.functionId as Hex, jobHash: j.jobHash as Hex, inputHash: j.inputHash as Hex, outputHash: j.outputHash as Hex,
    fee: BigInt(j.fee), deadline: BigInt(j.deadline), v: Number(j.v), r: j.r as Hex, s: j.s as Hex
  }
}

/** `dataCid` as Settlement stores it: the binary CID (36 bytes for a CIDv1 raw sha2-256). */
export function cidBytes (cid: string): Hex {
  return bytesToHex(CID.parse(cid).bytes)
}

/** The CID string of a `dataCid` read from a BatchCommitted event. */
export function cidOfBytes (data: Hex): string {
  return CID.decode(Buffer.from(data.slice(2), 'hex')).toString()
}

/** Seconds after an epoch's end before its batch is built: min(LIMITS.maxDeadlineMs, commitWindow / 3). */
export function settlementGrace (c: Pick<SettlementClock, 'commitWindow'>): bigint {
  const d = BigInt(LIMITS.maxDeadlineMs / 1000)
  const third = c.commitWindow / 3n
  return d < third ? d : third
}

/**
 * A worker's check of a ticket's epoch: not in the future, and not so old that its batch is built
 * already (`graceSeconds` after the epoch's end, the settler's default grace): the receipt of such
 * a ticket would never be paid.
 */
export function ticketEpochCheck (c: SettlementClock, graceSeconds: bigint = settlementGrace(c), now: () => number = Date.now): (epoch: bigint) => string | undefined {
  return (epoch) => {
    const s = BigInt(Math.floor(now() / 1000))
    const current = c.epochAt(s)
    if (epoch > current) return `the ticket's settlement epoch ${epoch} is in the future (Settlement is in epoch ${current})`
    if (s >= c.epochEnd(epoch) + graceSeconds) return `the ticket's settlement epoch ${epoch} is over (Settlement is in epoch ${current}): its receipt could never be settled`
    return undefined
  }
}

/**
 * A worker's view of Settlement's epochs for sessions that outlive them (docs/chain.md): the
 * current epoch (a gateway's `segment` must open that one), and whether a segment of epoch `e`
 * is due to be closed by the worker itself: its epoch ended half the settler's grace ago and no
 * `segment` came, so the segment's receipt must be signed now to be in the epoch's batch.
 */
export function sessionEpochs (c: SettlementClock, graceSeconds: bigint = settlementGrace(c), now: () => number = Date.now): { current: () => bigint, segmentDue: (epoch: bigint) => boolean } {
  const seconds = (): bigint => BigInt(Math.floor(now() / 1000))
  return {
    current: () => c.epochAt(seconds()),
    segmentDue: (epoch) => seconds() >= c.epochEnd(epoch) + graceSeconds / 2n
  }
}

export function settler (init: SettlerInit): (components: SettlerComponents) => Settler {
  return (components) => {
    const { client, receipts, publish } = components
    const log = components.logger.child({ component: 'peerhost:worker:settlement' })
    const account = client.account
    if (account === undefined) throw new NodeError('CHAIN_NO_ACCOUNT', 'the settler needs a chain client with the worker\'s account')
    const worker = account.address
    const settlement = client.contracts.addresses.Settlement
    const path = init.path ?? join(init.dataDir, SETTLEMENT_DEFAULTS.fileName)
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
    const db = new DatabaseSync(path)
    db.exec('PRAGMA journal_mode = WAL')
    // every state change is the worker's money: it must survive power loss, and there are few of them
    db.exec('PRAGMA synchronous = FULL')
    db.exec('PRAGMA busy_timeout = 5000')
    db.exec(SCHEMA)
    // a log from before Settlement stored only a hash of each batch's header
    if (!(db.prepare('PRAGMA table_info(batches)').all() as Array<{ name: string }>).some(c => c.name === 'bond')) db.exec('ALTER TABLE batches ADD COLUMN bond TEXT')

    const insert = db.prepare(`INSERT OR IGNORE INTO batches (batch_id, project_id, gateway, epoch, root, count, total, data_cid, document, state, updated_at)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'built', ?)`)
    const setState = db.prepare('UPDATE batches SET state = ?, error = ?, updated_at = ? WHERE batch_id = ?')
    const setSending = db.prepare("UPDATE batches SET state = 'sending', error = NULL, bond = ?, updated_at = ? WHERE batch_id = ?")
    const byKey = db.prepare('SELECT batch_id FROM batches WHERE project_id = ? AND gateway = ? AND epoch = ?')
    const open = db.prepare("SELECT * FROM batches WHERE state IN ('built', 'sending', 'committed') ORDER BY epoch")
    const all = db.prepare('SELECT * FROM batches ORDER BY epoch, project_id, gateway')
    const docOf = db.prepare('SELECT document FROM batches WHERE batch_id = ?')

    const read = async <T>(functionName: string, args: readonly unknown[] = []): Promise<T> =>
      await client.publicClient.readContract({ address: settlement, abi: settlementAbi, functionName: functionName as any, args: args as any }) as T
    const clock = settlementClock(client)
    clock.catch(() => {})
    let bond: Promise<bigint> | undefined

    function row (r: Record<string, unknown>): StoredBatch {
      const b: StoredBatch = {
        batchId: r.batch_id as Hex,
        projectId: r.project_id as Hex,
        gateway: r.gateway as Address,
        epoch: BigInt(r.epoch as number),
        root: r.root as Hex,
        count: Number(r.count),
        total: BigInt(r.total as string),
        dataCid: r.data_cid as string,
        state: r.state as BatchState,
        updatedAt: Number(r.updated_at)
      }
      if (r.error !== null) b.error = r.error as string
      if (r.bond !== null && r.bond !== undefined) b.bond = BigInt(r.bond as string)
      return b
    }

    /** `getBatch`'s arguments: Settlement finds a batch by its lane (worker, project, gateway) and epoch. */
    function batchKey (b: StoredBatch): readonly [Address, Hex, bigint, Address] {
      return [worker, b.projectId, b.epoch, b.gateway]
    }

    function move (batchId: Hex, state: BatchState, error?: string): void {
      setState.run(state, error ?? null, Date.now(), batchId)
    }

    /**
     * `now`: chain time as the next block will see it, the latest block or the wall clock when it
     * is ahead (an idle chain's head is old); `head`: the latest block's own time.
     */
    async function chainNow (): Promise<{ now: bigint, head: bigint }> {
      const block = await client.publicClient.getBlock({ blockTag: 'latest' })
      const wall = BigInt(Math.floor(Date.now() / 1000))
      return { now: block.timestamp > wall ? block.timestamp : wall, head: block.timestamp }
    }

    async function build (c: SettlementClock, now: bigint, head: bigint): Promise<number> {
      const grace = init.graceSeconds ?? settlementGrace(c)
      const current = c.epochAt(now)
      if (current === 0n) return 0
      const from = current > SETTLEMENT_DEFAULTS.lookbackEpochs ? current - SETTLEMENT_DEFAULTS.lookbackEpochs : 0n
      let built = 0
      for (const key of receipts.batchKeys(from, current - 1n)) {
        const end = c.epochEnd(key.epoch)
        // too early (late receipts of the epoch may still come) or too late (can never be committed)
        if (now < end + grace || head >= end + c.commitWindow) continue
        const gateway = key.gateway.toLowerCase()
        if (byKey.get(key.projectId, gateway, key.epoch) !== undefined) continue
        const items = receipts.receiptsOf(key).filter(r => r.outputHash !== undefined && r.worker.toLowerCase() === worker.toLowerCase())
        if (items.length === 0) continue
        const batch = (components.batch ?? buildSettlementBatch)(items.map(itemOf))
        if (batch.total === 0n) continue // Settlement refuses an empty total: free work is not settled
        const batchId = await read<Hex>('batchIdOf', [worker, key.projectId, key.epoch, key.gateway as Address])
        const doc: BatchDocument = {
          v: 1, worker, projectId: key.projectId, gateway: key.gateway as Address, epoch: key.epoch.toString(), root: batch.root,
          count: batch.count, total: batch.total.toString(), leaves: batch.leaves.map(leafJson)
        }
        const json = JSON.stringify(doc)
        let cid: string
        try {
          cid = await publishDocument(doc, json)
        } catch (err: any) {
          // one batch that cannot be published (storage refusing, or a single leaf over a block)
          // must not stop the tick: the worker's other batches still commit, finalize and answer
          // requestLeaf (an unanswered request slashes). Retried next tick.
          log.error({ batchId, epoch: key.epoch.toString(), gateway, count: batch.count, bytes: json.length, err: err?.message }, 'settlement batch document could not be published; batch not committed')
          continue
        }
        insert.run(batchId, key.projectId, gateway, key.epoch, batch.root, batch.count, batch.total.toString(), cid, json, Date.now())
        log.info({ batchId, epoch: key.epoch.toString(), gateway, count: batch.count, total: batch.total.toString(), cid }, 'settlement batch built')
        built++
      }
      return built
    }

    /**
     * Publishes a batch's document: one block when it fits, else its leaves in chunks of at most
     * one block, then the index naming them (whose CID is `dataCid`). Content-addressed, so a
     * restart that publishes the same batch again publishes the same blocks.
     */
    async function publishDocument (doc: BatchDocument, json: string): Promise<string> {
      const max = init.maxBlockBytes ?? STORAGE_LIMITS.maxBlockBytes
      const whole = new TextEncoder().encode(json)
      if (whole.byteLength <= max) return await publish(whole)
      const chunks: BatchDocumentIndex['chunks'] = []
      const sizes = doc.leaves.map(l => JSON.stringify(l).length + 1) // + its comma (ASCII only)
      let first = 0
      while (first < doc.leaves.length) {
        // room for the chunk's own fields, with the widest index it can carry
        let bytes = JSON.stringify({ v: 2, root: doc.root, first: doc.leaves.length, leaves: [] } satisfies BatchDocumentChunk).length
        let end = first
        while (end < doc.leaves.length && bytes + sizes[end] <= max) bytes += sizes[end++]
        if (end === first) throw new NodeError('BATCH_LEAF_TOO_LARGE', `leaf ${first} of the batch does not fit in a block of ${max} bytes`)
        const chunk: BatchDocumentChunk = { v: 2, root: doc.root, first, leaves: doc.leaves.slice(first, end) }
        chunks.push({ cid: await publish(new TextEncoder().encode(JSON.stringify(chunk))), first, count: end - first })
        first = end
      }
      const { leaves: _leaves, ...fields } = doc
      const index: BatchDocumentIndex = { ...fields, v: 2, chunks }
      const bytes = new TextEncoder().encode(JSON.stringify(index))
      if (bytes.byteLength > max) throw new NodeError('BATCH_DOCUMENT_TOO_LARGE', `the index of ${chunks.length} chunks is ${bytes.byteLength} bytes, over a block of ${max}`)
      log.info({ root: doc.root, count: doc.count, chunks: chunks.length }, 'batch document published in chunks')
      return await publish(bytes)
    }

    /**
     * Whether batch `b` (built or sending) still has to be committed: false when the chain has it
     * already (a restart after the transaction, or a receipt we never saw) or its window closed.
     */
    async function needsCommit (c: SettlementClock, b: StoredBatch, head: bigint, report: TickReport): Promise<boolean> {
      const onChain = await read<{ status: number }>('getBatch', batchKey(b))
      if (onChain.status !== 0) {
        move(b.batchId, 'committed')
        report.committed++
        return false
      }
      // the chain decides when its window closed: a chain whose clock runs behind ours (a local
      // Hardhat node, a lagging RPC) still accepts the commit after our wall clock says it is over
      if (head >= c.epochEnd(b.epoch) + c.commitWindow) {
        move(b.batchId, 'expired', b.error)
        report.expired++
        log.warn({ batchId: b.batchId, epoch: b.epoch.toString(), total: b.total.toString() }, 'commit window closed before the batch was committed: its fees are lost')
        return false
      }
      return true
    }

    /** The header Settlement keeps a hash of: every call naming the batch passes it. */
    async function headerOf (b: StoredBatch): Promise<SettlementBatchHeader> {
      let bond = b.bond
      if (bond === undefined) {
        // committed by a settler that did not record its bond: the commit's event has it
        const [ev] = await client.publicClient.getContractEvents({ address: settlement, abi: settlementAbi, eventName: 'BatchCommitted', args: { batchId: b.batchId }, fromBlock: client.contracts.deployBlock })
        if (ev === undefined) throw new NodeError('BATCH_NOT_FOUND', `no BatchCommitted event for batch ${b.batchId}`)
        bond = (ev.args as { bond: bigint }).bond
      }
      return batchHeader({ worker, projectId: b.projectId, gateway: b.gateway, epoch: b.epoch, root: b.root, count: b.count, total: b.total, bond })
    }

    /**
     * Sends what this tick has to send in one transaction (`commitBatches`: the new batches, then
     * the due finalizations, whose totals and bonds Settlement pays to the worker in the same
     * transaction), or one `commitBatch` when there is only one batch to commit. Each batch to
     * commit is `sending` (with its bond) before the transaction leaves. When the combined
     * transaction fails (one batch refused must not hold back the others), each is sent alone.
     */
    async function sendTick (commits: StoredBatch[], due: StoredBatch[], report: TickReport): Promise<void> {
      if (commits.length + due.length === 0) return
      bond ??= init.bond !== undefined ? Promise.resolve(init.bond) : read<bigint>('minBatchBond')
      const value = await bond
      // durable before the transaction leaves: a restart knows a transaction may be in flight
      for (const b of commits) { setSending.run(value.toString(), Date.now(), b.batchId); b.bond = value }
      if (commits.length !== 1 || due.length !== 0) {
        try {
          const dueHeaders = await Promise.all(due.map(headerOf))
          await client.send({
            address: settlement,
            abi: settlementAbi,
            functionName: 'commitBatches',
            args: [commits.map(b => ({ projectId: b.projectId, epoch: b.epoch, gateway: b.gateway, root: b.root, count: b.count, total: b.total, bond: value, dataCid: cidBytes(b.dataCid) })), dueHeaders],
            value: value * BigInt(commits.length)
          })
          for (const b of commits) committed(b, report)
          for (const b of due) finalized(b, report)
          return
        } catch (err) {
          log.warn({ commits: commits.length, due: due.length, err: (err as Error).message }, 'commitBatches failed; sending each batch alone')
        }
      }
      // finalizations first: a commit may need the ring slot of a batch due here (SettlementBatchSlotBusy)
      for (const b of due) await finalizeOne(b, report)
      for (const b of commits) await commitOne(b, value, report)
    }

    function committed (b: StoredBatch, report: TickReport): void {
      move(b.batchId, 'committed')
      report.committed++
      log.info({ batchId: b.batchId, epoch: b.epoch.toString(), count: b.count, total: b.total.toString() }, 'settlement batch committed')
    }

    function finalized (b: StoredBatch, report: TickReport): void {
      move(b.batchId, 'finalized')
      report.finalized++
      log.info({ batchId: b.batchId, total: b.total.toString() }, 'settlement batch finalized')
    }

    async function commitOne (b: StoredBatch, value: bigint, report: TickReport): Promise<void> {
      try {
        // the combined transaction may have landed after all (a timeout, not a revert)
        if ((await read<{ status: number }>('getBatch', batchKey(b))).status !== 0) { committed(b, report); return }
        await client.send({
          address: settlement,
          abi: settlementAbi,
          functionName: 'commitBatch',
          args: [b.projectId, b.epoch, b.gateway, b.root, b.count, b.total, cidBytes(b.dataCid)],
          value
        })
        committed(b, report)
      } catch (err) {
        if (revertName(err) === 'SettlementBatchExists') {
          move(b.batchId, 'committed')
          report.committed++
          return
        }
        // back to built: the next tick reads the chain again before any new attempt
        move(b.batchId, 'built', (err as Error).message)
        log.warn({ batchId: b.batchId, err: (err as Error).message }, 'commitBatch failed; retrying next tick while the window is open')
      }
    }

    async function finalizeOne (b: StoredBatch, report: TickReport): Promise<void> {
      try {
        if ((await read<{ status: number }>('getBatch', batchKey(b))).status === STATUS_FINALIZED) { finalized(b, report); return }
        await client.send({ address: settlement, abi: settlementAbi, functionName: 'commitBatches', args: [[], [await headerOf(b)]] })
        finalized(b, report)
      } catch (err) {
        // the chain's clock may lag ours by a block: try again next tick
        setState.run('committed', (err as Error).message, Date.now(), b.batchId)
      }
    }

    async function answerRequests (b: StoredBatch, report: TickReport): Promise<void> {
      const events = await client.publicClient.getContractEvents({
        address: settlement, abi: settlementAbi, eventName: 'LeafRequested', args: { batchId: b.batchId }, fromBlock: client.contracts.deployBlock
      })
      const doc = document(b.batchId)
      if (doc === undefined) return
      const leaves = doc.leaves.map(leafFromJson)
      const tree = fromLeaves(leaves, b.total)
      for (const e of events) {
        const index = (e.args as { index: bigint }).index
        const request = await read<{ open: boolean }>('getLeafRequest', [b.batchId, index])
        if (!request.open) continue
        const i = Number(index)
        try {
          await client.send({ address: settlement, abi: settlementAbi, functionName: 'answerLeaf', args: [await headerOf(b), leaves[i], tree.proof(i)] })
          report.answered++
          log.info({ batchId: b.batchId, index: i }, 'leaf request answered')
        } catch (err) {
          log.warn({ batchId: b.batchId, index: i, err: (err as Error).message }, 'answerLeaf failed')
        }
      }
    }

    /** Follows a committed batch; when it is due for finalization, since when (chain time). */
    async function follow (c: SettlementClock, b: StoredBatch, now: bigint, report: TickReport): Promise<bigint | undefined> {
      const onChain = await read<{ status: number, committedAt: bigint, extendedUntil: bigint, openRequests: number }>('getBatch', batchKey(b))
      if (onChain.status === STATUS_FINALIZED) { move(b.batchId, 'finalized'); report.finalized++; return undefined }
      if (onChain.status === STATUS_VOIDED) {
        move(b.batchId, 'voided')
        report.voided++
        log.error({ batchId: b.batchId }, 'settlement batch voided (a fault was proven or a leaf request went unanswered)')
        return undefined
      }
      if (onChain.status !== STATUS_COMMITTED) return undefined
      if (onChain.openRequests > 0) await answerRequests(b, report)
      const windowEnd = onChain.committedAt + c.challengeWindow
      const endsAt = onChain.extendedUntil > windowEnd ? onChain.extendedUntil : windowEnd
      return now >= endsAt && onChain.openRequests === 0 ? endsAt : undefined
    }

    function document (batchId: Hex): BatchDocument | undefined {
      const r = docOf.get(batchId) as { document: string } | undefined
      return r === undefined ? undefined : JSON.parse(r.document) as BatchDocument
    }

    let running: Promise<TickReport> | undefined
    async function tickOnce (): Promise<TickReport> {
      const report: TickReport = { built: 0, committed: 0, answered: 0, finalized: 0, voided: 0, expired: 0 }
      const c = await clock
      const { now, head } = await chainNow()
      report.built = await build(c, now, head)
      const commits: StoredBatch[] = []
      const due: Array<{ b: StoredBatch, since: bigint }> = []
      for (const r of open.all()) {
        const b = row(r)
        if (b.state === 'built' || b.state === 'sending') {
          if (await needsCommit(c, b, head, report)) commits.push(b)
        } else {
          const since = await follow(c, b, now, report)
          if (since !== undefined) due.push({ b, since })
        }
      }
      // A due finalization rides with the next commit (one transaction instead of two) while the
      // worker has receipts of the current epoch, whose batch it commits when the epoch ends; it
      // waits at most one epoch (plus the grace) past due, then goes alone.
      if (commits.length === 0 && due.length > 0) {
        const current = c.epochAt(now)
        const grace = init.graceSeconds ?? settlementGrace(c)
        const nextCommit = c.epochEnd(current) + grace
        if (receipts.batchKeys(current, current).length > 0 && due.every(d => nextCommit <= d.since + c.epochLength + grace)) due.length = 0
      }
      await sendTick(commits, due.map(d => d.b), report)
      return report
    }

    let closed = false
    const intervalMs = init.intervalMs ?? SETTLEMENT_DEFAULTS.intervalMs
    const timer = intervalMs > 0
      ? setInterval(() => {
        if (running !== undefined || closed) return
        tick().catch(err => log.warn({ err: (err as Error).message }, 'settlement tick failed'))
      }, intervalMs).unref()
      : undefined

    function tick (): Promise<TickReport> {
      if (closed) return Promise.reject(new NodeError('SETTLER_CLOSED', 'the settler is closed'))
      running ??= tickOnce().finally(() => { running = undefined })
      return running
    }

    return {
      tick,
      batches: () => all.all().map(row),
      document,
      owed: async () => await read<bigint>('owed', [worker]),
      async withdraw () {
        const amount = await read<bigint>('owed', [worker])
        if (amount === 0n) return 0n
        await client.send({ address: settlement, abi: settlementAbi, functionName: 'withdraw' })
        log.info({ amount: amount.toString() }, 'earnings withdrawn')
        return amount
      },
      clock,
      close () {
        if (closed) return
        closed = true
        clearInterval(timer)
        db.close()
      }
    }
  }
}

function itemOf (r: StoredReceipt): SettlementItem {
  return {
    ticket: {
      jobId: r.jobId, attempt: r.attempt, functionId: r.functionId, jobHash: r.jobHash, inputHash: r.inputHash,
      fee: BigInt(r.fee), deadline: BigInt(r.deadline)
    },
    ticketSignature: r.ticketSig,
    outputHash: r.outputHash as Hex
  }
}
