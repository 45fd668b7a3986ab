/**
 * Secrets end to end, with real processes: a Hardhat chain, a bootstrap node, a staked gateway
 * that publishes its secret key on chain, and a staked worker running functions in gVisor. The
 * builder puts a secret with `peerhost secret put` (value on stdin); the function sees it in env;
 * another project does not; a careless function that prints, stashes and throws it leaks it
 * nowhere; the chain fallback gets it from the gateway, not from IPFS; and afterwards no log, data
 * directory (blockstores included) or sandbox filesystem holds the value.
 */
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { privateKeyToAccount, generatePrivateKey } from 'viem/accounts'
import { hexToBytes } from 'viem'
import { deployProject, logsMessage, sealSecret, secretChangeMessage } from '#node'
import { cli } from '../helpers/cli.ts'
import { waitFor } from '../helpers/network.ts'
import { spawnPeerhost } from '../../bin/spawn.ts'
import { BUILDER_KEY, GATEWAY_KEY, startChainNetwork, type ChainNetwork } from '../deploy/chain-network.ts'
import { filesContaining } from '../helpers/files.ts'

const fixtures = resolve(import.meta.dirname, '..', 'fixtures')
const builder = privateKeyToAccount(BUILDER_KEY)
const gatewayAddress = privateKeyToAccount(GATEWAY_KEY).address
/** the secret: long and random, so finding it anywhere is no coincidence */
const SECRET = `tok_${randomBytes(24).toString('hex')}`
const SECOND_SECRET = `tok_${randomBytes(24).toString('hex')}`
/** Hardhat's funded account #6: a second gateway */
const SECOND_GATEWAY_KEY = '0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e'
const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex')

