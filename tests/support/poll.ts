/** Polls `probe` until it returns something truthy, with a deadline and a message saying what was awaited. */
export async function until<T>(what: string, timeoutMs: number, probe: () => T | null | undefined | false | Promise<T | null | undefined | false>, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== null && v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * Polls `read` until `done` holds (a condition in another process or server, with no event to
 * await), failing after `timeoutMs` with what was last seen. Unlike `until`, a read that throws
 * (a server restarting under a chaos test) is tried again instead of failing the wait.
 */
export async function pollUntil<T>(read: () => Promise<T>, done: (v: T) => boolean, what: string, timeoutMs: number, pollMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await read().catch((err: unknown) => err as T);
    if (!(v instanceof Error) && done(v)) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${timeoutMs} ms (last: ${v instanceof Error ? v.message : JSON.stringify(v)})`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}
