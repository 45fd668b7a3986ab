/**
 * The transcript of a WebSocket session, which its receipt signs: one running keccak256 chain per
 * direction and the message and byte counts. Gateway and worker each compute it from what they
 * relayed; the gateway accepts the worker's signed summary only when it equals its own.
 *
 *   h0 = 32 zero bytes
 *   h(n) = sha256(h(n-1) ‖ kind ‖ data)     kind: 0x01 text (UTF-8 bytes), 0x02 binary
 *
 * SHA-256 (native, ~1 GB/s) for the chains: keccak256 in JavaScript hashes ~10–20 MB/s here and
 * would cap a session's throughput; the summary the receipt signs is keccak256 (contracts).
 *
 * Two chains, not one: each side sees each direction's order exactly, but how the two directions
 * interleave depends on where it is observed.
 */
import { createHash } from 'node:crypto'
import { bytesToHex, concat, encodeAbiParameters, hexToBytes, type Hex } from 'viem'
import { keccak256 } from './keccak.ts'
import type { TranscriptSummary } from './messages.ts'

const TEXT = new Uint8Array([1])
const BINARY = new Uint8Array([2])

export interface Transcript {
  /** records one message; `dir` 'in' is client → function */
  add: (dir: 'in' | 'out', binary: boolean, data: Uint8Array) => void
  summary: () => TranscriptSummary
  /**
   * The client → function chain now, without hex encoding (a gateway remembers these to check a
   * segment's receipt over a prefix: docs/chain.md); `hash` is never mutated afterwards.
   */
  inState: () => { hash: Uint8Array, messages: number, bytes: number }
  /**
   * Rewinds the function → client chain to its state after `messages` messages (a worker, when
   * the gateway delivered fewer than the function sent: WsClose.delivered). Only the last
   * `rewindable` states are kept: false (nothing changed) when `messages` is older, or more than
   * were recorded.
   */
  rewindOut: (messages: number) => boolean
}

export interface TranscriptOptions {
  /** how many of the latest function → client states `rewindOut` can return to. @default 0 */
  rewindable?: number
}

export function transcript (opts: TranscriptOptions = {}): Transcript {
  const keep = opts.rewindable ?? 0
  /** the out chain before each of the latest `keep` messages, oldest first */
  const before: Array<{ hash: Uint8Array, bytes: number }> = []
  let inHash: Uint8Array = new Uint8Array(32)
  let outHash: Uint8Array = new Uint8Array(32)
  let messagesIn = 0
  let messagesOut = 0
  let bytesIn = 0
  let bytesOut = 0
  return {
    add (dir, binary, data) {
      const kind = binary ? BINARY : TEXT
      if (dir === 'in') {
        inHash = createHash('sha256').update(inHash).update(kind).update(data).digest()
        messagesIn++
        bytesIn += data.byteLength
      } else {
        if (keep > 0) {
          before.push({ hash: outHash, bytes: bytesOut })
          if (before.length > keep) before.shift()
        }
        outHash = createHash('sha256').update(outHash).update(kind).update(data).digest()
        messagesOut++
        bytesOut += data.byteLength
      }
    },
    summary: () => ({ inHash: bytesToHex(inHash), outHash: bytesToHex(outHash), messagesIn, messagesOut, bytesIn, bytesOut }),
    inState: () => ({ hash: inHash, messages: messagesIn, bytes: bytesIn }),
    rewindOut (messages) {
      if (!Number.isSafeInteger(messages) || messages > messagesOut || messages < 0) return false
      const back = messagesOut - messages
      if (back === 0) return true
      if (back > before.length) return false
      const state = before[before.length - back]
      before.length -= back
      outHash = state.hash
      bytesOut = state.bytes
      messagesOut = messages
      return true
    }
  }
}

/**
 * The outputHash a session's receipt signs: keccak256 of the ABI encoding
 * (bytes32 inHash, bytes32 outHash, uint64 messagesIn, uint64 messagesOut, uint64 bytesIn, uint64 bytesOut),
 * prefixed with the domain tag "peerhost.session.v1" so it never equals a response's outputHash.
 */
export function transcriptOutputHash (t: TranscriptSummary): Hex {
  return keccak256(concat([
    new TextEncoder().encode('peerhost.session.v1'),
    hexToBytes(encodeAbiParameters(
      [{ type: 'bytes32' }, { type: 'bytes32' }, { type: 'uint64' }, { type: 'uint64' }, { type: 'uint64' }, { type: 'uint64' }],
      [t.inHash, t.outHash, BigInt(t.messagesIn), BigInt(t.messagesOut), BigInt(t.bytesIn), BigInt(t.bytesOut)]
    ))
  ]))
}

/** What a streamed response's receipt covers (the `stream-end` frame's fields). */
export interface StreamSummary {
  status: number
  /** SHA-256 of every body byte streamed, in order (chunking does not change it) */
  bodyHash: Hex
  bytes: number
  /** the wire code when the stream was cut, else absent */
  error?: string
}

/** A running SHA-256 over a streamed body: the same value whichever way the bytes were chunked. */
export function bodyHasher (): { add: (data: Uint8Array) => void, readonly bytes: number, digest: () => Hex } {
  // created on first use: a worker makes one per job, and most jobs never stream
  let h: ReturnType<typeof createHash> | undefined
  let bytes = 0
  let done: Hex | undefined
  return {
    add (data) { (h ??= createHash('sha256')).update(data); bytes += data.byteLength },
    get bytes () { return bytes },
    digest () { done ??= bytesToHex((h ??= createHash('sha256')).digest()); return done }
  }
}

/**
 * The outputHash a streamed response's receipt signs: keccak256 of the tag "peerhost.stream.v1"
 * and the ABI encoding (uint16 status, bytes32 bodyHash, uint64 bytes, string errorCode); the
 * tag keeps it from ever equalling a buffered response's or a session's outputHash.
 */
export function streamOutputHash (s: StreamSummary): Hex {
  return keccak256(concat([
    new TextEncoder().encode('peerhost.stream.v1'),
    hexToBytes(encodeAbiParameters(
      [{ type: 'uint16' }, { type: 'bytes32' }, { type: 'uint64' }, { type: 'string' }],
      [s.status, s.bodyHash, BigInt(s.bytes), s.error ?? '']
    ))
  ]))
}
