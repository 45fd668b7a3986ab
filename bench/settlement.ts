/**
 * `npm run bench:settlement` (bench/settlement.ts): settlement cost and delay measured with the
 * real worker settler (node/settlement/settler.ts) on a real Hardhat chain.
 *
 * 1. Gas per request: for each batch size n and run length k, a fresh staked worker's receipt log
 *    gets n really signed (ticket, receipt) pairs in each of k consecutive epochs; at each epoch's
 *    end the settler ticks once (it builds and publishes the batch, then sends one transaction:
 *    the commit plus the finalizations that are due); at the run's end one tick finalizes the rest
 *    and the worker withdraws once. Every transaction the settler sends is recorded from its
 *    receipt (a composed chain client); gas per request = the sum of their gasUsed ÷ requests
 *    settled (n × k). The builder's deposit and allowance are one-off setup, printed apart. Chain
 *    time moves with evm_increaseTime.
 * 2. Delay on the devnet's settings (15 s epochs, commit and challenge windows of 2 epochs, a
 *    block every second, the settler's default 2 s tick and default grace): wall time from the
 *    end of the epoch to the batch committed, finalized, and its fees and bond in the worker's wallet.
 *
 *   node bench/settlement.ts [--sizes 1000,10000] [--epochs 1,4] [--epoch 15] [--no-gas] [--no-delay]
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { type TransactionReceipt } from 'viem'
import { generatePrivateKey } from 'viem/accounts'
import { settlementAbi } from '#contracts'
import { projectId } from '#protocol'
import { fastSigner, receiptLog, settler, silentLogger, type ChainClient } from '#node'
import { devnetSettlementParams } from '../bin/commands/devnet.ts'
import { startSettlementChain, type SettlementChain } from '../test/chain/helpers.ts'
import { FN, fundProject, party, PROJECT, serve, stakeWorker } from '../test/chain/settlement-helpers.ts'

const { values } = parseArgs({ options: { sizes: { type: 'string', default: '1000,10000' }, epochs: { type: 'string', default: '1,4' }, 'no-gas': { type: 'boolean', default: false }, epoch: { type: 'string', default: '15' }, 'no-delay': { type: 'boolean', default: false } } })
const sizes = values.sizes.split(',').map(Number)
const epochsList = values.epochs.split(',').map(Number)
const GWEI = 1_000_000_000n
const logger = silentLogger()
const gateway = fastSigner(generatePrivateKey())
const dir = mkdtempSync(join(tmpdir(), 'peerhost-bench-settle-'))
const cpu0 = process.cpuUsage()
const wall0 = performance.now()

/** A chain client that records the receipt of every transaction the settler sends. */
function recording (client: ChainClient, sent: Array<{ fn: string, receipt: TransactionReceipt }>): ChainClient {
  return { ...client, async send (call, options) { const receipt = await client.send(call, options); sent.push({ fn: String(call.functionName), receipt }); return receipt } }
}

/** Params of the gas run: the devnet's shape (commit and challenge windows of 2 epochs) with 10-minute epochs, so signing 10,000 tickets fits in one epoch. */
const GAS_PARAMS = { epochLength: 600n, commitWindow: 1200n, challengeWindow: 1200n }

