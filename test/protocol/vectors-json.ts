/**
 * JSON form of golden vectors: binary as `{ "$bytes": "0x…" }`, bigints as `{ "$bigint": "…" }`.
 */
import { bytesToHex, hexToBytes, type Hex } from 'viem'

export function toJson (value: unknown): unknown {
  if (value instanceof Uint8Array) return { $bytes: bytesToHex(value) }
  if (typeof value === 'bigint') return { $bigint: value.toString() }
  if (Array.isArray(value)) return value.map(toJson)
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toJson(v)]))
  }
  return value
}

export function fromJson (value: unknown): any {
  if (Array.isArray(value)) return value.map(fromJson)
  if (typeof value === 'object' && value !== null) {
    const keys = Object.keys(value)
    if (keys.length === 1 && keys[0] === '$bytes') return hexToBytes((value as { $bytes: Hex }).$bytes)
    if (keys.length === 1 && keys[0] === '$bigint') return BigInt((value as { $bigint: string }).$bigint)
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fromJson(v)]))
  }
  return value
}
