/**
 * What a project may still spend through this gateway in a settlement epoch (issue 11): a ticket
 * with a fee is a promise the project's escrow pays, so the gateway signs one only while
 *
 *     fees of its own tickets this epoch + the chain's spent this epoch + fee ≤ allowance per epoch
 *     fees of its own tickets of this and the previous epoch + fee ≤ escrow
 *
 * (the previous epoch's batches may not be committed yet, so their fees still sit in the escrow;
 * counting them once more after the commit only errs on the side of refusing). The chain's
 * numbers (`allowanceOf`, `escrowOf`) are cached for ALLOWANCE_DEFAULTS.refreshMs and then re-read
 * in the background (a request waits for the chain only without a view younger than `maxStaleMs`);
 * the gateway's own tickets are counted at once, so a burst cannot outrun the allowance between reads.
 */
import type { Address, Hex } from 'viem'
import { settlementAbi } from '#contracts'
import type { ChainClient } from '../chain/client.ts'
import { ALLOWANCE_DEFAULTS } from '../constants.ts'

export type SpendVerdict = { ok: true } | { ok: false, reason: 'no-escrow' | 'no-allowance', message: string, details: Record<string, string> }

export interface AllowanceTracker {
  /**
   * Reserves `fee` of the project's budget for a ticket of `epoch`; a refusal names what the
   * builder must do. Free tickets (fee 0) always pass.
   */
  reserve: (projectId: Hex, project: string, epoch: bigint, fee: bigint) => Promise<SpendVerdict>
  /** Gives back a reservation whose ticket never left (the frame was not sent). */
  release: (projectId: Hex, epoch: bigint, fee: bigint) => void
}

export interface AllowanceTrackerInit {
  /** @default ALLOWANCE_DEFAULTS.refreshMs */
  refreshMs?: number
  /** @default ALLOWANCE_DEFAULTS.maxStaleMs (never below refreshMs) */
  maxStaleMs?: number
  now?: () => number
}

export interface AllowanceTrackerComponents {
  client: Pick<ChainClient, 'publicClient' | 'contracts'>
  /** this gateway's address (its allowance) */
  gateway: Address
}

interface ChainView { at: number, escrow: bigint, perEpoch: bigint, spent: bigint }

export function allowanceTracker (init: AllowanceTrackerInit = {}): (components: AllowanceTrackerComponents) => AllowanceTracker {
  return ({ client, gateway }) => {
    const refreshMs = init.refreshMs ?? ALLOWANCE_DEFAULTS.refreshMs
    const now = init.now ?? Date.now
    const address = client.contracts.addresses.Settlement
    /** the latest chain view per project, and the read in flight */
    const views = new Map<Hex, ChainView>()
    const reading = new Map<Hex, Promise<ChainView>>()
    const maxStaleMs = Math.max(refreshMs, init.maxStaleMs ?? ALLOWANCE_DEFAULTS.maxStaleMs)
    /** `${projectId}/${epoch}` → fees of tickets issued */
    const issued = new Map<string, bigint>()
    const key = (p: Hex, e: bigint): string => `${p}/${e}`

    async function readChain (projectId: Hex): Promise<ChainView> {
      const [escrow, [perEpoch, spent]] = await Promise.all([
        client.publicClient.readContract({ address, abi: settlementAbi, functionName: 'escrowOf', args: [projectId] }) as Promise<bigint>,
        client.publicClient.readContract({ address, abi: settlementAbi, functionName: 'allowanceOf', args: [projectId, gateway] }) as Promise<readonly [bigint, bigint]>
      ])
      return { at: now(), escrow, perEpoch, spent }
    }

    function refresh (projectId: Hex): Promise<ChainView> {
      let r = reading.get(projectId)
      if (r === undefined) {
        r = readChain(projectId).then(v => { views.set(projectId, v); return v })
        reading.set(projectId, r)
        // a failed read is not cached: the next request asks again
        r.catch(() => {}).finally(() => reading.delete(projectId))
      }
      return r
    }

    /**
     * The chain's numbers for a project. A request waits for the chain only when there is no view
     * yet or the view is older than `maxStaleMs`; a view past `refreshMs` is re-read in the
     * background while requests go on with it, so a slow RPC never stalls every paid request of
     * the moment (the gateway's own tickets are counted locally in between either way).
     */
    async function view (projectId: Hex): Promise<ChainView> {
      const v = views.get(projectId)
      const age = v === undefined ? Infinity : now() - v.at
      if (v !== undefined && age < refreshMs) return v
      const r = refresh(projectId)
      if (v !== undefined && age < maxStaleMs) {
        r.catch(() => {})
        return v
      }
      return await r
    }

    function prune (epoch: bigint): void {
      for (const k of issued.keys()) {
        const e = BigInt(k.slice(k.indexOf('/') + 1))
        if (e + 1n < epoch) issued.delete(k)
      }
    }

    return {
      async reserve (projectId, project, epoch, fee): Promise<SpendVerdict> {
        if (fee === 0n) return { ok: true }
        const c = await view(projectId)
        prune(epoch)
        const mine = issued.get(key(projectId, epoch)) ?? 0n
        const previous = epoch === 0n ? 0n : issued.get(key(projectId, epoch - 1n)) ?? 0n
        if (mine + previous + fee > c.escrow) {
          return {
            ok: false,
            reason: 'no-escrow',
            message: `project ${project} has ${c.escrow} wei of escrow left for ${mine + previous} wei of unsettled requests; this request costs ${fee} wei: fund it with \`peerhost escrow deposit ${project} <amount>\``,
            details: { escrow: c.escrow.toString(), pending: (mine + previous).toString(), fee: fee.toString() }
          }
        }
        if (mine + c.spent + fee > c.perEpoch) {
          return {
            ok: false,
            reason: 'no-allowance',
            message: `project ${project} lets this gateway (${gateway}) spend ${c.perEpoch} wei per settlement epoch and ${mine + c.spent} wei are spent in epoch ${epoch}; this request costs ${fee} wei: raise it with \`peerhost escrow allow ${project} ${gateway} <per-epoch>\``,
            details: { perEpoch: c.perEpoch.toString(), spent: (mine + c.spent).toString(), fee: fee.toString(), gateway }
          }
        }
        issued.set(key(projectId, epoch), mine + fee)
        return { ok: true }
      },
      release (projectId, epoch, fee) {
        const k = key(projectId, epoch)
        const v = issued.get(k)
        if (v !== undefined) issued.set(k, v > fee ? v - fee : 0n)
      }
    }
  }
}
