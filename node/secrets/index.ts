/**
 * node/secrets: project secrets sealed to a gateway's published X25519 key (sealed.ts), stored
 * sealed by the gateway (store.ts), changed by signed requests (change.ts, routes.ts, client.ts)
 * and opened only in memory, into one job frame at a time (see JobRequest.secrets).
 */
export { loadSecretKey, sealSecret, secretContext, SEALED_ALGORITHM, SECRET_KEY_FILE, type SecretKeyPair, type SecretContext } from './sealed.ts'
export { secretStore, SECRET_NAME, type SecretStore, type StoredSecret } from './store.ts'
export { secretChangeMessage, SECRET_CHANGE_SKEW_SEC, type SecretChange, type SecretChangeBody } from './change.ts'
export { secretRoutes, type SecretRoutesComponents } from './routes.ts'
export { redact, redactSecrets, executeWithSecrets } from './redact.ts'
export { gatewayKey, putSecret, deleteSecret, listSecrets, type GatewayKey, type SecretTarget } from './client.ts'
