import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { documentedMetrics } from '../support/metrics-catalogue.js';
import { dashboards, metricNamesIn, panelQueries, panelsOf } from '../support/grafana-panels.js';

/**
 * The provisioned Grafana dashboards, checked as files: they load (valid JSON, unique ids),
 * point at the provisioned Prometheus data source, lay out without overlap, and query only
 * metrics the engine documents. Whether each query returns data is checked against a real
 * Prometheus in tests/integration/prometheus-dashboards.test.ts.
 */
const root = fileURLToPath(new URL('../../', import.meta.url));
const datasources = parse(readFileSync(`${root}config/grafana/provisioning/datasources/prometheus.yml`, 'utf8')) as {
  datasources: { uid: string; type: string }[];
};
const providers = parse(readFileSync(`${root}config/grafana/provisioning/dashboards/nudge.yml`, 'utf8')) as {
  providers: { type: string; options: { path: string } }[];
};
const all = dashboards();

describe('Grafana dashboards', () => {
  it('are the three the SRE view needs, with unique uids', () => {
    expect(all.map((d) => d.title).sort()).toEqual(['Nudge — Engagement', 'Nudge — Journeys', 'Nudge — Pipeline health']);
    expect(new Set(all.map((d) => d.uid)).size).toBe(all.length);
  });

  it('are provisioned from the directory docker-compose.yml mounts them at', () => {
    const compose = parse(readFileSync(`${root}docker-compose.yml`, 'utf8'), { merge: true }) as { services: Record<string, { volumes?: string[] }> };
    const mounts = compose.services.grafana?.volumes ?? [];
    const provider = providers.providers[0];
    expect(provider?.type).toBe('file');
    expect(mounts).toContain(`./config/grafana/dashboards:${provider?.options.path}:ro`);
  });

  it.each(all.map((d) => [d.title, d] as const))('%s: every panel has a unique id, a title, and queries the provisioned Prometheus', (_, d) => {
    const uid = datasources.datasources.find((s) => s.type === 'prometheus')?.uid;
    const panels = panelsOf(d);
    expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
    for (const p of panels) {
      expect(p.title, `panel ${p.id}`).not.toBe('');
      if (p.type === 'row') continue;
      expect(p.datasource?.uid, p.title).toBe(uid);
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
      for (const t of p.targets ?? []) {
        expect(t.datasource?.uid ?? uid, p.title).toBe(uid);
        expect(t.expr.trim(), `${p.title} ${t.refId}`).not.toBe('');
      }
      expect(new Set((p.targets ?? []).map((t) => t.refId)).size, p.title).toBe(p.targets?.length);
    }
  });

  it.each(all.map((d) => [d.title, d] as const))('%s: panels fit the 24-column grid without overlapping', (_, d) => {
    const cells = new Map<string, string>();
    for (const p of panelsOf(d)) {
      const { x, y, w, h } = p.gridPos;
      expect(x + w, p.title).toBeLessThanOrEqual(24);
      for (let i = x; i < x + w; i++) {
        for (let j = y; j < y + h; j++) {
          const key = `${i},${j}`;
          expect(cells.get(key), `${p.title} overlaps`).toBeUndefined();
          cells.set(key, p.title);
        }
      }
    }
  });

  it('query only metrics docs/metrics.md lists', () => {
    const doc = documentedMetrics();
    const unknown = panelQueries().flatMap((q) => metricNamesIn(q.expr).filter((n) => !doc.has(n)).map((n) => `${q.dashboard} / ${q.panel}: ${n}`));
    expect(unknown).toEqual([]);
  });

  it('cover what the issue asks each dashboard to show', () => {
    const used = (title: string) => new Set(panelQueries().filter((q) => q.dashboard === title).flatMap((q) => metricNamesIn(q.expr)));
    expect([...used('Nudge — Engagement')]).toEqual(
      expect.arrayContaining(['nudge_active_users', 'nudge_stickiness_ratio', 'nudge_new_users_today', 'nudge_visit_gap_users', 'nudge_lifecycle_users']),
    );
    expect([...used('Nudge — Journeys')]).toEqual(
      expect.arrayContaining([
        'nudge_journey_triggered_total',
        'nudge_journey_decisions_total',
        'nudge_journey_decision_reasons_total',
        'nudge_journey_conversions_total',
        'nudge_journey_lift_ratio',
        'nudge_journey_budget_spent',
      ]),
    );
    expect([...used('Nudge — Pipeline health')]).toEqual(
      expect.arrayContaining([
        'nudge_events_consumed_total',
        'nudge_consumer_lag',
        'nudge_event_to_commit_seconds',
        'nudge_events_invalid_total',
        'nudge_timer_lag_seconds',
        'nudge_io_retries_total',
        'nudge_touch_jobs',
        'nudge_touch_deliveries_total',
      ]),
    );
  });
});
