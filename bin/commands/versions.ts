import { Command } from '@commander-js/extra-typings'
import { isAddress, type Address } from 'viem'
import { ConfigError } from '../light.ts'
import { say } from '../util.ts'
import { builderAccount, chainContracts } from './wallet.ts'

export function versionsCommand (): Command<any, any> {
  return new Command('versions')
    .description('list the versions of a project in FunctionRegistry (the active one is marked)')
    .argument('<project>', 'project name')
    .option('--owner <address>', 'the project\'s namespace wallet (default: your wallet from --keystore or PEERHOST_PRIVATE_KEY)')
    .option('--keystore <file>', 'builder wallet (JSON keystore)')
    .option('--contracts <file>', 'contracts.json of the chain (env PEERHOST_CONTRACTS)')
    .option('--json', 'print machine-readable lines')
    .action(async (project, opts) => {
      const { listVersions, registryPublicClient } = await import('../builder-deps.ts')
      if (opts.owner !== undefined && !isAddress(opts.owner)) throw new ConfigError('BAD_OWNER', `--owner must be a 0x address, got "${opts.owner}"`)
      const contracts = chainContracts(opts.contracts)
      const owner = (opts.owner ?? (await builderAccount(opts.keystore)).address) as Address
      const versions = await listVersions(registryPublicClient(contracts), contracts, owner, project)
      say(opts, [
        `${owner}/${project}: ${versions.length} version${versions.length === 1 ? '' : 's'}`,
        ...versions.map(v => `${v.active ? '*' : ' '} ${String(v.version).padStart(3)}  ${v.deployedAt.toISOString()}  ${v.manifestCid}  commit ${v.sourceCommit.slice(2, 14)}`)
      ].join('\n'), { event: 'versions', owner, project, versions: versions.map(v => ({ ...v, deployedAt: v.deployedAt.toISOString() })) })
    })
}
