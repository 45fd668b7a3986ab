/**
 * The worker side of the chain fallback: watches `ExecutionRequested` on latest blocks (latency),
 * fetches the input document by CID (and the bundle from the requesting gateway), checks it
 * against the chain (inputHash, functionId), runs it in the worker's executor, stores the output
 * document in its own IPFS, then commits `keccak256(abi.encode(requestId, worker, outputHash,
 * salt))` and reveals (outputHash, salt, output CID) as soon as the reveal phase opens (every drawn
 * slot committed, or the commit deadline passed). Slots are drawn on chain from the coordinator's
 * pool (the watcher joins it at start): a request this worker was not drawn for is skipped before
 * anything is fetched or run. When
 * the input names secrets, the worker asks the requesting gateway for them (SECRETS_PROTOCOL) and
 * does not take the request if the gateway refuses. The worker's `execute` applies the registry
 * check (node/worker/registry-check.ts) first: a request whose bundle is not the function's active
 * one in FunctionRegistry is never run nor committed to (it is logged at warn, and refunds at its
 * deadline unless others answer it).
 */
import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { randomBytes } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { bytesToHex, type Hex, type Log } from 'viem'
import { executionCoordinatorAbi, workerStakingAbi } from '#contracts'
import { PROTOCOL_VERSION, SECRETS_PROTOCOL } from '#protocol'
import type { ChainClient } from '../chain/client.ts'
import { revertName } from '../chain/client.ts'
import type { Logger } from '../logger.ts'
import { CHAIN_EVENTS } from '../constants.ts'
import { decodeFallbackInput, encodeFallbackOutput } from '../fallback/documents.ts'
import { openFallbackInput, sealFallbackOutput, type SealedScope } from '../fallback/sealed.ts'
import type { SecretKeyPair } from '../secrets/sealed.ts'
import { cidBytes, cidFromBytes, type FallbackStorage } from '../fallback/gateway-fallback.ts'
import { writeFileAtomic } from '../files.ts'
import { frames } from '../frames.ts'
import type { WorkerNode } from './worker.ts'

export const CHAIN_WATCHER_DEFAULTS = {
  /** Chain jobs run at once; mesh jobs keep the rest of the capacity. */
  maxConcurrent: 4,
  /** Time to fetch an input document. */
  inputFetchTimeoutMs: 10_000,
  /** Largest input document (a request body is bounded far below this). */
  maxInputBytes: 2 * 1024 * 1024
} as const

export interface ChainWatcherInit {
  /** @default CHAIN_WATCHER_DEFAULTS.maxConcurrent */
  maxConcurrent?: number
  /**
   * Where commitments waiting for their reveal are kept (`chain-commits.json`, mode 0600), so a
   * restarted worker still reveals (and is not penalised); none = memory only
   */
  stateDir?: string
}

export interface ChainWatcherComponents {
  /** with the worker's staked account */
  chain: ChainClient
  /** `libp2p` fetches secrets from gateways; without it requests naming secrets are not taken */
  worker: Pick<WorkerNode, 'execute' | 'address'> & Partial<Pick<WorkerNode, 'libp2p'>>
  storage: FallbackStorage
  /**
   * The worker's X25519 key pair (node/secrets `loadSecretKey`): published in the coordinator's
   * draw pool (`join(key)`), sealed inputs are encrypted to it. Without it the worker cannot join
   * the pool, so it is never drawn.
   */
  sealKey?: SecretKeyPair
  logger: Logger
}

export interface ChainWatcher {
  /** requests being worked on */
  readonly active: number
  start: () => Promise<void>
  stop: () => Promise<void>
}

interface PendingReveal {
  requestId: string
  outputHash: Hex
  salt: Hex
  outputCid: string
  commitDeadline: string
  deadline: string
}

interface Requested {
  requestId: bigint
  functionId: Hex
  inputHash: Hex
  inputCid: Hex
  requester: Hex
  redundancy: number
  commitDeadline: bigint
  deadline: bigint
}

