/** The smallest PeerHost function: answers with a greeting, echoing `?name=`. */
export default {
  async fetch (request: Request): Promise<Response> {
    const name = new URL(request.url).searchParams.get('name') ?? 'world'
    return new Response(`Hello, ${name}!\n`, { headers: { 'content-type': 'text/plain; charset=utf-8' } })
  }
}
