import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const DASHBOARD_DIR = fileURLToPath(new URL('../../config/grafana/dashboards', import.meta.url));

export interface GrafanaTarget {
  refId: string;
  expr: string;
  legendFormat?: string;
  datasource?: { type: string; uid: string };
}

export interface GrafanaPanel {
  id: number;
  type: string;
  title: string;
  gridPos: { h: number; w: number; x: number; y: number };
  datasource?: { type: string; uid: string };
  targets?: GrafanaTarget[];
  panels?: GrafanaPanel[];
}

export interface Dashboard {
  file: string;
  uid: string;
  title: string;
  panels: GrafanaPanel[];
}

export function dashboards(): Dashboard[] {
  return readdirSync(DASHBOARD_DIR)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((file) => ({ file, ...(JSON.parse(readFileSync(join(DASHBOARD_DIR, file), 'utf8')) as Omit<Dashboard, 'file'>) }));
}

/** Every panel, rows' nested panels included. */
export function panelsOf(d: Dashboard): GrafanaPanel[] {
  return d.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
}

export interface PanelQuery {
  dashboard: string;
  panel: string;
  refId: string;
  expr: string;
}

/** Every query of every panel of every dashboard. */
export function panelQueries(): PanelQuery[] {
  return dashboards().flatMap((d) =>
    panelsOf(d).flatMap((p) => (p.targets ?? []).map((t) => ({ dashboard: d.title, panel: p.title, refId: t.refId, expr: t.expr }))),
  );
}

/** Grafana's built-in variables as Prometheus' HTTP API needs them spelled out. */
export function withGrafanaVariables(expr: string, v: { rateInterval: string; range: string }): string {
  return expr.replaceAll('$__rate_interval', v.rateInterval).replaceAll('$__range', v.range);
}

/** Metric names a PromQL expression uses (histogram series mapped to their family). */
export function metricNamesIn(expr: string): string[] {
  const names = [...expr.matchAll(/\b(nudge_[a-z0-9_]+)/g)].map((m) => (m[1] as string).replace(/_(bucket|sum|count)$/, ''));
  return [...new Set(names)];
}
