/** The only imports bin/ takes from the rest of the tree, in one place. */
export * from '#node'
export { PeerHostError } from '#protocol'
export { createBootstrap } from '#bootstrap'