async function gasRun (chain: SettlementChain): Promise<void> {
  await chain.registerProject(PROJECT, [FN])
  const setup = await fundProject(chain, gateway.address, 10n ** 18n * 500n, 10n ** 18n * 100n).then(async () => {
    // the setup's gas, from the deployer's last two transactions (deposit, setGatewayAllowance)
    const block = await chain.publicClient.getBlockNumber()
    let gas = 0n
    for (const b of [block - 1n, block]) {
      const bl = await chain.publicClient.getBlock({ blockNumber: b, includeTransactions: true })
      for (const t of bl.transactions) if (typeof t !== 'string') gas += (await chain.publicClient.getTransactionReceipt({ hash: t.hash })).gasUsed
    }
    return gas
  })
  console.log(`one-off builder setup (deposit + setGatewayAllowance, which pays for the allowance ring's slots): ${setup.toLocaleString('en-US')} gas`)
  console.log(`chain: ${GAS_PARAMS.epochLength} s epochs, commit and challenge windows of ${GAS_PARAMS.commitWindow} s (the devnet's shape); the settler ticks once at each epoch's end\n`)
  let printedLane = false
  console.log('| requests per batch | epochs (one batch each) | requests settled | transactions (gas) | total gas | gas per request | batch document | settler build + commit ms, last epoch (sign excluded) |')
  console.log('|---|---|---|---|---|---|---|---|')
  for (const n of sizes) {
    for (const k of epochsList) {
      const w = await party(chain, '100')
      await stakeWorker(w)
      // one-off worker setup, printed apart: the worker pays for its lane's batch ring (Settlement.prepareBatchSlots)
      const prepared = await w.client.send({ address: chain.addresses.Settlement, abi: settlementAbi, functionName: 'prepareBatchSlots', args: [w.signer.address, projectId(chain.deployer, PROJECT), gateway.address] })
      if (!printedLane) { console.log(`one-off worker setup per lane (worker, project, gateway): prepareBatchSlots ${prepared.gasUsed.toLocaleString('en-US')} gas (${await chain.read<bigint>('batchRing')} slots)\n`); printedLane = true }
      const dataDir = join(dir, `gas-${n}-${k}`)
      const receipts = receiptLog({ dataDir, pruneIntervalMs: 0 })({ logger })
      const sent: Array<{ fn: string, receipt: TransactionReceipt }> = []
      const s = settler({ dataDir, intervalMs: 0, graceSeconds: 0n })({ client: recording(w.client, sent), receipts, publish: chain.publish, logger })
      let commitMs = 0
      // k consecutive epochs of n requests: each tick commits the epoch that just ended and
      // finalizes the batches whose challenge window is over, in one transaction
      for (let i = 0; i < k; i++) {
        const e = await chain.read<bigint>('currentEpoch')
        await serve(w.client.domain, chain.deployer, receipts, gateway, w.signer, e, n, j => GWEI * BigInt(1000 + (j % 97)), `gas-${n}-${k}-${i}`)
        await chain.advanceTo(chain.clock.epochEnd(e) + 1n)
        const t0 = performance.now()
        const r = await s.tick()
        commitMs = performance.now() - t0
        if (r.committed !== 1) throw new Error(`the ${n}-request batch of epoch ${e} was not committed: ${JSON.stringify(r)} ${s.batches().at(-1)?.error ?? ''}`)
      }
      // the run's end: the last batches' windows close, one tick finalizes them all, one withdrawal
      await chain.advanceTo((await chain.chainNow()) + chain.clock.challengeWindow + 1n)
      await s.tick()
      if (s.batches().some(b => b.state !== 'finalized')) throw new Error(`not every batch finalized: ${JSON.stringify(s.batches().map(b => [b.state, b.error]))}`)
      // finalizing transactions pay the worker at once; a withdrawal only for what is still credited
      await s.withdraw()
      const batches = s.batches()
      if (batches.length !== k || batches.some(b => b.count !== n) || await s.owed() !== 0n) throw new Error(`${batches.length} batches, ${await s.owed()} still owed`)
      const docBytes = statSync(join(chain.dir, 'blobs', batches[0].dataCid)).size
      const total = sent.reduce((g, x) => g + x.receipt.gasUsed, 0n)
      const fns = [...new Set(sent.map(x => x.fn))]
      const breakdown = fns.map(fn => { const xs = sent.filter(x => x.fn === fn); return `${xs.length} × ${fn} (${xs.reduce((g, x) => g + x.receipt.gasUsed, 0n).toLocaleString('en-US')})` }).join(', ')
      if (sent.some(x => !['commitBatch', 'commitBatches', 'withdraw'].includes(x.fn))) throw new Error(`unexpected transactions: ${sent.map(x => x.fn).join(', ')}`)
      console.log(`| ${n.toLocaleString('en-US')} | ${k} | ${(n * k).toLocaleString('en-US')} | ${breakdown} | ${total.toLocaleString('en-US')} | **${(Number(total) / (n * k)).toFixed(1)}** | ${(docBytes / 1024 / 1024).toFixed(2)} MiB | ${commitMs.toFixed(0)} |`)
      s.close()
      receipts.close()
    }
  }
}

