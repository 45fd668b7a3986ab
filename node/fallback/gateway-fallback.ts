/**
 * The gateway side of the chain fallback (ARCHITECTURE §6): store the input document in IPFS, call
 * `ExecutionCoordinator.requestExecution` paid by value from the gateway's key, wait for
 * `ExecutionFinalized` (latest blocks: this is latency, not money), fetch the output document by
 * its CID from the worker that revealed it, verify it against the finalized outputHash, and
 * answer. A request that can no longer produce a result (ExecutionCoordinator.outcome = 2: no
 * majority possible, no drawn worker left to reveal) is answered at once with the reason. The
 * gateway settles every request it made itself — in the background once every committed slot
 * revealed, at once when no result is possible, else at the deadline — so its fee comes back
 * without a third party.
 */
import type { PeerId } from '@libp2p/interface'
import { CID } from 'multiformats/cid'
import { parseEther, parseEventLogs, type Address, type Hex } from 'viem'
import { executionCoordinatorAbi } from '#contracts'
import { newJobId, type FunctionOptions, type FunctionRef, type WireError, type WireRequest, type WireResponse } from '#protocol'
import { NodeError } from '../errors.ts'
import type { Logger } from '../logger.ts'
import { revertName, type ChainClient } from '../chain/client.ts'
import { escrowCanPay } from '../escrow/escrow.ts'
import { decodeFallbackOutput, encodeFallbackInput } from './documents.ts'
import { openFallbackOutput, sealFallbackInput, type SealedScope } from './sealed.ts'
import type { SecretKeyPair } from '../secrets/sealed.ts'

/** Hardhat's and anvil's chain id: a local devnet that mines on demand and answers `evm_mine`. */
const LOCAL_CHAIN_ID = 31337

export const FALLBACK_DEFAULTS = {
  /**
   * Share of a request's deadline the mesh gets before the gateway asks the chain: half leaves the
   * mesh room for a retry while the chain still has time.
   */
  meshShare: 0.5,
  /** Most workers asked to run one request; the default is this or the staked workers known, whichever is smaller. */
  maxRedundancy: 3,
  /** Fee offered per request (wei): 0.001 of the native currency, split between agreeing workers. */
  fee: parseEther('0.001'),
  /**
   * Chain deadline of a request, seconds. The coordinator needs ≥ 20 s (commits until half-way);
   * 60 s leaves a 30 s commit phase, several Polygon blocks.
   */
  deadlineSec: 60,
  /**
   * Seconds added to the chain deadline for the request's own inclusion: the coordinator wants
   * `deadline ≥ block.timestamp + 20` in the block that includes it, which is later than the head we read.
   */
  inclusionSlackSec: 10,
  /** Time to fetch the output document once the result is final. */
  outputFetchTimeoutMs: 10_000,
  /** Largest output document fetched (a response body is bounded far below this). */
  maxOutputBytes: 2 * 1024 * 1024,
  /**
   * How far our clock may lead a live chain's latest block before we log it: a Polygon head is at
   * most a few 2-second blocks old.
   */
  maxClockLeadSec: 15,
  /** How often the gateway checks whether its request can be settled before the deadline. */
  settlePollMs: 1_000
} as const

/**
 * The client's error when the chain fallback gave no answer, naming the path that really failed:
 * `meshTried` is false when the client asked for the chain (`x-peerhost-mode: onchain`), so no
 * message claims the mesh failed when it was never asked.
 */
export function fallbackFailure (err: { code?: string, message?: string, details?: Record<string, unknown> } | undefined, meshTried: boolean): { code: 'DEADLINE_EXCEEDED' | 'WORKER_FAILED', message: string } {
  const before = meshTried ? 'the mesh gave no result and ' : 'the client asked for the chain (x-peerhost-mode: onchain) and '
  const refused = err?.code === 'CHAIN_REVERTED' ? err.details?.error as string | undefined : undefined
  if (err?.code === 'FALLBACK_DEADLINE') return { code: 'DEADLINE_EXCEEDED', message: `${before}the chain did not finalize a result before the request deadline` }
  if (err?.code === 'FALLBACK_NO_RESULT') return { code: 'WORKER_FAILED', message: `${before}${String(err.message)}` }
  if (err?.code === 'FALLBACK_NO_ESCROW') return { code: 'WORKER_FAILED', message: `${before}the chain fallback was not asked: ${String(err.message)}` }
  if (refused === 'CoordinatorUnknownFunction') return { code: 'WORKER_FAILED', message: `${before}the chain fallback cannot run this function: it is not registered in FunctionRegistry` }
  if (refused !== undefined) return { code: 'WORKER_FAILED', message: `${before}ExecutionCoordinator refused the fallback request (${refused})` }
  return { code: 'WORKER_FAILED', message: `${before}the chain fallback failed: ${err?.message ?? 'unknown error'}` }
}

