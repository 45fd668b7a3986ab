/**
 * The quorum decision (node/gateway/quorum.ts) over a stand-in one-worker dispatcher (the code
 * under test calls it; the mesh path is covered by test/chain/quorum.spec.ts): distinct workers,
 * the majority decided as soon as it is in (not after the slowest), never a minority answer, a
 * 502 QUORUM_DISAGREEMENT without a majority, evidence for every outvoted vote (late ones too),
 * and limit errors that neither vote nor become evidence against a worker. Then the evidence's
 * life: kept in the gateway's ticket log (real SQLite) across a restart, and turned into the right
 * Settlement call by the checker's `findOutvoted`.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Address, Hex } from 'viem'
import type { Receipt } from '#protocol'
import { findOutvoted, silentLogger, ticketLog, type Disagreement, type FunctionEntry, type HeldReceipt } from '#node'
import { fromLeaves, type SettlementBatchHeader, type SettlementLeaf } from '../../../contracts/abi/leaf.ts'
import { quorumDispatcher, quorumMajority, type QuorumOutcome } from '../../../node/gateway/quorum.ts'
import type { DispatchJob, DispatchOutcome, Dispatcher } from '../../../node/gateway/dispatch.ts'
import { errorResult, job as jobFrame, result as resultFrame } from '../../protocol/fixtures.ts'

const A: Hex = `0x${'aa'.repeat(32)}`
const B: Hex = `0x${'bb'.repeat(32)}`
const C: Hex = `0x${'cc'.repeat(32)}`

/** What each copy answers, in the order copies are made: an output hash, a limit error, or never. */
type Plan = Array<{ output?: Hex, limit?: true, never?: true, gate?: Promise<void> }>

function stand (plan: Plan): { dispatch: Dispatcher, excludes: Array<Set<string> | undefined> } {
  const excludes: Array<Set<string> | undefined> = []
  let i = 0
  const dispatch: Dispatcher = async (job: DispatchJob): Promise<DispatchOutcome> => {
    const k = i++
    excludes.push(job.exclude)
    const p = plan[k]
    const worker: Hex = `0x${String(k + 1).repeat(40)}`
    job.exclude?.add(`peer-${k}`)
    const request = { ...jobFrame(), jobId: `0x${String(k + 1).repeat(64)}` as Hex, ticket: { ...jobFrame().ticket, worker } }
    if (p.never === true) return await new Promise<never>(() => {})
    await (p.gate ?? new Promise(resolve => setTimeout(resolve, 0)))
    const result = p.limit === true ? { ...errorResult(), jobId: request.jobId, attempt: 1 } : { ...resultFrame(), jobId: request.jobId, outputHash: p.output! }
    return { jobId: request.jobId, attempts: [{ attempt: 1, worker: `peer-${k}`, ok: true, ms: 1 }], result, request, worker: { peerId: `peer-${k}`, advert: { address: worker } } as any, dispatchMs: 1 }
  }
  return { dispatch, excludes }
}

const entry = (quorum?: number): FunctionEntry => ({ ref: jobFrame().fn, options: jobFrame().options, env: {}, ...(quorum === undefined ? {} : { quorum }) })
const job = (quorum?: number): DispatchJob => ({ entry: entry(quorum), request: jobFrame().request, inputHash: jobFrame().inputHash, deadline: Date.now() + 10_000 })