async function delayRun (epochSeconds: number): Promise<void> {
  const chain = await startSettlementChain(devnetSettlementParams(epochSeconds))
  try {
    await chain.rpc('evm_setIntervalMining', [1000])
    await chain.registerProject(PROJECT, [FN])
    await fundProject(chain, gateway.address, 10n ** 18n, 10n ** 17n)
    const w = await party(chain)
    await stakeWorker(w)
    const dataDir = join(dir, 'delay')
    const receipts = receiptLog({ dataDir, pruneIntervalMs: 0 })({ logger })
    // the devnet worker's settler: default tick and grace
    const s = settler({ dataDir })({ client: w.client, receipts, publish: chain.publish, logger })
    const e = await chain.read<bigint>('currentEpoch')
    await serve(w.client.domain, chain.deployer, receipts, gateway, w.signer, e, 20, () => GWEI * 1000n, 'delay')
    // delays in chain time: blocks come every second, and during setup (several transactions a
    // second, each in its own block with a strictly later timestamp) the chain runs ahead of the
    // wall clock, so the epoch's end is read on the chain's clock, not converted to wall time
    const end = chain.clock.epochEnd(e)
    const at: Record<string, bigint> = {}
    const until = Date.now() + (epochSeconds * 12 + 60) * 1000
    const wallet = async (): Promise<bigint> => await chain.publicClient.getBalance({ address: w.signer.address })
    let afterCommit = 0n
    while (Date.now() < until && at.paid === undefined) {
      const b = s.batches()[0]
      const t = await chain.chainNow()
      if (b !== undefined && at.committed === undefined && ['committed', 'finalized'].includes(b.state)) { at.committed = t; afterCommit = await wallet() }
      if (b?.state === 'finalized' && at.finalized === undefined) at.finalized = t
      // the finalizing transaction pays the worker (fees + bond) at once: its wallet rises
      if (at.finalized !== undefined && (await wallet() > afterCommit || await s.owed() > 0n)) at.paid = t
      await new Promise(resolve => setTimeout(resolve, 200))
    }
    const sec = (t?: bigint): string => t === undefined ? 'not reached' : `${Number(t - end)} s`
    console.log(`\ndevnet settings: ${epochSeconds} s epochs, commit window ${2 * epochSeconds} s, challenge window ${2 * epochSeconds} s, a block every 1 s, settler tick 2 s, grace ${Number(chain.clock.commitWindow) / 3} s`)
    console.log('| from the end of the epoch to | chain time (one block a second: ±1 s) |')
    console.log('|---|---|')
    console.log(`| batch committed | ${sec(at.committed)} |`)
    console.log(`| batch finalized | ${sec(at.finalized)} |`)
    console.log(`| fees and bond in the worker's wallet (paid by the finalizing transaction) | ${sec(at.paid)} |`)
    s.close()
    receipts.close()
  } finally {
    await chain.close()
  }
}

try {
  console.log(`machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.versions.node}`)
  if (values['no-gas'] !== true) {
    const chain = await startSettlementChain(GAS_PARAMS)
    try { await gasRun(chain) } finally { await chain.close() }
  }
  if (values['no-delay'] !== true) await delayRun(Number(values.epoch))
  const cpu = process.cpuUsage(cpu0)
  console.log(`\nbench process: ${((performance.now() - wall0) / 1000).toFixed(1)} s wall, ${((cpu.user + cpu.system) / 1e6).toFixed(1)} s CPU (user+sys; the Hardhat node is another process)`)
} finally {
  rmSync(dir, { recursive: true, force: true })
}
