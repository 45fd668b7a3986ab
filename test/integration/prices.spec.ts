/**
 * Prices on the mesh path (issue 11), with real libp2p nodes in one process: a worker advertises
 * its price, the gateway puts it in the signed ticket with the epoch its clock gives, a project's
 * `maxFee` keeps dearer workers out, and a worker refuses a ticket paying less than its price.
 *
 * Attack performed: a gateway that ignores the advertised price (composed from the real
 * dispatcher with a view that strips the price, as a modified gateway would) sends a ticket with
 * fee 0; the worker must refuse it before running anything, and its receipt log stays empty.
 *
 * Attack performed: a gateway signs a ticket whose deadline lies 10 days ahead. Answered, the same
 * ticket could be presented again after a power loss took the worker's last commits (the reboot
 * guard covers only deadlines up to the longest job deadline past the boot), or with a longer
 * deadline once the receipt log pruned the key (30 days), and the worker would sign a second
 * receipt for the key: an equivocation it is slashed for. The worker must refuse any deadline
 * beyond the longest job deadline plus clock skew, before running anything. (10 days, not 40:
 * the gateway's own attempt timer cannot hold more than 24.8 days.)
 */
import assert from 'node:assert/strict'
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { Registry } from 'prom-client'
import { generatePrivateKey } from 'viem/accounts'
import { devExecutor } from '#sandbox'
import { createBootstrap } from '#bootstrap'
import { DEV_DOMAIN, inputHash, LIMITS, type WireRequest } from '#protocol'
import {
  addProject, buildDeployment, clockOf, createGateway, ticketEpochCheck, parseManifest, createWorker, fastSigner, functionTable, receiptLog, silentLogger,
  type GatewayNode, type MutableFunctionTable, type ReceiptLog, type WorkerNode
} from '#node'
import { dispatcher } from '../../node/gateway/dispatch.ts'
import { waitFor } from '../helpers/network.ts'

const root = resolve(import.meta.dirname, '..', '..')
const PRICE = 1_000_000_000_000n

