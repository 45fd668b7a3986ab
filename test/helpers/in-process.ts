/**
 * A mesh of real libp2p nodes in this one process on 127.0.0.1: a bootstrap node, then gateways
 * and workers as a test asks for them (the dev executor runs the functions), each with its own keys
 * and metrics registry unless the test passes its own parts. `stop` stops them all, workers first.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { Registry } from 'prom-client'
import { generatePrivateKey } from 'viem/accounts'
import { createBootstrap } from '#bootstrap'
import { createGateway, createWorker, fastSigner, functionTable, silentLogger, type MutableFunctionTable, type GatewayNode, type WorkerNode } from '#node'
import { devExecutor } from '#sandbox'

type GatewayInit = Parameters<typeof createGateway>[0]
type GatewayComponents = Parameters<typeof createGateway>[1]
type WorkerInit = Parameters<typeof createWorker>[0]
type WorkerComponents = Parameters<typeof createWorker>[1]

export interface InProcessMesh {
  dir: string
  boot: Awaited<ReturnType<typeof createBootstrap>>
  /** the table gateways serve from unless a test passes its own */
  functions: MutableFunctionTable
  /** a started gateway on port 0 knowing the bootstrap node */
  gateway: (init?: Partial<GatewayInit>, components?: Partial<GatewayComponents>) => Promise<GatewayNode>
  /** a started worker (dev executor) with its own data dir */
  worker: (init?: Partial<WorkerInit>, components?: Partial<WorkerComponents>) => Promise<WorkerNode>
  stop: () => Promise<void>
}

export async function inProcessMesh (prefix = 'peerhost-mesh-'): Promise<InProcessMesh> {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  const logger = silentLogger()
  const boot = await createBootstrap({}, { privateKey: await generateKeyPair('Ed25519'), logger, registry: new Registry() })
  await boot.start()
  const functions = functionTable()
  const gateways: GatewayNode[] = []
  const workers: WorkerNode[] = []
  return {
    dir,
    boot,
    functions,
    async gateway (init = {}, components = {}) {
      const g = await createGateway({ port: 0, bootstrap: boot.addrs(), ...init }, { privateKey: await generateKeyPair('Ed25519'), signer: fastSigner(generatePrivateKey()), functions, logger, registry: new Registry(), ...components })
      gateways.push(g)
      await g.start()
      return g
    },
    async worker (init = {}, components = {}) {
      const w = await createWorker({ dataDir: join(dir, `w${workers.length}`), bootstrap: boot.addrs(), ...init }, {
        privateKey: await generateKeyPair('Ed25519'), signer: fastSigner(generatePrivateKey()), executor: devExecutor({})({}), logger, registry: new Registry(), ...components
      })
      workers.push(w)
      await w.start()
      return w
    },
    async stop () {
      for (const w of workers) await w.stop()
      for (const g of gateways) await g.stop()
      await boot.stop()
      rmSync(dir, { recursive: true, force: true })
    }
  }
}
