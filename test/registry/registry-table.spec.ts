/**
 * The registry table against a real Hardhat chain: it reads logs from the deployment block that
 * contracts.json records, persists a cursor in the data dir and resumes from it after a restart
 * (asserted on the `fromBlock` of its getLogs calls), and ignores a corrupt or foreign cursor.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createWalletClient, http, type PublicClient } from 'viem'
import { hardhat } from 'viem/chains'
import { privateKeyToAccount } from 'viem/accounts'
import { functionRegistryAbi } from '#contracts'
import {
  blockStorage, buildDeployment, cidToBytes, createLogger, createMeshNode, loadContracts, parseContracts, registryPublicClient, registryTable, startLocalChain,
  type BlockStorage, type ChainContracts, type LocalChain, type PeerHostLibp2p, type RegistryTable
} from '#node'
import { freePort, waitFor } from '../helpers/network.ts'
import { BUILDER_KEY } from '../deploy/chain-network.ts'

const fixtures = resolve(import.meta.dirname, '..', 'fixtures')
const builder = privateKeyToAccount(BUILDER_KEY)
const ADDRESSES = { FunctionRegistry: `0x${'1'.repeat(40)}`, WorkerStaking: `0x${'2'.repeat(40)}`, Settlement: `0x${'3'.repeat(40)}`, ExecutionCoordinator: `0x${'4'.repeat(40)}` }

describe('chain: deployBlock in contracts.json', () => {
  const file = (extra: Record<string, unknown>): string => JSON.stringify({ chainId: 80002, rpcUrl: 'https://rpc.example', addresses: ADDRESSES, ...extra })

  it('reads deployBlock as a decimal string or a number, and defaults to 0 when absent', () => {
    assert.equal(parseContracts(file({ deployBlock: '21500000' })).deployBlock, 21_500_000n)
    assert.equal(parseContracts(file({ deployBlock: 7 })).deployBlock, 7n)
    assert.equal(parseContracts(file({})).deployBlock, 0n)
  })

  it('reports a bad deployBlock with the other problems', () => {
    for (const bad of ['-1', 'latest', 1.5, -3, '0x10']) {
      assert.throws(() => parseContracts(JSON.stringify({ chainId: 0, rpcUrl: 'https://rpc.example', addresses: ADDRESSES, deployBlock: bad })),
        (err: any) => err.code === 'BAD_CONTRACTS_FILE' && /has 2 problems: chainId: .*; deployBlock: expected a block number/.test(err.message), String(bad))
    }
  })
})

/** A public client whose getLogs calls are recorded (fromBlock of each). */
function counting (client: PublicClient): { client: PublicClient, from: bigint[] } {
  const from: bigint[] = []
  const wrapped = new Proxy(client, {
    get (target, key, receiver) {
      if (key === 'getLogs') return async (args: any) => { from.push(args.fromBlock); return await target.getLogs(args) }
      return Reflect.get(target, key, receiver)
    }
  })
  return { client: wrapped, from }
}

function captureLogger (): { logger: ReturnType<typeof createLogger>, lines: () => any[] } {
  const out: string[] = []
  const logger = createLogger({ level: 'warn', destination: { write: (s: string) => { out.push(s) } } as any })
  return { logger, lines: () => out.map(l => JSON.parse(l)) }
}

