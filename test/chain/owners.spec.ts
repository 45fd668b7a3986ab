/**
 * After a project changes hands on chain (FunctionRegistry.transferProject + acceptProject), the
 * old owner can no longer read or change its secrets or read its logs on a gateway, and the new
 * owner can. Real Hardhat chain, real FunctionRegistry, a real in-process gateway over HTTP.
 * The attack: a builder sells (transfers) a project and keeps using its own key against the
 * gateway, whose old check compared the signer with the wallet in the path (the namespace).
 */
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { Registry } from 'prom-client'
import { createWalletClient, http, type Address, type Hex } from 'viem'
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from 'viem/accounts'
import { functionRegistryAbi } from '#contracts'
import { functionId, projectId, rawCid } from '#protocol'
import {
  createGateway, fastSigner, functionTable, loadSecretKey, logsMessage, registryOwners, registryPublicClient, sealSecret,
  secretChangeMessage, secretRoutes, secretStore, silentLogger, startLocalChain, cidToBytes, type GatewayNode, type LocalChain
} from '#node'
import { freePort } from '../helpers/network.ts'

/** Hardhat's funded accounts #1 (the builder who sells) and #6 (the buyer) */
const SELLER = privateKeyToAccount('0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d')
const BUYER = privateKeyToAccount('0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e')
const PROJECT = 'vault'