describe('gateway: quorum dispatch', () => {
  it('needs a strict majority', () => {
    assert.deepEqual([2, 3, 4, 5, 15].map(quorumMajority), [2, 2, 3, 3, 8])
  })

  it('answers with the majority as soon as it is decided, on distinct workers, and keeps evidence against the outvoted worker, late or not', async () => {
    const recorded: Disagreement[] = []
    // the liar answers first; a second liar and one more honest worker answer only when the test lets them
    let lateLie!: () => void
    let lateTruth!: () => void
    const lie = new Promise<void>(resolve => { lateLie = resolve })
    const truth = new Promise<void>(resolve => { lateTruth = resolve })
    const { dispatch, excludes } = stand([{ output: B }, { output: A }, { output: A }, { output: A }, { output: A }, { output: B, gate: lie }, { output: A, gate: truth }])
    const q = quorumDispatcher({ dispatch, tickets: { recordDisagreement: d => recorded.push(d) }, logger: silentLogger() })
    // answered while two copies have not answered at all: the slowest are not waited for
    const out = await q(job(7)) as QuorumOutcome
    assert.equal(out.result?.outputHash, A, 'the majority output, never the minority')
    assert.deepEqual([out.quorum?.n, out.quorum?.needed, out.quorum?.majority.length], [7, 4, 4])
    assert.ok(excludes.every(e => e !== undefined && e === excludes[0]), 'every copy shares one exclusion set: distinct workers')
    assert.equal(excludes[0]!.size, 7)
    // evidence for the early liar at once, for the late one when it arrives
    assert.deepEqual([...new Set(recorded.map(d => d.minority.receipt.worker))], [`0x${'1'.repeat(40)}`])
    lateLie()
    await new Promise(resolve => setTimeout(resolve, 10))
    assert.deepEqual([...new Set(recorded.map(d => d.minority.receipt.worker))].sort(), [`0x${'1'.repeat(40)}`, `0x${'6'.repeat(40)}`])
    const last = recorded[recorded.length - 1]
    assert.equal(last.minority.receipt.outputHash, B)
    assert.ok(last.majority.length === 4 && last.majority.every(m => m.receipt.outputHash === A))
    assert.ok(last.majority.every(m => m.ticketSignature === jobFrame().ticketSig && m.signature === resultFrame().receiptSig))
    // the late majority vote extends the evidence
    lateTruth()
    await new Promise(resolve => setTimeout(resolve, 10))
    assert.equal(recorded[recorded.length - 1].majority.length, 5)
  })

  it('answers 502 QUORUM_DISAGREEMENT when no output can reach the majority, and proves nothing', async () => {
    const recorded: Disagreement[] = []
    const { dispatch } = stand([{ output: A }, { output: B }, { output: C }])
    const out = await quorumDispatcher({ dispatch, tickets: { recordDisagreement: d => recorded.push(d) }, logger: silentLogger() })(job(3))
    assert.equal(out.result, undefined)
    assert.equal(out.error?.code, 'QUORUM_DISAGREEMENT')
    assert.match(out.error?.message ?? '', /3 workers of this quorum function disagree: 3 different outputs/)
    assert.deepEqual(out.error?.details, { quorum: 3, needed: 2, outputs: 3, agreeing: 1, failed: 0 })
    assert.equal(recorded.length, 0, 'without a majority nobody is known to lie')
    // every vote comes back (for the client's x-peerhost-receipts), none as an answer
    assert.deepEqual((out as QuorumOutcome).quorum?.received?.map(v => v.result.outputHash).sort(), [A, B, C])
    assert.deepEqual((out as QuorumOutcome).quorum?.majority, [])
  })

  it('stops the copies still running once no majority is possible', async () => {
    // quorum 5 needs 3 equal outputs: after four different ones the fifth copy cannot decide anything
    const D: Hex = `0x${'dd'.repeat(32)}`
    const signals: AbortSignal[] = []
    const plan = stand([{ output: A }, { output: B }, { output: C }, { output: D }, { never: true }])
    const dispatch: Dispatcher = async (j) => { signals.push(j.signal!); return await plan.dispatch(j) }
    const out = await quorumDispatcher({ dispatch, logger: silentLogger() })(job(5))
    assert.equal(out.error?.code, 'QUORUM_DISAGREEMENT')
    assert.equal(signals.length, 5)
    assert.ok(signals[4].aborted, 'the pending copy is told to stop')
  })

  it('ends a copy whose worker began streaming its body, and never relays it', async () => {
    const ended: boolean[] = []
    const plan = stand([{ output: A }, { output: A }, { output: A }])
    let k = 0
    const dispatch: Dispatcher = async (j) => {
      const out = await plan.dispatch(j)
      // the first copy's worker streams (its body over the buffered limit, or still being produced)
      return k++ === 0 ? { ...out, result: undefined, stream: { head: {} as any, stream: {} as any, f: {} as any, done: (ok: boolean) => { ended.push(ok) } } } : out
    }
    const out = await quorumDispatcher({ dispatch, logger: silentLogger() })(job(3)) as QuorumOutcome
    assert.equal(out.result?.outputHash, A, 'the two buffered answers decide')
    assert.equal(out.stream, undefined)
    assert.deepEqual(ended, [false], 'the streamed copy\'s stream is closed, as a failure')
    // all copies stream: the client gets a clear error, not a stream nobody compared
    const all = await quorumDispatcher({ dispatch: async (j) => ({ ...(await stand([{ output: A }]).dispatch(j)), result: undefined, stream: { head: {} as any, stream: {} as any, f: {} as any, done: () => {} } }), logger: silentLogger() })(job(3))
    assert.equal(all.stream, undefined)
    assert.equal(all.error?.code, 'LIMIT_RESPONSE_SIZE')
    assert.match(all.error?.message ?? '', /cannot be a streamed body/)
  })

  it('refuses a quorum whose majority exceeds the live workers before dispatching anything', async () => {
    const { dispatch, excludes } = stand([{ output: A }, { output: A }, { output: A }, { limit: true }, { limit: true }])
    const q = quorumDispatcher({ dispatch, liveWorkers: () => 3, logger: silentLogger() })
    const out = await q(job(7))
    assert.equal(out.error?.code, 'NO_WORKER')
    assert.match(out.error?.message ?? '', /needs 4 equal outputs, but this gateway can reach only 3 live workers/)
    assert.deepEqual(out.error?.details, { quorum: 7, needed: 4, live: 3 })
    assert.equal(excludes.length, 0, 'no copy was dispatched (no ticket signed)')
    // a majority the live workers can reach is dispatched: 3 of 5 agree
    const five = await q(job(5)) as QuorumOutcome
    assert.equal(five.result?.outputHash, A)
  })

  it('a limit error neither votes nor becomes evidence; too few answers fail without answering a single vote', async () => {
    const recorded: Disagreement[] = []
    const ok = await quorumDispatcher({ dispatch: stand([{ limit: true }, { output: A }, { output: A }]).dispatch, tickets: { recordDisagreement: d => recorded.push(d) }, logger: silentLogger() })(job(3))
    assert.equal(ok.result?.outputHash, A)
    assert.equal(recorded.length, 0, 'a worker that hit a limit (load) is not proven against')
    const short = await quorumDispatcher({ dispatch: stand([{ limit: true }, { output: A }, { limit: true }]).dispatch, logger: silentLogger() })(job(3))
    assert.equal(short.result, undefined, 'one vote is not a majority: never answered')
    assert.equal(short.error?.code, 'WORKER_FAILED')
    assert.match(short.error?.message ?? '', /only 1 of the 3 workers/)
    // every copy hit the function's limit: the client sees that limit, as with one worker
    const limited = await quorumDispatcher({ dispatch: stand([{ limit: true }, { limit: true }, { limit: true }]).dispatch, logger: silentLogger() })(job(3))
    assert.equal(limited.result?.error?.code, 'LIMIT_TIMEOUT')
  })

  it('passes single functions through untouched and refuses WebSocket sessions of a quorum function', async () => {
    const { dispatch, excludes } = stand([{ output: C }])
    dispatch.session = async () => ({ jobId: A, attempts: [] })
    const q = quorumDispatcher({ dispatch, logger: silentLogger() })
    const out = await q(job()) as QuorumOutcome
    assert.equal(out.quorum, undefined)
    assert.equal(out.result?.outputHash, C)
    assert.equal(excludes[0], undefined)
    assert.equal((await q.session!(job())).jobId, A)
    const refused = await q.session!(job(3))
    assert.equal(refused.error?.code, 'BAD_REQUEST')
    assert.match(refused.error?.message ?? '', /quorum function/)
  })
})

