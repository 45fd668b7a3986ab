/**
 * node/fallback: the chain fallback (ARCHITECTURE §6). The gateway side stores the input in IPFS,
 * calls `ExecutionCoordinator.requestExecution` and answers from the finalized result; the worker
 * side is node/worker/chain-watcher.ts. Both exchange the documents of documents.ts.
 */
export { chainFallback, cidBytes, cidFromBytes, fallbackFailure, noResultReason, FALLBACK_DEFAULTS, type ChainFallback, type ChainFallbackInit, type ChainFallbackComponents, type FallbackJob, type FallbackResult, type FallbackStorage } from './gateway-fallback.ts'
export { encodeFallbackInput, decodeFallbackInput, encodeFallbackOutput, decodeFallbackOutput, type FallbackInput, type FallbackOutput } from './documents.ts'
