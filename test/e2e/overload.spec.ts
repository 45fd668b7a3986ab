/**
 * Overload and function limits with real processes: a local Hardhat chain, a bootstrap node, two
 * staked gVisor workers with room for one job each (`--capacity 1`), and a gateway with the chain
 * fallback. The project is registered on chain, so a fallback request would be accepted: the tests
 * check that none is made.
 *
 * - a saturated mesh answers 503 OVERLOADED with Retry-After, while the long jobs still run, and
 *   never asks the chain (issue 10);
 * - a burst of 64 requests at once (c ≫ capacity) gets only 200s and 503 OVERLOADED, boots no
 *   sandbox on the workers, and never asks the chain (issue 10);
 * - a function that exceeds its memory limit is tried once, on one worker, and never sent to the
 *   chain (issue 14 item 3).
 */
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Address } from 'viem'
import { executionCoordinatorAbi } from '#contracts'
import { loadEvmAccount } from '#node'
import { startTestNetwork, status, waitFor, type TestNetwork } from '../helpers/network.ts'
import { startTestChain, type TestChain } from '../chain/helpers.ts'

function loadProject (): string {
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-load-'))
  mkdirSync(join(dir, 'functions'))
  writeFileSync(join(dir, 'functions', 'slow.js'), `export default { async fetch (request) {
  const ms = Number(new URL(request.url).searchParams.get('ms') ?? '1500')
  await new Promise(resolve => setTimeout(resolve, ms))
  return Response.json({ slept: ms })
} }`)
  // grows until the sandbox's memory limit stops it
  writeFileSync(join(dir, 'functions', 'memorybomb.js'), 'export default { async fetch () { const a = []; for (;;) { a.push(new Array(1e6).fill(Math.random())) } } }')
  // memorybomb as in the sandbox's own hostile fixtures (default 128 MB, 10 s)
  writeFileSync(join(dir, 'peerhost.json'), JSON.stringify({ name: 'load', functions: { slow: { timeoutMs: 10_000 }, memorybomb: { timeoutMs: 10_000 } } }))
  return dir
}

