import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createPublicClient, custom, getContract } from 'viem'
import { hardhat } from 'viem/chains'
import { buildContracts } from '../../contracts/hre.ts'
import { CONTRACT_NAMES, LOCAL_PARAMS, readArtifact } from '../../contracts/deploy.ts'
import { ABI_DIR, MAIN_HEADER, TEST_CONTRACT_NAMES, TEST_HEADER, renderAbiModule } from '../../contracts/scripts/export-abi.ts'
import { BYTECODE_FILE, renderPrebuilt } from '../../contracts/prebuilt.ts'
import { settlementAbi, workerStakingAbi } from '../../contracts/abi/index.ts'
import PeerHostModule from '../../contracts/ignition/modules/PeerHost.ts'

describe('contracts: ABIs and deployment', function () {
  this.timeout(180_000)

  it('the committed typed ABIs (contracts/abi) match a fresh build (run contracts/scripts/export-abi.ts)', async () => {
    await buildContracts()
    assert.equal(await readFile(join(ABI_DIR, 'index.ts'), 'utf8'), await renderAbiModule(CONTRACT_NAMES, MAIN_HEADER))
    assert.equal(await readFile(join(ABI_DIR, 'test-abis.ts'), 'utf8'), await renderAbiModule(TEST_CONTRACT_NAMES, TEST_HEADER))
    // the bytecode a fresh checkout's devnet deploys without compiling, and the hash of its sources
    assert.equal(await readFile(BYTECODE_FILE, 'utf8'), await renderPrebuilt(readArtifact), 'contracts/abi/bytecode.json is stale: run `node contracts/scripts/export-abi.ts`')
  })

  it('the Ignition module deploys and wires all four contracts', async () => {
    const hre = await buildContracts()
    const conn = await hre.network.create()
    try {
      const { ignition } = conn as unknown as { ignition: { deploy: (m: unknown, o: unknown) => Promise<Record<string, { address: `0x${string}` }>> } }
      const params = Object.fromEntries(Object.entries(LOCAL_PARAMS).map(([k, v]) => [k, typeof v === 'bigint' ? v.toString() : v]))
      const deployed = await ignition.deploy(PeerHostModule, { parameters: { PeerHost: params }, displayUi: false })
      const client = createPublicClient({ chain: hardhat, transport: custom(conn.provider) })
      const staking = getContract({ address: deployed.staking.address, abi: workerStakingAbi, client })
      const settlement = getContract({ address: deployed.settlement.address, abi: settlementAbi, client })
      assert.equal(await staking.read.settlement(), deployed.settlement.address)
      assert.equal(await staking.read.coordinator(), deployed.coordinator.address)
      assert.equal(await settlement.read.coordinator(), deployed.coordinator.address)
      assert.equal(await settlement.read.registry(), deployed.registry.address)
      assert.equal(await settlement.read.epochLength(), LOCAL_PARAMS.epochLength)
      assert.equal(await staking.read.unbondingPeriod(), LOCAL_PARAMS.unbondingPeriod)
    } finally {
      await conn.close()
    }
  })
})
