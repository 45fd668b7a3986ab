/**
 * The msgpack codec for every wire message (job and bundle stream frames, gossip adverts).
 *
 * Encoding validates first (`validate.ts`) and encodes the normalized copy, so equal messages give
 * equal bytes whatever their key order. Decoding never trusts the bytes:
 *
 * 1. the frame size is checked (FRAME_TOO_LARGE);
 * 2. a bounded pre-scan walks the raw msgpack before anything is allocated: every length header
 *    must fit both its limit (LIMIT_EXCEEDED) and the bytes that remain (MALFORMED), nesting is
 *    bounded (maxDepth), so is the total number of values (maxValues); only nil, booleans,
 *    integers, floats, strings (valid UTF-8), binaries, arrays and maps with string keys are
 *    allowed — no extension types, no trailing bytes, no duplicate keys, and never the keys
 *    `__proto__`, `constructor` or `prototype`; the top level is a map;
 * 3. msgpackr decodes what the scan accepted;
 * 4. the message is validated (UNSUPPORTED_VERSION, UNKNOWN_TYPE, INVALID_FIELD) into a fresh
 *    copy of plain objects whose binary fields are plain `Uint8Array` copies (never views of the
 *    input frame, which a stream reader may reuse).
 *
 * Whatever the bytes, the only exception that leaves `decodeMessage` is a `ProtocolError`.
 */
import { Packr, Unpackr } from 'msgpackr'
import { LIMITS } from './constants.ts'
import { ProtocolError } from './errors.ts'
import type { Message, MessageType } from './messages.ts'
import { FORBIDDEN_KEYS, validateMessage, validateMessageOf } from './validate.ts'

export interface DecodeOptions {
  /**
   * Largest accepted frame.
   * @default LIMITS.maxFrameBytes (decodeMessageOf: the limit of the type, see maxFrameBytesOf)
   */
  maxBytes?: number
  /**
   * Largest binary field the pre-scan accepts. Per-field limits (request and response bodies,
   * bundle bytes) are enforced afterwards by validation.
   * @default LIMITS.maxBinaryBytes, or maxBytes when maxBytes is larger than LIMITS.maxFrameBytes
   * (a bundle frame decoded with `maxBytes: LIMITS.maxBundleBytes`)
   */
  maxBinaryBytes?: number
}

/** The frame limit for one message type: adverts are small gossip messages, bundles are big. */
export function maxFrameBytesOf (type: MessageType): number {
  switch (type) {
    case 'advert': return LIMITS.maxAdvertBytes
    case 'bundle': return LIMITS.maxBundleBytes
    default: return LIMITS.maxFrameBytes
  }
}

const packr = new Packr({
  useRecords: false, // plain msgpack maps, no msgpackr record extension
  moreTypes: false, // no typed-array / Set / Error extensions
  bundleStrings: false,
  variableMapSize: true, // fixmap for small maps: the compact standard form
  encodeUndefinedAsNil: false
})

const unpackr = new Unpackr({
  useRecords: false,
  mapsAsObjects: true,
  moreTypes: false,
  int64AsType: 'number' // 64-bit integers beyond 2^53 decode lossy and then fail validation
})

/** Validates `msg` and encodes it. Throws ProtocolError INVALID_FIELD (bad message) or FRAME_TOO_LARGE. */
export function encodeMessage (msg: Message): Uint8Array {
  let normalized: Message
  try {
    normalized = validateMessage(msg)
  } catch (err) {
    if (err instanceof ProtocolError && err.code === 'INVALID_FIELD') throw err
    const message = err instanceof Error ? err.message : String(err)
    throw new ProtocolError('INVALID_FIELD', message, { cause: err })
  }
  let packed: Uint8Array
  try {
    packed = packr.pack(normalized)
  } catch (err) {
    throw new ProtocolError('INVALID_FIELD', 'the message could not be encoded as msgpack', { cause: err })
  }
  const limit = maxFrameBytesOf(normalized.type)
  if (packed.byteLength > limit) {
    throw new ProtocolError('FRAME_TOO_LARGE', `a "${normalized.type}" frame of ${packed.byteLength} bytes exceeds the limit of ${limit} bytes`, { details: { bytes: packed.byteLength, limit } })
  }
  // a plain Uint8Array view (msgpackr returns a Buffer over its own reusable arena; views stay valid)
  return new Uint8Array(packed.buffer, packed.byteOffset, packed.byteLength)
}

