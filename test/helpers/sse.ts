/**
 * Reads a Server-Sent Events response whose events are `data: <i> <producedAt ms>`, noting when
 * each arrived: streaming tests compare arrival with production.
 */
export interface SseArrival { i: number, producedAt: number, arrivedAt: number }

export async function sseArrivals (res: Response): Promise<SseArrival[]> {
  const reader = res.body!.getReader()
  const arrivals: SseArrival[] = []
  let text = ''
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    text += new TextDecoder().decode(value)
    for (const m of text.matchAll(/data: (\d) (\d+)\n\n/g)) {
      if (!arrivals.some(a => a.i === Number(m[1]))) arrivals.push({ i: Number(m[1]), producedAt: Number(m[2]), arrivedAt: Date.now() })
    }
  }
  return arrivals
}
