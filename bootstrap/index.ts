/** bootstrap/: the discovery-only node (stable id and address, DHT server, gossip relay). */
export { createBootstrap } from './bootstrap.ts'
export type { BootstrapInit, BootstrapComponents, BootstrapNode } from './bootstrap.ts'
