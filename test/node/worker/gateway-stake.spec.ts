/**
 * The worker's gateway stake view (node/worker/gateway-stake.ts), as a unit: the chain client is
 * a stand-in that counts `isActiveGateway` reads and lets the test emit WorkerStaking events, so
 * the cache, the event refresh and the rate limit for unknown signers are checked exactly. The
 * real-chain path is covered by test/e2e/registry-check.spec.ts (an unstaked key refused, then
 * accepted once its Staked event arrives).
 */
import assert from 'node:assert/strict'
import type { Address } from 'viem'
import { gatewayStake, silentLogger, type GatewayStake } from '../../../node/index.ts'

const STAKED = '0x' + 'aa'.repeat(20)
const OTHER = '0x' + 'bb'.repeat(20)

function fakeChain (staked: Set<string>) {
  const reads: string[] = []
  let onLogs: ((logs: unknown[]) => void) | undefined
  let failing = false
  const chain = {
    contracts: { addresses: { WorkerStaking: '0x' + '01'.repeat(20) as Address }, finality: 'latest' },
    publicClient: {
      async readContract ({ functionName, args }: { functionName: string, args: [string] }) {
        assert.equal(functionName, 'isActiveGateway')
        reads.push(args[0])
        if (failing) throw new Error('rpc down')
        return staked.has(args[0].toLowerCase())
      },
      watchContractEvent ({ onLogs: f }: { onLogs: (logs: unknown[]) => void }) {
        onLogs = f
        return () => { onLogs = undefined }
      }
    }
  }
  return {
    chain: chain as any,
    reads,
    emit: (eventName: string, account: string) => onLogs?.([{ eventName, args: { account } }]),
    fail: (v: boolean) => { failing = v }
  }
}

describe('worker gateway stake view', () => {
  let clock = 1_000_000
  const now = (): number => clock

  it('accepts a staked gateway, refuses any other key naming why, and caches both verdicts', async () => {
    const f = fakeChain(new Set([STAKED]))
    const view = gatewayStake({ now })({ chain: f.chain, logger: silentLogger() })
    assert.equal(await view.refusal(STAKED.toUpperCase().replace('0X', '0x')), undefined)
    const why = await view.refusal(OTHER)
    assert.match(why ?? '', /is not staked as a gateway in WorkerStaking/)
    assert.ok(why?.includes(OTHER))
    await view.refusal(STAKED)
    await view.refusal(OTHER)
    assert.equal(f.reads.length, 2, 'cached')
  })

  it('re-reads a gateway when WorkerStaking emits an event naming it (a slashed or withdrawing gateway loses access)', async () => {
    const staked = new Set([STAKED])
    const f = fakeChain(staked)
    const view: GatewayStake = gatewayStake({ now })({ chain: f.chain, logger: silentLogger() })
    await view.start()
    assert.equal(await view.refusal(STAKED), undefined)
    assert.notEqual(await view.refusal(OTHER), undefined)
    staked.delete(STAKED)
    staked.add(OTHER)
    f.emit('Slashed', STAKED)
    f.emit('Staked', OTHER)
    await new Promise(resolve => setImmediate(resolve))
    assert.notEqual(await view.refusal(STAKED), undefined, 'slashed: refused')
    assert.equal(await view.refusal(OTHER), undefined, 'newly staked: accepted')
    // an event about an address never seen costs no read
    const before = f.reads.length
    f.emit('Staked', '0x' + 'cc'.repeat(20))
    assert.equal(f.reads.length, before)
    await view.stop()
  })

  it('re-reads after the TTL even without an event', async () => {
    const staked = new Set([STAKED])
    const f = fakeChain(staked)
    const view = gatewayStake({ now, ttlMs: 1_000 })({ chain: f.chain, logger: silentLogger() })
    assert.equal(await view.refusal(STAKED), undefined)
    staked.clear()
    clock += 999
    assert.equal(await view.refusal(STAKED), undefined, 'fresh cache')
    clock += 1
    assert.notEqual(await view.refusal(STAKED), undefined, 'expired: read again')
  })

  it('bounds reads for a flood of unknown signers, never for known gateways, and bounds the cache', async () => {
    const f = fakeChain(new Set([STAKED]))
    const view = gatewayStake({ now, unknownPerSecond: 10, unknownBurst: 5, maxEntries: 100 })({ chain: f.chain, logger: silentLogger() })
    assert.equal(await view.refusal(STAKED), undefined)
    const flood = Array.from({ length: 1_000 }, (_, i) => `0x${i.toString(16).padStart(40, '0')}`)
    const answers = await Promise.all(flood.map(async a => await view.refusal(a)))
    assert.ok(answers.every(a => a !== undefined), 'every random signer refused')
    assert.equal(f.reads.length, 1 + 4, 'one read for the staked gateway, then the rest of the burst')
    assert.ok(answers.filter(a => a?.includes('too many unknown')).length >= 990)
    // the known gateway is still answered from the cache, without a token
    assert.equal(await view.refusal(STAKED), undefined)
    // tokens come back with time (10 a second), up to the burst of 5
    clock += 1_000
    await Promise.all(flood.slice(500, 600).map(async a => await view.refusal(a)))
    assert.equal(f.reads.length, 5 + 5)
    assert.ok(view.size <= 100)
  })

  it('fails closed when the chain cannot be read', async () => {
    const f = fakeChain(new Set([STAKED]))
    const view = gatewayStake({ now })({ chain: f.chain, logger: silentLogger() })
    f.fail(true)
    assert.match(await view.refusal(STAKED) ?? '', /could not read whether/)
    f.fail(false)
    assert.equal(await view.refusal(STAKED), undefined)
  })
})
