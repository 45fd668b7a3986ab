/** The builder CLI's JSON calls to a gateway's `/_peerhost/…` endpoints, with one way to fail. */
import { ConfigError, NodeError } from '../errors.ts'

/**
 * `fetch(url, init)` (15 s timeout) and its JSON body. An unreachable gateway is a ConfigError
 * GATEWAY_UNREACHABLE (wrong --gateway, or not running); an error answer is a NodeError with the
 * gateway's own code and message.
 */
export async function gatewayJson (url: string, init: RequestInit = {}): Promise<any> {
  let res: Response
  try {
    res = await fetch(url, { ...init, signal: AbortSignal.timeout(15_000) })
  } catch (err) {
    throw new ConfigError('GATEWAY_UNREACHABLE', `cannot reach ${url.split('?')[0]}: ${(err as Error).message}; is the gateway running (pass --gateway <url>)?`, { cause: err })
  }
  const text = await res.text()
  let body: any
  try { body = JSON.parse(text) } catch { body = undefined }
  if (!res.ok) {
    const e = body?.error
    throw new NodeError(e?.code ?? 'GATEWAY_ERROR', `${init.method ?? 'GET'} ${url.split('?')[0]} answered ${res.status}: ${e?.message ?? text.slice(0, 200)}`)
  }
  return body
}
