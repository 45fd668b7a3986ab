/**
 * The one PeerHost command line. `bin/` is the only place that reads argv, the environment and
 * files for configuration, and the only place that writes to the console.
 */
import { Command } from '@commander-js/extra-typings'
import { bootstrapCommand } from './commands/bootstrap.ts'
import { chainCommand } from './commands/chain.ts'
import { devCommand } from './commands/dev.ts'
import { devnetCommand } from './commands/devnet.ts'
import { gatewayCommand } from './commands/gateway.ts'
import { initCommand } from './commands/init.ts'
import { workerCommand } from './commands/worker.ts'
import { deployCommand } from './commands/deploy.ts'
import { rollbackCommand } from './commands/rollback.ts'
import { versionsCommand } from './commands/versions.ts'
import { escrowCommand } from './commands/escrow.ts'
import { earningsCommand } from './commands/earnings.ts'
import { watchCommand } from './commands/watch.ts'
import { logsCommand } from './commands/logs.ts'
import { wsCommand } from './commands/ws.ts'
import { secretCommand } from './commands/secret.ts'
import { keysCommand } from './commands/keys.ts'
import { walletCommand } from './commands/wallet.ts'
import { reportError } from './util.ts'

/** Usage errors: one line starting `peerhost:`, a hint, exit code 2 (see reportError). */
function userFacing<C extends Command<any, any>> (cmd: C): C {
  cmd.exitOverride()
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ outputError: (str, write) => write(str.replace(/^error: /, 'peerhost: ')) })
  return cmd
}

const program = userFacing(new Command('peerhost')
  .description('PeerHost: deploy functions, not servers, to a decentralized network of gVisor-sandboxed workers')
  .version('0.1.0'))

for (const cmd of [initCommand(), devnetCommand(), devCommand(), bootstrapCommand(), gatewayCommand(), workerCommand(), chainCommand(), deployCommand(), logsCommand(), wsCommand(), versionsCommand(), rollbackCommand(), secretCommand(), keysCommand(), escrowCommand(), earningsCommand(), watchCommand(), walletCommand()]) {
  program.addCommand(userFacing(cmd))
  for (const sub of cmd.commands) userFacing(sub as Command<any, any>)
}

try {
  await program.parseAsync(process.argv)
} catch (err) {
  const code = reportError(err)
  process.exit(code)
}
