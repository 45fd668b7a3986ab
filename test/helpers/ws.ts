/**
 * Opens a WebSocket with a real `ws` client: resolves once open, with the upgrade's headers;
 * rejects with `HTTP <status>: <body>` (and `status`, `body` on the error) when the server answers
 * the upgrade with an ordinary HTTP response, and when the upgrade takes longer than
 * `handshakeTimeoutMs` (30 s unless told: every wait in a test is bounded).
 */
import type { IncomingHttpHeaders } from 'node:http'
import { WebSocket } from 'ws'

export interface OpenWebSocketOptions {
  /** source address of the client's connection (127.0.0.2, … stand for other users' IPs) */
  localAddress?: string
  /** @default 30_000 */
  handshakeTimeoutMs?: number
}

export async function openWebSocket (url: string, options: OpenWebSocketOptions = {}): Promise<{ ws: WebSocket, headers: IncomingHttpHeaders }> {
  const ws = new WebSocket(url, { handshakeTimeout: options.handshakeTimeoutMs ?? 30_000, ...(options.localAddress !== undefined ? { localAddress: options.localAddress } : {}) })
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
