/**
 * The status page `/_peerhost/` in a real browser (Debian's chromium through playwright-core): on a
 * gateway of a real network (bootstrap, gateway and two worker processes) it loads without console
 * errors, lists the workers, and its charts' data changes after requests; on a worker's admin port
 * it names the node. Attack: status data carrying markup is shown as text, never run.
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { chromium, type Browser, type Page } from 'playwright-core'
import { Registry } from 'prom-client'
import { adminServer } from '#node'
import { startTestNetwork, waitFor, type TestNetwork } from '../helpers/network.ts'

const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']

/** Opens `url`, recording console errors, page errors and failed requests. */
async function open (browser: Browser, url: string): Promise<{ page: Page, problems: string[] }> {
  const page = await browser.newPage()
  page.setDefaultTimeout(60_000)
  const problems: string[] = []
  page.on('console', m => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`) })
  page.on('pageerror', e => { problems.push(`page error: ${e.message}`) })
  page.on('requestfailed', r => { if (!r.url().endsWith('/_peerhost/events')) problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`) })
  page.on('response', r => { if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`) })
  await page.goto(url)
  await page.waitForFunction(() => (globalThis as any).document.getElementById('live')?.textContent === 'live', undefined, { timeout: 60_000 })
  return { page, problems }
}

const sum = (xs: Array<number | null>): number => xs.reduce<number>((a, x) => a + (x ?? 0), 0)

describe('e2e: the status page in Chromium', function () {
  this.timeout(600_000)
  const root = join(import.meta.dirname, '..', '..')
  let net: TestNetwork | undefined
  let browser: Browser | undefined

  before(async () => {
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_FLAGS })
  })
  after(async () => {
    await browser?.close()
    await net?.stop()
  })

  it('on a gateway: loads cleanly, lists the workers, charts requests live, shows receipts and projects', async () => {
    net = await startTestNetwork({ workers: 2, projects: [join(root, 'examples/hello')] })
    const hello = net.functions.find(u => u.endsWith('/hello/hello'))!
    assert.ok(hello !== undefined, `functions: ${net.functions}`)
    const statusNow = async (): Promise<any> => await (await fetch(`${net!.gatewayUrl}/_peerhost/status`)).json()
    // on a loaded machine the second worker's advert can lag: the page must show whichever the gateway knows
    await waitFor('the gateway to see a worker', async () => (await statusNow()).workers.length >= 1, 180_000, 500)
    await waitFor('the gateway to see both workers', async () => (await statusNow()).workers.length === 2, 60_000, 500).catch(() => {})
    const res = await fetch(`${net.gatewayUrl}/_peerhost/`)
    assert.equal(res.status, 200)
    assert.match(res.headers.get('content-security-policy') ?? '', /script-src 'self'/)
    assert.doesNotMatch(await res.text(), /https?:\/\/(?!127\.0\.0\.1)/, 'the page loads nothing from another origin (no CDN)')

    const { page, problems } = await open(browser!, `${net.gatewayUrl}/_peerhost/`)
    assert.equal(await page.evaluate(() => typeof (globalThis as any).uPlot), 'function', 'uPlot is served by the node')

    // the worker list shows the network's workers: the ones the gateway knows, no others
    const networkPeers = net.workerInfo.map(w => w.peerId as string)
    const shown = await waitFor('the page to list the gateway\'s workers', async () => {
      const known: string[] = (await statusNow()).workers.map((w: any) => w.peerId).sort()
      const peers = (await page.$$eval('#workers tbody tr', rows => rows.map(r => (r as any).dataset.peer as string))).sort()
      return peers.length > 0 && JSON.stringify(peers) === JSON.stringify(known) ? peers : undefined
    }, 60_000, 500)
    for (const p of shown) assert.ok(networkPeers.includes(p), `${p} is one of the network's workers`)
    const gatewayStatus = await statusNow()
    // the deployed project
    const projects = await page.$$eval('#projects tbody tr', rows => rows.map(r => r.textContent))
    assert.ok(projects.some(t => t?.includes('hello')), `projects: ${projects}`)

    // the charts' data changes once requests are made (the first answer may be slow on a loaded machine)
    let warmup = 0
    await waitFor('hello to answer', async () => {
      warmup++
      const r = await fetch(`${hello}?name=warmup`)
      await r.arrayBuffer()
      return r.status === 200
    }, 120_000, 500)
    const before = sum((await page.evaluate(() => (globalThis as any).peerhostStatus.rps()))[1])
    const n = 12
    for (let i = 0; i < n; i++) {
      const r = await fetch(`${hello}?name=chart${i}`)
      await r.arrayBuffer()
    }
    const after = await waitFor('the requests to reach the chart', async () => {
      const rps = sum((await page.evaluate(() => (globalThis as any).peerhostStatus.rps()))[1])
      return rps >= before + n ? rps : undefined
    }, 60_000)
    // requests are counted once: at most the warm-up ones still in flight join the n
    assert.ok(after <= before + n + warmup, `chart sum ${after}, expected ${before + n} (+ up to ${warmup} warm-up)`)
    const latency = await page.evaluate(() => (globalThis as any).peerhostStatus.latency())
    assert.ok(latency[1].some((v: number | null) => v !== null && v > 0), 'p50 has values')
    assert.ok(latency[3].some((v: number | null) => v !== null && v > 0), 'p99 has values')

    // recent jobs carry the workers' receipts
    await page.waitForFunction(() => (globalThis as any).document.querySelectorAll('#jobs tbody details').length > 0, undefined, { timeout: 60_000 })
    const receipt = await page.$eval('#jobs tbody details pre', e => JSON.parse(e.textContent ?? '{}'))
    assert.match(receipt.signature, /^0x[0-9a-f]{130}$/)
    assert.ok(gatewayStatus.workers.some((w: any) => w.address.toLowerCase() === receipt.worker.toLowerCase()), 'signed by one of the workers')

    assert.deepEqual(problems, [])
    await page.close()
  })

  it('on a worker\'s admin port: the same page names the node', async () => {
    const admin = net!.workerInfo[0].admin as string
    assert.equal(typeof admin, 'string')
    const { page, problems } = await open(browser!, `${admin}/_peerhost/`)
    await page.waitForFunction(() => (globalThis as any).document.getElementById('role')?.textContent === 'worker', undefined, { timeout: 60_000 })
    const text = await page.$eval('#node', e => e.textContent ?? '')
    assert.ok(text.includes(net!.workerInfo[0].peerId), `node section: ${text}`)
    assert.deepEqual(problems, [])
    await page.close()
  })

  it('attack: status values carrying markup and script are shown as text, never run', async () => {
    const hostile = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
    const server = adminServer({ port: 0 }, {
      registry: new Registry(),
      status: () => ({
        role: 'bootstrap',
        peerId: hostile,
        workers: [{ peerId: hostile, address: hostile, capacity: 4, load: 1, inflight: 0, latencyMs: 3, warm: [], advertAgeMs: 1000 }],
        functions: [{ path: `/0x${'1'.repeat(40)}/${hostile}/fn`, bundleCid: hostile }],
        recentJobs: [{ jobId: '0x1', function: hostile, status: 200, worker: hostile, attempts: 1, ms: 1, at: new Date().toISOString(), receipt: Buffer.from(JSON.stringify({ worker: hostile, fee: hostile })).toString('base64url') }],
        settlement: { checked: 2, ok: 1, faulty: 1, unverifiable: 0, recent: [
          { batchId: '0xb1', worker: `0x${'2'.repeat(40)}`, epoch: '7', count: 3, total: '30', issued: { count: 3, total: '30' }, verdict: 'ok', reason: null, proof: null, tx: null },
          { batchId: hostile, worker: hostile, epoch: hostile, count: 4, total: '99', issued: { count: 3, total: '30' }, verdict: 'faulty', reason: hostile, proof: 'proveInvalidLeaf', tx: `0x${'3'.repeat(64)}` }
        ] }
      })
    })
    await server.start()
    try {
      const { page } = await open(browser!, `${server.url}/_peerhost/`)
      await page.waitForFunction(() => (globalThis as any).document.querySelectorAll('#workers tbody tr').length === 1, undefined, { timeout: 60_000 })
      await new Promise(resolve => setTimeout(resolve, 500))
      assert.equal(await page.evaluate(() => (globalThis as any).__pwned), undefined, 'no injected handler or script ran')
      assert.equal(await page.$$eval('main img, main script, #node img', els => els.length), 0, 'no element was created from the data')
      const jobs = await page.$eval('#jobs tbody', e => e.textContent ?? '')
      assert.ok(jobs.includes('<script>'), 'the markup is shown as text')
      // the settlement batches a gateway checked: counts, verdicts and proofs, as text
      assert.equal(await page.$eval('#settlement-section', e => (e as any).hidden), false, 'the settlement section shows when the node reports batches')
      assert.equal(await page.$$eval('#settlement tbody tr', rows => rows.length), 2)
      const batches = await page.$eval('#settlement-section', e => e.textContent ?? '')
      assert.match(batches, /2 checked: 1 ok, 1 faulty, 0 unverifiable/)
      assert.ok(batches.includes('proveInvalidLeaf') && batches.includes('faulty: <img'), `verdict, reason and proof shown as text: ${batches}`)
      await page.close()
    } finally {
      await server.stop()
    }
  })
})
