/** Echoes the request back as JSON: method, path, query, headers and body. */
export default {
  async fetch (request: Request, env: Record<string, string>): Promise<Response> {
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
