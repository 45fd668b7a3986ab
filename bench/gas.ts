/**
 * Gas of PeerHost's contracts (`npm run bench:gas`): every external call once on the in-process
 * EDR chain, then settlement cost per request when one batch covers 1, 100 and 10,000 requests
 * (commitBatch + the worker's finalizing commitBatches, which pays it at once, divided by the batch size; the tickets are really
 * signed and the tree really built), against the on-chain fallback per request
 * (requestExecution + commit + reveal, redundancy 1; settle + withdraw shown separately).
 * Target: ≤ 100 gas per request at 10,000 requests per batch.
 */
import { keccak256, toHex, type Hex, type TransactionReceipt } from 'viem'
import { batchHeader, buildSettlementBatch, peerBindingTypedData, type SettlementBatchHeader } from '../contracts/abi/index.ts'
import { signReceipt } from '../protocol/eip712.ts'
import {
  ETHER, PARAMS, commit, endEpoch, executionCommitment, increaseTime, now, send, setup, signedJob, type ActorName, type World
} from '../test/contracts/fixture.ts'

const rows: Array<[string, bigint]> = []
const world: World = await setup()

async function measure (label: string, p: Promise<TransactionReceipt>): Promise<bigint> {
  const r = await p
  rows.push([label, r.gasUsed])
  return r.gasUsed
}
const tx = async (from: ActorName, c: Parameters<typeof send>[2], fn: string, args: readonly unknown[], value?: bigint) => await send(world, from, c, fn, args, value)

// ---- per call
await measure('FunctionRegistry.deploy (new project, 2 functions)', tx('w1', 'FunctionRegistry', 'deploy', [world.actors.w1.address, 'bench', '0x01711220' + 'ab'.repeat(32), keccak256('0x01'), ['a', 'b'], 0n]))
await measure('FunctionRegistry.deploy (new version)', tx('w1', 'FunctionRegistry', 'deploy', [world.actors.w1.address, 'bench', '0x01711220' + 'cd'.repeat(32), keccak256('0x02'), ['a', 'b'], 0n]))
await measure('FunctionRegistry.rollback', tx('owner', 'FunctionRegistry', 'deploy', [world.actors.owner.address, 'demo', '0x0155', keccak256('0x03'), ['hello'], 0n]).then(async () => await tx('owner', 'FunctionRegistry', 'rollback', [world.projectId, 1])))
await measure('FunctionRegistry.transferProject', tx('owner', 'FunctionRegistry', 'transferProject', [world.projectId, world.actors.stranger.address]))
await measure('WorkerStaking.stake (first)', tx('challenger', 'WorkerStaking', 'stake', [1], ETHER))
await measure('WorkerStaking.stake (top up)', tx('challenger', 'WorkerStaking', 'stake', [1], ETHER))
{
  const deadline = (await now(world)) + 600n
  const peerId: Hex = '0x002408011220' + '7d'.repeat(32) as Hex
  const sig = await world.actors.w1.account.signTypedData(peerBindingTypedData(world.chainId, world.addresses.WorkerStaking, { account: world.actors.w1.address, peerId, nonce: 0n, deadline }))
  await measure('WorkerStaking.bindPeer', tx('stranger', 'WorkerStaking', 'bindPeer', [world.actors.w1.address, peerId, deadline, sig, `0x${'55'.repeat(64)}`]))
}
await measure('WorkerStaking.setGatewayInfo', tx('gateway', 'WorkerStaking', 'setGatewayInfo', ['https://gateway.example.org', '0x' + '42'.repeat(32)]))
await measure('WorkerStaking.requestWithdrawal', tx('challenger', 'WorkerStaking', 'requestWithdrawal', [ETHER]))
await measure('Settlement.deposit', tx('owner', 'Settlement', 'deposit', [world.projectId], ETHER))
await measure('Settlement.setGatewayAllowance', tx('owner', 'Settlement', 'setGatewayAllowance', [world.projectId, world.actors.gateway.address, 100n * ETHER]))
await measure('Settlement.requestEscrowWithdrawal', tx('owner', 'Settlement', 'requestEscrowWithdrawal', [world.projectId, ETHER]))

