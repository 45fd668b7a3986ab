/**
 * Cost of the worker's receipt log per job (node/worker/receipt-log.ts): one reservation plus one
 * receipt commit, as the worker does for every ticket, on a real file in the OS temp dir.
 *
 *   node bench/receipt-log.ts [jobs] [concurrency] [rows already in the log]
 *
 * Prints µs per job for synchronous FULL (fsync per commit: survives power loss) and NORMAL
 * (survives kill -9), one job at a time (no group commit possible) and `concurrency` jobs per
 * event-loop turn (commits grouped into one transaction). A log that already holds receipts (a
 * worker's after a day of traffic: the devnet's held ≈ 75,000 each) is slower to write than an
 * empty one: the third argument fills it first (100 s per 75,000 rows at most).
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { bytesToHex, type Hex } from 'viem'
import { receiptLog, type TicketRecord } from '../node/worker/receipt-log.ts'
import { silentLogger } from '../node/logger.ts'

const jobs = Number(process.argv[2] ?? 2_000)
const concurrency = Number(process.argv[3] ?? 32)
const prefill = Number(process.argv[4] ?? 0)
for (const [name, v] of [['jobs', jobs], ['concurrency', concurrency], ['rows already in the log', prefill]] as const) {
  if (!Number.isInteger(v) || v < 0) throw new Error(`${name} must be a non-negative integer; got ${v}`)
}
const hex32 = (): Hex => bytesToHex(randomBytes(32))
const sig: Hex = `0x${'22'.repeat(65)}`

/** a worker serves a handful of projects, not a new one per job (each is a settlement batch per epoch) */
const projects = Array.from({ length: 8 }, hex32)

function ticket (): TicketRecord {
  return {
    gateway: '0x' + 'ab'.repeat(20), jobId: hex32(), attempt: 1, projectId: projects[Math.floor(Math.random() * projects.length)], functionId: hex32(), jobHash: hex32(),
    inputHash: hex32(), worker: '0x' + '11'.repeat(20), fee: '1000', epoch: '1', deadline: '2000000000', ticketSig: sig
  }
}

async function run (synchronous: 'FULL' | 'NORMAL', batch: number): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-bench-receipts-'))
  const store = receiptLog({ dataDir: dir, synchronous, pruneIntervalMs: 0 })({ logger: silentLogger() })
  for (let i = 0; i < prefill; i += 500) {
    const group = Array.from({ length: Math.min(500, prefill - i) }, ticket)
    for (const t of group) store.reserve(t)
    await Promise.all(group.map(async t => await store.commit(t, hex32(), sig)))
  }
  const tickets = Array.from({ length: jobs }, ticket)
  const t0 = performance.now()
  for (let i = 0; i < jobs; i += batch) {
    const group = tickets.slice(i, i + batch)
    for (const t of group) if (!store.reserve(t).ok) throw new Error('duplicate')
    await Promise.all(group.map(async t => await store.commit(t, hex32(), sig)))
  }
  const us = (performance.now() - t0) * 1000 / jobs
  store.close()
  rmSync(dir, { recursive: true, force: true })
  return us
}

for (const synchronous of ['FULL', 'NORMAL'] as const) {
  for (const batch of [1, concurrency]) {
    const us = await run(synchronous, batch)
    process.stdout.write(`synchronous=${synchronous.padEnd(6)} jobs per turn=${String(batch).padStart(3)}: ${us.toFixed(1)} µs per job (${jobs} jobs, ${prefill} receipts in the log before)\n`)
  }
}
