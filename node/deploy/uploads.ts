/**
 * Who may park blocks on a gateway, and for how long.
 *
 * **Signature.** Each `POST /_peerhost/blocks/<cid>` carries
 * `x-peerhost-upload: <wallet>.<issuedAt>.<signature>`: the builder's address (0x, 40 hex),
 * the signing time in Unix seconds, and an EIP-191 `personal_sign` (viem `account.signMessage`,
 * 0x + 130 hex) by that wallet over {@link uploadMessage}:
 *
 * ```text
 * PeerHost block upload
 * gateway: <the gateway's address, checksummed>
 * cid: <the block's CID>
 * issued at: <issuedAt>
 * ```
 *
 * Naming the gateway (its signer address, from `GET /_peerhost/uploads`) and the CID means a
 * captured header cannot be replayed to another gateway or for another block; `issuedAt` must be
 * within {@link STORAGE_LIMITS.uploadClockSkewSec} of the gateway's clock, so it cannot be
 * replayed later either. Replaying it for the same block at the same gateway within that window
 * only re-sends bytes the wallet already vouched for.
 *
 * **Lease and quota.** An uploaded block is pinned on a lease (`leaseMs`, 1 h by default). When a
 * version registered in FunctionRegistry references it (the registry table's `retains`), it stops
 * being an upload: the table keeps it as long as that version is retained. A block still
 * unreferenced when its lease ends is unpinned and deleted. The bytes of a wallet's unreferenced
 * uploads count against its quota (`quotaBytes`, 64 MiB); above it the gateway answers 429.
 * Leases survive a restart (`file`, `<dataDir>/uploads.json`, written atomically).
 */
import { readFileSync } from 'node:fs'
import { writeFileAtomicAsync } from '../files.ts'
import { getAddress, recoverMessageAddress, type Account, type Address, type Hex } from 'viem'
import type { Logger } from '../logger.ts'
import type { BlockStorage } from '../storage/storage.ts'
import { STORAGE_LIMITS } from '../storage/limits.ts'

/** The request header an upload is signed in. */
export const UPLOAD_HEADER = 'x-peerhost-upload'

/** What the header value looks like, for error messages. */
export const UPLOAD_HEADER_FORMAT = `${UPLOAD_HEADER}: <wallet 0x…>.<issuedAt unix seconds>.<EIP-191 signature 0x…>`

const HEADER = /^(0x[0-9a-fA-F]{40})\.(\d{1,12})\.(0x[0-9a-fA-F]{130})$/

/** The text a builder signs to upload `cid` to `gateway` (see the module comment). */
export function uploadMessage (gateway: Address, cid: string, issuedAt: number): string {
  return `PeerHost block upload\ngateway: ${getAddress(gateway)}\ncid: ${cid}\nissued at: ${issuedAt}`
}

/** The `x-peerhost-upload` header value for uploading `cid` to `gateway`, signed by `account`. */
export async function signUpload (account: Pick<Account, 'address'> & { signMessage?: Account['signMessage'] }, gateway: Address, cid: string, issuedAt = Math.floor(Date.now() / 1000)): Promise<string> {
  if (account.signMessage === undefined) throw new TypeError('the account cannot sign messages')
  const signature = await account.signMessage({ message: uploadMessage(gateway, cid, issuedAt) })
  return `${account.address}.${issuedAt}.${signature}`
}

export interface BlockUploadsInit {
  /** @default STORAGE_LIMITS.uploadQuotaBytes */
  quotaBytes?: number
  /** unreferenced upload bytes of all wallets together; @default STORAGE_LIMITS.uploadGlobalQuotaBytes */
  globalQuotaBytes?: number
  /** @default STORAGE_LIMITS.uploadLeaseMs */
  leaseMs?: number
  /** @default STORAGE_LIMITS.uploadClockSkewSec */
  clockSkewSec?: number
  /** how often expired leases are swept; @default min(leaseMs / 4, 60 s) */
  sweepIntervalMs?: number
  /** where leases are kept across restarts (`<dataDir>/uploads.json`); memory only when absent */
  file?: string
}

export interface BlockUploadsComponents {
  /** the gateway's signer address: uploads are signed for it */
  gateway: Address
  storage: Pick<BlockStorage, 'put' | 'has' | 'remove'>
  /** true when a registered, retained version references the block (registry table); none without a chain */
  retains?: (cid: string) => boolean
  logger: Logger
}

