/**
 * Invariant / fuzz suite: random sequences of stake, unbond, deposit, request, commit, reveal,
 * settle, batch (honest or faulty), challenge, finalize and withdraw on one chain. After every step:
 *
 * 1. money in = paid + refunded + slashed + held, where "in" is every value sent to the contracts
 *    from outside, paid/refunded/slashed are what the contracts paid out (classified by what was
 *    credited), and held is the contracts' balances;
 * 2. each contract is solvent to the wei: balance = Σ its liabilities (stakes, escrows, held batches,
 *    open requests, owed pull payments);
 * 3. slashed funds are fully distributed: Σ challenger/keeper/treasury credits = Σ slashed stake + forfeited bonds;
 *    open data-availability requests hold their bonds;
 * 4. honest workers (w1, w2: honest batches only) are never slashed.
 *
 * At the end every deadline is passed, everything is settled and withdrawn, and the contracts
 * hold nothing: no funds are stuck.
 *
 * Runs: PEERHOST_FUZZ_RUNS (default 150), seed: PEERHOST_FUZZ_SEED (printed).
 */
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { BaseError, ContractFunctionRevertedError, keccak256, parseEventLogs, toHex, type Hex, type TransactionReceipt } from 'viem'
import { signReceipt } from '../../protocol/eip712.ts'
import { buildSettlementBatch, executionCoordinatorAbi, fromLeaves, settlementAbi, workerStakingAbi } from '../../contracts/abi/index.ts'
import {
  ETHER, PARAMS, endEpoch, executionCommitment, increaseTime, newJobId, now, revertTo, send, setup, signedJob, snapshot,
  type ActorName, type World, STAKE
} from './fixture.ts'

const RUNS = Number(process.env.PEERHOST_FUZZ_RUNS ?? 150)
const SEED = Number(process.env.PEERHOST_FUZZ_SEED ?? Date.now() % 2 ** 31)
const WORKERS = ['w1', 'w2', 'w3', 'w4', 'w5'] as const
const HONEST = ['w1', 'w2'] as const
const FAULTY = ['w3', 'w4', 'w5'] as const
const PAYEES = ['deployer', 'owner', 'gateway', 'gateway2', 'w1', 'w2', 'w3', 'w4', 'w5', 'challenger', 'stranger'] as const

type Kind = 'honest' | 'forged' | 'inflated' | 'double' | 'brokenSum'
type Action =
  | { t: 'stake', w: number, amount: bigint }
  | { t: 'unbond', w: number, frac: number }
  | { t: 'withdrawStake', w: number }
  | { t: 'deposit', amount: bigint }
  | { t: 'escrowWithdraw', amount: bigint }
  | { t: 'request', redundancy: number, fee: bigint, fromEscrow: boolean, window: number }
  | { t: 'commitExec', w: number, r: number, wrong: boolean }
  | { t: 'revealExec', w: number, r: number }
  | { t: 'settle', r: number }
  | { t: 'batch', w: number, kind: Kind, n: number, retryOf: boolean }
  | { t: 'challenge', b: number }
  | { t: 'finalize', b: number }
  | { t: 'withdraw', who: number, contract: 'Settlement' | 'ExecutionCoordinator' }
  | { t: 'time', seconds: number }
  | { t: 'round', wrong: number[] }
  | { t: 'equivocate', w: number }
  | { t: 'requestLeaf', b: number, i: number, answer: boolean }
  | { t: 'unanswered', q: number }

