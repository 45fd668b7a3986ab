import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { Command } from '@commander-js/extra-typings'
import { privateKeyToAccount, type PrivateKeyAccount } from 'viem/accounts'
import { ConfigError, createKeystore, loadContracts, openKeystore, parsePrivateKey } from '../light.ts'
import type { ChainContracts } from '../deps.ts'
import { absolute, say } from '../util.ts'

/** Asks for a line on the terminal without echoing it (passwords, secret values). */
export async function readHidden (text: string): Promise<string> {
  if (process.stdin.isTTY !== true) throw new ConfigError('NO_TERMINAL', 'no terminal to ask on')
  return await new Promise((resolve, reject) => {
    process.stderr.write(text)
    const stdin = process.stdin
    stdin.setRawMode(true)
    stdin.resume()
    let value = ''
    const onData = (buf: Buffer): void => {
      for (const ch of buf.toString('utf8')) {
        if (ch === '\r' || ch === '\n') { done(); resolve(value); return }
        if (ch === '\u0003') { done(); reject(new ConfigError('CANCELLED', 'cancelled')); return }
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1)
        else value += ch
      }
    }
    const done = (): void => { stdin.off('data', onData); stdin.setRawMode(false); stdin.pause(); process.stderr.write('\n') }
    stdin.on('data', onData)
  })
}

/** Reads a password from PEERHOST_WALLET_PASSWORD, else from the terminal without echo. */
export async function readPassword (prompt: string, confirm = false): Promise<string> {
  const fromEnv = process.env.PEERHOST_WALLET_PASSWORD
  if (fromEnv !== undefined) return fromEnv
  if (process.stdin.isTTY !== true) throw new ConfigError('NO_PASSWORD', 'no terminal to ask for the wallet password; set PEERHOST_WALLET_PASSWORD')
  const first = await readHidden(prompt)
  if (confirm && (await readHidden('Repeat the password: ')) !== first) throw new ConfigError('PASSWORD_MISMATCH', 'the two passwords differ; run the command again')
  return first
}

/** The builder's account: --keystore <file> (+ password), else PEERHOST_PRIVATE_KEY. */
export async function builderAccount (keystore: string | undefined): Promise<PrivateKeyAccount> {
  const file = keystore ?? process.env.PEERHOST_KEYSTORE
  if (file !== undefined) {
    const path = absolute(file)
    if (!existsSync(path)) throw new ConfigError('NO_KEYSTORE', `${path} does not exist; create a wallet with \`peerhost wallet new --out ${file}\``)
    return privateKeyToAccount(await openKeystore(readFileSync(path, 'utf8'), await readPassword(`Password for ${file}: `)))
  }
  const raw = process.env.PEERHOST_PRIVATE_KEY
  if (raw !== undefined && raw !== '') return privateKeyToAccount(parsePrivateKey(raw))
  throw new ConfigError('NO_WALLET', 'no wallet: pass --keystore <file> (create one with `peerhost wallet new`) or set PEERHOST_PRIVATE_KEY')
}

/** --contracts <file>, else PEERHOST_CONTRACTS, else .peerhost/chain/contracts.json when present. */
export function chainContracts (file: string | undefined): ChainContracts {
  const path = file ?? process.env.PEERHOST_CONTRACTS ?? (existsSync('.peerhost/chain/contracts.json') ? '.peerhost/chain/contracts.json' : undefined)
  if (path === undefined) throw new ConfigError('NO_CONTRACTS', 'which chain? pass --contracts <contracts.json> (written by `peerhost chain up`) or set PEERHOST_CONTRACTS')
  return loadContracts(absolute(path))
}

export function walletCommand (): Command<any, any> {
  const wallet = new Command('wallet').description('builder wallets (standard Ethereum JSON keystores)')
  wallet.addCommand(new Command('new')
    .description('create a wallet: a new key in an encrypted JSON keystore (password from PEERHOST_WALLET_PASSWORD or a prompt)')
    .option('--out <file>', 'where to write the keystore', 'peerhost-wallet.json')
    .option('--force', 'overwrite an existing file')
    .option('--json', 'print machine-readable lines')
    .action(async (opts) => {
      const path = absolute(opts.out)
      if (existsSync(path) && opts.force !== true) throw new ConfigError('KEYSTORE_EXISTS', `${path} already exists; pick another --out or pass --force`)
      const password = await readPassword('New wallet password: ', true)
      const { address, keystore } = await createKeystore(password)
      writeFileSync(path, JSON.stringify(keystore, null, 2) + '\n', { mode: 0o600 })
      say(opts, `wallet ${address} written to ${path}\nfund it, then: peerhost deploy <dir> --keystore ${opts.out}`, { event: 'wallet', address, keystore: path })
    }))
  wallet.addCommand(new Command('address')
    .description('print the address of --keystore <file> (or PEERHOST_PRIVATE_KEY)')
    .option('--keystore <file>', 'JSON keystore')
    .option('--json', 'print machine-readable lines')
    .action(async (opts) => {
      const account = await builderAccount(opts.keystore)
      say(opts, account.address, { event: 'wallet', address: account.address })
    }))
  return wallet
}
