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
})
