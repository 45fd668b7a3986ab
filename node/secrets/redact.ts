/**
 * Taking a job's secret values out of what leaves the sandbox besides the response: the
 * function's logs and error message (a function that prints its API key does not ship it into
 * the gateway's or the builder's logs). The response is the function's output and stays as it is.
 */
import type { ExecuteOptions, ExecutionJob, ExecutionResult, Executor } from '#sandbox'

/** `text` with every secret value of at least 4 characters replaced by a marker no longer than it. */
export function redact (text: string, secrets: Record<string, string>): string {
  // longest first, so a secret that contains another is replaced whole
  for (const [name, value] of Object.entries(secrets).sort(([, a], [, b]) => b.length - a.length)) {
    if (value.length < 4 || !text.includes(value)) continue
    const marker = `[secret ${name}]`
    text = text.split(value).join(marker.length <= value.length ? marker : '*'.repeat(value.length))
  }
  return text
}

/** The result with the secret values taken out of its logs and error message. */
export function redactSecrets (result: ExecutionResult, secrets: Record<string, string>): ExecutionResult {
  const out = { ...result, logs: redact(result.logs, secrets) }
  if (result.error !== undefined) out.error = { ...result.error, message: redact(result.error.message, secrets) }
  return out
}

/**
 * Runs `job` with `secrets` merged over its public env for this execution only (never stored or
 * cached), and takes their values out of the logs and error message it returns.
 */
export async function executeWithSecrets (executor: Pick<Executor, 'execute'>, job: ExecutionJob, secrets: Record<string, string> | undefined, options?: ExecuteOptions): Promise<ExecutionResult> {
  if (secrets === undefined) return await executor.execute(job, options)
  return redactSecrets(await executor.execute({ ...job, env: { ...job.env, ...secrets } }, options), secrets)
}