describe('gateway: evidence against an outvoted worker, and its proof', () => {
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-outvoted-'))
  after(() => rmSync(dir, { recursive: true, force: true }))
  const W: Address = `0x${'9'.repeat(40)}`
  const held = (worker: Address, output: Hex, jobId: Hex): HeldReceipt => ({
    receipt: { jobId, attempt: 1, functionId: `0x${'f'.repeat(64)}`, jobHash: `0x${'e'.repeat(64)}`, inputHash: `0x${'d'.repeat(64)}`, outputHash: output, worker, gateway: `0x${'7'.repeat(40)}`, fee: 5n, epoch: 3n, deadline: 99n },
    signature: `0x${'01'.repeat(65)}`,
    ticketSignature: `0x${'02'.repeat(65)}`
  })
  const minority = held(W, B, `0x${'31'.repeat(32)}`)
  const evidence: Disagreement = { minority, projectId: `0x${'c'.repeat(64)}`, majority: [held(`0x${'5'.repeat(40)}`, A, `0x${'32'.repeat(32)}`), held(`0x${'3'.repeat(40)}`, A, `0x${'33'.repeat(32)}`)] }
  const leafOf = (jobId: Hex, output: Hex, index: bigint): SettlementLeaf => ({
    index, cumulativeFee: 5n * (index + 1n), jobId, attempt: 1, functionId: minority.receipt.functionId, jobHash: minority.receipt.jobHash, inputHash: minority.receipt.inputHash,
    outputHash: output, fee: 5n, deadline: 99n, v: 27, r: `0x${'0a'.repeat(32)}`, s: `0x${'0b'.repeat(32)}`
  })

  it('keeps the evidence in the ticket log across a restart (SQLite), bigints intact, pruned with its epoch', () => {
    const log = ticketLog({ dataDir: dir })
    log.recordDisagreement(evidence)
    // recorded again with a longer majority: replaced, not duplicated
    log.recordDisagreement({ ...evidence, majority: [...evidence.majority, held(`0x${'4'.repeat(40)}`, A, `0x${'34'.repeat(32)}`)] })
    log.close()
    const reopened = ticketLog({ dataDir: dir })
    assert.equal(reopened.disagreements(), 1)
    const got = reopened.disagreement(minority.receipt.jobId.toUpperCase().replace('0X', '0x') as Hex, 1, W)
    assert.equal(got?.majority.length, 3)
    assert.equal(got?.minority.receipt.fee, 5n)
    assert.equal(got?.minority.receipt.epoch, 3n)
    assert.equal(reopened.disagreement(minority.receipt.jobId, 2, W), undefined, 'another attempt is another ticket')
    reopened.prune(4n)
    assert.equal(reopened.disagreements(), 0)
    reopened.close()
  })

  it('proves an outvoted leaf with the majority receipts, signers ascending; equivocation when the leaf claims another output; nothing below the contract\'s quorum', () => {
    const other = leafOf(`0x${'41'.repeat(32)}`, A, 0n)
    const lookup = (jobId: Hex, attempt: number, worker: Address): Disagreement | undefined =>
      jobId === minority.receipt.jobId && attempt === 1 && worker === W ? evidence : undefined
    const header: SettlementBatchHeader = { worker: W, projectId: `0x${'bb'.repeat(32)}`, gateway: `0x${'9'.repeat(40)}`, epoch: 3n, root: fromLeaves([leafOf(minority.receipt.jobId, B, 1n)], 10n).root, count: 2, total: 10n, bond: 1n }
    const batch = { header, worker: W }
    // the leaf claims the output the worker signed: disagreement
    const signed = [other, leafOf(minority.receipt.jobId, B, 1n)]
    const d = findOutvoted(signed, 10n, batch, lookup, 2)
    assert.equal(d.finding?.proof, 'proveDisagreement')
    const [named, leaf, proof, receipts, sigs, ticketSigs] = d.finding!.args as [SettlementBatchHeader, SettlementLeaf, Hex[], Receipt[], Hex[], Hex[]]
    assert.deepEqual(named, header, 'the proof names the batch by its committed header')
    assert.equal(leaf.index, 1n)
    assert.deepEqual(proof, fromLeaves(signed, 10n).proof(1))
    assert.deepEqual(receipts.map(r => r.worker), [`0x${'3'.repeat(40)}`, `0x${'5'.repeat(40)}`], 'ascending signers, as Settlement requires')
    assert.equal(sigs.length, 2)
    assert.equal(ticketSigs.length, 2)
    // fewer majority receipts than disagreementQuorum: reported, not sent (it would revert)
    const short = findOutvoted(signed, 10n, batch, lookup, 3)
    assert.equal(short.finding, undefined)
    assert.match(short.unprovable[0], /fewer than the contract's disagreementQuorum of 3/)
    // the worker hides its lie by claiming the majority's output in its batch: equivocation with its own receipt
    const hidden = [other, leafOf(minority.receipt.jobId, A, 1n)]
    const e = findOutvoted(hidden, 10n, batch, lookup, 2)
    assert.equal(e.finding?.proof, 'proveEquivocation')
    assert.deepEqual(e.finding?.args.slice(3), [B, minority.signature])
    // no evidence for this worker: nothing
    assert.equal(findOutvoted(signed, 10n, { ...batch, worker: `0x${'8'.repeat(40)}` }, lookup, 2).finding, undefined)
  })
})
