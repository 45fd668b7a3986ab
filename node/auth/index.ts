/**
 * node/auth: who may call a function (`"auth"` in peerhost.json). API keys stored by hash in SQLite
 * (api-keys.ts) and changed by owner-signed requests (key-change.ts, routes.ts, client.ts);
 * wallet-signed requests (request-signature.ts, with `signRequest` for clients); the check a
 * gateway runs before dispatch (guard.ts).
 */
export { resolveAuth, functionAuthSchema, MAX_ALLOW, type FunctionAuth } from './policy.ts'
export { signRequest, requestMessage, functionOfUrl, SIGNATURE_HEADER, SIGNATURE_FORMAT, type SignedRequestFields, type RequestSigner } from './request-signature.ts'
export { apiKeyStore, mintApiKey, apiKeyHash, apiKeyId, API_KEY_PATTERN, AUTH_DB_FILE, type ApiKeyStore, type ApiKeyStoreInit, type StoredKey, type KeyLookup } from './api-keys.ts'
export { keyChangeMessage, type KeyChange, type KeyChangeBody } from './key-change.ts'
export { keyRoutes, type KeyRoutesComponents } from './routes.ts'
export { putApiKey, revokeApiKey, listApiKeys, type KeyTarget } from './client.ts'
export { authGuard, type AuthGuard, type AuthGuardInit, type AuthGuardComponents, type AuthVerdict, type AuthRequest } from './guard.ts'
