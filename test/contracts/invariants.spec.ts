/**
 * Invariant fuzz of the settlement trust model (issue 9). Random sequences on one real chain where
 * honest parties do real work and attackers send anything:
 *
 * - the honest gateway (`gateway`, staked as a gateway) issues real tickets for jobs of a
 *   deterministic function (`hello`) and a non-deterministic one (`echo`) to the honest workers w1
 *   and w2, and sometimes to one attacker worker as well (a redundant copy of the job);
 * - honest workers sign one receipt per (gateway, jobId, attempt) and keep that record until the
 *   proof window of the ticket's epoch has closed, then prune it. They do NOT check the gateway's
 *   stake here, so the contracts are the only defence against tickets from other keys. Deterministic
 *   jobs give every honest worker the same output; non-deterministic ones a random output per run.
 *   After each epoch they commit honest batches built from their real tickets (and commit again if
 *   a fake batch had taken the gateway's allowance and was voided);
 * - attackers (staked workers w4 and w5; unstaked keys `stranger` and `challenger`) forge tickets,
 *   issue tickets from unstaked keys, replay tickets after the honest record was pruned, replay and
 *   re-sign receipts, prove equivocation and disagreement against honest batches (with every receipt
 *   in the public pool, their own receipts for real tickets with any output, and forged tickets),
 *   commit fake batches that take the whole allowance, and stake/unbond.
 *
 * After every step:
 * 1. money in = paid + refunded + slashed + held (in: every value sent to Settlement and
 *    WorkerStaking plus what setup put there; paid/refunded/slashed: what the contracts credited or
 *    sent, classified by the call that credited it; held: balances minus what is owed);
 * 2. each contract is solvent to the wei (WorkerStaking: Σ stakes; Settlement: escrows + held
 *    batches + owed);
 * 3. no honest worker is slashed (w1, w2 keep their whole stake; no Slashed event names them).
 *
 * The same fuzz against `SettlementUnchecked` (contracts/src/test: no staked-gateway and no
 * determinism check) must report a slashed honest worker, which shows invariant 3 can fail.
 *
 * Runs/depth: PEERHOST_FUZZ_RUNS (default 30), PEERHOST_FUZZ_DEPTH (default 25); seed:
 * PEERHOST_FUZZ_SEED (printed). `npm run fuzz` runs the deep campaign (10,000 × 100).
 * The ExecutionCoordinator has its own invariants (the chain-path engineer's file).
 */
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { BaseError, ContractFunctionRevertedError, keccak256, parseEventLogs, toHex, type Hex, type TransactionReceipt } from 'viem'
import { functionId as fnId, signReceipt, signTicket, type Receipt, type Ticket } from '../../protocol/eip712.ts'
import { batchHeader, buildSettlementBatch, fromLeaves, settlementAbi, workerStakingAbi, type SettlementBatch, type SettlementBatchHeader, type SettlementItem } from '../../contracts/abi/index.ts'
import { readArtifact } from '../../contracts/deploy.ts'
import { ETHER, PARAMS, endEpoch, increaseTime, newJobId, now, revertTo, send, setup, snapshot, type ActorName, type World, STAKE, batchState } from './fixture.ts'

const RUNS = Number(process.env.PEERHOST_FUZZ_RUNS ?? 30)
const DEPTH = Number(process.env.PEERHOST_FUZZ_DEPTH ?? 25)
const SEED = Number(process.env.PEERHOST_FUZZ_SEED ?? Date.now() % 2 ** 31)
const HONEST = ['w1', 'w2'] as const
const ATTACKERS = ['w4', 'w5'] as const
const KEYS = ['stranger', 'challenger', 'w4'] as const
const PAYEES = ['deployer', 'owner', 'gateway', 'gateway2', 'w1', 'w2', 'w3', 'w4', 'w5', 'challenger', 'stranger'] as const
const PROOFS = new Set(['proveInvalidLeaf', 'proveBrokenSum', 'disputeDuplicateJob', 'proveEquivocation', 'proveDisagreement', 'proveReceiptEquivocation', 'proveUnanswered'])

