/**
 * Metered WebSocket sessions settle on chain (issues 11 and 12), on a real Hardhat chain with real
 * Settlement: a bootstrap, a gateway with its ticket log and batch checker, and two workers with a
 * session price (dev executor), each with its own receipt log and settler; real `ws` clients.
 *
 * Attack performed: a worker composed with a batch builder (the settler's `batch` part; no
 * production switch) that claims its session's leaf at a fee above the latest cumulative ticket the
 * gateway signed, keeping that ticket's signature and sound prefix sums, so the chain takes the
 * batch. The gateway's checker must prove it (`proveInvalidLeaf`): the batch is voided, the liar
 * slashed, the escrow refunded its batch; without the check the project would pay the claimed fee.
 * The honest worker's batch (its session at its final cumulative fee, and plain requests) is
 * checked `ok`, finalizes and is paid to the wei; nobody honest is slashed. The gateway's status
 * and `peerhost escrow show` show the epoch's session fees apart from its request fees.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Hex } from 'viem'
import { settlementAbi } from '#contracts'
import {
  chainDomain, loadContracts, silentLogger
} from '#node'
import { buildSettlementBatch, type SettlementItem } from '../../contracts/abi/leaf.ts'
import { cli } from '../helpers/cli.ts'
import { waitFor } from '../helpers/network.ts'
import { openWebSocket } from '../helpers/ws.ts'
import { startSettlementChain, type SettlementChain } from './helpers.ts'
import { sessionNetwork } from './session-network.ts'
import { committedBatch, earned, fundProject, party } from './settlement-helpers.ts'

const GWEI = 1_000_000_000n
const PRICE = 1_000n * GWEI
const PER_MESSAGE = 3n * GWEI
/** what the lying worker adds to its session's leaf */
const INFLATE = 50_000n * GWEI
/** messages each session's client sends (each echoed: twice as many messages either way) */
const MESSAGES = 130

