import { Command } from '@commander-js/extra-typings'
import { ConfigError } from '../light.ts'
import type { DeployStepEvent } from '../deps.ts'
import { say } from '../util.ts'
import { builderAccount, chainContracts } from './wallet.ts'
import { DEFAULT_DEVNET_DIR, findDevnet } from '../devnet-file.ts'

function envPair (value: string, previous: Record<string, string> = {}): Record<string, string> {
  const i = value.indexOf('=')
  if (i <= 0) throw new ConfigError('BAD_ENV', `--env expects KEY=VALUE, got "${value}"`)
  return { ...previous, [value.slice(0, i)]: value.slice(i + 1) }
}

export function deployCommand (): Command<any, any> {
  return new Command('deploy')
    .description('deploy a project (folder or git URL): bundle functions/, upload bundles and manifest to a gateway, register the version in FunctionRegistry, print the live URLs')
    .argument('[source]', 'project folder, or a git URL (https://, ssh://, git@host:path, file://)', '.')
    .option('--project <name>', 'project name (default: peerhost.json "name", else the folder or repository name)')
    .option('--gateway <url>', 'gateway to upload to (env PEERHOST_GATEWAY; default: the running devnet\'s gateway, else http://127.0.0.1:8080)')
    .option('--env <KEY=VALUE>', 'public environment variable for every function (repeatable; overrides peerhost.json)', envPair, {} as Record<string, string>)
    .option('--contracts <file>', 'contracts.json of the chain (from `peerhost chain up`; env PEERHOST_CONTRACTS; default: the running devnet\'s)')
    .option('--devnet <dir>', `deploy to the devnet running in this data dir (env PEERHOST_DEVNET_DIR; default ${DEFAULT_DEVNET_DIR}): its chain, gateway and builder key unless flags say otherwise`)
    .option('--keystore <file>', 'builder wallet (JSON keystore; password from PEERHOST_WALLET_PASSWORD or a prompt); else env PEERHOST_PRIVATE_KEY')
    .option('--no-wait', 'do not wait until the gateway serves the new version')
    .option('--json', 'print machine-readable lines')
    .action(async (source, opts) => {
      const { deployProject } = await import('../deps.ts')
      const devnet = findDevnet(opts.devnet)
      if (opts.devnet !== undefined && devnet === undefined) throw new ConfigError('NO_DEVNET', `no devnet is running in ${opts.devnet} (no live devnet.json there); start one with \`peerhost devnet --data-dir ${opts.devnet}\``)
      // a running devnet is the default target; any flag or environment variable overrides it
      const contractsFromDevnet = opts.contracts === undefined && process.env.PEERHOST_CONTRACTS === undefined && devnet !== undefined
      const contracts = chainContracts(opts.contracts, devnet)
      const gateway = opts.gateway ?? process.env.PEERHOST_GATEWAY ?? devnet?.gateway ?? 'http://127.0.0.1:8080'
      const account = await builderAccount(opts.keystore, contractsFromDevnet ? devnet : undefined)
      const tty = process.stdout.isTTY === true && opts.json !== true
      const onStep = (e: DeployStepEvent): void => {
        if (opts.json === true) { process.stdout.write(`${JSON.stringify({ event: 'step', ...e })}\n`); return }
        if (e.status === 'start') { if (tty) process.stdout.write(`  … ${e.title}\r`); return }
        const mark = e.status === 'done' ? '✔' : e.status === 'failed' ? '✖' : '-'
        process.stdout.write(`${tty ? '\x1b[2K' : ''}  ${mark} ${e.title}${e.detail !== undefined && e.status === 'done' ? `: ${e.detail}` : ''}${e.ms !== undefined ? ` (${e.ms} ms)` : ''}\n`)
      }
      const result = await deployProject({ source, project: opts.project, env: opts.env, gateway, contracts, account, waitLive: opts.wait, onStep })
      say(opts, [
        `deployed ${result.project} version ${result.version} (manifest ${result.manifestCid}) from ${result.owner}`,
        ...result.functions.map(f => `  ${f.url}`)
      ].join('\n'), { event: 'deployed', ...result })
    })
}