type Action =
  | { t: 'job', det: boolean, attacker: number, lie: boolean }
  | { t: 'epochEnd', fake: boolean }
  | { t: 'challengeFake', b: number }
  | { t: 'foreignTicket', w: number, issuer: number, twice: boolean }
  | { t: 'replayAfterPrune', k: number }
  | { t: 'disagree', b: number, k: number }
  | { t: 'batchEquivocate', b: number, k: number }
  | { t: 'receiptEquivocate', k: number, j: number }
  | { t: 'finalize', b: number }
  | { t: 'time', seconds: number }
  | { t: 'withdraw', who: number }
  | { t: 'attackerStake', w: number, unbond: boolean }

const action: fc.Arbitrary<Action> = fc.oneof(
  { arbitrary: fc.record({ t: fc.constant('job' as const), det: fc.boolean(), attacker: fc.nat(2), lie: fc.boolean() }), weight: 5 },
  { arbitrary: fc.record({ t: fc.constant('epochEnd' as const), fake: fc.boolean() }), weight: 3 },
  { arbitrary: fc.record({ t: fc.constant('challengeFake' as const), b: fc.nat(20) }), weight: 2 },
  fc.record({ t: fc.constant('foreignTicket' as const), w: fc.nat(1), issuer: fc.nat(KEYS.length - 1), twice: fc.boolean() }),
  fc.record({ t: fc.constant('replayAfterPrune' as const), k: fc.nat(50) }),
  { arbitrary: fc.record({ t: fc.constant('disagree' as const), b: fc.nat(20), k: fc.nat(50) }), weight: 4 },
  { arbitrary: fc.record({ t: fc.constant('batchEquivocate' as const), b: fc.nat(20), k: fc.nat(50) }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant('receiptEquivocate' as const), k: fc.nat(50), j: fc.nat(50) }), weight: 2 },
  fc.record({ t: fc.constant('finalize' as const), b: fc.nat(20) }),
  fc.record({ t: fc.constant('time' as const), seconds: fc.integer({ min: 1, max: 1_200 }) }),
  fc.record({ t: fc.constant('withdraw' as const), who: fc.nat(PAYEES.length - 1) }),
  fc.record({ t: fc.constant('attackerStake' as const), w: fc.nat(1), unbond: fc.boolean() })
)

/** A signed receipt with the ticket it answers, as published on the mesh (attackers see them all). */
interface Pair { ticket: Ticket, ticketSignature: Hex, receipt: Receipt, receiptSignature: Hex, det: boolean }
interface BatchModel { id: Hex, header: SettlementBatchHeader, worker: ActorName, epoch: bigint, batch: SettlementBatch, fake: boolean, pairs: Pair[] }

export interface CampaignResult { honestSlashed: string[], steps: number, events: Record<string, number> }