/** Why a request can no longer give a result, from the coordinator's state (ExecutionCoordinator.outcome 2). */
export function noResultReason (r: { drawn: boolean, drawnSlots: number, commits: number, reveals: number, topVotes: number, deterministic: boolean, redundancy: number }): string {
  if (!r.drawn || r.drawnSlots === 0) return `no staked worker of the coordinator's draw pool was eligible for any of its ${r.redundancy} slots`
  if (r.commits === 0) return `none of the ${r.drawnSlots} drawn workers committed a result before the commit deadline`
  if (r.deterministic && r.reveals > 0) {
    return `the function is declared deterministic but the drawn workers disagree: ${r.reveals} of ${r.drawnSlots} revealed, at most ${r.topVotes} agreeing, and a majority needs ${Math.floor(r.drawnSlots / 2) + 1}`
  }
  return `none of the ${r.commits} workers that committed revealed a result (${r.drawnSlots} drawn)`
}

/** IPFS as the fallback needs it; node/storage's BlockStorage fits. */
export interface FallbackStorage {
  put: (cid: string, bytes: Uint8Array) => Promise<void>
  fetch: (cid: string, options?: { from?: PeerId, signal?: AbortSignal, timeoutMs?: number, maxBytes?: number }) => Promise<Uint8Array>
}

export interface ChainFallbackInit {
  /** @default FALLBACK_DEFAULTS.meshShare */
  meshShare?: number
  /** workers per request; @default min(FALLBACK_DEFAULTS.maxRedundancy, staked workers known), at least 1 */
  redundancy?: number
  /** wei; @default FALLBACK_DEFAULTS.fee */
  fee?: bigint
  /** @default FALLBACK_DEFAULTS.deadlineSec */
  deadlineSec?: number
  /**
   * Who pays the fee: `escrow` — the project's escrow in Settlement (the builder deposited and
   * allowed this gateway; refused otherwise), `balance` — the gateway's own balance, `auto` — the
   * escrow when it can pay, else the gateway. @default 'auto'
   */
  pay?: 'auto' | 'escrow' | 'balance'
}

export interface ChainFallbackComponents {
  /** with the gateway's account: it pays the fee */
  chain: ChainClient
  storage: FallbackStorage
  /** the gateway's peer id (written into the input document: where bundles are) */
  peerId: string
  /** staked workers the gateway knows (sets the default redundancy) */
  knownWorkers?: () => number
  /** the peer id of a worker address, from the view, to fetch its output document directly */
  workerPeer?: (address: Address) => PeerId | undefined
  /** makes sure the workers are connected, so they can fetch the input over bitswap */
  reach?: () => Promise<void>
  /**
   * The gateway's X25519 key pair (node/secrets `loadSecretKey`). With it every request is sealed
   * (sealed.ts): the input is posted, encrypted to the drawn workers, only after the draw, and the
   * output comes back encrypted to this key. Without it the input and output documents are public
   * (plaintext on IPFS) — kept for tests of the documents only.
   */
  sealKey?: SecretKeyPair
  logger: Logger
}

export interface FallbackJob {
  fn: FunctionRef
  options: FunctionOptions
  env: Record<string, string>
  /** the project's secrets: kept here and handed to workers that ask (secretsFor), never on IPFS */
  secrets?: Record<string, string>
  request: WireRequest
  inputHash: Hex
  jobId?: Hex
  signal?: AbortSignal
}

export interface FallbackResult {
  requestId: bigint
  response?: WireResponse
  error?: WireError
  outputHash: Hex
  outputCid: string
  inputCid: string
  requestTx: Hex
  requestBlock: bigint
  finalizedBlock: bigint
  redundancy: number
  /** where the fee came from */
  paidFrom: 'escrow' | 'gateway'
  /** the input and output travelled encrypted (sealed.ts) */
  sealed?: boolean
}

export interface ChainFallback {
  readonly meshShare: number
  /** Runs a job through the chain; throws NodeError FALLBACK_DEADLINE when nothing was finalized in time. */
  run: (job: FallbackJob) => Promise<FallbackResult>
  /** the secrets of a pending request, by its input document CID (for SECRETS_PROTOCOL) */
  secretsFor: (inputCid: string) => Record<string, string> | undefined
  stop: () => Promise<void>
}

