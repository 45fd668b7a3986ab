/**
 * `npm run bench:settlement` (bench/settlement.ts): settlement cost and delay measured with the
 * real worker settler (node/settlement/settler.ts) on a real Hardhat chain.
 *
 * 1. Gas per request: for each batch size, a fresh staked worker's receipt log gets that many
 *    really signed (ticket, receipt) pairs of one epoch; the settler builds, publishes and commits
 *    the batch, finalizes it after the challenge window and withdraws. Every transaction the
 *    settler sends is recorded from its receipt (a composed chain client); gas per request = the
 *    sum of their gasUsed ÷ requests settled. The builder's deposit and allowance are one-off
 *    setup, printed apart. Chain time moves with evm_increaseTime.
 * 2. Delay on the devnet's settings (15 s epochs, commit and challenge windows of 2 epochs, a
 *    block every second, the settler's default 2 s tick and default grace): wall time from the
 *    end of the epoch to the batch committed, finalized, and the worker's balance withdrawable.
 *
 *   node bench/settlement.ts [--sizes 1000,10000] [--epoch 15] [--no-gas] [--no-delay]
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { type TransactionReceipt } from 'viem'
import { generatePrivateKey } from 'viem/accounts'
import { fastSigner, receiptLog, settler, silentLogger, type ChainClient } from '#node'
import { devnetSettlementParams } from '../bin/commands/devnet.ts'
import { startSettlementChain, type SettlementChain } from '../test/chain/helpers.ts'
import { FN, fundProject, party, PROJECT, serve, stakeWorker } from '../test/chain/settlement-helpers.ts'

const { values } = parseArgs({ options: { sizes: { type: 'string', default: '1000,10000' }, 'no-gas': { type: 'boolean', default: false }, epoch: { type: 'string', default: '15' }, 'no-delay': { type: 'boolean', default: false } } })
const sizes = values.sizes.split(',').map(Number)
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

async function gasRun (chain: SettlementChain): Promise<void> {
  await chain.registerProject(PROJECT, [FN])
  const setup = await fundProject(chain, gateway.address, 10n ** 18n * 50n, 10n ** 18n * 10n).then(async () => {
    // the setup's gas, from the deployer's last two transactions (deposit, setGatewayAllowance)
    const block = await chain.publicClient.getBlockNumber()
    let gas = 0n
    for (const b of [block - 1n, block]) {
      const bl = await chain.publicClient.getBlock({ blockNumber: b, includeTransactions: true })
      for (const t of bl.transactions) if (typeof t !== 'string') gas += (await chain.publicClient.getTransactionReceipt({ hash: t.hash })).gasUsed
    }
    return gas
  })
  console.log(`one-off builder setup (deposit + setGatewayAllowance): ${setup.toLocaleString('en-US')} gas\n`)
  console.log('| requests per batch | commitBatch gas | finalizeBatch gas | withdraw gas | total gas | gas per request | batch document | build + commit ms (sign excluded) |')
  console.log('|---|---|---|---|---|---|---|---|')
  for (const n of sizes) {
    const w = await party(chain, '100')
    await stakeWorker(w)
    const dataDir = join(dir, `gas-${n}`)
    const receipts = receiptLog({ dataDir, pruneIntervalMs: 0 })({ logger })
    const sent: Array<{ fn: string, receipt: TransactionReceipt }> = []
    const s = settler({ dataDir, intervalMs: 0, graceSeconds: 0n })({ client: recording(w.client, sent), receipts, publish: chain.publish, logger })
    const e = await chain.read<bigint>('currentEpoch')
    await serve(w.client.domain, chain.deployer, receipts, gateway, w.signer, e, n, i => GWEI * BigInt(1000 + (i % 97)), `gas-${n}`)
    await chain.advanceTo(chain.clock.epochEnd(e) + 1n)
    const t0 = performance.now()
    const r1 = await s.tick()
    const commitMs = performance.now() - t0
    if (r1.committed !== 1) throw new Error(`the ${n}-request batch was not committed: ${JSON.stringify(r1)} ${s.batches()[0]?.error ?? ''}`)
    await chain.advanceTo((await chain.chainNow()) + chain.clock.challengeWindow + 1n)
    if ((await s.tick()).finalized !== 1) throw new Error(`the ${n}-request batch was not finalized: ${s.batches()[0]?.error ?? ''}`)
    const paid = await s.withdraw()
    const b = s.batches()[0]
    if (b.count !== n || paid === 0n) throw new Error(`batch of ${b.count} leaves, withdrew ${paid}`)
    const docBytes = statSync(join(chain.dir, 'blobs', b.dataCid)).size
    const gasOf = (fn: string): bigint => sent.filter(x => x.fn === fn).reduce((g, x) => g + x.receipt.gasUsed, 0n)
    const total = sent.reduce((g, x) => g + x.receipt.gasUsed, 0n)
    if (sent.some(x => !['commitBatch', 'finalizeBatch', 'withdraw'].includes(x.fn))) throw new Error(`unexpected transactions: ${sent.map(x => x.fn).join(', ')}`)
    // the document is what a checker fetches: it must rebuild the committed root
    JSON.parse(readFileSync(join(chain.dir, 'blobs', b.dataCid), 'utf8'))
    console.log(`| ${n.toLocaleString('en-US')} | ${gasOf('commitBatch').toLocaleString('en-US')} | ${gasOf('finalizeBatch').toLocaleString('en-US')} | ${gasOf('withdraw').toLocaleString('en-US')} | ${total.toLocaleString('en-US')} | ${(Number(total) / n).toFixed(1)} | ${(docBytes / 1024 / 1024).toFixed(2)} MiB | ${commitMs.toFixed(0)} |`)
    s.close()
    receipts.close()
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
    while (Date.now() < until && at.withdrawable === undefined) {
      const b = s.batches()[0]
      const t = await chain.chainNow()
      if (b !== undefined && at.committed === undefined && ['committed', 'finalized'].includes(b.state)) at.committed = t
      if (b?.state === 'finalized' && at.finalized === undefined) at.finalized = t
      if (at.finalized !== undefined && await s.owed() > 0n) at.withdrawable = t
      await new Promise(resolve => setTimeout(resolve, 200))
    }
    const sec = (t?: bigint): string => t === undefined ? 'not reached' : `${Number(t - end)} s`
    console.log(`\ndevnet settings: ${epochSeconds} s epochs, commit window ${2 * epochSeconds} s, challenge window ${2 * epochSeconds} s, a block every 1 s, settler tick 2 s, grace ${Number(chain.clock.commitWindow) / 3} s`)
    console.log('| from the end of the epoch to | chain time (one block a second: ±1 s) |')
    console.log('|---|---|')
    console.log(`| batch committed | ${sec(at.committed)} |`)
    console.log(`| batch finalized | ${sec(at.finalized)} |`)
    console.log(`| balance withdrawable (owed > 0, read by the worker) | ${sec(at.withdrawable)} |`)
    s.close()
    receipts.close()
  } finally {
    await chain.close()
  }
}

try {
  console.log(`machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.versions.node}`)
  if (values['no-gas'] !== true) {
    const chain = await startSettlementChain()
    try { await gasRun(chain) } finally { await chain.close() }
  }
  if (values['no-delay'] !== true) await delayRun(Number(values.epoch))
  const cpu = process.cpuUsage(cpu0)
  console.log(`\nbench process: ${((performance.now() - wall0) / 1000).toFixed(1)} s wall, ${((cpu.user + cpu.system) / 1e6).toFixed(1)} s CPU (user+sys; the Hardhat node is another process)`)
} finally {
  rmSync(dir, { recursive: true, force: true })
}