/** One fuzz property over `world`; throws on a broken conservation/solvency invariant, reports honest slashes. */
function campaign (world: World, base: { id: string }, result: CampaignResult) {
  const echo = fnId(world.actors.owner.address, 'demo', 'echo')
  return fc.asyncProperty(fc.array(action, { minLength: 3, maxLength: DEPTH }), async (actions) => {
    await revertTo(world, base.id)
    base.id = await snapshot(world)
    let initial = 0n
    for (const c of ['Settlement', 'WorkerStaking'] as const) initial += await world.publicClient.getBalance({ address: world.addresses[c] })
    const ledger = { in: initial, paid: 0n, refunded: 0n, slashed: 0n, stakeOut: 0n }
    const slashedHonest: string[] = []
    const pool: Pair[] = []
    const batches: BatchModel[] = []
    const pending = new Map<string, Pair[]>() // `${worker}/${epoch}` → the worker's real (ticket, receipt) pairs
    const uncommitted: Array<{ worker: ActorName, epoch: bigint }> = []
    const record = new Map<string, { pair: Pair, until: bigint }>() // honest one-receipt-per-ticket record

    const observe = (r: TransactionReceipt, value: bigint, fn: string): void => {
      ledger.in += value
      for (const ev of parseEventLogs({ abi: [...settlementAbi, ...workerStakingAbi], logs: r.logs })) {
        const args = ev.args as Record<string, any>
        result.events[ev.eventName] = (result.events[ev.eventName] ?? 0) + 1
        if (ev.eventName === 'PaymentCredited') {
          if (PROOFS.has(fn)) ledger.slashed += args.amount
          else if (fn === 'commitBatches') { /* split by BatchFinalized below */ } else ledger.refunded += args.amount
        } else if (ev.eventName === 'BatchFinalized') {
          const b = batches.find(x => x.id === args.batchId)
          ledger.paid += args.paid
          ledger.refunded += (b === undefined ? 0n : PARAMS.minBatchBond)
        } else if (ev.eventName === 'Withdrawn') ledger.stakeOut += args.amount
        else if (ev.eventName === 'Slashed' && HONEST.some(h => world.actors[h].address === args.account)) {
          slashedHonest.push(`${String(args.account)} by ${fn}`)
          result.honestSlashed.push(`${String(args.account)} by ${fn}`)
        }
      }
    }
    const sendObs = async (from: ActorName, contract: Parameters<typeof send>[2], fn: string, args: readonly unknown[], value = 0n): Promise<TransactionReceipt | undefined> => {
      try {
        const r = await send(world, from, contract, fn, args, value)
        observe(r, value, fn)
        result.steps++
        return r
      } catch (err) {
        if (err instanceof BaseError && err.walk(e => e instanceof ContractFunctionRevertedError) != null) return undefined
        throw err
      }
    }
    const proofWindowEnd = async (epoch: bigint): Promise<bigint> => {
      const genesis = await world.read.settlement.read.genesis()
      return genesis + (epoch + 1n) * PARAMS.epochLength + PARAMS.commitWindow + PARAMS.challengeWindow
    }

    /** An honest worker answering a ticket that names it: one receipt per (gateway, jobId, attempt). */
    async function honestAnswer (w: ActorName, ticket: Ticket, ticketSignature: Hex, det: boolean): Promise<Pair> {
      const key = `${w}/${ticket.gateway}/${ticket.jobId}/${ticket.attempt}`.toLowerCase()
      const t = await now(world)
      for (const [k, v] of record) if (v.until <= t) record.delete(k) // pruned once its proof window closed
      const kept = record.get(key)
      if (kept !== undefined) return kept.pair
      const outputHash = det ? keccak256(ticket.jobHash) : keccak256(toHex(`random-${Math.random()}`))
      const receipt: Receipt = { ...ticket, outputHash }
      const pair = { ticket, ticketSignature, receipt, receiptSignature: await signReceipt(world.actors[w].account, world.domain, receipt), det }
      record.set(key, { pair, until: await proofWindowEnd(ticket.epoch) })
      pool.push(pair)
      return pair
    }
    async function issue (issuer: ActorName, worker: ActorName, base: Omit<Ticket, 'worker' | 'gateway'>): Promise<{ ticket: Ticket, sig: Hex }> {
      const ticket: Ticket = { ...base, worker: world.actors[worker].address, gateway: world.actors[issuer].address }
      return { ticket, sig: await signTicket(world.actors[issuer].account, world.domain, ticket) }
    }
    const item = (p: Pair): SettlementItem => ({
      ticket: { jobId: p.ticket.jobId, attempt: p.ticket.attempt, functionId: p.ticket.functionId, jobHash: p.ticket.jobHash, inputHash: p.ticket.inputHash, fee: p.ticket.fee, deadline: p.ticket.deadline },
      ticketSignature: p.ticketSignature,
      outputHash: p.receipt.outputHash
    })
    function headerOf (worker: ActorName, epoch: bigint, batch: SettlementBatch): SettlementBatchHeader {
      return batchHeader({ worker: world.actors[worker].address, projectId: world.projectId, gateway: world.actors.gateway.address, epoch, root: batch.root, count: batch.count, total: batch.total, bond: PARAMS.minBatchBond })
    }
    async function commitHonest (worker: ActorName, epoch: bigint): Promise<boolean> {
      const pairs = pending.get(`${worker}/${epoch}`) ?? []
      if (pairs.length === 0) return true
      const batch = buildSettlementBatch(pairs.map(item))
      const r = await sendObs(worker, 'Settlement', 'commitBatch', [world.projectId, epoch, world.actors.gateway.address, batch.root, batch.count, batch.total, '0x0155'], PARAMS.minBatchBond)
      if (r === undefined) return false
      pending.delete(`${worker}/${epoch}`)
      batches.push({ id: await world.read.settlement.read.batchIdOf([world.actors[worker].address, world.projectId, epoch, world.actors.gateway.address]), header: headerOf(worker, epoch, batch), worker, epoch, batch, fake: false, pairs })
      return true
    }
    const honestBatches = (): BatchModel[] => batches.filter(b => !b.fake)

    for (const a of actions) {
      switch (a.t) {
        case 'job': {
          const epoch = await world.read.settlement.read.currentEpoch()
          const base = { jobId: newJobId(), attempt: 0, functionId: a.det ? world.functionId : echo, jobHash: keccak256(toHex(`job-${Math.random()}`)), inputHash: keccak256(toHex(`in-${Math.random()}`)), fee: 10n ** 15n, epoch, deadline: (await now(world)) + 30n }
          const honest: Pair[] = []
          for (const w of HONEST) {
            const { ticket, sig } = await issue('gateway', w, base)
            const p = await honestAnswer(w, ticket, sig, a.det)
            honest.push(p)
            pending.set(`${w}/${epoch}`, [...(pending.get(`${w}/${epoch}`) ?? []), p])
          }
          // at most one attacker gets a copy of the job (fewer than disagreementQuorum colluders per job)
          if (a.attacker > 0) {
            const w = ATTACKERS[a.attacker - 1]
            const { ticket, sig } = await issue('gateway', w, base)
            const receipt: Receipt = { ...ticket, outputHash: a.lie ? keccak256(toHex('lie')) : honest[1].receipt.outputHash }
            pool.push({ ticket, ticketSignature: sig, receipt, receiptSignature: await signReceipt(world.actors[w].account, world.domain, receipt), det: a.det })
          }
          break
        }
        case 'epochEnd': {
          const epoch = await endEpoch(world)
          if (a.fake) {
            // the attacker takes the gateway's whole allowance for the epoch with a ticket the gateway never signed
            const [perEpoch] = await world.read.settlement.read.allowanceOf([world.projectId, world.actors.gateway.address])
            const { ticket } = await issue('gateway', 'w4', { jobId: newJobId(), attempt: 0, functionId: world.functionId, jobHash: keccak256('0x01'), inputHash: keccak256('0x02'), fee: perEpoch, epoch, deadline: 1n })
            const forged = await signTicket(world.actors.stranger.account, world.domain, ticket)
            const batch = buildSettlementBatch([{ ticket: { ...ticket }, ticketSignature: forged, outputHash: keccak256('0x03') }])
            const r = await sendObs('w4', 'Settlement', 'commitBatch', [world.projectId, epoch, world.actors.gateway.address, batch.root, batch.count, batch.total, '0x0155'], PARAMS.minBatchBond)
            if (r !== undefined) batches.push({ id: await world.read.settlement.read.batchIdOf([world.actors.w4.address, world.projectId, epoch, world.actors.gateway.address]), header: headerOf('w4', epoch, batch), worker: 'w4', epoch, batch, fake: true, pairs: [] })
          }
          for (const w of HONEST) if (!await commitHonest(w, epoch)) uncommitted.push({ worker: w, epoch })
          break
        }
        case 'challengeFake': {
          const fakes = batches.filter(b => b.fake)
          const b = fakes[a.b % Math.max(fakes.length, 1)]
          if (b !== undefined) await sendObs('challenger', 'Settlement', 'proveInvalidLeaf', [b.header, b.batch.leaves[0], b.batch.proof(0)])
          // honest workers blocked by a fake batch commit again; within the commit window it must work once the fake is voided
          for (const u of [...uncommitted]) {
            const genesis = await world.read.settlement.read.genesis()
            const open = (await now(world)) + 1n < genesis + (u.epoch + 1n) * PARAMS.epochLength + PARAMS.commitWindow
            const fakeLive = batches.some(f => f.fake && f.epoch === u.epoch) && (await Promise.all(batches.filter(f => f.fake && f.epoch === u.epoch).map(async f => (await batchState(world, f.header)).status))).some(s => s === 1)
            const ok = await commitHonest(u.worker, u.epoch)
            if (open && !fakeLive) assert.ok(ok, `an honest batch (${u.worker}, epoch ${u.epoch}) could not commit after the fake batch was voided`)
            if (ok || !open) uncommitted.splice(uncommitted.indexOf(u), 1)
          }
          break
        }
        case 'foreignTicket': {
          // a key that is not a staked gateway gets an honest worker's receipt(s) for a non-deterministic job
          const w = HONEST[a.w]
          const issuer = KEYS[a.issuer]
          const epoch = await world.read.settlement.read.currentEpoch()
          const base = { jobId: newJobId(), attempt: 0, functionId: echo, jobHash: keccak256(toHex(`j-${Math.random()}`)), inputHash: keccak256('0x05'), fee: 1n, epoch, deadline: (await now(world)) + 30n }
          const { ticket, sig } = await issue(issuer, w, base)
          const first = await honestAnswer(w, ticket, sig, false)
          const again = a.twice ? await honestAnswer(w, ticket, sig, false) : first
          assert.equal(again.receipt.outputHash, first.receipt.outputHash, 'the honest record returns the stored receipt')
          // a second ticket for the same (jobId, attempt) with another job: a different ticket, so a second receipt
          const other = await issue(issuer, w, { ...base, jobHash: keccak256(toHex(`other-${Math.random()}`)) })
          const second = await honestAnswer(w, other.ticket, other.sig, false)
          for (const t of [first, second]) {
            const r = await sendObs(issuer, 'Settlement', 'proveReceiptEquivocation', [t.ticket, t.ticketSignature, first.receipt, first.receiptSignature, second.receipt, second.receiptSignature])
            assert.equal(r, undefined, 'receipts of two different tickets proved equivocation')
          }
          break
        }
        case 'replayAfterPrune': {
          // an old ticket sent again once the honest record is pruned: a fresh (random) receipt
          const old = pool.filter(p => HONEST.some(h => world.actors[h].address === p.ticket.worker) && !p.det)
          const p = old[a.k % Math.max(old.length, 1)]
          if (p === undefined) break
          const until = await proofWindowEnd(p.ticket.epoch)
          const t = await now(world)
          if (t < until) await increaseTime(world, until - t)
          const w = HONEST.find(h => world.actors[h].address === p.ticket.worker)!
          const fresh = await honestAnswer(w, p.ticket, p.ticketSignature, false)
          await sendObs('challenger', 'Settlement', 'proveReceiptEquivocation', [p.ticket, p.ticketSignature, p.receipt, p.receiptSignature, fresh.receipt, fresh.receiptSignature])
          break
        }
        case 'disagree': {
          const hb = honestBatches()
          const b = hb[a.b % Math.max(hb.length, 1)]
          if (b === undefined) break
          const i = a.k % b.pairs.length
          const leaf = b.batch.leaves[i]
          const mine = b.pairs[i]
          // every other receipt the attackers can get for this job: the other honest worker's, and their own re-signed
          const others = pool.filter(p => p.ticket.jobHash === mine.ticket.jobHash && p.ticket.worker !== mine.ticket.worker)
          const honestOther = others.find(p => HONEST.some(h => world.actors[h].address === p.ticket.worker))
          const target = honestOther !== undefined && honestOther.receipt.outputHash !== leaf.outputHash ? honestOther.receipt.outputHash : keccak256(toHex('lie'))
          const receipts: Array<{ r: Receipt, s: Hex, t: Hex }> = []
          if (honestOther !== undefined && honestOther.receipt.outputHash === target) receipts.push({ r: honestOther.receipt, s: honestOther.receiptSignature, t: honestOther.ticketSignature })
          for (const w of ATTACKERS) {
            const real = others.find(p => p.ticket.worker === world.actors[w].address)
            const ticket: Ticket = real?.ticket ?? { ...mine.ticket, worker: world.actors[w].address }
            const ticketSig = real?.ticketSignature ?? await signTicket(world.actors.stranger.account, world.domain, ticket)
            const r: Receipt = { ...ticket, outputHash: target }
            receipts.push({ r, s: await signReceipt(world.actors[w].account, world.domain, r), t: ticketSig })
          }
          receipts.sort((x, y) => x.r.worker.toLowerCase() < y.r.worker.toLowerCase() ? -1 : 1)
          for (const set of [receipts, receipts.filter(x => others.some(o => o.ticketSignature === x.t))]) {
            if (set.length < 2) continue
            await sendObs('challenger', 'Settlement', 'proveDisagreement', [b.header, leaf, b.batch.proof(i), set.map(x => x.r), set.map(x => x.s), set.map(x => x.t)])
          }
          break
        }
        case 'batchEquivocate': {
          const hb = honestBatches()
          const b = hb[a.b % Math.max(hb.length, 1)]
          if (b === undefined) break
          const i = a.k % b.pairs.length
          const p = b.pairs[i]
          const w = b.worker
          // the attacker sends the leaf's ticket to the honest worker again: the record answers with the same receipt
          const again = await honestAnswer(w, p.ticket, p.ticketSignature, p.det)
          const any = pool[a.k % pool.length]
          for (const [out, sig] of [[again.receipt.outputHash, again.receiptSignature], [any.receipt.outputHash, any.receiptSignature]] as const) {
            await sendObs('stranger', 'Settlement', 'proveEquivocation', [b.header, b.batch.leaves[i], b.batch.proof(i), out, sig])
          }
          break
        }
        case 'receiptEquivocate': {
          // any two receipts from the pool, with either ticket
          const x = pool[a.k % Math.max(pool.length, 1)]
          const y = pool[a.j % Math.max(pool.length, 1)]
          if (x === undefined || y === undefined) break
          for (const t of [x, y]) await sendObs('stranger', 'Settlement', 'proveReceiptEquivocation', [t.ticket, t.ticketSignature, x.receipt, x.receiptSignature, y.receipt, y.receiptSignature])
          break
        }
        case 'finalize': {
          const b = batches[a.b % Math.max(batches.length, 1)]
          if (b !== undefined) await sendObs('stranger', 'Settlement', 'commitBatches', [[], [b.header]])
          break
        }
        case 'time': await increaseTime(world, a.seconds); break
        case 'withdraw': {
          const who = PAYEES[a.who]
          if (await world.read.settlement.read.owed([world.actors[who].address]) > 0n) await sendObs(who, 'Settlement', 'withdraw', [])
          break
        }
        case 'attackerStake': {
          const w = ATTACKERS[a.w]
          if (a.unbond) {
            const s = await world.read.staking.read.stakeOf([world.actors[w].address])
            if (s.amount > 0n) await sendObs(w, 'WorkerStaking', 'requestWithdrawal', [s.amount])
          } else await sendObs(w, 'WorkerStaking', 'stake', [1], ETHER)
          break
        }
      }
      await checkInvariants()
    }
    // drain: past every window, every batch is finalized; an honest batch is never voided
    await increaseTime(world, PARAMS.commitWindow + PARAMS.challengeWindow + PARAMS.epochLength)
    for (const b of batches) {
      await sendObs('stranger', 'Settlement', 'commitBatches', [[], [b.header]])
      if (!b.fake && (await batchState(world, b.header)).status !== 2) slashedHonest.push(`honest batch of ${b.worker} not paid`)
    }
    await checkInvariants()
    for (const h of HONEST) {
      const s = await world.read.staking.read.stakeOf([world.actors[h].address])
      if (s.amount + s.pending !== STAKE) slashedHonest.push(`${h} holds ${s.amount + s.pending} of ${STAKE}`)
    }
    return slashedHonest.length === 0

    async function checkInvariants (): Promise<void> {
      const bal = async (c: 'Settlement' | 'WorkerStaking'): Promise<bigint> => await world.publicClient.getBalance({ address: world.addresses[c] })
      let stakes = 0n
      for (const w of ['w1', 'w2', 'w3', 'w4', 'w5', 'gateway', 'gateway2'] as const) {
        const s = await world.read.staking.read.stakeOf([world.actors[w].address])
        stakes += s.amount + s.pending
      }
      assert.equal(await bal('WorkerStaking'), stakes, 'WorkerStaking balance ≠ Σ stakes')
      let held = await world.read.settlement.read.escrowOf([world.projectId])
      for (const b of batches) {
        const s = await batchState(world, b.header)
        if (s.status === 1) held += b.header.total - s.excluded + b.header.bond
      }
      let owed = 0n
      for (const p of PAYEES) owed += await world.read.settlement.read.owed([world.actors[p].address])
      const settlement = await bal('Settlement')
      assert.equal(settlement, held + owed, 'Settlement balance ≠ escrow + held batches + owed')
      // money in = paid + refunded + slashed + held (credited money counts as out, whether withdrawn yet or not)
      const stillHeld = settlement - owed + await bal('WorkerStaking')
      assert.equal(ledger.in, ledger.paid + ledger.refunded + ledger.slashed + ledger.stakeOut + stillHeld, 'money in ≠ paid + refunded + slashed + held')
      // a voided batch gave its allowance back: spent = Σ totals of live and finalized batches of the epoch
      // (while the epoch's slot of Settlement's allowance ring is its own: a later epoch reuses it)
      const ring = PARAMS.commitWindow / PARAMS.epochLength + 3n
      const current = await world.read.settlement.read.currentEpoch()
      for (const e of new Set(batches.map(b => b.epoch))) {
        if (e + ring <= current) continue
        let expected = 0n
        for (const b of batches.filter(x => x.epoch === e)) {
          const s = await batchState(world, b.header)
          if (s.status === 1 || s.status === 2) expected += b.header.total - s.excluded
        }
        assert.equal(await world.read.settlement.read.spentOf([world.projectId, world.actors.gateway.address, e]), expected, `allowance spent in epoch ${e} ≠ live batches`)
      }
    }
  })
}

