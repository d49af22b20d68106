import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { Counter, Gauge, Histogram } from 'prom-client';
import { documentedMetrics, registryWithEveryMetric } from '../support/metrics-catalogue.js';
import { metricNamesIn } from '../support/grafana-panels.js';
import { prometheusBinaries } from '../support/prometheus-binaries.js';

/**
 * The Prometheus side, checked by Prometheus' own tool: the config and rules load, every alert
 * passes its promtool unit tests, and the metrics text the engine serves has no lint problem.
 * The rules are also checked here without promtool: every alert has a unit test, and every
 * metric an alert uses is one the engine documents.
 */
const dir = fileURLToPath(new URL('../../config/prometheus', import.meta.url));
const rulesDir = join(dir, 'rules');
const testsDir = join(dir, 'tests');
const ruleFiles = readdirSync(rulesDir).filter((f) => f.endsWith('.yml')).map((f) => join(rulesDir, f));
const testFiles = readdirSync(testsDir).filter((f) => f.endsWith('.yml')).map((f) => join(testsDir, f));
const run = promisify(execFile);

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
}
const rules: Rule[] = ruleFiles.flatMap((f) => (parse(readFileSync(f, 'utf8')) as { groups: { rules: Rule[] }[] }).groups.flatMap((g) => g.rules));
const alerts = rules.flatMap((r) => (r.alert !== undefined ? [r.alert] : []));

async function promtool(args: string[], stdin?: string): Promise<string> {
  const child = run('promtool', args, { cwd: dir, timeout: 60_000 });
  if (stdin !== undefined) {
    child.child.stdin?.end(stdin);
  }
  try {
    const { stdout, stderr } = await child;
    return stdout + stderr;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`promtool ${args.join(' ')} failed:\n${e.stdout ?? ''}${e.stderr ?? ''}${e.message}`);
  }
}

describe('alert rules (static)', () => {
  it('has the alerts the SRE runbook names', () => {
    expect(alerts).toEqual(
      expect.arrayContaining([
        'NudgeConsumerLagGrowing',
        'NudgeNoEvents',
        'NudgeDeadLetterSpike',
        'NudgeTimerSweepBehind',
        'NudgeDeliveryFailures',
        'NudgeRedisErrors',
        'NudgeJourneyBudgetExhausted',
      ]),
    );
  });

  it('gives every alert a promtool unit test case', () => {
    const tested = new Set(
      testFiles.flatMap((f) =>
        (parse(readFileSync(f, 'utf8')) as { tests: { alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[] }).tests.flatMap((t) =>
          (t.alert_rule_test ?? []).filter((a) => a.exp_alerts.length > 0).map((a) => a.alertname),
        ),
      ),
    );
    expect(alerts.filter((a) => !tested.has(a)), 'alerts without a firing test case').toEqual([]);
  });

  it('uses only metrics docs/metrics.md lists', () => {
    const doc = documentedMetrics();
    const unknown = rules.flatMap((r) => metricNamesIn(r.expr).filter((n) => !doc.has(n)).map((n) => `${r.alert ?? r.record}: ${n}`));
    expect(unknown).toEqual([]);
  });
});

describe.runIf(prometheusBinaries(['promtool'], 'promtool checks of config/prometheus'))('promtool', () => {
  it('accepts config/prometheus/prometheus.yml and the rule files it loads', async () => {
    const out = await promtool(['check', 'config', 'prometheus.yml']);
    expect(out).toContain('SUCCESS');
    expect(out).toMatch(new RegExp(`SUCCESS: ${ruleFiles.length} rule files found`));
    expect(await promtool(['check', 'rules', ...ruleFiles])).toContain(`SUCCESS: ${rules.length} rules found`);
  });

  it('passes every alert unit test (promtool test rules)', async () => {
    const out = await promtool(['test', 'rules', ...testFiles]);
    expect(out).toContain('SUCCESS');
    expect(out).not.toContain('FAILED');
  });

  it('finds no problem in the metrics text of every metric the engine registers (promtool check metrics)', async () => {
    const registry = registryWithEveryMetric();
    // Labelled metrics print nothing until a series exists: give each one, so every family is linted.
    for (const metric of registry.getMetricsAsArray()) {
      const m = metric as unknown as { labelNames?: string[] };
      const labels = Object.fromEntries((m.labelNames ?? []).map((l) => [l, 'x']));
      if (metric instanceof Counter) metric.inc(labels, 1);
      else if (metric instanceof Gauge) metric.set(labels, 1);
      else if (metric instanceof Histogram) metric.observe(labels, 0.1);
    }
    const text = await registry.metrics();
    expect(text).toContain('nudge_journey_budget_remaining{journey="x",period="x"} 1');
    expect(await promtool(['check', 'metrics'], text)).toBe('');
  });
});
