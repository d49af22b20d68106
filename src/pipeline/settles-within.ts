/**
 * Resolves true when `promise` settles (either way) within `ms`, false once `ms` passed first;
 * never rejects, and leaves no timer behind. An infinite `ms` waits as long as it takes. For
 * shutdown paths that must not hang on a Redis or broker that is down (Engine.stop).
 */
export async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  const settled = promise.then(
    () => true,
    () => true,
  );
  if (!Number.isFinite(ms)) return settled;
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), Math.max(0, ms));
  });
  try {
    return await Promise.race([settled, expired]);
  } finally {
    clearTimeout(timer);
  }
}
