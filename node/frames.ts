/**
 * Length-prefixed message frames on libp2p v3 streams, always size-bounded and with a deadline.
 */
import type { Stream } from '@libp2p/interface'
import { NODE_DEFAULTS } from './constants.ts'
import { lpStream, type LengthPrefixedStream } from '@libp2p/utils'
import {
  decodeMessage, encodeMessage, LIMITS, PROTOCOL_VERSION, ProtocolError,
  type ErrorMessage, type Message, type MessageType, type WireError
} from '#protocol'

export interface FrameStream {
  /** Reads one frame of the expected type, or an error frame standing in for it. */
  read: <T extends MessageType>(type: T, signal?: AbortSignal) => Promise<Extract<Message, { type: T }> | ErrorMessage>
  /** Reads one frame of any type (the caller checks which). */
  readAny: (signal?: AbortSignal) => Promise<Message>
  write: (msg: Message, signal?: AbortSignal) => Promise<void>
  lp: LengthPrefixedStream<Stream>
}

export function frames (stream: Stream, maxBytes: number = LIMITS.maxFrameBytes): FrameStream {
  // the read buffer may hold what the peer was granted by yamux flow control (its window, up to
  // 16 MiB) while this side is not reading: a streamed body paused for a slow client (stream-relay.ts)
  const lp = lpStream(stream, { maxDataLength: maxBytes, maxBufferSize: Math.max(maxBytes + 1024, NODE_DEFAULTS.streamReadBufferBytes) })
  const readAny = async (signal?: AbortSignal): Promise<Message> => {
    let list
    try {
      list = await lp.read({ signal })
    } catch (err: any) {
      if (err?.name === 'InvalidDataLengthError' || err?.name === 'InvalidDataLengthLengthError') {
        throw new ProtocolError('FRAME_TOO_LARGE', `frame exceeds ${maxBytes} bytes`, { cause: err })
      }
      throw err
    }
    return decodeMessage(list.subarray(), { maxBytes })
  }
  return {
    lp,
    readAny,
    async read (type, signal) {
      const msg = await readAny(signal)
      if (msg.type !== type && msg.type !== 'error') {
        throw new ProtocolError('INVALID_FIELD', `expected a "${type}" frame, got "${msg.type}"`)
      }
      return msg as Extract<Message, { type: typeof type }> | ErrorMessage
    },
    async write (msg, signal) {
      await lp.write(encodeMessage(msg), { signal })
    }
  }
}

export function errorFrame (error: WireError, jobId?: `0x${string}`): ErrorMessage {
  return jobId === undefined
    ? { v: PROTOCOL_VERSION, type: 'error', error }
    : { v: PROTOCOL_VERSION, type: 'error', jobId, error }
}
