import { mkdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { Command } from '@commander-js/extra-typings'
import { loadEvmAccount } from '../deps.ts'
import { spawnPeerhost, type NodeProcess } from '../spawn.ts'
import { absolute, collect, intOption, onShutdown, say } from '../util.ts'

async function stopAll (children: NodeProcess[]): Promise<void> {
  await Promise.all(children.map(async c => await c.stop()))
}

export function devnetCommand (): Command<any, any> {
  return new Command('devnet')
    .description('run a local network on 127.0.0.1: one bootstrap node, one gateway and N workers, each its own process, serving examples/hello and any --project')
    .option('--port <port>', 'gateway HTTP port', intOption('--port', 0, 65535), 8080)
    .option('--workers <n>', 'number of workers', intOption('--workers', 1, 32), 3)
    .option('--project <dir...>', 'also serve these project folders', collect, [] as string[])
    .option('--data-dir <dir>', 'where the network keeps its state', '.peerhost/devnet')
    .option('--unsafe-dev-executor', 'run functions in node:vm instead of gVisor (NOT a security boundary)')
    .option('--json', 'print machine-readable lines')
    .action(async (opts) => {
      const dataDir = absolute(opts.dataDir)
      const logDir = join(dataDir, 'logs')
      mkdirSync(logDir, { recursive: true })
      const builder = loadEvmAccount(join(dataDir, 'builder'))
      const children: NodeProcess[] = []
      let stopped = false
      const stop = async (): Promise<void> => { stopped = true; await stopAll(children) }
      onShutdown(stop)
      try {
        const boot = spawnPeerhost('bootstrap', ['bootstrap', '--data-dir', join(dataDir, 'bootstrap'), '--listen', '/ip4/127.0.0.1/tcp/0'], logDir)
        children.push(boot)
        const { addrs } = await boot.ready
        const bootstrap = (addrs as string[]).join(',')
        const workers = Array.from({ length: opts.workers }, (_, i) => {
          const args = ['worker', '--bootstrap', bootstrap, '--data-dir', join(dataDir, `worker-${i + 1}`)]
          if (opts.unsafeDevExecutor === true) args.push('--unsafe-dev-executor')
          return spawnPeerhost(`worker-${i + 1}`, args, logDir)
        })
        children.push(...workers)
        const projects = [resolve(import.meta.dirname, '..', '..', 'examples', 'hello'), ...opts.project.map(p => absolute(p))]
        const gateway = spawnPeerhost('gateway', ['gateway', '--bootstrap', bootstrap, '--port', String(opts.port), '--data-dir', join(dataDir, 'gateway'),
          '--owner', builder.address, ...projects.flatMap(p => ['--project', p])], logDir)
        children.push(gateway)
        await Promise.all(workers.map(async w => await w.ready))
        const gw = await gateway.ready
        for (const c of children) {
          c.proc.once('exit', (code, signal) => {
            if (!stopped) process.stderr.write(`peerhost: ${c.name} exited (${signal ?? code}); see ${join(logDir, `${c.name}.log`)}\n`)
          })
        }
        say(opts, [
          `PeerHost devnet is up (state in ${dataDir}, logs in ${logDir})`,
          `  bootstrap  ${(addrs as string[])[0]}`,
          `  gateway    ${gw.url}   status: ${gw.url}/_peerhost/status`,
          `  workers    ${opts.workers}${opts.unsafeDevExecutor === true ? ' (unsafe dev executor)' : ' (gVisor)'}`,
          '',
          'Functions:',
          ...(gw.functions as string[]).map(u => `  ${u}`),
          '',
          'Try:',
          `  curl '${(gw.functions as string[]).find(u => u.endsWith('/hello')) ?? gw.functions[0]}?name=PeerHost'`,
          'Press Ctrl-C to stop.'
        ].join('\n'), { event: 'ready', role: 'devnet', gateway: gw.url, bootstrap: addrs, functions: gw.functions, builder: builder.address, dataDir })
      } catch (err) {
        await stop()
        throw err
      }
    })
}
