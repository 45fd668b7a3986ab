/**
 * The worker's receipt log (node/worker/receipt-log.ts) on a real SQLite file: one receipt per
 * (gateway, jobId, attempt), ever — across concurrent reservations, group commits, a `kill -9` of
 * the process holding a reservation, and pruning.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { DatabaseSync } from 'node:sqlite'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { bytesToHex, type Hex } from 'viem'
import { LIMITS } from '#protocol'
import { receiptLog, silentLogger, type ReceiptLog, type TicketRecord } from '../../../node/index.ts'

const root = resolve(import.meta.dirname, '..', '..', '..')
const hex32 = (): Hex => bytesToHex(randomBytes(32))
const GATEWAY = '0x' + 'Ab'.repeat(20)

function ticket (over: Partial<TicketRecord> = {}): TicketRecord {
  return {
    gateway: GATEWAY,
    jobId: hex32(),
    attempt: 1,
    projectId: hex32(),
    functionId: hex32(),
    jobHash: hex32(),
    inputHash: hex32(),
    worker: '0x' + '11'.repeat(20),
    fee: '1000000000000000000000',
    epoch: '7',
    deadline: String(Math.ceil(Date.now() / 1000) + 30),
    ticketSig: `0x${'22'.repeat(65)}`,
    ...over
  }
}

describe('worker receipt log: at most one receipt per (gateway, jobId, attempt)', function () {
  this.timeout(30_000)
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-receipt-log-'))
  let n = 0
  const open = (init: Partial<Parameters<typeof receiptLog>[0]> = {}): ReceiptLog =>
    receiptLog({ dataDir: join(dir, `w${++n}`), pruneIntervalMs: 0, ...init })({ logger: silentLogger() })
  after(() => rmSync(dir, { recursive: true, force: true }))

  it('refuses a second reservation of a key, whatever else differs, and returns the stored receipt', async () => {
    const logStore = open()
    const t = ticket()
    assert.deepEqual(logStore.reserve(t), { ok: true })
    // same key, other job hash (other options/env): refused while running…
    const running = logStore.reserve({ ...t, jobHash: hex32(), gateway: t.gateway.toLowerCase() })
    assert.equal(running.ok, false)
    assert.equal(running.ok === false && running.existing.state, 'reserved')
    const out = hex32()
    const sig: Hex = `0x${'33'.repeat(65)}`
    await logStore.commit(t, out, sig)
    // …and after the receipt, with the stored output hash and signature
    const again = logStore.reserve({ ...t, jobHash: hex32() })
    assert.equal(again.ok, false)
    if (again.ok) return
    assert.equal(again.existing.state, 'signed')
    assert.equal(again.existing.outputHash, out)
    assert.equal(again.existing.receiptSig, sig)
    assert.equal(again.existing.jobHash, t.jobHash, 'the first ticket is what was signed')
    assert.equal(again.existing.fee, t.fee, 'uint256 fee kept exactly')
    // other attempts and other gateways are other keys
    assert.equal(logStore.reserve({ ...t, attempt: 2 }).ok, true)
    assert.equal(logStore.reserve({ ...t, gateway: '0x' + 'cd'.repeat(20) }).ok, true)
    // a signed key can never be released
    logStore.release(t)
    assert.equal(logStore.get(t)?.state, 'signed')
    logStore.close()
  })

  it('raises a reserved session\'s fee only to a higher cumulative ticket, keeps it across a reopen, and never after the receipt', async () => {
    const path = join(dir, 'raise', 'receipts.sqlite')
    const first = receiptLog({ dataDir: dir, path, pruneIntervalMs: 0 })({ logger: silentLogger() })
    const t = ticket({ fee: '900' })
    first.reserve(t)
    const sig = (b: string): Hex => `0x${b.repeat(65)}`
    assert.equal(first.raiseFee(t, '1000', sig('a1')), true, '900 → 1000 (longer decimal is larger)')
    assert.equal(first.raiseFee(t, '999', sig('a2')), false, 'a lower cumulative fee is refused')
    assert.equal(first.raiseFee(t, '1000', sig('a3')), false, 'an equal fee is refused')
    assert.equal(first.raiseFee(t, '1001', sig('a4')), true)
    assert.equal(first.raiseFee({ ...t, attempt: 2 }, '5000', sig('a5')), false, 'an unknown key is not created')
    assert.throws(() => first.raiseFee(t, '01', sig('a6')), { code: 'RECEIPT_LOG_RANGE' })
    first.close()
    const again = receiptLog({ dataDir: dir, path, pruneIntervalMs: 0 })({ logger: silentLogger() })
    assert.equal(again.get(t)?.fee, '1001')
    assert.equal(again.get(t)?.ticketSig, sig('a4'))
    await again.commit(t, hex32(), sig('33'))
    assert.equal(again.raiseFee(t, '2000', sig('a7')), false, 'a signed receipt\'s fee never changes')
    assert.equal(again.get(t)?.fee, '1001')
    again.close()
  })

  it('groups commits of one event-loop turn into one transaction, and rejects a commit of an unreserved key', async () => {
    const logStore = open()
    const ts = Array.from({ length: 50 }, () => ticket({ epoch: '9' }))
    const projectId = hex32()
    for (const t of ts) assert.equal(logStore.reserve({ ...t, projectId }).ok, true)
    await Promise.all(ts.map(async t => await logStore.commit(t, hex32(), `0x${'44'.repeat(65)}`)))
    const batch = logStore.receiptsOf({ projectId, gateway: GATEWAY, epoch: '9' })
    assert.equal(batch.length, 50)
    assert.ok(batch.every(r => r.state === 'signed' && r.outputHash !== undefined))
    assert.deepEqual(batch.map(r => r.jobId), [...batch.map(r => r.jobId)].sort())
    await assert.rejects(logStore.commit(ticket(), hex32(), `0x${'44'.repeat(65)}`), { code: 'RECEIPT_NOT_RESERVED' })
    await assert.rejects(logStore.commit(ts[0], hex32(), `0x${'44'.repeat(65)}`), { code: 'RECEIPT_NOT_RESERVED' }, 'a signed key is not signed twice')
    logStore.close()
  })

  it('lets one of many concurrent reservations of a key win (across two connections to one file)', () => {
    const dataDir = join(dir, 'shared')
    const a = receiptLog({ dataDir, pruneIntervalMs: 0 })({ logger: silentLogger() })
    const b = receiptLog({ dataDir, pruneIntervalMs: 0 })({ logger: silentLogger() })
    const t = ticket()
    const results = [a.reserve(t), b.reserve(t), a.reserve(t), b.reserve(t)]
    assert.equal(results.filter(r => r.ok).length, 1)
    a.close()
    b.close()
  })

  it('keeps a reservation of a process killed with SIGKILL mid-execution: the key stays refused after restart', async function () {
    this.timeout(90_000)
    const dataDir = join(dir, 'killed')
    const t = ticket()
    // a real process reserves the key, says so, then "runs" forever until killed
    const script = `
      import { receiptLog } from ${JSON.stringify(join(root, 'node', 'worker', 'receipt-log.ts'))}
      import { silentLogger } from ${JSON.stringify(join(root, 'node', 'logger.ts'))}
      const store = receiptLog({ dataDir: ${JSON.stringify(dataDir)}, pruneIntervalMs: 0 })({ logger: silentLogger() })
      const r = store.reserve(${JSON.stringify(t)})
      process.stdout.write(JSON.stringify(r) + '\\n')
      setInterval(() => {}, 1000)
    `
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'], cwd: root })
    // killed whatever happens: a hung child must not outlive the test
    const guard = setTimeout(() => child.kill('SIGKILL'), 60_000)
    after(() => { clearTimeout(guard); child.kill('SIGKILL') })
    const line = await new Promise<string>((resolve, reject) => {
      let buf = ''
      child.stdout.on('data', (d: Buffer) => { buf += d.toString(); if (buf.includes('\n')) resolve(buf.split('\n')[0]) })
      child.once('exit', code => reject(new Error(`child exited ${code} before reserving`)))
    })
    assert.deepEqual(JSON.parse(line), { ok: true })
    const exited = new Promise(resolve => child.once('exit', (_c, signal) => resolve(signal)))
    child.kill('SIGKILL')
    assert.equal(await exited, 'SIGKILL')
    const restarted = receiptLog({ dataDir, pruneIntervalMs: 0 })({ logger: silentLogger() })
    const replay = restarted.reserve({ ...t, jobHash: hex32() })
    assert.equal(replay.ok, false, 'the replay after the crash is refused')
    assert.equal(replay.ok === false && replay.existing.state, 'reserved')
    assert.equal(restarted.unsigned(), 1)
    restarted.close()
  })

  it('prunes only rows older than the retention, and refuses a retention shorter than two job deadlines', async () => {
    let clock = 1_000_000_000_000
    const retentionMs = 24 * 3_600_000
    const logStore = open({ now: () => clock, retentionMs })
    const old = ticket()
    logStore.reserve(old)
    await logStore.commit(old, hex32(), `0x${'55'.repeat(65)}`)
    clock += retentionMs - 1
    const young = ticket()
    logStore.reserve(young)
    assert.equal(logStore.prune(), 0)
    assert.deepEqual(logStore.batchKeys(0n, 100n), [{ projectId: old.projectId, gateway: GATEWAY.toLowerCase(), epoch: 7n }])
    clock += 2
    assert.equal(logStore.prune(), 1)
    assert.equal(logStore.get(old), undefined)
    assert.equal(logStore.get(young)?.state, 'reserved')
    assert.deepEqual(logStore.batchKeys(0n, 100n), [], 'a batch whose receipts were all pruned is no longer offered to the settler')
    logStore.close()
    assert.throws(() => open({ retentionMs: 60_000 }), { code: 'BAD_CONFIG' })
  })

  it('attack: receipts signed for a replaced chain are never settled on the new one, and their tickets stay refused', async () => {
    // a devnet restarted within the ticket horizon keeps its logs (a replayed old ticket must still
    // be refused), but its fresh chain has the same id and Settlement address and counts epochs
    // from 0 again: the old run's epoch-0 receipts would be claimed again from the new escrow
    const dataDir = join(dir, `settlement-${++n}`)
    const at = (init: Partial<Parameters<typeof receiptLog>[0]> = {}): ReceiptLog => receiptLog({ dataDir, pruneIntervalMs: 0, ...init })({ logger: silentLogger() })
    const A = `31337:0x${'5e'.repeat(20)}:1796300000`
    const B = `31337:0x${'5e'.repeat(20)}:1796300600`
    const projectId = hex32()
    // a log from before the check: its receipts stay batchable when a Settlement is first named
    let logStore = at()
    const legacy = ticket({ projectId, epoch: '0' })
    logStore.reserve(legacy)
    await logStore.commit(legacy, hex32(), `0x${'66'.repeat(65)}`)
    assert.equal(logStore.bindSettlement(A), 0)
    assert.equal(logStore.receiptsOf({ projectId, gateway: GATEWAY, epoch: 0n }).length, 1)
    const first = ticket({ projectId, epoch: '0' })
    logStore.reserve(first)
    await logStore.commit(first, hex32(), `0x${'77'.repeat(65)}`)
    assert.equal(logStore.receiptsOf({ projectId, gateway: GATEWAY, epoch: 0n }).length, 2)
    logStore.close()
    // the same chain again: nothing set aside
    logStore = at()
    assert.equal(logStore.bindSettlement(A), 0)
    assert.equal(logStore.receiptsOf({ projectId, gateway: GATEWAY, epoch: 0n }).length, 2)
    logStore.close()
    // a fresh chain: the two receipts are set aside
    logStore = at()
    assert.equal(logStore.bindSettlement(B), 2)
    assert.deepEqual(logStore.batchKeys(0n, 100n), [], 'no batch of the old chain is offered to the settler')
    assert.deepEqual(logStore.receiptsOf({ projectId, gateway: GATEWAY, epoch: 0n }), [])
    // a replay of an old ticket is still refused, with the receipt the worker signed for it
    const replay = logStore.reserve(first)
    assert.equal(replay.ok, false)
    assert.equal(replay.ok === false && replay.existing.state, 'signed')
    // the new chain's own epoch-0 receipt is batched alone
    const fresh = ticket({ projectId, epoch: '0' })
    logStore.reserve(fresh)
    await logStore.commit(fresh, hex32(), `0x${'88'.repeat(65)}`)
    assert.deepEqual(logStore.batchKeys(0n, 100n), [{ projectId, gateway: GATEWAY.toLowerCase(), epoch: 0n }])
    assert.deepEqual(logStore.receiptsOf({ projectId, gateway: GATEWAY, epoch: 0n }).map(r => r.jobId), [fresh.jobId])
    logStore.close()
    // and so after a restart on that chain
    logStore = at()
    assert.equal(logStore.bindSettlement(B), 0)
    assert.deepEqual(logStore.receiptsOf({ projectId, gateway: GATEWAY, epoch: 0n }).map(r => r.jobId), [fresh.jobId])
    assert.equal(logStore.reserve(legacy).ok, false, 'the oldest ticket is refused too')
    logStore.close()
  })

  it('after a reboot that followed an unclean stop (power loss), refuses tickets that may predate it, also across restarts; not after a clean stop or a kill -9', async () => {
    const path = join(dir, `guard-${++n}`, 'receipts.sqlite')
    const bootA = { id: 'boot-a', atMs: Date.now() - 3_600_000 }
    const bootB = { id: 'boot-b', atMs: Date.now() - 1_000 }
    // the machine goes down while the log is open: its last commits may be lost (synchronous NORMAL)
    const crashed = open({ path, boot: bootA })
    const t = ticket()
    crashed.reserve(t)
    await crashed.commit(t, hex32(), `0x${'66'.repeat(65)}`)
    assert.equal(crashed.refusesBefore, undefined)
    // same file, opened as after the reboot (the first handle never closed: nothing marked it clean)
    const rebooted = open({ path, boot: bootB })
    assert.equal(rebooted.refusesBefore, bootB.atMs + LIMITS.maxDeadlineMs + LIMITS.ticketClockSkewMs, 'every ticket issued before the reboot has a deadline before this')
    rebooted.close()
    // a restart within the same boot keeps the guard, though the log was closed cleanly meanwhile
    const again = open({ path, boot: bootB })
    assert.equal(again.refusesBefore, bootB.atMs + LIMITS.maxDeadlineMs + LIMITS.ticketClockSkewMs)
    again.close()
    crashed.close()
    // a kill -9 (same boot, unclean) needs no guard: NORMAL commits are in the OS
    const path2 = join(dir, `guard-${++n}`, 'receipts.sqlite')
    const killed = open({ path: path2, boot: bootA })
    const survivor = open({ path: path2, boot: bootA })
    assert.equal(survivor.refusesBefore, undefined)
    survivor.close()
    killed.close()
    // a clean stop, then a reboot: everything was checkpointed and fsync'ed, no guard
    const cleanReboot = open({ path: path2, boot: { id: 'boot-c', atMs: Date.now() } })
    assert.equal(cleanReboot.refusesBefore, undefined)
    cleanReboot.close()
  })

  it('migrates a version 1 log (rows keyed by the ticket itself) with every row, and still refuses both kinds of repeat', async () => {
    const dataDir = join(dir, 'v1')
    mkdirSync(dataDir)
    // the version 1 schema, as workers before schema 2 wrote it
    const old = new DatabaseSync(join(dataDir, 'receipts.sqlite'))
    old.exec(`PRAGMA journal_mode = WAL;
      CREATE TABLE receipts (gateway TEXT NOT NULL, job_id TEXT NOT NULL, attempt INTEGER NOT NULL, state TEXT NOT NULL CHECK (state IN ('reserved', 'signed')),
        project_id TEXT NOT NULL, function_id TEXT NOT NULL, job_hash TEXT NOT NULL, input_hash TEXT NOT NULL, worker TEXT NOT NULL, fee TEXT NOT NULL,
        epoch INTEGER NOT NULL, deadline INTEGER NOT NULL, ticket_sig TEXT NOT NULL, output_hash TEXT, receipt_sig TEXT, created_at INTEGER NOT NULL, signed_at INTEGER,
        PRIMARY KEY (gateway, job_id, attempt)) WITHOUT ROWID;
      CREATE INDEX receipts_batch_epoch ON receipts (epoch, project_id, gateway) WHERE state = 'signed';
      CREATE INDEX receipts_created ON receipts (created_at);
      CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
      PRAGMA user_version = 1;`)
    const signed = ticket({ epoch: '5' })
    const reserved = ticket({ epoch: '5' })
    const put = old.prepare(`INSERT INTO receipts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
    const outputHash = hex32()
    put.run(signed.gateway.toLowerCase(), signed.jobId, 1, 'signed', signed.projectId, signed.functionId, signed.jobHash, signed.inputHash, signed.worker, signed.fee, 5, Number(signed.deadline), signed.ticketSig, outputHash, `0x${'77'.repeat(65)}`, 2, 3)
    put.run(reserved.gateway.toLowerCase(), reserved.jobId, 1, 'reserved', reserved.projectId, reserved.functionId, reserved.jobHash, reserved.inputHash, reserved.worker, reserved.fee, 5, Number(reserved.deadline), reserved.ticketSig, null, null, 1, null)
    old.close()

    const migrated = receiptLog({ dataDir, pruneIntervalMs: 0 })({ logger: silentLogger() })
    const repeatSigned = migrated.reserve({ ...signed, jobHash: hex32() })
    assert.equal(repeatSigned.ok, false, 'a signed key stays refused')
    assert.equal(repeatSigned.ok === false && repeatSigned.existing.outputHash, outputHash)
    assert.equal(repeatSigned.ok === false && repeatSigned.existing.fee, signed.fee, 'uint256 fee kept exactly')
    const repeatReserved = migrated.reserve(reserved)
    assert.equal(repeatReserved.ok === false && repeatReserved.existing.state, 'reserved', 'a reservation cut short stays refused')
    assert.equal(migrated.unsigned(), 1)
    assert.deepEqual(migrated.receiptsOf({ projectId: signed.projectId, gateway: GATEWAY, epoch: '5' }).map(r => r.jobId), [signed.jobId])
    assert.deepEqual(migrated.batchKeys(0n, 10n), [{ projectId: signed.projectId, gateway: GATEWAY.toLowerCase(), epoch: 5n }], 'the batches of the migrated receipts')
    // the reserved key can still be signed once, and new keys go on as before
    await migrated.commit(reserved, hex32(), `0x${'78'.repeat(65)}`)
    assert.equal(migrated.reserve(ticket()).ok, true)
    migrated.close()
    const check = new DatabaseSync(join(dataDir, 'receipts.sqlite'))
    assert.equal((check.prepare('PRAGMA user_version').get() as { user_version: number }).user_version, 2)
    assert.doesNotMatch((check.prepare("SELECT sql FROM sqlite_master WHERE name = 'receipts'").get() as { sql: string }).sql, /WITHOUT ROWID/i)
    assert.equal((check.prepare('SELECT count(*) AS n FROM receipts').get() as { n: number }).n, 3)
    check.close()
  })

  it('refuses an epoch that does not fit a signed 64-bit integer', () => {
    const logStore = open()
    assert.throws(() => logStore.reserve(ticket({ epoch: (1n << 63n).toString() })), { code: 'RECEIPT_LOG_RANGE' })
    logStore.close()
  })
})
