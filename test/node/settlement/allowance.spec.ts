/**
 * The gateway's allowance tracker (node/settlement/allowance.ts) against a chain whose reads the
 * test holds: a unit test of the code that calls the chain, so the chain is a stand-in here (the
 * real-chain behaviour — 402 without escrow or allowance — is test/chain/settlement.spec.ts).
 *
 * What it pins: a paid request waits for the chain only when the tracker has no usable view; past
 * `refreshMs` the re-read runs in the background (a slow RPC stalled every paid request of the
 * moment before, measured by `node bench/dispatch.ts --settlement`), and the local count of the
 * gateway's own tickets still refuses a burst beyond the allowance while the read is in flight.
 */
import assert from 'node:assert/strict'
import type { Address, Hex } from 'viem'
import { allowanceTracker } from '../../../node/settlement/allowance.ts'
import type { ChainClient } from '../../../node/chain/client.ts'

const PROJECT: Hex = `0x${'ab'.repeat(32)}`
const GATEWAY: Address = `0x${'11'.repeat(20)}`

/** A chain whose reads resolve only when the test releases them; counts reads. */
function heldChain (values: { escrow: bigint, perEpoch: bigint, spent: bigint }) {
  const pending: Array<() => void> = []
  let reads = 0
  const client = {
    contracts: { addresses: { Settlement: `0x${'22'.repeat(20)}` } },
    publicClient: {
      async readContract ({ functionName }: { functionName: string }) {
        reads++
        await new Promise<void>(resolve => pending.push(resolve))
        return functionName === 'escrowOf' ? values.escrow : [values.perEpoch, values.spent] as const
      }
    }
  } as unknown as Pick<ChainClient, 'publicClient' | 'contracts'>
  return {
    client,
    values,
    reads: () => reads,
    release () { for (const r of pending.splice(0)) r() }
  }
}

/** Whether `p` settles within a few event-loop turns (without any chain read being released). */
async function settlesAlone<T> (p: Promise<T>): Promise<boolean> {
  let done = false
  void p.then(() => { done = true }, () => { done = true })
  for (let i = 0; i < 10; i++) await new Promise(resolve => setImmediate(resolve))
  return done
}

describe('settlement: the gateway\'s allowance tracker', () => {
  it('waits for the chain for the first view only; past refreshMs it re-reads in the background', async () => {
    let t = 1_000_000
    const chain = heldChain({ escrow: 1_000n, perEpoch: 100n, spent: 0n })
    const spend = allowanceTracker({ refreshMs: 5_000, maxStaleMs: 30_000, now: () => t })({ client: chain.client as ChainClient, gateway: GATEWAY })

    const first = spend.reserve(PROJECT, 'p', 7n, 10n)
    assert.equal(await settlesAlone(first), false, 'no view yet: the first request waits for the chain')
    chain.release()
    assert.deepEqual(await first, { ok: true })
    assert.equal(chain.reads(), 2)

    // within refreshMs: no read at all
    t += 1_000
    assert.deepEqual(await spend.reserve(PROJECT, 'p', 7n, 10n), { ok: true })
    assert.equal(chain.reads(), 2)

    // past refreshMs: answered from the last view at once, the re-read runs behind it
    t += 5_000
    chain.values.spent = 70n // another batch of this gateway was committed meanwhile
    const stale = spend.reserve(PROJECT, 'p', 7n, 10n)
    assert.equal(await settlesAlone(stale), true, 'a stale view does not make the request wait for the RPC')
    assert.deepEqual(await stale, { ok: true })
    assert.equal(chain.reads(), 4, 'the re-read started')
    // the burst while the read is in flight: the gateway's own tickets still count (30 of 100 so far)
    const burst = await Promise.all(Array.from({ length: 8 }, async () => await spend.reserve(PROJECT, 'p', 7n, 10n)))
    assert.equal(burst.filter(v => v.ok).length, 7, 'the local count stops the burst at the allowance')
    assert.equal(chain.reads(), 4, 'one re-read in flight, not one per request')
    chain.release()
    await new Promise(resolve => setImmediate(resolve))
    // the fresh view (spent 70 on chain + 100 of own tickets) refuses the next one
    const next = await spend.reserve(PROJECT, 'p', 7n, 10n)
    assert.equal(next.ok, false)
    assert.equal(next.ok === false && next.reason, 'no-allowance')
  })

  it('makes a request wait once the view is older than maxStaleMs (the chain unreachable that long)', async () => {
    let t = 1_000_000
    const chain = heldChain({ escrow: 1_000n, perEpoch: 1_000n, spent: 0n })
    const spend = allowanceTracker({ refreshMs: 5_000, maxStaleMs: 30_000, now: () => t })({ client: chain.client as ChainClient, gateway: GATEWAY })
    const first = spend.reserve(PROJECT, 'p', 1n, 1n)
    chain.release()
    await first
    t += 31_000
    const late = spend.reserve(PROJECT, 'p', 1n, 1n)
    assert.equal(await settlesAlone(late), false, 'too old to trust: the request waits for a fresh read')
    chain.release()
    assert.deepEqual(await late, { ok: true })
  })
})
