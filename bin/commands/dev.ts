import { join } from 'node:path'
import { Command } from '@commander-js/extra-typings'
import { absolute, intOption, onShutdown, say } from '../util.ts'

export function devCommand (): Command<any, any> {
  return new Command('dev')
    .description('serve a project\'s functions locally at http://127.0.0.1:<port>/<function>, each in a gVisor sandbox as a worker runs it, rebuilding on change (like wrangler dev)')
    .argument('[dir]', 'project folder with functions/ and an optional peerhost.json', '.')
    .option('--port <port>', 'HTTP port (0 picks a free one)', intOption('--port', 0, 65535), 8787)
    .option('--host <host>', 'HTTP host to bind', '127.0.0.1')
    .option('--data-dir <dir>', 'sandbox state (rootfs, runsc root)', '.peerhost/dev')
    .option('--unsafe-dev-executor', 'run functions in node:vm instead of gVisor (NOT a security boundary)')
    .option('--json', 'print machine-readable lines')
    .action(async (dir, opts) => {
      const { startDevServer } = await import('../deps.ts')
      const root = absolute(dir)
      const server = await startDevServer({
        dir: root,
        port: opts.port,
        host: opts.host,
        dataDir: absolute(opts.dataDir ?? join(root, '.peerhost', 'dev')),
        executor: opts.unsafeDevExecutor === true ? 'dev-vm' : 'gvisor',
        onLog: line => say(opts, line, { event: 'log', line })
      })
      onShutdown(async () => await server.stop())
      say(opts, `peerhost dev: serving ${root} at ${server.url}/<function> (Ctrl-C to stop)`, { event: 'ready', role: 'dev', url: server.url })
    })
}
