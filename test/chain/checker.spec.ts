/**
 * Gateways check the batches that name them (issue 11), on a real Hardhat chain with real
 * Settlement, real receipt logs, real gateway tickets and the worker's real settler.
 *
 * Attacks performed, each by a worker composed with a dishonest batch builder (the settler's
 * `batch` part; no production switch):
 * - a worker that inflates its committed total above the sum of its leaves;
 * - a worker that adds a leaf for a job the gateway never ticketed (a forged ticket signature).
 * The gateway's checker (its ticket log + BatchCommitted follower) must prove both faulty with the
 * right Settlement call, before the challenge window closes; without it the batches would
 * finalize and the escrow would pay the inflated totals. An honest worker's batch in the same
 * epoch is checked `ok`, finalizes and is paid; no honest worker is slashed.
 *
 * SE-11 (data availability): a worker commits a batch whose document it never published and then
 * withholds it (it does not answer). The gateway cannot check it (`unverifiable`), so it challenges
 * it with `requestLeaf`; the unanswered request is proven (`proveUnanswered`): voided, slashed, the
 * gateway paid. Without the challenge that batch would finalize unchecked. In the same epoch an
 * honest worker whose document the gateway could not reach answers the request from its SQLite
 * state after a restart and is paid (fees, bond and the request's bond).
 */
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { keccak256, toHex, type Address, type Hex } from 'viem'
import { generatePrivateKey } from 'viem/accounts'
import { settlementAbi } from '#contracts'
import { functionId, rawCid, ticketDigest } from '#protocol'
import { batchChecker, fastSigner, receiptLog, settler, silentLogger, ticketLog, type SettlementClock, type TicketLog } from '#node'
import { buildSettlementBatch, fromLeaves, splitSignature, type SettlementItem } from '../../contracts/abi/leaf.ts'
import { startSettlementChain, type SettlementChain } from './helpers.ts'
import { committedBatch, earned, FN, fundProject, party, PROJECT, serve, stakeWorker, type Party } from './settlement-helpers.ts'

const GWEI = 1_000_000_000n

