/**
 * node/: the mesh node — libp2p setup, worker and gateway roles, identity, config, logging,
 * metrics and project bundling. `bin/` builds these from flags and files.
 */
export { NODE_DEFAULTS } from './constants.ts'
export { NodeError, ConfigError } from './errors.ts'
export { createLogger, component, silentLogger, type Logger, type LoggerInit } from './logger.ts'
export { loadPeerKey, loadEvmAccount, loadSigner, ensureDataDir, PEER_KEY_FILE, EVM_KEY_FILE } from './identity.ts'
export { createMeshNode, dialableAddrs, type PeerHostLibp2p, type MeshNodeInit } from './libp2p.ts'
export { adminServer, type AdminServer } from './admin.ts'
export { bundleStore, type BundleStore } from './bundle-store.ts'
export { findFunctions, bundleFunction, bundleProject, type BuiltFunction, type FunctionSource } from './build/bundle.ts'
export { loadProjectConfig, projectConfigSchema, type ProjectConfig, type ResolvedProject } from './project/config.ts'
export { createWorker, type WorkerInit, type WorkerComponents, type WorkerNode } from './worker/worker.ts'
export { createGateway, type GatewayInit, type GatewayComponents, type GatewayNode } from './gateway/gateway.ts'
export { functionTable, addProject, type FunctionEntry, type FunctionTable, type MutableFunctionTable } from './gateway/functions.ts'
export { workerView, ADVERT_VERDICTS, type WorkerView, type WorkerEntry, type AdvertCheck } from './gateway/worker-view.ts'
export { frames, errorFrame, type FrameStream } from './frames.ts'
export { fastSigner, recoverDigestSigner, sameAddress, type FastSigner } from './signing.ts'
export { startDevServer, type DevServer, type DevServerInit } from './dev/dev-server.ts'
export { startLocalChain, type LocalChain, type LocalChainInit, type ContractsFile } from './chain/index.ts'
