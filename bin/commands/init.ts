import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { basename, join, relative, resolve } from 'node:path'
import { Command } from '@commander-js/extra-typings'
import { ConfigError } from '../light.ts'
import { say } from '../util.ts'

/**
 * What may already be in the folder: `npm i -D peerhost` in an empty folder leaves these, and
 * `git init` leaves .git; init writes none of them, so nothing of the builder's is overwritten.
 */
const ALLOWED_EXISTING = new Set(['package.json', 'package-lock.json', 'node_modules', '.git'])

const HELLO = `import type { ExportedHandler, Env } from 'peerhost/types'

/** The project's environment: "env" in peerhost.json plus secrets (.dev.vars under \`peerhost dev\`). */
interface HelloEnv extends Env {
  GREETING?: string
}

/** Answers with a greeting, echoing \`?name=\`. */
export default {
  async fetch (request, env) {
    const name = new URL(request.url).searchParams.get('name') ?? 'world'
    return new Response(\`\${env.GREETING ?? 'Hello'}, \${name}!\\n\`, {
      headers: { 'content-type': 'text/plain; charset=utf-8' }
    })
  }
} satisfies ExportedHandler<HelloEnv>
`

const TSCONFIG = {
  compilerOptions: {
    target: 'es2022',
    module: 'esnext',
    moduleResolution: 'bundler',
    // the web globals (Request, Response, fetch, URL, crypto) without the DOM's window
    lib: ['es2024', 'webworker'],
    // only PeerHost's function types (env, ctx, WebSocketPair): no Node globals in a function
    types: ['peerhost/types'],
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    isolatedModules: true,
    verbatimModuleSyntax: true
  },
  include: ['functions']
}

// the secrets of local development and the builder's wallet (an encrypted keystore still invites
// offline password guessing once public) never go into the project's history
const GITIGNORE = `node_modules/
.peerhost/
.dev.vars
peerhost-wallet.json
*.log
`

const DEV_VARS_EXAMPLE = `# Copy to .dev.vars (never commit it) for secrets under \`peerhost dev\`: one KEY=value a line.
# Deployed functions get secrets from \`peerhost secret put\` instead.
GREETING=Howdy
`

function readme (name: string): string {
  return `# ${name}

A [PeerHost](https://github.com/peerhost/peerhost) project: each file in \`functions/\` is one function.

\`\`\`sh
npx peerhost dev                 # serve functions/ locally: http://127.0.0.1:8787/hello
npx peerhost wallet new          # once: a builder wallet (keeps the project's namespace)
npx peerhost deploy --gateway <url> --contracts <contracts.json> --keystore peerhost-wallet.json
\`\`\`
`
}

export interface InitResult {
  dir: string
  name: string
  files: string[]
}

/** Writes a new project into `dir` (created if absent); refuses a folder that already holds anything else. */
export function initProject (target: string): InitResult {
  const dir = resolve(target)
  if (existsSync(dir)) {
    if (!statSync(dir).isDirectory()) throw new ConfigError('INIT_NOT_A_DIRECTORY', `${dir} exists and is not a folder; pass a new or empty folder to \`peerhost init\``)
    const present = readdirSync(dir).filter(f => !ALLOWED_EXISTING.has(f))
    if (present.length > 0) {
      const shown = present.slice(0, 5).join(', ') + (present.length > 5 ? `, and ${present.length - 5} more` : '')
      throw new ConfigError('INIT_DIR_NOT_EMPTY', `${dir} is not empty (${shown}); \`peerhost init\` only writes into a new or empty folder (package.json, node_modules and .git may be present)`)
    }
  }
  const name = basename(dir).toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '') || 'my-project'
  const files: Record<string, string> = {
    'functions/hello.ts': HELLO,
    'peerhost.json': JSON.stringify({ name, functions: { hello: { timeoutMs: 5000 } } }, null, 2) + '\n',
    '.dev.vars.example': DEV_VARS_EXAMPLE,
    '.gitignore': GITIGNORE,
    'tsconfig.json': JSON.stringify(TSCONFIG, null, 2) + '\n',
    'README.md': readme(name)
  }
  mkdirSync(join(dir, 'functions'), { recursive: true })
  for (const [file, content] of Object.entries(files)) writeFileSync(join(dir, file), content, { flag: 'wx' })
  return { dir, name, files: Object.keys(files) }
}

export function initCommand (): Command<any, any> {
  return new Command('init')
    .description('create a project: a typed hello function, peerhost.json, tsconfig.json, .dev.vars.example, .gitignore, README')
    .argument('[dir]', 'folder to create the project in (new or empty)', '.')
    .option('--json', 'print machine-readable lines')
    .action((dir, opts) => {
      const result = initProject(dir)
      const where = relative(process.cwd(), result.dir) || '.'
      say(opts, [
        `created project "${result.name}" in ${where}: ${result.files.join(', ')}`,
        `next: ${where === '.' ? '' : `cd ${where} && `}npx peerhost dev   (then open http://127.0.0.1:8787/hello)`
      ].join('\n'), { event: 'init', ...result })
    })
}
