/**
 * What the builder's commands (deploy, rollback, versions, escrow, logs, keys, secret) run: the
 * chain, deploy and gateway-client parts of the node, imported file by file. deps.ts is the whole
 * node runtime (mesh, gateway, worker, sandboxes: about 3,800 modules, 5 s of CPU to load); these
 * commands need about 1,200 of them (2 s), and tests and builders run them many times over.
 */
export { chainClient, type ChainClient } from '../node/chain/client.ts'
export type { ChainContracts } from '../node/chain/contracts.ts'
export { deployProject, type DeployStepEvent } from '../node/deploy/deploy.ts'
export { allowGateway, depositEscrow, escrowStatus, fundOnLocalChain } from '../node/escrow/escrow.ts'
export { listVersions, registryPublicClient, rollbackProject } from '../node/registry/chain.ts'
export { fetchLogs } from '../node/gateway/logs.ts'
export { apiKeyHash, apiKeyId, mintApiKey } from '../node/auth/api-keys.ts'
export { listApiKeys, putApiKey, revokeApiKey } from '../node/auth/client.ts'
export { deleteSecret, listSecrets, putSecret, type SecretTarget } from '../node/secrets/client.ts'
export { publishedGateways } from '../node/staking/register.ts'
export { LOCAL_CHAIN_ESCROW } from '../node/constants.ts'
