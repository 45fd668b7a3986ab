/**
 * Job frames a test's own gateway-side peer sends straight to a worker (a raw libp2p client
 * speaking the job protocol): the frame and its ticket, signed by the test's gateway key in the
 * dev domain, as a gateway would build them.
 */
import { randomBytes } from 'node:crypto'
import { bytesToHex, type Address, type Hex } from 'viem'
import type { PrivateKeyAccount } from 'viem/accounts'
import {
  DEV_DOMAIN, functionId, inputHash, PROTOCOL_VERSION, ticketDigest, ticketOf,
  type FunctionOptions, type JobRequest, type WireRequest
} from '#protocol'

export interface SignedJobInit {
  /** the worker's receipt address the ticket names */
  worker: Address
  /** the key that signs the ticket (the gateway it names) */
  gateway: PrivateKeyAccount
  fn: { wallet: Address, project: string, name: string, bundleCid: string }
  request: WireRequest
  options: FunctionOptions
  env?: Record<string, string>
  /** @default 60_000 */
  deadlineInMs?: number
  /** a WebSocket session job */
  session?: true
}

export async function signedJob (init: SignedJobInit): Promise<JobRequest> {
  const deadline = Date.now() + (init.deadlineInMs ?? 60_000)
  const { wallet, project, name, bundleCid } = init.fn
  const unsigned: JobRequest = {
    v: PROTOCOL_VERSION,
    type: 'job',
    jobId: bytesToHex(randomBytes(32)),
    attempt: 1,
    fn: { wallet, project, name, id: functionId(wallet, project, name), bundleCid },
    options: init.options,
    request: init.request,
    inputHash: inputHash(init.request),
    env: init.env ?? {},
    deadline,
    ticket: { worker: init.worker, gateway: init.gateway.address, fee: '0', epoch: '0', deadline: String(Math.ceil(deadline / 1000)) },
    ticketSig: '0x',
    ...(init.session === true ? { session: true as const } : {})
  }
  const ticketSig: Hex = await init.gateway.sign({ hash: ticketDigest(DEV_DOMAIN, ticketOf(unsigned)) })
  return { ...unsigned, ticketSig }
}