/** Raw CID bytes, as the coordinator stores `inputCid` / `outputCid`. */
export function cidBytes (cid: string): Hex {
  return `0x${Buffer.from(CID.parse(cid).bytes).toString('hex')}`
}

export function cidFromBytes (bytes: Hex): string {
  return CID.decode(Buffer.from(bytes.slice(2), 'hex')).toString()
}

export function chainFallback (init: ChainFallbackInit = {}): (components: ChainFallbackComponents) => ChainFallback {
  return (components) => {
    const log = components.logger.child({ component: 'peerhost:fallback' })
    const { chain, storage } = components
    const pc = chain.publicClient
    const coordinator = chain.contracts.addresses.ExecutionCoordinator
    const meshShare = init.meshShare ?? FALLBACK_DEFAULTS.meshShare
    const fee = init.fee ?? FALLBACK_DEFAULTS.fee
    const deadlineSec = init.deadlineSec ?? FALLBACK_DEFAULTS.deadlineSec
    const timers = new Set<NodeJS.Timeout>()
    /** secrets of requests not finalized yet, by input CID */
    const pendingSecrets = new Map<string, Record<string, string>>()
    let stopped = false

    function redundancy (): number {
      if (init.redundancy !== undefined) return init.redundancy
      return Math.max(1, Math.min(FALLBACK_DEFAULTS.maxRedundancy, components.knownWorkers?.() ?? 1))
    }

    function sendSettle (requestId: bigint): void {
      chain.send({ address: coordinator, abi: executionCoordinatorAbi, functionName: 'settle', args: [requestId] })
        .then(() => log.debug({ requestId: requestId.toString() }, 'request settled'))
        .catch((err: Error) => log.info({ requestId: requestId.toString(), err: err.message }, 'settle not sent (someone else may have)'))
    }

    /**
     * Settles a request of ours without waiting for anyone else: at once when `now`, else as soon
     * as every committed slot revealed once no more can commit (checked every second), at the
     * latest just after the deadline.
     */
    function scheduleSettle (requestId: bigint, deadline: bigint, now: boolean): void {
      if (now) { sendSettle(requestId); return }
      const deadlineAt = Number(deadline) * 1000 + 2_000
      const tick = (): void => {
        const timer = setTimeout(() => {
          timers.delete(timer)
          if (stopped) return
          if (Date.now() >= deadlineAt) { sendSettle(requestId); return }
          pc.readContract({ address: coordinator, abi: executionCoordinatorAbi, functionName: 'getRequest', args: [requestId] })
            .then((r) => {
              const done = r.drawn && r.reveals === r.commits && (r.commits === r.drawnSlots || BigInt(Math.floor(Date.now() / 1000)) > r.commitDeadline)
              if (r.settled) return
              if (done) sendSettle(requestId)
              else tick()
            }, () => tick())
        }, Math.max(chain.pollingIntervalMs, FALLBACK_DEFAULTS.settlePollMs))
        timer.unref()
        timers.add(timer)
      }
      tick()
    }

    async function waitFinalized (requestId: bigint, fromBlock: bigint, deadline: bigint, signal?: AbortSignal): Promise<{ outputHash: Hex, outputCid: Hex, blockNumber: bigint, tx: Hex }> {
      // wall-clock budget: a chain that mines only on demand has no block to read the time from
      const until = Date.now() + (deadlineSec + FALLBACK_DEFAULTS.inclusionSlackSec) * 1000 + 1_000
      for (;;) {
        signal?.throwIfAborted()
        if (stopped) throw new NodeError('SHUTTING_DOWN', 'the gateway is shutting down')
        const logs = await pc.getContractEvents({ address: coordinator, abi: executionCoordinatorAbi, eventName: 'ExecutionFinalized', args: { requestId }, fromBlock, toBlock: 'latest' })
        const hit = logs[0] as undefined | { args: { outputHash: Hex, outputCid: Hex }, blockNumber: bigint, transactionHash: Hex }
        if (hit !== undefined) return { outputHash: hit.args.outputHash, outputCid: hit.args.outputCid, blockNumber: hit.blockNumber, tx: hit.transactionHash }
        // decided without a result: say why at once instead of waiting for the deadline
        const outcome = await pc.readContract({ address: coordinator, abi: executionCoordinatorAbi, functionName: 'outcome', args: [requestId] })
        if (outcome === 2) {
          const r = await pc.readContract({ address: coordinator, abi: executionCoordinatorAbi, functionName: 'getRequest', args: [requestId] })
          throw new NodeError('FALLBACK_NO_RESULT', `chain request ${requestId} cannot produce a result: ${noResultReason(r)}`, { details: { requestId: requestId.toString() } })
        }
        if (Date.now() > until) throw new NodeError('FALLBACK_DEADLINE', `chain request ${requestId} was not finalized by its deadline (${deadline})`)
        await new Promise(resolve => setTimeout(resolve, chain.pollingIntervalMs))
      }
    }

    /**
     * Our best estimate of the timestamp of the block that will include the request (the
     * coordinator checks the deadline against it). A local devnet (chain id 31337, Hardhat/anvil)
     * mines only on demand, so its latest block is as old as its last transaction (issue 14: every
     * request failed with CoordinatorInvalidDeadline after an idle minute), and its clock may be
     * shifted from ours (`evm_increaseTime`): there we mine a block (`evm_mine`, one cheap RPC) and
     * read its time, which is exact. A live chain makes blocks every few seconds and stamps them
     * with real time: max(latest block, our clock) is the estimate, and when our clock leads the
     * head by more than `maxClockLeadSec` something is off (a stalled RPC, a skewed clock), which
     * we log.
     */
    async function chainNow (): Promise<bigint> {
      if (chain.contracts.chainId === LOCAL_CHAIN_ID) {
        try {
          await pc.request({ method: 'evm_mine' as any, params: [] as any })
          return (await pc.getBlock({ blockTag: 'latest' })).timestamp
        } catch (err) {
          log.debug({ err: (err as Error).message }, 'evm_mine refused; using the latest block and our clock')
        }
      }
      const head = await pc.getBlock({ blockTag: 'latest' })
      const wall = BigInt(Math.floor(Date.now() / 1000))
      if (wall <= head.timestamp) return head.timestamp
      if (wall - head.timestamp > BigInt(FALLBACK_DEFAULTS.maxClockLeadSec)) {
        log.warn({ head: head.number.toString(), headTime: head.timestamp.toString(), clock: wall.toString() }, 'the latest block is older than expected; using our clock for the chain deadline')
      }
      return wall
    }

    /**
     * Step two of a sealed request: draw the slots (the seed is the request block's hash, readable
     * from the next block on), read each drawn worker's published key, seal the input to them, store
     * it and post its CID. A draw with no slots posts nothing (the request is undecidable and is
     * answered and refunded as such).
     */
    async function postSealedInput (scope: SealedScope, content: Parameters<typeof sealFallbackInput>[1], signal?: AbortSignal): Promise<void> {
      for (let tries = 0; ; tries++) {
        try {
          await chain.send({ address: coordinator, abi: executionCoordinatorAbi, functionName: 'draw', args: [scope.requestId] }, { signal })
          break
        } catch (err) {
          const name = revertName(err)
          if (name === 'CoordinatorSeedNotReady' && tries < 100) { await new Promise(resolve => setTimeout(resolve, chain.pollingIntervalMs)); continue }
          throw err
        }
      }
      const slots = await pc.readContract({ address: coordinator, abi: executionCoordinatorAbi, functionName: 'getSlots', args: [scope.requestId] })
      if (slots.length === 0) return
      const recipients = await Promise.all(slots.map(async (sl) => {
        const [, , key] = await pc.readContract({ address: coordinator, abi: executionCoordinatorAbi, functionName: 'poolMember', args: [sl.worker] })
        return { address: sl.worker, key: new Uint8Array(Buffer.from(key.slice(2), 'hex')) }
      }))
      const sealed = sealFallbackInput(scope, content, recipients)
      await storage.put(sealed.cid, sealed.bytes)
      await components.reach?.().catch(() => {})
      await chain.send({ address: coordinator, abi: executionCoordinatorAbi, functionName: 'postInput', args: [scope.requestId, cidBytes(sealed.cid)] }, { signal })
      log.debug({ requestId: scope.requestId.toString(), inputCid: sealed.cid, recipients: recipients.length }, 'sealed input posted')
    }

    return {
      meshShare,
      async run (job) {
        const started = performance.now()
        const r = redundancy()
        const pay = init.pay ?? 'auto'
        const gateway = chain.account?.address
        const fromEscrow = pay !== 'balance' && gateway !== undefined &&
          await escrowCanPay(chain, job.fn.wallet, job.fn.project, gateway, fee).catch((err: Error) => { log.warn({ err: err.message }, 'escrow not readable; the gateway pays'); return false })
        if (pay === 'escrow' && !fromEscrow) {
          throw new NodeError('FALLBACK_NO_ESCROW', `the escrow of ${job.fn.wallet}/${job.fn.project} cannot pay this gateway's fee of ${fee} wei now; its builder can run \`peerhost escrow deposit\` and \`peerhost escrow allow\``)
        }
        // the coordinator checks the deadline against the timestamp of the block that includes the request
        const deadline = await chainNow() + BigInt(deadlineSec + FALLBACK_DEFAULTS.inclusionSlackSec)
        const doc = encodeFallbackInput({
          jobId: job.jobId ?? newJobId(),
          fn: job.fn,
          options: job.options,
          env: job.env,
          request: job.request,
          deadline: Math.min(Date.now() + deadlineSec * 1000, Number(deadline) * 1000),
          gateway: components.peerId,
          ...(job.secrets !== undefined ? { secretNames: Object.keys(job.secrets).sort() } : {})
        })
        const sealKey = components.sealKey
        // sealed: the plaintext document never leaves this process; public: it goes to IPFS as is
        if (sealKey === undefined) {
          await storage.put(doc.cid, doc.bytes)
          if (job.secrets !== undefined) pendingSecrets.set(doc.cid, job.secrets)
        }
        let requestId: bigint
        try {
          await components.reach?.().catch(() => {})
          const receipt = await chain.send({
            address: coordinator,
            abi: executionCoordinatorAbi,
            functionName: 'requestExecution',
            args: [{ functionId: job.fn.id, inputHash: job.inputHash, inputCid: sealKey === undefined ? cidBytes(doc.cid) : '0x', redundancy: r, fee, deadline, fromEscrow }],
            value: fromEscrow ? 0n : fee
          }, { signal: job.signal })
          const requested = parseEventLogs({ abi: executionCoordinatorAbi, eventName: 'ExecutionRequested', logs: receipt.logs })[0] as unknown as { args: { requestId: bigint } } | undefined
          if (requested === undefined) throw new NodeError('FALLBACK_FAILED', 'requestExecution emitted no ExecutionRequested event')
          requestId = requested.args.requestId
          log.info({ requestId: requestId.toString(), functionId: job.fn.id, inputCid: doc.cid, redundancy: r, paidFrom: fromEscrow ? 'escrow' : 'gateway', block: receipt.blockNumber.toString() }, 'chain fallback requested')

          const scope: SealedScope = { chainId: chain.contracts.chainId, coordinator, requestId }
          let fin
          try {
            if (sealKey !== undefined) await postSealedInput(scope, { input: doc.bytes, gatewayKey: sealKey.publicKey, ...(job.secrets !== undefined ? { secrets: job.secrets } : {}) }, job.signal)
            fin = await waitFinalized(requestId, receipt.blockNumber, deadline, job.signal)
          } catch (err) {
            // nobody else has to: the gateway gets its fee back itself, at once when nothing can come
            scheduleSettle(requestId, deadline, (err as NodeError).code === 'FALLBACK_NO_RESULT')
            throw err
          }
          const outputCid = cidFromBytes(fin.outputCid)
          // the tx that finalized is the reveal of the worker holding that output document
          let from: PeerId | undefined
          try {
            const tx = await pc.getTransaction({ hash: fin.tx })
            from = components.workerPeer?.(tx.from)
          } catch {}
          const bytes = await storage.fetch(outputCid, { from, signal: job.signal, timeoutMs: FALLBACK_DEFAULTS.outputFetchTimeoutMs, maxBytes: FALLBACK_DEFAULTS.maxOutputBytes })
          const out = decodeFallbackOutput(sealKey === undefined ? bytes : openFallbackOutput(bytes, scope, gateway!, sealKey), fin.outputHash)
          scheduleSettle(requestId, deadline, false)
          log.info({ requestId: requestId.toString(), blocks: (fin.blockNumber - receipt.blockNumber).toString(), ms: Math.round(performance.now() - started) }, 'chain fallback answered')
          return {
            requestId,
            ...(sealKey !== undefined ? { sealed: true } : {}),
            response: out.response,
            error: out.error,
            outputHash: fin.outputHash,
            outputCid,
            inputCid: doc.cid,
            requestTx: receipt.transactionHash,
            requestBlock: receipt.blockNumber,
            finalizedBlock: fin.blockNumber,
            redundancy: r,
            paidFrom: fromEscrow ? 'escrow' : 'gateway'
          }
        } finally {
          pendingSecrets.delete(doc.cid)
        }
      },
      secretsFor: (inputCid) => pendingSecrets.get(inputCid),
      async stop () {
        stopped = true
        pendingSecrets.clear()
        for (const t of timers) clearTimeout(t)
        timers.clear()
      }
    }
  }
}
