/**
 * Wallet-signed requests (`"auth": "wallet"`). The client signs a readable EIP-191 message with
 * its wallet and sends it in one header:
 *
 * ```text
 * x-peerhost-signature: <timestamp, unix milliseconds>.<0x signature, 65 bytes>
 * ```
 *
 * over
 *
 * ```text
 * PeerHost request
 * function: 0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266/demo/hello
 * method: POST
 * path: /0xf39f…/demo/hello/items?limit=2
 * body: 0x<keccak256 of the body bytes; of no bytes when there is no body>
 * timestamp: 1764000000123
 * ```
 *
 * `function` is `<wallet lower-case>/<project>/<function>` whether the URL is the path form
 * (`/<wallet>/<project>/<function>`) or the host form (`<wallet>.<domain>/<project>/<function>`),
 * so a signature cannot be moved to another tenant's function of the same name; `path` is the URL's
 * path and query exactly as sent. The gateway accepts it within NODE_DEFAULTS.authRequestSkewSec
 * of its clock and at most once (guard.ts).
 *
 * This file depends on viem only, so browsers and other clients can use {@link signRequest}.
 */
import { keccak256, type Hex } from 'viem'

export const SIGNATURE_HEADER = 'x-peerhost-signature'
export const SIGNATURE_FORMAT = `${SIGNATURE_HEADER}: <timestamp unix ms>.<0x EIP-191 signature>`

const WALLET = /^0x[0-9a-fA-F]{40}$/

export interface SignedRequestFields {
  /** `<wallet>/<project>/<function>` */
  function: string
  method: string
  /** path and query as sent, e.g. `/0xabc…/demo/hello?x=1` */
  path: string
  body: Uint8Array
  /** unix milliseconds */
  timestamp: number
}

export function requestMessage (r: SignedRequestFields): string {
  return [
    'PeerHost request',
    `function: ${r.function.toLowerCase()}`,
    `method: ${r.method.toUpperCase()}`,
    `path: ${r.path}`,
    `body: ${keccak256(r.body)}`,
    `timestamp: ${r.timestamp}`
  ].join('\n')
}

/** `<wallet>/<project>/<function>` of a function URL in path form or host form (`<wallet>.<domain>`). */
export function functionOfUrl (url: URL): string {
  const parts = url.pathname.split('/')
  const label = url.hostname.split('.')[0] ?? ''
  if (WALLET.test(parts[1] ?? '') && parts[2] !== undefined && parts[3] !== undefined && parts[3] !== '') return `${parts[1]}/${parts[2]}/${parts[3]}`.toLowerCase()
  if (WALLET.test(label) && parts[1] !== undefined && parts[2] !== undefined && parts[2] !== '') return `${label}/${parts[1]}/${parts[2]}`.toLowerCase()
  throw new Error(`${url.href} is not a PeerHost function URL: expected /<wallet 0x…>/<project>/<function> or <wallet 0x…>.<domain>/<project>/<function>`)
}

export interface RequestSigner {
  signMessage: (args: { message: string }) => Promise<Hex>
}

/**
 * The headers that make a request acceptable to a `"auth": "wallet"` function: sign once per
 * request (a gateway refuses a signature it has already seen).
 *
 * ```ts
 * const body = JSON.stringify({ q: 1 })
 * const headers = await signRequest(account, { method: 'POST', url, body })
 * await fetch(url, { method: 'POST', body, headers: { ...headers, 'content-type': 'application/json' } })
 * ```
 */
export async function signRequest (account: RequestSigner, request: { method?: string, url: string | URL, body?: string | Uint8Array, timestamp?: number }): Promise<Record<string, string>> {
  const url = new URL(request.url)
  const body = typeof request.body === 'string' ? new TextEncoder().encode(request.body) : (request.body ?? new Uint8Array(0))
  const timestamp = request.timestamp ?? Date.now()
  const message = requestMessage({ function: functionOfUrl(url), method: request.method ?? 'GET', path: `${url.pathname}${url.search}`, body, timestamp })
  const signature = await account.signMessage({ message })
  return { [SIGNATURE_HEADER]: `${timestamp}.${signature}` }
}