describe('overload and limit errors never reach the chain (real chain, gVisor workers)', function () {
  // generous: a chain, three nodes and gVisor sandboxes on a shared 2-core machine
  this.timeout(420_000)
  let chain: TestChain
  let net: TestNetwork
  let project: string
  const url = (fn: string): string => net.functions.find(u => u.endsWith(`/load/${fn}`))!
  const requestCount = async (): Promise<bigint> => await chain.publicClient.readContract({ address: chain.addresses.ExecutionCoordinator, abi: executionCoordinatorAbi, functionName: 'requestCount' }) as bigint

  before(async () => {
    project = loadProject()
    const t0 = Date.now()
    const step = (what: string): void => { process.stderr.write(`overload.spec: ${what} after ${Date.now() - t0} ms\n`) }
    chain = await startTestChain()
    step('chain up')
    await chain.registerProject('load', ['slow', 'memorybomb'])
    net = await startTestNetwork({
      workers: 2,
      workerArgs: ['--capacity', '1'],
      projects: [project],
      owner: chain.deployer,
      gatewayArgs: ['--contracts', chain.contractsFile, '--fallback-deadline', '30'],
      // the gateway stakes: workers on a chain answer only tickets of staked gateways
      async gatewayArgsFor (dataDir) {
        await chain.fund(loadEvmAccount(dataDir).address)
        return ['--stake', '1']
      },
      async workerArgsFor (_i, dataDir) {
        await chain.fund(loadEvmAccount(dataDir).address)
        // the gateway serves the project from its folder (registered with a dummy manifest): no registry check
        return ['--contracts', chain.contractsFile, '--stake', '1', '--unsafe-skip-registry-check']
      }
    })
    step('network up')
    await chain.fund((await net.gateway.ready).address as Address)
    await waitFor('both staked workers in the view', async () => (await status(net)).workers.length === 2 ? true : undefined, 300_000)
    step('workers in view')
    // a first request per worker starts its sandbox (two at once: the gateway spreads them by in-flight count)
    for (const r of await Promise.all([0, 1].map(async () => await fetch(`${url('slow')}?ms=200`)))) assert.equal(r.status, 200)
  })
  after(async () => {
    await net?.stop()
    await chain?.stop()
    if (chain !== undefined) rmSync(chain.dir, { recursive: true, force: true })
    if (project !== undefined) rmSync(project, { recursive: true, force: true })
  })

  it('answers 503 OVERLOADED with Retry-After while every worker is busy, and never asks the chain', async () => {
    const before = await requestCount()
    // one long job per worker fills the mesh
    let longDone = 0
    const long = [0, 1].map(async () => {
      const r = await fetch(`${url('slow')}?ms=4000`)
      longDone++
      return r
    })
    await waitFor('both workers busy', async () => (await status(net)).workers.every((w: any) => w.inflight >= 1) ? true : undefined, 10_000, 20)
    const burst = await Promise.all(Array.from({ length: 8 }, async () => {
      const r = await fetch(`${url('slow')}?ms=1`)
      return { status: r.status, retryAfter: r.headers.get('retry-after'), path: r.headers.get('x-peerhost-path'), attempts: Number(r.headers.get('x-peerhost-attempts')), body: await r.json() as any, longDoneThen: longDone }
    }))
    for (const r of burst) {
      assert.equal(r.status, 503, JSON.stringify(r.body))
      assert.equal(r.body.error.code, 'OVERLOADED')
      assert.match(r.retryAfter ?? '', /^[1-9][0-9]*$/)
      assert.equal(r.path, 'mesh')
      assert.ok(r.attempts <= 2, `at most one try per worker, got ${r.attempts}`)
      // refused while the long jobs still ran, not after waiting them out
      assert.equal(r.longDoneThen, 0)
    }
    for (const r of await Promise.all(long)) assert.equal(r.status, 200)
    assert.equal(await requestCount(), before, 'overload sent no request to ExecutionCoordinator')
    // and the mesh serves again once the workers have room
    const after = await fetch(`${url('slow')}?ms=1`)
    assert.equal(after.status, 200)
  })

  it('under a burst far beyond capacity answers only 200 or 503 OVERLOADED from the mesh, boots no sandbox for it, and never asks the chain', async () => {
    const metric = async (admin: string, name: string): Promise<number> => {
      const line = (await (await fetch(`${admin}/_peerhost/metrics`)).text()).split('\n').find(l => l.startsWith(`${name} `))
      assert.ok(line !== undefined, `${name} is exported`)
      return Number(line.split(' ')[1])
    }
    const admins = net.workerInfo.map(w => w.admin as string)
    // both workers have run `slow` (its sandboxes exist), then their pools settle: no boot in flight
    // and none wanted (a pool boots towards its targets only after 500 ms without an execution)
    const served = new Set<string>()
    await waitFor('both workers warm', async () => {
      for (const w of await Promise.all([0, 1].map(async () => (await fetch(`${url('slow')}?ms=50`)).headers.get('x-peerhost-worker')))) if (w !== null) served.add(w)
      return served.size === 2 ? true : undefined
    }, 120_000, 500)
    await waitFor('both pools settled: no boot in flight or wanted', async () => {
      const booting = await Promise.all(admins.map(async a => await metric(a, 'peerhost_worker_sandboxes_booting') + await metric(a, 'peerhost_worker_sandbox_boots_wanted')))
      return booting.every(n => n === 0) ? true : undefined
    }, 120_000, 250)
    const booted = await Promise.all(admins.map(async a => await metric(a, 'peerhost_worker_sandboxes_booted')))
    const before = await requestCount()
    // 64 at once against 2 workers with room for one job each: c ≫ capacity
    const burst = await Promise.all(Array.from({ length: 64 }, async () => {
      const r = await fetch(`${url('slow')}?ms=300`)
      return { status: r.status, path: r.headers.get('x-peerhost-path'), retryAfter: r.headers.get('retry-after'), body: await r.text() }
    }))
    const statuses = burst.map(r => r.status)
    for (const r of burst) {
      assert.ok(r.status === 200 || r.status === 503, `only answers and overload refusals, got ${r.status} ${r.body}`)
      assert.equal(r.path, 'mesh')
      if (r.status === 503) {
        assert.equal(JSON.parse(r.body).error.code, 'OVERLOADED')
        assert.match(r.retryAfter ?? '', /^[1-9][0-9]*$/)
      }
    }
    assert.ok(statuses.includes(200), 'the mesh kept serving through the burst')
    assert.ok(statuses.includes(503), 'and shed the rest')
    assert.equal(await requestCount(), before, 'overload sent no request to ExecutionCoordinator')
    const after = await Promise.all(admins.map(async a => await metric(a, 'peerhost_worker_sandboxes_booted')))
    assert.deepEqual(after, booted, 'no sandbox was booted because of the load')
  })

  it('tries a function over its memory limit once, answers LIMIT_MEMORY with details, and never asks the chain', async () => {
    // the burst above leaves both workers refusing for a moment (its 503s, the gateway's overload
    // backoff): this test is about a limit error, so it starts once the mesh has room again
    await waitFor('the mesh serving again after the burst', async () => (await fetch(`${url('slow')}?ms=1`)).status === 200, 60_000, 250)
    const before = await requestCount()
    const r = await fetch(url('memorybomb'))
    const body = await r.json() as any
    assert.equal(r.status, 507, JSON.stringify(body))
    assert.equal(body.error.code, 'LIMIT_MEMORY')
    assert.equal(r.headers.get('x-peerhost-attempts'), '1', 'a limit error is the function\'s: not retried on another worker')
    assert.equal(r.headers.get('x-peerhost-path'), 'mesh')
    assert.equal(await requestCount(), before, 'a limit error sent no request to ExecutionCoordinator')
  })
})