describe('chain: gateways check the settlement batches naming them', function () {
  this.timeout(600_000)
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-check-'))
  const logger = silentLogger()
  let chain: SettlementChain
  let clock: SettlementClock
  let pid: Hex
  let gw: Party
  const stakes = new Map<Address, bigint>()

  const read = async <T>(functionName: string, args: unknown[] = []): Promise<T> => await chain.read<T>(functionName, args)
  const stakeOf = async (a: Address): Promise<bigint> => await chain.stakeOf(a)
  const chainNow = async (): Promise<bigint> => await chain.chainNow()
  const advanceTo = async (t: bigint): Promise<void> => await chain.advanceTo(t)

  before(async () => {
    chain = await startSettlementChain()
    clock = chain.clock
    await chain.registerProject(PROJECT, [FN])
    gw = await party(chain)
    pid = await fundProject(chain, gw.signer.address, 10n ** 18n * 5n, 10n ** 18n)
  })
  const closers: Array<() => void> = []
  after(async () => {
    for (const c of closers) c()
    await chain?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  /**
   * An honest worker, one that inflates its total and one that adds a leaf without a ticket, each
   * serving 8 ticketed jobs of one epoch (recorded in `tickets` when given, as the gateway's
   * dispatcher does) and committing its batch once the epoch is over.
   */
  async function dishonestEpoch (tag: string, tickets?: TicketLog) {
    const INFLATE = 777n * GWEI
    const forger = fastSigner(generatePrivateKey())
    const dishonest: Record<string, ((items: SettlementItem[]) => ReturnType<typeof buildSettlementBatch>) | undefined> = {
      honest: undefined,
      // claims more than its leaves add up to
      inflate: (items) => { const b = buildSettlementBatch(items); return fromLeaves(b.leaves, b.total + INFLATE) },
      // one more leaf, prefix sums intact, for a job whose "ticket" the gateway never signed
      forge: (items) => {
        const b = buildSettlementBatch(items)
        const last = b.leaves[b.leaves.length - 1]
        const fee = 5_000n * GWEI
        const ticket = {
          jobId: keccak256(toHex(`a job nobody ordered ${tag}`)), attempt: 0, functionId: functionId(chain.deployer, PROJECT, FN),
          jobHash: keccak256(toHex('h')), inputHash: keccak256(toHex('i')), worker: parts.forge.w.signer.address, gateway: gw.signer.address,
          fee, epoch: e0, deadline: last.deadline
        }
        const leaf = { ...last, index: last.index + 1n, cumulativeFee: last.cumulativeFee + fee, jobId: ticket.jobId, jobHash: ticket.jobHash, inputHash: ticket.inputHash, outputHash: keccak256(toHex('o')), fee, ...splitSignature(forger.signDigest(ticketDigest(gw.client.domain, ticket))) }
        return fromLeaves([...b.leaves, leaf])
      }
    }
    const parts: Record<string, { w: Party, s: ReturnType<ReturnType<typeof settler>>, receipts: ReturnType<ReturnType<typeof receiptLog>>, close: () => void }> = {}
    for (const name of Object.keys(dishonest)) {
      const w = await party(chain)
      await stakeWorker(w)
      stakes.set(w.signer.address, await stakeOf(w.signer.address))
      if (name === 'honest') await chain.honest(w.signer.address)
      const receipts = receiptLog({ dataDir: join(dir, `${tag}-${name}`), pruneIntervalMs: 0 })({ logger })
      const s = settler({ dataDir: join(dir, `${tag}-${name}`), intervalMs: 0, graceSeconds: 0n })({ client: w.client, receipts, publish: chain.publish, logger, batch: dishonest[name] })
      parts[name] = { w, s, receipts, close: () => { s.close(); receipts.close() } }
    }
    closers.push(() => { for (const p of Object.values(parts)) p.close() })

    const e0 = await read<bigint>('currentEpoch')
    const fee = (i: number): bigint => GWEI * BigInt(1000 + 13 * i)
    const jobs: Record<string, bigint> = {}
    for (const [name, p] of Object.entries(parts)) {
      const served = await serve(gw.client.domain, chain.deployer, p.receipts, gw.signer, p.w.signer, e0, 8, fee, `${tag}-${name}`)
      // the gateway's ticket log, as its dispatcher writes it before each ticket leaves
      for (const j of served) tickets?.record({ jobId: j.jobId, attempt: 0, worker: p.w.signer.address, projectId: pid, epoch: e0, fee: j.fee })
      jobs[name] = served.reduce((s, j) => s + j.fee, 0n)
    }

    await advanceTo(clock.epochEnd(e0) + 1n)
    const batchOf: Record<string, Hex> = {}
    for (const [name, p] of Object.entries(parts)) {
      const r = await p.s.tick()
      assert.equal(r.committed, 1, `${name}: its batch is committed`)
      batchOf[name] = p.s.batches()[0].batchId
    }
    // the attack lands: the chain accepted the inflated total and the forged leaf
    assert.equal((await committedBatch(chain, batchOf.inflate)).total, jobs.inflate + INFLATE)
    assert.equal((await committedBatch(chain, batchOf.forge)).count, 9)
    return { parts, batchOf, jobs, INFLATE }
  }

  it('a worker that inflates its total and one that adds a leaf without a ticket are proven faulty by the gateway; the honest worker is paid', async function () {
    const tickets = ticketLog({ dataDir: join(dir, 'gw') })
    const checker = batchChecker({ dataDir: join(dir, 'gw'), intervalMs: 0 })({ client: gw.client, tickets, fetch: chain.fetchBlob, logger })
    after(() => { checker.close(); tickets.close() })
    const escrowBefore = await read<bigint>('escrowOf', [pid])
    const { parts, batchOf, jobs } = await dishonestEpoch('gw', tickets)

    const verdicts = await checker.tick()
    const byBatch = new Map(verdicts.map(v => [v.batchId, v]))
    assert.equal(byBatch.get(batchOf.honest)?.verdict, 'ok')
    assert.deepEqual(byBatch.get(batchOf.honest)?.issued, { count: 8, total: jobs.honest })
    assert.equal(byBatch.get(batchOf.inflate)?.verdict, 'faulty')
    assert.equal(byBatch.get(batchOf.inflate)?.proof, 'proveInvalidLeaf')
    assert.match(byBatch.get(batchOf.inflate)?.reason ?? '', /total/)
    assert.equal(byBatch.get(batchOf.forge)?.verdict, 'faulty')
    assert.match(byBatch.get(batchOf.forge)?.reason ?? '', /no ticket the batch's gateway issued/)

    // proven on chain: voided with the right fault, the gateway as challenger, the liars slashed
    const voided = await chain.publicClient.getContractEvents({ address: chain.addresses.Settlement, abi: settlementAbi, eventName: 'BatchVoided', fromBlock: 0n })
    const faultOf = new Map(voided.map(e => [(e.args as any).batchId as Hex, e.args as { fault: number, challenger: Address }]))
    assert.equal(faultOf.get(batchOf.inflate)?.fault, 3, 'inflated total: FAULT_BROKEN_SUM')
    assert.equal(faultOf.get(batchOf.forge)?.fault, 1, 'leaf without a ticket: FAULT_INVALID_TICKET')
    for (const name of ['inflate', 'forge']) {
      assert.equal(faultOf.get(batchOf[name])?.challenger, gw.signer.address)
      assert.equal((await committedBatch(chain, batchOf[name])).status, 3)
      assert.ok(await stakeOf(parts[name].w.signer.address) < stakes.get(parts[name].w.signer.address)!, `${name}: slashed`)
      assert.match(checker.checked().find(c => c.batchId === batchOf[name])?.tx ?? '', /^0x[0-9a-f]{64}$/, `${name}: the proof's transaction is recorded`)
    }
    assert.equal(faultOf.has(batchOf.honest), false)
    const status = checker.status() as { checked: number, ok: number, faulty: number }
    assert.deepEqual([status.checked, status.ok, status.faulty], [3, 1, 2])
    // a second pass judges nothing again and sends nothing
    assert.equal((await checker.tick()).length, 0)

    // the voided batches' fees return to the escrow; the honest batch finalizes and is paid
    await advanceTo((await chainNow()) + clock.challengeWindow + 1n)
    for (const p of Object.values(parts)) await p.s.tick()
    assert.equal(parts.honest.s.batches()[0].state, 'finalized')
    assert.equal(parts.inflate.s.batches()[0].state, 'voided')
    assert.equal(parts.forge.s.batches()[0].state, 'voided')
    assert.equal(await read<bigint>('escrowOf', [pid]), escrowBefore - jobs.honest, 'the escrow pays the honest batch only')
    await chain.assertNobodySlashed()
  })

  it('a watcher (no ticket log) catches the faults a gateway that checks nothing missed, proves them and is paid the challenger share', async function () {
    // the gateway runs without a checker (composition); a third party watches every batch
    const watcher = await party(chain)
    const checker = batchChecker({ dataDir: join(dir, 'watcher'), intervalMs: 0 })({ client: watcher.client, fetch: chain.fetchBlob, logger })
    after(() => checker.close())
    const { parts, batchOf, jobs } = await dishonestEpoch('watch')
    const owedBefore = await read<bigint>('owed', [watcher.signer.address])

    const verdicts = new Map((await checker.tick()).map(v => [v.batchId, v]))
    // the first test's batches are judged too (a watcher follows every batch): already voided ones are not proven again
    assert.equal(verdicts.get(batchOf.honest)?.verdict, 'ok')
    assert.equal(verdicts.get(batchOf.inflate)?.verdict, 'faulty')
    assert.equal(verdicts.get(batchOf.forge)?.verdict, 'faulty')
    assert.match(verdicts.get(batchOf.forge)?.reason ?? '', /no ticket the batch's gateway issued/)

    const voided = await chain.publicClient.getContractEvents({ address: chain.addresses.Settlement, abi: settlementAbi, eventName: 'BatchVoided', fromBlock: 0n })
    const mine = voided.filter(e => (e.args as any).challenger === watcher.signer.address).map(e => e.args as { batchId: Hex, fault: number, slashed: bigint })
    assert.deepEqual(mine.map(e => [e.batchId, e.fault]).sort(), [[batchOf.inflate, 3], [batchOf.forge, 1]].sort())
    // the challenger share of (slash + bond), to the wei
    const bond = await read<bigint>('minBatchBond')
    const shareBps = BigInt(await read<number>('challengerShareBps'))
    const expected = mine.reduce((s, e) => s + (e.slashed + bond) * shareBps / 10_000n, 0n)
    assert.ok(expected > 0n)
    assert.equal(await read<bigint>('owed', [watcher.signer.address]) - owedBefore, expected, 'the watcher earns the challenger share')

    await advanceTo((await chainNow()) + clock.challengeWindow + 1n)
    await parts.honest.s.tick()
    assert.equal(parts.honest.s.batches()[0].state, 'finalized')
    assert.equal(await earned(chain, parts.honest.w.signer.address), jobs.honest + bond, 'the honest worker is paid its fees and bond')
    // no honest worker anywhere in this file was slashed
    await chain.assertNobodySlashed()
  })

  it('SE-11: a worker withholding its batch data is challenged with requestLeaf and proven faulty; an honest worker answers from its log after a restart and is paid', async function () {
    // a gateway of its own: its checker judges only the batches naming it
    const gw2 = await party(chain)
    await fundProject(chain, gw2.signer.address, 0n, 10n ** 18n)
    const gwDir = join(dir, 'gw-da')
    const tickets = ticketLog({ dataDir: gwDir })
    let checker = batchChecker({ dataDir: gwDir, intervalMs: 0 })({ client: gw2.client, tickets, fetch: chain.fetchBlob, logger })
    after(() => { checker.close(); tickets.close() })
    const escrowBefore = await read<bigint>('escrowOf', [pid])
    const bond = await read<bigint>('minBatchBond')

    // the withholder computes its document's CID but stores it nowhere; the honest worker stores its
    // own in a place the gateway cannot reach (its node was unreachable while the gateway fetched)
    const elsewhere = join(dir, 'honest-blobs')
    mkdirSync(elsewhere, { recursive: true })
    const publishers = {
      withhold: async (bytes: Uint8Array) => rawCid(bytes),
      honest: async (bytes: Uint8Array) => { const cid = rawCid(bytes); writeFileSync(join(elsewhere, cid), bytes); return cid }
    }
    const e0 = await read<bigint>('currentEpoch')
    const parts: Record<string, { w: Party, dataDir: string, open: () => { s: ReturnType<ReturnType<typeof settler>>, close: () => void }, jobs: bigint }> = {}
    for (const name of ['withhold', 'honest'] as const) {
      const w = await party(chain)
      await stakeWorker(w)
      stakes.set(w.signer.address, await stakeOf(w.signer.address))
      if (name === 'honest') await chain.honest(w.signer.address)
      const dataDir = join(dir, `da-${name}`)
      const open = (): { s: ReturnType<ReturnType<typeof settler>>, close: () => void } => {
        const receipts = receiptLog({ dataDir, pruneIntervalMs: 0 })({ logger })
        const s = settler({ dataDir, intervalMs: 0, graceSeconds: 0n })({ client: w.client, receipts, publish: publishers[name], logger })
        return { s, close: () => { s.close(); receipts.close() } }
      }
      const receipts = receiptLog({ dataDir, pruneIntervalMs: 0 })({ logger })
      const served = await serve(gw2.client.domain, chain.deployer, receipts, gw2.signer, w.signer, e0, 5, i => GWEI * BigInt(2000 + 11 * i), `da-${name}`)
      receipts.close()
      for (const j of served) tickets.record({ jobId: j.jobId, attempt: 0, worker: w.signer.address, projectId: pid, epoch: e0, fee: j.fee })
      parts[name] = { w, dataDir, open, jobs: served.reduce((sum, j) => sum + j.fee, 0n) }
    }
    await advanceTo(clock.epochEnd(e0) + 1n)
    const batchOf: Record<string, Hex> = {}
    for (const [name, p] of Object.entries(parts)) {
      const { s, close } = p.open()
      assert.equal((await s.tick()).committed, 1, `${name}: its batch is committed`)
      batchOf[name] = s.batches()[0].batchId
      // both go away after committing: the withholder for good, the honest worker until its restart below
      close()
    }

    // the gateway cannot read either document: after its fetch attempts both are unverifiable and challenged
    for (let i = 0; i < 10 && checker.checked().filter(c => c.verdict === 'unverifiable').length < 2; i++) await checker.tick()
    for (const name of ['withhold', 'honest']) assert.equal(checker.checked().find(c => c.batchId === batchOf[name])?.verdict, 'unverifiable', name)
    const requested = async (): Promise<Array<{ batchId: Hex, index: bigint, requester: Address }>> =>
      (await chain.publicClient.getContractEvents({ address: chain.addresses.Settlement, abi: settlementAbi, eventName: 'LeafRequested', fromBlock: 0n })).map(e => e.args as any)
    assert.deepEqual((await requested()).map(r => [r.batchId, r.requester]).sort(), [[batchOf.withhold, gw2.signer.address], [batchOf.honest, gw2.signer.address]].sort())
    assert.deepEqual(checker.leafRequests().map(r => r.state), ['requested', 'requested'])
    const owedBefore = await read<bigint>('owed', [gw2.signer.address])

    // the gateway restarts: it finds its requests, sends none again
    checker.close()
    checker = batchChecker({ dataDir: gwDir, intervalMs: 0 })({ client: gw2.client, tickets, fetch: chain.fetchBlob, logger })
    await checker.tick()
    assert.equal((await requested()).length, 2, 'one request per batch, across a restart')

    // the honest worker restarts and answers from its SQLite state (the leaves were never rebuilt)
    const honest = parts.honest.open()
    after(() => honest.close())
    assert.equal((await honest.s.tick()).answered, 1)
    const honestIndex = BigInt(checker.leafRequests().find(r => r.batchId === batchOf.honest)!.index)
    assert.equal((await read<{ open: boolean }>('getLeafRequest', [batchOf.honest, honestIndex])).open, false)

    // the answer window closes: the withholder is proven, the honest answer is seen
    const withholdIndex = BigInt(checker.leafRequests().find(r => r.batchId === batchOf.withhold)!.index)
    const deadline = (await read<{ deadline: bigint }>('getLeafRequest', [batchOf.withhold, withholdIndex])).deadline
    await advanceTo(deadline + 1n)
    await checker.tick()
    const states = new Map(checker.leafRequests().map(r => [r.batchId, r]))
    assert.equal(states.get(batchOf.withhold)?.state, 'proven')
    assert.equal(states.get(batchOf.honest)?.state, 'answered')
    assert.equal(checker.checked().find(c => c.batchId === batchOf.withhold)?.proof, 'proveUnanswered')
    const voided = (await chain.publicClient.getContractEvents({ address: chain.addresses.Settlement, abi: settlementAbi, eventName: 'BatchVoided', fromBlock: 0n }))
      .map(e => e.args as { batchId: Hex, fault: number, challenger: Address, slashed: bigint }).filter(v => v.batchId === batchOf.withhold)
    assert.equal(voided.length, 1)
    assert.equal(voided[0].fault, 7, 'FAULT_WITHHELD_LEAF')
    assert.equal(voided[0].challenger, gw2.signer.address)
    assert.ok(await stakeOf(parts.withhold.w.signer.address) < stakes.get(parts.withhold.w.signer.address)!, 'the withholder is slashed')
    const shareBps = BigInt(await read<number>('challengerShareBps'))
    assert.equal(await read<bigint>('owed', [gw2.signer.address]) - owedBefore, bond + (voided[0].slashed + bond) * shareBps / 10_000n,
      'the gateway gets its request bond back and the challenger share of the slash and the batch bond')
    assert.equal((await checker.status() as any).leafRequests.proven, 1)

    // the honest batch finalizes once its extended challenge window is over: fees, bond and the request's bond
    const hb = await committedBatch(chain, batchOf.honest)
    const end = hb.extendedUntil > hb.committedAt + clock.challengeWindow ? hb.extendedUntil : hb.committedAt + clock.challengeWindow
    await advanceTo(end + 1n)
    await honest.s.tick()
    assert.equal(honest.s.batches()[0].state, 'finalized')
    assert.equal(await earned(chain, parts.honest.w.signer.address), parts.honest.jobs + bond + bond, 'the honest worker is paid its fees, its bond and the answered request\'s bond')
    assert.equal(await read<bigint>('escrowOf', [pid]), escrowBefore - parts.honest.jobs, 'the escrow pays the honest batch only')
    await chain.assertNobodySlashed()
  })
})
