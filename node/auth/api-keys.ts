/**
 * API keys (`"auth": "api-key"`): minted on the builder's machine, shown once, and known to a
 * gateway only by their SHA-256. A key is `phk_` + 32 random bytes in base64url (256 bits, so a
 * plain SHA-256 is enough: there is nothing to brute-force, unlike a password). Its public id is
 * the first 16 hex characters of that hash; `peerhost keys list|revoke` name keys by id.
 *
 * The gateway keeps them in SQLite (WAL) at `<dataDir>/auth.db` rather than in the secrets store's
 * one-JSON-file-per-project style: a revocation the gateway acknowledged must survive `kill -9` and
 * power loss (a lost revocation is a leaked key working again), every request looks a key up by
 * hash (an indexed read, no file parse), and "this id was ever created" must be remembered forever
 * so a captured create cannot bring a revoked key back. Writes use `synchronous = FULL`: they are
 * rare (a builder's command), and the acknowledgement then means "on disk".
 */
import { createHash, randomBytes } from 'node:crypto'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { NODE_DEFAULTS } from '../constants.ts'
import { NodeError } from '../errors.ts'

export const API_KEY_PREFIX = 'phk_'
/** `phk_` + 43 base64url characters (32 bytes) */
export const API_KEY_PATTERN = /^phk_[A-Za-z0-9_-]{43}$/
export const KEY_ID_PATTERN = /^[0-9a-f]{16}$/
export const KEY_HASH_PATTERN = /^0x[0-9a-f]{64}$/
/** Key names: a label for humans (`ci`, `mobile-app`). */
export const KEY_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/
export const AUTH_DB_FILE = 'auth.db'

export function mintApiKey (): string {
  return `${API_KEY_PREFIX}${randomBytes(32).toString('base64url')}`
}

/** `0x` + SHA-256 hex of the key's UTF-8 bytes. */
export function apiKeyHash (key: string): string {
  return `0x${createHash('sha256').update(key, 'utf8').digest('hex')}`
}

export function apiKeyId (hash: string): string {
  return hash.slice(2, 18)
}

export interface StoredKey {
  id: string
  name: string
  /** unix seconds of the signed create */
  created: number
  /** unix seconds of the signed revoke; absent while the key is live */
  revoked?: number
}

export type KeyLookup = { ok: true, id: string } | { ok: false, reason: 'unknown' | 'revoked' | 'other-project' }

export interface ApiKeyStore {
  /** Adds a key the project's owner signed for; throws NodeError KEY_EXISTS / TOO_MANY_KEYS. */
  create: (wallet: string, project: string, key: { id: string, hash: string, name: string, issued: number }) => void
  /** Revokes a key; false when the project has no key with that id. A revoked key stays revoked. */
  revoke: (wallet: string, project: string, id: string, issued: number) => boolean
  list: (wallet: string, project: string) => StoredKey[]
  /** Which key of which project a presented key is (by its hash). */
  lookup: (wallet: string, project: string, key: string) => KeyLookup
  close: () => void
}

export interface ApiKeyStoreInit {
  /** the gateway's data directory; the database is `<dataDir>/auth.db` */
  dataDir: string
  /** @default NODE_DEFAULTS.authMaxKeysPerProject */
  maxKeysPerProject?: number
}

export function apiKeyStore (init: ApiKeyStoreInit): ApiKeyStore {
  mkdirSync(init.dataDir, { recursive: true, mode: 0o700 })
  const max = init.maxKeysPerProject ?? NODE_DEFAULTS.authMaxKeysPerProject
  const db = new DatabaseSync(join(init.dataDir, AUTH_DB_FILE))
  db.exec('PRAGMA journal_mode = WAL')
  // an acknowledged revocation is on disk, not only in the OS cache
  db.exec('PRAGMA synchronous = FULL')
  db.exec(`CREATE TABLE IF NOT EXISTS api_keys (
    wallet TEXT NOT NULL,
    project TEXT NOT NULL,
    id TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    created INTEGER NOT NULL,
    revoked INTEGER,
    PRIMARY KEY (wallet, project, id)
  ) STRICT`)
  const insert = db.prepare('INSERT INTO api_keys (wallet, project, id, hash, name, created) VALUES (?, ?, ?, ?, ?, ?)')
  const count = db.prepare('SELECT COUNT(*) AS n FROM api_keys WHERE wallet = ? AND project = ?')
  const byId = db.prepare('SELECT id FROM api_keys WHERE wallet = ? AND project = ? AND id = ?')
  const byHash = db.prepare('SELECT wallet, project, id, revoked FROM api_keys WHERE hash = ?')
  const revoke = db.prepare('UPDATE api_keys SET revoked = ? WHERE wallet = ? AND project = ? AND id = ? AND revoked IS NULL')
  const list = db.prepare('SELECT id, name, created, revoked FROM api_keys WHERE wallet = ? AND project = ? ORDER BY created, id')
  const w = (wallet: string): string => wallet.toLowerCase()

  return {
    create (wallet, project, key) {
      if (byId.get(w(wallet), project, key.id) !== undefined || byHash.get(key.hash) !== undefined) {
        throw new NodeError('KEY_EXISTS', `a key with id ${key.id} was already created on this gateway (a revoked key cannot be created again); mint a new one`)
      }
      if (Number((count.get(w(wallet), project) as { n: number | bigint }).n) >= max) {
        throw new NodeError('TOO_MANY_KEYS', `${wallet}/${project} has ${max} keys on this gateway (live and revoked), the most it may hold`)
      }
      insert.run(w(wallet), project, key.id, key.hash, key.name, key.issued)
    },
    revoke: (wallet, project, id, issued) => {
      if (byId.get(w(wallet), project, id) === undefined) return false
      revoke.run(issued, w(wallet), project, id)
      return true
    },
    list: (wallet, project) => (list.all(w(wallet), project) as Array<{ id: string, name: string, created: number, revoked: number | null }>)
      .map(r => ({ id: r.id, name: r.name, created: Number(r.created), ...(r.revoked === null ? {} : { revoked: Number(r.revoked) }) })),
    lookup (wallet, project, key) {
      const row = byHash.get(apiKeyHash(key)) as { wallet: string, project: string, id: string, revoked: number | null } | undefined
      if (row === undefined) return { ok: false, reason: 'unknown' }
      if (row.wallet !== w(wallet) || row.project !== project) return { ok: false, reason: 'other-project' }
      if (row.revoked !== null) return { ok: false, reason: 'revoked' }
      return { ok: true, id: row.id }
    },
    close: () => db.close()
  }
}
