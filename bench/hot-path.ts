/**
 * `node bench/hot-path.ts`: a gateway and a worker (dev executor, examples/hello) in this one
 * process, serving until SIGTERM, printing the hello URL on stdout. For counting what one request
 * costs in system calls without the load generator in the count:
 *
 *   strace -f -c -e trace=write,writev,sendmsg,sendto -p <pid>   while   wrk -c 1 -d 5s <url>
 *
 * Syscall counts do not depend on machine load (unlike timings), so they can be taken anywhere.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { Registry } from 'prom-client'
import { generatePrivateKey } from 'viem/accounts'
import { devExecutor } from '#sandbox'
import { createBootstrap } from '#bootstrap'
import { addProject, createGateway, createWorker, fastSigner, functionTable, silentLogger } from '#node'

const root = resolve(import.meta.dirname, '..')
const dir = mkdtempSync(join(tmpdir(), 'peerhost-hot-'))
const logger = silentLogger()
const boot = await createBootstrap({}, { privateKey: await generateKeyPair('Ed25519'), logger, registry: new Registry() })
await boot.start()
const functions = functionTable()
const owner = fastSigner(generatePrivateKey()).address
await addProject(functions, owner, join(root, 'examples/hello'))
const gateway = await createGateway({ port: 0, bootstrap: boot.addrs() }, { privateKey: await generateKeyPair('Ed25519'), signer: fastSigner(generatePrivateKey()), functions, logger, registry: new Registry() })
await gateway.start()
const worker = await createWorker({ dataDir: join(dir, 'w'), bootstrap: boot.addrs() }, {
  privateKey: await generateKeyPair('Ed25519'), signer: fastSigner(generatePrivateKey()), executor: devExecutor({})({}), logger, registry: new Registry()
})
await worker.start()
while (gateway.view.size() === 0) await new Promise(resolve => setTimeout(resolve, 100))
const url = `${gateway.url}/${owner}/hello/hello`
for (let i = 0; i < 50; i++) await (await fetch(url)).text()
console.log(url)
process.once('SIGTERM', () => {
  void (async () => {
    await worker.stop(); await gateway.stop(); await boot.stop()
    rmSync(dir, { recursive: true, force: true })
    process.exit(0)
  })()
})
