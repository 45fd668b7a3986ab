/**
 * The parts of PeerHost's Hardhat configuration the local chain needs: paths (the node reads the
 * artifacts to name contracts and errors in its log), the compiler and the simulated network.
 * `hardhat.config.ts` adds the plugins and public networks; `node.config.ts` is this alone, for
 * `hardhat node` (bin: `peerhost chain up`, `peerhost devnet`): loading the viem and Ignition
 * plugins there cost the node's start ~1.5 s of CPU and nothing it uses.
 */
import { createRequire } from 'node:module'
import { join } from 'node:path'

const require = createRequire(import.meta.url)
const here = import.meta.dirname

/** The solc version the `solc` npm package ships; must match `node_modules/solc/package.json`. */
export const SOLC_VERSION = '0.8.37'

export const paths = {
  // Hardhat resolves paths from the npm package root (the repository root), so anchor them here.
  sources: join(here, 'src'),
  artifacts: join(here, 'artifacts'),
  cache: join(here, 'cache'),
  ignition: join(here, 'ignition')
}

export const solidity = {
  compilers: [{
    version: SOLC_VERSION,
    path: require.resolve('solc/soljson.js'),
    settings: {
      // Cancun opcodes (mcopy, transient storage) are live on Polygon PoS and Amoy.
      evmVersion: 'cancun',
      // runs 200 (not 1,000): Settlement with the trust-model checks and the batch ring must stay
      // under the 24,576-byte EIP-170 code size limit (25,888 bytes at 1,000 runs, 24,401 at 200).
      optimizer: { enabled: true, runs: 200 },
      viaIR: true
    }
  }]
}

export const hardhatNetwork = {
  type: 'edr-simulated',
  chainType: 'l1',
  // Large enough for one 10,000-leaf settlement commit plus challenges in one block.
  blockGasLimit: 60_000_000n
} as const
