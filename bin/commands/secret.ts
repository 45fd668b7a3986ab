import { Command } from '@commander-js/extra-typings'
import { isAddress, type Address } from 'viem'
import { ConfigError } from '../light.ts'
import type { SecretTarget } from '../deps.ts'
import { say } from '../util.ts'
import { builderAccount, chainContracts, readHidden } from './wallet.ts'

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

interface ChangeOptions { gateway: string, contracts?: string, keystore?: string, json?: boolean }

/** The options `put` and `delete` share. */
function common<C extends Command<any, any>> (cmd: C): C {
  return cmd
    .option('--gateway <url>', 'the gateway that keeps the secret (env PEERHOST_GATEWAY)', process.env.PEERHOST_GATEWAY ?? 'http://127.0.0.1:8080')
    .option('--contracts <file>', 'contracts.json of the chain (env PEERHOST_CONTRACTS): the gateway\'s key is checked against the one it published there')
    .option('--keystore <file>', 'builder wallet (JSON keystore; password from PEERHOST_WALLET_PASSWORD or a prompt); else env PEERHOST_PRIVATE_KEY')
    .option('--json', 'print machine-readable lines') as C
}

/** Who changes which secret where, from the shared options. */
async function target (opts: ChangeOptions, project: string, name: string): Promise<SecretTarget> {
  const { chainClient } = await import('../deps.ts')
  const contracts = chainContracts(opts.contracts)
  return { gateway: opts.gateway, chain: chainClient(contracts), account: await builderAccount(opts.keystore), project, name }
}

export function secretCommand (): Command<any, any> {
  const secret = new Command('secret').description('project secrets: sealed to the gateway\'s published key, handed to a worker only inside one job, seen by functions in env')
  secret.addCommand(common(new Command('put')
    .description('set secret NAME of a project; the value is read from standard input (or asked for without echo), never from the command line')
    .argument('<project>', 'project name (under your wallet)')
    .argument('<NAME>', 'the name functions read it by: env.NAME'))
    .action(async (project, name, options) => {
      const { putSecret } = await import('../deps.ts')
      const opts = options as ChangeOptions
      const t = await target(opts, project, name)
      const account = t.account
      const out = await putSecret({ ...t, value: await readValue(name) })
      say(opts, `secret ${name} set for ${account.address}/${project} on gateway ${out.gateway}; jobs started from now on see it in env.${name}`, { event: 'secret', action: 'put', project, name, wallet: account.address, gateway: out.gateway, issued: out.issued })
    }))
  secret.addCommand(common(new Command('delete')
    .description('remove secret NAME of a project')
    .argument('<project>', 'project name (under your wallet)')
    .argument('<NAME>', 'secret name'))
    .action(async (project, name, options) => {
      const { deleteSecret } = await import('../deps.ts')
      const opts = options as ChangeOptions
      const t = await target(opts, project, name)
      const account = t.account
      const out = await deleteSecret(t)
      say(opts, out.deleted ? `secret ${name} deleted from ${account.address}/${project}` : `${account.address}/${project} had no secret ${name}; nothing to delete`, { event: 'secret', action: 'delete', project, name, wallet: account.address, gateway: out.gateway, deleted: out.deleted })
    }))
  secret.addCommand(new Command('list')
    .description('list the names (never the values) of a project\'s secrets on a gateway')
    .argument('<project>', 'project name')
    .option('--wallet <address>', 'the project\'s wallet (default: --keystore or PEERHOST_PRIVATE_KEY)')
    .option('--gateway <url>', 'gateway (env PEERHOST_GATEWAY)', process.env.PEERHOST_GATEWAY ?? 'http://127.0.0.1:8080')
    .option('--keystore <file>', 'builder wallet, to find its address')
    .option('--json', 'print machine-readable lines')
    .action(async (project, opts) => {
      const { listSecrets } = await import('../deps.ts')
      if (opts.wallet !== undefined && !isAddress(opts.wallet)) throw new ConfigError('BAD_WALLET', `--wallet must be a 0x-prefixed 20-byte address, got "${opts.wallet}"`)
      const wallet = (opts.wallet ?? (await builderAccount(opts.keystore)).address) as Address
      const list = await listSecrets(opts.gateway, wallet, project)
      say(opts, list.length === 0
        ? `${wallet}/${project} has no secrets on ${opts.gateway}`
        : list.map(s => `${s.name}\t(set ${new Date(s.issued * 1000).toISOString()})`).join('\n'),
      { event: 'secrets', project, wallet, secrets: list })
    }))
  return secret
}
