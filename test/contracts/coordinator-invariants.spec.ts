/**
 * ExecutionCoordinator invariant fuzz: honest workers (w1, w2) take part in every request they are
 * drawn for — they commit the right output at once and reveal as soon as the reveal phase opens —
 * while attackers (w3, w4, w5, stranger) do anything: request with any fee/redundancy/window for a
 * deterministic or a non-deterministic function (by value or from the escrow), commit the right, a
 * shared wrong or a random output to any request, reveal or not, settle at any time, leave and
 * re-join the pool, unbond, withdraw. Time moves in steps of at most 5 s (an honest worker watches
 * the chain; a jump over a whole reveal phase would make any worker a non-revealer).
 *
 * After every step:
 * 1. **no honest worker slashed**, except on a request of a deterministic function whose finalized
 *    output is not the right one — possible only when attackers were drawn for a majority of its
 *    slots, which the stake-weighted draw makes as likely as their share of the pool's weight;
 * 2. **conservation**: the coordinator's balance = Σ owed (pull payments) + Σ fees of unsettled
 *    requests, to the wei; every settled request paid + refunded its fee exactly.
 * At the end every request is settled, everyone withdraws, and the coordinator holds nothing.
 *
 * `npm test`: a few short runs. Deep: FUZZ_RUNS=<runs> (and FUZZ_DEPTH=<steps>, FUZZ_SEED) under the
 * `fuzz` script.
 */
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { keccak256, parseEventLogs, toHex, type Hex, type TransactionReceipt } from 'viem'
import { executionCoordinatorAbi } from '../../contracts/abi/index.ts'
import { functionId as functionIdOf } from '../../protocol/eip712.ts'
import { ACTOR_NAMES, ETHER, executionCommitment, now, revertTo, send, setup, snapshot, type ActorName, type World } from './fixture.ts'

const RUNS = Number(process.env.FUZZ_RUNS ?? 4)
const DEPTH = Number(process.env.FUZZ_DEPTH ?? 25)
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31)
const HONEST = ['w1', 'w2'] as const
const ATTACKERS = ['w3', 'w4', 'w5', 'stranger'] as const
const STAKED_ATTACKERS = ['w3', 'w4', 'w5'] as const
const CID = ('0x01551220' + 'cd'.repeat(32)) as Hex
const KEY = ('0x' + '5a'.repeat(32)) as Hex

type Action =
  | { t: 'request', from: number, det: boolean, redundancy: number, fee: bigint, window: number, fromEscrow: boolean }
  | { t: 'commit', a: number, r: number, out: 'right' | 'wrong' | 'random' }
  | { t: 'reveal', a: number, r: number }
  | { t: 'settle', a: number, r: number }
  | { t: 'time', s: number }
  | { t: 'pool', a: number, join: boolean }
  | { t: 'unbond', a: number }
  | { t: 'withdraw', who: number }

const action: fc.Arbitrary<Action> = fc.oneof(
  { arbitrary: fc.record({ t: fc.constant('request' as const), from: fc.nat(1), det: fc.boolean(), redundancy: fc.integer({ min: 1, max: 4 }), fee: fc.bigInt(1n, ETHER), window: fc.integer({ min: 20, max: 120 }), fromEscrow: fc.boolean() }), weight: 3 },
  { arbitrary: fc.record({ t: fc.constant('commit' as const), a: fc.nat(ATTACKERS.length - 1), r: fc.nat(8), out: fc.constantFrom('right' as const, 'wrong' as const, 'wrong' as const, 'random' as const) }), weight: 4 },
  { arbitrary: fc.record({ t: fc.constant('reveal' as const), a: fc.nat(ATTACKERS.length - 1), r: fc.nat(8) }), weight: 3 },
  { arbitrary: fc.record({ t: fc.constant('settle' as const), a: fc.nat(ATTACKERS.length - 1), r: fc.nat(8) }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant('time' as const), s: fc.integer({ min: 1, max: 5 }) }), weight: 4 },
  fc.record({ t: fc.constant('pool' as const), a: fc.nat(STAKED_ATTACKERS.length - 1), join: fc.boolean() }),
  fc.record({ t: fc.constant('unbond' as const), a: fc.nat(STAKED_ATTACKERS.length - 1) }),
  fc.record({ t: fc.constant('withdraw' as const), who: fc.nat(ACTOR_NAMES.length - 1) })
)

