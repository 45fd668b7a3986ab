import { Command } from '@commander-js/extra-typings'
import { ConfigError, loadContracts } from '../light.ts'
import { absolute, intOption, multiaddrList, logger, onShutdown, registry, say } from '../util.ts'

/**
 * `peerhost watch`: a "fisherman" anyone can run. It follows every settlement batch on the chain,
 * fetches each batch's published leaves over the mesh (bitswap), checks their structure, prefix
 * sums, committed total and the gateway's signature on every ticket, and proves any fault it
 * finds (node/settlement `batchChecker` without a ticket log); Settlement pays it the challenger
 * share of the slash (`owed`, withdrawn like a worker's earnings).
 */
export function watchCommand (): Command<any, any> {
  return new Command('watch')
    .description('watch every settlement batch (a "fisherman"): fetch its leaves from IPFS, check sums, totals and ticket signatures, prove faults on chain and earn the challenger share')
    .option('--contracts <file>', 'contracts.json of the chain (env PEERHOST_CONTRACTS)', process.env.PEERHOST_CONTRACTS)
    .option('--bootstrap <multiaddr...>', 'bootstrap nodes of the mesh (batch data is fetched from workers over bitswap)', multiaddrList('--bootstrap'), [] as string[])
    .option('--data-dir <dir>', 'where the watcher keeps its keys (evm.key pays for proofs and receives the share) and its verdicts (tickets.sqlite)', process.env.PEERHOST_DATA_DIR ?? '.peerhost/watch')
    .option('--interval <ms>', 'how often new batches are read', intOption('--interval', 100, 3_600_000), 2_000)
    .option('--json', 'print machine-readable lines')
    .option('--log-level <level>', 'trace|debug|info|warn|error|silent')
    .action(async (opts) => {
      if (opts.contracts === undefined) throw new ConfigError('NO_CONTRACTS', 'peerhost watch needs --contracts <contracts.json> (or PEERHOST_CONTRACTS): the chain whose batches it watches')
      if (opts.bootstrap.length === 0) throw new ConfigError('NO_BOOTSTRAP', 'peerhost watch needs at least one --bootstrap <multiaddr>: batch leaves are fetched from the workers over the mesh')
      const { batchChecker, blockStorage, boundPeerOf, chainClient, createMeshNode, loadPeerKey, loadSigner, verifyChain } = await import('../deps.ts')
      const log = logger(opts, 'watch')
      const dataDir = absolute(opts.dataDir)
      const contracts = loadContracts(absolute(opts.contracts))
      await verifyChain(contracts, { file: opts.contracts })
      const signer = loadSigner(dataDir)
      const client = chainClient(contracts, signer.account)
      const libp2p = await createMeshNode({ privateKey: await loadPeerKey(dataDir), bootstrap: opts.bootstrap, registry: registry() })
      const storage = blockStorage({ dataDir })({ libp2p, logger: log })
      // createMeshNode leaves the node stopped (a role starts it). Unstarted, it dials nobody and
      // holds no socket, and with the checker's timer unref'd nothing kept the process alive: it
      // printed "ready" and exited 0 before judging any batch
      await libp2p.start()
      await storage.start()
      const checker = batchChecker({ dataDir, intervalMs: opts.interval })({ client, fetch: async (cid, o) => {
        // the worker that committed the batch holds its document: dial it first
        const from = o?.worker === undefined ? undefined : await boundPeerOf(client, o.worker)
        return await storage.fetch(cid, { signal: o?.signal, timeoutMs: o?.timeoutMs, from })
      },
      logger: log
    })
      onShutdown(async () => { checker.close(); await storage.stop(); await libp2p.stop() }, log)
      say(opts, `watching settlement batches on chain ${contracts.chainId} as ${signer.address} (proofs paid from and shares credited to this address; \`peerhost earnings --data-dir ${dataDir} --withdraw\` pays out)`,
        { event: 'ready', role: 'watch', address: signer.address, peerId: libp2p.peerId.toString(), chainId: contracts.chainId })
    })
}