// ---- the fallback path, per request
const fee = 10n ** 15n
const fallback: Record<string, bigint> = {}
{
  // w1 alone in the draw pool: redundancy 1 draws it (the pool entry is a one-time cost per worker)
  fallback.join = await measure('ExecutionCoordinator.join (once per worker)', tx('w1', 'ExecutionCoordinator', 'join', [keccak256(toHex('w1-key'))]))
  const deadline = (await now(world)) + 120n
  fallback.request = await measure('ExecutionCoordinator.requestExecution (by value)', tx('gateway', 'ExecutionCoordinator', 'requestExecution', [{ functionId: world.functionId, inputHash: keccak256('0x01'), inputCid: '0x01551220' + 'ee'.repeat(32), redundancy: 1, fee, deadline, fromEscrow: false }], fee))
  const id = await world.read.coordinator.read.requestCount()
  const out = keccak256(toHex('out'))
  const salt = keccak256(toHex('salt'))
  fallback.commit = await measure('ExecutionCoordinator.commit', tx('w1', 'ExecutionCoordinator', 'commit', [id, executionCommitment(id, world.actors.w1.address, out, salt)]))
  fallback.reveal = await measure('ExecutionCoordinator.reveal (finalizes)', tx('w1', 'ExecutionCoordinator', 'reveal', [id, out, salt, '0x01551220' + 'ff'.repeat(32)]))
  fallback.settle = await measure('ExecutionCoordinator.settle', tx('stranger', 'ExecutionCoordinator', 'settle', [id]))
  fallback.withdraw = await measure('ExecutionCoordinator.withdraw', tx('w1', 'ExecutionCoordinator', 'withdraw', []))
  const deadline2 = (await now(world)) + 120n
  await measure('ExecutionCoordinator.requestExecution (from escrow)', tx('gateway', 'ExecutionCoordinator', 'requestExecution', [{ functionId: world.functionId, inputHash: keccak256('0x01'), inputCid: '0x0155', redundancy: 3, fee, deadline: deadline2, fromEscrow: true }]))
}

// ---- settlement per batch size
const sizes = [1, 100, 10_000]
let bigBatch: ReturnType<typeof buildSettlementBatch> | undefined
const perBatch: Array<{ n: number, commit: bigint, finalize: bigint, withdraw: bigint, prove: bigint, build: number, batchId: Hex, header: SettlementBatchHeader, worker: ActorName }> = []
for (const [i, n] of sizes.entries()) {
  const worker = (['w2', 'w3', 'w4'] as const)[i]
  // one-off per lane (worker, project, gateway): the batch ring's slots, so the commit rewrites one
  const prep = tx(worker, 'Settlement', 'prepareBatchSlots', [world.actors[worker].address, world.projectId, world.actors.gateway.address])
  if (i === 0) await measure('Settlement.prepareBatchSlots (once per lane)', prep); else await prep
  const epoch = await world.read.settlement.read.currentEpoch()
  const started = performance.now()
  const items = []
  for (let k = 0; k < n; k++) items.push((await signedJob(world, { worker, epoch, fee })).item)
  const batch = buildSettlementBatch(items)
  const build = performance.now() - started
  await endEpoch(world)
  const args = [world.projectId, epoch, world.actors.gateway.address, batch.root, batch.count, batch.total, '0x01551220' + '77'.repeat(32)] as const
  const commitGas = (await tx(worker, 'Settlement', 'commitBatch', args, PARAMS.minBatchBond)).gasUsed
  const batchId = await world.read.settlement.read.batchIdOf([world.actors[worker].address, world.projectId, epoch, world.actors.gateway.address])
  const header = batchHeader({ worker: world.actors[worker].address, projectId: world.projectId, gateway: world.actors.gateway.address, epoch, root: batch.root, count: batch.count, total: batch.total, bond: PARAMS.minBatchBond })
  // the same leaves committed by w5 are all invalid for w5 (tickets name another worker): the
  // fault proof of the deepest leaf shows what a challenge costs at this size
  const bad = await commit(world, 'w5', epoch, batch)
  const last = n - 1
  const prove = (await tx('challenger', 'Settlement', 'proveInvalidLeaf', [bad.header, batch.leaves[last], batch.proof(last)])).gasUsed
  bigBatch = batch
  perBatch.push({ n, commit: commitGas, finalize: 0n, withdraw: 0n, prove, build, batchId, header, worker })
}
// data availability on the 10,000-leaf batch: ask for the last leaf, the worker publishes it
{
  const big = perBatch[perBatch.length - 1]
  await measure('Settlement.requestLeaf', tx('challenger', 'Settlement', 'requestLeaf', [big.header, BigInt(big.n - 1)], PARAMS.minBatchBond))
  await measure('Settlement.answerLeaf (10,000 leaves)', tx(big.worker, 'Settlement', 'answerLeaf', [big.header, bigBatch!.leaves[big.n - 1], bigBatch!.proof(big.n - 1)]))
}
await increaseTime(world, PARAMS.challengeWindow + 2n * PARAMS.commitWindow)
for (const b of perBatch) {
  // the worker finalizes its own batch: paid in the same transaction; a withdrawal only for what
  // was credited besides (the answered request's bond of the 10,000-leaf batch)
  b.finalize = (await tx(b.worker, 'Settlement', 'commitBatches', [[], [b.header]])).gasUsed
  if (await world.read.settlement.read.owed([world.actors[b.worker].address]) > 0n) await tx(b.worker, 'Settlement', 'withdraw', [])
}
rows.push(['Settlement.commitBatch', perBatch[0].commit])
rows.push(['Settlement.proveInvalidLeaf (1 leaf, voids + slashes)', perBatch[0].prove])
rows.push(['Settlement.commitBatches (the worker finalizes its batch, paid at once)', perBatch[0].finalize])
await increaseTime(world, PARAMS.epochLength + PARAMS.commitWindow)
await measure('Settlement.withdrawEscrow', tx('owner', 'Settlement', 'withdrawEscrow', [world.projectId]))
await increaseTime(world, PARAMS.unbondingPeriod)
await measure('WorkerStaking.withdraw', tx('challenger', 'WorkerStaking', 'withdraw', []))

