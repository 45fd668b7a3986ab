/**
 * Function auth end to end, with real processes: a Hardhat chain, a bootstrap node, a staked
 * gateway and a staked worker running functions in gVisor; the builder deploys test/fixtures/auth-app
 * and mints keys with the real `peerhost keys` CLI. Each refusal is an attack performed over HTTP on
 * both the mesh path and the chain path (`x-peerhost-mode: onchain`), and for each we count what ran:
 * the worker's executions (`peerhost_worker_jobs_total` on its admin port) and the chain's
 * `ExecutionRequested` events, which must not move. Afterwards no file of the network (process
 * logs, data dirs, blockstores, the chain's files) holds the key.
 */
import assert from 'node:assert/strict'
import { join, resolve } from 'node:path'
import { privateKeyToAccount, generatePrivateKey } from 'viem/accounts'
import { executionCoordinatorAbi } from '#contracts'
import { deployProject, mintApiKey, putApiKey, signRequest, SIGNATURE_HEADER } from '#node'
import { cli } from '../helpers/cli.ts'
import { BUILDER_KEY, startChainNetwork, type ChainNetwork } from '../deploy/chain-network.ts'
import { filesContaining } from '../helpers/files.ts'

const fixtures = resolve(import.meta.dirname, '..', 'fixtures')
/** the builder is also the one address the `signed` function allows (Hardhat account #1) */
const builder = privateKeyToAccount(BUILDER_KEY)
const stranger = privateKeyToAccount(generatePrivateKey())

