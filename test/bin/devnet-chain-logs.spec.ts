/**
 * The devnet's reset of its chain-bound state (bin/devnet-chain-logs.ts), on real SQLite logs: a
 * fresh chain's devnet removes the previous run's ticket logs and settlement state at once, and its
 * receipt logs, but never while one of their tickets could still be presented (the worker would no
 * longer know it had answered it).
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { bytesToHex, type Address, type Hex } from 'viem'
import { TICKET_HORIZON_MS } from '#protocol'
import { DatabaseSync } from 'node:sqlite'
import { RECEIPT_LOG_DEFAULTS, receiptLog, silentLogger, ticketLog, type TicketRecord } from '../../node/index.ts'
import { CHECKER_DEFAULTS, SETTLEMENT_DEFAULTS } from '../../node/constants.ts'
import { resetChainLogs } from '../../bin/devnet-chain-logs.ts'

const RECEIPT_LOG_FILE = RECEIPT_LOG_DEFAULTS.fileName

const hex32 = (): Hex => bytesToHex(randomBytes(32))

describe('devnet: the previous chain\'s ticket and receipt logs', function () {
  this.timeout(30_000)
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-chain-logs-'))
  after(() => rmSync(dir, { recursive: true, force: true }))

  it('are removed once no ticket of theirs can be presented, kept before, and a removed log answers a fresh chain\'s tickets anew', async () => {
    const gateway = join(dir, 'gateway')
    const workers = [join(dir, 'worker-1'), join(dir, 'worker-2')]
    const t: TicketRecord = {
      gateway: '0x' + 'ab'.repeat(20), jobId: hex32(), attempt: 1, projectId: hex32(), functionId: hex32(), jobHash: hex32(), inputHash: hex32(),
      worker: '0x' + '11'.repeat(20), fee: '1000', epoch: '0', deadline: String(Math.ceil(Date.now() / 1000) + 30), ticketSig: `0x${'22'.repeat(65)}`
    }
    const tickets = ticketLog({ dataDir: gateway })
    tickets.record({ jobId: t.jobId, attempt: 1, worker: t.worker as Address, projectId: t.projectId, epoch: 0n, fee: 1000n })
    tickets.close()
    for (const w of workers) {
      const receipts = receiptLog({ dataDir: w, pruneIntervalMs: 0 })({ logger: silentLogger() })
      assert.equal(receipts.reserve(t).ok, true)
      await receipts.commit(t, hex32(), `0x${'33'.repeat(65)}`)
      receipts.close()
    }

    // each worker's settlement state of that chain (its batches by project, gateway and epoch)
    for (const w of workers) {
      const db = new DatabaseSync(join(w, SETTLEMENT_DEFAULTS.fileName))
      db.exec('PRAGMA journal_mode = WAL')
      db.exec('CREATE TABLE batches (epoch INTEGER); INSERT INTO batches VALUES (0)')
      db.close()
    }

    // just written: a ticket of that run may still be inside its deadline, so the receipt logs
    // stay; the gateway's ticket log and the settlement state describe only the old chain and go
    const early = resetChainLogs({ gateways: [gateway], workers }, Date.now() + TICKET_HORIZON_MS - 5_000)
    assert.ok('kept' in early, JSON.stringify(early))
    assert.deepEqual([...early.kept].sort(), workers.map(w => join(w, RECEIPT_LOG_FILE)).sort())
    assert.deepEqual([...early.removed].sort(), [join(gateway, CHECKER_DEFAULTS.fileName), ...workers.map(w => join(w, SETTLEMENT_DEFAULTS.fileName))].sort())
    assert.ok(existsSync(join(workers[0], RECEIPT_LOG_FILE)))
    for (const f of early.removed) for (const suffix of ['', '-wal', '-shm']) assert.equal(existsSync(f + suffix), false, `${f + suffix} removed`)
    // the old chain's receipt is still refused
    const kept = receiptLog({ dataDir: workers[0], pruneIntervalMs: 0 })({ logger: silentLogger() })
    assert.equal(kept.reserve(t).ok, false)
    kept.close()

    const late = resetChainLogs({ gateways: [gateway], workers }, Date.now() + TICKET_HORIZON_MS + 5_000)
    assert.ok(!('kept' in late), JSON.stringify(late))
    assert.deepEqual([...late.removed].sort(), workers.map(w => join(w, RECEIPT_LOG_FILE)).sort())
    for (const w of workers) for (const suffix of ['', '-wal', '-shm']) assert.equal(existsSync(join(w, RECEIPT_LOG_FILE + suffix)), false)
    // the next run's logs start empty: no batch carries the old run's receipts
    const fresh = receiptLog({ dataDir: workers[0], pruneIntervalMs: 0 })({ logger: silentLogger() })
    assert.deepEqual(fresh.batchKeys(0n, 10n), [])
    fresh.close()
    // nothing to remove: nothing happens
    assert.deepEqual(resetChainLogs({ gateways: [join(dir, 'none')], workers: [] }), { removed: [] })
  })
})
