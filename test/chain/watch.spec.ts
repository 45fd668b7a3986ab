/**
 * A third party's `peerhost watch` (a "fisherman", issue 11) catches a fault the gateway missed,
 * end to end: a real Hardhat chain, a real bootstrap, gateway and two workers on libp2p
 * (127.0.0.1), real requests through the gateway's HTTP port, each worker's batch document
 * published in its own helia blockstore, and `peerhost watch` as a separate process that fetches
 * the documents over bitswap from the workers.
 *
 * Attack performed: a worker composed with a dishonest batch builder (the settler's `batch` part;
 * no production switch) commits a batch whose total is above the sum of its leaves, for real jobs
 * the gateway ticketed. The gateway is composed without a batch checker (createGateway with no
 * `batchChecker`: it checks nothing), so only the watcher can catch it. Without the watcher the
 * batch would finalize and the project's escrow would pay the inflated total. The test asserts
 * the batch is voided with the watcher as challenger, the watcher's `owed` rises by exactly the
 * challenger share, the liar is slashed, and the honest worker's batch finalizes and is paid with
 * its stake untouched.
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { Registry } from 'prom-client'
import { parseEther, type Address, type Hex } from 'viem'
import { settlementAbi } from '#contracts'
import { rawCid } from '#protocol'
import { devExecutor } from '#sandbox'
import { createBootstrap } from '#bootstrap'
import {
  addProject, blockStorage, chainDomain, createGateway, createMeshNode, createWorker, functionTable, loadContracts, receiptLog,
  settler, silentLogger, stakeAndBind, type SettlementClock
} from '#node'
import { buildSettlementBatch, fromLeaves, type SettlementItem } from '../../contracts/abi/leaf.ts'
import { CLI } from '../../bin/spawn.ts'
import { waitFor } from '../helpers/network.ts'
import { startSettlementChain, type SettlementChain } from './helpers.ts'
import { committedBatch, earned, fundProject, party, type Party } from './settlement-helpers.ts'

const GWEI = 1_000_000_000n
const PRICE = 1_000n * GWEI
const INFLATE = 777n * GWEI
const root = resolve(import.meta.dirname, '..', '..')

describe('chain: a `peerhost watch` process catches a fault the gateway missed and is paid', function () {
  this.timeout(300_000)
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-watch-'))
  const logger = silentLogger()
  let chain: SettlementChain
  let clock: SettlementClock
  const stops: Array<() => Promise<void> | void> = []
  const read = async <T>(functionName: string, args: unknown[] = []): Promise<T> => await chain.read<T>(functionName, args)
  const stakeOf = async (a: Address): Promise<bigint> => await chain.stakeOf(a)

  before(async () => {
    chain = await startSettlementChain()
    clock = chain.clock
  })
  after(async () => {
    for (const stop of stops.reverse()) await stop()
    await chain?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('an inflated batch total is proven by the watcher (challenger share to the wei); the honest worker is paid and not slashed', async function () {
    const contracts = loadContracts(chain.contractsFile)
    const domain = chainDomain(contracts)
    await chain.registerProject('slow', ['slow'])
    const boot = await createBootstrap({}, { privateKey: await generateKeyPair('Ed25519'), logger, registry: new Registry() })
    await boot.start()
    stops.push(() => boot.stop())

    // the gateway: real tickets in the chain's domain and Settlement's epoch, and NO batch checker
    const gw = await party(chain)
    const pid = await fundProject(chain, gw.signer.address, 10n ** 18n, 10n ** 17n, 'slow')
    const functions = functionTable()
    await addProject(functions, chain.deployer, join(root, 'test/fixtures/slow'))
    const gateway = await createGateway({ port: 0, bootstrap: boot.addrs(), domain, epochOf: clock.epochAtMs }, { privateKey: await generateKeyPair('Ed25519'), signer: gw.signer, functions, logger, registry: new Registry() })
    await gateway.start()
    stops.push(() => gateway.stop())

    // two staked workers bound to their peer ids, each publishing its batch documents in its own blockstore
    const dishonest: Record<string, ((items: SettlementItem[]) => ReturnType<typeof buildSettlementBatch>) | undefined> = {
      honest: undefined,
      inflate: (items) => { const b = buildSettlementBatch(items); return fromLeaves(b.leaves, b.total + INFLATE) }
    }
    const workers: Record<string, { w: Party, s: ReturnType<ReturnType<typeof settler>>, served: () => bigint[], stake: bigint }> = {}
    for (const name of Object.keys(dishonest)) {
      const w = await party(chain)
      const peerKey = await generateKeyPair('Ed25519')
      await stakeAndBind(w.client, peerKey, { stake: parseEther('1') })
      const dataDir = join(dir, name)
      const libp2p = await createMeshNode({ privateKey: peerKey, bootstrap: boot.addrs() })
      const storage = blockStorage({ dataDir })({ libp2p, logger })
      const receipts = receiptLog({ dataDir, pruneIntervalMs: 0 })({ logger })
      const worker = await createWorker({ dataDir, bootstrap: boot.addrs(), price: PRICE, domain }, {
        privateKey: peerKey, signer: w.signer, executor: devExecutor({})({}), logger, registry: new Registry(), receipts, libp2p
      })
      await worker.start()
      await storage.start()
      const s = settler({ dataDir, intervalMs: 0, graceSeconds: 0n })({
        client: w.client, receipts, logger, batch: dishonest[name],
        publish: async (bytes) => { const cid = rawCid(bytes); await storage.put(cid, bytes); return cid }
      })
      stops.push(async () => { s.close(); await storage.stop(); await worker.stop(); receipts.close() })
      const served = (): bigint[] => receipts.batchKeys(0n, 1n << 62n).flatMap(k => receipts.receiptsOf(k)).map(r => BigInt(r.fee))
      workers[name] = { w, s, served, stake: name === 'honest' ? await chain.honest(w.signer.address) : await stakeOf(w.signer.address) }
    }
    await waitFor('both workers in the gateway view', () => gateway.view.size() === 2, 30_000)

    // real requests, concurrent so the gateway's load balancing spreads them, until both workers served some
    const e0 = clock.epochAtMs(Date.now())
    const request = async (): Promise<void> => {
      const res = await fetch(`${gateway.url}/${chain.deployer}/slow/slow?ms=300`)
      assert.equal(res.status, 200, await res.text())
    }
    // one at a time first: the first job of a worker fetches the bundle and boots a thread
    await request()
    for (let i = 0; i < 10 && Object.values(workers).some(p => p.served().length < 2); i++) await Promise.all([request(), request(), request(), request()])
    for (const [name, p] of Object.entries(workers)) assert.ok(p.served().length >= 2, `${name} served requests`)
    assert.equal(clock.epochAtMs(Date.now()), e0, 'the requests fit in one settlement epoch')

    // the watcher: a separate `peerhost watch` process with its own funded key (it pays for proofs)
    const watcher = await party(chain)
    const watchDir = join(dir, 'watch')
    mkdirSync(watchDir, { recursive: true })
    writeFileSync(join(watchDir, 'evm.key'), `${watcher.key}\n`, { mode: 0o600 })
    const owedBefore = await read<bigint>('owed', [watcher.signer.address])
    const proc = spawn(process.execPath, [CLI, 'watch', '--contracts', chain.contractsFile, '--bootstrap', boot.addrs()[0], '--data-dir', watchDir, '--interval', '500', '--json', '--log-level', 'info'], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    proc.stdout!.on('data', d => { out += d })
    proc.stderr!.on('data', d => { out += d })
    // a watcher that exits (crash, or nothing left keeping its event loop alive) fails the test at once, with its output
    const exited = new Promise<never>((_resolve, reject) => proc.once('exit', (code, signal) => reject(new Error(`peerhost watch exited (code ${code}, signal ${signal})`))))
    exited.catch(() => {})
    stops.push(() => stopChild(proc))
    await waitFor('the watcher is ready', () => out.includes('"event":"ready"'), 60_000)

    // the epoch ends on chain; both workers commit (the liar's inflated total is accepted by the chain)
    await chain.advanceTo(clock.epochEnd(e0) + 1n)
    const batchOf: Record<string, Hex> = {}
    for (const [name, p] of Object.entries(workers)) {
      assert.equal((await p.s.tick()).committed, 1, `${name} committed its batch`)
      batchOf[name] = p.s.batches()[0].batchId
    }
    const fees = (name: string): bigint => workers[name].served().reduce((s, f) => s + f, 0n)
    assert.equal((await committedBatch(chain, batchOf.inflate)).total, fees('inflate') + INFLATE)

    // the watcher fetches both documents over bitswap, judges them, and proves the inflated one
    const voided = await Promise.race([exited, waitFor('the watcher voids the inflated batch', async () => {
      const events = await chain.publicClient.getContractEvents({ address: chain.addresses.Settlement, abi: settlementAbi, eventName: 'BatchVoided', fromBlock: 0n })
      return events.find(e => (e.args as any).batchId === batchOf.inflate)?.args as { challenger: Address, fault: number, slashed: bigint } | undefined
    }, 60_000, 250)]).catch((err) => { throw new Error(`${err.message}\nwatcher output:\n${out.slice(-4000)}`) })
    assert.equal(voided.challenger, watcher.signer.address, 'the watcher is the challenger')
    assert.equal(voided.fault, 3, 'FAULT_BROKEN_SUM (the last leaf\'s sum is not the committed total)')
    assert.equal((await committedBatch(chain, batchOf.inflate)).status, 3, 'voided')
    assert.ok(await stakeOf(workers.inflate.w.signer.address) < workers.inflate.stake, 'the liar is slashed')
    const bond = await read<bigint>('minBatchBond')
    const shareBps = BigInt(await read<number>('challengerShareBps'))
    assert.equal(await read<bigint>('owed', [watcher.signer.address]) - owedBefore, (voided.slashed + bond) * shareBps / 10_000n, 'the watcher earns the challenger share, to the wei')
    // the honest batch is judged ok by the same process (its log says so), within the same wait
    await waitFor('the watcher judges the honest batch', () => out.includes(batchOf.honest) && /no fault/.test(out), 30_000)

    // the honest batch is not challenged, finalizes after the window and pays its fees and bond
    await chain.advanceTo((await chain.chainNow()) + clock.challengeWindow + 1n)
    await workers.honest.s.tick()
    assert.equal(workers.honest.s.batches()[0].state, 'finalized')
    assert.equal(await earned(chain, workers.honest.w.signer.address), fees('honest') + bond)
    await chain.assertNobodySlashed()
    assert.equal(await read<bigint>('escrowOf', [pid]), 10n ** 18n - fees('honest'), 'the escrow pays the honest batch only')
  })
})

async function stopChild (proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return
  const exited = new Promise<void>(resolve => proc.once('exit', () => resolve()))
  proc.kill('SIGTERM')
  const guard = setTimeout(() => proc.kill('SIGKILL'), 10_000)
  await exited
  clearTimeout(guard)
}
