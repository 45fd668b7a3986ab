import { Command } from '@commander-js/extra-typings'
import { ConfigError } from '../light.ts'
import type { DeployStepEvent } from '../builder-deps.ts'
import { say } from '../util.ts'
import { builderAccount, chainContracts } from './wallet.ts'
import { DEFAULT_DEVNET_DIR, findDevnet } from '../devnet-file.ts'
import { gatewayAddress } from './escrow.ts'
import { formatEther } from 'viem'

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
      const { deployProject } = await import('../builder-deps.ts')
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
      // on a local development chain the project gets an escrow and the gateway an allowance, so
      // its first request is served (the devnet's workers ask a price; without escrow: 402)
      const { chainClient, fundOnLocalChain, LOCAL_CHAIN_ESCROW } = await import('../builder-deps.ts')
      let funded: { deposited?: bigint, allowed?: bigint } = {}
      let fundError: string | undefined
      if (contracts.chainId === LOCAL_CHAIN_ESCROW.chainId) {
        try {
          funded = await fundOnLocalChain(chainClient(contracts, account), result.project, await gatewayAddress('--gateway', gateway))
        } catch (err: any) {
          // the deploy itself succeeded: say what to do instead of failing it
          fundError = `  local chain: could not fund the project's escrow (${String(err?.shortMessage ?? err?.message ?? err).split('\n')[0]}); run \`peerhost escrow deposit ${result.project} <amount>\` and \`peerhost escrow allow ${result.project} ${gateway} <per-epoch>\``
        }
      }
      const fundedLine = funded.deposited === undefined && funded.allowed === undefined
        ? []
        : [`  local chain: ${[funded.deposited === undefined ? undefined : `deposited ${formatEther(funded.deposited)} into the project's escrow`, funded.allowed === undefined ? undefined : `let the gateway spend ${formatEther(funded.allowed)} per epoch`].filter(x => x !== undefined).join(' and ')} (on a public chain: \`peerhost escrow deposit/allow\`)`]
      say(opts, [
        `deployed ${result.project} version ${result.version} (manifest ${result.manifestCid}) from ${result.owner}`,
        ...result.functions.map(f => `  ${f.url}`),
        ...fundedLine,
        ...(fundError === undefined ? [] : [fundError])
      ].join('\n'), { event: 'deployed', ...result, localEscrow: { deposited: funded.deposited?.toString(), allowed: funded.allowed?.toString() } })
    })
}
