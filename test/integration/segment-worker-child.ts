/**
 * A priced worker in its own process, for the session-segment `kill -9` test
 * (test/integration/session-segments.spec.ts): dev executor, its receipt log in `dataDir`, and
 * its view of Settlement's current epoch read from `<dataDir>/epoch` (an injected part, moved by
 * the test). Prints one JSON line with its address and listen address once started.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { Registry } from 'prom-client'
import { devExecutor } from '#sandbox'
import { createWorker, fastSigner, receiptLog, silentLogger } from '#node'

const { key, dataDir, price, perMessage } = JSON.parse(process.argv[2]) as { key: `0x${string}`, dataDir: string, price: string, perMessage: string }
const logger = silentLogger()
const receipts = receiptLog({ dataDir, pruneIntervalMs: 0 })({ logger })
const worker = await createWorker({ dataDir, bootstrap: [], listen: ['/ip4/127.0.0.1/tcp/0'], price: BigInt(price), sessionPrice: { perMessage: BigInt(perMessage), perMinute: 0n } }, {
  privateKey: await generateKeyPair('Ed25519'),
  signer: fastSigner(key),
  executor: devExecutor({})({}),
  logger,
  registry: new Registry(),
  receipts,
  sessionEpochs: { current: () => BigInt(readFileSync(join(dataDir, 'epoch'), 'utf8').trim()), segmentDue: () => false }
})
await worker.start()
process.stdout.write(JSON.stringify({ address: worker.address, addr: worker.addrs()[0] }) + '\n')