describe('chain: secrets and logs follow the project\'s on-chain owner', function () {
  this.timeout(400_000)
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-owners-'))
  const logger = silentLogger()
  let chain: LocalChain
  let gateway: GatewayNode
  let gatewayAddress: Address
  let issued = Math.floor(Date.now() / 1000) - 300

  async function send (account: PrivateKeyAccount, functionName: string, args: unknown[]): Promise<void> {
    const wallet = createWalletClient({ account, transport: http(chain.rpcUrl) })
    const client = registryPublicClient({ rpcUrl: chain.rpcUrl, chainId: chain.chainId, addresses: { FunctionRegistry: chain.addresses.FunctionRegistry } })
    const hash = await wallet.writeContract({ chain: null, address: chain.addresses.FunctionRegistry, abi: functionRegistryAbi, functionName: functionName as any, args: args as any })
    const receipt = await client.waitForTransactionReceipt({ hash })
    assert.equal(receipt.status, 'success', `${functionName} reverted`)
  }

  async function putSecret (signer: PrivateKeyAccount, name: string, value: string): Promise<{ status: number, body: any }> {
    const key = (await (await fetch(`${gateway.url}/_peerhost/gateway`)).json() as any).encryptionKey as Hex
    const ctx = { chainId: chain.chainId, gateway: gatewayAddress, wallet: SELLER.address, project: PROJECT, name }
    const sealed = sealSecret(Buffer.from(key.slice(2), 'hex'), new TextEncoder().encode(value), ctx)
    issued += 1
    const signature = await signer.signMessage({ message: secretChangeMessage({ action: 'put', ...ctx, sealed, issued }) })
    const res = await fetch(`${gateway.url}/_peerhost/secrets/${SELLER.address}/${PROJECT}/${name}`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sealed: Buffer.from(sealed).toString('base64'), issued, signature }) })
    return { status: res.status, body: await res.json() }
  }

  async function readLogs (signer: PrivateKeyAccount): Promise<{ status: number, body: any }> {
    const at = Math.floor(Date.now() / 1000)
    const signature = await signer.signMessage({ message: logsMessage(gatewayAddress, SELLER.address, PROJECT, at) })
    const res = await fetch(`${gateway.url}/_peerhost/logs/${SELLER.address}/${PROJECT}`, { headers: { 'x-peerhost-auth': `${at}.${signature}` } })
    return { status: res.status, body: await res.json() }
  }

  before(async () => {
    chain = await startLocalChain({ port: await freePort(), dataDir: join(dir, 'chain') })
    const bundle = new TextEncoder().encode('export default { fetch: () => new Response("hi") }')
    const manifestCid = rawCid(new TextEncoder().encode(`manifest ${Math.random()}`))
    await send(SELLER, 'deploy', [SELLER.address, PROJECT, cidToBytes(manifestCid), `0x${'00'.repeat(32)}`, ['hi'], 0n])
    const signer = fastSigner(generatePrivateKey())
    gatewayAddress = signer.address
    mkdirSync(join(dir, 'gw'), { mode: 0o700 })
    const key = loadSecretKey(join(dir, 'gw'))
    const store = secretStore({ dataDir: join(dir, 'gw'), key, chainId: chain.chainId, gateway: gatewayAddress, logger })
    // a short cache, so the test sees the transfer quickly; the gateway's default is 5 s
    const owners = registryOwners({ ttlMs: 200 })({ client: registryPublicClient({ rpcUrl: chain.rpcUrl, chainId: chain.chainId, addresses: { FunctionRegistry: chain.addresses.FunctionRegistry } }), registry: chain.addresses.FunctionRegistry })
    const functions = functionTable()
    functions.add({ ref: { wallet: SELLER.address, project: PROJECT, name: 'hi', id: functionId(SELLER.address, PROJECT, 'hi'), bundleCid: rawCid(bundle) }, options: { memoryMb: 128, timeoutMs: 1000, network: [], isolation: 'function' }, env: {} }, bundle)
    gateway = await createGateway({ port: 0, bootstrap: [] }, {
      privateKey: await generateKeyPair('Ed25519'), signer, functions, logger, registry: new Registry(), owners,
      routes: secretRoutes({ store, key, chainId: chain.chainId, gateway: gatewayAddress, logger, owners })
    })
    await gateway.start()
    // one request leaves one log entry (no worker: 503 NO_WORKER, logged all the same)
    assert.equal((await fetch(`${gateway.url}/${SELLER.address}/${PROJECT}/hi`)).status, 503)
  })
  after(async () => {
    await gateway?.stop()
    await chain?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it('before the transfer: the owner manages secrets and reads logs; the buyer cannot', async () => {
    assert.equal((await putSecret(SELLER, 'API_TOKEN', 'seller-value')).status, 200)
    const logs = await readLogs(SELLER)
    assert.equal(logs.status, 200)
    assert.equal(logs.body.entries.length, 1)
    const buyerPut = await putSecret(BUYER, 'API_TOKEN', 'buyer-value')
    assert.equal(buyerPut.status, 401)
    assert.match(buyerPut.body.error.message, /not by the project's current owner/)
    assert.equal((await readLogs(BUYER)).status, 401)
  })

  it('after transferProject + acceptProject: the old owner is refused, the new owner is served', async () => {
    const id = projectId(SELLER.address, PROJECT)
    await send(SELLER, 'transferProject', [id, BUYER.address])
    // a pending transfer changes nothing yet
    await new Promise(resolve => setTimeout(resolve, 300))
    assert.equal((await putSecret(BUYER, 'API_TOKEN', 'early')).status, 401)
    await send(BUYER, 'acceptProject', [id])
    await new Promise(resolve => setTimeout(resolve, 300))

    const oldPut = await putSecret(SELLER, 'API_TOKEN', 'seller-again')
    assert.equal(oldPut.status, 401)
    assert.equal(oldPut.body.error.code, 'UNAUTHORIZED')
    const oldLogs = await readLogs(SELLER)
    assert.equal(oldLogs.status, 401)
    assert.match(oldLogs.body.error.message, new RegExp(`current owner ${BUYER.address}`))

    assert.equal((await putSecret(BUYER, 'API_TOKEN', 'buyer-value')).status, 200)
    const newLogs = await readLogs(BUYER)
    assert.equal(newLogs.status, 200)
    assert.equal(newLogs.body.entries.length, 1)
  })
})
