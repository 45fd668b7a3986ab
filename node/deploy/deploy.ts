/**
 * `peerhost deploy`: source → bundles + manifest → pre-flight on the chain → upload to a gateway
 * → FunctionRegistry.deploy → live. Each step reports through `onStep`; the on-chain write is the
 * last thing that can change state, so nothing is registered when an earlier step fails.
 */
import { rm } from 'node:fs/promises'
import { resolve } from 'node:path'
import { getAddress, isAddress, parseEventLogs, type Account, type Address, type Hex } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { functionRegistryAbi } from '#contracts'
import { ConfigError, NodeError } from '../errors.ts'
import { chainError, cidToBytes, registryPublicClient, registryWalletClient, type ChainConfig } from '../registry/chain.ts'
import { buildDeployment, type Deployment } from './build.ts'
import type { Manifest } from './manifest.ts'
import { cloneRepo, isGitUrl, sourceCommit } from './git.ts'
import { signUpload, UPLOAD_HEADER } from './uploads.ts'

export type DeployStepId = 'source' | 'build' | 'preflight' | 'upload' | 'register' | 'live'

export interface DeployStepEvent {
  step: DeployStepId
  status: 'start' | 'done' | 'failed' | 'skipped'
  title: string
  detail?: string
  ms?: number
}

export interface DeployInit {
  /** a project folder or a git URL (https, ssh, file://) */
  source: string
  project?: string
  env?: Record<string, string>
  /** gateway base URL the blocks are uploaded to */
  gateway: string
  contracts: ChainConfig
  /** the builder's wallet: an account or a raw private key */
  account: Account | Hex
  /** wait until the gateway serves the new version; @default true */
  waitLive?: boolean
  /** @default 15000 */
  liveTimeoutMs?: number
  onStep?: (event: DeployStepEvent) => void
  signal?: AbortSignal
}

export interface DeployResult {
  project: string
  owner: `0x${string}`
  version: number
  manifestCid: string
  sourceCommit: Hex
  txHash: Hex
  functions: Array<{ name: string, bundleCid: string, bytes: number, url: string }>
  /** ms from start until the gateway served the version (undefined without waitLive) */
  liveMs?: number
  /** ms per step */
  timings: Partial<Record<DeployStepId, number>>
}

const TITLES: Record<DeployStepId, string> = {
  source: 'Fetch the source',
  build: 'Bundle the functions',
  preflight: 'Check the registry',
  upload: 'Upload bundles and manifest to the gateway',
  register: 'Register the version in FunctionRegistry',
  live: 'Wait until the gateway serves it'
}

/**
 * `FunctionRegistry.deploy`'s `deterministicMask`: bit i set ⇔ `names[i]` declares
 * `"deterministic": true`. Anything else (absent, false, a manifest written before the field
 * existed) counts as non-deterministic, the safe side: such a function can never be the subject of
 * a disagreement proof, so an honest worker running `Math.random` cannot be slashed for it.
 */
export function deterministicMask (manifest: Manifest, names: readonly string[]): bigint {
  let mask = 0n
  names.forEach((name, i) => {
    const fn = manifest.functions[name] as { deterministic?: unknown } | undefined
    if (fn?.deterministic === true) mask |= 1n << BigInt(i)
  })
  return mask
}

