/** The node runtime bin/ uses, in one place; command actions import it lazily (what definitions need is in light.ts). */
export * from '#node'
export { PeerHostError, rawCid } from '#protocol'
export { createBootstrap } from '#bootstrap'
