/**
 * Building a deployment from a project folder: functions, peerhost.json, deterministic bundles,
 * the manifest. No network, no chain: the same inputs give the same CIDs anywhere.
 */
import { bundleFunction, findFunctions } from '../build/bundle.ts'
import { ConfigError } from '../errors.ts'
import { loadProjectConfig } from '../project/config.ts'
import { STORAGE_LIMITS } from '../storage/limits.ts'
import { encodeManifest, MANIFEST_TYPE, MANIFEST_VERSION, type Manifest } from './manifest.ts'

export interface BuildInit {
  /** project root (holds functions/ and optionally peerhost.json) */
  dir: string
  /** overrides peerhost.json `name` */
  project?: string
  /** merged over peerhost.json `env` */
  env?: Record<string, string>
  /** bytes32 source commit */
  sourceCommit: `0x${string}`
}

export interface Deployment {
  project: string
  manifest: Manifest
  manifestCid: string
  manifestBytes: Uint8Array
  bundles: Array<{ name: string, entry: string, cid: string, bytes: Uint8Array }>
}

const NAME = /^[a-z0-9][a-z0-9-]{0,62}$/
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

export async function buildDeployment (init: BuildInit): Promise<Deployment> {
  const sources = findFunctions(init.dir)
  const config = loadProjectConfig(init.dir)
  // peerhost.json `name`, else the folder name (a clone's folder is named after the repository)
  const project = init.project ?? config.name
  if (!NAME.test(project)) throw new ConfigError('BAD_PROJECT_NAME', `project name "${project}" must be lower-case letters, digits and dashes (at most 63)`)
  const badEnv = Object.keys(init.env ?? {}).filter(k => !ENV_NAME.test(k))
  if (badEnv.length > 0) throw new ConfigError('BAD_ENV', `--env names must be letters, digits and _ not starting with a digit: ${badEnv.join(', ')}`)

  const bundles: Deployment['bundles'] = []
  for (const src of sources) {
    const built = await bundleFunction(config.root, src)
    if (built.bytes.byteLength > STORAGE_LIMITS.maxBlockBytes) {
      throw new ConfigError('BUNDLE_TOO_LARGE', `function "${src.name}" bundles to ${built.bytes.byteLength} bytes; the limit is ${STORAGE_LIMITS.maxBlockBytes} (2 MiB, one bitswap block): trim its dependencies`)
    }
    bundles.push({ name: src.name, entry: src.entry, cid: built.cid, bytes: built.bytes })
  }
  const manifest: Manifest = {
    type: MANIFEST_TYPE,
    v: MANIFEST_VERSION,
    sourceCommit: init.sourceCommit,
    env: { ...config.env, ...init.env },
    // `auth` only when not public, `maxFee` only when set: a project without them keeps the manifest bytes (and CID) it had before
    functions: Object.fromEntries(bundles.map(b => {
      const auth = config.authFor(b.name)
      // `chainPath` likewise only when a client may force the chain (the default writes nothing)
      const chainPath = config.chainPathFor(b.name)
      const maxFee = config.maxFeeFor(b.name)
      // `quorum` likewise only when set ("single" writes nothing)
      const quorum = config.quorumFor(b.name)
      // `websocket` likewise only when a limit is set
      const websocket = config.websocketFor(b.name)
      return [b.name, { bundle: b.cid, entry: b.entry, options: config.optionsFor(b.name), deterministic: config.deterministicFor(b.name), ...(auth === undefined ? {} : { auth }), ...(chainPath === 'client' ? { chainPath } : {}), ...(maxFee === undefined ? {} : { maxFee: maxFee.toString() }), ...(quorum === undefined ? {} : { quorum }), ...(websocket === undefined ? {} : { websocket }) }]
    })),
    // only when set: a project without one keeps the manifest bytes (and CID) it had before
    ...(config.rateLimit === undefined ? {} : { rateLimit: config.rateLimit })
  }
  const { bytes, cid } = encodeManifest(manifest)
  return { project, manifest, manifestCid: cid, manifestBytes: bytes, bundles }
}
