import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { freePort } from '../helpers/network.ts'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createPublicClient, http } from 'viem'
import { settlementAbi, workerStakingAbi } from '../../contracts/abi/index.ts'
import { startLocalChain, type ContractsFile, type LocalChain } from '../../node/chain/index.ts'


describe('integration: local chain (peerhost chain up)', function () {
  this.timeout(180_000)
  let chain: LocalChain | undefined
  let dir: string

  before(async () => { dir = await mkdtemp(join(tmpdir(), 'peerhost-chain-')) })
  after(async () => {
    await chain?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('starts hardhat node on 127.0.0.1, deploys the contracts, writes contracts.json and stops cleanly', async () => {
    const port = await freePort()
    chain = await startLocalChain({ port, dataDir: dir })
    assert.equal(chain.rpcUrl, `http://127.0.0.1:${port}`)
    assert.equal(chain.chainId, 31337)
    const file = JSON.parse(await readFile(join(dir, 'contracts.json'), 'utf8')) as ContractsFile
    assert.deepEqual(file.addresses, chain.addresses)
    assert.equal(file.rpcUrl, chain.rpcUrl)
    const client = createPublicClient({ transport: http(chain.rpcUrl) })
    assert.equal(await client.readContract({ address: chain.addresses.WorkerStaking, abi: workerStakingAbi, functionName: 'settlement' }), chain.addresses.Settlement)
    assert.equal(await client.readContract({ address: chain.addresses.Settlement, abi: settlementAbi, functionName: 'coordinator' }), chain.addresses.ExecutionCoordinator)
    await chain.stop()
    await chain.stop() // idempotent
    await assert.rejects(client.getChainId())
  })

  it('keeps to the wall clock through a burst of transactions, and runs with our network settings', async () => {
    // Settlement's epochs come from block time, and gateways and workers name and check epochs by
    // the wall clock: a chain that ran ahead (a second per block mined within one) had the settler
    // build each epoch's batch while tickets of that epoch were still being issued
    const port = await freePort()
    const local = await startLocalChain({ port, dataDir: join(dir, 'burst') })
    try {
      const rpc = async (method: string, params: unknown[] = []): Promise<any> => {
        const res = await fetch(local.rpcUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }) })
        const body = await res.json() as { result?: unknown, error?: { message: string } }
        if (body.error !== undefined) throw new Error(`${method}: ${body.error.message}`)
        return body.result
      }
      const [from, to] = await rpc('eth_accounts') as string[]
      for (let i = 0; i < 40; i++) await rpc('eth_sendTransaction', [{ from, to, value: '0x1' }])
      const head = await rpc('eth_getBlockByNumber', ['latest', false]) as { number: string, timestamp: string, gasLimit: string }
      assert.ok(Number(head.number) >= 40, `${Number(head.number)} blocks`)
      const lead = Number(head.timestamp) - Date.now() / 1000
      assert.ok(lead < 2, `the chain is ${lead.toFixed(1)} s ahead of the wall clock after ${Number(head.number)} blocks`)
      // contracts/hardhat.base.ts: room for one 10,000-leaf settlement commit in a block
      assert.equal(BigInt(head.gasLimit), 60_000_000n)
    } finally {
      await local.stop()
    }
  })
})
