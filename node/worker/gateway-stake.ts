/**
 * The worker's view of which ticket signers are staked gateways (issue 9 item 1): a worker with a
 * chain answers a job only when `WorkerStaking.isActiveGateway(ticket.gateway)` holds now, so no
 * unstaked key can make it sign a receipt — the first step of the equivocation attack.
 *
 * * Verdicts are cached per address (bounded: least recently used dropped past `maxEntries`) and
 *   re-read in the background when WorkerStaking emits an event naming the address (Staked,
 *   WithdrawalRequested, Withdrawn, Slashed), so a slashed or withdrawing gateway loses access
 *   within one poll; every verdict is also re-read after `ttlMs` in case an event was missed.
 * * An address not in the cache costs one RPC read, at most `unknownPerSecond` a second (token
 *   bucket, burst `unknownBurst`), shared across all unknown addresses: a flood of tickets from
 *   random keys costs bounded RPC and is refused, while known gateways are never rate-limited.
 * * Reads happen at the deployment's finality tag (money state), as stake admission does.
 * * A read that fails refuses the job (fail closed): the gateway retries elsewhere.
 */
import type { Address } from 'viem'
import { Counter, type Registry } from 'prom-client'
import { workerStakingAbi } from '#contracts'
import type { ChainClient } from '../chain/client.ts'
import type { Logger } from '../logger.ts'
import { CHAIN_EVENTS } from '../constants.ts'

export const GATEWAY_STAKE_DEFAULTS = {
  /** Verdicts kept at most: far more gateways than a network has, far less memory than a flood needs. */
  maxEntries: 10_000,
  /** A verdict is re-read this long after it was read even without an event (a missed event heals). */
  ttlMs: 60_000,
  /** Reads for addresses not in the cache, per second: a new gateway waits at most a moment. */
  unknownPerSecond: 10,
  /** Burst of such reads (a worker restarting with many gateways talking to it). */
  unknownBurst: 50
} as const

export interface GatewayStakeInit {
  /** @default GATEWAY_STAKE_DEFAULTS.maxEntries */
  maxEntries?: number
  /** @default GATEWAY_STAKE_DEFAULTS.ttlMs */
  ttlMs?: number
  /** @default GATEWAY_STAKE_DEFAULTS.unknownPerSecond */
  unknownPerSecond?: number
  /** @default GATEWAY_STAKE_DEFAULTS.unknownBurst */
  unknownBurst?: number
  now?: () => number
}

export interface GatewayStakeComponents {
  chain: Pick<ChainClient, 'publicClient' | 'contracts'>
  logger: Logger
  /** the node's metrics registry; none = no metric */
  registry?: Registry
}

export interface GatewayStake {
  /** undefined when `gateway` is a staked gateway now; otherwise why the ticket is refused */
  refusal: (gateway: string) => Promise<string | undefined>
  /** starts watching WorkerStaking events; idempotent */
  start: () => Promise<void>
  stop: () => Promise<void>
  /** addresses with a cached verdict (for tests and status) */
  readonly size: number
}

const EVENTS: readonly string[] = ['Staked', 'WithdrawalRequested', 'Withdrawn', 'Slashed']

interface Entry { staked: boolean, at: number }

export function gatewayStake (init: GatewayStakeInit = {}): (components: GatewayStakeComponents) => GatewayStake {
  return (components) => {
    const log = components.logger.child({ component: 'peerhost:worker:gateway-stake' })
    const { publicClient, contracts } = components.chain
    const staking = contracts.addresses.WorkerStaking
    const maxEntries = init.maxEntries ?? GATEWAY_STAKE_DEFAULTS.maxEntries
    const ttlMs = init.ttlMs ?? GATEWAY_STAKE_DEFAULTS.ttlMs
    const rate = init.unknownPerSecond ?? GATEWAY_STAKE_DEFAULTS.unknownPerSecond
    const burst = init.unknownBurst ?? GATEWAY_STAKE_DEFAULTS.unknownBurst
    const now = init.now ?? Date.now
    const cache = new Map<string, Entry>()
    const reading = new Map<string, Promise<Entry>>()
    let tokens = burst
    let refilled = now()
    let generation = 0
    let unwatch: (() => void) | undefined
    const reads = components.registry === undefined
      ? undefined
      : new Counter({ name: 'peerhost_worker_gateway_stake_reads_total', help: 'isActiveGateway reads, by reason (unknown, expired, event) and outcome', labelNames: ['reason', 'outcome'], registers: [components.registry] })

    function remember (address: string, entry: Entry): void {
      cache.delete(address)
      cache.set(address, entry)
      while (cache.size > maxEntries) cache.delete(cache.keys().next().value as string)
    }

    function takeToken (): boolean {
      const t = now()
      tokens = Math.min(burst, tokens + (t - refilled) * rate / 1000)
      refilled = t
      if (tokens < 1) return false
      tokens -= 1
      return true
    }

    async function read (address: string, reason: 'unknown' | 'expired' | 'event'): Promise<Entry> {
      const pending = reading.get(address)
      if (pending !== undefined) return await pending
      const gen = generation
      const p = (async () => {
        try {
          const staked = await publicClient.readContract({ address: staking, abi: workerStakingAbi, functionName: 'isActiveGateway', args: [address as Address], blockTag: contracts.finality }) as boolean
          const entry = { staked, at: now() }
          reads?.inc({ reason, outcome: staked ? 'staked' : 'not-staked' })
          // a verdict read before an event about this address (generation moved) is not kept
          if (gen === generation || reason === 'event') remember(address, entry)
          return entry
        } catch (err) {
          reads?.inc({ reason, outcome: 'error' })
          throw err
        }
      })().finally(() => reading.delete(address))
      reading.set(address, p)
      return await p
    }

    function onEvent (account: string | undefined): void {
      if (account === undefined) return
      const a = account.toLowerCase()
      generation++
      // only addresses this worker has seen matter; the others are read when they first sign
      if (!cache.has(a)) return
      cache.delete(a)
      read(a, 'event').catch((err: unknown) => log.debug({ err: (err as Error)?.message, gateway: a }, 'gateway stake re-read failed'))
    }

    return {
      get size () { return cache.size },
      async refusal (gateway) {
        const address = gateway.toLowerCase()
        let entry = cache.get(address)
        try {
          if (entry === undefined) {
            if (!reading.has(address) && !takeToken()) {
              return `the worker is reading too many unknown gateways' stakes right now; ${gateway} is not known as a staked gateway yet`
            }
            entry = await read(address, 'unknown')
          } else if (now() - entry.at >= ttlMs) {
            entry = await read(address, 'expired')
          }
        } catch (err: any) {
          log.warn({ gateway, err: err?.shortMessage ?? err?.message }, 'gateway stake not readable; ticket refused')
          return `the worker could not read whether ${gateway} is a staked gateway in WorkerStaking`
        }
        if (entry.staked) return undefined
        return `the ticket's gateway ${gateway} is not staked as a gateway in WorkerStaking`
      },
      async start () {
        if (unwatch !== undefined) return
        unwatch = publicClient.watchContractEvent({
          pollingInterval: CHAIN_EVENTS.pollMs,
          address: staking,
          abi: workerStakingAbi,
          onLogs (logs) {
            for (const l of logs as Array<{ eventName?: string, args?: { account?: string } }>) {
              if (EVENTS.includes(l.eventName ?? '')) onEvent(l.args?.account)
            }
          },
          onError (err) { log.debug({ err: err.message }, 'staking event watch error') }
        })
      },
      async stop () {
        unwatch?.()
        unwatch = undefined
      }
    }
  }
}