describe('chain: metered session fees settle; a worker claiming more than its latest cumulative ticket is proven faulty', function () {
  this.timeout(600_000)
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-session-settle-'))
  const logger = silentLogger()
  let chain: SettlementChain
  const closers: Array<() => Promise<void> | void> = []

  before(async () => { chain = await startSettlementChain() })
  after(async () => {
    for (const c of closers.reverse()) await c()
    await chain?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('the liar\'s batch is voided, the liar slashed and the escrow refunded; the honest worker is paid its session\'s final cumulative fee; status and escrow show list session fees apart', async function () {
    const { clock } = chain
    const contracts = loadContracts(chain.contractsFile)
    const domain = chainDomain(contracts)
    await chain.registerProject('ws', ['echo'])
    const gw = await party(chain)
    const pid = await fundProject(chain, gw.signer.address, 10n ** 18n, 10n ** 17n, 'ws')
    const escrowBefore = await chain.read<bigint>('escrowOf', [pid])
    // chain time is the head the test sets (see settlement.spec.ts): one timeout ahead of the wall
    // clock, so the epoch ends when the test ends it, however long the sessions take
    await chain.advanceTo(clock.epochEnd(clock.epochAt(BigInt(Math.ceil(Date.now() / 1000)) + BigInt(Math.ceil(this.timeout() / 1000)))) + 1n)
    let head = await chain.chainNow()
    const e = clock.epochAt(head)

    // two workers at the same prices; which one lies is decided by its settler's `batch` part
    let liarSession: Hex | undefined
    const lie = (items: SettlementItem[]) => buildSettlementBatch(items.map(i => i.ticket.jobId === liarSession ? { ...i, ticket: { ...i.ticket, fee: i.ticket.fee + INFLATE } } : i))
    const { gateway, tickets, checker, liar, honest, wsUrl } = await sessionNetwork(chain, { dir, gw, domain, head: () => head, price: PRICE, perMessage: PER_MESSAGE, lie, closers, logger })
    const parts = [liar, honest]

    // two sessions held open at once (one on each worker: each has room for one), then
    // MESSAGES echoes in each: cumulative tickets every 100 messages and a final one at the close
    const sessions: Array<{ ws: Awaited<ReturnType<typeof openWebSocket>>['ws'], jobId: Hex }> = []
    for (let k = 0; k < 2; k++) {
      const { ws, headers } = await waitFor('a session', async () => await openWebSocket(wsUrl), 30_000, 250)
      sessions.push({ ws, jobId: String(headers['x-peerhost-job']) as Hex })
    }
    for (const { ws } of sessions) {
      let echoes = 0
      ws.on('message', () => { echoes++ })
      for (let i = 0; i < MESSAGES; i++) {
        ws.send(`m${i}`)
        if (i % 10 === 9) await waitFor(`echo ${i + 1}`, () => echoes >= i + 1 || undefined, 20_000, 5)
      }
    }
    const finals: Record<string, bigint> = {}
    for (const { ws, jobId } of sessions) {
      const closed = new Promise<number>(resolve => ws.once('close', code => resolve(code)))
      ws.close(1000)
      assert.equal(await closed, 1000)
      const r = await waitFor('the session receipt at the gateway', async () => {
        const res = await fetch(`${gateway.url}/_peerhost/receipts/${jobId}`)
        return res.status === 200 ? await res.json() as any : undefined
      }, 20_000)
      assert.equal(r.verified, true, r.problem)
      finals[jobId] = BigInt(r.receipt.fee)
      assert.equal(finals[jobId], PRICE + PER_MESSAGE * BigInt(2 * MESSAGES), 'the final cumulative ticket pays the opening price and every message either way')
      assert.equal(tickets.get(jobId, r.receipt.attempt, r.receipt.worker)?.fee, finals[jobId], 'the gateway logged the final cumulative fee')
    }
    const sessionOf = (p: typeof liar): Hex => {
      const mine = sessions.filter(({ jobId }) => p.receipts.receiptsOf({ projectId: pid, gateway: gw.signer.address, epoch: e }).some(r => r.jobId === jobId && r.state === 'signed' && BigInt(r.fee) === finals[jobId]))
      assert.equal(mine.length, 1, 'each worker served one session and settles it at its final cumulative fee')
      return mine[0].jobId
    }
    liarSession = sessionOf(liar)
    const honestSession = sessionOf(honest)

    // plain requests too, so the status tells request fees from session fees
    const REQUESTS = 4
    for (let i = 0; i < REQUESTS; i++) {
      const res = await fetch(`${gateway.url}/${chain.deployer}/ws/echo`)
      assert.equal(res.status, 200)
      assert.equal(await res.text(), 'plain')
    }
    const signed = (p: typeof liar) => p.receipts.receiptsOf({ projectId: pid, gateway: gw.signer.address, epoch: e }).filter(r => r.state === 'signed')
    const requestFees = [liar, honest].flatMap(signed).filter(r => r.jobId !== liarSession && r.jobId !== honestSession)
    assert.equal(requestFees.length, REQUESTS)
    assert.ok(requestFees.every(r => BigInt(r.fee) === PRICE))

    // the gateway's status: this epoch's fees, sessions apart, each at its final cumulative fee
    const feesOf = (f: any[]) => f.filter(x => x.projectId === pid.toLowerCase() && x.epoch === e.toString())
    const status = await (await fetch(`${gateway.url}/_peerhost/status`)).json() as any
    const expected = {
      projectId: pid.toLowerCase(),
      epoch: e.toString(),
      requests: { count: REQUESTS, fees: (PRICE * BigInt(REQUESTS)).toString() },
      sessions: { count: 2, fees: (finals[liarSession] + finals[honestSession]).toString() }
    }
    assert.deepEqual(feesOf(status.settlement.fees), [expected])
    // and the builder's view: `peerhost escrow show --gateway <url>`
    const shown = await cli(['escrow', 'show', 'ws', '--wallet', chain.deployer, '--gateway', gateway.url, '--contracts', chain.contractsFile, '--json'])
    assert.equal(shown.code, 0, shown.stderr)
    const line = shown.lines.find(l => l.event === 'escrow')
    assert.deepEqual(line.fees, [{ epoch: expected.epoch, requests: expected.requests, sessions: expected.sessions }])
    const human = await cli(['escrow', 'show', 'ws', '--wallet', chain.deployer, '--gateway', gateway.url, '--contracts', chain.contractsFile])
    assert.match(human.stdout, new RegExp(`epoch ${e}: .*${REQUESTS} requests .*2 sessions`))

    // the epoch ends; each worker commits one batch (the chain clock pinned to the head first)
    await chain.advanceTo(clock.epochEnd(e) + 1n)
    head = await chain.chainNow()
    for (const p of parts) {
      await chain.advanceTo((await chain.chainNow()) + 1n)
      assert.equal((await p.s.tick()).committed, 1)
    }
    const batchOf = (p: typeof liar): Hex => p.s.batches()[0].batchId
    const total = (p: typeof liar): bigint => signed(p).reduce((t, r) => t + BigInt(r.fee), 0n)
    // the attack lands: the chain accepted the claim above the last ticket
    assert.equal((await committedBatch(chain, batchOf(liar))).total, total(liar) + INFLATE)
    assert.equal((await committedBatch(chain, batchOf(honest))).total, total(honest))

    // the gateway proves it: the leaf's fee is above the latest cumulative ticket it signed
    const verdicts = new Map((await checker.tick()).map(v => [v.batchId, v]))
    assert.equal(verdicts.get(batchOf(honest))?.verdict, 'ok', verdicts.get(batchOf(honest))?.reason)
    const v = verdicts.get(batchOf(liar))
    assert.equal(v?.verdict, 'faulty')
    assert.equal(v?.proof, 'proveInvalidLeaf')
    assert.match(v?.reason ?? '', new RegExp(`fee ${finals[liarSession] + INFLATE}`))
    const voided = await chain.publicClient.getContractEvents({ address: chain.addresses.Settlement, abi: settlementAbi, eventName: 'BatchVoided', fromBlock: 0n })
    const ev = voided.map(x => x.args as { batchId: Hex, fault: number, challenger: string, slashed: bigint }).find(x => x.batchId === batchOf(liar))
    assert.equal(ev?.fault, 1, 'FAULT_INVALID_TICKET: the leaf\'s fee is not one the gateway signed')
    assert.equal(ev?.challenger, gw.signer.address)
    assert.ok(ev.slashed > 0n)
    assert.equal((await committedBatch(chain, batchOf(liar))).status, 3, 'voided')
    assert.equal(voided.some(x => (x.args as any).batchId === batchOf(honest)), false)
    const afterStatus = await (await fetch(`${gateway.url}/_peerhost/status`)).json() as any
    assert.deepEqual([afterStatus.settlement.ok, afterStatus.settlement.faulty], [1, 1])

    // after the challenge window: the honest batch finalizes and is paid; the escrow paid it alone
    await chain.advanceTo((await chain.chainNow()) + clock.challengeWindow + 1n)
    for (const p of parts) await p.s.tick()
    assert.equal(honest.s.batches()[0].state, 'finalized')
    assert.equal(liar.s.batches()[0].state, 'voided')
    const bond = await chain.read<bigint>('minBatchBond')
    assert.equal(await earned(chain, honest.w.signer.address), total(honest) + bond, 'the honest worker is paid its session\'s final cumulative fee, its requests\' fees and its bond')
    assert.equal(await chain.read<bigint>('escrowOf', [pid]), escrowBefore - total(honest), 'the escrow pays the honest batch only: the liar\'s batch is refunded')
    await chain.assertNobodySlashed()
  })
})
