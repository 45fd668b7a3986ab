/**
 * A client's own check of a WebSocket session's receipt, as `/_peerhost/receipts/<jobId>` serves
 * it: the gateway's word (`verified`) is not taken. The client kept the transcript of what it sent
 * and received (protocol/transcript.ts); the receipt holds, if the session was honest, the very
 * same summary, an outputHash that is its hash, and an EIP-712 signature over the receipt by the
 * worker the receipt names (the worker that a gateway ticket paid, and Settlement can slash).
 */
import { getAddress, isAddress, type Address, type Hex } from 'viem'
import { receiptDigest, segmentJobId, transcriptOutputHash, type PeerHostDomain, type Receipt, type TranscriptSummary } from '#protocol'
import { recoverDigestSigner } from '../signing.ts'

export type SessionReceiptCheck =
  | { verified: true, signer: Address, receipt: Record<string, unknown>, domain: PeerHostDomain, segments: number }
  | { verified: false, problem: string }

const SUMMARY_FIELDS = ['inHash', 'outHash', 'messagesIn', 'messagesOut', 'bytesIn', 'bytesOut'] as const
const HEX32 = /^0x[0-9a-f]{64}$/
const UINT = /^(0|[1-9][0-9]{0,77})$/

function field (record: Record<string, unknown>, name: string, test: (v: unknown) => boolean): unknown {
  const v = record[name]
  if (!test(v)) throw new Error(`receipt.${name} is missing or malformed`)
  return v
}

/**
 * Checks `record` (the JSON of /_peerhost/receipts/<jobId>) against `own` (the client's transcript
 * of the session) and `jobId` (the 101's x-peerhost-job). Never throws: a malformed record is a
 * `problem`.
 */
export function checkSessionReceipt (record: unknown, own: TranscriptSummary, jobId: string): SessionReceiptCheck {
  try {
    if (record === null || typeof record !== 'object') return { verified: false, problem: 'the receipt is not a JSON object' }
    const rec = record as Record<string, unknown>
    if (rec.jobId !== jobId) return { verified: false, problem: `the receipt is for job ${String(rec.jobId).slice(0, 80)}, not this session's ${jobId}` }
    const r = rec.receipt
    if (r === null || typeof r !== 'object') {
      return { verified: false, problem: `no signed receipt${typeof rec.problem === 'string' ? `: ${rec.problem.slice(0, 300)}` : ''}` }
    }
    const signed = r as Record<string, unknown>
    const hex32 = (v: unknown): boolean => typeof v === 'string' && HEX32.test(v)
    const uint = (v: unknown): boolean => typeof v === 'string' && UINT.test(v)
    const addr = (v: unknown): boolean => typeof v === 'string' && isAddress(v, { strict: false })
    const d = signed.domain as Record<string, unknown> | undefined
    if (d === undefined || d === null || typeof d !== 'object' || typeof d.chainId !== 'number' || !addr(d.verifyingContract) || typeof d.name !== 'string' || typeof d.version !== 'string') {
      return { verified: false, problem: 'receipt.domain is missing or malformed' }
    }
    const domain = { name: d.name, version: d.version, chainId: d.chainId, verifyingContract: d.verifyingContract } as PeerHostDomain
    const receipt: Receipt = {
      jobId: field(signed, 'jobId', hex32) as Hex,
      attempt: field(signed, 'attempt', v => Number.isInteger(v) && (v as number) >= 0) as number,
      functionId: field(signed, 'functionId', hex32) as Hex,
      jobHash: field(signed, 'jobHash', hex32) as Hex,
      inputHash: field(signed, 'inputHash', hex32) as Hex,
      outputHash: field(signed, 'outputHash', hex32) as Hex,
      worker: field(signed, 'worker', addr) as Address,
      gateway: field(signed, 'gateway', addr) as Address,
      fee: BigInt(field(signed, 'fee', uint) as string),
      epoch: BigInt(field(signed, 'epoch', uint) as string),
      deadline: BigInt(field(signed, 'deadline', uint) as string)
    }
    // a session that outlived its Settlement epoch ends in segment k > 0, whose job id is derived
    // from the session's (docs/chain.md "segments")
    const list = Array.isArray(rec.segments) ? rec.segments as Array<Record<string, unknown>> : []
    const lastSegment = list.length > 0 && Number.isSafeInteger(list[list.length - 1]?.segment) ? list[list.length - 1].segment as number : 0
    const expected = lastSegment > 0 && HEX32.test(jobId) ? segmentJobId(jobId as Hex, lastSegment) : jobId
    if (receipt.jobId !== expected) return { verified: false, problem: `the signed receipt is for job ${receipt.jobId}, not ${expected}${lastSegment > 0 ? ` (segment ${lastSegment} of ${jobId})` : ''}` }
    const segments = list.length
    // the transcript the receipt signs is this client's own, field by field
    const theirs = rec.transcript as Record<string, unknown> | undefined
    for (const k of SUMMARY_FIELDS) {
      if (theirs?.[k] !== own[k]) return { verified: false, problem: `the receipt's transcript differs from what this client saw: ${k} is ${String(theirs?.[k]).slice(0, 80)}, here ${own[k]}` }
    }
    if (receipt.outputHash !== transcriptOutputHash(own)) return { verified: false, problem: 'the signed outputHash is not the hash of this client\'s transcript' }
    const signature = signed.signature
    if (typeof signature !== 'string') return { verified: false, problem: 'receipt.signature is missing' }
    const signer = recoverDigestSigner(receiptDigest(domain, receipt), signature as Hex)
    if (signer === undefined) return { verified: false, problem: 'receipt.signature is malformed' }
    if (signer.toLowerCase() !== receipt.worker.toLowerCase()) return { verified: false, problem: `the receipt is signed by ${getAddress(signer)}, not by the worker it names (${getAddress(receipt.worker)})` }
    return { verified: true, signer: getAddress(receipt.worker), receipt: signed, domain, segments }
  } catch (err) {
    return { verified: false, problem: (err as Error).message }
  }
}
