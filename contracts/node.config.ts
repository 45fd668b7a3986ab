/**
 * The configuration `hardhat node` runs with for PeerHost's local chain (node/chain/local-chain.ts):
 * the same paths, compiler and simulated network as `hardhat.config.ts`, without its plugins.
 *
 * `allowBlocksWithSameTimestamp`: a block mined within the second of the one before it keeps the
 * wall-clock second instead of taking the next one. Without it, the ~40 transactions of a devnet's
 * start (deploy, fund, stake, bind, escrow, deploy functions) each pushed the chain a second ahead
 * of the wall clock, and interval mining never gave the lead back: the chain ran 22–24 s ahead, so
 * with 15 s epochs a worker's settler (chain time) built each epoch's batch while gateways (wall
 * clock) were still issuing that epoch's tickets, and those receipts were never settled.
 */
import { defineConfig } from 'hardhat/config'
import { hardhatNetwork, paths, solidity } from './hardhat.base.ts'

// `hardhat node` runs the network named `node` (Hardhat 3's default for the task), not `hardhat`
const local = { ...hardhatNetwork, allowBlocksWithSameTimestamp: true }
export default defineConfig({ paths, solidity, networks: { hardhat: local, node: local } })