describe('e2e: secrets (staked gateway, gVisor worker)', function () {
  this.timeout(240_000)
  let net: ChainNetwork
  let vault: string
  let other: string
  const base = (): string[] => ['--gateway', net.gatewayUrl, '--contracts', net.contractsFile, '--json']
  const env = { PEERHOST_PRIVATE_KEY: BUILDER_KEY }

  before(async () => {
    net = await startChainNetwork({ workers: 1, executor: 'gvisor', stakeGateway: true })
    for (const fixture of ['secrets-app', 'secrets-other']) {
      await deployProject({ source: join(fixtures, fixture), gateway: net.gatewayUrl, contracts: net.contracts, account: BUILDER_KEY })
    }
    vault = `${net.gatewayUrl}/${builder.address}/vault/token`
    other = `${net.gatewayUrl}/${builder.address}/other/peek`
  })
  after(async () => { await net?.stop() })

  it('the gateway serves the key it published on chain', async () => {
    const info = await (await fetch(`${net.gatewayUrl}/_peerhost/gateway`)).json() as any
    assert.equal(info.address.toLowerCase(), gatewayAddress.toLowerCase())
    assert.equal(info.chainId, 31337)
    assert.match(info.encryptionKey, /^0x[0-9a-f]{64}$/)
  })

  it('peerhost secret put (stdin) → the function sees it in env; another project does not', async () => {
    const before = await (await fetch(vault)).json() as any
    assert.deepEqual(before, { has: false, public: 'vault' })
    const put = await cli(['secret', 'put', 'vault', 'API_TOKEN', ...base()], env, `${SECRET}\n`)
    assert.equal(put.code, 0, put.stderr)
    assert.equal(put.lines.at(-1).event, 'secret')
    assert.ok(!put.stdout.includes(SECRET) && !put.stderr.includes(SECRET))

    const res = await fetch(vault)
    assert.equal(res.status, 200)
    assert.deepEqual(await res.json(), { has: true, sha256: sha256(SECRET), length: SECRET.length, public: 'vault' })
    const peek = await (await fetch(other)).json() as any
    assert.equal(peek.token, null)
    assert.ok(!peek.names.includes('API_TOKEN'))

    const list = await cli(['secret', 'list', 'vault', '--gateway', net.gatewayUrl, '--json'], env)
    assert.equal(list.code, 0, list.stderr)
    assert.deepEqual(list.lines.at(-1).secrets.map((s: any) => s.name), ['API_TOKEN'])
    assert.ok(!list.stdout.includes(SECRET))
  })

  it('a function that prints, stashes and throws the secret leaks it nowhere; later executions find no trace', async () => {
    assert.deepEqual(await (await fetch(`${vault}?mode=leak`)).json(), { leaked: true })
    const thrown = await fetch(`${vault}?mode=throw`)
    assert.equal(thrown.status, 500)
    const body = await thrown.text()
    assert.ok(!body.includes(SECRET), 'the error answer does not carry the secret')
    assert.match(body, /FUNCTION_ERROR/)
    for (let i = 0; i < 3; i++) {
      const scan = await (await fetch(`${vault}?mode=scan`)).json() as any
      assert.deepEqual(scan, { files: [], realmGlobal: false, shimGlobal: false }, `scan ${i}: the secret is left in the sandbox`)
    }
  })

  it('peerhost logs shows the builder what its functions printed, with the secret redacted, and nobody else', async () => {
    const r = await cli(['logs', 'vault', '--gateway', net.gatewayUrl, '--json'], env)
    assert.equal(r.code, 0, r.stderr)
    const entries = r.lines.filter(l => l.event === 'log')
    const leak = entries.find(e => e.logs.includes('connecting with token'))
    assert.ok(leak !== undefined, `the leak request's log line is there: ${JSON.stringify(entries.map(e => e.logs))}`)
    assert.match(leak.logs, /connecting with token \[secret API_TOKEN\]/)
    assert.ok(entries.some(e => /cannot authenticate with \[secret API_TOKEN\]/.test(e.logs)), 'the thrown error is logged, redacted')
    assert.ok(!r.stdout.includes(SECRET))
    const anonymous = await fetch(`${net.gatewayUrl}/_peerhost/logs/${builder.address}/vault`)
    assert.equal(anonymous.status, 401)
    assert.match(((await anonymous.json()) as any).error.message, /x-peerhost-auth: <issuedAt unix seconds>\.<EIP-191 signature/)
    const stranger = privateKeyToAccount(generatePrivateKey())
    const issuedAt = Math.floor(Date.now() / 1000)
    const signature = await stranger.signMessage({ message: logsMessage(gatewayAddress, builder.address, 'vault', issuedAt) })
    const forged = await fetch(`${net.gatewayUrl}/_peerhost/logs/${builder.address}/vault`, { headers: { 'x-peerhost-auth': `${issuedAt}.${signature}` } })
    assert.equal(forged.status, 401)
    assert.match(((await forged.json()) as any).error.message, /are for its current owner 0x[0-9a-fA-F]{40}; this request is signed by/)
  })

  it('on the chain path the drawn worker gets the secrets inside the sealed input, never from a public document', async () => {
    const res = await fetch(vault, { headers: { 'x-peerhost-mode': 'onchain' } })
    assert.equal(res.status, 200, await res.clone().text())
    assert.equal(res.headers.get('x-peerhost-path'), 'chain')
    assert.deepEqual(await res.json(), { has: true, sha256: sha256(SECRET), length: SECRET.length, public: 'vault' })
    // the secret travels inside the input sealed to the drawn workers (docs/chain.md), not over a
    // separate fetch any admitted worker could make: the gateway's secrets-protocol handler never ran
    const gatewayLog = readFileSync(join(net.dir, 'logs', 'gateway.log'), 'utf8')
    assert.doesNotMatch(gatewayLog, /secrets handed to a worker for a chain request/)
  })

  it('forged, misdirected, stale and replayed changes are refused', async () => {
    const info = await (await fetch(`${net.gatewayUrl}/_peerhost/gateway`)).json() as any
    const key = hexToBytes(info.encryptionKey)
    const now = Math.floor(Date.now() / 1000)
    const send = async (project: string, name: string, sealed: Uint8Array, issued: number, signer = builder): Promise<Response> => {
      const signature = await signer.signMessage({ message: secretChangeMessage({ action: 'put', gateway: info.address, chainId: 31337, wallet: builder.address, project, name, sealed, issued }) })
      return await fetch(`${net.gatewayUrl}/_peerhost/secrets/${builder.address}/${project}/${name}`, {
        method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sealed: Buffer.from(sealed).toString('base64'), issued, signature })
      })
    }
    const forVault = sealSecret(key, new TextEncoder().encode('moved'), { chainId: 31337, gateway: info.address, wallet: builder.address, project: 'vault', name: 'API_TOKEN' })
    // an envelope sealed for vault, re-sent (properly signed) for another project: other/peek would print it
    const moved = await send('other', 'API_TOKEN', forVault, now + 1)
    assert.equal(moved.status, 400)
    assert.match(((await moved.json()) as any).error.message, /another chain, gateway, project or name/)
    const stranger = privateKeyToAccount(generatePrivateKey())
    const forged = await send('vault', 'API_TOKEN', forVault, now + 2, stranger)
    assert.equal(forged.status, 401)
    assert.match(((await forged.json()) as any).error.message, /not by the project's current owner/)
    const stale = await send('vault', 'API_TOKEN', forVault, now - 3_600)
    assert.equal(stale.status, 401)
    assert.match(((await stale.json()) as any).error.message, /sign it again/)
    const renamed = await send('vault', 'ROTATED', forVault, now)
    assert.equal(renamed.status, 400, 'sealed for API_TOKEN, sent as ROTATED')
    const second = sealSecret(key, new TextEncoder().encode('second-value'), { chainId: 31337, gateway: info.address, wallet: builder.address, project: 'vault', name: 'SECOND' })
    assert.equal((await send('vault', 'SECOND', second, now)).status, 200)
    const replayed = await send('vault', 'SECOND', second, now)
    assert.equal(replayed.status, 400, 'the same signed change twice')
    assert.match(((await replayed.json()) as any).error.message, /is not newer/)
    const garbage = await fetch(`${net.gatewayUrl}/_peerhost/secrets/${builder.address}/vault/API_TOKEN`, { method: 'PUT', body: 'nope' })
    assert.equal(garbage.status, 400)
    assert.match(((await garbage.json()) as any).error.message, /expected a JSON body/)
    // the secret is unchanged by all of that
    assert.equal(((await (await fetch(vault)).json()) as any).sha256, sha256(SECRET))
  })

  it('refuses to seal to a gateway whose served key differs from its on-chain key', async () => {
    // an impostor in front of the real gateway's address, serving its own key
    const impostor: Server = createServer((_req, res) => {
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ address: gatewayAddress, chainId: 31337, encryptionKey: `0x${'ab'.repeat(32)}`, algorithm: 'x25519-hkdf-sha256-aes-256-gcm' }))
    })
    await new Promise<void>(r => impostor.listen(0, '127.0.0.1', r))
    try {
      const url = `http://127.0.0.1:${(impostor.address() as any).port}`
      const r = await cli(['secret', 'put', 'vault', 'API_TOKEN', '--gateway', url, '--contracts', net.contractsFile], env, 'stolen?')
      assert.equal(r.code, 2, r.stderr)
      assert.match(r.stderr, /serves secret key 0xabab.* but 0x[0-9a-fA-F]{40} published 0x[0-9a-f]{64} on chain; refusing/)
    } finally {
      impostor.close()
    }
  })

  it('peerhost secret delete → the function no longer sees it', async () => {
    const del = await cli(['secret', 'delete', 'vault', 'API_TOKEN', ...base()], env)
    assert.equal(del.code, 0, del.stderr)
    assert.equal(del.lines.at(-1).deleted, true)
    assert.deepEqual(await (await fetch(vault)).json(), { has: false, public: 'vault' })
  })

  it('--all-gateways seals the secret to every staked gateway; each one hands it to its jobs', async () => {
    // a second staked gateway (Hardhat account #6) on the same network
    const dir2 = join(net.dir, 'gateway-2')
    mkdirSync(dir2, { recursive: true, mode: 0o700 })
    writeFileSync(join(dir2, 'evm.key'), `${SECOND_GATEWAY_KEY}\n`, { mode: 0o600 })
    const second = spawnPeerhost('gateway-2', ['gateway', '--bootstrap', net.bootstrapAddrs.join(','), '--port', '0', '--data-dir', dir2, '--contracts', net.contractsFile, '--stake', '1', '--log-level', 'info'], join(net.dir, 'logs'))
    net.procs.push(second)
    const url2: string = (await second.ready).url
    await waitFor('the worker in the second gateway\'s view', async () => ((await (await fetch(`${url2}/_peerhost/status`)).json()) as any).workers.length > 0 ? true : undefined, 30_000)
    const put = await cli(['secret', 'put', 'vault', 'API_TOKEN', '--all-gateways', '--contracts', net.contractsFile, '--json'], env, `${SECOND_SECRET}\n`)
    assert.equal(put.code, 0, put.stderr)
    assert.deepEqual(put.lines.filter(l => l.event === 'secret').map(l => l.gateway.toLowerCase()).sort(), [gatewayAddress.toLowerCase(), privateKeyToAccount(SECOND_GATEWAY_KEY).address.toLowerCase()].sort())
    for (const base of [net.gatewayUrl, url2]) {
      const res = await fetch(`${base}/${builder.address}/vault/token`)
      assert.deepEqual(await res.json(), { has: true, sha256: sha256(SECOND_SECRET), length: SECOND_SECRET.length, public: 'vault' }, base)
    }
    const both = await cli(['secret', 'delete', 'vault', 'API_TOKEN', '--gateway', `${net.gatewayUrl},${url2}`, '--contracts', net.contractsFile, '--json'], env)
    assert.equal(both.code, 0, both.stderr)
    assert.equal(both.lines.filter(l => l.event === 'secret' && l.deleted === true).length, 2)
    // one unreachable gateway among several: the others still take the change, the command says which failed
    const partial = await cli(['secret', 'put', 'vault', 'OTHER', '--gateway', `${url2},http://127.0.0.1:9`, '--contracts', net.contractsFile], env, 'x-value-123')
    assert.equal(partial.code, 1)
    assert.match(partial.stderr, /1 of 2 gateways did not take the change: http:\/\/127\.0\.0\.1:9: cannot reach/)
    assert.match(partial.stdout, /secret OTHER set/)
  })

  it('no log, data directory or chain state holds the value', async () => {
    // every process log, every node's data dir (keys, blockstores, bundle caches, the gateway's
    // sealed store, the worker's rootfs and runsc state) and the chain's files
    assert.deepEqual(filesContaining(net.dir, SECRET), [])
    assert.deepEqual(filesContaining(net.dir, SECOND_SECRET), [])
    const sealedStore = readFileSync(join(net.dir, 'gateway', 'secrets', builder.address.toLowerCase(), 'vault.json'), 'utf8')
    assert.ok(sealedStore.includes('API_TOKEN'), 'the gateway did store the (sealed) secret')
    const logs = readdirSync(join(net.dir, 'logs'))
    assert.ok(logs.some(l => l.startsWith('worker')) && logs.some(l => l.startsWith('gateway')), `logs were written: ${logs.join(', ')}`)
  })
})
