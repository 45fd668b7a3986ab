/**
 * The deploy path end to end, with real processes: a local Hardhat chain with the contracts, a
 * bootstrap node, a gateway following FunctionRegistry (--contracts) and two workers (dev
 * executor), all on 127.0.0.1. A builder deploys from a `file://` git URL with `peerhost deploy`,
 * calls every function, deploys a new version, rolls back; bad input fails before anything is
 * registered on-chain.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { FsBlockstore } from 'blockstore-fs'
import { CID } from 'multiformats/cid'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createWalletClient, http, type Hex } from 'viem'
import { hardhat } from 'viem/chains'
import { privateKeyToAccount } from 'viem/accounts'
import { spawnPeerhost } from '../../bin/spawn.ts'
import { functionRegistryAbi } from '#contracts'
import { rawCid } from '#protocol'
import { cidToBytes, deployProject, listVersions, registryPublicClient, signUpload, UPLOAD_HEADER, type ChainContracts, type LocalChain } from '#node'
import { waitFor } from '../helpers/network.ts'
import { cli } from '../helpers/cli.ts'
import { BUILDER_KEY, startChainNetwork, type ChainNetwork } from '../deploy/chain-network.ts'

const root = resolve(import.meta.dirname, '..', '..')
const fixtures = join(root, 'test', 'fixtures')
const builder = privateKeyToAccount(BUILDER_KEY)
const GIT_ENV = { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@example.com', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@example.com', GIT_AUTHOR_DATE: '2026-01-01T00:00:00Z', GIT_COMMITTER_DATE: '2026-01-01T00:00:00Z' }

function git (dir: string, ...args: string[]): string {
  return execFileSync('git', ['-C', dir, ...args], { env: GIT_ENV, encoding: 'utf8' }).trim()
}

/** A git repository made from a fixture folder, committed. */
export function fixtureRepo (fixture: string, into: string): string {
  cpSync(join(fixtures, fixture), into, { recursive: true })
  git(into, 'init', '--quiet', '--initial-branch=main')
  git(into, 'add', '-A')
  git(into, 'commit', '--quiet', '-m', 'initial')
  return into
}

