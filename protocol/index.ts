/**
 * protocol/: pure PeerHost wire definitions — no I/O, no imports of ours.
 *
 * - errors.ts: `PeerHostError`, `ProtocolError`, the closed set of wire error codes
 * - constants.ts: protocol ids, topic names and every limit, with reasons
 * - messages.ts: wire message types
 * - eip712.ts: tickets and receipts as EIP-712 typed data (the single definition)
 * - cid.ts: CIDv1 of bundle bytes
 */
export * from './errors.ts'
export * from './constants.ts'
export type * from './messages.ts'
export * from './eip712.ts'
export * from './cid.ts'
