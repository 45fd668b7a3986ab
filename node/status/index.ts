/** node/status: the live status page at `/_peerhost/` (page.ts). */
export { statusPage, type StatusPage, type StatusPageInit, type StatusPageComponents, type StatusPoint } from './page.ts'
