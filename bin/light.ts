/**
 * What command definitions (options, argument parsers, help) need, without loading the node
 * runtime: `peerhost --help` and usage errors answer in a fraction of a second. Command actions
 * load the rest with `await import('../deps.ts')`.
 */
export { ConfigError, NodeError } from '../node/errors.ts'
export { LOCAL_CHAIN_ESCROW, NODE_DEFAULTS } from '../node/constants.ts'
export { createLogger, type Logger } from '../node/logger.ts'
export { loadContracts, parseAmount, type ChainContracts } from '../node/chain/contracts.ts'
export { createKeystore, openKeystore, parsePrivateKey } from '../node/wallet.ts'
export { PeerHostError } from '#protocol'
