/**
 * The host↔shim stdio channel: length-prefixed frames, bounded in size.
 *
 *   frame   = u32be payloadLength, payload
 *   payload = u32be jsonLength, json (UTF-8), binary attachments back to back
 *   json    = { m: message with every Uint8Array replaced by { "$b": index }, b: [attachment lengths] }
 *
 * JSON plus raw attachments keeps bodies and bundles out of JSON escaping (cheap for large bodies)
 * and keeps decoding of untrusted sandbox output to `JSON.parse` and byte slicing. A frame over
 * the bound, or one that does not decode, is a fatal channel error: the host kills the sandbox.
 */

const MAX_ATTACHMENTS = 8
const MAX_JSON_BYTES = 1024 * 1024

export class ChannelError extends Error {}

export function encodeFrame (msg: object): Buffer {
  const bins: Uint8Array[] = []
  const json = JSON.stringify({ m: msg, b: [] as number[] }, function (this: Record<string, unknown>, key, value) {
    // the holder's own value: a Buffer has already become { type, data } via toJSON in `value`
    const raw = this[key]
    if (raw instanceof Uint8Array) {
      bins.push(raw)
      return { $b: bins.length - 1 }
    }
    return value
  })
  // the attachment lengths are appended after stringify walked the message
  const withLens = json.slice(0, -3) + JSON.stringify(bins.map(b => b.byteLength)) + '}'
  const jsonBuf = Buffer.from(withLens)
  let binTotal = 0
  for (const b of bins) binTotal += b.byteLength
  const out = Buffer.allocUnsafe(8 + jsonBuf.byteLength + binTotal)
  out.writeUInt32BE(4 + jsonBuf.byteLength + binTotal, 0)
  out.writeUInt32BE(jsonBuf.byteLength, 4)
  jsonBuf.copy(out, 8)
  let off = 8 + jsonBuf.byteLength
  for (const b of bins) { out.set(b, off); off += b.byteLength }
  return out
}

export function decodePayload (payload: Buffer): unknown {
  if (payload.byteLength < 4) throw new ChannelError('short payload')
  const jsonLen = payload.readUInt32BE(0)
  if (jsonLen > MAX_JSON_BYTES || 4 + jsonLen > payload.byteLength) throw new ChannelError('bad json length')
  const parsed = JSON.parse(payload.subarray(4, 4 + jsonLen).toString('utf8')) as { m?: unknown, b?: unknown }
  const lens = parsed.b
  if (!Array.isArray(lens) || lens.length > MAX_ATTACHMENTS) throw new ChannelError('bad attachment table')
  const bins: Uint8Array[] = []
  let off = 4 + jsonLen
  for (const len of lens) {
    if (typeof len !== 'number' || !Number.isInteger(len) || len < 0 || off + len > payload.byteLength) throw new ChannelError('bad attachment length')
    // copy: the frame buffer is reused by the decoder
    bins.push(new Uint8Array(payload.subarray(off, off + len)))
    off += len
  }
  if (off !== payload.byteLength) throw new ChannelError('trailing bytes')
  const revive = (v: unknown, depth: number): unknown => {
    if (depth > 8) throw new ChannelError('too deep')
    if (Array.isArray(v)) return v.map(x => revive(x, depth + 1))
    if (v !== null && typeof v === 'object') {
      const o = v as Record<string, unknown>
      if (typeof o.$b === 'number' && Object.keys(o).length === 1) {
        const b = bins[o.$b]
        if (b === undefined) throw new ChannelError('bad attachment index')
        return b
      }
      for (const k of Object.keys(o)) o[k] = revive(o[k], depth + 1)
      return o
    }
    return v
  }
  const m = revive(parsed.m, 0)
  if (m === null || typeof m !== 'object' || typeof (m as any).t !== 'string') throw new ChannelError('not a message')
  return m
}

/** Incremental frame reader; `onError` is final (the reader ignores further input). */
export class FrameDecoder {
  private buf: Buffer = Buffer.alloc(0)
  private failed = false
  private readonly max: number
  private readonly onMessage: (msg: any) => void
  private readonly onError: (err: Error) => void

  constructor (max: number, onMessage: (msg: any) => void, onError: (err: Error) => void) {
    this.max = max
    this.onMessage = onMessage
    this.onError = onError
  }

  push (chunk: Buffer): void {
    if (this.failed) return
    this.buf = this.buf.byteLength === 0 ? chunk : Buffer.concat([this.buf, chunk])
    while (this.buf.byteLength >= 4) {
      const len = this.buf.readUInt32BE(0)
      if (len > this.max) return this.fail(new ChannelError(`frame of ${len} bytes exceeds ${this.max}`))
      if (this.buf.byteLength < 4 + len) return
      const payload = this.buf.subarray(4, 4 + len)
      this.buf = this.buf.subarray(4 + len)
      let msg: unknown
      try {
        msg = decodePayload(payload)
      } catch (err) {
        return this.fail(err instanceof Error ? err : new ChannelError('undecodable frame'))
      }
      this.onMessage(msg)
      if (this.failed) return
    }
  }

  private fail (err: Error): void {
    this.failed = true
    this.buf = Buffer.alloc(0)
    this.onError(err)
  }
}
