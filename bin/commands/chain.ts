import { Command } from '@commander-js/extra-typings'
import { absolute, intOption, onShutdown, say, userCacheDir } from '../util.ts'
import { checkPorts } from '../ports.ts'

export function chainCommand (): Command<any, any> {
  const chain = new Command('chain').description('the chain PeerHost settles on')
  chain.addCommand(new Command('up')
    .description('start a local Hardhat chain on 127.0.0.1, deploy the PeerHost contracts and write their addresses to <data-dir>/contracts.json')
    .option('--port <port>', 'JSON-RPC port', intOption('--port', 1, 65535), 8545)
    .option('--data-dir <dir>', 'where contracts.json and chain.log go', '.peerhost/chain')
    .option('--json', 'print machine-readable lines')
    .action(async (opts) => {
      const { startLocalChain } = await import('../deps.ts')
      const dataDir = absolute(opts.dataDir)
      await checkPorts([{ flag: '--port', port: opts.port, what: 'the local chain\'s JSON-RPC' }])
      const local = await startLocalChain({ port: opts.port, dataDir, artifactCache: userCacheDir('contract-artifacts') })
      onShutdown(async () => await local.stop())
      const lines = Object.entries(local.addresses).map(([name, address]) => `  ${name.padEnd(22)} ${address}`)
      say(opts, `local chain ${local.chainId} at ${local.rpcUrl} (deployer ${local.deployer})\n${lines.join('\n')}\naddresses written to ${dataDir}/contracts.json; Ctrl-C to stop`,
        { event: 'ready', role: 'chain', rpcUrl: local.rpcUrl, chainId: local.chainId, addresses: local.addresses, deployer: local.deployer, contracts: `${dataDir}/contracts.json` })
    }))
  return chain
}