export function chainWatcher (init: ChainWatcherInit = {}): (components: ChainWatcherComponents) => ChainWatcher {
  return (components) => {
    const log = components.logger.child({ component: 'peerhost:worker:chain' })
    const { chain, storage, worker } = components
    const pc = chain.publicClient
    const coordinator = chain.contracts.addresses.ExecutionCoordinator
    const maxConcurrent = init.maxConcurrent ?? CHAIN_WATCHER_DEFAULTS.maxConcurrent
    const seen = new Set<bigint>()
    const jobs = new Set<Promise<void>>()
    const controller = new AbortController()
    let unwatch: (() => void) | undefined

    async function slotsTaken (requestId: bigint): Promise<{ commits: number, drawnSlots: number, drawn: boolean, commitDeadline: bigint }> {
      return await pc.readContract({ address: coordinator, abi: executionCoordinatorAbi, functionName: 'getRequest', args: [requestId] }) as any
    }

    /**
     * Whether this worker holds a slot of the request. The draw needs the hash of the request's
     * block, readable from the next block on: ask the pending block (an idle automining chain has
     * no next block yet); a node that answers `CoordinatorSeedNotReady` anyway is asked again at
     * the next poll.
     */
    async function isDrawn (r: Requested): Promise<boolean> {
      for (;;) {
        controller.signal.throwIfAborted()
        try {
          const drawn = await pc.readContract({ address: coordinator, abi: executionCoordinatorAbi, functionName: 'drawnWorkers', args: [r.requestId], blockTag: 'pending' }) as readonly Hex[]
          return drawn.some(a => a.toLowerCase() === worker.address.toLowerCase())
        } catch (err) {
          if (revertName(err) !== 'CoordinatorSeedNotReady') throw err
          if (BigInt(Math.floor(Date.now() / 1000)) >= r.commitDeadline) return false
          await new Promise(resolve => setTimeout(resolve, chain.pollingIntervalMs))
        }
      }
    }

    /** Enters the coordinator's draw pool with its key (or refreshes weight and key there when they changed). */
    async function joinPool (): Promise<void> {
      const sealKey = components.sealKey
      if (sealKey === undefined) { log.warn('no encryption key: not joining the chain fallback draw pool'); return }
      const key = bytesToHex(sealKey.publicKey)
      const [weight, , published] = await pc.readContract({ address: coordinator, abi: executionCoordinatorAbi, functionName: 'poolMember', args: [worker.address] }) as readonly [bigint, bigint, Hex]
      const stake = await pc.readContract({ address: chain.contracts.addresses.WorkerStaking, abi: workerStakingAbi, functionName: 'stakeOf', args: [worker.address] }) as { amount: bigint }
      if (weight !== 0n && weight === stake.amount && published.toLowerCase() === key.toLowerCase()) return
      try {
        await chain.send({ address: coordinator, abi: executionCoordinatorAbi, functionName: 'join', args: [key] })
        log.info({ weight: stake.amount.toString() }, 'joined the chain fallback draw pool')
      } catch (err) {
        log.warn({ err: (err as Error).message, revert: revertName(err) }, 'could not join the chain fallback draw pool: this worker will not be drawn for chain requests')
      }
    }

    async function waitRevealPhase (r: Requested): Promise<void> {
      const signal = controller.signal
      for (;;) {
        signal.throwIfAborted()
        const [req, block] = await Promise.all([slotsTaken(r.requestId), pc.getBlock({ blockTag: 'latest' })])
        if ((req.drawn && req.commits >= req.drawnSlots) || block.timestamp >= r.commitDeadline) return
        if (block.timestamp >= r.deadline) throw new Error('deadline passed before the reveal phase')
        await new Promise(resolve => setTimeout(resolve, chain.pollingIntervalMs))
      }
    }

    // commitments not yet revealed, persisted before the commit is sent
    const statePath = init.stateDir === undefined ? undefined : join(init.stateDir, 'chain-commits.json')
    const pendingReveals = new Map<string, PendingReveal>()
    function saveState (): void {
      if (statePath === undefined) return
      try {
        writeFileAtomic(statePath, JSON.stringify([...pendingReveals.values()]))
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'pending reveals not saved')
      }
    }
    function loadState (): PendingReveal[] {
      if (statePath === undefined || !existsSync(statePath)) return []
      try {
        return (JSON.parse(readFileSync(statePath, 'utf8')) as PendingReveal[]).filter(p => typeof p?.requestId === 'string' && typeof p?.salt === 'string')
      } catch {
        return []
      }
    }

    async function reveal (r: Pick<Requested, 'requestId' | 'commitDeadline' | 'deadline'>, outputHash: Hex, salt: Hex, outputCid: string): Promise<void> {
      const signal = controller.signal
      await waitRevealPhase(r as Requested)
      for (let tries = 0; ; tries++) {
        try {
          await chain.send({ address: coordinator, abi: executionCoordinatorAbi, functionName: 'reveal', args: [r.requestId, outputHash, salt, cidBytes(outputCid)] }, { signal })
          break
        } catch (err) {
          // the phase check above read a block that may be one behind the next transaction's
          if (revertName(err) === 'CoordinatorNotRevealPhase' && tries < 20) { await new Promise(resolve => setTimeout(resolve, chain.pollingIntervalMs)); continue }
          throw err
        }
      }
      log.info({ requestId: r.requestId.toString(), outputCid }, 'revealed')
    }

    /** The secrets of a chain request from its gateway (SECRETS_PROTOCOL); undefined when refused or unreachable. */
    async function fetchSecrets (gateway: PeerId | undefined, inputCid: string, signal: AbortSignal): Promise<Record<string, string> | undefined> {
      if (gateway === undefined || worker.libp2p === undefined) return undefined
      try {
        const stream = await worker.libp2p.dialProtocol(gateway, SECRETS_PROTOCOL, { signal: AbortSignal.any([signal, AbortSignal.timeout(CHAIN_WATCHER_DEFAULTS.inputFetchTimeoutMs)]) })
        const f = frames(stream)
        await f.write({ v: PROTOCOL_VERSION, type: 'secrets-request', inputCid })
        const answer = await f.read('secrets', AbortSignal.any([signal, AbortSignal.timeout(CHAIN_WATCHER_DEFAULTS.inputFetchTimeoutMs)]))
        await stream.close().catch(() => {})
        if (answer.type === 'secrets' && answer.inputCid === inputCid) return answer.secrets
        log.warn({ inputCid, error: answer.type === 'error' ? answer.error.code : 'mismatch' }, 'the gateway refused the secrets of a chain request; not taking it')
      } catch (err) {
        log.warn({ inputCid, err: (err as Error).message }, 'could not fetch the secrets of a chain request; not taking it')
      }
      return undefined
    }

    /** The input CID of a sealed request, once its requester posted it (undefined at the commit deadline). */
    async function waitInput (r: Requested): Promise<Hex | undefined> {
      for (;;) {
        controller.signal.throwIfAborted()
        const cid = await pc.readContract({ address: coordinator, abi: executionCoordinatorAbi, functionName: 'inputCidOf', args: [r.requestId] }) as Hex
        if (cid !== '0x') return cid
        if (BigInt(Math.floor(Date.now() / 1000)) >= r.commitDeadline) return undefined
        await new Promise(resolve => setTimeout(resolve, chain.pollingIntervalMs))
      }
    }

    async function handle (r: Requested): Promise<void> {
      const id = r.requestId.toString()
      const signal = controller.signal
      const nowSec = BigInt(Math.floor(Date.now() / 1000))
      if (nowSec >= r.commitDeadline) return
      if (!await isDrawn(r)) { log.debug({ requestId: id }, 'not drawn for this chain request; skipped'); return }

      // a sealed request (no input CID in the event) gets its input once the slots are drawn
      const sealed = r.inputCid === '0x'
      const inputCidHex = sealed ? await waitInput(r) : r.inputCid
      if (inputCidHex === undefined) { log.info({ requestId: id }, 'the requester posted no input before the commit deadline'); return }
      const inputCid = cidFromBytes(inputCidHex)
      const scope: SealedScope = { chainId: chain.contracts.chainId, coordinator, requestId: r.requestId }
      let bytes = await storage.fetch(inputCid, { signal, timeoutMs: CHAIN_WATCHER_DEFAULTS.inputFetchTimeoutMs, maxBytes: CHAIN_WATCHER_DEFAULTS.maxInputBytes })
      let sealedContent
      if (sealed) {
        if (components.sealKey === undefined) return
        sealedContent = openFallbackInput(bytes, scope, worker.address, components.sealKey)
        bytes = sealedContent.input
      }
      const input = decodeFallbackInput(bytes, { inputHash: r.inputHash, functionId: r.functionId })
      let from
      try { from = peerIdFromString(input.gateway) } catch {}
      const deadline = Math.min(input.deadline, Number(r.commitDeadline) * 1000)
      // sealed: the secrets came inside, encrypted to this drawn worker only; public (legacy): ask the gateway
      const secrets = sealed
        ? sealedContent?.secrets
        : input.secretNames === undefined ? undefined : await fetchSecrets(from, inputCid, signal)
      if (!sealed && input.secretNames !== undefined && secrets === undefined) return
      const result = await worker.execute({ jobId: input.jobId, fn: input.fn, options: input.options, env: input.env, secrets, request: input.request, deadline }, { from, signal })
      const plainOut = encodeFallbackOutput(result)
      const out = sealedContent === undefined ? plainOut : sealFallbackOutput(scope, r.requester, sealedContent.gatewayKey, plainOut.bytes)
      await storage.put(out.cid, out.bytes)

      const salt = bytesToHex(randomBytes(32))
      const commitment = await pc.readContract({ address: coordinator, abi: executionCoordinatorAbi, functionName: 'commitmentOf', args: [r.requestId, worker.address, result.outputHash, salt] }) as Hex
      pendingReveals.set(id, { requestId: id, outputHash: result.outputHash, salt, outputCid: out.cid, commitDeadline: r.commitDeadline.toString(), deadline: r.deadline.toString() })
      saveState()
      try {
        try {
          await chain.send({ address: coordinator, abi: executionCoordinatorAbi, functionName: 'commit', args: [r.requestId, commitment] }, { signal })
        } catch (err) {
          const name = revertName(err)
          if (name === 'CoordinatorNotDrawn' || name === 'CoordinatorCommitPhaseOver') { log.info({ requestId: id, name }, 'commit not taken'); return }
          throw err
        }
        log.info({ requestId: id, outputHash: result.outputHash }, 'committed')
        await reveal(r, result.outputHash, salt, out.cid)
      } finally {
        // kept when stopping mid-way, so the next start reveals it
        if (!controller.signal.aborted) { pendingReveals.delete(id); saveState() }
      }
    }

    async function resume (p: PendingReveal): Promise<void> {
      const requestId = BigInt(p.requestId)
      const slots = await pc.readContract({ address: coordinator, abi: executionCoordinatorAbi, functionName: 'getSlots', args: [requestId] }) as unknown as Array<{ worker: string, revealed: boolean }>
      const mine = slots.find(s => s.worker.toLowerCase() === worker.address.toLowerCase())
      if (mine === undefined || mine.revealed || BigInt(Math.floor(Date.now() / 1000)) >= BigInt(p.deadline)) return
      log.info({ requestId: p.requestId }, 'revealing a commitment made before the restart')
      await reveal({ requestId, commitDeadline: BigInt(p.commitDeadline), deadline: BigInt(p.deadline) }, p.outputHash, p.salt, p.outputCid)
    }

    function onRequested (logs: Log[]): void {
      for (const l of logs as Array<Log & { args: Requested }>) {
        const r = l.args
        if (r?.requestId === undefined || seen.has(r.requestId)) continue
        seen.add(r.requestId)
        if (seen.size > 100_000) seen.clear()
        if (jobs.size >= maxConcurrent) { log.info({ requestId: r.requestId.toString() }, 'chain job skipped: at capacity'); continue }
        const p = handle(r).catch((err: Error) => {
          if (!controller.signal.aborted) log.warn({ requestId: r.requestId.toString(), err: err.message }, 'chain job failed')
        })
        jobs.add(p)
        void p.finally(() => jobs.delete(p))
      }
    }

    return {
      get active () { return jobs.size },
      async start () {
        if (unwatch !== undefined) return
        await joinPool().catch((err: Error) => log.warn({ err: err.message }, 'draw pool not readable'))
        unwatch = pc.watchContractEvent({
          pollingInterval: CHAIN_EVENTS.pollMs,
          address: coordinator,
          abi: executionCoordinatorAbi,
          eventName: 'ExecutionRequested',
          onLogs: onRequested,
          onError (err) { log.debug({ err: err.message }, 'ExecutionRequested watch error') }
        })
        for (const p of loadState()) {
          pendingReveals.set(p.requestId, p)
          seen.add(BigInt(p.requestId))
          const job = resume(p).catch((err: Error) => log.warn({ requestId: p.requestId, err: err.message }, 'pending reveal failed'))
            .finally(() => { if (!controller.signal.aborted) { pendingReveals.delete(p.requestId); saveState() } })
          jobs.add(job)
          void job.finally(() => jobs.delete(job))
        }
        log.info({ coordinator, address: worker.address }, 'watching the chain for fallback requests')
      },
      async stop () {
        unwatch?.()
        unwatch = undefined
        controller.abort()
        await Promise.allSettled([...jobs])
      }
    }
  }
}
