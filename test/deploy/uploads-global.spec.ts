/**
 * The attack the per-wallet upload quota alone does not stop: wallets are free, so many fresh
 * wallets each park up to their quota. The gateway's global cap on unreferenced upload bytes
 * refuses them once full (429 naming uploadGlobalQuotaBytes), stores nothing more, and frees up
 * when the leases end. Real helia blockstore, real EIP-191 signatures, the gateway's routes.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Hono } from 'hono'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { rawCid } from '#protocol'
import { blockStorage, blockUploads, createMeshNode, deployRoutes, signUpload, silentLogger, UPLOAD_HEADER, type BlockStorage, type BlockUploads, type PeerHostLibp2p } from '#node'
import { waitFor } from '../helpers/network.ts'

describe('uploads: a global cap over all wallets', function () {
  this.timeout(30_000)
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-uploads-global-'))
  const GATEWAY = privateKeyToAccount(generatePrivateKey()).address
  const QUOTA = 100 * 1024
  const GLOBAL = 250 * 1024
  let libp2p: PeerHostLibp2p
  let storage: BlockStorage
  let uploads: BlockUploads
  const app = new Hono()
  const block = (label: string, size: number): Uint8Array => new Uint8Array(Buffer.concat([Buffer.from(`${label} ${Math.random()}`), Buffer.alloc(size)]))

  before(async () => {
    libp2p = await createMeshNode({ privateKey: await generateKeyPair('Ed25519') })
    storage = blockStorage({ dataDir: dir })({ libp2p, logger: silentLogger() })
    await storage.start()
    uploads = blockUploads({ quotaBytes: QUOTA, globalQuotaBytes: GLOBAL, leaseMs: 2_000, sweepIntervalMs: 100 })({ gateway: GATEWAY, storage, logger: silentLogger() })
    await uploads.start()
    deployRoutes({ storage, uploads })(app)
  })
  after(async () => {
    await uploads.stop()
    await storage.stop()
    await libp2p.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it('refuses fresh wallets once all unreferenced uploads reach the global cap, then frees it when leases end', async () => {
    const statuses: number[] = []
    const refused: Array<{ cid: string, body: any, retryAfter: string | null }> = []
    // five fresh wallets, each well inside its own quota (80 KiB of 100 KiB)
    for (let i = 0; i < 5; i++) {
      const wallet = privateKeyToAccount(generatePrivateKey())
      const bytes = block(`wallet ${i}`, 80 * 1024)
      const cid = rawCid(bytes)
      const res = await app.request(`/_peerhost/blocks/${cid}`, { method: 'POST', body: bytes, headers: { [UPLOAD_HEADER]: await signUpload(wallet, GATEWAY, cid) } })
      statuses.push(res.status)
      if (res.status !== 201) refused.push({ cid, body: await res.json(), retryAfter: res.headers.get('retry-after') })
    }
    assert.deepEqual(statuses, [201, 201, 201, 429, 429])
    for (const r of refused) {
      assert.equal(r.body.error.code, 'RATE_LIMITED')
      assert.equal(r.body.error.details.limit, 'uploadGlobalQuotaBytes')
      assert.equal(r.body.error.details.value, GLOBAL)
      assert.ok(Number(r.retryAfter) >= 1)
      assert.equal(await storage.has(r.cid), false, 'a refused upload is not stored')
    }
    assert.ok(uploads.usedTotal() <= GLOBAL)
    await waitFor('the leases to end', () => uploads.usedTotal() === 0 || undefined, 10_000, 100)
    const late = privateKeyToAccount(generatePrivateKey())
    const bytes = block('after the leases', 80 * 1024)
    const cid = rawCid(bytes)
    const res = await app.request(`/_peerhost/blocks/${cid}`, { method: 'POST', body: bytes, headers: { [UPLOAD_HEADER]: await signUpload(late, GATEWAY, cid) } })
    assert.equal(res.status, 201)
  })
})