export async function deployProject (init: DeployInit): Promise<DeployResult> {
  const started = performance.now()
  const account = typeof init.account === 'string' ? privateKeyToAccount(init.account) : init.account
  const gateway = init.gateway.replace(/\/+$/, '')
  const timings: DeployResult['timings'] = {}
  let tmp: string | undefined

  async function step<T> (id: DeployStepId, fn: () => Promise<T>, detail?: (value: T) => string): Promise<T> {
    init.signal?.throwIfAborted()
    const t = performance.now()
    init.onStep?.({ step: id, status: 'start', title: TITLES[id] })
    try {
      const value = await fn()
      timings[id] = Math.round(performance.now() - t)
      init.onStep?.({ step: id, status: 'done', title: TITLES[id], detail: detail?.(value), ms: timings[id] })
      return value
    } catch (err: any) {
      init.onStep?.({ step: id, status: 'failed', title: TITLES[id], detail: err?.message, ms: Math.round(performance.now() - t) })
      throw err
    }
  }

  try {
    const dir = await step('source', async () => {
      if (!isGitUrl(init.source)) return resolve(init.source)
      const cloned = await cloneRepo(init.source, { signal: init.signal })
      tmp = cloned.tmp
      return cloned.dir
    }, d => isGitUrl(init.source) ? `cloned ${init.source}` : d)
    const commit = await sourceCommit(dir)

    const built: Deployment = await step('build', async () => await buildDeployment({ dir, project: init.project, env: init.env, sourceCommit: commit }),
      b => `${b.bundles.length} function${b.bundles.length === 1 ? '' : 's'} (${b.bundles.map(f => f.name).join(', ')}), manifest ${b.manifestCid}`)

    const client = registryPublicClient(init.contracts)
    const names = built.bundles.map(b => b.name)
    const args = [account.address, built.project, cidToBytes(built.manifestCid), commit, names, deterministicMask(built.manifest, names)] as const
    const request = await step('preflight', async () => {
      try {
        const chainId = await client.getChainId()
        if (chainId !== init.contracts.chainId) throw new ConfigError('WRONG_CHAIN', `the RPC at ${init.contracts.rpcUrl} is chain ${chainId}, the contracts file says ${init.contracts.chainId}`)
        const sim = await client.simulateContract({ account, address: init.contracts.addresses.FunctionRegistry, abi: functionRegistryAbi, functionName: 'deploy', args })
        return sim.request
      } catch (err) {
        throw chainError(err, 'deploy')
      }
    }, () => `${account.address} may deploy ${built.project}`)

    await step('upload', async () => {
      const identity = await gatewayIdentity(gateway, init.signal)
      for (const block of [...built.bundles, { cid: built.manifestCid, bytes: built.manifestBytes }]) {
        await uploadBlock(gateway, block.cid, block.bytes, await signUpload(account, identity, block.cid), init.signal)
      }
    }, () => `${built.bundles.length + 1} blocks to ${gateway}`)

    const { txHash, version } = await step('register', async () => {
      try {
        const wallet = registryWalletClient(init.contracts, account)
        const txHash = await wallet.writeContract(request as any)
        const receipt = await client.waitForTransactionReceipt({ hash: txHash, pollingInterval: 100 })
        if (receipt.status !== 'success') throw new NodeError('TX_REVERTED', `the deploy transaction ${txHash} reverted`)
        const logs = parseEventLogs({ abi: functionRegistryAbi, logs: receipt.logs, eventName: 'VersionDeployed' })
        const version = Number((logs[0]?.args as { version?: number } | undefined)?.version ?? 0)
        return { txHash, version }
      } catch (err) {
        throw chainError(err, 'deploy')
      }
    }, r => `version ${r.version} (tx ${r.txHash})`)

    const base = `${gateway}/${account.address}/${built.project}`
    let liveMs: number | undefined
    if (init.waitLive !== false) {
      await step('live', async () => {
        await waitLive(gateway, account.address, built.project, built.manifestCid, init.liveTimeoutMs ?? 15_000, init.signal)
        liveMs = Math.round(performance.now() - started)
      }, () => `live after ${liveMs} ms`)
    }
    return {
      project: built.project,
      owner: account.address,
      version,
      manifestCid: built.manifestCid,
      sourceCommit: commit,
      txHash,
      functions: built.bundles.map(b => ({ name: b.name, bundleCid: b.cid, bytes: b.bytes.byteLength, url: `${base}/${b.name}` })),
      liveMs,
      timings
    }
  } finally {
    if (tmp !== undefined) await rm(tmp, { recursive: true, force: true }).catch(() => {})
  }
}

function timeout (signal?: AbortSignal): AbortSignal {
  return signal === undefined ? AbortSignal.timeout(30_000) : AbortSignal.any([signal, AbortSignal.timeout(30_000)])
}

function unreachable (gateway: string, err: any): NodeError {
  return new NodeError('GATEWAY_UNREACHABLE', `the gateway at ${gateway} did not answer (${err?.cause?.code ?? err?.message}); is it running? (--gateway)`, { cause: err })
}

/** The address the gateway's uploads are signed for (`GET /_peerhost/uploads`). */
async function gatewayIdentity (gateway: string, signal?: AbortSignal): Promise<Address> {
  let res: Response
  try {
    res = await fetch(`${gateway}/_peerhost/uploads`, { signal: timeout(signal) })
  } catch (err: any) {
    throw unreachable(gateway, err)
  }
  const body = res.ok ? await res.json().catch(() => undefined) as { gateway?: string } | undefined : undefined
  if (typeof body?.gateway !== 'string' || !isAddress(body.gateway)) throw new NodeError('GATEWAY_NO_UPLOADS', `the gateway at ${gateway} does not accept uploads (start it with --contracts)`)
  return getAddress(body.gateway)
}

async function uploadBlock (gateway: string, cid: string, bytes: Uint8Array, authorization: string, signal?: AbortSignal): Promise<void> {
  let res: Response
  try {
    res = await fetch(`${gateway}/_peerhost/blocks/${cid}`, {
      method: 'POST',
      body: bytes,
      headers: { 'content-type': 'application/octet-stream', [UPLOAD_HEADER]: authorization },
      signal: timeout(signal)
    })
  } catch (err: any) {
    throw unreachable(gateway, err)
  }
  if (!res.ok) {
    const body = await res.json().catch(() => undefined) as { error?: { code?: string, message?: string } } | undefined
    if (res.status === 404) throw new NodeError('GATEWAY_NO_UPLOADS', `the gateway at ${gateway} does not accept uploads (start it with --contracts)`)
    if (res.status === 429) throw new NodeError('UPLOAD_QUOTA_EXCEEDED', `the gateway refused block ${cid}: ${body?.error?.message ?? 'upload quota exceeded'}`)
    throw new NodeError('UPLOAD_FAILED', `the gateway refused block ${cid}: ${body?.error?.message ?? `HTTP ${res.status}`}`)
  }
}

async function waitLive (gateway: string, owner: string, project: string, manifestCid: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  const until = Date.now() + timeoutMs
  for (;;) {
    signal?.throwIfAborted()
    try {
      const res = await fetch(`${gateway}/_peerhost/projects/${owner}/${project}`)
      if (res.ok) {
        const body = await res.json() as { manifestCid?: string, live?: boolean }
        if (body.manifestCid === manifestCid && body.live === true) return
      }
    } catch {}
    if (Date.now() > until) throw new NodeError('NOT_LIVE', `the version is registered, but ${gateway} did not serve it within ${timeoutMs} ms (is the gateway following this chain?)`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}
