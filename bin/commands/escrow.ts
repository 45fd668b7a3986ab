import { Command } from '@commander-js/extra-typings'
import { formatEther, isAddress, type Address } from 'viem'
import { ConfigError, parseAmount } from '../light.ts'
import { say } from '../util.ts'
import { builderAccount, chainContracts } from './wallet.ts'

function address (flag: string, value: string): Address {
  if (!isAddress(value)) throw new ConfigError('BAD_ADDRESS', `${flag} must be a 0x-prefixed 20-byte address, got "${value}"`)
  return value
}

/**
 * A gateway named by its address, or by its URL like every other command takes it (its address
 * is then read from `<url>/_peerhost/status`).
 */
export async function gatewayAddress (flag: string, value: string): Promise<Address> {
  return (await gatewayOf(flag, value)).address
}

/** One project's fees in a gateway's status (`settlement.fees`): its own tickets per epoch, requests and metered sessions apart. */
interface GatewayFees { epoch: string, requests: { count: number, fees: string }, sessions: { count: number, fees: string } }

/** The gateway's address, and its status when `value` is its URL (an address alone has none). */
async function gatewayOf (flag: string, value: string): Promise<{ address: Address, status?: { settlement?: { fees?: Array<GatewayFees & { projectId: string }> } } }> {
  if (isAddress(value)) return { address: value }
  if (!/^https?:\/\/[^\s/]+/.test(value)) throw new ConfigError('BAD_GATEWAY', `${flag} must be the gateway's URL (such as http://127.0.0.1:8080) or its 0x address, got "${value}"`)
  let body: { address?: unknown } | undefined
  try {
    const res = await fetch(`${value.replace(/\/+$/, '')}/_peerhost/status`, { signal: AbortSignal.timeout(10_000) })
    body = res.ok ? await res.json() as { address?: unknown } : undefined
  } catch (err: any) {
    throw new ConfigError('GATEWAY_UNREACHABLE', `the gateway at ${value} did not answer (${err?.cause?.code ?? err?.message}); is it running? (${flag})`)
  }
  if (typeof body?.address !== 'string' || !isAddress(body.address)) throw new ConfigError('BAD_GATEWAY', `${value}/_peerhost/status does not name a gateway address; pass the gateway's 0x address to ${flag}`)
  return { address: body.address, status: body as any }
}

function amount (flag: string, value: string): bigint {
  return parseAmount(flag, value)!
}

