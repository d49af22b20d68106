import type { Redis } from 'ioredis';
import { laneKeys } from '../../src/state/keys.js';

/**
 * Lane fences as Redis holds them (the last applied offset per partition, -1 = nothing yet):
 * what tests read to see how far an engine in another process has got, and to kill it mid-run.
 */
export async function readFences(redis: Redis, namespace: string, topic: string, partitions: Iterable<number>): Promise<Map<number, number>> {
  const list = [...partitions];
  const pipeline = redis.pipeline();
  for (const p of list) pipeline.hget(laneKeys(namespace, topic, p).fence, 'offset');
  const out = new Map<number, number>();
  ((await pipeline.exec()) ?? []).forEach(([err, v], i) => {
    if (err) throw err;
    out.set(list[i] as number, v == null ? -1 : Number(v));
  });
  return out;
}

/** Messages applied so far over all lanes: the fence is the last applied offset, so fence + 1 each. */
export function appliedMessages(fences: ReadonlyMap<number, number>): number {
  let n = 0;
  for (const offset of fences.values()) n += offset + 1;
  return n;
}

export function describeFences(fences: ReadonlyMap<number, number>, ends: ReadonlyMap<number, number>): string {
  return [...ends].map(([p, high]) => `p${p}: ${fences.get(p) ?? -1}/${high - 1}`).join(', ');
}

/**
 * Polls the fences until `done(fences)` holds. Polling is the only way here: the engine runs in
 * another process and Redis has no notification for a hash field reaching a value.
 */
export async function waitForFences(
  redis: Redis,
  namespace: string,
  topic: string,
  ends: ReadonlyMap<number, number>,
  done: (fences: Map<number, number>) => boolean,
  what: string,
  timeoutMs: number,
  pollMs = 20,
): Promise<Map<number, number>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const fences = await readFences(redis, namespace, topic, ends.keys());
    if (done(fences)) return fences;
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${timeoutMs} ms (${describeFences(fences, ends)})`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}
