/**
 * Echoes the request back as JSON: method, path, query, headers and body. Asked to upgrade to a
 * WebSocket, it echoes every message instead, as in Cloudflare Workers.
 */
export default {
  async fetch (request: Request, env: Record<string, string>): Promise<Response> {
    if (request.headers.get('upgrade') === 'websocket') {
      const { 0: client, 1: server } = new WebSocketPair()
      server.accept()
      server.addEventListener('message', event => { server.send(typeof event.data === 'string' ? `echo: ${event.data}` : event.data) })
      server.addEventListener('close', event => { server.close(event.code, 'bye') })
      return new Response(null, { status: 101, webSocket: client })
    }
    const url = new URL(request.url)
    const body = await request.text()
    return Response.json({
      method: request.method,
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers: Object.fromEntries(request.headers),
      body,
      greeting: env.GREETING ?? null
    })
  }
}
