import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { Command } from '@commander-js/extra-typings'
import { formatEther, getAddress, isAddress } from 'viem'
import { privateKeyToAccount, type PrivateKeyAccount } from 'viem/accounts'
import { ConfigError, createKeystore, loadContracts, openKeystore, parseAmount, parsePrivateKey } from '../light.ts'
import type { ChainContracts } from '../deps.ts'
import { absolute, say } from '../util.ts'
import { findDevnet, DEFAULT_DEVNET_DIR, type DevnetInfo } from '../devnet-file.ts'

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

/**
 * The builder's account: --keystore <file> (+ password), else PEERHOST_PRIVATE_KEY, else (when
 * `devnet` is given: the command talks to that running devnet) the devnet's builder key.
 */
export async function builderAccount (keystore: string | undefined, devnet?: DevnetInfo): Promise<PrivateKeyAccount> {
  const file = keystore ?? process.env.PEERHOST_KEYSTORE
  if (file !== undefined) {
    const path = absolute(file)
    if (!existsSync(path)) throw new ConfigError('NO_KEYSTORE', `${path} does not exist; create a wallet with \`peerhost wallet new --out ${file}\``)
    return privateKeyToAccount(await openKeystore(readFileSync(path, 'utf8'), await readPassword(`Password for ${file}: `)))
  }
  const raw = process.env.PEERHOST_PRIVATE_KEY
  if (raw !== undefined && raw !== '') return privateKeyToAccount(parsePrivateKey(raw))
  if (devnet !== undefined) {
    process.stderr.write(`peerhost: using the devnet's builder wallet ${devnet.builder} (key in ${devnet.builderKeyFile}); pass --keystore or PEERHOST_PRIVATE_KEY for another\n`)
    return privateKeyToAccount(parsePrivateKey(readFileSync(devnet.builderKeyFile, 'utf8').trim()))
  }
  throw new ConfigError('NO_WALLET', 'no wallet: pass --keystore <file> (create one with `peerhost wallet new`) or set PEERHOST_PRIVATE_KEY')
}

/**
 * --contracts <file>, else PEERHOST_CONTRACTS, else a running devnet's (<devnet dir>/devnet.json),
 * else .peerhost/chain/contracts.json when present.
 */
export function chainContracts (file: string | undefined, devnet: DevnetInfo | undefined = findDevnet()): ChainContracts {
  const path = file ?? process.env.PEERHOST_CONTRACTS ?? devnet?.contracts ?? (existsSync('.peerhost/chain/contracts.json') ? '.peerhost/chain/contracts.json' : undefined)
  if (path === undefined) throw new ConfigError('NO_CONTRACTS', `which chain? no devnet is running in ${DEFAULT_DEVNET_DIR} (start one with \`npm start\`); pass --contracts <contracts.json> (written by \`peerhost chain up\`) or set PEERHOST_CONTRACTS`)
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
  wallet.addCommand(new Command('fund')
    .description('devnet only: give <address> native currency on the running devnet\'s local chain (a Hardhat development method; on Amoy use a faucet, on Polygon a transfer)')
    .argument('<address>', 'the 0x address to fund')
    .option('--amount <eth>', 'how much to add', '100')
    .option('--devnet <dir>', `the devnet's data dir (env PEERHOST_DEVNET_DIR; default ${DEFAULT_DEVNET_DIR})`)
    .option('--json', 'print machine-readable lines')
    .action(async (target, opts) => {
      if (!isAddress(target)) throw new ConfigError('BAD_ADDRESS', `expected a 0x-prefixed 20-byte address to fund, got "${target}"`)
      const amount = parseAmount('--amount', opts.amount)
      if (amount === undefined || amount <= 0n) throw new ConfigError('BAD_AMOUNT', `--amount must be a positive amount such as 100 or 0.5, got "${opts.amount}"`)
      const dir = opts.devnet ?? process.env.PEERHOST_DEVNET_DIR ?? DEFAULT_DEVNET_DIR
      const devnet = findDevnet(dir)
      if (devnet === undefined) throw new ConfigError('NO_DEVNET', `no devnet is running in ${absolute(dir)}: \`peerhost wallet fund\` works only on a local devnet (start one with \`npm start\`, or pass --devnet <its data dir>)`)
      const rpc = async (method: string, params: unknown[]): Promise<any> => {
        const res = await fetch(devnet.rpcUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }), signal: AbortSignal.timeout(10_000) })
        const body = await res.json() as { result?: unknown, error?: { message: string } }
        if (body.error !== undefined) throw new ConfigError('FUND_FAILED', `the devnet chain at ${devnet.rpcUrl} refused ${method}: ${body.error.message}`)
        return body.result
      }
      const chainId = Number(await rpc('eth_chainId', []))
      if (chainId !== devnet.chainId) throw new ConfigError('WRONG_CHAIN', `the RPC at ${devnet.rpcUrl} is chain ${chainId}, not the devnet's chain ${devnet.chainId}; is the devnet still running?`)
      const address = getAddress(target)
      const balance = BigInt(await rpc('eth_getBalance', [address, 'latest']))
      const next = balance + amount
      await rpc('hardhat_setBalance', [address, `0x${next.toString(16)}`])
      say(opts, `funded ${address} with ${formatEther(amount)} on the devnet (chain ${chainId}); it now holds ${formatEther(next)}`, { event: 'funded', address, amount: amount.toString(), balance: next.toString(), chainId })
    }))
  return wallet
}