/**
 * Sequences every campaign starts with (fast-check `examples`), so the known attacks are always
 * tried, then random ones: disagreement on a non-deterministic job a colluder also got, a fake
 * batch taking the allowance, foreign tickets, replays after pruning.
 */
const EXAMPLES: Action[][] = [
  [
    { t: 'job', det: false, attacker: 1, lie: false }, { t: 'job', det: true, attacker: 2, lie: true },
    { t: 'epochEnd', fake: true }, { t: 'challengeFake', b: 0 },
    { t: 'disagree', b: 0, k: 0 }, { t: 'disagree', b: 1, k: 0 }, { t: 'disagree', b: 0, k: 1 }, { t: 'disagree', b: 1, k: 1 },
    { t: 'batchEquivocate', b: 0, k: 0 }, { t: 'foreignTicket', w: 0, issuer: 0, twice: true },
    { t: 'receiptEquivocate', k: 0, j: 1 }, { t: 'replayAfterPrune', k: 0 }, { t: 'withdraw', who: 9 }
  ]
]

describe('contracts: trust-model invariants (fuzz)', function () {
  this.timeout(0)

  describe('against Settlement', () => {
    let world: World
    const base = { id: '' }
    before(async () => { world = await setup(); base.id = await snapshot(world) })
    after(async () => { await world.close() })

    it(`money in = paid + refunded + slashed + held, solvent, allowance restored, no honest worker slashed (${RUNS} runs × ≤ ${DEPTH} steps)`, async () => {
      console.log(`      fuzz seed ${SEED} (PEERHOST_FUZZ_SEED to replay), runs ${RUNS}, depth ${DEPTH}`)
      const started = performance.now()
      const result: CampaignResult = { honestSlashed: [], steps: 0, events: {} }
      await fc.assert(campaign(world, base, result), { numRuns: RUNS, seed: SEED, endOnFailure: true, examples: EXAMPLES.map(e => [e]) })
      const ev = (e: string): number => result.events[e] ?? 0
      console.log(`      ${result.steps} successful transactions in ${Math.round((performance.now() - started) / 1000)} s; ${['BatchCommitted', 'BatchFinalized', 'BatchVoided', 'EquivocationProven', 'Slashed', 'PaymentWithdrawn'].map(e => `${e} ${ev(e)}`).join(', ')}`)
      assert.deepEqual(result.honestSlashed, [])
      // the sequences reach the interesting paths: honest batches paid, fake batches voided (attackers slashed)
      for (const e of ['BatchCommitted', 'BatchFinalized', 'BatchVoided']) assert.ok(ev(e) > 0, `fuzz never reached ${e}`)
    })
  })

  describe('against SettlementUnchecked (no staked-gateway and no determinism check)', () => {
    let world: World
    const base = { id: '' }
    before(async () => {
      world = await setup({ read: async (name) => await readArtifact(name === 'Settlement' ? 'SettlementUnchecked' : name) })
      base.id = await snapshot(world)
    })
    after(async () => { await world.close() })

    it('the same fuzz reports a slashed honest worker (the invariant can fail)', async () => {
      const result: CampaignResult = { honestSlashed: [], steps: 0, events: {} }
      const out = await fc.check(campaign(world, base, result), { numRuns: RUNS, seed: SEED, endOnFailure: true, examples: EXAMPLES.map(e => [e]) })
      assert.equal(out.failed, true, 'the broken Settlement slashed no honest worker')
      assert.ok(result.honestSlashed.some(s => / by prove(Disagreement|ReceiptEquivocation|Equivocation)$/.test(s)), `no honest slash recorded: ${String(out.counterexample)}`)
      console.log(`      broken variant: ${result.honestSlashed[0]} (after ${out.numRuns} runs)`)
    })
  })
})
