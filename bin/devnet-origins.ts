/**
 * The devnet's per-wallet origins (issue 13): its gateway runs with `--domain localhost`, so each
 * function is also served at `http://<wallet>.localhost:<port>/<project>/<function>` — one web
 * origin per wallet, as a production gateway with `--domain` gives — besides the path form
 * `http://127.0.0.1:<port>/<wallet>/<project>/<function>`, which puts every project on one origin
 * and is unsafe for cookies. Browsers and curl send every `*.localhost` name to the loopback address.
 */

/** The gateway's `--domain` in a devnet. */
export const DEVNET_WALLET_DOMAIN = 'localhost'

/** `http://127.0.0.1:8080/0xAb…/hello/hello` → `http://0xab….localhost:8080/hello/hello`; undefined for anything else. */
export function walletOrigin (pathUrl: string, domain: string = DEVNET_WALLET_DOMAIN): string | undefined {
  let u: URL
  try { u = new URL(pathUrl) } catch { return undefined }
  const [, wallet, ...rest] = u.pathname.split('/')
  if (wallet === undefined || !/^0x[0-9a-fA-F]{40}$/.test(wallet) || rest.length < 2) return undefined
  return `${u.protocol}//${wallet.toLowerCase()}.${domain}${u.port === '' ? '' : `:${u.port}`}/${rest.join('/')}${u.search}`
}

/** The ready message's lines for the origin form of each function URL. */
export function walletOriginLines (functions: readonly string[]): string[] {
  const origins = functions.map(f => walletOrigin(f)).filter((o): o is string => o !== undefined)
  if (origins.length === 0) return []
  return ['', `One origin per wallet (--domain ${DEVNET_WALLET_DOMAIN}; use these in a browser, the path form above shares one origin):`, ...origins.map(o => `  ${o}`)]
}