/** Decodes and validates one frame. Throws only ProtocolError. */
export function decodeMessage (bytes: Uint8Array, options: DecodeOptions = {}): Message {
  return decode(bytes, options.maxBytes ?? LIMITS.maxFrameBytes, options.maxBinaryBytes, undefined)
}

/** Decodes one frame that must be of `type` (INVALID_FIELD for another known type). Throws only ProtocolError. */
export function decodeMessageOf<T extends MessageType> (bytes: Uint8Array, type: T, options: DecodeOptions = {}): Extract<Message, { type: T }> {
  return decode(bytes, options.maxBytes ?? maxFrameBytesOf(type), options.maxBinaryBytes, type) as Extract<Message, { type: T }>
}

function decode (bytes: Uint8Array, maxBytes: number, maxBinaryBytes: number | undefined, type: MessageType | undefined): Message {
  try {
    if (!(bytes instanceof Uint8Array)) throw new ProtocolError('MALFORMED', 'a frame must be binary data')
    if (bytes.byteLength > maxBytes) {
      throw new ProtocolError('FRAME_TOO_LARGE', `a frame of ${bytes.byteLength} bytes exceeds the limit of ${maxBytes} bytes`, { details: { bytes: bytes.byteLength, limit: maxBytes } })
    }
    scan(bytes, {
      maxStringBytes: LIMITS.maxStringBytes,
      maxBinaryBytes: maxBinaryBytes ?? (maxBytes > LIMITS.maxFrameBytes ? maxBytes : LIMITS.maxBinaryBytes),
      maxArrayLength: LIMITS.maxArrayLength,
      maxMapSize: LIMITS.maxMapSize,
      maxDepth: LIMITS.maxDepth,
      maxValues: LIMITS.maxValues
    })
    let value: unknown
    try {
      // msgpackr caches a DataView as a property of its input: give it a throwaway view, not ours
      value = unpackr.unpack(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength))
    } catch (err) {
      throw new ProtocolError('MALFORMED', 'the frame is not valid msgpack', { cause: err })
    }
    const ctx = { copyBinary: true }
    return type === undefined ? validateMessage(value, ctx) : validateMessageOf(value, type, ctx)
  } catch (err) {
    if (err instanceof ProtocolError) throw err
    // a bug of ours or of a library must still not escape as anything but a ProtocolError
    throw new ProtocolError('MALFORMED', 'the frame could not be decoded', { cause: err })
  }
}

// ---------------------------------------------------------------------------------------------
// the bounded pre-scan

export interface ScanLimits {
  maxStringBytes: number
  maxBinaryBytes: number
  maxArrayLength: number
  maxMapSize: number
  maxDepth: number
  maxValues: number
}

const fatalUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })
const lenientUtf8 = new TextDecoder('utf-8', { ignoreBOM: true })

function malformed (message: string, pos: number): ProtocolError {
  return new ProtocolError('MALFORMED', `${message} at byte ${pos}`, { details: { offset: pos } })
}

function exceeded (message: string, pos: number): ProtocolError {
  return new ProtocolError('LIMIT_EXCEEDED', `${message} at byte ${pos}`, { details: { offset: pos } })
}

/**
 * Walks one msgpack value (a map) over `b` without allocating anything proportional to a declared
 * length, and throws MALFORMED / LIMIT_EXCEEDED on anything the codec does not accept.
 */
