/**
 * sandbox/: runs function bundles. `Executor` is the interface a worker uses; implementations:
 * - `gvisorExecutor(init)(components)`: every function in a gVisor (runsc) sandbox — the default
 *   and the only security boundary;
 * - `devExecutor(init)(components)`: a worker thread with a fresh `node:vm` realm per execution —
 *   NOT a security boundary, for `--unsafe-dev-executor`, `peerhost dev --executor dev-vm`, tests.
 * Both share the runtime shim (runtime/), result shaping and the host-brokered fetch.
 */
export type * from './executor.ts'
export * from './errors.ts'
export { DEV_EXECUTOR_DEFAULTS, GVISOR_POOL_DEFAULTS, SANDBOX_LIMITS } from './constants.ts'
export { NODE_COMPAT_MODULES } from './runtime/compat.ts'
export { devExecutor } from './dev-executor.ts'
export type { DevExecutorInit, ExecutorComponents } from './dev-executor.ts'
export { fetchBroker, isRefusedAddress, embeddedIPv4, hostAllowed, publicAddressesOnly } from './fetch-broker.ts'
export type { AddressFilter, FetchBrokerInit, FetchBrokerComponents, FetchBroker, BrokeredFetch } from './fetch-broker.ts'
export { gvisorExecutor, leftovers } from './gvisor/executor.ts'
export { ensureRootfs } from './gvisor/rootfs.ts'
export { BootGate, sharedBootGate, type BootGateInit, type BootPriority } from './gvisor/boot-gate.ts'
export type { GvisorExecutor, GvisorExecutorInit } from './gvisor/executor.ts'
export { buildOciSpec } from './gvisor/oci-spec.ts'
export type { SpecInput } from './gvisor/oci-spec.ts'
export { runscGlobalArgs } from './gvisor/runsc.ts'
