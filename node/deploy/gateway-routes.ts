/**
 * Gateway HTTP routes for deploys (mounted through the gateway's `routes` hook):
 *
 * - `POST /_peerhost/blocks/<cid>` — body: the raw block bytes (≤ 2 MiB). The gateway checks the
 *   CID is a CIDv1 raw sha2-256, hashes the body, stores the block in its helia blockstore and pins
 *   it. `201 {"cid","bytes"}`; `400 BAD_REQUEST` for a bad CID or bytes that do not match it;
 *   `413 PAYLOAD_TOO_LARGE` above the limit.
 * - `GET /_peerhost/blocks/<cid>` — the block, when this gateway holds it (no network fetch).
 * - `GET /_peerhost/projects/<wallet>/<project>` — the project's active version on chain and
 *   whether this gateway serves it yet (`live`).
 */
import type { Hono } from 'hono'
import { jsonError, readBody } from '../gateway/http.ts'
import type { BlockStorage } from '../storage/storage.ts'
import { STORAGE_LIMITS } from '../storage/limits.ts'
import type { RegistryTable } from '../registry/registry-table.ts'

export interface DeployRoutesComponents {
  storage: BlockStorage
  /** absent when the gateway serves --project folders without a chain */
  table?: RegistryTable
}

export function deployRoutes (components: DeployRoutesComponents): (app: Hono) => void {
  const { storage, table } = components
  return (app) => {
    app.post('/_peerhost/blocks/:cid', async c => {
      const cid = c.req.param('cid')
      const declared = Number(c.req.header('content-length') ?? '0')
      if (declared > STORAGE_LIMITS.maxBlockBytes) return jsonError('PAYLOAD_TOO_LARGE', `a block is at most ${STORAGE_LIMITS.maxBlockBytes} bytes`)
      const bytes = await readBody(c.req.raw, STORAGE_LIMITS.maxBlockBytes)
      if (bytes === undefined) return jsonError('PAYLOAD_TOO_LARGE', `a block is at most ${STORAGE_LIMITS.maxBlockBytes} bytes`)
      try {
        await storage.put(cid, bytes)
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
