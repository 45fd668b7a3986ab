/** The gateways a builder's change goes to, and the wallet a listing names: shared by `peerhost secret` and `peerhost keys`. */
import type { Address } from 'viem'
import type { publishedGateways } from '#node'
import { isAddress } from 'viem'
import { ConfigError } from './light.ts'
import { collect } from './util.ts'
import { builderAccount, chainContracts } from './commands/wallet.ts'

export interface GatewayChoice {
  gateway: string[]
  allGateways?: boolean
  contracts?: string
}

/**
 * The --gateway URLs, or with --all-gateways every active gateway's published endpoint (read from
 * `chain`, which the caller may already hold), else PEERHOST_GATEWAY or the local default; deduplicated.
 */
export async function gatewayUrls (opts: GatewayChoice, chain?: Parameters<typeof publishedGateways>[0]): Promise<string[]> {
  let urls = opts.gateway
  if (opts.allGateways === true) {
    if (urls.length > 0) throw new ConfigError('BAD_GATEWAYS', 'pass either --gateway <url> or --all-gateways, not both')
    const { chainClient, publishedGateways: published } = await import('./builder-deps.ts')
    urls = [...(await published(chain ?? chainClient(chainContracts(opts.contracts)), undefined, { activeOnly: true })).values()].map(g => g.endpoint)
    if (urls.length === 0) throw new ConfigError('NO_GATEWAYS', 'no staked gateway has published an endpoint on this chain')
  } else if (urls.length === 0) {
    urls = collect(process.env.PEERHOST_GATEWAY ?? 'http://127.0.0.1:8080')
  }
  return [...new Set(urls)]
}

/** `--wallet`, else the builder wallet's address: whose project a `list` command reads. */
export async function listedWallet (opts: { wallet?: string, keystore?: string }): Promise<Address> {
  if (opts.wallet !== undefined && !isAddress(opts.wallet)) throw new ConfigError('BAD_WALLET', `--wallet must be a 0x-prefixed 20-byte address, got "${opts.wallet}"`)
  return (opts.wallet ?? (await builderAccount(opts.keystore)).address) as Address
}
