/**
 * `verify: { quorum: 3 }` end to end (issue 11): a real Hardhat chain with real Settlement and
 * staking, a real libp2p mesh on 127.0.0.1 (bootstrap, gateway, three workers in this process),
 * the workers' real receipt logs and settlers, and the gateway's real ticket log and batch
 * checker. The dev executor runs the function (settlement logic, not the sandbox, is under test).
 *
 * Attacks performed:
 * - a lying worker (composed with an executor that alters every output; no production switch)
 *   under quorum 3: it is outvoted, the client gets the honest answer, and once its batch is
 *   committed the gateway proves the disagreement: the batch is voided, the builder's escrow gets
 *   the liar's fees back, the liar is slashed. Without the quorum dispatch the client would have
 *   got the lie one time in three; without the checker's proof the liar would be paid.
 * - a gateway that tries to frame an honest worker: it holds one real staked receipt with another
 *   output (the liar's) and can sign tickets to keys of its own; proveDisagreement against the
 *   honest worker's leaf reverts without `disagreementQuorum` receipts signed by staked workers
 *   (the check the contract relies on: receipts from unstaked keys do not count).
 * No honest worker is slashed: asserted at the end.
 */
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { keccak256, parseEther, toHex, type Address, type Hex } from 'viem'
import { generatePrivateKey } from 'viem/accounts'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { Registry } from 'prom-client'
import { settlementAbi, workerStakingAbi } from '#contracts'
import { rawCid, receiptDigest, ticketDigest, type Receipt } from '#protocol'
import { devExecutor, type Executor } from '#sandbox'
import { createBootstrap } from '#bootstrap'
import {
  addProject, batchChecker, chainDomain, createGateway, createWorker, fastSigner, functionTable, leafFromJson, loadContracts, receiptLog,
  settlementClock, settler, silentLogger, ticketLog, type BatchChecker, type ReceiptLog, type SettlementClock, type Settler, type TicketLog
} from '#node'
import { batchHeader, fromLeaves } from '../../contracts/abi/leaf.ts'
import { revertName } from '../../node/chain/client.ts'
import { waitFor } from '../helpers/network.ts'
import { startTestChain, type TestChain } from './helpers.ts'
import { committedBatch, earned, fundProject, party, stakeWorker, type Party } from './settlement-helpers.ts'

const GWEI = 1_000_000_000n
const PRICE = 1_000n * GWEI
const FAULT_DISAGREEMENT = 6

/** The dev executor, except that every response body is altered: a worker that lies about outputs. */
function lyingExecutor (inner: Executor): Executor {
  return {
    kind: inner.kind,
    start: async (o) => { await inner.start(o) },
    stop: async (o) => { await inner.stop(o) },
    prewarm: async (b, o, a) => { await inner.prewarm(b, o, a) },
    warm: () => inner.warm(),
    async execute (job, options) {
      const r = await inner.execute(job, options)
      if (r.response === undefined) return r
      const body = JSON.parse(new TextDecoder().decode(r.response.body)) as { n: number, square: number }
      return { ...r, response: { ...r.response, body: new TextEncoder().encode(JSON.stringify({ ...body, square: body.square + 1 })) } }
    }
  }
}

interface ReceiptJson extends Omit<Receipt, 'fee' | 'epoch' | 'deadline'> { fee: string, epoch: string, deadline: string, signature: Hex }
const decodeReceipt = (h: string): ReceiptJson => JSON.parse(Buffer.from(h.trim(), 'base64url').toString()) as ReceiptJson

