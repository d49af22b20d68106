import { Registry, collectDefaultMetrics } from 'prom-client';

/**
 * A fresh registry with Node process metrics (CPU, memory, event-loop lag, GC). Never the
 * prom-client global default registry: two engines in one process (tests, the demo) would
 * collide with "already registered" errors (prom-client #334, #439).
 */
export function createMetricsRegistry(options: { processMetrics?: boolean } = {}): Registry {
  const registry = new Registry();
  if (options.processMetrics ?? true) {
    collectDefaultMetrics({ register: registry, prefix: 'nudge_' });
  }
  return registry;
}