export function escrowCommand (): Command<any, any> {
  const escrow = new Command('escrow').description('a project\'s escrow in Settlement: what gateways may charge for its chain fallback requests (instead of paying themselves)')
  escrow.addCommand(new Command('deposit')
    .description('deposit native currency into the escrow of one of your projects')
    .argument('<project>', 'project name (under your wallet)')
    .argument('<amount>', 'native currency, e.g. 0.5')
    .option('--contracts <file>', 'contracts.json of the chain (env PEERHOST_CONTRACTS)')
    .option('--keystore <file>', 'builder wallet (JSON keystore); else env PEERHOST_PRIVATE_KEY')
    .option('--json', 'print machine-readable lines')
    .action(async (project, value, opts) => {
      const { chainClient, depositEscrow } = await import('../builder-deps.ts')
      const client = chainClient(chainContracts(opts.contracts), await builderAccount(opts.keystore))
      const out = await depositEscrow(client, project, amount('<amount>', value))
      const sym = client.chain.nativeCurrency.symbol
      say(opts, `deposited ${value} ${sym} for ${project}; escrow now ${formatEther(out.balance)} ${sym}`, { event: 'escrow', action: 'deposit', project, tx: out.tx, balance: out.balance.toString() })
    }))
  escrow.addCommand(new Command('allow')
    .description('let a gateway charge up to <per-epoch> of the project\'s escrow per settlement epoch (0 revokes)')
    .argument('<project>', 'project name (under your wallet)')
    .argument('<gateway>', 'the gateway: its URL (e.g. http://127.0.0.1:8080) or its 0x address')
    .argument('<per-epoch>', 'native currency per epoch, e.g. 0.1')
    .option('--contracts <file>', 'contracts.json of the chain (env PEERHOST_CONTRACTS)')
    .option('--keystore <file>', 'builder wallet (JSON keystore); else env PEERHOST_PRIVATE_KEY')
    .option('--json', 'print machine-readable lines')
    .action(async (project, gateway, perEpoch, opts) => {
      const { allowGateway, chainClient } = await import('../builder-deps.ts')
      const client = chainClient(chainContracts(opts.contracts), await builderAccount(opts.keystore))
      const out = await allowGateway(client, project, await gatewayAddress('<gateway>', gateway), amount('<per-epoch>', perEpoch))
      say(opts, `gateway ${gateway} may charge ${project}'s escrow up to ${perEpoch} ${client.chain.nativeCurrency.symbol} per epoch`, { event: 'escrow', action: 'allow', project, gateway, perEpoch, tx: out.tx })
    }))
  escrow.addCommand(new Command('show')
    .description('the escrow balance of a project, and a gateway\'s allowance (given its URL, also what its tickets charged per epoch: requests and metered WebSocket sessions)')
    .argument('<project>', 'project name')
    .option('--wallet <address>', 'the project\'s wallet (default: --keystore or PEERHOST_PRIVATE_KEY)')
    .option('--gateway <url-or-address>', 'also show this gateway\'s allowance: its URL (like every other command; then also its fees per epoch) or its 0x address')
    .option('--contracts <file>', 'contracts.json of the chain (env PEERHOST_CONTRACTS)')
    .option('--keystore <file>', 'builder wallet, to find its address')
    .option('--json', 'print machine-readable lines')
    .action(async (project, opts) => {
      const { chainClient, escrowStatus } = await import('../builder-deps.ts')
      const client = chainClient(chainContracts(opts.contracts))
      const wallet = opts.wallet !== undefined ? address('--wallet', opts.wallet) : (await builderAccount(opts.keystore)).address
      const named = opts.gateway === undefined ? undefined : await gatewayOf('--gateway', opts.gateway)
      const gateway = named?.address
      const s = await escrowStatus(client, wallet, project, gateway)
      const sym = client.chain.nativeCurrency.symbol
      const lines = [`${wallet}/${project}: escrow ${formatEther(s.balance)} ${sym}`]
      if (s.allowance !== undefined) lines.push(`  gateway ${gateway}${gateway !== opts.gateway ? ` (${opts.gateway})` : ''}: ${formatEther(s.allowance.perEpoch)} ${sym} per epoch, ${formatEther(s.allowance.spentThisEpoch)} spent this epoch`)
      // what the gateway's own tickets promised this project, per epoch (its status; the chain
      // charges a batch's total at its commit and does not tell a session's leaf from a request's)
      const listed = named?.status?.settlement?.fees
      const fees: GatewayFees[] | undefined = listed === undefined
        ? undefined
        : listed.filter(f => f.projectId.toLowerCase() === s.projectId.toLowerCase()).map(({ epoch, requests, sessions }) => ({ epoch, requests, sessions }))
      if (fees !== undefined) {
        if (fees.length === 0) lines.push('    no tickets of this gateway for the project on record')
        for (const f of fees) {
          const total = BigInt(f.requests.fees) + BigInt(f.sessions.fees)
          lines.push(`    epoch ${f.epoch}: ${formatEther(total)} ${sym} (${f.requests.count} requests ${formatEther(BigInt(f.requests.fees))} ${sym}, ${f.sessions.count} sessions ${formatEther(BigInt(f.sessions.fees))} ${sym})`)
        }
      }
      say(opts, lines.join('\n'), {
        event: 'escrow', project, wallet, projectId: s.projectId, balance: s.balance.toString(),
        allowance: s.allowance === undefined ? null : { perEpoch: s.allowance.perEpoch.toString(), spentThisEpoch: s.allowance.spentThisEpoch.toString() },
        ...(fees === undefined ? {} : { fees })
      })
    }))
  return escrow
}