const action: fc.Arbitrary<Action> = fc.oneof(
  fc.record({ t: fc.constant('stake' as const), w: fc.nat(2), amount: fc.bigInt(1n, 5n).map(x => x * ETHER) }),
  fc.record({ t: fc.constant('unbond' as const), w: fc.nat(2), frac: fc.integer({ min: 1, max: 4 }) }),
  fc.record({ t: fc.constant('withdrawStake' as const), w: fc.nat(2) }),
  fc.record({ t: fc.constant('deposit' as const), amount: fc.bigInt(1n, 10n ** 19n) }),
  fc.record({ t: fc.constant('escrowWithdraw' as const), amount: fc.bigInt(1n, 10n ** 20n) }),
  { arbitrary: fc.record({ t: fc.constant('request' as const), redundancy: fc.integer({ min: 1, max: 4 }), fee: fc.bigInt(1n, 10n ** 18n), fromEscrow: fc.boolean(), window: fc.integer({ min: 20, max: 400 }) }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant('commitExec' as const), w: fc.nat(2), r: fc.nat(20), wrong: fc.boolean() }), weight: 3 },
  { arbitrary: fc.record({ t: fc.constant('revealExec' as const), w: fc.nat(2), r: fc.nat(20) }), weight: 3 },
  fc.record({ t: fc.constant('settle' as const), r: fc.nat(20) }),
  { arbitrary: fc.record({ t: fc.constant('batch' as const), w: fc.nat(4), kind: fc.constantFrom<Kind>('honest', 'honest', 'forged', 'inflated', 'double', 'brokenSum'), n: fc.integer({ min: 1, max: 6 }), retryOf: fc.boolean() }), weight: 3 },
  { arbitrary: fc.record({ t: fc.constant('challenge' as const), b: fc.nat(20) }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant('finalize' as const), b: fc.nat(20) }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant('withdraw' as const), who: fc.nat(PAYEES.length - 1), contract: fc.constantFrom('Settlement' as const, 'ExecutionCoordinator' as const) }), weight: 2 },
  fc.record({ t: fc.constant('time' as const), seconds: fc.integer({ min: 1, max: 900 }) }),
  // the latest request: every staked faulty worker commits (some wrongly), then all reveal
  { arbitrary: fc.record({ t: fc.constant('round' as const), wrong: fc.array(fc.nat(2), { maxLength: 2 }) }), weight: 2 },
  // a faulty worker signs two outputs for one ticket and someone proves it
  fc.record({ t: fc.constant('equivocate' as const), w: fc.nat(2) }),
  // data availability: ask for a leaf; honest workers always answer, faulty ones maybe
  { arbitrary: fc.record({ t: fc.constant('requestLeaf' as const), b: fc.nat(20), i: fc.nat(2000), answer: fc.boolean() }), weight: 2 },
  fc.record({ t: fc.constant('unanswered' as const), q: fc.nat(20) })
)

interface BatchModel { id: Hex, kind: Kind, worker: ActorName, batch: ReturnType<typeof buildSettlementBatch> }
interface RequestModel { id: bigint, committed: Map<ActorName, Hex> }

