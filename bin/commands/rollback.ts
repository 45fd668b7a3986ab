import { Command } from '@commander-js/extra-typings'
import { intOption, say } from '../util.ts'
import { builderAccount, chainContracts } from './wallet.ts'

export function rollbackCommand (): Command<any, any> {
  return new Command('rollback')
    .description('make an earlier (or later) version of a project the active one in FunctionRegistry; gateways follow within a block')
    .argument('<project>', 'project name')
    .argument('<version>', 'version number (see `peerhost versions`)', intOption('<version>', 1, 2 ** 32 - 1))
    .option('--keystore <file>', 'builder wallet (JSON keystore); else env PEERHOST_PRIVATE_KEY')
    .option('--contracts <file>', 'contracts.json of the chain (env PEERHOST_CONTRACTS)')
    .option('--json', 'print machine-readable lines')
    .action(async (project, version, opts) => {
      const { rollbackProject } = await import('../builder-deps.ts')
      const contracts = chainContracts(opts.contracts)
      const account = await builderAccount(opts.keystore)
      const { txHash, previous } = await rollbackProject(contracts, account, project, version)
      say(opts, `${project}: version ${version} is active (was ${previous}); tx ${txHash}`, { event: 'rollback', project, owner: account.address, version, previous, txHash })
    })
}
