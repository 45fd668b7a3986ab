/**
 * A worker's settler in its own process, for the `kill -9` tests: runs one tick and prints its
 * report. `killAt` composes the chain client the settler gets (an injected part, as a test may):
 * `before-send` kills the process when commitBatch (or commitBatches) is about to leave (state `sending` is on disk),
 * `after-send` kills it once the commit is mined, before the settler records it.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { rawCid } from '#protocol'
// the parts it needs, not '#node' (libp2p, helia, the gateway): each of the kill tests starts three of
// these processes, and the whole node's imports cost seconds of CPU per start on a loaded machine
import { chainClient, loadContracts, type ChainClient } from '../../node/chain/index.ts'
import { settler } from '../../node/settlement/index.ts'
import { receiptLog } from '../../node/worker/receipt-log.ts'
import { fastSigner } from '../../node/signing.ts'
import { silentLogger } from '../../node/logger.ts'

const { contractsFile, key, dataDir, killAt } = JSON.parse(process.argv[2]) as { contractsFile: string, key: `0x${string}`, dataDir: string, killAt: 'before-send' | 'after-send' | 'none' }
const logger = silentLogger()
const real = chainClient(loadContracts(contractsFile), fastSigner(key).account)
const client: ChainClient = {
  ...real,
  async send (call, options) {
    const commit = call.functionName === 'commitBatch' || call.functionName === 'commitBatches'
    if (commit && killAt === 'before-send') process.kill(process.pid, 'SIGKILL')
    const receipt = await real.send(call, options)
    if (commit && killAt === 'after-send') process.kill(process.pid, 'SIGKILL')
    return receipt
  }
}
const blobs = join(dataDir, 'blobs')
mkdirSync(blobs, { recursive: true })
const receipts = receiptLog({ dataDir, pruneIntervalMs: 0 })({ logger })
const s = settler({ dataDir, intervalMs: 0, graceSeconds: 0n })({
  client, receipts, logger, publish: async (bytes) => { const cid = rawCid(bytes); writeFileSync(join(blobs, cid), bytes); return cid }
})
const report = await s.tick()
process.stdout.write(JSON.stringify(report) + '\n')
s.close()
receipts.close()
process.exit(0)
