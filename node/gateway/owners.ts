/**
 * Who may manage a project's secrets and read its logs on a gateway: the project's *current*
 * owner in FunctionRegistry (`ownerOf(projectId(namespace, name))`), which changes with
 * `transferProject` + `acceptProject`; not the wallet in the URL, which is only the namespace the
 * project was created under. A project not created yet is its namespace's (only the namespace
 * wallet can create it). Reads are cached for `ttlMs`, so a transfer takes effect within it.
 * Without a chain (`--project` folders) the namespace is the owner.
 */
import { getAddress, zeroAddress, type Address, type Hex, type PublicClient } from 'viem'
import { functionRegistryAbi } from '#contracts'
import { projectId } from '#protocol'
import { NODE_DEFAULTS } from '../constants.ts'

export interface ProjectOwners {
  /** The address allowed to manage `<namespace>/<project>` now; throws when the chain cannot be read. */
  ownerOf: (namespace: Address, project: string) => Promise<Address>
}

/** No chain: the namespace wallet owns its projects. */
export function namespaceOwners (): ProjectOwners {
  return { ownerOf: async (namespace) => getAddress(namespace) }
}

export interface RegistryOwnersInit {
  /** @default NODE_DEFAULTS.projectOwnerTtlMs */
  ttlMs?: number
  /** projects cached; the oldest read is dropped first; @default 10_000 */
  maxEntries?: number
}

export interface RegistryOwnersComponents {
  client: Pick<PublicClient, 'readContract'>
  registry: Address
}

export function registryOwners (init: RegistryOwnersInit = {}): (components: RegistryOwnersComponents) => ProjectOwners {
  const ttlMs = init.ttlMs ?? NODE_DEFAULTS.projectOwnerTtlMs
  const maxEntries = init.maxEntries ?? 10_000
  return ({ client, registry }) => {
    const cache = new Map<Hex, { owner: Address, at: number }>()
    return {
      async ownerOf (namespace, project) {
        const id = projectId(getAddress(namespace), project)
        const hit = cache.get(id)
        if (hit !== undefined && Date.now() - hit.at < ttlMs) return hit.owner
        const read = await client.readContract({ address: registry, abi: functionRegistryAbi, functionName: 'ownerOf', args: [id] }) as Address
        const owner = read === zeroAddress ? getAddress(namespace) : getAddress(read)
        cache.delete(id)
        if (cache.size >= maxEntries) cache.delete(cache.keys().next().value!)
        cache.set(id, { owner, at: Date.now() })
        return owner
      }
    }
  }
}
