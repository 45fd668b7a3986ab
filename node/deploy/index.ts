/**
 * node/deploy: `peerhost deploy` — git, deterministic build, manifest, upload, registration —
 * and the gateway routes that accept uploads. See docs/deploy.md.
 */
export { deployProject, type DeployInit, type DeployResult, type DeployStepEvent, type DeployStepId } from './deploy.ts'
export { buildDeployment, type BuildInit, type Deployment } from './build.ts'
export { canonicalJson, encodeManifest, parseManifest, MANIFEST_TYPE, MANIFEST_VERSION, type Manifest, type ManifestFunction } from './manifest.ts'
export { cloneRepo, isGitUrl, repoName, sourceCommit } from './git.ts'
export { deployRoutes, type DeployRoutesComponents } from './gateway-routes.ts'
export { blockUploads, signUpload, uploadMessage, UPLOAD_HEADER, type BlockUploads, type BlockUploadsInit, type BlockUploadsComponents } from './uploads.ts'
export { prewarmCached } from './prewarm.ts'
