/**
 * Gateway admission of workers (the `admit` hook of the worker view): an advert is admitted iff its
 * receipt-signing address is an active worker in WorkerStaking (`isActiveWorker`), the peer id the
 * address last bound (`peerOf`) is the advert's, and the binding's peer signature is the advert
 * peer key's Ed25519 signature of the binding message (the chain stores it without verifying it;
 * see contracts/abi/peer-binding.ts). So a squatter who binds someone else's peer id to its own
 * stake is never admitted under it, and cannot stop the real holder being admitted. Both reads
 * happen at the deployment's finality tag (money state). Verdicts are cached for a short TTL and
 * dropped as soon as WorkerStaking emits Staked, PeerBound, WithdrawalRequested, Withdrawn or
 * Slashed for the account, so a new stake is admitted within a poll and a slashed worker stops
 * being admitted at once.
 */
import type { WorkerAdvert } from '#protocol'
import type { Address, Hex } from 'viem'
import { workerStakingAbi } from '#contracts'
import type { Logger } from '../logger.ts'
import { CHAIN_EVENTS } from '../constants.ts'
import type { ChainClient } from '../chain/client.ts'
import { peerIdBytes } from './register.ts'
import { verifyPeerBinding } from './peer-binding.ts'

export const ADMISSION_DEFAULTS = {
  /** A verdict is reused this long; events invalidate it sooner. 10 s = five adverts of one worker per two reads. */
  ttlMs: 10_000,
  /** Verdicts kept at most (a flood of distinct valid peer keys must not grow memory without bound). */
  maxEntries: 10_000
} as const

export interface StakingAdmissionInit {
  /** @default ADMISSION_DEFAULTS.ttlMs */
  ttlMs?: number
  /** @default ADMISSION_DEFAULTS.maxEntries */
  maxEntries?: number
  now?: () => number
}

export interface StakingAdmissionComponents {
  chain: { publicClient: ChainClient['publicClient'], contracts: Pick<ChainClient['contracts'], 'addresses' | 'finality' | 'chainId'> }
  logger: Logger
}

export interface StakingAdmission {
  /** true iff the advert's address is an active worker that bound the advert's peer id with a valid peer signature */
  admit: (advert: Pick<WorkerAdvert, 'address' | 'peerId'>) => Promise<boolean>
  /** drops cached verdicts of one account (or all) */
  invalidate: (address?: string) => void
  /** starts watching WorkerStaking events; idempotent */
  start: () => Promise<void>
  stop: () => Promise<void>
}

const EVENTS = ['Staked', 'PeerBound', 'WithdrawalRequested', 'Withdrawn', 'Slashed'] as const

export function stakingAdmission (init: StakingAdmissionInit = {}): (components: StakingAdmissionComponents) => StakingAdmission {
  return (components) => {
    const log = components.logger.child({ component: 'peerhost:staking:admission' })
    const { publicClient, contracts } = components.chain
    const ttlMs = init.ttlMs ?? ADMISSION_DEFAULTS.ttlMs
    const maxEntries = init.maxEntries ?? ADMISSION_DEFAULTS.maxEntries
    const now = init.now ?? Date.now
    const staking = contracts.addresses.WorkerStaking
    const blockTag = contracts.finality
    const cache = new Map<string, { ok: boolean, at: number, address: string }>()
    const pending = new Map<string, Promise<boolean>>()
    let generation = 0
    let unwatch: (() => void) | undefined

    async function lookup (address: Address, peerId: string): Promise<boolean> {
      let bytes: Hex
      try {
        bytes = peerIdBytes(peerId)
      } catch {
        return false
      }
      const [active, [bound, peerSig]] = await Promise.all([
        publicClient.readContract({ address: staking, abi: workerStakingAbi, functionName: 'isActiveWorker', args: [address], blockTag }),
        publicClient.readContract({ address: staking, abi: workerStakingAbi, functionName: 'peerOf', args: [address], blockTag })
      ]) as [boolean, readonly [Hex, Hex]]
      if (!active || bound.toLowerCase() !== bytes.toLowerCase()) return false
      const ok = await verifyPeerBinding(peerId, peerSig, contracts.chainId, staking, address)
      if (!ok) log.debug({ address, peerId }, 'peer binding without a valid peer signature; not admitted')
      return ok
    }

    function invalidate (address?: string): void {
      generation++
      if (address === undefined) { cache.clear(); return }
      const a = address.toLowerCase()
      for (const [k, v] of cache) if (v.address === a) cache.delete(k)
    }

    return {
      async admit (advert) {
        const address = advert.address.toLowerCase()
        const key = `${address}/${advert.peerId}`
        const hit = cache.get(key)
        if (hit !== undefined && now() - hit.at < ttlMs) return hit.ok
        let p = pending.get(key)
        if (p === undefined) {
          const gen = generation
          p = lookup(advert.address, advert.peerId).then(ok => {
            // a verdict read before an invalidating event is not cached
            if (gen === generation) {
              if (cache.size >= maxEntries) cache.delete(cache.keys().next().value as string)
              cache.set(key, { ok, at: now(), address })
            }
            return ok
          }, (err: unknown) => {
            log.warn({ err: (err as Error)?.message }, 'stake lookup failed; advert not admitted')
            return false
          }).finally(() => pending.delete(key))
          pending.set(key, p)
        }
        return await p
      },
      invalidate,
      async start () {
        if (unwatch !== undefined) return
        // one filter for the whole contract: the events that change a verdict all name the account
        unwatch = publicClient.watchContractEvent({
          pollingInterval: CHAIN_EVENTS.pollMs,
          address: staking,
          abi: workerStakingAbi,
          onLogs (logs) {
            for (const l of logs as Array<{ eventName?: string, args?: { account?: string } }>) {
              if ((EVENTS as readonly string[]).includes(l.eventName ?? '')) invalidate(l.args?.account)
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
