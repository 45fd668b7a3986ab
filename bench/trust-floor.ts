/**
 * `npm run bench:trust-floor`: what the trust guarantees alone cost per request, against the CPU
 * that issue 10's throughput targets leave per request, with raw Node `http` measured in the same run.
 *
 * Every request through the network is ticketed and receipted, and none of it may be skipped
 * (issue 10: "the trust guarantees are not [yours to cut]"). Per request, in the order the real
 * code does it and with the real functions:
 *
 *   gateway  inputHash of the request, jobHash, EIP-712 ticket digest, ticket signature (secp256k1),
 *            the ticket in its ticket log (SQLite, grouped per event-loop turn)
 *   worker   inputHash again, jobHash again, ticket digest, recover the ticket's signer, the receipt
 *            log's reservation (SQLite) and receipt commit (grouped), outputHash, receipt digest,
 *            receipt signature
 *   gateway  outputHash again, receipt digest, recover the receipt's signer
 *
 * No network, no sandbox, no HTTP: a floor, not an estimate. It runs on one core; the devnet has
 * two for gateway, workers, sandboxes, chain and load generator together, so a throughput of R
 * req/s leaves at most 2 / R s of CPU per request for everything.
 *
 *   node bench/trust-floor.ts [--requests 3000] [--per-turn 8]
 */
