/**
 * node/storage: helia block storage on the node's libp2p (bitswap between gateways and workers),
 * persistent in the node's data dir. See storage.ts.
 */
export { blockStorage, type BlockStorage, type BlockStorageInit, type BlockStorageComponents, type FetchOptions } from './storage.ts'
export { STORAGE_LIMITS } from './limits.ts'
