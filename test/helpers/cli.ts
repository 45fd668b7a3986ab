/** Runs the real `peerhost` command line as a child process, as a builder would. */
import { spawn } from 'node:child_process'
import { CLI } from '../../bin/spawn.ts'

export interface CliResult { code: number | null, stdout: string, stderr: string, lines: any[] }

/** `peerhost <args>` with extra `env`, and `input` written to its standard input (else none). */
export async function cli (args: string[], env: NodeJS.ProcessEnv = {}, input?: string): Promise<CliResult> {
  const proc = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  proc.stdout!.on('data', d => { stdout += d })
  proc.stderr!.on('data', d => { stderr += d })
  if (input !== undefined) proc.stdin!.end(input)
  const code = await new Promise<number | null>(resolve => proc.once('exit', resolve))
  const lines = stdout.split('\n').flatMap(l => { try { return [JSON.parse(l)] } catch { return [] } })
  return { code, stdout, stderr, lines }
}
