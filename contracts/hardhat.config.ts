/**
 * Hardhat 3 configuration for PeerHost's contracts.
 *
 * Compiles offline: `solidity.compilers[0].path` points at the `solc` npm package's `soljson.js`
 * (the WASM build of the same compiler version), so Hardhat never downloads a compiler.
 *
 * Networks:
 * - `hardhat` (default, in-process EDR) for tests; `localhost` for `hardhat node` on 127.0.0.1:8545.
 * - `amoy` (Polygon Amoy, chain 80002) and `polygon` (Polygon PoS mainnet, chain 137), configured
 *   from environment variables (see docs/contracts.md): `PEERHOST_RPC_URL_AMOY`,
 *   `PEERHOST_RPC_URL_POLYGON`, `PEERHOST_DEPLOYER_KEY`.
 */
import { createRequire } from 'node:module'
import { join } from 'node:path'
import hardhatViem from '@nomicfoundation/hardhat-viem'
import hardhatIgnitionViem from '@nomicfoundation/hardhat-ignition-viem'
import { configVariable, defineConfig } from 'hardhat/config'

const require = createRequire(import.meta.url)
const here = import.meta.dirname

/** The solc version the `solc` npm package ships; must match `node_modules/solc/package.json`. */
export const SOLC_VERSION = '0.8.37'

export default defineConfig({
  plugins: [hardhatViem, hardhatIgnitionViem],
  paths: {
    // Hardhat resolves paths from the npm package root (the repository root), so anchor them here.
    sources: join(here, 'src'),
    artifacts: join(here, 'artifacts'),
    cache: join(here, 'cache'),
    ignition: join(here, 'ignition')
  },
  solidity: {
    compilers: [{
      version: SOLC_VERSION,
      path: require.resolve('solc/soljson.js'),
      settings: {
        // Cancun opcodes (mcopy, transient storage) are live on Polygon PoS and Amoy.
        evmVersion: 'cancun',
        // runs 1,000 (not 10,000): Settlement with the trust-model checks must stay under the 24,576-byte
        // EIP-170 code size limit (25,782 bytes at 10,000 runs, 21,872 at 1,000).
        optimizer: { enabled: true, runs: 1_000 },
        viaIR: true
      }
    }]
  },
  networks: {
    hardhat: {
      type: 'edr-simulated',
      chainType: 'l1',
      // Large enough for one 10,000-leaf settlement commit plus challenges in one block.
      blockGasLimit: 60_000_000n
    },
    localhost: {
      type: 'http',
      chainType: 'l1',
      url: 'http://127.0.0.1:8545'
    },
    amoy: {
      type: 'http',
      chainType: 'l1',
      chainId: 80002,
      url: configVariable('PEERHOST_RPC_URL_AMOY'),
      accounts: [configVariable('PEERHOST_DEPLOYER_KEY')]
    },
    polygon: {
      type: 'http',
      chainType: 'l1',
      chainId: 137,
      url: configVariable('PEERHOST_RPC_URL_POLYGON'),
      accounts: [configVariable('PEERHOST_DEPLOYER_KEY')]
    }
  }
})