export function scan (b: Uint8Array, limits: ScanLimits): void {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength)
  let pos = 0
  let values = 0

  const need = (n: number): void => {
    if (n > b.byteLength - pos) throw malformed(`the frame is truncated (${n} more bytes expected)`, pos)
  }
  const u8 = (): number => { need(1); return b[pos++] }
  const u16 = (): number => { need(2); const n = view.getUint16(pos); pos += 2; return n }
  const u32 = (): number => { need(4); const n = view.getUint32(pos); pos += 4; return n }
  const skip = (n: number): void => { need(n); pos += n }

  const string = (len: number, at: number): void => {
    if (len > limits.maxStringBytes) throw exceeded(`a string of ${len} bytes exceeds the limit of ${limits.maxStringBytes}`, at)
    need(len)
    for (let i = pos; i < pos + len; i++) {
      if (b[i] >= 0x80) {
        try {
          fatalUtf8.decode(b.subarray(pos, pos + len))
        } catch {
          throw malformed('a string is not valid UTF-8', at)
        }
        break
      }
    }
    pos += len
  }

  const countValue = (at: number): void => {
    if (++values > limits.maxValues) throw exceeded(`more than ${limits.maxValues} values`, at)
  }

  const container = (depth: number, at: number): void => {
    if (depth > limits.maxDepth) throw exceeded(`nesting deeper than ${limits.maxDepth}`, at)
  }

  const array = (n: number, depth: number, at: number): void => {
    container(depth, at)
    if (n > limits.maxArrayLength) throw exceeded(`an array of ${n} elements exceeds the limit of ${limits.maxArrayLength}`, at)
    for (let i = 0; i < n; i++) value(depth + 1)
  }

  const map = (n: number, depth: number, at: number): void => {
    container(depth, at)
    if (n > limits.maxMapSize) throw exceeded(`a map of ${n} entries exceeds the limit of ${limits.maxMapSize}`, at)
    const seen = new Set<string>()
    for (let i = 0; i < n; i++) {
      const keyAt = pos
      countValue(keyAt)
      const t = u8()
      let len: number
      if (t >= 0xa0 && t <= 0xbf) len = t & 0x1f
      else if (t === 0xd9) len = u8()
      else if (t === 0xda) len = u16()
      else if (t === 0xdb) len = u32()
      else throw malformed('a map key is not a string', keyAt)
      const start = pos
      string(len, keyAt)
      const key = lenientUtf8.decode(b.subarray(start, pos))
      if (FORBIDDEN_KEYS.has(key)) throw malformed(`the map key ${JSON.stringify(key)} is forbidden`, keyAt)
      if (seen.has(key)) throw malformed(`a map repeats the key ${JSON.stringify(key.slice(0, 64))}`, keyAt)
      seen.add(key)
      value(depth + 1)
    }
  }

  const binary = (len: number, at: number): void => {
    if (len > limits.maxBinaryBytes) throw exceeded(`binary data of ${len} bytes exceeds the limit of ${limits.maxBinaryBytes}`, at)
    skip(len)
  }

  const value = (depth: number): void => {
    const at = pos
    countValue(at)
    const t = u8()
    if (t <= 0x7f || t >= 0xe0) return // positive / negative fixint
    if (t <= 0x8f) return map(t & 0x0f, depth, at)
    if (t <= 0x9f) return array(t & 0x0f, depth, at)
    if (t <= 0xbf) return string(t & 0x1f, at)
    switch (t) {
      case 0xc0: case 0xc2: case 0xc3: return // nil, false, true
      case 0xc4: return binary(u8(), at)
      case 0xc5: return binary(u16(), at)
      case 0xc6: return binary(u32(), at)
      case 0xca: return skip(4) // float32
      case 0xcb: return skip(8) // float64
      case 0xcc: case 0xd0: return skip(1)
      case 0xcd: case 0xd1: return skip(2)
      case 0xce: case 0xd2: return skip(4)
      case 0xcf: case 0xd3: return skip(8)
      case 0xd9: return string(u8(), at)
      case 0xda: return string(u16(), at)
      case 0xdb: return string(u32(), at)
      case 0xdc: return array(u16(), depth, at)
      case 0xdd: return array(u32(), depth, at)
      case 0xde: return map(u16(), depth, at)
      case 0xdf: return map(u32(), depth, at)
      default: // 0xc1 (never used), extension types 0xc7–0xc9 and 0xd4–0xd8
        throw malformed(`msgpack type 0x${t.toString(16)} is not allowed`, at)
    }
  }

  if (b.byteLength === 0) throw malformed('the frame is empty', 0)
  const first = b[0]
  if (!((first >= 0x80 && first <= 0x8f) || first === 0xde || first === 0xdf)) throw malformed('a message must be a msgpack map', 0)
  value(1)
  if (pos !== b.byteLength) throw malformed(`${b.byteLength - pos} trailing bytes after the message`, pos)
}
