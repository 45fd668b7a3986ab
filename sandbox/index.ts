/**
 * sandbox/: runs function bundles. `Executor` is the interface a worker uses; implementations:
 * the gVisor sandbox (default) and the development `node:vm` executor (not a security boundary).
 */
export type * from './executor.ts'
export * from './errors.ts'