describe('contracts: invariants (fuzz)', function () {
  this.timeout(600_000)
  let world: World
  let base: string

  before(async () => {
    world = await setup()
    base = await snapshot(world)
  })
  after(async () => { await world.close() })

  it(`money in = paid + refunded + slashed + held, contracts solvent, honest never slashed (${RUNS} runs × ≤ 30 steps)`, async () => {
    console.log(`      fuzz seed ${SEED} (PEERHOST_FUZZ_SEED to replay), runs ${RUNS}`)
    let steps = 0
    const stats: Record<string, number> = {}
    await fc.assert(fc.asyncProperty(fc.array(action, { minLength: 5, maxLength: 30 }), async (actions) => {
      await revertTo(world, base)
      base = await snapshot(world)
      // what the setup already put in (stakes, the project escrow)
      let initial = 0n
      for (const c of ['Settlement', 'ExecutionCoordinator', 'WorkerStaking'] as const) initial += await world.publicClient.getBalance({ address: world.addresses[c] })
      const ledger = { in: initial, paid: 0n, refunded: 0n, slashedOut: 0n, slashed: 0n, slashCredits: 0n }
      const batches: BatchModel[] = []
      const leafRequests: Array<{ batch: BatchModel, index: bigint }> = []
      const requests: RequestModel[] = []
      const salt = (w: ActorName, r: bigint): Hex => keccak256(toHex(`${w}-${r}`))
      const output = (wrong: boolean): Hex => keccak256(toHex(wrong ? 'wrong' : 'right'))
      const slashRecipients = new Set<string>([world.actors.deployer.address, world.actors.challenger.address, world.actors.stranger.address].map(a => a.toLowerCase()))
      const credits = new Map<string, { paid: bigint, refunded: bigint, slashed: bigint }>()
      const creditOf = (a: string) => { const k = a.toLowerCase(); if (!credits.has(k)) credits.set(k, { paid: 0n, refunded: 0n, slashed: 0n }); return credits.get(k)! }

      // Every payment the contracts credit is classified when credited, and moved to the ledger
      // when withdrawn (pull payments), so paid + refunded + slashed counts money that left.
      const SLASHING = new Set(['proveInvalidLeaf', 'proveBrokenSum', 'disputeDuplicateJob', 'proveEquivocation', 'proveDisagreement', 'proveReceiptEquivocation', 'proveUnanswered', 'settle'])
      const observe = (r: TransactionReceipt, value: bigint, from: ActorName, fn: string): void => {
        ledger.in += value
        let skipFirstCredit = fn === 'proveUnanswered' // the request bond going back
        for (const ev of parseEventLogs({ abi: [...settlementAbi, ...executionCoordinatorAbi, ...workerStakingAbi], logs: r.logs })) {
          const args = ev.args as Record<string, any>
          stats[ev.eventName] = (stats[ev.eventName] ?? 0) + 1
          switch (ev.eventName) {
            case 'BatchFinalized': creditOf(args.worker).paid += args.paid; break
            case 'PaymentCredited':
              if (skipFirstCredit) { skipFirstCredit = false; break }
              if (SLASHING.has(fn) && (fn !== 'settle' || slashRecipients.has(String(args.account).toLowerCase()))) ledger.slashCredits += args.amount
              else if (ev.address.toLowerCase() === world.addresses.ExecutionCoordinator.toLowerCase() && WORKERS.some(w => world.actors[w].address === args.account)) creditOf(args.account).paid += args.amount
              break
            case 'Slashed':
              ledger.slashed += args.amount
              assert.ok(!HONEST.some(h => world.actors[h].address === args.account), `honest ${String(args.account)} was slashed`)
              break
            case 'BatchVoided': break
            case 'Withdrawn': ledger.refunded += args.amount; break // stake returned
            default: break
          }
        }
        void from
      }
      const sendObs = async (from: ActorName, contract: Parameters<typeof send>[2], fn: string, args: readonly unknown[], value = 0n): Promise<TransactionReceipt | undefined> => {
        try {
          const r = await send(world, from, contract, fn, args, value)
          observe(r, value, from, fn)
          steps++
          return r
        } catch (err) {
          if (err instanceof BaseError && err.walk(e => e instanceof ContractFunctionRevertedError) != null) return undefined
          throw err
        }
      }

      for (const a of actions) {
        switch (a.t) {
          case 'stake': await sendObs(FAULTY[a.w], 'WorkerStaking', 'stake', [1], a.amount); break
          case 'unbond': {
            const s = await world.read.staking.read.stakeOf([world.actors[FAULTY[a.w]].address])
            await sendObs(FAULTY[a.w], 'WorkerStaking', 'requestWithdrawal', [a.frac === 4 ? s.amount : s.amount / BigInt(a.frac + 1)])
            break
          }
          case 'withdrawStake': await sendObs(FAULTY[a.w], 'WorkerStaking', 'withdraw', []); break
          case 'deposit': await sendObs('stranger', 'Settlement', 'deposit', [world.projectId], a.amount); break
          case 'escrowWithdraw': {
            const [req] = await world.read.settlement.read.escrowWithdrawalOf([world.projectId])
            await sendObs('owner', 'Settlement', req === 0n ? 'requestEscrowWithdrawal' : 'withdrawEscrow', req === 0n ? [world.projectId, a.amount] : [world.projectId])
            break
          }
          case 'request': {
            const deadline = (await now(world)) + BigInt(a.window)
            const r = await sendObs('gateway', 'ExecutionCoordinator', 'requestExecution', [{ functionId: world.functionId, inputHash: keccak256('0x01'), inputCid: '0x0155', redundancy: a.redundancy, fee: a.fee, deadline, fromEscrow: a.fromEscrow }], a.fromEscrow ? 0n : a.fee)
            if (r !== undefined) requests.push({ id: await world.read.coordinator.read.requestCount(), committed: new Map() })
            break
          }
          case 'commitExec': {
            const q = requests[a.r % Math.max(requests.length, 1)]
            if (q === undefined) break
            const w = FAULTY[a.w]
            const out = output(a.wrong)
            const r = await sendObs(w, 'ExecutionCoordinator', 'commit', [q.id, executionCommitment(q.id, world.actors[w].address, out, salt(w, q.id))])
            if (r !== undefined) q.committed.set(w, out)
            break
          }
          case 'revealExec': {
            const q = requests[a.r % Math.max(requests.length, 1)]
            const w = FAULTY[a.w]
            const out = q?.committed.get(w)
            if (q === undefined || out === undefined) break
            await sendObs(w, 'ExecutionCoordinator', 'reveal', [q.id, out, salt(w, q.id), '0x0155'])
            break
          }
          case 'settle': {
            const q = requests[a.r % Math.max(requests.length, 1)]
            if (q !== undefined) await sendObs('stranger', 'ExecutionCoordinator', 'settle', [q.id])
            break
          }
          case 'batch': {
            const worker: ActorName = WORKERS[a.w]
            const kind: Kind = (HONEST as readonly string[]).includes(worker) ? 'honest' : a.kind
            const epoch = await world.read.settlement.read.currentEpoch()
            const jobs = []
            for (let i = 0; i < a.n; i++) {
              // a retry of a job another batch already claims (attempt + 1): excluded, never slashed
              const prev = a.retryOf && i === 0 ? batches.find(b => b.kind === 'honest') : undefined
              const jobId = prev?.batch.leaves[0].jobId ?? newJobId()
              const attempt = prev !== undefined ? prev.batch.leaves[0].attempt + 1 : 0
              const gateway: ActorName = kind === 'forged' && i === a.n - 1 ? 'stranger' : 'gateway'
              jobs.push(await signedJob(world, { worker, epoch, jobId, attempt, gateway, fee: BigInt(1 + i) * 10n ** 15n }))
            }
            await endEpoch(world)
            let batch = buildSettlementBatch(jobs.map(j => j.item))
            if (kind === 'inflated') batch = fromLeaves(batch.leaves, batch.total + ETHER)
            if (kind === 'double') batch = buildSettlementBatch([...jobs.map(j => j.item), jobs[0].item])
            if (kind === 'brokenSum') batch = fromLeaves(batch.leaves.map((l, i) => i === 0 ? { ...l, cumulativeFee: l.cumulativeFee + 7n } : { ...l, cumulativeFee: l.cumulativeFee + 7n }))
            const r = await sendObs(worker, 'Settlement', 'commitBatch', [world.projectId, epoch, world.actors.gateway.address, batch.root, batch.count, batch.total, '0x0155'], PARAMS.minBatchBond)
            if (r !== undefined) batches.push({ id: await world.read.settlement.read.batchIdOf([world.actors[worker].address, world.projectId, epoch, world.actors.gateway.address]), kind, worker, batch })
            break
          }
          case 'challenge': {
            // challengers watch faulty batches more than honest ones
            const pool = a.b % 3 === 0 ? batches : batches.filter(x => x.kind !== 'honest')
            const b = pool[a.b % Math.max(pool.length, 1)]
            if (b === undefined) break
            const L = b.batch.leaves
            const P = (i: number): Hex[] => b.batch.proof(i)
            const last = L.length - 1
            if (b.kind === 'double') await sendObs('challenger', 'Settlement', 'disputeDuplicateJob', [b.id, L[0], P(0), b.id, L[last], P(last)])
            else if (b.kind === 'brokenSum') await sendObs('challenger', 'Settlement', 'proveInvalidLeaf', [b.id, L[0], P(0)])
            else if (b.kind === 'honest') {
              // an honest batch: every proof must fail; a retried job's older claim may be excluded
              for (let i = 0; i < L.length; i++) assert.equal(await sendObs('challenger', 'Settlement', 'proveInvalidLeaf', [b.id, L[i], P(i)]), undefined)
              const dup = batches.find(o => o !== b && o.kind === 'honest' && o.batch.leaves[0].jobId === L[0].jobId)
              if (dup !== undefined) {
                // only the lower-ranked claim can be excluded; the other order reverts
                await sendObs('owner', 'Settlement', 'disputeDuplicateJob', [b.id, L[0], P(0), dup.id, dup.batch.leaves[0], dup.batch.proof(0)])
                await sendObs('owner', 'Settlement', 'disputeDuplicateJob', [dup.id, dup.batch.leaves[0], dup.batch.proof(0), b.id, L[0], P(0)])
              }
            } else await sendObs('challenger', 'Settlement', 'proveInvalidLeaf', [b.id, L[last], P(last)])
            break
          }
          case 'finalize': {
            const b = batches[a.b % Math.max(batches.length, 1)]
            if (b !== undefined) await sendObs('stranger', 'Settlement', 'finalizeBatch', [b.id])
            break
          }
          case 'withdraw': await withdrawAll(PAYEES[a.who], a.contract); break
          case 'time': await increaseTime(world, a.seconds); break
          case 'requestLeaf': {
            const b = batches[a.b % Math.max(batches.length, 1)]
            if (b === undefined) break
            const index = BigInt(a.i % b.batch.count)
            const r = await sendObs('gateway2', 'Settlement', 'requestLeaf', [b.id, index], PARAMS.minBatchBond)
            if (r === undefined) break
            leafRequests.push({ batch: b, index })
            const pos = b.batch.leaves.findIndex(l => l.index === index)
            if (pos >= 0 && (b.kind === 'honest' || a.answer)) {
              assert.ok(await sendObs(b.worker, 'Settlement', 'answerLeaf', [b.id, b.batch.leaves[pos], b.batch.proof(pos)]), 'an honest answer failed')
            }
            break
          }
          case 'unanswered': {
            const q = leafRequests[a.q % Math.max(leafRequests.length, 1)]
            if (q !== undefined) await sendObs('stranger', 'Settlement', 'proveUnanswered', [q.batch.id, q.index])
            break
          }
          case 'equivocate': {
            const j = await signedJob(world, { worker: FAULTY[a.w], epoch: await world.read.settlement.read.currentEpoch() })
            const b = { ...j.receipt, outputHash: output(true) }
            const sigB = await signReceipt(world.actors[FAULTY[a.w]].account, world.domain, b)
            await sendObs('challenger', 'Settlement', 'proveReceiptEquivocation', [j.ticket, j.ticketSignature, j.receipt, j.receiptSignature, b, sigB])
            break
          }
          case 'round': {
            const q = requests[requests.length - 1]
            if (q === undefined) break
            for (const [i, w] of FAULTY.entries()) {
              const out = output(a.wrong.includes(i))
              const r = await sendObs(w, 'ExecutionCoordinator', 'commit', [q.id, executionCommitment(q.id, world.actors[w].address, out, salt(w, q.id))])
              if (r !== undefined) q.committed.set(w, out)
            }
            for (const [w, out] of q.committed) await sendObs(w, 'ExecutionCoordinator', 'reveal', [q.id, out, salt(w, q.id), '0x0155'])
            break
          }
        }
        await checkInvariants()
      }

      // Drain: pass every deadline, settle and finalize everything, unbond and withdraw all.
      await increaseTime(world, PARAMS.challengeWindow + 86_400n)
      for (const q of requests) await sendObs('stranger', 'ExecutionCoordinator', 'settle', [q.id])
      for (const q of leafRequests) await sendObs('stranger', 'Settlement', 'proveUnanswered', [q.batch.id, q.index])
      for (const b of batches) await sendObs('stranger', 'Settlement', 'finalizeBatch', [b.id])
      const escrow = await world.read.settlement.read.escrowOf([world.projectId])
      if (escrow > 0n) await sendObs('owner', 'Settlement', 'requestEscrowWithdrawal', [world.projectId, escrow])
      for (const w of WORKERS) {
        const s = await world.read.staking.read.stakeOf([world.actors[w].address])
        if (s.amount > 0n) await sendObs(w, 'WorkerStaking', 'requestWithdrawal', [s.amount])
      }
      for (const g of ['gateway', 'gateway2'] as const) await sendObs(g, 'WorkerStaking', 'requestWithdrawal', [STAKE])
      await increaseTime(world, PARAMS.unbondingPeriod + 1n)
      await sendObs('owner', 'Settlement', 'withdrawEscrow', [world.projectId])
      for (const w of [...WORKERS, 'gateway', 'gateway2'] as const) await sendObs(w, 'WorkerStaking', 'withdraw', [])
      for (const p of PAYEES) { await withdrawAll(p, 'Settlement'); await withdrawAll(p, 'ExecutionCoordinator') }
      await checkInvariants()
      for (const c of ['Settlement', 'ExecutionCoordinator', 'WorkerStaking'] as const) {
        assert.equal(await world.publicClient.getBalance({ address: world.addresses[c] }), 0n, `${c} still holds funds after every deadline`)
      }

      async function withdrawAll (who: ActorName, contract: 'Settlement' | 'ExecutionCoordinator'): Promise<void> {
        const addr = world.actors[who].address
        const c = contract === 'Settlement' ? world.read.settlement : world.read.coordinator
        const amount = await c.read.owed([addr])
        if (amount === 0n) return
        const r = await sendObs(who, contract, 'withdraw', [])
        if (r === undefined) return
        // classify by what this account was credited for
        const cr = creditOf(addr)
        let left = amount
        const take = (x: bigint): bigint => { const t = x < left ? x : left; left -= t; return t }
        const paid = take(cr.paid); cr.paid -= paid; ledger.paid += paid
        if (slashRecipients.has(addr.toLowerCase()) && !(['owner', 'gateway'] as string[]).includes(who)) {
          ledger.slashedOut += left
        } else ledger.refunded += left
      }

      async function checkInvariants (): Promise<void> {
        const bal = async (c: 'Settlement' | 'ExecutionCoordinator' | 'WorkerStaking'): Promise<bigint> => await world.publicClient.getBalance({ address: world.addresses[c] })
        // staking: Σ stakes
        let stakes = 0n
        for (const w of [...WORKERS, 'gateway', 'gateway2'] as const) {
          const s = await world.read.staking.read.stakeOf([world.actors[w].address])
          stakes += s.amount + s.pending
        }
        assert.equal(await bal('WorkerStaking'), stakes, 'WorkerStaking balance ≠ Σ stakes')
        // settlement: escrow + held batches + owed
        let held = await world.read.settlement.read.escrowOf([world.projectId])
        held += await world.read.settlement.read.escrowOf([keccak256('0x')]) // no other project is funded
        for (const b of batches) {
          const s = await world.read.settlement.read.getBatch([b.id])
          if (s.status === 1) held += s.total - s.excluded + s.bond
        }
        let owedS = 0n
        let owedC = 0n
        for (const p of PAYEES) {
          owedS += await world.read.settlement.read.owed([world.actors[p].address])
          owedC += await world.read.coordinator.read.owed([world.actors[p].address])
        }
        for (const q of leafRequests) {
          const r = await world.read.settlement.read.getLeafRequest([q.batch.id, q.index])
          if (r.open) held += r.bond
        }
        assert.equal(await bal('Settlement'), held + owedS, 'Settlement balance ≠ escrow + held batches + open leaf requests + owed')
        // coordinator: open requests + owed
        let open = 0n
        for (const q of requests) {
          const r = await world.read.coordinator.read.getRequest([q.id])
          if (!r.settled) open += r.fee
        }
        assert.equal(await bal('ExecutionCoordinator'), open + owedC, 'ExecutionCoordinator balance ≠ open fees + owed')
        // conservation across the system
        const total = await bal('Settlement') + await bal('ExecutionCoordinator') + await bal('WorkerStaking')
        assert.equal(ledger.in, ledger.paid + ledger.refunded + ledger.slashedOut + total, 'money in ≠ paid + refunded + slashed + held')
        // slashed stake and forfeited bonds all went to challengers, keepers and the treasury
        let forfeited = 0n
        for (const b of batches) {
          const s = await world.read.settlement.read.getBatch([b.id])
          if (s.status === 3) forfeited += s.bond
        }
        assert.equal(ledger.slashCredits, ledger.slashed + forfeited, 'slash credits ≠ slashed stake + forfeited bonds')
      }
    }), { numRuns: RUNS, seed: SEED, endOnFailure: true })
    console.log(`      ${steps} successful transactions; events: ${['BatchCommitted', 'BatchFinalized', 'BatchVoided', 'EquivocationProven', 'LeafRequested', 'LeafAnswered', 'LeafExcluded', 'ExecutionFinalized', 'ExecutionSettled', 'WorkerPenalized', 'Slashed', 'PaymentWithdrawn'].map(e => `${e} ${stats[e] ?? 0}`).join(', ')}`)
    // the sequences must actually reach the interesting paths
    for (const e of ['BatchFinalized', 'BatchVoided', 'ExecutionFinalized', 'WorkerPenalized', 'LeafAnswered']) assert.ok((stats[e] ?? 0) > 0, `fuzz never reached ${e}`)
  })
})
