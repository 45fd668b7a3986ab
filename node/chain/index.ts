/**
 * The chain side of a node: the contracts file (`--contracts <file>`), viem clients for a
 * deployment with the EIP-712 domain of its tickets and receipts, and a local Hardhat chain with
 * PeerHost's contracts deployed (`peerhost chain up`).
 */
export { buildContracts, startLocalChain } from './local-chain.ts'
export type { ContractsFile, LocalChain, LocalChainInit } from './local-chain.ts'
export { loadContracts, parseContracts, parseAmount, chainDomain, CONTRACT_NAMES, type ChainContracts, type ContractName, type Finality } from './contracts.ts'
export { verifyChain, type VerifiedChain } from './verify.ts'
export { chainClient, chainOf, revertName, type ChainClient, type ChainClientInit, type ContractCall } from './client.ts'
