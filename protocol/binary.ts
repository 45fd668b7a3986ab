/**
 * A tiny builder for the length-prefixed binary layouts of canonical.ts and receipt.ts.
 * Integers are big-endian and unsigned; a `field` is `u32be(byteLength) || bytes`; strings are
 * UTF-8. Internal to protocol/ (not exported from index.ts).
 */

const encoder = new TextEncoder()

export class BinaryWriter {
  private readonly parts: Array<Uint8Array | { u32: number } | { u64: number }> = []
  private length = 0

  u32 (n: number): this {
    this.parts.push({ u32: n })
    this.length += 4
    return this
  }

  u64 (n: number): this {
    this.parts.push({ u64: n })
    this.length += 8
    return this
  }

  raw (bytes: Uint8Array): this {
    this.parts.push(bytes)
    this.length += bytes.byteLength
    return this
  }

  /** `u32be(byteLength) || bytes` */
  field (bytes: Uint8Array | string): this {
    const b = typeof bytes === 'string' ? encoder.encode(bytes) : bytes
    return this.u32(b.byteLength).raw(b)
  }

  finish (): Uint8Array {
    const out = new Uint8Array(this.length)
    const view = new DataView(out.buffer)
    let pos = 0
    for (const part of this.parts) {
      if (part instanceof Uint8Array) {
        out.set(part, pos)
        pos += part.byteLength
      } else if ('u32' in part) {
        view.setUint32(pos, part.u32)
        pos += 4
      } else {
        view.setBigUint64(pos, BigInt(part.u64))
        pos += 8
      }
    }
    return out
  }
}

export function utf8 (s: string): Uint8Array {
  return encoder.encode(s)
}
