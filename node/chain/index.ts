/**
 * The chain side of a node that is not a watcher: a local Hardhat chain with PeerHost's contracts
 * deployed (`peerhost chain up`).
 */
export { startLocalChain } from './local-chain.ts'
export type { ContractsFile, LocalChain, LocalChainInit } from './local-chain.ts'
