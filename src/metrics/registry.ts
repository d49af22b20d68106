import { Registry, collectDefaultMetrics } from 'prom-client';

const PREFIX = 'nudge_';

/**
 * prom-client's default gauges named `*_total`: Prometheus reserves that suffix for counters,
 * so `promtool check metrics` rejects them (and `rate()` on them would be wrong). They are the
 * sums of `nudge_nodejs_active_handles{type}` etc., which stay, so nothing is lost.
 */
const MISNAMED_DEFAULTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

/**
 * A fresh registry with Node process metrics (CPU, memory, event-loop lag, GC). Never the
 * prom-client global default registry: two engines in one process (tests, the demo) would
 * collide with "already registered" errors (prom-client #334, #439).
 */
export function createMetricsRegistry(options: { processMetrics?: boolean } = {}): Registry {
  const registry = new Registry();
  if (options.processMetrics ?? true) {
    collectDefaultMetrics({ register: registry, prefix: PREFIX });
    for (const name of MISNAMED_DEFAULTS) registry.removeSingleMetric(PREFIX + name);
  }
  return registry;
}
