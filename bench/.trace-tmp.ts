// throwaway: opcode gas breakdown of commitBatch and the finalizing commitBatches (not committed)
import { buildSettlementBatch, batchHeader } from '../contracts/abi/index.ts'
import { PARAMS, endEpoch, increaseTime, send, setup, signedJob } from '../test/contracts/fixture.ts'
const world = await setup()
await send(world, 'w2', 'Settlement', 'prepareBatchSlots', [world.actors.w2.address, world.projectId, world.actors.gateway.address])
const epoch = await world.read.settlement.read.currentEpoch()
const items = []
for (let k = 0; k < 3; k++) items.push((await signedJob(world, { worker: 'w2', epoch, fee: 10n ** 13n })).item)
const batch = buildSettlementBatch(items)
await endEpoch(world)
const r1 = await send(world, 'w2', 'Settlement', 'commitBatch', [world.projectId, epoch, world.actors.gateway.address, batch.root, batch.count, batch.total, '0x01551220' + '77'.repeat(32)], PARAMS.minBatchBond)
const header = batchHeader({ worker: world.actors.w2.address, projectId: world.projectId, gateway: world.actors.gateway.address, epoch, root: batch.root, count: batch.count, total: batch.total, bond: PARAMS.minBatchBond })
await increaseTime(world, PARAMS.challengeWindow + 1n)
const r2 = await send(world, 'w2', 'Settlement', 'commitBatches', [[], [header]])
for (const [name, r] of [['commitBatch', r1], ['finalize', r2]] as const) {
  const tx = await world.publicClient.getTransaction({ hash: r.transactionHash })
  const data = Buffer.from(tx.input.slice(2), 'hex')
  let cd = 0; for (const b of data) cd += b === 0 ? 4 : 16
  const t = await world.request('debug_traceTransaction', [r.transactionHash, { disableStorage: true, disableMemory: true }])
  const by: Record<string, number> = {}
  const logs = t.structLogs
  for (let i = 0; i < logs.length; i++) {
    const l = logs[i]
    let cost = l.gasCost
    // calls: gasCost includes forwarded gas; use gas difference to next op at same depth
    if (['CALL', 'STATICCALL', 'DELEGATECALL'].includes(l.op)) {
      let j = i + 1; while (j < logs.length && logs[j].depth > l.depth) j++
      cost = j < logs.length ? l.gas - logs[j].gas : cost
    }
    if (l.depth > 1) continue
    const k = ['SLOAD', 'SSTORE', 'LOG1', 'LOG2', 'LOG3', 'LOG4', 'CALL', 'STATICCALL', 'KECCAK256', 'TSTORE', 'TLOAD'].includes(l.op) ? l.op : 'other'
    by[k] = (by[k] ?? 0) + cost
  }
  console.log(name, 'gasUsed', r.gasUsed, 'calldata', cd, 'bytes', data.length, JSON.stringify(by))
}
await world.close()
