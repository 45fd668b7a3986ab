import { Command } from '@commander-js/extra-typings'
import { ConfigError, NodeError } from '../light.ts'
import type { SecretTarget } from '../builder-deps.ts'
import { collect, say } from '../util.ts'
import { builderAccount, chainContracts, readHidden } from './wallet.ts'
import { gatewayUrls, listedWallet } from '../gateways.ts'

const MAX_STDIN_BYTES = 64 * 1024

/** The secret value: the terminal (no echo) when stdin is one, else all of stdin minus one trailing newline. */
async function readValue (name: string): Promise<string> {
  if (process.stdin.isTTY === true) return await readHidden(`Value for ${name}: `)
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    size += chunk.byteLength
    if (size > MAX_STDIN_BYTES) throw new ConfigError('SECRET_TOO_LARGE', `the secret value on standard input is larger than ${MAX_STDIN_BYTES} bytes`)
    chunks.push(chunk)
  }
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '')
}

interface ChangeOptions { gateway: string[], allGateways?: boolean, contracts?: string, keystore?: string, json?: boolean }

/** The options `put` and `delete` share. */
function common<C extends Command<any, any>> (cmd: C): C {
  return cmd
    .option('--gateway <url...>', 'gateway(s) that keep the secret (repeatable or comma-separated; env PEERHOST_GATEWAY; default http://127.0.0.1:8080)', collect, [] as string[])
    .option('--all-gateways', 'every gateway staked on the chain that published an endpoint and key')
    .option('--contracts <file>', 'contracts.json of the chain (env PEERHOST_CONTRACTS): each gateway\'s key is checked against the one it published there')
    .option('--keystore <file>', 'builder wallet (JSON keystore; password from PEERHOST_WALLET_PASSWORD or a prompt); else env PEERHOST_PRIVATE_KEY')
    .option('--json', 'print machine-readable lines') as C
}

/** One target per gateway: the --gateway URLs, or every active gateway's published endpoint. */
async function targets (opts: ChangeOptions, project: string, name: string): Promise<SecretTarget[]> {
  const { chainClient } = await import('../builder-deps.ts')
  const chain = chainClient(chainContracts(opts.contracts))
  const urls = await gatewayUrls(opts, chain)
  const account = await builderAccount(opts.keystore)
  return urls.map(gateway => ({ gateway, chain, account, project, name }))
}

/** Runs one change on every target; reports each; fails (after trying all) when any failed. */
async function onEach (opts: ChangeOptions, list: SecretTarget[], change: (t: SecretTarget) => Promise<{ text: string, json: Record<string, unknown> }>): Promise<void> {
  const failed: string[] = []
  for (const t of list) {
    try {
      const out = await change(t)
      say(opts, out.text, { event: 'secret', url: t.gateway, ...out.json })
    } catch (err: any) {
      if (list.length === 1) throw err
      failed.push(`${t.gateway}: ${err?.message ?? String(err)}`)
      if (opts.json === true) process.stdout.write(`${JSON.stringify({ event: 'secret-failed', url: t.gateway, code: err?.code, message: err?.message })}\n`)
    }
  }
  if (failed.length > 0) throw new NodeError('SECRET_PARTIAL', `${failed.length} of ${list.length} gateways did not take the change: ${failed.join('; ')}`)
}

export function secretCommand (): Command<any, any> {
  const secret = new Command('secret').description('project secrets: sealed to each gateway\'s published key, handed to a worker only inside one job, seen by functions in env')
  secret.addCommand(common(new Command('put')
    .description('set secret NAME of a project; the value is read from standard input (or asked for without echo), never from the command line')
    .argument('<project>', 'project name (under your wallet)')
    .argument('<NAME>', 'the name functions read it by: env.NAME'))
    .action(async (project, name, options) => {
      const { putSecret } = await import('../builder-deps.ts')
      const opts = options as ChangeOptions
      const list = await targets(opts, project, name)
      const value = await readValue(name)
      await onEach(opts, list, async t => {
        const out = await putSecret({ ...t, value })
        return {
          text: `secret ${name} set for ${t.account.address}/${project} on gateway ${out.gateway} (${t.gateway}); jobs started from now on see it in env.${name}`,
          json: { action: 'put', project, name, wallet: t.account.address, gateway: out.gateway, issued: out.issued }
        }
      })
    }))
  secret.addCommand(common(new Command('delete')
    .description('remove secret NAME of a project')
    .argument('<project>', 'project name (under your wallet)')
    .argument('<NAME>', 'secret name'))
    .action(async (project, name, options) => {
      const { deleteSecret } = await import('../builder-deps.ts')
      const opts = options as ChangeOptions
      await onEach(opts, await targets(opts, project, name), async t => {
        const out = await deleteSecret(t)
        return {
          text: out.deleted ? `secret ${name} deleted from ${t.account.address}/${project} on ${t.gateway}` : `${t.account.address}/${project} had no secret ${name} on ${t.gateway}; nothing to delete`,
          json: { action: 'delete', project, name, wallet: t.account.address, gateway: out.gateway, deleted: out.deleted }
        }
      })
    }))
  secret.addCommand(new Command('list')
    .description('list the names (never the values) of a project\'s secrets on a gateway')
    .argument('<project>', 'project name')
    .option('--wallet <address>', 'the project\'s wallet (default: --keystore or PEERHOST_PRIVATE_KEY)')
    .option('--gateway <url>', 'gateway (env PEERHOST_GATEWAY)', process.env.PEERHOST_GATEWAY ?? 'http://127.0.0.1:8080')
    .option('--keystore <file>', 'builder wallet, to find its address')
    .option('--json', 'print machine-readable lines')
    .action(async (project, opts) => {
      const { listSecrets } = await import('../builder-deps.ts')
      const wallet = await listedWallet(opts)
      const list = await listSecrets(opts.gateway, wallet, project)
      say(opts, list.length === 0
        ? `${wallet}/${project} has no secrets on ${opts.gateway}`
        : list.map(s => `${s.name}\t(set ${new Date(s.issued * 1000).toISOString()})`).join('\n'),
      { event: 'secrets', project, wallet, secrets: list })
    }))
  return secret
}
