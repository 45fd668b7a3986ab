/**
 * The gateway's ticket log and batch check (node/settlement/checker.ts) for metered sessions
 * (issue 12): the log keeps the latest cumulative fee per (jobId, attempt, worker), and a worker's
 * leaf is accepted with that fee, or with a lower cumulative fee the gateway did sign, and proven
 * faulty (`proveInvalidLeaf`) when it claims more or a fee the gateway never signed. Real SQLite,
 * real secp256k1 signatures; the chain part (the proof transaction) is test/chain/checker.spec.ts.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { bytesToHex, type Address, type Hex } from 'viem'
import { DEV_DOMAIN, ticketDigest, type Ticket } from '#protocol'
import { ticketLog } from '../../../node/index.ts'
import { findFault, loggedTicket } from '../../../node/settlement/checker.ts'
import { fastSigner } from '../../../node/signing.ts'
import { batchHeader, buildSettlementBatch } from '../../../contracts/abi/leaf.ts'

const hex32 = (): Hex => bytesToHex(randomBytes(32))
const gateway = fastSigner(bytesToHex(randomBytes(32)))
const worker = fastSigner(bytesToHex(randomBytes(32)))
const PROJECT = hex32()
const EPOCH = 9n

describe('gateway ticket log: cumulative session fees', function () {
  this.timeout(30_000)
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-ticket-log-'))
  after(() => rmSync(dir, { recursive: true, force: true }))

  const base = { jobId: hex32(), attempt: 1, functionId: hex32(), jobHash: hex32(), inputHash: hex32(), worker: worker.address, gateway: gateway.address, epoch: EPOCH, deadline: 2_000_000_000n }
  const signedAt = (fee: bigint, by = gateway): Hex => by.signDigest(ticketDigest(DEV_DOMAIN, { ...base, fee } satisfies Ticket))
  const batchOf = (fee: bigint, sig: Hex) => {
    const b = buildSettlementBatch([{ ticket: { jobId: base.jobId, attempt: 1, functionId: base.functionId, jobHash: base.jobHash, inputHash: base.inputHash, fee, deadline: base.deadline }, ticketSignature: sig, outputHash: hex32() }])
    const header = batchHeader({ worker: worker.address, projectId: PROJECT, gateway: gateway.address as Address, epoch: EPOCH, root: b.root, count: b.count, total: b.total, bond: 0n })
    return { b, batch: { header, worker: worker.address as Address, gateway: gateway.address as Address, projectId: PROJECT, epoch: EPOCH } }
  }

  it('keeps the latest cumulative fee per (jobId, attempt, worker), never a lower one, across a reopen', async () => {
    const path = join(dir, 'a.sqlite')
    const log = ticketLog({ dataDir: dir, path })
    const t = { jobId: base.jobId, attempt: 1, worker: worker.address as Address, projectId: PROJECT, epoch: EPOCH }
    log.record({ ...t, fee: 100n })
    log.record({ ...t, fee: 500n })
    log.record({ ...t, fee: 99n })
    assert.equal(log.get(t.jobId, 1, t.worker)?.fee, 500n)
    log.record({ ...t, fee: 1000n })
    assert.equal(log.get(t.jobId, 1, t.worker)?.fee, 1000n, 'a longer decimal is a larger fee')
    assert.deepEqual(log.totals(t.worker, PROJECT, EPOCH), { count: 1, total: 1000n })
    log.close()
    const again = ticketLog({ dataDir: dir, path })
    assert.equal(again.get(t.jobId, 1, t.worker)?.fee, 1000n)
    again.close()
  })

  it('accepts the latest cumulative fee or a lower one the gateway signed, and proves a leaf claiming more faulty', async () => {
    const log = ticketLog({ dataDir: dir, path: join(dir, 'b.sqlite') })
    const t = { jobId: base.jobId, attempt: 1, worker: worker.address as Address, projectId: PROJECT, epoch: EPOCH }
    log.record({ ...t, fee: 300n })
    log.record({ ...t, fee: 500n })
    const check = loggedTicket(log, DEV_DOMAIN)
    const verdict = async (fee: bigint, sig: Hex): Promise<string | undefined> => {
      const { b, batch } = batchOf(fee, sig)
      return (await findFault(b.leaves, b.total, batch, check))?.proof
    }
    assert.equal(await verdict(500n, signedAt(500n)), undefined, 'the latest cumulative fee')
    assert.equal(await verdict(300n, signedAt(300n)), undefined, 'an earlier cumulative ticket the gateway signed (the final one came too late)')
    // the worker claims more than the last ticket: with the last signature, or one it made itself
    assert.equal(await verdict(900n, signedAt(500n)), 'proveInvalidLeaf')
    assert.equal(await verdict(900n, signedAt(900n, worker)), 'proveInvalidLeaf')
    // a lower fee the gateway never signed (the leaf's signature is of another fee)
    assert.equal(await verdict(400n, signedAt(500n)), 'proveInvalidLeaf')
    // without the domain (no signature check) a lower fee is not taken on trust
    const { b, batch } = batchOf(300n, signedAt(300n))
    assert.equal((await findFault(b.leaves, b.total, batch, loggedTicket(log)))?.proof, 'proveInvalidLeaf')
    log.close()
  })

  it('sums its tickets\' fees per (project, epoch), metered sessions apart at their latest cumulative fee, newest epoch first', async () => {
    const log = ticketLog({ dataDir: dir, path: join(dir, 'c.sqlite') })
    const other = hex32()
    const t = (jobId: Hex, projectId: Hex, epoch: bigint, fee: bigint, session?: boolean) => log.record({ jobId, attempt: 1, worker: worker.address as Address, projectId, epoch, fee, ...(session === true ? { session } : {}) })
    t(hex32(), PROJECT, EPOCH, 100n)
    t(hex32(), PROJECT, EPOCH, 150n)
    const s1 = hex32()
    t(s1, PROJECT, EPOCH, 100n, true) // the opening ticket, then two cumulative ones
    t(s1, PROJECT, EPOCH, 400n, true)
    t(s1, PROJECT, EPOCH, 700n, true)
    t(hex32(), PROJECT, EPOCH + 1n, 100n, true)
    t(hex32(), other, EPOCH, 5n)
    const big = 10n ** 30n // fees past SQLite's 64-bit integers
    t(hex32(), PROJECT, EPOCH + 1n, big)
    const str = (f: ReturnType<typeof log.fees>) => f.map(x => [x.projectId, x.epoch, x.requests.count, x.requests.fees, x.sessions.count, x.sessions.fees])
    assert.deepEqual(str(log.fees(PROJECT)), [
      [PROJECT.toLowerCase(), EPOCH + 1n, 1, big, 1, 100n],
      [PROJECT.toLowerCase(), EPOCH, 2, 250n, 1, 700n]
    ])
    assert.deepEqual(str(log.fees()).map(r => r.slice(0, 2)), [[PROJECT.toLowerCase(), EPOCH + 1n], [other.toLowerCase(), EPOCH], [PROJECT.toLowerCase(), EPOCH]].sort((a, b) => Number(b[1] as bigint) - Number(a[1] as bigint) || String(a[0]).localeCompare(String(b[0]))))
    assert.equal(log.get(s1, 1, worker.address as Address)?.session, true)
    log.close()
  })

  it('opens a log written before sessions were told apart, and before tickets were rows in issue order (its tickets count as requests)', async () => {
    const path = join(dir, 'old.sqlite')
    const { DatabaseSync } = await import('node:sqlite')
    const old = new DatabaseSync(path)
    old.exec('CREATE TABLE tickets (job_id TEXT NOT NULL, attempt INTEGER NOT NULL, worker TEXT NOT NULL, project_id TEXT NOT NULL, epoch INTEGER NOT NULL, fee TEXT NOT NULL, PRIMARY KEY (job_id, attempt, worker)) STRICT, WITHOUT ROWID')
    const oldJob = hex32()
    old.prepare('INSERT INTO tickets VALUES (?, 1, ?, ?, ?, ?)').run(oldJob, worker.address.toLowerCase(), PROJECT.toLowerCase(), EPOCH, '42')
    old.close()
    const log = ticketLog({ dataDir: dir, path })
    log.record({ jobId: hex32(), attempt: 1, worker: worker.address as Address, projectId: PROJECT, epoch: EPOCH, fee: 8n, session: true })
    const [f] = log.fees(PROJECT)
    assert.deepEqual([f.requests, f.sessions], [{ count: 1, fees: 42n }, { count: 1, fees: 8n }])
    // the migrated key is still one key: a higher fee replaces it, a lower one does not
    log.record({ jobId: oldJob, attempt: 1, worker: worker.address as Address, projectId: PROJECT, epoch: EPOCH, fee: 50n })
    log.record({ jobId: oldJob, attempt: 1, worker: worker.address as Address, projectId: PROJECT, epoch: EPOCH, fee: 40n })
    assert.equal(log.get(oldJob, 1, worker.address as Address)?.fee, 50n)
    assert.equal(log.totals(worker.address as Address, PROJECT, EPOCH).count, 2)
    log.close()
    const check = new DatabaseSync(path)
    assert.doesNotMatch((check.prepare("SELECT sql FROM sqlite_master WHERE name = 'tickets'").get() as { sql: string }).sql, /WITHOUT ROWID/i, 'migrated to the rowid table')
    check.close()
  })
})
