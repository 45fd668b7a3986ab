/**
 * A small admin HTTP server for nodes without a public HTTP surface (bootstrap nodes, workers):
 * `/_peerhost/health`, `/_peerhost/metrics` (Prometheus), `/_peerhost/status` (JSON) and the live
 * status page `/_peerhost/` (node/status).
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Registry } from 'prom-client'
import { getRequestListener } from '@hono/node-server'
import { statusPage } from './status/index.ts'

export interface AdminServer {
  readonly url: string
  start: () => Promise<void>
  stop: () => Promise<void>
}

export function adminServer (init: { port: number, host?: string }, components: { registry: Registry, status: () => Record<string, unknown> }): AdminServer {
  let server: Server | undefined
  // the page names the node from its status JSON (role), read once the page is open
  const page = statusPage({}, { status: components.status })
  const pageListener = getRequestListener(req => page.handle(req), { overrideGlobalObjects: false })
  let url = ''
  const json = (body: unknown, status = 200): [number, string, string] => [status, 'application/json; charset=utf-8', JSON.stringify(body)]
  return {
    get url () { return url },
    async start () {
      server = createServer((req, res) => {
        const path = (req.url ?? '/').split('?')[0]
        const send = ([status, type, body]: [number, string, string]): void => {
          res.writeHead(status, { 'content-type': type }).end(body)
        }
        if (req.method !== 'GET') return send(json({ error: { code: 'BAD_REQUEST', message: 'only GET is served here' } }, 405))
        if (page.owns(path)) return void pageListener(req, res)
        if (path === '/_peerhost/health') return send(json({ status: 'ok' }))
        if (path === '/_peerhost/status') return send(json(components.status()))
        if (path === '/_peerhost/metrics') {
          void components.registry.metrics().then(m => send([200, components.registry.contentType, m]), () => send(json({ error: { code: 'INTERNAL', message: 'metrics failed' } }, 500)))
          return
        }
        send(json({ error: { code: 'NOT_FOUND', message: 'try /_peerhost/ (the status page), /_peerhost/health, /_peerhost/status or /_peerhost/metrics' } }, 404))
      })
      await new Promise<void>((resolve, reject) => {
        server!.once('error', reject)
        server!.listen(init.port, init.host ?? '127.0.0.1', () => resolve())
      })
      const addr = server.address() as AddressInfo
      url = `http://${addr.address}:${addr.port}`
    },
    async stop () {
      if (server === undefined) return
      page.close()
      server.closeAllConnections()
      await new Promise<void>(resolve => server!.close(() => resolve()))
      server = undefined
    }
  }
}
