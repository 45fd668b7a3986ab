/**
 * The secret pieces that need no network: sealing to a gateway key and opening only in the exact
 * context, the sealed-only store on disk, the signed change text, and redaction.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { privateKeyToAccount } from 'viem/accounts'
import { recoverMessageAddress } from 'viem'
import { loadSecretKey, sealSecret, secretStore, secretChangeMessage, silentLogger } from '#node'
import { redact, redactSecrets } from '../../../node/secrets/redact.ts'

const WALLET = '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266'
const GATEWAY = '0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC'
const ctx = { chainId: 31337, gateway: GATEWAY, wallet: WALLET, project: 'vault', name: 'API_TOKEN' }
const enc = new TextEncoder()

describe('secrets: sealing, store, change, redaction', () => {
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-secrets-unit-'))
  after(() => rmSync(dir, { recursive: true, force: true }))

  it('a sealed value opens only with the gateway key, in the exact context, unaltered', () => {
    const key = loadSecretKey(dir)
    assert.equal(key.publicKey.byteLength, 32)
    assert.equal(statSync(join(dir, 'secrets.key')).mode & 0o777, 0o600)
    assert.deepEqual(loadSecretKey(dir).publicKey, key.publicKey, 'the key persists across restarts')
    const sealed = sealSecret(key.publicKey, enc.encode('s3cret-value'), ctx)
    assert.equal(new TextDecoder().decode(key.open(sealed, ctx)), 's3cret-value')
    assert.ok(!Buffer.from(sealed).includes('s3cret-value'))
    for (const other of [{ project: 'other' }, { name: 'OTHER' }, { wallet: GATEWAY }, { gateway: WALLET }, { chainId: 1 }]) {
      assert.throws(() => key.open(sealed, { ...ctx, ...other }), (e: any) => e.code === 'SECRET_UNSEALABLE', `opened with ${JSON.stringify(other)}`)
    }
    const tampered = sealed.slice()
    tampered[60] ^= 1
    assert.throws(() => key.open(tampered, ctx), (e: any) => e.code === 'SECRET_UNSEALABLE')
    assert.throws(() => key.open(sealed.subarray(0, 40), ctx), /version-1 envelope/)
    const otherKey = loadSecretKey(mkdtempSync(join(dir, 'other-')))
    assert.throws(() => otherKey.open(sealed, ctx), (e: any) => e.code === 'SECRET_UNSEALABLE')
  })

  it('refuses a key file that is not an X25519 PEM key, saying what to do', () => {
    const bad = mkdtempSync(join(dir, 'bad-'))
    writeFileSync(join(bad, 'secrets.key'), 'garbage')
    assert.throws(() => loadSecretKey(bad), (e: any) => e.code === 'BAD_SECRET_KEY' && /move it away/.test(e.message))
  })

  it('the store keeps only envelopes on disk, opens them for jobs, and tracks deletes', () => {
    const data = mkdtempSync(join(dir, 'store-'))
    const key = loadSecretKey(data)
    const store = secretStore({ dataDir: data, key, chainId: 31337, gateway: GATEWAY, logger: silentLogger() })
    assert.equal(store.forJob(WALLET, 'vault'), undefined)
    store.put(WALLET, 'vault', 'API_TOKEN', sealSecret(key.publicKey, enc.encode('value-one-xyz'), ctx), 100)
    store.put(WALLET, 'vault', 'DB', sealSecret(key.publicKey, enc.encode('value-two-xyz'), { ...ctx, name: 'DB' }), 101)
    assert.deepEqual(store.forJob(WALLET, 'vault'), { API_TOKEN: 'value-one-xyz', DB: 'value-two-xyz' })
    assert.deepEqual(store.list(WALLET, 'vault').map(s => s.name), ['API_TOKEN', 'DB'])
    const file = join(data, 'secrets', WALLET.toLowerCase(), 'vault.json')
    const onDisk = readFileSync(file, 'utf8')
    assert.ok(onDisk.includes('API_TOKEN') && !onDisk.includes('value-one-xyz') && !onDisk.includes('value-two-xyz'))
    assert.equal(statSync(file).mode & 0o777, 0o600)
    store.delete(WALLET, 'vault', 'DB', 102)
    assert.deepEqual(store.forJob(WALLET, 'vault'), { API_TOKEN: 'value-one-xyz' })
    assert.equal(store.lastIssued(WALLET, 'vault', 'DB'), 102, 'a delete leaves a tombstone, so an older put cannot be replayed')
    // a fresh store (a restarted gateway) reads the same state
    const again = secretStore({ dataDir: data, key, chainId: 31337, gateway: GATEWAY, logger: silentLogger() })
    assert.deepEqual(again.forJob(WALLET, 'vault'), { API_TOKEN: 'value-one-xyz' })
    assert.deepEqual(readdirSync(join(data, 'secrets', WALLET.toLowerCase())), ['vault.json'], 'no temp files left')
    assert.throws(() => store.forJob(WALLET, '../etc'), (e: any) => e.code === 'BAD_PROJECT')
  })

  it('the change text names everything the signature covers and recovers to the signer', async () => {
    const account = privateKeyToAccount('0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d')
    const change = { action: 'put' as const, gateway: GATEWAY, chainId: 31337, wallet: account.address, project: 'vault', name: 'API_TOKEN', sealed: enc.encode('x'), issued: 1_764_000_000 }
    const text = secretChangeMessage(change)
    for (const part of ['action: put', `gateway: ${GATEWAY.toLowerCase()}`, 'chain: 31337', `project: ${account.address.toLowerCase()}/vault`, 'name: API_TOKEN', 'issued: 1764000000']) assert.ok(text.includes(part), part)
    const signature = await account.signMessage({ message: text })
    assert.equal(await recoverMessageAddress({ message: text, signature }), account.address)
    assert.notEqual(await recoverMessageAddress({ message: secretChangeMessage({ ...change, sealed: enc.encode('y') }), signature }), account.address)
    assert.ok(secretChangeMessage({ ...change, action: 'delete', sealed: undefined }).includes('sealed: -'))
  })

  it('redaction replaces values (longest first) without growing the text, and leaves short values', () => {
    const secrets = { API_TOKEN: 'tok_abcdefghijklmnop', INNER: 'abcdefgh', PIN: '123' }
    assert.equal(redact('auth tok_abcdefghijklmnop and abcdefgh, pin 123', secrets), `auth [secret API_TOKEN] and ${'*'.repeat(8)}, pin 123`)
    const r = redactSecrets({ logs: 'k=tok_abcdefghijklmnop\n', logsTruncated: false, error: { code: 'FUNCTION_ERROR', message: 'bad tok_abcdefghijklmnop' }, timings: { queueMs: 0, execMs: 0, sandboxMs: 0 } } as any, secrets)
    assert.equal(r.logs, 'k=[secret API_TOKEN]\n')
    assert.equal(r.error!.message, 'bad [secret API_TOKEN]')
  })
})