describe('prices: advertised, put in tickets, capped by maxFee, enforced by workers', function () {
  this.timeout(120_000)
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-prices-'))
  const logger = silentLogger()
  const owner = fastSigner(generatePrivateKey()).address
  let boot: Awaited<ReturnType<typeof createBootstrap>>
  let gateway: GatewayNode
  let worker: WorkerNode
  let receipts: ReceiptLog
  let functions: MutableFunctionTable
  let base: string

  const allReceipts = (): ReturnType<ReceiptLog['receiptsOf']> =>
    receipts.batchKeys(0n, 1n << 62n).flatMap(k => receipts.receiptsOf(k))

  before(async () => {
    boot = await createBootstrap({}, { privateKey: await generateKeyPair('Ed25519'), logger, registry: new Registry() })
    await boot.start()
    functions = functionTable()
    await addProject(functions, owner, join(root, 'test/fixtures/slow'))
    // a fixed epoch clock: the ticket must carry what the clock says, not unix hours
    gateway = await createGateway({ port: 0, bootstrap: boot.addrs(), epochOf: () => 4242n }, { privateKey: await generateKeyPair('Ed25519'), signer: fastSigner(generatePrivateKey()), functions, logger, registry: new Registry() })
    await gateway.start()
    base = `${gateway.url}/${owner}/slow/slow`
    receipts = receiptLog({ dataDir: join(dir, 'w'), pruneIntervalMs: 0 })({ logger })
    worker = await createWorker({ dataDir: join(dir, 'w'), bootstrap: boot.addrs(), price: PRICE }, {
      privateKey: await generateKeyPair('Ed25519'), signer: fastSigner(generatePrivateKey()), executor: devExecutor({})({}), logger, registry: new Registry(), receipts
    })
    await worker.start()
    await waitFor('the priced worker in the view', () => gateway.view.list().some(w => w.advert.price === PRICE.toString()), 20_000)
  })
  after(async () => {
    await worker?.stop()
    receipts?.close()
    await gateway?.stop()
    await boot?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it('signs the worker\'s price and the clock\'s epoch into the ticket', async () => {
    const res = await fetch(`${base}?ms=1`)
    assert.equal(res.status, 200, await res.clone().text())
    const rows = allReceipts()
    assert.equal(rows.length, 1)
    assert.equal(rows[0].fee, PRICE.toString())
    assert.equal(rows[0].epoch, '4242')
    assert.equal(rows[0].state, 'signed')
  })

  it('a project whose maxFee is below every worker\'s price gets NO_WORKER naming maxFee; at the price it is served', async () => {
    const entry = functions.resolve(owner, 'slow', 'slow')!
    entry.maxFee = PRICE - 1n
    const res = await fetch(`${base}?ms=1`)
    const body = await res.json() as any
    assert.equal(res.status, 503)
    assert.equal(body.error.code, 'NO_WORKER')
    assert.match(body.error.message, /maxFee/)
    assert.equal(allReceipts().length, 1, 'no ticket was sent to the dearer worker')
    entry.maxFee = PRICE
    assert.equal((await fetch(`${base}?ms=1`)).status, 200)
    assert.equal(allReceipts().length, 2)
    delete entry.maxFee
  })

  it('refuses a ticket paying less than its price (a gateway that ignores the advert)', async () => {
    const real = gateway.view
    const view = { ...real, pick: (cid: string, exclude: Set<string>) => { const w = real.pick(cid, exclude); return w === undefined ? undefined : { ...w, advert: { ...w.advert, price: undefined } } } }
    const dispatch = dispatcher({ domain: DEV_DOMAIN, maxAttempts: 1 }, { libp2p: gateway.libp2p, view, signer: fastSigner(generatePrivateKey()), logger })
    const entry = functions.resolve(owner, 'slow', 'slow')!
    const request: WireRequest = { method: 'GET', url: `${base}?ms=1`, headers: [], body: new Uint8Array() }
    const outcome = await dispatch({ entry, request, inputHash: inputHash(request), deadline: Date.now() + 10_000 })
    assert.equal(outcome.result, undefined)
    assert.equal(outcome.attempts[0]?.code, 'TICKET_INVALID')
    assert.equal(outcome.attempts[0]?.reason, 'fee-below-price')
    assert.equal(allReceipts().length, 2, 'nothing was run or signed for the under-priced ticket')
  })

  it('refuses a ticket whose deadline lies beyond the longest job deadline (it could be replayed after the log forgets it)', async () => {
    const dispatch = dispatcher({ domain: DEV_DOMAIN, maxAttempts: 1 }, { libp2p: gateway.libp2p, view: gateway.view, signer: fastSigner(generatePrivateKey()), logger })
    const entry = functions.resolve(owner, 'slow', 'slow')!
    const request: WireRequest = { method: 'GET', url: `${base}?ms=1`, headers: [], body: new Uint8Array() }
    const before = allReceipts().length
    const far = await dispatch({ entry, request, inputHash: inputHash(request), deadline: Date.now() + 10 * 86_400_000 })
    assert.equal(far.result, undefined)
    assert.equal(far.attempts[0]?.code, 'TICKET_INVALID')
    assert.equal(far.attempts[0]?.reason, 'deadline-too-far')
    assert.equal(allReceipts().length, before, 'nothing was run or signed for the far-deadline ticket')
    assert.equal(receipts.unsigned(), 0, 'nothing was reserved either')
    // the same ticket with the longest deadline a gateway may set is served: the deadline alone was refused
    const longest = await dispatch({ entry, request, inputHash: inputHash(request), deadline: Date.now() + LIMITS.maxDeadlineMs })
    assert.equal(longest.result?.response?.status, 200, JSON.stringify(longest.attempts))
  })

  it('carries peerhost.json `maxFee` (native currency) into the manifest and the gateway entry, in wei', async () => {
    const project = join(dir, 'capped')
    cpSync(join(root, 'test/fixtures/slow'), project, { recursive: true })
    writeFileSync(join(project, 'peerhost.json'), JSON.stringify({ name: 'capped', functions: { slow: { timeoutMs: 8000, maxFee: '0.000001' } } }))
    const built = await buildDeployment({ dir: project, sourceCommit: `0x${'00'.repeat(32)}` })
    assert.equal(built.manifest.functions.slow.maxFee, PRICE.toString())
    assert.equal(parseManifest(built.manifestBytes).functions.slow.maxFee, PRICE.toString())
    const [entry] = await addProject(functionTable(), owner, project)
    assert.equal(entry.maxFee, PRICE)
    // a project without a cap keeps the manifest it had before (no maxFee key)
    const plain = await buildDeployment({ dir: join(root, 'test/fixtures/slow'), sourceCommit: `0x${'00'.repeat(32)}` })
    assert.equal('maxFee' in plain.manifest.functions.slow, false)
    writeFileSync(join(project, 'peerhost.json'), JSON.stringify({ name: 'capped', functions: { slow: { maxFee: 0.5 } } }))
    await assert.rejects(addProject(functionTable(), owner, project), (e: any) => e.code === 'BAD_PROJECT_CONFIG' && /functions\.slow\.maxFee/.test(e.message))
  })

  it('a worker with a settlement clock refuses tickets of a future epoch or of an epoch whose batch is already built', async () => {
    // 60 s epochs; genesis is set once the worker is in the view, so the checks run mid-epoch
    let clock = clockOf({ genesis: 0n, epochLength: 60n, commitWindow: 300n, challengeWindow: 600n })
    const checked = await createWorker({ dataDir: join(dir, 'w2'), bootstrap: boot.addrs() }, {
      privateKey: await generateKeyPair('Ed25519'), signer: fastSigner(generatePrivateKey()), executor: devExecutor({})({}), logger, registry: new Registry(),
      checkEpoch: (epoch) => ticketEpochCheck(clock)(epoch)
    })
    try {
      await checked.start()
      const id = checked.peerId.toString()
      await waitFor('the second worker in the view', () => gateway.view.list().some(w => w.peerId === id), 20_000)
      // now is 30 s into epoch 16: 30 s of margin either way for the three checks below
      clock = clockOf({ genesis: BigInt(Math.floor(Date.now() / 1000) - (16 * 60 + 30)), epochLength: 60n, commitWindow: 300n, challengeWindow: 600n })
      const current = clock.epochAtMs(Date.now())
      assert.equal(current, 16n)
      const real = gateway.view
      // only the checked worker is asked
      const view = { ...real, pick: (cid: string, exclude: Set<string>) => real.list().find(w => w.peerId === id && !exclude.has(w.peerId)) }
      const entry = functions.resolve(owner, 'slow', 'slow')!
      const run = async (epoch: bigint): Promise<string | undefined> => {
        const dispatch = dispatcher({ domain: DEV_DOMAIN, maxAttempts: 1, epochOf: () => epoch }, { libp2p: gateway.libp2p, view, signer: fastSigner(generatePrivateKey()), logger })
        const request: WireRequest = { method: 'GET', url: `${base}?ms=1`, headers: [], body: new Uint8Array() }
        const outcome = await dispatch({ entry, request, inputHash: inputHash(request), deadline: Date.now() + 10_000 })
        return outcome.result !== undefined ? 'ok' : outcome.attempts[0]?.code
      }
      assert.equal(await run(current + 1n), 'TICKET_INVALID', 'a future epoch')
      // grace is min(300 s, 300 / 3) = 100 s: two epochs ago ended at least 60 s ago, five at least 240 s ago
      assert.equal(await run(current - 5n), 'TICKET_INVALID', 'an epoch whose batch is built already')
      assert.equal(await run(current), 'ok')
    } finally {
      await checked.stop()
    }
  })
})
