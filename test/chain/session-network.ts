/**
 * The network both session-settlement chain specs build: a gateway that checks the batches naming
 * it (its ticket log and batch checker; Settlement's epoch is the chain head the test moves) and
 * two staked workers selling WebSocket sessions, one session each (so two sessions land on two
 * workers), each with its settler: a liar whose batches are built through `lie`, and an honest one.
 */
import { join, resolve } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { Registry } from 'prom-client'
import { devExecutor } from '#sandbox'
import { createBootstrap } from '#bootstrap'
import {
  addProject, batchChecker, createGateway, createWorker, functionTable, receiptLog, settler, ticketLog,
  type GatewayNode, type Logger, type ReceiptLog, type Settler, type WorkerComponents, type WorkerNode
} from '#node'
import type { PeerHostDomain } from '#protocol'
import type { SettlementBatch, SettlementItem } from '../../contracts/abi/leaf.ts'
import { waitFor } from '../helpers/network.ts'
import type { SettlementChain } from './helpers.ts'
import { stakeWorker, party, type Party } from './settlement-helpers.ts'

export interface SessionWorker { w: Party, receipts: ReceiptLog, worker: WorkerNode, s: Settler }

export interface SessionNetwork {
  gateway: GatewayNode
  tickets: ReturnType<typeof ticketLog>
  checker: ReturnType<ReturnType<typeof batchChecker>>
  liar: SessionWorker
  honest: SessionWorker
  /** ws:// URL of the test/fixtures/websocket echo */
  wsUrl: string
}

export async function sessionNetwork (chain: SettlementChain, opts: {
  dir: string
  gw: Party
  domain: PeerHostDomain
  /** the chain head the test set (seconds): Settlement's epoch for the gateway */
  head: () => bigint
  price: bigint
  perMessage: bigint
  lie: (items: SettlementItem[]) => SettlementBatch
  closers: Array<() => Promise<void> | void>
  logger: Logger
  /** extra worker parts (e.g. its Settlement clock) */
  workerParts?: () => Partial<WorkerComponents>
}): Promise<SessionNetwork> {
  const { dir, gw, domain, closers, logger } = opts
  const boot = await createBootstrap({}, { privateKey: await generateKeyPair('Ed25519'), logger, registry: new Registry() })
  await boot.start()
  closers.push(async () => await boot.stop())
  const functions = functionTable()
  await addProject(functions, chain.deployer, join(resolve(import.meta.dirname, '..', '..'), 'test/fixtures/websocket'))
  const gwDir = join(dir, 'gw')
  const tickets = ticketLog({ dataDir: gwDir })
  const checker = batchChecker({ dataDir: gwDir, intervalMs: 0 })({ client: gw.client, tickets, fetch: chain.fetchBlob, logger })
  closers.push(() => { checker.close(); tickets.close() })
  const gateway = await createGateway({ port: 0, bootstrap: boot.addrs(), domain, epochOf: () => chain.clock.epochAt(opts.head()) }, {
    privateKey: await generateKeyPair('Ed25519'), signer: gw.signer, functions, logger, registry: new Registry(), tickets, settlementStatus: () => checker.status()
  })
  await gateway.start()
  closers.push(async () => await gateway.stop())
  const parts: SessionWorker[] = []
  for (const name of ['liar', 'honest']) {
    const w = await party(chain)
    await stakeWorker(w)
    if (name === 'honest') await chain.honest(w.signer.address)
    const dataDir = join(dir, name)
    const receipts = receiptLog({ dataDir, pruneIntervalMs: 0 })({ logger })
    // one session each: the gateway must place the two sessions on the two workers (left to its
    // ranking, a warm bundle outweighs a held session, and both went to one worker at load 14)
    const worker = await createWorker({ dataDir, bootstrap: boot.addrs(), price: opts.price, domain, sessionPrice: { perMessage: opts.perMessage, perMinute: 0n }, maxSessions: 1 }, {
      privateKey: await generateKeyPair('Ed25519'), signer: w.signer, executor: devExecutor({})({}), logger, registry: new Registry(), receipts, ...opts.workerParts?.()
    })
    await worker.start()
    const s = settler({ dataDir, intervalMs: 0, graceSeconds: 0n })({ client: w.client, receipts, publish: chain.publish, logger, ...(name === 'liar' ? { batch: opts.lie } : {}) })
    closers.push(async () => { s.close(); await worker.stop(); receipts.close() })
    parts.push({ w, receipts, worker, s })
  }
  await waitFor('both workers, their session prices and room in the gateway view', () => gateway.view.list().filter(w => w.advert.sessionPrice?.perMessage === opts.perMessage.toString() && w.advert.maxSessions === 1).length === 2, 30_000)
  return { gateway, tickets, checker, liar: parts[0], honest: parts[1], wsUrl: `${gateway.url.replace(/^http/, 'ws')}/${chain.deployer}/ws/echo` }
}
