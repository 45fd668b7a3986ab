/**
 * `verify: { quorum: n }` through real processes (issue 11): a bootstrap node, a gateway and three
 * gVisor workers started through the CLI on 127.0.0.1, and a real HTTP client. One network for
 * every case (test/fixtures/quorum-mesh).
 *
 * Attacks and mistakes performed:
 * - a forged answer: a receipt of the quorum with its output changed recovers another signer, so a
 *   relay cannot pass off another output under the workers' signatures;
 * - a builder declares a function deterministic that is not (Math.random, the clock): the client
 *   gets 502 QUORUM_DISAGREEMENT with every receipt, never one of the outputs, and nobody is
 *   outvoted (no evidence against an honest worker that merely drew another random number);
 * - a quorum larger than the mesh can serve: refused at once with a clear 503, not a hang, and no
 *   ticket paid.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import type { Address, Hex } from 'viem'
import { recoverReceiptSigner } from '#protocol'
import { loadEvmAccount } from '#node'
import { startTestNetwork, status, waitFor, type TestNetwork } from '../helpers/network.ts'

const root = resolve(import.meta.dirname, '..', '..')

interface ReceiptJson { domain: any, jobId: Hex, jobHash: Hex, inputHash: Hex, outputHash: Hex, worker: Address, fee: string, epoch: string, deadline: string, signature: Hex, [k: string]: unknown }

const decode = (h: string): ReceiptJson => JSON.parse(Buffer.from(h.trim(), 'base64url').toString()) as ReceiptJson
const receiptsOf = (res: Response): ReceiptJson[] => (res.headers.get('x-peerhost-receipts') ?? '').split(',').filter(s => s.trim() !== '').map(decode)

/** The address that signed a receipt record (as the gateway's headers carry it). */
async function signerOf (r: ReceiptJson, change: Partial<ReceiptJson> = {}): Promise<Address> {
  const { domain, signature, ...fields } = { ...r, ...change }
  return await recoverReceiptSigner(domain, { ...fields, fee: BigInt(fields.fee), epoch: BigInt(fields.epoch), deadline: BigInt(fields.deadline) } as any, signature)
}

