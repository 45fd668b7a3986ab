import { Command } from '@commander-js/extra-typings'
import { isAddress, type Address } from 'viem'
import { ConfigError, NodeError } from '../light.ts'
import { collect, say } from '../util.ts'
import { builderAccount } from './wallet.ts'
import { gatewayUrls, listedWallet } from '../gateways.ts'

interface ChangeOptions { gateway: string[], allGateways?: boolean, contracts?: string, keystore?: string, namespace?: string, json?: boolean }

/** The options `create` and `revoke` share (as for `peerhost secret`). */
function common<C extends Command<any, any>> (cmd: C): C {
  return cmd
    .option('--gateway <url...>', 'gateway(s) that keep the key (repeatable or comma-separated; env PEERHOST_GATEWAY; default http://127.0.0.1:8080)', collect, [] as string[])
    .option('--all-gateways', 'every gateway staked on the chain that published an endpoint')
    .option('--contracts <file>', 'contracts.json of the chain (env PEERHOST_CONTRACTS), for --all-gateways')
    .option('--namespace <address>', 'the wallet the project was created under, when it was transferred to you (default: your wallet)')
    .option('--keystore <file>', 'builder wallet (JSON keystore; password from PEERHOST_WALLET_PASSWORD or a prompt); else env PEERHOST_PRIVATE_KEY')
    .option('--json', 'print machine-readable lines') as C
}

function namespaceOf (opts: ChangeOptions): Address | undefined {
  if (opts.namespace === undefined) return undefined
  if (!isAddress(opts.namespace)) throw new ConfigError('BAD_NAMESPACE', `--namespace must be a 0x-prefixed 20-byte address, got "${opts.namespace}"`)
  return opts.namespace
}

/** Runs one change on every gateway; reports each; fails (after trying all) naming those that did not take it. */
async function onEach (opts: ChangeOptions, urls: string[], change: (url: string) => Promise<Record<string, unknown>>): Promise<void> {
  const failed: string[] = []
  for (const url of urls) {
    try {
      const out = await change(url)
      if (opts.json === true) process.stdout.write(`${JSON.stringify({ event: 'key-gateway', url, ...out })}\n`)
      else process.stderr.write(`  ${url}: ok\n`)
    } catch (err: any) {
      failed.push(`${url}: ${err?.message ?? String(err)}`)
      if (opts.json === true) process.stdout.write(`${JSON.stringify({ event: 'key-failed', url, code: err?.code, message: err?.message })}\n`)
      else process.stderr.write(`  ${url}: FAILED ${err?.message ?? String(err)}\n`)
    }
  }
  if (failed.length > 0) throw new NodeError('KEY_PARTIAL', `${failed.length} of ${urls.length} gateways did not take the change: ${failed.join('; ')}`)
}

export function keysCommand (): Command<any, any> {
  const keys = new Command('keys').description('API keys for functions with "auth": "api-key": clients send authorization: Bearer <key>; gateways keep only a hash')
  keys.addCommand(common(new Command('create')
    .description('mint an API key for a project and store its hash on the gateways; the key is printed once, here, and nowhere else')
    .argument('<project>', 'project name (under your wallet, or --namespace)')
    .option('--name <name>', 'a label for the key (e.g. ci, mobile-app)', 'default'))
    .action(async (project, options) => {
      const { mintApiKey, apiKeyHash, apiKeyId, putApiKey } = await import('../builder-deps.ts')
      const opts = options as ChangeOptions & { name: string }
      const urls = await gatewayUrls(opts)
      const account = await builderAccount(opts.keystore)
      const namespace = namespaceOf(opts)
      const key = mintApiKey()
      const id = apiKeyId(apiKeyHash(key))
      try {
        await onEach(opts, urls, async url => await putApiKey({ gateway: url, account, project, namespace, key, name: opts.name }))
      } finally {
        // printed even when some gateways failed: the key works on those that took it (and can be revoked by id)
        say(opts, `API key ${id} (${opts.name}) for ${(namespace ?? account.address)}/${project}; it is shown only once:\n${key}`,
          { event: 'key', action: 'create', project, wallet: namespace ?? account.address, id, name: opts.name, key })
      }
    }))
  keys.addCommand(common(new Command('revoke')
    .description('revoke an API key on the gateways: the next request with it is refused')
    .argument('<project>', 'project name')
    .argument('<id>', 'the key id (peerhost keys list)'))
    .action(async (project, id, options) => {
      const { revokeApiKey } = await import('../builder-deps.ts')
      const opts = options as ChangeOptions
      const urls = await gatewayUrls(opts)
      const account = await builderAccount(opts.keystore)
      const namespace = namespaceOf(opts)
      await onEach(opts, urls, async url => await revokeApiKey({ gateway: url, account, project, namespace, id }))
      say(opts, `API key ${id} of ${(namespace ?? account.address)}/${project} revoked on ${urls.length} gateway${urls.length === 1 ? '' : 's'}`,
        { event: 'key', action: 'revoke', project, wallet: namespace ?? account.address, id })
    }))
  keys.addCommand(new Command('list')
    .description('list a project\'s API keys on a gateway: ids, names and dates (never the keys or their hashes)')
    .argument('<project>', 'project name')
    .option('--wallet <address>', 'the project\'s wallet (default: --keystore or PEERHOST_PRIVATE_KEY)')
    .option('--gateway <url>', 'gateway (env PEERHOST_GATEWAY)', process.env.PEERHOST_GATEWAY ?? 'http://127.0.0.1:8080')
    .option('--keystore <file>', 'builder wallet, to find its address')
    .option('--json', 'print machine-readable lines')
    .action(async (project, opts) => {
      const { listApiKeys } = await import('../builder-deps.ts')
      const wallet = await listedWallet(opts)
      const list = await listApiKeys(opts.gateway, wallet, project)
      const when = (s: number): string => new Date(s * 1000).toISOString()
      say(opts, list.length === 0
        ? `${wallet}/${project} has no API keys on ${opts.gateway}`
        : list.map(k => `${k.id}\t${k.name}\tcreated ${when(k.created)}${k.revoked === undefined ? '' : `\trevoked ${when(k.revoked)}`}`).join('\n'),
      { event: 'keys', project, wallet, keys: list })
    }))
  return keys
}
