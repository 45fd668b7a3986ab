/**
 * The configuration `hardhat node` runs with for PeerHost's local chain (node/chain/local-chain.ts):
 * the same paths, compiler and simulated network as `hardhat.config.ts`, without its plugins.
 */
import { defineConfig } from 'hardhat/config'
import { hardhatNetwork, paths, solidity } from './hardhat.base.ts'

export default defineConfig({ paths, solidity, networks: { hardhat: hardhatNetwork } })