import { spawn, execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { bytesToHex, type Hex } from 'viem'
import { generatePrivateKey } from 'viem/accounts'
import { randomBytes } from 'node:crypto'
import {
  DEV_DOMAIN, functionId, inputHash, jobHashOf, outputHash, PROTOCOL_VERSION, rawCid, receiptDigest, receiptOf, ticketDigest, ticketOf,
  type JobRequest, type WireResponse
} from '#protocol'
import { fastSigner, receiptLog, recoverDigestSigner, silentLogger, ticketLog } from '#node'

const { values } = parseArgs({ options: { requests: { type: 'string', default: '3000' }, 'per-turn': { type: 'string', default: '8' } } })
const N = Number(values.requests)
const perTurn = Number(values['per-turn'])
if (!Number.isInteger(N) || N < 100) throw new Error(`--requests must be an integer ≥ 100; got ${values.requests}`)
if (!Number.isInteger(perTurn) || perTurn < 1) throw new Error(`--per-turn must be a positive integer; got ${values['per-turn']}`)

const gatewayKey = fastSigner(generatePrivateKey())
const workerKey = fastSigner(generatePrivateKey())
const wallet = fastSigner(generatePrivateKey()).address
const bundleCid = rawCid(new TextEncoder().encode('module.exports.default = { fetch: () => new Response("Hello") }'))
const response: WireResponse = { status: 200, headers: [['content-type', 'text/plain; charset=utf-8']], body: new TextEncoder().encode('Hello, PeerHost!\n') }

function newJob (): JobRequest {
  const request = { method: 'GET', url: `http://127.0.0.1:8080/${wallet}/hello/hello?name=PeerHost`, headers: [['accept', '*/*'], ['user-agent', 'curl/7.88.1']] as Array<[string, string]>, body: new Uint8Array(0) }
  const deadline = Date.now() + 10_000
  return {
    v: PROTOCOL_VERSION,
    type: 'job',
    jobId: bytesToHex(randomBytes(32)),
    attempt: 1,
    fn: { wallet, project: 'hello', name: 'hello', id: functionId(wallet, 'hello', 'hello'), bundleCid },
    options: { memoryMb: 128, timeoutMs: 5000, network: [], isolation: 'function' },
    request,
    inputHash: inputHash(request),
    env: {},
    deadline,
    ticket: { worker: workerKey.address, gateway: gatewayKey.address, fee: '1000000000000', epoch: '7', deadline: String(Math.ceil(deadline / 1000)) },
    ticketSig: '0x'
  }
}

const dir = mkdtempSync(join(tmpdir(), 'peerhost-trust-floor-'))
const receipts = receiptLog({ dataDir: join(dir, 'worker'), pruneIntervalMs: 0 })({ logger: silentLogger() })
const tickets = ticketLog({ dataDir: join(dir, 'gateway') })

/** One request's trust work; the two SQLite group commits wait for the end of the turn. */
async function oneRequest (): Promise<void> {
  // gateway: the ticket
  // (newJob computed the request's inputHash, as the gateway does)
  const job = newJob()
  const hash = jobHashOf(job)
  job.ticketSig = gatewayKey.signDigest(ticketDigest(DEV_DOMAIN, ticketOf(job, hash)))
  tickets.record({ jobId: job.jobId, attempt: job.attempt, worker: workerKey.address, projectId: `0x${'ab'.repeat(32)}`, epoch: 7n, fee: 1_000_000_000_000n })
  // worker: check the ticket, reserve, sign the receipt once the receipt is durable
  if (inputHash(job.request) !== job.inputHash) throw new Error('inputHash')
  const workerHash = jobHashOf(job)
  if (recoverDigestSigner(ticketDigest(DEV_DOMAIN, ticketOf(job, workerHash)), job.ticketSig)?.toLowerCase() !== gatewayKey.address.toLowerCase()) throw new Error('ticket signer')
  const key = { gateway: job.ticket.gateway, jobId: job.jobId, attempt: job.attempt }
  if (!receipts.reserve({ ...key, projectId: `0x${'ab'.repeat(32)}`, functionId: job.fn.id, jobHash: workerHash, inputHash: job.inputHash, worker: job.ticket.worker, fee: job.ticket.fee, epoch: job.ticket.epoch, deadline: job.ticket.deadline, ticketSig: job.ticketSig }).ok) throw new Error('reserve')
  const out = outputHash({ response })
  const receiptSig = workerKey.signDigest(receiptDigest(DEV_DOMAIN, receiptOf(job, out, workerHash)))
  await receipts.commit(key, out, receiptSig)
  // gateway: check the receipt
  if (outputHash({ response }) !== out) throw new Error('outputHash')
  if (recoverDigestSigner(receiptDigest(DEV_DOMAIN, receiptOf(job, out, hash)), receiptSig)?.toLowerCase() !== workerKey.address.toLowerCase()) throw new Error('receipt signer')
}

async function measure (group: number): Promise<{ cpuUs: number, wallUs: number }> {
  for (let i = 0; i < 200; i++) await oneRequest()
  const c0 = process.cpuUsage()
  const t0 = performance.now()
  for (let i = 0; i < N; i += group) await Promise.all(Array.from({ length: Math.min(group, N - i) }, oneRequest))
  const c = process.cpuUsage(c0)
  return { cpuUs: (c.user + c.system) / N, wallUs: (performance.now() - t0) * 1000 / N }
}

/** µs per call of each part, alone (the receipt and ticket logs grouped as in `measure`) */
async function parts (): Promise<Array<[string, number]>> {
  const job = newJob()
  const hash = jobHashOf(job)
  const ticketHash = ticketDigest(DEV_DOMAIN, ticketOf(job, hash))
  job.ticketSig = gatewayKey.signDigest(ticketHash)
  const out = outputHash({ response })
  const time = (fn: () => void, n = N): number => { for (let i = 0; i < 100; i++) fn(); const t0 = performance.now(); for (let i = 0; i < n; i++) fn(); return (performance.now() - t0) * 1000 / n }
  const timeGrouped = async (fn: () => Promise<void>): Promise<number> => {
    const t0 = performance.now()
    for (let i = 0; i < N; i += perTurn) await Promise.all(Array.from({ length: Math.min(perTurn, N - i) }, fn))
    return (performance.now() - t0) * 1000 / N
  }
  return [
    ['inputHash (×2)', 2 * time(() => inputHash(job.request))],
    ['jobHash (×2)', 2 * time(() => jobHashOf(job))],
    ['EIP-712 ticket and receipt digests (×4)', 2 * time(() => ticketDigest(DEV_DOMAIN, ticketOf(job, hash))) + 2 * time(() => receiptDigest(DEV_DOMAIN, receiptOf(job, out, hash)))],
    ['secp256k1 signatures (ticket, receipt)', 2 * time(() => gatewayKey.signDigest(ticketHash))],
    ['secp256k1 recoveries (ticket, receipt)', 2 * time(() => recoverDigestSigner(ticketHash, job.ticketSig))],
    ['outputHash (×2)', 2 * time(() => outputHash({ response }))],
    ['receipt log: reservation + commit', await timeGrouped(async () => {
      const j = newJob()
      const key = { gateway: j.ticket.gateway, jobId: j.jobId, attempt: 1 }
      receipts.reserve({ ...key, projectId: `0x${'ab'.repeat(32)}`, functionId: j.fn.id, jobHash: hash, inputHash: j.inputHash, worker: j.ticket.worker, fee: j.ticket.fee, epoch: j.ticket.epoch, deadline: j.ticket.deadline, ticketSig: job.ticketSig })
      await receipts.commit(key, out, job.ticketSig)
    })],
    ['gateway ticket log', await timeGrouped(async () => {
      tickets.record({ jobId: bytesToHex(randomBytes(32)), attempt: 1, worker: workerKey.address, projectId: `0x${'ab'.repeat(32)}`, epoch: 7n, fee: 1_000_000_000_000n })
      await new Promise(resolve => setImmediate(resolve))
    })]
  ]
}

/** raw Node `http` answering hello, in a child process, under wrk -c32 for 5 s: req/s */
async function rawNode (): Promise<number> {
  const src = "require('http').createServer((q, s) => { s.setHeader('content-type', 'text/plain; charset=utf-8'); s.end('Hello, PeerHost!\\n') }).listen(0, '127.0.0.1', function () { console.log(this.address().port) })"
  const child = spawn(process.execPath, ['-e', src], { stdio: ['ignore', 'pipe', 'inherit'] })
  try {
    const port = await new Promise<string>((resolve, reject) => {
      child.stdout.once('data', (d: Buffer) => { resolve(d.toString().trim()) })
      child.once('exit', code => { reject(new Error(`raw server exited ${code}`)) })
    })
    const out = execFileSync('wrk', ['-c32', '-t2', '-d5s', `http://127.0.0.1:${port}/`], { encoding: 'utf8' })
    const m = /Requests\/sec:\s+([\d.]+)/.exec(out)
    if (m === null) throw new Error(`wrk printed no rate:\n${out}`)
    return Number(m[1])
  } finally {
    child.kill('SIGKILL')
  }
}

try {
  const one = await measure(1)
  const grouped = await measure(perTurn)
  const split = await parts()
  const raw = await rawNode()
  const budget = (share: number): number => 2_000_000 / (raw * share)
  console.log(`trust work per request (one core, ${N} requests):`)
  console.log(`  one at a time:            ${one.cpuUs.toFixed(0)} µs CPU (${one.wallUs.toFixed(0)} µs wall)`)
  console.log(`  ${perTurn} per event-loop turn:    ${grouped.cpuUs.toFixed(0)} µs CPU (${grouped.wallUs.toFixed(0)} µs wall)`)
  console.log(`  of which, each part alone (wall µs per request; the parts include the fixture's own costs):`)
  for (const [name, us] of split) console.log(`    ${name.padEnd(42)} ${us.toFixed(0).padStart(5)} µs`)
  console.log(`raw Node http, wrk -c32 5 s, same run: ${raw.toFixed(0)} req/s`)
  console.log(`CPU per request that two cores give at 20 % of raw Node (the dev-executor target): ${budget(0.2).toFixed(0)} µs; at 10 % (the gVisor target): ${budget(0.1).toFixed(0)} µs`)
  console.log(`the trust work alone, grouped, is ${(grouped.cpuUs / budget(0.2)).toFixed(2)}× the first budget and ${(grouped.cpuUs / budget(0.1)).toFixed(2)}× the second`)
} finally {
  receipts.close()
  tickets.close()
  rmSync(dir, { recursive: true, force: true })
}