export type UploadCheck = { ok: true, wallet: Address } | { ok: false, message: string }

export type UploadOutcome = 'stored' | 'present' | 'over-quota' | 'over-global-quota'

export interface BlockUploads {
  readonly gateway: Address
  readonly quotaBytes: number
  readonly globalQuotaBytes: number
  readonly leaseMs: number
  /** Checks the header for `cid` (see the module comment); never throws. */
  authenticate: (header: string | undefined, cid: string, nowSec?: number) => Promise<UploadCheck>
  /**
   * Stores the verified block for `wallet` on a lease, unless it would take the wallet over its
   * quota (`over-quota`, nothing stored) or the gateway already holds it for another reason
   * (`present`). Storage errors (BAD_CID, BLOCK_MISMATCH, BLOCK_TOO_LARGE) propagate.
   */
  store: (wallet: Address, cid: string, bytes: Uint8Array) => Promise<UploadOutcome>
  /** bytes of `wallet`'s uploads no retained version references */
  used: (wallet: Address) => number
  /** bytes of every wallet's uploads no retained version references */
  usedTotal: () => number
  /** seconds until the soonest lease ends (when space may free up) */
  nextExpirySec: () => number
  /** Deletes the blocks whose lease ended unreferenced; forgets the ones now referenced. */
  sweep: () => Promise<void>
  start: () => Promise<void>
  stop: () => Promise<void>
}

interface Lease { wallet: Address, bytes: number, expires: number }

