/**
 * `peerhost/client` on Node: what a client needs to call PeerHost functions, today `signRequest`
 * for functions with `"auth": "wallet"` (docs/auth.md). The source is TypeScript
 * (node/auth/request-signature.ts, which needs only viem); Node does not strip types under
 * node_modules, so this plain-JavaScript entry first registers the package's own hook (ts-hooks.js
 * strips only this package's `.ts` files, nothing else's) and then loads the source. Bundlers
 * (browsers) take the source directly through the "default" export condition.
 */
import './bin/ts-hooks.js'

const source = await import('./node/auth/request-signature.ts')

export const { signRequest, requestMessage, functionOfUrl, SIGNATURE_HEADER, SIGNATURE_FORMAT } = source
