import { Command } from '@commander-js/extra-typings'
import { intOption, say } from '../util.ts'
import { builderAccount } from './wallet.ts'

export function logsCommand (): Command<any, any> {
  return new Command('logs')
    .description('your project\'s recent function logs on a gateway (what each request printed, secrets redacted); --follow keeps printing new ones')
    .argument('<project>', 'project name (under your wallet)')
    .option('--gateway <url>', 'gateway (env PEERHOST_GATEWAY)', process.env.PEERHOST_GATEWAY ?? 'http://127.0.0.1:8080')
    .option('--keystore <file>', 'builder wallet (JSON keystore; password from PEERHOST_WALLET_PASSWORD or a prompt); else env PEERHOST_PRIVATE_KEY')
    .option('--follow', 'keep polling for new entries (Ctrl-C to stop)')
    .option('--interval <ms>', 'with --follow: poll interval', intOption('--interval', 100, 60_000), 1_000)
    .option('--json', 'print one JSON object per entry')
    .action(async (project, opts) => {
      const { fetchLogs } = await import('../builder-deps.ts')
      const account = await builderAccount(opts.keystore)
      let after = 0
      for (;;) {
        const { entries, next } = await fetchLogs(opts.gateway, account, project, after)
        for (const e of entries) {
          const head = `${e.at} ${e.function} ${e.status} ${e.ms} ms${e.worker !== undefined ? ` worker ${e.worker}` : ''}`
          const lines = e.logs.split('\n').filter(l => l !== '').map(l => `  ${l}`)
          if (e.logsTruncated) lines.push('  (logs truncated)')
          say(opts, [head, ...lines].join('\n'), { event: 'log', project, ...e })
        }
        after = next
        if (opts.follow !== true) return
        await new Promise(resolve => setTimeout(resolve, opts.interval))
      }
    })
}
