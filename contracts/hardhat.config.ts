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
import hardhatViem from '@nomicfoundation/hardhat-viem'
import hardhatIgnitionViem from '@nomicfoundation/hardhat-ignition-viem'
import { configVariable, defineConfig } from 'hardhat/config'
import { hardhatNetwork, paths, solidity, SOLC_VERSION } from './hardhat.base.ts'

export { SOLC_VERSION }

export default defineConfig({
  plugins: [hardhatViem, hardhatIgnitionViem],
  paths,
  solidity,
  networks: {
    hardhat: hardhatNetwork,
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
