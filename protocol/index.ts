/**
 * protocol/: pure PeerHost wire definitions — no I/O, no imports of ours.
 *
 * - errors.ts: `PeerHostError`, `ProtocolError`, the closed set of wire error codes
 * - constants.ts: protocol ids, topic names and every limit, with reasons
 * - messages.ts: wire message types
 * - validate.ts: strict validators (`validateMessage`, one per type) returning normalized copies;
 *   `assertAdvertFresh` for advert timestamps
 * - codec.ts: `encodeMessage` / `decodeMessage` / `decodeMessageOf`: msgpack with a bounded
 *   pre-scan, so hostile bytes only ever raise a `ProtocolError`
 * - canonical.ts: canonical request / response / error encodings, `inputHash`, `outputHash`
 * - eip712.ts: tickets and receipts as EIP-712 typed data (the single definition)
 * - receipt.ts: `ticketOf` / `receiptOf` a job, `assertInputHash`, `advertSigningBytes`, `newJobId`
 * - cid.ts: CIDv1 of bundle bytes
 * - options.ts: the one `FunctionOptions` schema (wire, manifest, peerhost.json) and its comparisons
 * - keccak.ts: keccak-256 in WebAssembly for the hot path (same output as viem's)
 * - session-fees.ts: metered session fees (what a session owes, a project's cap for it)
 */
export * from './errors.ts'
export * from './constants.ts'
export type * from './messages.ts'
export * from './validate.ts'
export * from './codec.ts'
export * from './canonical.ts'
export * from './eip712.ts'
export * from './receipt.ts'
export * from './cid.ts'
export * from './transcript.ts'
export * from './options.ts'
export * from './keccak.ts'
export * from './session-fees.ts'