describe('e2e: function auth (api-key and wallet, mesh and chain, gVisor worker)', function () {
  this.timeout(900_000)
  let net: ChainNetwork
  let workerAdmin: string
  let key = ''
  let keyId = ''
  let otherKey = ''
  const env = { PEERHOST_PRIVATE_KEY: BUILDER_KEY }
  const fnUrl = (fn: string, project = 'auth-app'): string => `${net.gatewayUrl}/${builder.address}/${project}/${fn}`

  /** jobs the worker has answered on the mesh */
  async function meshJobs (): Promise<number> {
    const text = await (await fetch(`${workerAdmin}/_peerhost/metrics`)).text()
    return text.split('\n').filter(l => l.startsWith('peerhost_worker_jobs_total')).reduce((n, l) => n + Number(l.split(' ').at(-1)), 0)
  }
  /** fallback requests ever made on chain */
  async function chainRequests (): Promise<number> {
    const { createPublicClient, http } = await import('viem')
    const client = createPublicClient({ transport: http(net.chain.rpcUrl) })
    const logs = await client.getContractEvents({ address: net.contracts.addresses.ExecutionCoordinator, abi: executionCoordinatorAbi, eventName: 'ExecutionRequested', fromBlock: 0n })
    return logs.length
  }
  /**
   * Mines a block so the chain's head time is now. The gateway's fallback computes the request's
   * deadline from the head block's timestamp; after a minute without blocks (the CLI runs slowly on
   * a loaded machine) that deadline is already too close for ExecutionCoordinator
   * (CoordinatorInvalidDeadline) — a fallback issue reported separately, not what this spec tests.
   */
  async function freshHead (): Promise<void> {
    await fetch(net.chain.rpcUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'evm_mine', params: [] }) })
  }
  /** Runs `attack` and asserts that neither a worker nor the chain was asked meanwhile. */
  async function nothingRuns (attack: () => Promise<void>): Promise<void> {
    const jobs = await meshJobs()
    const requests = await chainRequests()
    await attack()
    assert.equal(await meshJobs(), jobs, 'a worker ran the function for a refused request')
    assert.equal(await chainRequests(), requests, 'the chain was asked for a refused request')
  }
  async function refused (res: Response, status: number, message: RegExp): Promise<void> {
    const text = await res.text()
    assert.equal(res.status, status, text)
    assert.match(res.headers.get('content-type') ?? '', /application\/json/)
    const body = JSON.parse(text)
    assert.equal(body.error.code, status === 401 ? 'UNAUTHORIZED' : 'FORBIDDEN')
    assert.match(body.error.message, message)
    if (key !== '') assert.ok(!text.includes(key))
  }

  before(async () => {
    net = await startChainNetwork({ workers: 1, executor: 'gvisor', stakeGateway: true, workerArgs: ['--admin-port', '0'] })
    workerAdmin = (await net.procs[1].ready).admin
    assert.match(workerAdmin, /^http:\/\//)
    await deployProject({ source: join(fixtures, 'auth-app'), gateway: net.gatewayUrl, contracts: net.contracts, account: BUILDER_KEY })
    await deployProject({ source: join(fixtures, 'auth-app'), project: 'auth-other', gateway: net.gatewayUrl, contracts: net.contracts, account: BUILDER_KEY })
  })
  after(async () => { await net?.stop() })

  it('a public function of the project answers (the network works)', async () => {
    const res = await fetch(fnUrl('open'))
    assert.equal(res.status, 200, await res.clone().text())
    assert.equal(((await res.json()) as any).fn, 'open')
  })

  it('peerhost keys create prints the key once; the gateway lists its id and name, never the key or hash', async () => {
    const r = await cli(['keys', 'create', 'auth-app', '--name', 'ci', '--gateway', net.gatewayUrl, '--json'], env)
    assert.equal(r.code, 0, r.stderr)
    const line = r.lines.find(l => l.event === 'key')
    key = line.key
    keyId = line.id
    assert.match(key, /^phk_[A-Za-z0-9_-]{43}$/)
    assert.equal(r.stdout.split(key).length - 1, 1, 'the key is printed exactly once')
    const other = await cli(['keys', 'create', 'auth-other', '--gateway', net.gatewayUrl, '--json'], env)
    assert.equal(other.code, 0, other.stderr)
    otherKey = other.lines.find(l => l.event === 'key').key
    const list = await cli(['keys', 'list', 'auth-app', '--gateway', net.gatewayUrl, '--json'], env)
    assert.equal(list.code, 0, list.stderr)
    assert.deepEqual(list.lines.at(-1).keys.map((k: any) => [k.id, k.name, k.revoked]), [[keyId, 'ci', undefined]])
    assert.ok(!list.stdout.includes(key))
  })

  it('attack: a key change signed by another wallet is refused', async () => {
    await assert.rejects(putApiKey({ gateway: net.gatewayUrl, account: stranger, namespace: builder.address, project: 'auth-app', key: mintApiKey(), name: 'evil' }), /not by the project's current owner/)
  })

  it('attack: missing, wrong, malformed and cross-project keys are refused on the mesh and chain paths; no worker runs', async () => {
    await nothingRuns(async () => {
      for (const headers of [{}, { 'x-peerhost-mode': 'onchain' }]) {
        await refused(await fetch(fnUrl('keyed'), { headers }), 401, /expected the header authorization: Bearer <key>/)
        await refused(await fetch(fnUrl('keyed'), { headers: { ...headers, authorization: `Bearer ${mintApiKey()}` } }), 401, /not a key of/)
        await refused(await fetch(fnUrl('keyed'), { headers: { ...headers, authorization: key } }), 401, /malformed/)
        await refused(await fetch(fnUrl('keyed'), { method: 'POST', body: 'x', headers: { ...headers, authorization: `Bearer ${otherKey}` } }), 401, /not a key of/)
        // and the other way round: this project's key on the other project
        await refused(await fetch(fnUrl('keyed', 'auth-other'), { headers: { ...headers, authorization: `Bearer ${key}` } }), 401, /not a key of/)
      }
    })
  })

  it('the right key passes on the mesh, and the function never sees it', async () => {
    const jobs = await meshJobs()
    const res = await fetch(`${fnUrl('keyed')}/items?x=1`, { method: 'POST', body: 'hello', headers: { authorization: `Bearer ${key}`, 'content-type': 'text/plain' } })
    const text = await res.text()
    assert.equal(res.status, 200, text)
    assert.equal(res.headers.get('x-peerhost-path'), 'mesh')
    const seen = JSON.parse(text)
    assert.equal(seen.body, 'hello')
    assert.equal(seen.headers.authorization, undefined)
    assert.ok(!text.includes(key))
    assert.equal(await meshJobs(), jobs + 1)
  })

  it('the right key passes on the chain path, and the key is not in the (public) input or output documents', async () => {
    await freshHead()
    const requests = await chainRequests()
    const res = await fetch(fnUrl('keyed'), { headers: { authorization: `Bearer ${key}`, 'x-peerhost-mode': 'onchain' } })
    const text = await res.text()
    assert.equal(res.status, 200, text)
    assert.equal(res.headers.get('x-peerhost-path'), 'chain', text)
    assert.equal(JSON.parse(text).headers.authorization, undefined, text)
    assert.ok(!text.includes(key))
    assert.equal(await chainRequests(), requests + 1)
  })

  it('peerhost keys create --all-gateways reaches the staked gateway; a function that opts in (forwardCredential) receives the header', async () => {
    const r = await cli(['keys', 'create', 'auth-app', '--name', 'fwd', '--all-gateways', '--contracts', net.contractsFile, '--json'], env)
    assert.equal(r.code, 0, r.stderr)
    assert.deepEqual(r.lines.filter(l => l.event === 'key-gateway').map(l => l.url), [net.gatewayUrl])
    const fwdKey = r.lines.find(l => l.event === 'key').key
    const res = await fetch(fnUrl('keyed-fwd'), { headers: { authorization: `Bearer ${fwdKey}` } })
    assert.equal(res.status, 200)
    assert.equal(((await res.json()) as any).headers.authorization, `Bearer ${fwdKey}`)
  })

  it('attack: a revoked key is refused at once after peerhost keys revoke returns; no worker runs', async () => {
    const r = await cli(['keys', 'revoke', 'auth-app', keyId, '--gateway', net.gatewayUrl, '--json'], env)
    assert.equal(r.code, 0, r.stderr)
    const revokedAt = Date.now()
    await nothingRuns(async () => {
      await refused(await fetch(fnUrl('keyed'), { headers: { authorization: `Bearer ${key}` } }), 401, /revoked/)
      await refused(await fetch(fnUrl('keyed'), { headers: { authorization: `Bearer ${key}`, 'x-peerhost-mode': 'onchain' } }), 401, /revoked/)
    })
    assert.ok(Date.now() - revokedAt < 5_000)
    const list = await (await fetch(`${net.gatewayUrl}/_peerhost/keys/${builder.address}/auth-app`)).json() as any
    assert.equal(typeof list.keys.find((k: any) => k.id === keyId).revoked, 'number')
  })

  it('wallet: a signed request from an allowed address passes (mesh and chain); the signature header is stripped', async () => {
    for (const mode of ['mesh', 'chain']) {
      if (mode === 'chain') await freshHead()
      const url = `${fnUrl('signed')}/q?n=${mode}`
      const body = JSON.stringify({ mode })
      const headers = await signRequest(builder, { method: 'POST', url, body })
      const res = await fetch(url, { method: 'POST', body, headers: { ...headers, 'content-type': 'application/json', ...(mode === 'chain' ? { 'x-peerhost-mode': 'onchain' } : {}) } })
      const text = await res.text()
      assert.equal(res.status, 200, text)
      assert.equal(res.headers.get('x-peerhost-path'), mode, text)
      assert.equal(JSON.parse(text).headers[SIGNATURE_HEADER], undefined, text)
      assert.equal(JSON.parse(text).body, body)
    }
  })

  it('attack: unsigned, replayed, tampered, stranger-signed and cross-project wallet requests are refused; no worker runs', async () => {
    const url = fnUrl('signed')
    const body = 'pay 1'
    const headers = await signRequest(builder, { method: 'POST', url, body })
    const ok = await fetch(url, { method: 'POST', body, headers })
    assert.equal(ok.status, 200)
    await nothingRuns(async () => {
      for (const extra of [{}, { 'x-peerhost-mode': 'onchain' }]) {
        await refused(await fetch(url, { method: 'POST', body, headers: extra }), 401, /x-peerhost-signature: <timestamp unix ms>/)
        await refused(await fetch(url, { method: 'POST', body, headers: { ...headers, ...extra } }), 401, /replay/)
        await refused(await fetch(url, { method: 'POST', body: 'pay 1000', headers: { ...(await signRequest(builder, { method: 'POST', url, body })), ...extra } }), 403, /not in this function's "allow" list/)
        await refused(await fetch(url, { method: 'POST', body, headers: { ...(await signRequest(stranger, { method: 'POST', url, body })), ...extra } }), 403, new RegExp(stranger.address.toLowerCase()))
        await refused(await fetch(fnUrl('signed', 'auth-other'), { method: 'POST', body, headers: { ...(await signRequest(builder, { method: 'POST', url, body })), ...extra } }), 403, /allow/)
        await refused(await fetch(url, { method: 'POST', body, headers: { ...(await signRequest(builder, { method: 'POST', url, body, timestamp: Date.now() - 5 * 60_000 })), ...extra } }), 401, /clock/)
      }
    })
  })

  it('the key is in no log entry the builder reads, no process log, data directory or chain file', async () => {
    const logs = await cli(['logs', 'auth-app', '--gateway', net.gatewayUrl, '--json'], env)
    assert.equal(logs.code, 0, logs.stderr)
    const entries = logs.lines.filter(l => l.event === 'log' && l.function === 'keyed')
    assert.ok(entries.length >= 1 && entries.some(e => /headers/.test(e.logs)), `the keyed function's printed headers are in its logs: ${JSON.stringify(entries)}`)
    assert.ok(!logs.stdout.includes(key))
    assert.deepEqual(filesContaining(net.dir, key), [])
  })
})