describe('chain: verify quorum outvotes a lying worker and proves it on chain', function () {
  this.timeout(600_000)
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-quorum-'))
  const root = resolve(import.meta.dirname, '..', '..')
  const logger = silentLogger()
  const blobs = join(dir, 'blobs')
  const publish = async (bytes: Uint8Array): Promise<string> => { const cid = rawCid(bytes); writeFileSync(join(blobs, cid), bytes); return cid }
  const fetchBlob = async (cid: string): Promise<Uint8Array> => readFileSync(join(blobs, cid))
  let chain: TestChain
  let clock: SettlementClock
  let pid: Hex
  let gw: Party
  let tickets: TicketLog
  let checker: BatchChecker
  let gateway: Awaited<ReturnType<typeof createGateway>>
  let boot: Awaited<ReturnType<typeof createBootstrap>>
  const stops: Array<() => Promise<void> | void> = []
  interface Member { name: string, w: Party, receipts: ReceiptLog, s: Settler, honest: boolean, stake: bigint }
  const members: Member[] = []

  const read = async <T>(functionName: string, args: unknown[] = []): Promise<T> =>
    await chain.publicClient.readContract({ address: chain.addresses.Settlement, abi: settlementAbi, functionName: functionName as any, args: args as any }) as T
  const stakeOf = async (a: Address): Promise<bigint> =>
    (await chain.publicClient.readContract({ address: chain.addresses.WorkerStaking, abi: workerStakingAbi, functionName: 'stakeOf', args: [a] }) as { amount: bigint }).amount
  const chainNow = async (): Promise<bigint> => (await chain.publicClient.getBlock({ blockTag: 'latest' })).timestamp
  async function advanceTo (t: bigint): Promise<void> {
    // the next block at exactly t (as test/chain/helpers.ts does): evm_increaseTime overshoots by
    // every second the test spent since the head was mined
    const now = await chainNow()
    await chain.rpc('evm_setNextBlockTimestamp', [Number(t > now ? t : now + 1n)])
    await chain.rpc('evm_mine')
  }

  before(async () => {
    mkdirSync(blobs, { recursive: true })
    chain = await startTestChain()
    // declared deterministic on chain too: proveDisagreement accepts only such functions
    await chain.registerProject('quorum', ['square'], ['square'])
    clock = await settlementClock({ publicClient: chain.publicClient, contracts: { addresses: chain.addresses } as any })
    gw = await party(chain)
    // a staked gateway: the contract counts only receipts answering tickets a staked gateway issued
    await gw.client.send({ address: chain.addresses.WorkerStaking, abi: workerStakingAbi, functionName: 'stake', args: [2], value: parseEther('1') })
    pid = await fundProject(chain, gw.signer.address, parseEther('5'), parseEther('1'), 'quorum')

    const contracts = loadContracts(chain.contractsFile)
    const domain = chainDomain(contracts)
    boot = await createBootstrap({}, { privateKey: await generateKeyPair('Ed25519'), logger, registry: new Registry() })
    await boot.start()
    stops.push(async () => { await boot.stop() })
    const functions = functionTable()
    const [entry] = await addProject(functions, chain.deployer, join(root, 'test/fixtures/quorum'))
    assert.equal(entry.quorum, 3, 'peerhost.json verify.quorum reaches the gateway\'s function table')
    tickets = ticketLog({ dataDir: join(dir, 'gw') })
    checker = batchChecker({ dataDir: join(dir, 'gw'), intervalMs: 0 })({ client: gw.client, tickets, fetch: fetchBlob, logger })
    stops.push(() => { checker.close(); tickets.close() })
    gateway = await createGateway({ port: 0, bootstrap: boot.addrs(), domain, epochOf: clock.epochAtMs }, {
      privateKey: await generateKeyPair('Ed25519'), signer: gw.signer, functions, logger, registry: new Registry(), tickets, settlementStatus: () => checker.status()
    })
    await gateway.start()
    stops.push(async () => { await gateway.stop() })

    for (const name of ['honest-a', 'honest-b', 'liar']) {
      const w = await party(chain)
      await stakeWorker(w)
      const dataDir = join(dir, name)
      const receipts = receiptLog({ dataDir, pruneIntervalMs: 0 })({ logger })
      const s = settler({ dataDir, intervalMs: 0, graceSeconds: 0n })({ client: w.client, receipts, publish, logger })
      const inner = devExecutor({})({})
      const executor = name === 'liar' ? lyingExecutor(inner) : inner
      const worker = await createWorker({ dataDir, bootstrap: boot.addrs(), price: PRICE, domain }, {
        privateKey: await generateKeyPair('Ed25519'), signer: w.signer, executor, logger, registry: new Registry(), receipts
      })
      await worker.start()
      stops.unshift(async () => { await worker.stop(); s.close(); receipts.close() })
      members.push({ name, w, receipts, s, honest: name !== 'liar', stake: await stakeOf(w.signer.address) })
    }
    await waitFor('the three workers in the gateway\'s view', () => gateway.view.size() === 3, 30_000)
  })

  after(async () => {
    for (const stop of stops) await stop()
    await chain?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it('the liar is outvoted, the client gets the honest answer, the disagreement is proven, its batch voided, the builder refunded and the liar slashed', async function () {
    const liar = members.find(m => m.name === 'liar')!
    const honest = members.filter(m => m.honest)
    const REQUESTS = 4
    const epochs = new Set<bigint>()
    for (let i = 1; i <= REQUESTS; i++) {
      const res = await fetch(`${gateway.url}/${chain.deployer}/quorum/square?n=${i + 6}`)
      const body = await res.json() as { n: number, square: number }
      // never the minority's output: the liar answers square + 1 every time
      assert.equal(res.status, 200, JSON.stringify(body))
      assert.deepEqual(body, { n: i + 6, square: (i + 6) ** 2 })
      assert.equal(res.headers.get('x-peerhost-quorum'), '2/3', 'two equal outputs of three decided it')
      const agreeing = (res.headers.get('x-peerhost-receipts') ?? '').split(',').map(decodeReceipt)
      assert.equal(agreeing.length, 2)
      assert.deepEqual(agreeing.map(r => r.worker.toLowerCase()).sort(), honest.map(m => m.w.signer.address.toLowerCase()).sort(), 'the agreeing receipts are the honest workers\'')
      assert.equal(new Set(agreeing.map(r => r.jobId)).size, 2, 'each worker ran its own job (its own ticket)')
      assert.equal(new Set(agreeing.map(r => r.jobHash)).size, 1, '...of one and the same job')
      assert.equal(agreeing[0].outputHash, agreeing[1].outputHash)
      const answered = decodeReceipt(res.headers.get('x-peerhost-receipt')!)
      assert.equal(answered.outputHash, agreeing[0].outputHash)
      for (const r of agreeing) { assert.equal(r.fee, PRICE.toString()); epochs.add(BigInt(r.epoch)) }
    }
    // the liar's answers (some arrive after the client's) are all on record as outvoted
    await waitFor('evidence against the liar for every request', () => tickets.disagreements() === REQUESTS, 20_000)

    // each worker ran every request once, paid per worker: the builder pays 3 tickets per request
    const receiptsOf = (m: Member): number => m.receipts.batchKeys(0n, 1n << 62n).flatMap(k => m.receipts.receiptsOf(k)).length
    for (const m of members) assert.equal(receiptsOf(m), REQUESTS, `${m.name} signed one receipt per request`)

    // the epochs end; every worker commits its batches (the liar's claims its lies too)
    const escrowBefore = await read<bigint>('escrowOf', [pid])
    const last = [...epochs].reduce((a, b) => a > b ? a : b)
    await advanceTo(clock.epochEnd(last) + 1n)
    for (const m of members) assert.ok((await m.s.tick()).committed >= 1, `${m.name} committed`)
    const fees = REQUESTS * 3
    assert.equal(await read<bigint>('escrowOf', [pid]), escrowBefore - BigInt(fees) * PRICE, 'the escrow paid into three workers\' batches')
    const liarBatches = liar.s.batches().map(b => b.batchId)

    // a gateway that tries to frame an honest worker, with the one staked receipt of another
    // output it holds (the liar's) plus receipts of keys it controls for tickets it signed itself
    const victim = honest[0]
    const victimBatch = victim.s.batches()[0]
    assert.ok(victimBatch.bond !== undefined, 'the settler recorded the bond it committed with')
    const victimHeader = batchHeader({ ...victimBatch, worker: victim.w.signer.address, bond: victimBatch.bond })
    const doc = JSON.parse(new TextDecoder().decode(readFileSync(join(blobs, victimBatch.dataCid)))) as { leaves: Array<Record<string, string | number>> }
    const leaves = doc.leaves.map(leafFromJson)
    const tree = fromLeaves(leaves)
    const leaf = leaves[0]
    // the liar's receipt for the victim's job (same input), as the gateway's own log holds it
    const liarJob = liar.receipts.batchKeys(0n, 1n << 62n).flatMap(k => liar.receipts.receiptsOf(k)).find(r => r.inputHash.toLowerCase() === leaf.inputHash.toLowerCase())
    assert.ok(liarJob !== undefined)
    const lie = tickets.disagreement(liarJob.jobId as Hex, liarJob.attempt, liar.w.signer.address)
    assert.ok(lie !== undefined, 'the gateway holds the liar\'s receipt for the victim\'s job')
    const sybilKey = fastSigner(generatePrivateKey())
    const sybilTicket = { ...lie.minority.receipt, worker: sybilKey.address, jobId: keccak256(toHex('a job the gateway made up')) }
    const { outputHash: _o, ...ticketFields } = sybilTicket
    const sybil = {
      receipt: sybilTicket,
      signature: sybilKey.signDigest(receiptDigest(gw.client.domain, sybilTicket)),
      ticketSignature: gw.signer.signDigest(ticketDigest(gw.client.domain, ticketFields))
    }
    const frame = async (held: Array<typeof sybil>): Promise<string | undefined> => {
      const sorted = [...held].sort((a, b) => BigInt(a.receipt.worker) < BigInt(b.receipt.worker) ? -1 : 1)
      try {
        await gw.client.send({ address: chain.addresses.Settlement, abi: settlementAbi, functionName: 'proveDisagreement', args: [victimHeader, leaf, tree.proof(0), sorted.map(h => h.receipt), sorted.map(h => h.signature), sorted.map(h => h.ticketSignature)] as any })
        return undefined
      } catch (err) {
        return revertName(err)
      }
    }
    assert.notEqual(lie.minority.receipt.outputHash, leaf.outputHash)
    assert.equal(await frame([lie.minority]), 'SettlementQuorumTooSmall', 'one staked receipt of another output is not a quorum')
    // a receipt of a key the gateway controls, for a ticket it signed itself, does not count: its signer has no stake
    assert.ok(await stakeOf(liar.w.signer.address) === liar.stake, 'the liar is still staked here: only the sybil can fail the check')
    assert.equal(await frame([lie.minority, sybil]), 'SettlementSignerNotStaked')
    assert.equal((await committedBatch(chain, victimBatch.batchId)).status, 1, 'the honest batch stands')

    // the gateway's checker proves the disagreement against the liar's batch(es) only
    const verdicts = await checker.tick()
    for (const v of verdicts) {
      if (liarBatches.includes(v.batchId)) {
        assert.equal(v.verdict, 'faulty', v.reason)
        assert.equal(v.proof, 'proveDisagreement')
        assert.match(v.reason ?? '', /disagrees with the 2 workers of the quorum majority/)
      } else {
        assert.equal(v.verdict, 'ok', `an honest batch: ${v.reason}`)
      }
    }
    assert.equal(verdicts.length, members.reduce((n, m) => n + m.s.batches().length, 0), 'every batch naming the gateway is judged')
    const voided = await chain.publicClient.getContractEvents({ address: chain.addresses.Settlement, abi: settlementAbi, eventName: 'BatchVoided', fromBlock: 0n })
    assert.deepEqual(voided.map(e => (e.args as any).batchId).sort(), [...liarBatches].sort(), 'only the liar\'s batches are voided')
    for (const e of voided) {
      assert.equal((e.args as any).fault, FAULT_DISAGREEMENT)
      assert.equal((e.args as any).challenger, gw.signer.address)
    }
    // the builder gets the liar's fees back; the liar is slashed
    const liarFees = BigInt(REQUESTS) * PRICE
    assert.equal(await read<bigint>('escrowOf', [pid]), escrowBefore - BigInt(fees) * PRICE + liarFees, 'the builder is refunded the liar\'s fees')
    assert.ok(await stakeOf(liar.w.signer.address) < liar.stake, 'the liar is slashed')
    // the verdict is visible in the gateway's status
    const status = await (await fetch(`${gateway.url}/_peerhost/status`)).json() as { settlement: { faulty: number, outvoted: number, recent: Array<{ proof: string | null, tx: string | null }> } }
    assert.equal(status.settlement.faulty, liarBatches.length)
    assert.equal(status.settlement.outvoted, REQUESTS)
    assert.ok(status.settlement.recent.some(r => r.proof === 'proveDisagreement' && /^0x[0-9a-f]{64}$/.test(r.tx ?? '')))

    // the challenge window passes: the honest batches finalize and are paid, the liar's stay voided
    await advanceTo((await chainNow()) + clock.challengeWindow + 1n)
    for (const m of members) await m.s.tick()
    for (const m of honest) {
      assert.ok(m.s.batches().every(b => b.state === 'finalized'), `${m.name}: finalized`)
      const bond = await read<bigint>('minBatchBond')
      assert.equal(await earned(chain, m.w.signer.address), BigInt(REQUESTS) * PRICE + BigInt(m.s.batches().length) * bond, `${m.name} is paid its fees and bonds`)
    }
    assert.ok(liar.s.batches().every(b => b.state === 'voided'))
    assert.equal(await read<bigint>('escrowOf', [pid]), escrowBefore - BigInt(fees) * PRICE + liarFees, 'the escrow paid the honest workers only')
    // no honest worker is slashed
    for (const m of honest) assert.equal(await stakeOf(m.w.signer.address), m.stake, `honest worker ${m.name} was slashed`)
  })
})
