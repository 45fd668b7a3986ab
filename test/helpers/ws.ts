/**
 * Opens a WebSocket with a real `ws` client: resolves once open, with the upgrade's headers;
 * rejects with `HTTP <status>: <body>` (and `status`, `body` on the error) when the server answers
 * the upgrade with an ordinary HTTP response.
 */
import type { IncomingHttpHeaders } from 'node:http'
import { WebSocket } from 'ws'

export async function openWebSocket (url: string): Promise<{ ws: WebSocket, headers: IncomingHttpHeaders }> {
  const ws = new WebSocket(url)
  let headers: IncomingHttpHeaders = {}
  ws.once('upgrade', res => { headers = res.headers })
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve())
    ws.once('error', reject)
    ws.once('unexpected-response', (_req, res) => {
      let body = ''
      res.on('data', (d: Buffer) => { body += String(d) })
      res.on('end', () => reject(Object.assign(new Error(`HTTP ${res.statusCode}: ${body}`), { status: res.statusCode, body })))
    })
  })
  return { ws, headers }
}