describe('quorum: verify { quorum: n } across processes (three gVisor workers)', function () {
  this.timeout(180_000)
  let net: TestNetwork
  let url: (fn: string) => string
  let addresses: Address[]

  before(async () => {
    net = await startTestNetwork({ workers: 3, workerArgs: [], projects: [join(root, 'test/fixtures/quorum-mesh')] })
    const base = net.functions.find(u => u.endsWith('/quorum-mesh/digest'))
    assert.ok(base !== undefined, `functions served: ${net.functions.join(', ')}`)
    url = fn => base.replace(/\/digest$/, `/${fn}`)
    addresses = net.workerInfo.map((_, i) => loadEvmAccount(join(net.dir, `worker-${i + 1}`)).address)
    // a quorum of 3 needs the three workers in the gateway's view
    await waitFor('the three workers in the gateway\'s view', async () => (await status(net)).workers.length === 3, 30_000)
  })
  after(async () => { await net?.stop() })

  it('answers a deterministic function with the majority output and receipts of distinct workers, each recovering to its worker', async () => {
    const res = await fetch(`${url('digest')}?text=quorum`)
    const body = await res.json()
    assert.equal(res.status, 200, JSON.stringify(body))
    assert.deepEqual(body, { text: 'quorum', length: 6, reversed: 'murouq', sum: [...'quorum'].reduce((s, ch) => (s * 31 + ch.codePointAt(0)!) >>> 0, 0) })
    // the answer comes once 2 of the 3 agree (the majority's latency, not the slowest worker's)
    assert.equal(res.headers.get('x-peerhost-quorum'), '2/3')
    const receipts = receiptsOf(res)
    assert.equal(receipts.length, 2)
    const signers = await Promise.all(receipts.map(async r => await signerOf(r)))
    assert.equal(new Set(signers).size, 2, 'distinct workers signed')
    for (const [i, r] of receipts.entries()) {
      assert.equal(signers[i], r.worker, 'each receipt recovers to the worker it names')
      assert.ok(addresses.includes(signers[i]), `${signers[i]} is one of the workers' keys`)
    }
    assert.equal(new Set(receipts.map(r => r.outputHash)).size, 1, 'one output')
    assert.equal(new Set(receipts.map(r => r.jobHash)).size, 1, 'of one and the same job')
    assert.equal(new Set(receipts.map(r => r.jobId)).size, 2, 'each worker ran its own ticket')
    assert.equal(decode(res.headers.get('x-peerhost-receipt')!).outputHash, receipts[0].outputHash, 'the answering receipt is a majority one')
    // the copy that did not decide the answer runs on: every worker ran this first request once
    const jobsOf = async (i: number): Promise<number> => {
      const text = await (await fetch(`${net.workerInfo[i].admin}/_peerhost/metrics`)).text()
      return text.split('\n').filter(l => l.startsWith('peerhost_worker_jobs_total{')).reduce((n, l) => n + Number(l.split(' ').pop()), 0)
    }
    await waitFor('a job answered by each of the three workers', async () => {
      const counts = await Promise.all([0, 1, 2].map(jobsOf))
      return counts.every(c => c === 1) ? counts : undefined
    }, 30_000)
    // a receipt with another output recovers someone else: nobody can pass off a changed answer under it
    const forged = await signerOf(receipts[0], { outputHash: `0x${'ab'.repeat(32)}` })
    assert.ok(!addresses.includes(forged), 'a changed output recovers none of the workers')
  })

  it('with a majority as large as the mesh (quorum 5 of 3 workers) answers with all three workers\' receipts', async () => {
    const res = await fetch(`${url('wide')}?text=five`)
    const body = await res.json() as { reversed: string }
    assert.equal(res.status, 200, JSON.stringify(body))
    assert.equal(body.reversed, 'evif')
    // 3 equal outputs are a majority of 5: two copies found no worker left (distinct workers only)
    assert.equal(res.headers.get('x-peerhost-quorum'), '3/5')
    const receipts = receiptsOf(res)
    assert.equal(receipts.length, 3)
    const signers = await Promise.all(receipts.map(async r => await signerOf(r)))
    assert.deepEqual([...signers].sort(), [...addresses].sort(), 'each of the three workers signed one receipt')
    assert.equal(new Set(receipts.map(r => r.outputHash)).size, 1)
  })

  it('answers a function that is not deterministic with 502 QUORUM_DISAGREEMENT and every receipt, never a minority output, and proves nothing', async () => {
    const res = await fetch(url('dice'))
    const body = await res.json() as { error: { code: string, message: string, details: Record<string, any> }, roll?: number }
    assert.equal(res.status, 502, JSON.stringify(body))
    assert.equal(body.error.code, 'QUORUM_DISAGREEMENT')
    assert.equal(body.roll, undefined, 'no function output reaches the client')
    assert.match(body.error.message, /the 3 workers of this quorum function disagree: 3 different outputs \(1, 1, 1 equal\)/)
    assert.deepEqual({ ...body.error.details, received: undefined }, { quorum: 3, needed: 2, outputs: 3, agreeing: 1, failed: 0, received: undefined })
    assert.equal(res.headers.get('x-peerhost-quorum'), '1/3')
    const receipts = receiptsOf(res)
    assert.equal(receipts.length, 3, 'every receipt it got')
    assert.equal(new Set(receipts.map(r => r.outputHash)).size, 3)
    const signers = await Promise.all(receipts.map(async r => await signerOf(r)))
    assert.deepEqual([...signers].sort(), [...addresses].sort())
    assert.deepEqual(body.error.details.received.map((r: { outputHash: string }) => r.outputHash).sort(), receipts.map(r => r.outputHash).sort())
    // nobody was outvoted: the gateway logged the disagreement as such, and kept no evidence
    const log = join(net.dir, 'logs', 'gateway.log')
    const lines = await waitFor('the gateway\'s disagreement log line', () => {
      const text = readFileSync(log, 'utf8')
      return text.includes('quorum: workers disagree, no majority') ? text.split('\n') : undefined
    }, 10_000)
    const line = lines.find(l => l.includes('quorum: workers disagree, no majority'))!
    assert.match(line, /no evidence is kept/)
    assert.ok(!lines.some(l => l.includes('outvoted workers') || l.includes('was outvoted')), 'no worker is outvoted')
    const st = await status(net)
    assert.equal(st.recentJobs.find((j: { function: string }) => j.function === 'quorum-mesh/dice')?.status, 502)
  })

  it('refuses a quorum whose majority exceeds the live workers (7 of 3) at once with a clear 503', async () => {
    const started = Date.now()
    const res = await fetch(`${url('wider')}?text=x`)
    const body = await res.json() as { error: { code: string, message: string, details: Record<string, unknown> } }
    assert.equal(res.status, 503, JSON.stringify(body))
    assert.equal(body.error.code, 'NO_WORKER')
    assert.match(body.error.message, /quorum-mesh\/wider runs on 7 distinct workers \("verify": \{ "quorum": 7 \}\) and needs 4 equal outputs, but this gateway can reach only 3 live workers/)
    assert.deepEqual(body.error.details, { quorum: 7, needed: 4, live: 3 })
    assert.equal(res.headers.get('x-peerhost-attempts'), '0', 'no worker was asked')
    assert.ok(Date.now() - started < 5_000, `answered in ${Date.now() - started} ms, not at a deadline`)
  })
})