interface Model {
  /** request ids made in this run */
  requests: bigint[]
  /** `${id}-${worker}` → what it committed */
  commits: Map<string, { out: Hex, salt: Hex }>
  /** who the checks count as honest (the honest behaviour is always HONEST's) */
  checkedHonest: readonly string[]
  /** honest penalties seen: request id per penalised honest worker */
  honestPenalties: Array<{ id: bigint, worker: string }>
}

/** What the runs did, so a run that exercises nothing is noticed. */
const stats = { requests: 0, honestCommits: 0, honestReveals: 0, attackerCommits: 0, settled: 0, penalties: 0 }

const right = (id: bigint): Hex => keccak256(toHex(`right-${id}`))
const wrongOut = (id: bigint): Hex => keccak256(toHex(`wrong-${id}`))

describe('contracts: ExecutionCoordinator invariants (honest workers among arbitrary attackers)', function () {
  this.timeout(RUNS * DEPTH * 5_000 + 120_000)
  let world: World
  let base: string
  let det: Hex
  let nonDet: Hex

  before(async () => {
    world = await setup()
    for (const w of ['w1', 'w2', 'w3', 'w4', 'w5'] as const) await send(world, w, 'ExecutionCoordinator', 'join', [KEY])
    det = world.functionId
    nonDet = functionIdOf(world.actors.owner.address, 'demo', 'echo')
    assert.equal(await world.read.registry.read.isDeterministic([det]), true)
    assert.equal(await world.read.registry.read.isDeterministic([nonDet]), false)
    base = await snapshot(world)
  })
  after(async () => { await world.close() })

  const addr = (n: ActorName): Hex => world.actors[n].address.toLowerCase() as Hex
  const nameOf = (a: string): ActorName => ACTOR_NAMES.find(n => addr(n) === a.toLowerCase()) as ActorName

  /** Sends; a revert is an allowed outcome for an attacker (returns undefined). */
  async function attempt (from: ActorName, fn: string, args: readonly unknown[], value?: bigint): Promise<TransactionReceipt | undefined> {
    try { return await send(world, from, 'ExecutionCoordinator', fn, args, value) } catch { return undefined }
  }

  function recordPenalties (m: Model, receipt: TransactionReceipt | undefined): void {
    if (receipt === undefined) return
    stats.settled++
    for (const ev of parseEventLogs({ abi: executionCoordinatorAbi, logs: receipt.logs, eventName: 'WorkerPenalized' })) {
      const who = nameOf(ev.args.worker)
      stats.penalties++
      if (m.checkedHonest.includes(who)) m.honestPenalties.push({ id: ev.args.requestId, worker: who })
    }
  }

  /** What honest workers do on every block: commit the right output where drawn, reveal when the phase opens. */
  async function honestStep (m: Model, honest: readonly ActorName[]): Promise<void> {
    const t = await now(world)
    for (const id of m.requests) {
      const r = await world.read.coordinator.read.getRequest([id])
      if (r.settled || t >= r.deadline) continue
      let drawn: readonly Hex[]
      try { drawn = await world.read.coordinator.read.drawnWorkers([id], { blockTag: 'pending' }) } catch { continue }
      for (const h of honest) {
        if (!drawn.some(d => d.toLowerCase() === addr(h))) continue
        const key = `${id}-${h}`
        const mine = m.commits.get(key)
        if (mine === undefined) {
          if (t + 1n >= r.commitDeadline) continue
          const out = r.deterministic ? right(id) : keccak256(toHex(`honest-${h}-${id}`))
          const salt = keccak256(toHex(`salt-${key}`))
          const ok = await attempt(h, 'commit', [id, executionCommitment(id, world.actors[h].address, out, salt)])
          if (ok !== undefined) { m.commits.set(key, { out, salt }); stats.honestCommits++ }
        } else {
          const slots = await world.read.coordinator.read.getSlots([id])
          const slot = slots.find(s => s.worker.toLowerCase() === addr(h))
          const fresh = await world.read.coordinator.read.getRequest([id])
          const phase = fresh.commits >= fresh.drawnSlots || t + 1n >= fresh.commitDeadline
          if (slot !== undefined && slot.committed && !slot.revealed && phase && await attempt(h, 'reveal', [id, mine.out, mine.salt, CID]) !== undefined) stats.honestReveals++
        }
      }
    }
  }

  async function checkInvariants (m: Model): Promise<void> {
    // 1. an honest worker is slashed only where the finalized output of a deterministic function is not the right one
    for (const p of m.honestPenalties) {
      const r = await world.read.coordinator.read.getRequest([p.id])
      assert.ok(r.deterministic && r.finalized && r.outputHash !== right(p.id),
        `honest ${p.worker} slashed on request ${p.id} (deterministic ${r.deterministic}, finalized ${r.finalized}, output right: ${r.outputHash === right(p.id)})`)
    }
    // 2. conservation: balance = owed + fees of unsettled requests
    let owed = 0n
    for (const n of ACTOR_NAMES) owed += await world.read.coordinator.read.owed([world.actors[n].address])
    let held = 0n
    const count = await world.read.coordinator.read.requestCount()
    for (let id = 1n; id <= count; id++) {
      const r = await world.read.coordinator.read.getRequest([id])
      if (!r.settled) held += r.fee
    }
    const balance = await world.publicClient.getBalance({ address: world.addresses.ExecutionCoordinator })
    assert.equal(balance, owed + held, `coordinator balance ${balance} ≠ owed ${owed} + unsettled fees ${held}`)
  }

  async function step (m: Model, a: Action, honest: readonly ActorName[]): Promise<void> {
    const attacker = (i: number): ActorName => ATTACKERS[i % ATTACKERS.length]
    const pick = (i: number): bigint | undefined => m.requests.length === 0 ? undefined : m.requests[i % m.requests.length]
    switch (a.t) {
      case 'request': {
        const from: ActorName = a.from === 0 ? 'gateway' : 'stranger'
        const deadline = (await now(world)) + BigInt(a.window) + 1n
        const fromEscrow = a.fromEscrow && from === 'gateway'
        const receipt = await attempt(from, 'requestExecution', [{ functionId: a.det ? det : nonDet, inputHash: keccak256(toHex('in')), inputCid: CID, redundancy: a.redundancy, fee: a.fee, deadline, fromEscrow }], fromEscrow ? 0n : a.fee)
        if (receipt !== undefined) {
          const [ev] = parseEventLogs({ abi: executionCoordinatorAbi, logs: receipt.logs, eventName: 'ExecutionRequested' })
          m.requests.push(ev.args.requestId)
          stats.requests++
        }
        break
      }
      case 'commit': {
        const id = pick(a.r)
        if (id === undefined) break
        const w = attacker(a.a)
        const out = a.out === 'right' ? right(id) : a.out === 'wrong' ? wrongOut(id) : keccak256(toHex(`rand-${w}-${id}-${Math.random()}`))
        const salt = keccak256(toHex(`salt-${id}-${w}`))
        if (await attempt(w, 'commit', [id, executionCommitment(id, world.actors[w].address, out, salt)]) !== undefined) { m.commits.set(`${id}-${w}`, { out, salt }); stats.attackerCommits++ }
        break
      }
      case 'reveal': {
        const id = pick(a.r)
        const w = attacker(a.a)
        const c = id === undefined ? undefined : m.commits.get(`${id}-${w}`)
        if (id !== undefined && c !== undefined) await attempt(w, 'reveal', [id, c.out, c.salt, CID])
        break
      }
      case 'settle': {
        const id = pick(a.r)
        if (id !== undefined) recordPenalties(m, await attempt(attacker(a.a), 'settle', [id]))
        break
      }
      case 'time':
        await world.request('evm_increaseTime', [a.s])
        await world.request('evm_mine')
        break
      case 'pool':
        await attempt(STAKED_ATTACKERS[a.a], a.join ? 'join' : 'leave', a.join ? [KEY] : [])
        break
      case 'unbond':
        try { await send(world, STAKED_ATTACKERS[a.a], 'WorkerStaking', 'requestWithdrawal', [ETHER]) } catch {}
        break
      case 'withdraw':
        await attempt(ACTOR_NAMES[a.who], 'withdraw', [])
        break
    }
    await honestStep(m, honest)
  }

  /** Passes every deadline (in small steps, honest workers acting), settles everything, withdraws everything. */
  async function finish (m: Model, honest: readonly ActorName[]): Promise<void> {
    let last = 0n
    for (const id of m.requests) {
      const d = (await world.read.coordinator.read.getRequest([id])).deadline
      if (d > last) last = d
    }
    while (await now(world) < last + 1n) {
      await world.request('evm_increaseTime', [5])
      await world.request('evm_mine')
      await honestStep(m, honest)
    }
    for (const id of m.requests) {
      if (!(await world.read.coordinator.read.getRequest([id])).settled) recordPenalties(m, await attempt('stranger', 'settle', [id]))
    }
    await checkInvariants(m)
    for (const id of m.requests) assert.ok((await world.read.coordinator.read.getRequest([id])).settled, `request ${id} could not be settled after its deadline`)
    for (const n of ACTOR_NAMES) await attempt(n, 'withdraw', [])
    assert.equal(await world.publicClient.getBalance({ address: world.addresses.ExecutionCoordinator }), 0n, 'funds left in the coordinator after everything settled and was withdrawn')
  }

  async function run (actions: Action[], checkedHonest: readonly string[] = HONEST): Promise<void> {
    const honest = HONEST
    await revertTo(world, base)
    base = await snapshot(world)
    const m: Model = { requests: [], commits: new Map(), honestPenalties: [], checkedHonest }
    for (const a of actions) {
      await step(m, a, honest)
      await checkInvariants(m)
    }
    await finish(m, honest)
  }

  it(`no honest worker slashed and funds conserved (${RUNS} runs × ${DEPTH} steps, seed ${SEED})`, async function () {
    await fc.assert(fc.asyncProperty(fc.array(action, { minLength: DEPTH, maxLength: DEPTH }), async (actions) => { await run(actions) }),
      { numRuns: RUNS, seed: SEED, endOnFailure: true })
    // the runs really exercised the coordinator: requests, honest commits and reveals, settlements
    assert.ok(stats.requests > 0 && stats.honestCommits > 0 && stats.honestReveals > 0 && stats.settled > 0, `runs exercised too little: ${JSON.stringify(stats)}`)
    this.test!.title += ` — ${JSON.stringify(stats)}`
  })

  it('the "no honest worker slashed" check can fail: counted as honest, a dissenting w3 is caught', async () => {
    // a fixed scenario: w4 and w5 leave the pool, so a deterministic request of redundancy 3 draws
    // w1, w2 and w3; w3 commits and reveals a wrong output, the honest two the right one; the
    // settlement slashes w3 for dissent, which the check reports once w3 is (wrongly) counted honest
    const scenario: Action[] = [
      { t: 'pool', a: 1, join: false },
      { t: 'pool', a: 2, join: false },
      { t: 'request', from: 0, det: true, redundancy: 3, fee: 1000n, window: 60, fromEscrow: false },
      { t: 'commit', a: 0, r: 0, out: 'wrong' },
      { t: 'reveal', a: 0, r: 0 }
    ]
    await assert.rejects(run(scenario, [...HONEST, 'w3']), /honest w3 slashed on request 1/)
    // and the same scenario passes with the real honest set
    await run(scenario)
  })
})
