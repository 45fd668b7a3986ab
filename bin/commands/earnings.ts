import { Command } from '@commander-js/extra-typings'
import { formatEther } from 'viem'
import { absolute, say } from '../util.ts'
import { chainContracts } from './wallet.ts'

/** `peerhost earnings`: a worker's settlement batches per epoch, what is pending and what it may withdraw. */
export function earningsCommand (): Command<any, any> {
  return new Command('earnings')
    .description('a worker\'s settlement: batches per epoch (committed / finalized / voided / expired), amounts pending and withdrawable; --withdraw pays out')
    .option('--data-dir <dir>', 'the worker\'s data dir (its key and settlement.sqlite)', process.env.PEERHOST_DATA_DIR ?? '.peerhost/worker')
    .option('--contracts <file>', 'contracts.json of the chain (env PEERHOST_CONTRACTS)')
    .option('--withdraw', 'withdraw everything Settlement owes the worker to its address')
    .option('--json', 'print machine-readable lines')
    .action(async (opts) => {
      const { chainClient, loadSigner, receiptLog, settler, silentLogger } = await import('../deps.ts')
      const dataDir = absolute(opts.dataDir)
      const contracts = chainContracts(opts.contracts)
      const signer = loadSigner(dataDir)
      const client = chainClient(contracts, signer.account)
      const logger = silentLogger()
      const receipts = receiptLog({ dataDir, pruneIntervalMs: 0 })({ logger })
      // read-only use: no timer, and nothing is published
      const s = settler({ dataDir, intervalMs: 0 })({ client, receipts, logger, publish: async () => { throw new Error('earnings publishes nothing') } })
      try {
        const sym = client.chain.nativeCurrency.symbol
        const byEpoch = new Map<string, { committed: number, finalized: number, voided: number, expired: number, pending: number, pendingWei: bigint, paidWei: bigint }>()
        for (const b of s.batches()) {
          const e = byEpoch.get(b.epoch.toString()) ?? { committed: 0, finalized: 0, voided: 0, expired: 0, pending: 0, pendingWei: 0n, paidWei: 0n }
          if (b.state === 'committed') { e.committed++; e.pendingWei += b.total }
          else if (b.state === 'finalized') { e.finalized++; e.paidWei += b.total }
          else if (b.state === 'voided') e.voided++
          else if (b.state === 'expired') e.expired++
          else { e.pending++; e.pendingWei += b.total }
          byEpoch.set(b.epoch.toString(), e)
        }
        const owed = await s.owed()
        const epochs = [...byEpoch].map(([epoch, e]) => ({ epoch, ...e, pendingWei: e.pendingWei.toString(), paidWei: e.paidWei.toString() }))
        // finalized batches are paid to the worker's address by its settler's finalizing transaction;
        // what is withdrawable is what Settlement credited instead (answered leaf requests, batches someone else finalized)
        const lines = [`worker ${signer.address}: ${formatEther(owed)} ${sym} withdrawable (finalized batches are paid to this address when the settler finalizes them)`]
        for (const e of epochs) lines.push(`  epoch ${e.epoch}: ${e.committed} committed, ${e.finalized} finalized, ${e.voided} voided, ${e.expired} expired, ${e.pending} not yet committed; pending ${formatEther(BigInt(e.pendingWei))} ${sym}, finalized ${formatEther(BigInt(e.paidWei))} ${sym}`)
        say(opts, lines.join('\n'), { event: 'earnings', worker: signer.address, withdrawable: owed.toString(), epochs })
        if (opts.withdraw === true) {
          const paid = await s.withdraw()
          say(opts, paid === 0n ? 'nothing to withdraw' : `withdrew ${formatEther(paid)} ${sym} to ${signer.address}`, { event: 'withdraw', worker: signer.address, amount: paid.toString() })
        }
      } finally {
        s.close()
        receipts.close()
      }
    })
}
