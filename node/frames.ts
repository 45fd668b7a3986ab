/**
 * Length-prefixed message frames on libp2p v3 streams, always size-bounded and with a deadline.
 */
import type { Stream } from '@libp2p/interface'
import { lpStream, type LengthPrefixedStream } from '@libp2p/utils'
import {
  decodeMessage, encodeMessage, LIMITS, PROTOCOL_VERSION, ProtocolError,
  type ErrorMessage, type Message, type MessageType, type WireError
} from '#protocol'

export interface FrameStream {
  /** Reads one frame of the expected type, or an error frame standing in for it. */
  read: <T extends MessageType>(type: T, signal?: AbortSignal) => Promise<Extract<Message, { type: T }> | ErrorMessage>
  write: (msg: Message, signal?: AbortSignal) => Promise<void>
  lp: LengthPrefixedStream<Stream>
}

export function frames (stream: Stream, maxBytes: number = LIMITS.maxFrameBytes): FrameStream {
  const lp = lpStream(stream, { maxDataLength: maxBytes })
  return {
    lp,
    async read (type, signal) {
      let list
      try {
        list = await lp.read({ signal })
      } catch (err: any) {
        if (err?.name === 'InvalidDataLengthError' || err?.name === 'InvalidDataLengthLengthError') {
          throw new ProtocolError('FRAME_TOO_LARGE', `frame exceeds ${maxBytes} bytes`, { cause: err })
        }
        throw err
      }
      const bytes = list.subarray()
      const msg = decodeMessage(bytes, { maxBytes })
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