export function blockUploads (init: BlockUploadsInit = {}): (components: BlockUploadsComponents) => BlockUploads {
  return (components) => {
    const log = components.logger.child({ component: 'peerhost:uploads' })
    const quotaBytes = init.quotaBytes ?? STORAGE_LIMITS.uploadQuotaBytes
    const globalQuotaBytes = init.globalQuotaBytes ?? STORAGE_LIMITS.uploadGlobalQuotaBytes
    const leaseMs = init.leaseMs ?? STORAGE_LIMITS.uploadLeaseMs
    const skew = init.clockSkewSec ?? STORAGE_LIMITS.uploadClockSkewSec
    const sweepMs = init.sweepIntervalMs ?? Math.max(50, Math.min(leaseMs / 4, 60_000))
    const retains = components.retains ?? (() => false)
    const gateway = getAddress(components.gateway)
    const leases = new Map<string, Lease>()
    let timer: NodeJS.Timeout | undefined
    let sweeping: Promise<void> = Promise.resolve()
    let saving: Promise<void> = Promise.resolve()

    function save (): void {
      const file = init.file
      if (file === undefined) return
      const json = JSON.stringify({ v: 1, leases: [...leases].map(([cid, l]) => ({ cid, ...l })) }) + '\n'
      saving = saving.then(async () => {
        await writeFileAtomicAsync(file, json)
      }).catch((err: any) => { log.warn({ file, err: err?.message }, 'cannot write the upload leases') })
    }

    function load (): void {
      const file = init.file
      if (file === undefined) return
      let text: string
      try {
        text = readFileSync(file, 'utf8')
      } catch (err: any) {
        if (err?.code !== 'ENOENT') log.warn({ file, err: err?.message }, 'cannot read the upload leases')
        return
      }
      try {
        const raw = JSON.parse(text)
        for (const l of raw.leases) {
          if (typeof l?.cid !== 'string' || typeof l.wallet !== 'string' || !Number.isSafeInteger(l.bytes) || !Number.isSafeInteger(l.expires)) throw new Error('a malformed lease')
          leases.set(l.cid, { wallet: getAddress(l.wallet), bytes: l.bytes, expires: l.expires })
        }
      } catch (err: any) {
        // the blocks stay pinned (never deleted by mistake); only their leases are forgotten
        log.warn({ file, err: err?.message }, 'the upload leases file is corrupt; ignored')
      }
    }

    function used (wallet: Address): number {
      let total = 0
      for (const [cid, l] of leases) if (l.wallet === wallet && !retains(cid)) total += l.bytes
      return total
    }

    function usedTotal (): number {
      let total = 0
      for (const [cid, l] of leases) if (!retains(cid)) total += l.bytes
      return total
    }

    async function sweepOnce (): Promise<void> {
      const now = Date.now()
      let changed = false
      for (const [cid, l] of [...leases]) {
        if (retains(cid)) {
          leases.delete(cid)
          changed = true
        } else if (l.expires <= now) {
          try {
            await components.storage.remove(cid)
            leases.delete(cid)
            changed = true
            log.info({ cid, wallet: l.wallet, bytes: l.bytes }, 'upload lease ended unreferenced: block deleted')
          } catch (err: any) {
            log.warn({ cid, err: err?.message }, 'cannot delete an expired upload; retrying')
          }
        }
      }
      if (changed) save()
    }

    function sweep (): Promise<void> {
      sweeping = sweeping.then(sweepOnce).catch((err: any) => { log.warn({ err: err?.message }, 'upload sweep failed') })
      return sweeping
    }

    function loop (): void {
      void sweep().finally(() => { if (timer !== undefined) timer = setTimeout(loop, sweepMs) })
    }

    return {
      gateway,
      quotaBytes,
      globalQuotaBytes,
      leaseMs,
      async authenticate (header, cid, nowSec = Math.floor(Date.now() / 1000)) {
        if (header === undefined || header === '') return { ok: false, message: `uploads must be signed: send ${UPLOAD_HEADER_FORMAT}` }
        const m = HEADER.exec(header.trim())
        if (m === null) return { ok: false, message: `malformed ${UPLOAD_HEADER} header; expected ${UPLOAD_HEADER_FORMAT}` }
        const [, wallet, issued, signature] = m
        const issuedAt = Number(issued)
        if (Math.abs(nowSec - issuedAt) > skew) return { ok: false, message: `${UPLOAD_HEADER} was issued at ${issuedAt}, more than ${skew} s from the gateway's clock (${nowSec}); sign it again (and check the clock)` }
        let signer: Address
        try {
          signer = await recoverMessageAddress({ message: uploadMessage(gateway, cid, issuedAt), signature: signature as Hex })
        } catch {
          return { ok: false, message: `the ${UPLOAD_HEADER} signature does not parse; expected an EIP-191 personal_sign signature (0x + 130 hex)` }
        }
        if (signer !== getAddress(wallet)) return { ok: false, message: `the ${UPLOAD_HEADER} signature is not ${getAddress(wallet)}'s over this block (${cid}) for this gateway (${gateway})` }
        return { ok: true, wallet: signer }
      },
      async store (wallet, cid, bytes) {
        const held = leases.get(cid)
        if (held === undefined && retains(cid)) {
          // a registered version references it: the registry table keeps it, no lease
          await components.storage.put(cid, bytes)
          return 'stored'
        }
        // held for another reason (a --project bundle, a fallback input) or on another wallet's
        // lease: an upload never takes over a block the gateway keeps anyway
        if (held === undefined && await components.storage.has(cid).catch(() => false)) return 'present'
        if (held !== undefined && held.wallet !== wallet) return 'present'
        if (held === undefined && used(wallet) + bytes.byteLength > quotaBytes) return 'over-quota'
        // wallets are free: the per-wallet quota alone would let many fresh wallets fill the disk
        if (held === undefined && usedTotal() + bytes.byteLength > globalQuotaBytes) return 'over-global-quota'
        // reserve before the write, so concurrent uploads cannot both fit under the quota
        const lease: Lease = { wallet, bytes: bytes.byteLength, expires: Date.now() + leaseMs }
        leases.set(cid, lease)
        try {
          await components.storage.put(cid, bytes)
        } catch (err) {
          if (held === undefined) leases.delete(cid)
          else leases.set(cid, held)
          throw err
        }
        save()
        return 'stored'
      },
      used,
      usedTotal,
      nextExpirySec () {
        let soonest = Infinity
        for (const l of leases.values()) soonest = Math.min(soonest, l.expires)
        return soonest === Infinity ? 1 : Math.max(1, Math.ceil((soonest - Date.now()) / 1000))
      },
      sweep,
      async start () {
        if (timer !== undefined) return
        load()
        timer = setTimeout(loop, 0)
      },
      async stop () {
        clearTimeout(timer)
        timer = undefined
        await sweeping
        await saving
      }
    }
  }
}