describe('e2e: deploy to a local network that follows the chain', function () {
  this.timeout(180_000)
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-deploy-e2e-'))
  let net: ChainNetwork
  let chain: LocalChain
  let contracts: ChainContracts
  let contractsFile: string
  let gatewayUrl: string
  let repo: string
  let first: any

  before(async () => {
    net = await startChainNetwork({ workers: 2 })
    ;({ chain, contracts, contractsFile, gatewayUrl } = net)
    void chain
    repo = fixtureRepo('deploy-app', join(dir, 'app'))
  })
  after(async () => {
    await net?.stop()
    if (process.env.PEERHOST_KEEP_TEST_DIRS !== '1') rmSync(dir, { recursive: true, force: true })
  })

  it('deploys from a file:// git URL and serves every function', async () => {
    const r = await cli(['deploy', `file://${repo}`, '--gateway', gatewayUrl, '--contracts', contractsFile, '--json'], { PEERHOST_PRIVATE_KEY: BUILDER_KEY })
    assert.equal(r.code, 0, r.stderr)
    const steps = r.lines.filter(l => l.event === 'step' && l.status === 'done').map(l => l.step)
    assert.deepEqual(steps, ['source', 'build', 'preflight', 'upload', 'register', 'live'])
    first = r.lines.find(l => l.event === 'deployed')
    if (process.env.PEERHOST_DEBUG_TEST === '1') console.log(r.lines.filter(l => l.status === 'done').map(l => `${l.step} ${l.ms}`).join(', '))
    assert.equal(first.project, 'app')
    assert.equal(first.version, 1)
    assert.equal(first.owner, builder.address)
    assert.equal(first.sourceCommit, `0x${git(repo, 'rev-parse', 'HEAD').padEnd(64, '0')}`)
    assert.deepEqual(first.functions.map((f: any) => f.name), ['greet', 'time'])
    const greet = await fetch(`${gatewayUrl}/${builder.address}/app/greet?name=Ada`)
    assert.equal(greet.status, 200, await greet.clone().text())
    assert.equal(await greet.text(), 'hello, Ada (v1)')
    const time = await fetch(`${gatewayUrl}/${builder.address}/app/time`, { method: 'POST' })
    assert.equal(time.status, 200)
    assert.deepEqual(await time.json(), { method: 'POST', version: 1 })
    // the worker fetched the bundle over bitswap and keeps it, verified, in its cache
    // live within a few blocks, not after a long poll (a generous bound for a loaded machine: the
    // figure itself belongs to the benchmarks)
    assert.ok(first.liveMs < 30_000, `deploy → live took ${first.liveMs} ms`)
  })

  it('serves a new version within a block of its registration', async () => {
    writeFileSync(join(repo, 'functions', 'greet.ts'), (await import('node:fs')).readFileSync(join(repo, 'functions', 'greet.ts'), 'utf8').replace('(v1)', '(v2)'))
    git(repo, 'commit', '--quiet', '-am', 'v2')
    const result = await deployProject({ source: `file://${repo}`, gateway: gatewayUrl, contracts, account: BUILDER_KEY })
    assert.equal(result.version, 2)
    assert.notEqual(result.manifestCid, first.manifestCid)
    // `time` did not change: same bundle CID
    assert.equal(result.functions.find(f => f.name === 'time')?.bundleCid, first.functions.find((f: any) => f.name === 'time').bundleCid)
    const res = await fetch(`${gatewayUrl}/${builder.address}/app/greet?name=Ada`)
    assert.equal(await res.text(), 'hello, Ada (v2)')
  })

  it('rolls back to version 1 and serves it again', async () => {
    const r = await cli(['rollback', 'app', '1', '--contracts', contractsFile, '--json'], { PEERHOST_PRIVATE_KEY: BUILDER_KEY })
    assert.equal(r.code, 0, r.stderr)
    assert.deepEqual(r.lines.find(l => l.event === 'rollback'), { event: 'rollback', project: 'app', owner: builder.address, version: 1, previous: 2, txHash: r.lines.at(-1).txHash })
    const started = Date.now()
    await waitFor('version 1 served again', async () => {
      const res = await fetch(`${gatewayUrl}/${builder.address}/app/greet?name=Ada`)
      return (await res.text()) === 'hello, Ada (v1)'
    }, 5_000, 50)
    assert.ok(Date.now() - started < 2_000)
    const v = await cli(['versions', 'app', '--owner', builder.address, '--contracts', contractsFile, '--json'])
    assert.equal(v.code, 0, v.stderr)
    const versions = v.lines[0].versions
    assert.deepEqual(versions.map((x: any) => [x.version, x.active]), [[1, true], [2, false]])
    assert.equal(versions[0].manifestCid, first.manifestCid)
  })

  it('is live on a second gateway that never received the upload (manifest and bundles over bitswap)', async () => {
    // staked (Hardhat's funded account #6): workers on a chain answer only tickets of staked gateways
    const gw2Dir = join(net.dir, 'gateway-2')
    mkdirSync(gw2Dir, { recursive: true, mode: 0o700 })
    writeFileSync(join(gw2Dir, 'evm.key'), '0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e\n', { mode: 0o600 })
    const gw2 = spawnPeerhost('gateway-2', ['gateway', '--bootstrap', net.bootstrapAddrs.join(','), '--port', '0', '--data-dir', gw2Dir, '--contracts', contractsFile, '--stake', '1', '--log-level', 'info'], join(net.dir, 'logs'))
    try {
      const url: string = (await gw2.ready).url
      const text = await waitFor('the second gateway to serve app/greet', async () => {
        const res = await fetch(`${url}/${builder.address}/app/greet?name=Ada`)
        return res.status === 200 ? await res.text() : undefined
      }, 20_000, 200)
      assert.equal(text, 'hello, Ada (v1)')
    } finally {
      await gw2.stop(5_000)
    }
  })

  it('keeps serving the previous version when a registered manifest is malformed', async () => {
    const bad = new TextEncoder().encode('{"type":"peerhost-manifest","v":1,"functions":"nope"}')
    const cid = rawCid(bad)
    const { gateway } = await (await fetch(`${gatewayUrl}/_peerhost/uploads`)).json() as { gateway: `0x${string}` }
    assert.equal((await fetch(`${gatewayUrl}/_peerhost/blocks/${cid}`, { method: 'POST', body: bad })).status, 401, 'unsigned uploads are refused')
    assert.equal((await fetch(`${gatewayUrl}/_peerhost/blocks/${cid}`, { method: 'POST', body: bad, headers: { [UPLOAD_HEADER]: await signUpload(builder, gateway, cid) } })).status, 201)
    const wallet = createWalletClient({ account: builder, chain: { ...hardhat, id: contracts.chainId }, transport: http(contracts.rpcUrl) })
    const hash = await wallet.writeContract({ address: contracts.addresses.FunctionRegistry, abi: functionRegistryAbi, functionName: 'deploy', args: [builder.address, 'app', cidToBytes(cid), `0x${'0'.repeat(64)}`, ['greet'], 0n] })
    await registryPublicClient(contracts).waitForTransactionReceipt({ hash })
    const state = await waitFor('the gateway to see version 3', async () => {
      const body = await (await fetch(`${gatewayUrl}/_peerhost/projects/${builder.address}/app`)).json() as any
      return body.version === 3 && body.error !== null ? body : undefined
    }, 5_000, 50)
    assert.equal(state.live, false)
    assert.equal(state.served, 1)
    assert.match(state.error, /manifest is malformed/)
    const res = await fetch(`${gatewayUrl}/${builder.address}/app/greet?name=Ada`)
    assert.equal(await res.text(), 'hello, Ada (v1)')
  })

  it('never runs a forged bundle: workers refuse bytes that do not match the CID', async () => {
    const src = join(dir, 'forged-src')
    cpSync(join(fixtures, 'deploy-app'), src, { recursive: true })
    writeFileSync(join(src, 'functions', 'greet.ts'), readFileSync(join(src, 'functions', 'greet.ts'), 'utf8').replace('(v1)', '(genuine)'))
    const result = await deployProject({ source: src, project: 'forged', gateway: gatewayUrl, contracts, account: BUILDER_KEY })
    const cid = result.functions.find(f => f.name === 'greet')!.bundleCid
    // the gateway's blockstore now holds other code under the genuine CID (a malicious or broken peer)
    const blocks = new FsBlockstore(join(net.dir, 'gateway', 'ipfs', 'blocks'))
    await blocks.open()
    await blocks.put(CID.parse(cid), new TextEncoder().encode('module.exports = { default: { fetch: () => new Response("forged!") } }'))
    await blocks.close()
    const res = await fetch(`${gatewayUrl}/${builder.address}/forged/greet`)
    const body = await res.text()
    assert.notEqual(res.status, 200, body)
    assert.doesNotMatch(body, /forged!/)
    for (const w of [1, 2]) assert.equal(existsSync(join(net.dir, `worker-${w}`, 'bundles', cid)), false)
  })

  it('creates a keystore wallet and deploys with it', async () => {
    const keystore = join(dir, 'wallet.json')
    const env = { PEERHOST_WALLET_PASSWORD: 'pw for tests', PEERHOST_PRIVATE_KEY: '' }
    const made = await cli(['wallet', 'new', '--out', keystore, '--json'], env)
    assert.equal(made.code, 0, made.stderr)
    const { address } = made.lines[0]
    assert.equal(JSON.parse(readFileSync(keystore, 'utf8')).version, 3)
    // fund the new wallet from the builder
    const funder = createWalletClient({ account: builder, chain: { ...hardhat, id: contracts.chainId }, transport: http(contracts.rpcUrl) })
    await registryPublicClient(contracts).waitForTransactionReceipt({ hash: await funder.sendTransaction({ to: address, value: 10n ** 18n }) })
    const r = await cli(['deploy', repo, '--project', 'from-keystore', '--keystore', keystore, '--gateway', gatewayUrl, '--contracts', contractsFile, '--no-wait', '--json'], env)
    assert.equal(r.code, 0, r.stderr)
    const deployed = r.lines.find(l => l.event === 'deployed')
    assert.equal(deployed.owner, address)
    assert.equal(deployed.version, 1)
    // on the local chain the deploy funded the project's escrow with half of what the wallet still held (1 less the deploy's gas)
    const deposited = BigInt(deployed.localEscrow.deposited)
    assert.ok(deposited > 4n * 10n ** 17n && deposited < 5n * 10n ** 17n, `deposited ${deposited}: ${r.stdout}`)
  })

  it('funds the project\'s escrow and allows the gateway with peerhost escrow', async () => {
    const gatewayAddress = ((await (await fetch(`${gatewayUrl}/_peerhost/status`)).json()) as any).address as string
    const env = { PEERHOST_PRIVATE_KEY: BUILDER_KEY }
    // on this local chain (31337) `peerhost deploy` already gave the project an escrow and the gateway an allowance
    // the reads and the two refusals change nothing on chain: their processes start together (each
    // a Node start of seconds on a loaded machine); the deposit and the allowance, sent from one
    // wallet, go one after the other as before
    const [before, bad, unknown] = await Promise.all([
      cli(['escrow', 'show', 'app', '--gateway', gatewayAddress, '--contracts', contractsFile, '--json'], env),
      cli(['escrow', 'allow', 'app', 'not-an-address', '0.01', '--contracts', contractsFile], env),
      cli(['escrow', 'deposit', 'never-deployed', '0.1', '--contracts', contractsFile], env)
    ])
    assert.equal(before.code, 0, before.stderr)
    const was = before.lines.at(-1)
    assert.equal(was.balance, (50n * 10n ** 18n).toString(), 'deploy funded the new project on the local chain')
    assert.equal(was.allowance.perEpoch, (10n ** 18n).toString(), 'and allowed the gateway it deployed to')
    const dep = await cli(['escrow', 'deposit', 'app', '0.5', '--contracts', contractsFile, '--json'], env)
    assert.equal(dep.code, 0, dep.stderr)
    const allow = await cli(['escrow', 'allow', 'app', gatewayAddress, '0.01', '--contracts', contractsFile, '--json'], env)
    assert.equal(allow.code, 0, allow.stderr)
    const show = await cli(['escrow', 'show', 'app', '--gateway', gatewayAddress, '--contracts', contractsFile, '--json'], env)
    assert.equal(show.code, 0, show.stderr)
    const s = show.lines.at(-1)
    assert.equal(s.balance, (50n * 10n ** 18n + 5n * 10n ** 17n).toString())
    assert.equal(s.allowance.perEpoch, (10n ** 16n).toString())
    assert.equal(bad.code, 2)
    assert.match(bad.stderr, /<gateway> must be the gateway's URL \(such as http:\/\/127\.0\.0\.1:8080\) or its 0x address, got "not-an-address"/)
    assert.equal(unknown.code, 2)
    assert.match(unknown.stderr, /project "never-deployed" is not registered under this wallet; deploy it first/)
  })

  describe('bad input registers nothing on-chain', () => {
    let blockBefore: bigint
    const client = (): ReturnType<typeof registryPublicClient> => registryPublicClient(contracts)
    before(async () => { blockBefore = await client().getBlockNumber({ cacheTime: 0 }) })
    after(async () => {
      // automining: a registered deploy would have mined a block
      assert.equal(await client().getBlockNumber({ cacheTime: 0 }), blockBefore)
    })

    it('lists every problem of a peerhost.json at once (exit 2)', async () => {
      const r = await cli(['deploy', join(fixtures, 'deploy-bad-config'), '--gateway', gatewayUrl, '--contracts', contractsFile], { PEERHOST_PRIVATE_KEY: BUILDER_KEY })
      assert.equal(r.code, 2)
      assert.match(r.stderr, /has 5 problems/)
      for (const path of ['name', 'defaults.memoryMb', 'defaults.timeoutMs', 'functions.ok.auth', '(top level)']) assert.ok(r.stderr.includes(`- ${path}:`), `${path} in ${r.stderr}`)
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace')
    })

    it('says so when a repository has no functions/ folder', async () => {
      const empty = fixtureRepo('deploy-empty', join(dir, 'empty'))
      const r = await cli(['deploy', `file://${empty}`, '--gateway', gatewayUrl, '--contracts', contractsFile], { PEERHOST_PRIVATE_KEY: BUILDER_KEY })
      assert.equal(r.code, 2)
      assert.match(r.stderr, /has no functions\/ folder/)
    })

    it('fails on a syntax error naming the file and line', async () => {
      await assert.rejects(deployProject({ source: join(fixtures, 'deploy-syntax'), gateway: gatewayUrl, contracts, account: BUILDER_KEY }),
        (err: any) => err.code === 'BUNDLE_FAILED' && /functions\/broken\.js:4:/.test(err.message))
    })

    it('registers nothing when the upload fails', async () => {
      await assert.rejects(deployProject({ source: repo, project: 'unreachable', gateway: 'http://127.0.0.1:9', contracts, account: BUILDER_KEY }), { code: 'GATEWAY_UNREACHABLE' })
      await assert.rejects(listVersions(client(), contracts, builder.address, 'unreachable'), { code: 'UNKNOWN_PROJECT' })
    })

    it('stops at the pre-flight check, before uploading, when the chain is not the one expected', async () => {
      const steps: string[] = []
      await assert.rejects(deployProject({ source: repo, project: 'wrong-chain', gateway: gatewayUrl, contracts: { ...contracts, chainId: 1 }, account: BUILDER_KEY, onStep: e => { if (e.status !== 'start') steps.push(`${e.step}:${e.status}`) } }), { code: 'WRONG_CHAIN' })
      assert.deepEqual(steps, ['source:done', 'build:done', 'preflight:failed'])
    })
  })
})