describe('registry: start block and cursor', function () {
  this.timeout(120_000)
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-registry-'))
  const cursorFile = join(dir, 'gateway', 'registry.json')
  let chain: LocalChain
  let contracts: ChainContracts
  let libp2p: PeerHostLibp2p
  let storage: BlockStorage
  const tables: RegistryTable[] = []

  async function deploy (project: string, greeting: string): Promise<string> {
    const built = await buildDeployment({ dir: join(fixtures, 'deploy-app'), project, env: { GREETING: greeting }, sourceCommit: `0x${'0'.repeat(64)}` })
    for (const b of built.bundles) await storage.put(b.cid, b.bytes)
    await storage.put(built.manifestCid, built.manifestBytes)
    const wallet = createWalletClient({ account: builder, chain: { ...hardhat, id: contracts.chainId }, transport: http(contracts.rpcUrl) })
    const hash = await wallet.writeContract({ address: contracts.addresses.FunctionRegistry, abi: functionRegistryAbi, functionName: 'deploy', args: [builder.address, project, cidToBytes(built.manifestCid), `0x${'0'.repeat(64)}`, built.bundles.map(b => b.name), 0n] })
    await registryPublicClient(contracts).waitForTransactionReceipt({ hash })
    return built.manifestCid
  }

  function table (client: PublicClient, init: { resume?: boolean, logger?: ReturnType<typeof createLogger> } = {}): RegistryTable {
    const t = registryTable({ registry: contracts.addresses.FunctionRegistry, chainId: contracts.chainId, fromBlock: contracts.deployBlock, cursorFile, resume: init.resume, pollIntervalMs: 50 },
      { client, storage, logger: init.logger ?? createLogger({ level: 'silent' }) })
    tables.push(t)
    return t
  }

  before(async () => {
    chain = await startLocalChain({ port: await freePort(), dataDir: join(dir, 'chain') })
    contracts = loadContracts(join(dir, 'chain', 'contracts.json'))
    libp2p = await createMeshNode({ privateKey: await generateKeyPair('Ed25519') })
    storage = blockStorage({ dataDir: join(dir, 'gateway') })({ libp2p, logger: createLogger({ level: 'silent' }) })
    await storage.start()
  })
  after(async () => {
    for (const t of tables) await t.stop()
    await storage?.stop()
    await libp2p?.stop()
    await chain?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it('records the deployment block in contracts.json: the registry has no code before it, and code at it', async () => {
    const json = JSON.parse(readFileSync(join(dir, 'chain', 'contracts.json'), 'utf8'))
    assert.match(json.deployBlock, /^\d+$/)
    assert.ok(contracts.deployBlock > 0n)
    const client = registryPublicClient(contracts)
    const before = await client.getCode({ address: contracts.addresses.FunctionRegistry, blockNumber: contracts.deployBlock - 1n })
    const at = await client.getCode({ address: contracts.addresses.FunctionRegistry, blockNumber: contracts.deployBlock })
    assert.ok(before === undefined || before === '0x', before)
    assert.ok(at !== undefined && at.length > 2)
  })

  it('reads logs from the deployment block, writes a cursor, and resumes from it after a restart without re-reading old logs', async () => {
    await deploy('app', 'hello')
    const first = counting(registryPublicClient(contracts))
    const a = table(first.client)
    await a.start()
    assert.equal(first.from[0], contracts.deployBlock)
    assert.ok(a.resolve(builder.address, 'app', 'greet') !== undefined, 'serves app/greet')
    await a.stop()
    const stoppedAt = a.block
    const cursor = JSON.parse(readFileSync(cursorFile, 'utf8'))
    assert.equal(cursor.block, stoppedAt.toString())
    assert.equal(cursor.registry, contracts.addresses.FunctionRegistry)
    assert.equal(cursor.chainId, contracts.chainId)
    assert.deepEqual(cursor.projects.map((p: any) => [p.namespace, p.name, p.active, p.versions.length]), [[builder.address, 'app', 1, 1]])

    // while the gateway is down, version 2 is registered
    const v2 = await deploy('app', 'hello again')
    const second = counting(registryPublicClient(contracts))
    const b = table(second.client)
    await b.start()
    assert.equal(second.from[0], stoppedAt + 1n, `first query after the restart starts at ${second.from[0]}`)
    assert.ok(second.from.every(f => f > stoppedAt), 'no log before the cursor is read again')
    const p = await waitFor('version 2 served', async () => {
      const p = b.project(builder.address, 'app')
      return p?.served === 2 ? p : undefined
    }, 10_000, 50)
    assert.equal(p.versions.get(2)?.manifestCid, v2)
    assert.equal(p.versions.get(1)?.manifestCid, cursor.projects[0].versions[0].manifestCid, 'version 1 comes from the cursor')
    assert.equal(b.resolve(builder.address, 'app', 'greet')?.env.GREETING, 'hello again')
    await b.stop()
  })

  it('ignores a corrupt cursor with a warning and reads from the deployment block', async () => {
    writeFileSync(cursorFile, '{"v":1,"registry":"0x')
    const { logger, lines } = captureLogger()
    const c = counting(registryPublicClient(contracts))
    const t = table(c.client, { logger })
    await t.start()
    assert.equal(c.from[0], contracts.deployBlock)
    assert.ok(lines().some(l => l.level === 40 && /cursor is corrupt/.test(l.msg)), JSON.stringify(lines()))
    await waitFor('app served', async () => t.project(builder.address, 'app')?.served === 2, 10_000, 50)
    await t.stop()
    // and it wrote a good one again
    assert.equal(JSON.parse(readFileSync(cursorFile, 'utf8')).block, t.block.toString())
  })

  it('ignores a cursor written for another registry or chain', async () => {
    const good = JSON.parse(readFileSync(cursorFile, 'utf8'))
    for (const foreign of [{ ...good, registry: ADDRESSES.Settlement }, { ...good, chainId: 1 }]) {
      writeFileSync(cursorFile, JSON.stringify(foreign))
      const { logger, lines } = captureLogger()
      const c = counting(registryPublicClient(contracts))
      const t = table(c.client, { logger })
      await t.start()
      await t.stop()
      assert.equal(c.from[0], contracts.deployBlock)
      assert.ok(lines().some(l => /belongs to another registry or chain/.test(l.msg)))
    }
  })

  it('starts at the start block when told not to resume (--registry-from-block)', async () => {
    const c = counting(registryPublicClient(contracts))
    const t = table(c.client, { resume: false })
    await t.start()
    await t.stop()
    assert.equal(c.from[0], contracts.deployBlock)
  })
})
