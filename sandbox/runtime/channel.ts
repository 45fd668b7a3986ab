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

/**
 * Incremental frame reader; `onError` is final (the reader ignores further input).
 *
 * Chunks are kept as a list and joined once, when a whole frame has arrived: concatenating on
 * every chunk would copy a large frame again for each of its pieces (quadratic: a 24 MiB bundle
 * in 64 KiB pipe reads is ~4.6 GB of copying). Every byte is copied at most once here.
 */
export class FrameDecoder {
  private chunks: Buffer[] = []
  /** bytes held in `chunks` */
  private held = 0
  /** payload length of the frame being read, once its 4-byte header is in */
  private need = -1
  private failed = false
  private readonly max: number
  private readonly onMessage: (msg: any) => void
  private readonly onError: (err: Error) => void
  /** bytes copied while assembling frames (tests check it stays linear in the input) */
  copied = 0

  constructor (max: number, onMessage: (msg: any) => void, onError: (err: Error) => void) {
    this.max = max
    this.onMessage = onMessage
    this.onError = onError
  }

  /** Removes and returns the first `n` held bytes (a view when one chunk holds them all). */
  private take (n: number): Buffer {
    const first = this.chunks[0]
    let out: Buffer
    if (first.byteLength >= n) {
      out = first.subarray(0, n)
      if (first.byteLength === n) this.chunks.shift()
      else this.chunks[0] = first.subarray(n)
    } else {
      out = Buffer.allocUnsafe(n)
      let off = 0
      while (off < n) {
        const c = this.chunks[0]
        const part = Math.min(c.byteLength, n - off)
        c.copy(out, off, 0, part)
        off += part
        if (part === c.byteLength) this.chunks.shift()
        else this.chunks[0] = c.subarray(part)
      }
      this.copied += n
    }
    this.held -= n
    return out
  }

  push (chunk: Buffer): void {
    if (this.failed || chunk.byteLength === 0) return
    this.chunks.push(chunk)
    this.held += chunk.byteLength
    for (;;) {
      if (this.need < 0) {
        if (this.held < 4) return
        const len = this.take(4).readUInt32BE(0)
        if (len > this.max) return this.fail(new ChannelError(`frame of ${len} bytes exceeds ${this.max}`))
        this.need = len
      }
      if (this.held < this.need) return
      const payload = this.take(this.need)
      this.need = -1
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
    this.chunks = []
    this.held = 0
    this.onError(err)
  }
}

/**
 * Frames written to one stream, gathered per turn of the event loop: every message sent before
 * the loop's next check phase goes out in one `write`. Under gVisor's ptrace platform each system
 * call of the sandboxed Node costs a round trip through the tracer (≈ 170 µs here), and a sandbox
 * running several executions at once finishes them in the same turn (the host's frames arrive
 * together, hello answers within microtasks): their results share one write instead of one each.
 * The order of messages is kept. `flush` writes what waits now (before the process exits).
 */
export class FrameWriter {
  private pending: Buffer[] = []
  private scheduled = false
  private readonly write: (bytes: Buffer) => void

  constructor (write: (bytes: Buffer) => void) {
    this.write = write
  }

  send (msg: object): void {
    this.pending.push(encodeFrame(msg))
    if (this.scheduled) return
    this.scheduled = true
    setImmediate(() => { this.flush() })
  }

  flush (): void {
    this.scheduled = false
    const out = this.pending
    if (out.length === 0) return
    this.pending = []
    this.write(out.length === 1 ? out[0] : Buffer.concat(out))
  }
}
