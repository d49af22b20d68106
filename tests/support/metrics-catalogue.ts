import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Registry } from 'prom-client';
import { silentLogger } from '../../src/log.js';
import { PipelineMetrics } from '../../src/metrics/pipeline-metrics.js';
import { createMetricsRegistry } from '../../src/metrics/registry.js';
import { StateGauges } from '../../src/metrics/state-gauges.js';
import { TouchMetrics } from '../../src/touches/touch-metrics.js';

/**
 * A registry holding every metric an engine running journeys registers (the classes it wires,
 * never started), without Redis or Kafka: what the doc test and `promtool check metrics`
 * examine. The live engine's /metrics is compared in the Prometheus integration test.
 */
export function registryWithEveryMetric(): Registry {
  const registry = createMetricsRegistry();
  new PipelineMetrics(registry);
  new TouchMetrics(registry, ['push']);
  const never = () => Promise.reject(new Error('not started'));
  new StateGauges({
    registry,
    logger: silentLogger(),
    today: () => 0,
    activityMetrics: [],
    journeys: [],
    engagement: { active: never, newUsers: never, stageCounts: never, visitGaps: never },
    journeySources: { stats: never, spent: never },
  });
  return registry;
}

export interface DocumentedMetric {
  name: string;
  type: string;
  labels: string[];
}

/** The metric rows of docs/metrics.md: `| \`name\` | type | \`label\`, ... | meaning |`. */
export function documentedMetrics(): Map<string, DocumentedMetric> {
  const text = readFileSync(fileURLToPath(new URL('../../docs/metrics.md', import.meta.url)), 'utf8');
  const out = new Map<string, DocumentedMetric>();
  for (const m of text.matchAll(/^\| `(nudge_[a-z0-9_]+)` \| (counter|gauge|histogram|summary) \|([^|]*)\|/gm)) {
    const labels = [...(m[3] ?? '').matchAll(/`([a-z_]+)`/g)].map((l) => l[1] as string);
    out.set(m[1] as string, { name: m[1] as string, type: m[2] as string, labels });
  }
  return out;
}

/** Metric family names in Prometheus text output (from its `# TYPE` lines). */
export function familiesIn(text: string): Map<string, string> {
  return new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1] as string, m[2] as string]));
}
