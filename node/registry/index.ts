/**
 * node/registry: FunctionRegistry on the chain — the registry-backed FunctionTable gateways
 * serve from, and the reads and writes `peerhost versions` / `rollback` use.
 */
export { registryTable, type RegistryTable, type RegistryTableInit, type RegistryTableComponents, type ProjectState } from './registry-table.ts'
export {
  registryPublicClient, registryWalletClient, listVersions, rollbackProject,
  cidToBytes, cidFromBytes, chainError, type ChainConfig, type ProjectVersion
} from './chain.ts'