{
  const epoch = await world.read.settlement.read.currentEpoch()
  const j = await signedJob(world, { worker: 'w1', epoch, fee })
  await endEpoch(world)
  const c = await commit(world, 'w1', epoch, { ...buildSettlementBatch([j.item]), count: 2 })
  await tx('challenger', 'Settlement', 'requestLeaf', [c.header, 1n], PARAMS.minBatchBond)
  await increaseTime(world, PARAMS.commitWindow)
  await measure('Settlement.proveUnanswered (voids + slashes)', tx('stranger', 'Settlement', 'proveUnanswered', [c.header, 1n]))
}
{
  const j = await signedJob(world, { worker: 'w1', epoch: await world.read.settlement.read.currentEpoch() })
  const b = { ...j.receipt, outputHash: keccak256(toHex('another output')) }
  const sigB = await signReceipt(world.actors.w1.account, world.domain, b)
  await measure('Settlement.proveReceiptEquivocation (slashes)', tx('challenger', 'Settlement', 'proveReceiptEquivocation', [j.ticket, j.ticketSignature, j.receipt, j.receiptSignature, b, sigB]))
}

await world.close()

const fallbackCore = fallback.request + fallback.commit + fallback.reveal
const fmt = (x: bigint | number): string => Number(x).toLocaleString('en-US')
console.log('## Gas per external call\n')
console.log('| call | gas |\n|---|---:|')
for (const [label, gas] of rows) console.log(`| ${label} | ${fmt(gas)} |`)
console.log('\n## Settlement gas per request vs the on-chain fallback\n')
console.log('| requests per batch | commitBatch | commitBatches (finalize own, paid at once) | withdraw | total | gas per request | proveInvalidLeaf at this depth | ticket signing + tree build (ms) |')
console.log('|---:|---:|---:|---:|---:|---:|---:|---:|')
for (const b of perBatch) {
  const total = b.commit + b.finalize + b.withdraw
  console.log(`| ${fmt(b.n)} | ${fmt(b.commit)} | ${fmt(b.finalize)} | ${fmt(b.withdraw)} | ${fmt(total)} | ${fmt(Math.round(Number(total) / b.n * 10) / 10)} | ${fmt(b.prove)} | ${b.build.toFixed(0)} |`)
}
console.log(`\nFallback per request (redundancy 1): requestExecution + commit + reveal = ${fmt(fallbackCore)} gas; with settle + withdraw = ${fmt(fallbackCore + fallback.settle + fallback.withdraw)} gas.`)
const at10k = perBatch[perBatch.length - 1]
const per = Number(at10k.commit + at10k.finalize + at10k.withdraw) / at10k.n
console.log(`Target ≤ 100 gas/request at 10,000: ${per.toFixed(1)} → ${per <= 100 ? 'met' : 'MISSED'}; ${(Number(fallbackCore) / per).toFixed(0)}× cheaper than the fallback.`)
process.exit(0)
