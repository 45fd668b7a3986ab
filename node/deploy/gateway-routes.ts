/**
 * Gateway HTTP routes for deploys (mounted through the gateway's `routes` hook):
 *
 * - `POST /_peerhost/blocks/<cid>` — body: the raw block bytes (≤ 2 MiB), signed by the builder:
 *   `x-peerhost-upload: <wallet>.<issuedAtUnixSec>.<signature>`, an EIP-191 personal_sign by
 *   `<wallet>` over the text
 *   `PeerHost block upload\ngateway: <gateway address>\ncid: <cid>\nissued at: <issuedAt>`
 *   (`uploadMessage`/`signUpload` in uploads.ts; `issuedAt` within ±10 min of the gateway's clock).
 *   The gateway checks the signature, that the CID is a CIDv1 raw sha2-256, hashes the body,
 *   stores the block in its helia blockstore and pins it on a lease (1 h): a block no registered
 *   version references by then is deleted; one that a version references is kept while that
 *   version is retained (registry-table.ts). `201 {"cid","bytes"}`; `401 UNAUTHORIZED` when the
 *   header is missing, malformed, expired or signed by someone else, for another block or another
 *   gateway; `429 RATE_LIMITED` when the wallet's unreferenced uploads would exceed its quota
 *   (64 MiB); `400 BAD_REQUEST` for a bad CID or bytes that do not match it;
 *   `413 PAYLOAD_TOO_LARGE` above the limit.
 * - `GET /_peerhost/uploads` — what a builder signs for: `{"gateway","header","format","quotaBytes","leaseSec","clockSkewSec"}`.
 * - `GET /_peerhost/blocks/<cid>` — the block, when this gateway holds it (no network fetch).
 * - `GET /_peerhost/projects/<wallet>/<project>` — the project's active version on chain and
 *   whether this gateway serves it yet (`live`).
 */
import type { Hono } from 'hono'
import { jsonError, readBody } from '../gateway/http.ts'
import type { BlockStorage } from '../storage/storage.ts'
import { STORAGE_LIMITS } from '../storage/limits.ts'
import type { RegistryTable } from '../registry/registry-table.ts'
import { UPLOAD_HEADER, UPLOAD_HEADER_FORMAT, type BlockUploads } from './uploads.ts'

export interface DeployRoutesComponents {
  storage: BlockStorage
  /** absent when the gateway serves --project folders without a chain */
  table?: RegistryTable
  /** signatures, leases and quotas of uploads (uploads.ts) */
  uploads: BlockUploads
}

export function deployRoutes (components: DeployRoutesComponents): (app: Hono) => void {
  const { storage, table, uploads } = components
  return (app) => {
    app.get('/_peerhost/uploads', c => c.json({
      gateway: uploads.gateway,
      header: UPLOAD_HEADER,
      format: UPLOAD_HEADER_FORMAT,
      quotaBytes: uploads.quotaBytes,
      globalQuotaBytes: uploads.globalQuotaBytes,
      leaseSec: Math.round(uploads.leaseMs / 1000),
      clockSkewSec: STORAGE_LIMITS.uploadClockSkewSec
    }))
    app.post('/_peerhost/blocks/:cid', async c => {
      const cid = c.req.param('cid')
      const auth = await uploads.authenticate(c.req.header(UPLOAD_HEADER), cid)
      if (!auth.ok) return jsonError('UNAUTHORIZED', auth.message)
      const declared = Number(c.req.header('content-length') ?? '0')
      if (declared > STORAGE_LIMITS.maxBlockBytes) return jsonError('PAYLOAD_TOO_LARGE', `a block is at most ${STORAGE_LIMITS.maxBlockBytes} bytes`)
      const bytes = await readBody(c.req.raw, STORAGE_LIMITS.maxBlockBytes)
      if (bytes === undefined) return jsonError('PAYLOAD_TOO_LARGE', `a block is at most ${STORAGE_LIMITS.maxBlockBytes} bytes`)
      try {
        const outcome = await uploads.store(auth.wallet, cid, bytes)
        if (outcome === 'over-quota') {
          return jsonError('RATE_LIMITED', `${auth.wallet} has ${uploads.used(auth.wallet)} bytes of uploads no registered version references yet; the quota is ${uploads.quotaBytes} bytes (register a deploy, or wait for the lease of ${Math.round(uploads.leaseMs / 1000)} s to end)`,
            { limit: 'uploadQuotaBytes', value: uploads.quotaBytes, retryAfterSec: uploads.nextExpirySec() })
        }
        if (outcome === 'over-global-quota') {
          return jsonError('RATE_LIMITED', `this gateway holds ${uploads.usedTotal()} bytes of uploads (all wallets) no registered version references yet; its limit is ${uploads.globalQuotaBytes} bytes: retry when leases end, or upload to another gateway`,
            { limit: 'uploadGlobalQuotaBytes', value: uploads.globalQuotaBytes, retryAfterSec: uploads.nextExpirySec() })
        }
      } catch (err: any) {
        if (err?.code === 'BAD_CID' || err?.code === 'BLOCK_MISMATCH') return jsonError('BAD_REQUEST', err.message)
        if (err?.code === 'BLOCK_TOO_LARGE') return jsonError('PAYLOAD_TOO_LARGE', err.message)
        throw err
      }
      return c.json({ cid, bytes: bytes.byteLength }, 201)
    })
    app.get('/_peerhost/blocks/:cid', async c => {
      let bytes: Uint8Array | undefined
      try {
        bytes = await storage.getLocal(c.req.param('cid'))
      } catch {
        return jsonError('BAD_REQUEST', 'expected a CIDv1 raw sha2-256 CID')
      }
      if (bytes === undefined) return jsonError('NOT_FOUND', 'this gateway does not hold that block')
      return c.body(bytes as Uint8Array<ArrayBuffer>, 200, { 'content-type': 'application/octet-stream' })
    })
    app.get('/_peerhost/projects/:wallet/:project', c => {
      const p = table?.project(c.req.param('wallet'), c.req.param('project'))
      if (p === undefined) return jsonError('NOT_FOUND', 'no such project in the registry this gateway follows')
      const active = p.versions.get(p.active)
      return c.json({
        projectId: p.projectId,
        namespace: p.namespace,
        name: p.name,
        version: p.active,
        manifestCid: active?.manifestCid ?? null,
        sourceCommit: active?.sourceCommit ?? null,
        versions: p.versions.size,
        served: p.served,
        live: p.served === p.active && p.servedManifest === active?.manifestCid,
        error: p.error ?? null,
        block: String(table?.block ?? 0n)
      })
    })
  }
}
