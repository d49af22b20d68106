/**
 * Runs `poll` now and then every `intervalMs` after the previous run ends, never two at once:
 * a poll waiting on a Redis that is down (commands wait for the reconnect) holds the next one
 * back instead of piling up behind it. A rejected poll goes to `onError` and the loop goes on.
 * The timer is unref'd so a forgotten loop never keeps a process alive. Returns the stop
 * function; a poll already running finishes, but nothing runs after it.
 */
export function pollEvery(intervalMs: number, poll: () => Promise<void>, onError: (err: unknown) => void): () => void {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const run = async (): Promise<void> => {
    try {
      await poll();
    } catch (err) {
      if (!stopped) onError(err);
    }
    if (stopped) return;
    timer = setTimeout(() => void run(), intervalMs);
    timer.unref();
  };
  void run();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
