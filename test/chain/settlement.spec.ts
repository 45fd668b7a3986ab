/**
 * Workers settle (issue 11): real Hardhat chain, real Settlement, real receipt logs with real
 * gateway tickets and worker receipts; the settler builds one batch per (project, gateway, epoch),
 * commits it in the window with the bond, and finalizes it after the challenge window. Time moves
 * with the chain's own clock (`evm_setNextBlockTimestamp`: the contract reads block.timestamp).
 *
 * Attacks performed: a worker process killed with SIGKILL right before and right after its
 * commitBatch transaction, then restarted: without the chain check and the durable `sending`
 * state it would commit twice (reverted) or lose the batch; the test counts the worker's
 * transactions to prove exactly one commit. Every test ends by checking that no worker was slashed.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { type Address, type Hex } from 'viem'
import { generatePrivateKey } from 'viem/accounts'
import { verifyRawCid } from '#protocol'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { Registry } from 'prom-client'
import { devExecutor } from '#sandbox'
import { createBootstrap } from '#bootstrap'
import {
  addProject, allowanceTracker, batchChecker, chainClient, chainDomain, createGateway, createWorker, fastSigner, functionTable, loadContracts,
  receiptLog, settler, silentLogger, ticketLog, type ReceiptLog, type Settler, type WorkerNode, type SettlementClock
} from '#node'
import { cli } from '../helpers/cli.ts'
import { waitFor } from '../helpers/network.ts'
import { fromLeaves } from '../../contracts/abi/leaf.ts'
import { leafFromJson } from '../../node/settlement/index.ts'
import { startSettlementChain, type SettlementChain } from './helpers.ts'
import { committedBatch, earned, FN, fundProject, party, PROJECT, serve, stakeWorker, type Party, type ServedJob } from './settlement-helpers.ts'

const GWEI = 1_000_000_000n

describe('chain: workers settle their receipts through Settlement batches', function () {
  this.timeout(600_000)
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-settle-'))
  const logger = silentLogger()
  const gateway = fastSigner(generatePrivateKey())
  let chain: SettlementChain
  let clock: SettlementClock
  let pid: Hex
  const workers: Party[] = []

  const read = async <T>(functionName: string, args: unknown[] = []): Promise<T> => await chain.read<T>(functionName, args)
  const chainNow = async (): Promise<bigint> => await chain.chainNow()
  const advanceTo = async (t: bigint): Promise<void> => await chain.advanceTo(t)
  const blobs = (): string => join(chain.dir, 'blobs')
  const assertNobodySlashed = async (): Promise<void> => await chain.assertNobodySlashed()

  async function newWorker (): Promise<Party> {
    const w = await party(chain)
    await stakeWorker(w)
    await chain.honest(w.signer.address)
    workers.push(w)
    return w
  }

  before(async () => {
    chain = await startSettlementChain()
    clock = chain.clock
    await chain.registerProject(PROJECT, [FN])
    pid = await fundProject(chain, gateway.address, 10n ** 18n * 5n, 10n ** 18n)
  })

  const root = resolve(import.meta.dirname, '..', '..')
  after(async () => {
    await chain?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('500 requests across 3 mesh workers over 2 epochs: every batch commits and finalizes; each worker is paid exactly its tickets\' fees, the escrow falls by the same, to the wei', async function () {
    // the mesh: a bootstrap, a gateway logging every ticket it signs, three workers at three prices
    // (uneven fees, so a wrong sum or a dropped leaf changes a total), each with its own settler
    const contracts = loadContracts(chain.contractsFile)
    const domain = chainDomain(contracts)
    await chain.registerProject('app', ['time', 'greet'])
    const appId = await fundProject(chain, gateway.address, 10n ** 18n, 10n ** 17n, 'app')
    const escrowBefore = await read<bigint>('escrowOf', [appId])
    const bond = await read<bigint>('minBatchBond')
    const boot = await createBootstrap({}, { privateKey: await generateKeyPair('Ed25519'), logger, registry: new Registry() })
    await boot.start()
    after(async () => await boot.stop())
    const functions = functionTable()
    // the deploy-app fixture with a generous timeout: this test is about money, not latency, and a
    // loaded machine can take seconds for a worker's first job (bundle fetch, thread boot)
    const app = join(dir, 'app')
    cpSync(join(root, 'test/fixtures/deploy-app'), app, { recursive: true })
    writeFileSync(join(app, 'peerhost.json'), JSON.stringify({ name: 'app', defaults: { timeoutMs: 60_000 }, env: { GREETING: 'hello' }, functions: { time: {}, greet: {} } }))
    await addProject(functions, chain.deployer, app)
    const tickets = ticketLog({ dataDir: join(dir, 'gw') })
    after(() => tickets.close())
    // Tickets carry Settlement's epoch at the chain's time, and here the test moves chain time: it
    // mines no block while requests run, so chain time is the head's timestamp, set by the test
    // (advanceTo), and the gateway's clock is composed to read it. A gateway clock of wall time
    // plus the chain's lead (as this test had) let a request phase cross an epoch end whenever it
    // ran longer than what was left of the epoch: at load 14–18 the phases of 250 requests did,
    // tickets fell in the next epoch and the settler built a batch the test said could not exist yet.
    let head = await chainNow()
    const gw = await createGateway({ port: 0, bootstrap: boot.addrs(), domain, epochOf: () => clock.epochAt(head) }, {
      privateKey: await generateKeyPair('Ed25519'), signer: gateway, functions, logger, registry: new Registry(), tickets
    })
    await gw.start()
    after(async () => await gw.stop())
    const parts: Array<{ w: Party, s: Settler, receipts: ReceiptLog, worker: WorkerNode, dataDir: string }> = []
    for (let i = 0; i < 3; i++) {
      const w = await newWorker()
      const dataDir = join(dir, `mesh-${i}`)
      const receipts = receiptLog({ dataDir, pruneIntervalMs: 0 })({ logger })
      const worker = await createWorker({ dataDir, bootstrap: boot.addrs(), price: GWEI * BigInt(1000 + 7 * i), domain }, {
        privateKey: await generateKeyPair('Ed25519'), signer: w.signer, executor: devExecutor({})({}), logger, registry: new Registry(), receipts
      })
      await worker.start()
      const s = settler({ dataDir, intervalMs: 0, graceSeconds: 0n })({ client: w.client, receipts, publish: chain.publish, logger })
      parts.push({ w, s, receipts, worker, dataDir })
    }
    after(async () => { for (const p of parts) { p.s.close(); await p.worker.stop(); p.receipts.close() } })
    await waitFor('three workers in the gateway view', () => gw.view.size() === 3, 30_000)

    /** `n` requests, 9 at a time (more than one worker's share, so the gateway spreads them) */
    async function requests (n: number, concurrency = 9): Promise<void> {
      let next = 0
      await Promise.all(Array.from({ length: concurrency }, async () => {
        while (next < n) {
          next++
          const res = await fetch(`${gw.url}/${chain.deployer}/app/time`)
          assert.equal(res.status, 200, await res.text())
        }
      }))
    }
    async function endEpoch (e: bigint): Promise<void> {
      await advanceTo(clock.epochEnd(e) + 1n)
      head = await chainNow()
    }
    /**
     * A settler tick on a chain clock pinned to the head first: the chain's next block would
     * otherwise be stamped wall time plus its offset, i.e. the head plus every second the requests
     * since it took, and at load a request phase's minute carried the settlers' commits (and their
     * view of chain time) into the next epoch, so a worker built that epoch's batch early
     */
    async function tick (p: { s: Settler }): Promise<Awaited<ReturnType<Settler['tick']>>> {
      await advanceTo((await chainNow()) + 1n)
      return await p.s.tick()
    }

    // The settlers read chain time as max(head, wall clock) (a live chain's head can be old): the
    // chain starts this test at the beginning of an epoch ahead of the wall clock by more than the
    // test's whole timeout, so only the test's own advances end an epoch, however slow the machine.
    await endEpoch(clock.epochAt(BigInt(Math.ceil(Date.now() / 1000)) + BigInt(Math.ceil(this.timeout() / 1000))))
    const e0 = await read<bigint>('currentEpoch')
    assert.equal(clock.epochAt(head), e0, 'the gateway stamps the chain\'s epoch')
    // the first job of each worker fetches the bundle: a few one at a time, then the rest at once
    await requests(3, 1)
    await requests(247)
    // nothing is committed while the epoch runs
    for (const p of parts) assert.equal((await tick(p)).built, 0)
    await endEpoch(e0)
    const e1 = e0 + 1n
    assert.equal(await read<bigint>('currentEpoch'), e1)
    await requests(250)
    for (const p of parts) assert.equal((await tick(p)).committed, (p.receipts.receiptsOf({ projectId: appId, gateway: gateway.address, epoch: e0 }).length > 0 ? 1 : 0), 'epoch e0: one batch per worker that served in it')
    await endEpoch(e1)
    for (const p of parts) assert.equal((await tick(p)).committed, (p.receipts.receiptsOf({ projectId: appId, gateway: gateway.address, epoch: e1 }).length > 0 ? 1 : 0), 'epoch e1: one batch per worker that served in it')

    // what each worker served: its signed receipts, one per answered request, each for a ticket the
    // gateway logged with the same fee (a ticket a busy worker refused, retried elsewhere, has no receipt)
    const served = parts.map(p => [e0, e1].map(e => p.receipts.receiptsOf({ projectId: appId, gateway: gateway.address, epoch: e }).filter(r => r.state === 'signed')))
    assert.equal(served.flat(2).length, 500, 'one receipt per request')
    for (const [i, p] of parts.entries()) {
      for (const r of served[i].flat()) assert.equal(tickets.get(r.jobId, r.attempt, p.w.signer.address)?.fee, BigInt(r.fee), 'the receipt is for a ticket the gateway issued, at its fee')
    }
    const issued = served.map(ws => ws.map(rs => ({ count: rs.length, total: rs.reduce((s, r) => s + BigInt(r.fee), 0n) })))
    for (const [i, t] of issued.entries()) assert.ok(t[0].count + t[1].count > 0, `worker ${i} served requests`)
    assert.ok(issued.every(t => t[0].count + t[1].count < 500), 'the requests are spread over the workers')
    const feesOf = (i: number): bigint => issued[i][0].total + issued[i][1].total
    const fees = [0, 1, 2].reduce((s, i) => s + feesOf(i), 0n)

    // every committed batch is exactly the worker's tickets of (project, gateway, epoch), and rebuilds from its published document
    for (const [i, p] of parts.entries()) {
      for (const b of p.s.batches()) {
        assert.equal(b.state, 'committed')
        const onChain = await committedBatch(chain, b.batchId)
        const t = issued[i][b.epoch === e0 ? 0 : 1]
        assert.deepEqual([onChain.status, onChain.count, onChain.total], [1, t.count, t.total])
        assert.equal(onChain.worker, p.w.signer.address)
        assert.equal(onChain.gateway.toLowerCase(), gateway.address.toLowerCase())
        const bytes = readFileSync(join(blobs(), b.dataCid))
        assert.ok(verifyRawCid(b.dataCid, bytes))
        assert.equal(fromLeaves(JSON.parse(new TextDecoder().decode(bytes)).leaves.map(leafFromJson)).root, onChain.root)
      }
      assert.equal(p.s.batches().length, issued[i].filter(t => t.count > 0).length)
    }
    assert.equal(await read<bigint>('escrowOf', [appId]), escrowBefore - fees, 'the escrow falls by exactly the tickets\' fees')

    // finalization waits for the challenge window; then each worker's settler finalizes its batches
    // in one transaction that pays it its fees and bonds at once (nothing left to withdraw)
    for (const p of parts) assert.equal((await p.s.tick()).finalized, 0)
    await advanceTo((await chainNow()) + clock.challengeWindow + 1n)
    for (const [i, p] of parts.entries()) {
      const batches = p.s.batches().length
      const paid = feesOf(i) + BigInt(batches) * bond
      const balance = await chain.publicClient.getBalance({ address: p.w.signer.address })
      const nonce = await chain.publicClient.getTransactionCount({ address: p.w.signer.address })
      assert.equal((await p.s.tick()).finalized, batches)
      assert.equal(await chain.publicClient.getTransactionCount({ address: p.w.signer.address }), nonce + 1, `worker ${i}: one transaction finalizes all its batches`)
      const block = await chain.publicClient.getBlock({ blockTag: 'latest', includeTransactions: true })
      const tx = block.transactions.find(t => typeof t !== 'string' && t.from.toLowerCase() === p.w.signer.address.toLowerCase() && t.nonce === nonce)
      assert.ok(tx !== undefined && typeof tx !== 'string', 'the finalizing transaction is in the latest block')
      const receipt = await chain.publicClient.getTransactionReceipt({ hash: tx.hash })
      assert.equal(await chain.publicClient.getBalance({ address: p.w.signer.address }) - balance, paid - receipt.gasUsed * receipt.effectiveGasPrice, `worker ${i}: the wallet rises by its fees and bonds, to the wei, less the gas of its one transaction`)
      assert.equal(await p.s.owed(), 0n)
      if (i === 0) {
        // the operator's view: `peerhost earnings` on the worker's data dir (nothing left to withdraw)
        writeFileSync(join(p.dataDir, 'evm.key'), `${p.w.key}\n`, { mode: 0o600 })
        const out = await cli(['earnings', '--data-dir', p.dataDir, '--contracts', chain.contractsFile, '--withdraw', '--json'])
        assert.equal(out.code, 0, out.stderr)
        const summary = out.lines.find(l => l.event === 'earnings')
        assert.equal(summary.withdrawable, '0')
        assert.deepEqual(summary.epochs.map((e: any) => [e.epoch, e.finalized, e.paidWei]).sort(),
          [e0, e1].map((e, k) => [e.toString(), 1, issued[0][k].total.toString()]).filter((_r, k) => issued[0][k].count > 0).sort())
        assert.equal(out.lines.find(l => l.event === 'withdraw').amount, '0')
      } else {
        assert.equal(await p.s.withdraw(), 0n)
      }
      assert.ok(p.s.batches().every(b => b.state === 'finalized'))
    }
    assert.equal(await read<bigint>('escrowOf', [appId]), escrowBefore - fees, 'finalization moves nothing more out of the escrow')
    await assertNobodySlashed()
  })

  for (const killAt of ['before-send', 'after-send'] as const) {
    it(`a worker killed with SIGKILL ${killAt === 'before-send' ? 'right before' : 'right after'} commitBatch commits its batch exactly once after restart`, async function () {
      const w = await newWorker()
      const dataDir = join(dir, `kill-${killAt}`)
      const receipts: ReceiptLog = receiptLog({ dataDir, pruneIntervalMs: 0 })({ logger })
      const e = await read<bigint>('currentEpoch')
      const jobs = await serve(w.client.domain, chain.deployer, receipts, gateway, w.signer, e, 12, i => GWEI * BigInt(500 + i), killAt)
      receipts.close()
      await advanceTo(clock.epochEnd(e) + 1n)
      const escrowBefore = await read<bigint>('escrowOf', [pid])
      const nonceBefore = await chain.publicClient.getTransactionCount({ address: w.signer.address })

      const batchId = await read<Hex>('batchIdOf', [w.signer.address, pid, e, gateway.address])
      await killThenRestart(w, dataDir, killAt, [batchId], nonceBefore)
      const b = await committedBatch(chain, batchId)
      const fees = jobs.reduce((s, j) => s + j.fee, 0n)
      assert.deepEqual([b.status, b.count, b.total], [1, 12, fees])
      assert.equal(await read<bigint>('escrowOf', [pid]), escrowBefore - fees)
      await assertNobodySlashed()
    })
  }

  const gateway2 = fastSigner(generatePrivateKey())
  for (const killAt of ['before-send', 'after-send'] as const) {
    it(`a worker with two batches killed with SIGKILL ${killAt === 'before-send' ? 'right before' : 'right after'} its one commitBatches transaction commits each exactly once after restart`, async function () {
      const w = await newWorker()
      await fundProject(chain, gateway2.address, 0n, 10n ** 18n)
      const dataDir = join(dir, `kill-two-${killAt}`)
      const receipts: ReceiptLog = receiptLog({ dataDir, pruneIntervalMs: 0 })({ logger })
      const e = await read<bigint>('currentEpoch')
      const jobs = [
        ...await serve(w.client.domain, chain.deployer, receipts, gateway, w.signer, e, 7, i => GWEI * BigInt(700 + i), `two-a-${killAt}`),
        ...await serve(w.client.domain, chain.deployer, receipts, gateway2, w.signer, e, 5, i => GWEI * BigInt(900 + i), `two-b-${killAt}`)
      ]
      receipts.close()
      await advanceTo(clock.epochEnd(e) + 1n)
      const escrowBefore = await read<bigint>('escrowOf', [pid])
      const nonceBefore = await chain.publicClient.getTransactionCount({ address: w.signer.address })
      const ids = await Promise.all([gateway, gateway2].map(async g => await read<Hex>('batchIdOf', [w.signer.address, pid, e, g.address])))

      await killThenRestart(w, dataDir, killAt, ids, nonceBefore)
      const fees = jobs.reduce((t, j) => t + j.fee, 0n)
      const [a, b] = await Promise.all(ids.map(async id => await committedBatch(chain, id)))
      assert.deepEqual([a.status, a.count, b.status, b.count, a.total + b.total], [1, 7, 1, 5, fees])
      assert.equal(await read<bigint>('escrowOf', [pid]), escrowBefore - fees)
      await assertNobodySlashed()
    })
  }

  it('a batch whose document cannot be published (storage refuses its blocks) does not stop the worker\'s other batches', async function () {
    // The worker's publish is composed with a storage that refuses blocks over 10,000 bytes while the
    // settler chunks at the 2 MiB default: one batch cannot be published. Before the fix one such
    // batch made every tick throw, so no other batch committed, finalized or answered.
    const w = await newWorker()
    const other = fastSigner(generatePrivateKey())
    await fundProject(chain, other.address, 0n, 10n ** 18n)
    const dataDir = join(dir, 'too-large')
    const receipts = receiptLog({ dataDir, pruneIntervalMs: 0 })({ logger })
    const CAP = 10_000
    const s = settler({ dataDir, intervalMs: 0, graceSeconds: 0n })({
      client: w.client, receipts, logger,
      publish: async (bytes) => { if (bytes.byteLength > CAP) throw new Error(`block of ${bytes.byteLength} bytes; the limit is ${CAP}`); return await chain.publish(bytes) }
    })
    after(() => { s.close(); receipts.close() })
    const e = await read<bigint>('currentEpoch')
    const small = await serve(w.client.domain, chain.deployer, receipts, gateway, w.signer, e, 4, i => GWEI * BigInt(300 + i), 'small')
    await serve(w.client.domain, chain.deployer, receipts, other, w.signer, e, 40, i => GWEI * BigInt(300 + i), 'large')
    await advanceTo(clock.epochEnd(e) + 1n)
    const r = await s.tick()
    assert.deepEqual([r.built, r.committed], [1, 1], 'the publishable batch is built and committed')
    const ok = await committedBatch(chain, await read<Hex>('batchIdOf', [w.signer.address, pid, e, gateway.address]))
    assert.deepEqual([ok.status, ok.count, ok.total], [1, 4, small.reduce((t, j) => t + j.fee, 0n)])
    const large = await committedBatch(chain, await read<Hex>('batchIdOf', [w.signer.address, pid, e, other.address]))
    assert.equal(large.status, 0, 'the unpublishable batch is not committed (its leaves could not be audited)')
    assert.equal((await s.tick()).built, 0, 'later ticks run too (the large batch is retried, still refused)')
    await assertNobodySlashed()
  })

  it('one transaction per tick: a due finalization waits for the next commit while the worker has receipts of the current epoch, and goes with it (paid at once)', async function () {
    const w = await newWorker()
    const dataDir = join(dir, 'ride')
    const receipts = receiptLog({ dataDir, pruneIntervalMs: 0 })({ logger })
    const s = settler({ dataDir, intervalMs: 0, graceSeconds: 0n })({ client: w.client, receipts, logger, publish: chain.publish })
    try {
      const e1 = await read<bigint>('currentEpoch')
      const first = await serve(w.client.domain, chain.deployer, receipts, gateway, w.signer, e1, 3, i => GWEI * BigInt(100 + i), 'ride-1')
      await advanceTo(clock.epochEnd(e1) + 1n)
      assert.equal((await s.tick()).committed, 1)
      // past the challenge window, in an epoch the worker is serving: the finalization waits. The
      // commit landed a few seconds into the epoch after e1 and the window is whole epochs, so the
      // batch falls due a few seconds into an epoch: its end (the next commit) is under one epoch away
      assert.equal(clock.challengeWindow % clock.epochLength, 0n)
      await advanceTo((await chainNow()) + clock.challengeWindow + 1n)
      const e2 = await read<bigint>('currentEpoch')
      const second = await serve(w.client.domain, chain.deployer, receipts, gateway, w.signer, e2, 2, i => GWEI * BigInt(200 + i), 'ride-2')
      const nonce = await chain.publicClient.getTransactionCount({ address: w.signer.address })
      assert.deepEqual(await s.tick().then(r => [r.committed, r.finalized]), [0, 0], 'held for the next commit')
      assert.equal(await chain.publicClient.getTransactionCount({ address: w.signer.address }), nonce, 'nothing sent')
      const balance = await chain.publicClient.getBalance({ address: w.signer.address })
      await advanceTo(clock.epochEnd(e2) + 1n)
      assert.deepEqual(await s.tick().then(r => [r.committed, r.finalized]), [1, 1], 'the commit carries the finalization')
      assert.equal(await chain.publicClient.getTransactionCount({ address: w.signer.address }), nonce + 1, 'in one transaction')
      const block = await chain.publicClient.getBlock({ blockTag: 'latest', includeTransactions: true })
      const tx = block.transactions.find(t => typeof t !== 'string' && t.from.toLowerCase() === w.signer.address.toLowerCase())
      assert.ok(tx !== undefined && typeof tx !== 'string')
      const receipt = await chain.publicClient.getTransactionReceipt({ hash: tx.hash })
      const fees1 = first.reduce((t, j) => t + j.fee, 0n)
      // the first batch's fees and bond come in, the second batch's bond goes out, less the gas
      assert.equal(await chain.publicClient.getBalance({ address: w.signer.address }) - balance, fees1 - receipt.gasUsed * receipt.effectiveGasPrice)
      assert.equal(await s.owed(), 0n)
      assert.equal(second.length, 2)
      await assertNobodySlashed()
    } finally {
      s.close()
      receipts.close()
    }
  })

  it('SE-07: a batch document over one block is published in chunks, restart-safe; the gateway checks it from its chunks; it finalizes and is paid', async function () {
    // a storage that takes blocks of at most CAP bytes, as the mesh takes 2 MiB, and the settler
    // configured with that cap: 40 leaves (≈ 660 bytes each) cannot be one block
    const CAP = 4_000
    const w = await newWorker()
    const gw = await party(chain)
    await fundProject(chain, gw.signer.address, 0n, 10n ** 18n)
    const gwDir = join(dir, 'chunk-gw')
    const tickets = ticketLog({ dataDir: gwDir })
    const checker = batchChecker({ dataDir: gwDir, intervalMs: 0 })({ client: gw.client, tickets, fetch: chain.fetchBlob, logger })
    const dataDir = join(dir, 'chunked')
    const receipts = receiptLog({ dataDir, pruneIntervalMs: 0 })({ logger })
    const published: number[] = []
    let crashAt = 3 // the first build dies while publishing its third block
    const s = settler({ dataDir, intervalMs: 0, graceSeconds: 0n, maxBlockBytes: CAP })({
      client: w.client, receipts, logger,
      publish: async (bytes) => {
        if (bytes.byteLength > CAP) throw new Error(`block of ${bytes.byteLength} bytes; the limit is ${CAP}`)
        if (--crashAt === 0) throw new Error('the node went down mid-publish')
        published.push(bytes.byteLength)
        return await chain.publish(bytes)
      }
    })
    after(() => { s.close(); receipts.close(); checker.close(); tickets.close() })
    const e = await read<bigint>('currentEpoch')
    const served = await serve(w.client.domain, chain.deployer, receipts, gw.signer, w.signer, e, 40, i => GWEI * BigInt(500 + 3 * i), 'chunked')
    for (const j of served) tickets.record({ jobId: j.jobId, attempt: 0, worker: w.signer.address, projectId: pid, epoch: e, fee: j.fee })
    const total = served.reduce((t, j) => t + j.fee, 0n)
    await advanceTo(clock.epochEnd(e) + 1n)
    assert.deepEqual([(await s.tick()).built, s.batches().length], [0, 0], 'a publish that failed part-way builds nothing')
    const r = await s.tick()
    assert.deepEqual([r.built, r.committed], [1, 1], 'the next tick publishes every block and commits once')
    const b = s.batches()[0]
    const onChain = await committedBatch(chain, b.batchId)
    assert.deepEqual([onChain.status, onChain.count, onChain.total], [1, 40, total])
    // dataCid names an index of chunks, each one block within the cap, covering every leaf in order
    const index = JSON.parse(new TextDecoder().decode(await chain.fetchBlob(b.dataCid)))
    assert.equal(index.v, 2)
    assert.ok(index.chunks.length >= 5, `${index.chunks.length} chunks`)
    assert.deepEqual(index.chunks.map((c: any) => c.first), index.chunks.map((_: any, i: number) => index.chunks.slice(0, i).reduce((n: number, x: any) => n + x.count, 0)))
    assert.equal(index.chunks.reduce((n: number, c: any) => n + c.count, 0), 40)
    assert.ok(published.every(n => n <= CAP))
    // the gateway fetches the chunks, rebuilds the root and matches all 40 leaves against its ticket log
    const verdict = (await checker.tick()).find(v => v.batchId === b.batchId)
    assert.equal(verdict?.verdict, 'ok', verdict?.reason)
    assert.deepEqual(verdict?.issued, { count: 40, total })
    await advanceTo((await chainNow()) + clock.challengeWindow + 1n)
    assert.equal((await s.tick()).finalized, 1)
    assert.equal(await earned(chain, w.signer.address), total + await read<bigint>('minBatchBond'), 'paid its 40 fees and its bond')
    await assertNobodySlashed()
  })

  it('a gateway signs no paid ticket beyond the project\'s escrow or its allowance: 402 naming `peerhost escrow deposit/allow`', async function () {
    const price = GWEI * 1000n
    const boot = await createBootstrap({}, { privateKey: await generateKeyPair('Ed25519'), logger, registry: new Registry() })
    await boot.start()
    const functions = functionTable()
    await addProject(functions, chain.deployer, join(root, 'test/fixtures/slow'))
    await chain.registerProject('slow', ['slow'])
    const signer = fastSigner(generatePrivateKey())
    const contracts = loadContracts(chain.contractsFile)
    const spend = allowanceTracker({ refreshMs: 0, maxStaleMs: 0 })({ client: chainClient(contracts), gateway: signer.address })
    const gw = await createGateway({ port: 0, bootstrap: boot.addrs(), domain: chainDomain(contracts), epochOf: clock.epochAtMs }, { privateKey: await generateKeyPair('Ed25519'), signer, functions, logger, registry: new Registry(), spend })
    await gw.start()
    const receipts = receiptLog({ dataDir: join(dir, 'mesh-w'), pruneIntervalMs: 0 })({ logger })
    const worker = await createWorker({ dataDir: join(dir, 'mesh-w'), bootstrap: boot.addrs(), price, domain: chainDomain(contracts) }, {
      privateKey: await generateKeyPair('Ed25519'), signer: fastSigner(generatePrivateKey()), executor: devExecutor({})({}), logger, registry: new Registry(), receipts
    })
    try {
      await worker.start()
      await waitFor('the worker in the view', () => gw.view.size() === 1, 20_000)
      const url = `${gw.url}/${chain.deployer}/slow/slow?ms=1`
      const signed = (): number => receipts.batchKeys(0n, 1n << 62n).flatMap(k => receipts.receiptsOf(k)).length

      // no escrow at all: refused before any worker runs anything
      const broke = await fetch(url)
      const brokeBody = await broke.json() as any
      assert.equal(broke.status, 402, JSON.stringify(brokeBody))
      assert.equal(brokeBody.error.code, 'PAYMENT_REQUIRED')
      assert.match(brokeBody.error.message, /peerhost escrow deposit slow/)
      assert.equal(signed(), 0)

      // escrow, but an allowance for two requests per epoch
      await fundProject(chain, signer.address, 10n ** 18n, 2n * price, 'slow')
      const epochBefore = clock.epochAtMs(Date.now())
      for (let i = 0; i < 2; i++) assert.equal((await fetch(url)).status, 200)
      const third = await fetch(url)
      const thirdBody = await third.json() as any
      if (clock.epochAtMs(Date.now()) === epochBefore) {
        assert.equal(third.status, 402, JSON.stringify(thirdBody))
        assert.match(thirdBody.error.message, /peerhost escrow allow slow/)
        assert.equal(signed(), 2, 'exactly the two paid tickets the allowance covers were served')
      } else {
        // the epoch turned meanwhile (60 s epochs): the new epoch's allowance paid for it
        assert.equal(third.status, 200)
      }
      for (const r of receipts.batchKeys(0n, 1n << 62n).flatMap(k => receipts.receiptsOf(k))) assert.equal(r.fee, price.toString())
    } finally {
      await worker.stop()
      receipts.close()
      await gw.stop()
      await boot.stop()
    }
    await assertNobodySlashed()
  })

  /**
   * Runs the worker's settler in a child killed with SIGKILL at `killAt`, then twice more: the
   * batches `ids` are committed by the first run (after-send) or the second (before-send), never
   * again by the third, in exactly one transaction from the worker over all three runs.
   */
  async function killThenRestart (w: Party, dataDir: string, killAt: 'before-send' | 'after-send', ids: Hex[], nonceBefore: number): Promise<void> {
    const first = await runChild({ contractsFile: chain.contractsFile, key: w.key, dataDir, killAt })
    assert.equal(first.signal, 'SIGKILL', `the child was killed (${first.stderr})`)
    for (const id of ids) assert.equal((await committedBatch(chain, id)).status, killAt === 'after-send' ? 1 : 0, 'committed by the killed run only after the send')
    const second = await runChild({ contractsFile: chain.contractsFile, key: w.key, dataDir, killAt: 'none' })
    assert.equal(second.code, 0, second.stderr)
    assert.equal(JSON.parse(second.stdout).committed, ids.length)
    const third = await runChild({ contractsFile: chain.contractsFile, key: w.key, dataDir, killAt: 'none' })
    assert.equal(JSON.parse(third.stdout).committed, 0, 'a committed batch is not committed again')
    assert.equal(await chain.publicClient.getTransactionCount({ address: w.signer.address }), nonceBefore + 1, 'one transaction from the worker in all three runs')
  }

  async function runChild (args: Record<string, unknown>): Promise<{ code: number | null, signal: string | null, stdout: string, stderr: string }> {
    const child = spawn(process.execPath, [join(root, 'test', 'chain', 'settler-child.ts'), JSON.stringify(args)], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', d => { stdout += d })
    child.stderr.on('data', d => { stderr += d })
    // a hung child must not outlive the test
    const guard = setTimeout(() => child.kill('SIGKILL'), 120_000)
    const [code, signal] = await new Promise<[number | null, string | null]>(resolve => child.once('exit', (c, s) => resolve([c, s])))
    clearTimeout(guard)
    return { code, signal, stdout, stderr }
  }
})
