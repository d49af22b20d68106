import { describe, expect, it } from 'vitest';
import { documentedMetrics, registryWithEveryMetric } from '../support/metrics-catalogue.js';

/**
 * docs/metrics.md is the catalogue an SRE reads: a metric the engine registers and the page
 * does not list (or lists with another type or other labels) fails here, and so does a row
 * for a metric that no longer exists.
 */
const LINUX_ONLY = new Set(['nudge_process_open_fds', 'nudge_process_max_fds']);

describe('docs/metrics.md', () => {
  const registry = registryWithEveryMetric();
  const doc = documentedMetrics();
  const registered = registry.getMetricsAsArray().map((m) => {
    const metric = m as unknown as { name: string; type: string; labelNames?: string[] };
    return { name: metric.name, type: metric.type, labels: [...(metric.labelNames ?? [])].filter((l) => l !== 'le').sort() };
  });

  it('lists every metric the engine registers, with its type and labels', () => {
    const missing = registered.filter((m) => !doc.has(m.name)).map((m) => m.name);
    expect(missing, 'add these to docs/metrics.md').toEqual([]);
    for (const m of registered) {
      const row = doc.get(m.name);
      expect(row?.type, `${m.name} type`).toBe(m.type);
      expect([...(row?.labels ?? [])].sort(), `${m.name} labels`).toEqual(m.labels);
    }
  });

  it('lists no metric the engine does not register', () => {
    const names = new Set(registered.map((m) => m.name));
    const stale = [...doc.keys()].filter((n) => !names.has(n) && !(LINUX_ONLY.has(n) && process.platform !== 'linux'));
    expect(stale, 'remove these from docs/metrics.md, or register them').toEqual([]);
  });

  it('finds a few dozen metrics (the parser reads the tables)', () => {
    expect(doc.size).toBeGreaterThan(60);
  });
});
