// Child process for the kill -9 test: creates a key, revokes it, says so on stdout once the store
// returned (what the gateway's route acknowledges to the builder), then waits to be killed.
import { apiKeyHash, apiKeyId, apiKeyStore } from '../../../../node/auth/index.ts'

const [dataDir, key] = process.argv.slice(2) as [string, string]
const store = apiKeyStore({ dataDir })
const hash = apiKeyHash(key)
store.create('0x1111111111111111111111111111111111111111', 'demo', { id: apiKeyId(hash), hash, name: 'ci', issued: 1 })
store.revoke('0x1111111111111111111111111111111111111111', 'demo', apiKeyId(hash), 2)
process.stdout.write('revoked\n')
setInterval(() => {}, 1_000)
