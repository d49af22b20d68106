import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));

interface ComposeService {
  image?: string;
  build?: string | { context?: string };
  profiles?: string[];
  depends_on?: string[] | Record<string, { condition?: string }>;
  command?: string | string[];
  ports?: Array<string | { published?: string | number; target?: number }>;
  environment?: Record<string, string | number | boolean> | string[];
  volumes?: Array<string | { type?: string; source?: string }>;
  healthcheck?: { test?: string | string[] };
}

// merge: the engine services share their image, environment and mounts through `<<: *nudge`.
const compose = parse(readFileSync(join(root, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
  services: Record<string, ComposeService>;
};

function service(name: string): ComposeService {
  const found = compose.services[name];
  if (found === undefined) throw new Error(`docker-compose.yml has no service "${name}"`);
  return found;
}

function publishedPorts(svc: ComposeService): string[] {
  return (svc.ports ?? []).map((p) =>
    // "9092:9092" or "127.0.0.1:9092:9092": the host port is the second-to-last field.
    typeof p === 'string' ? (p.split(':').slice(-2)[0] ?? '') : String(p.published),
  );
}

function env(svc: ComposeService): Record<string, string> {
  const raw = svc.environment ?? {};
  if (Array.isArray(raw)) {
    return Object.fromEntries(raw.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
  }
  return Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, String(v)]));
}

function command(svc: ComposeService): string {
  return Array.isArray(svc.command) ? svc.command.join(' ') : (svc.command ?? '');
}

function dependsOn(svc: ComposeService): Record<string, string> {
  const raw = svc.depends_on ?? [];
  if (Array.isArray(raw)) return Object.fromEntries(raw.map((name) => [name, 'service_started']));
  return Object.fromEntries(Object.entries(raw).map(([name, d]) => [name, d.condition ?? 'service_started']));
}

const expectedPorts: Record<string, string> = { kafka: '9092', redis: '6379', prometheus: '9090', grafana: '3000', engine: '8080' };

describe('docker-compose.yml', () => {
  it.each(Object.entries(expectedPorts))('has service %s publishing port %s', (name, port) => {
    expect(publishedPorts(service(name))).toContain(port);
  });

  it('pins every image to a version tag, never latest', () => {
    for (const [name, svc] of Object.entries(compose.services)) {
      const tag = /^[^:@]+(?::([^@]+))?/.exec(svc.image ?? '')?.[1];
      expect(tag, `service ${name} image "${svc.image}"`).toMatch(/\d/);
      expect(tag).not.toBe('latest');
    }
  });

  it('runs Redis durable and never evicting', () => {
    const command = service('redis').command;
    const line = Array.isArray(command) ? command.join(' ') : (command ?? '');
    expect(line).toContain('--maxmemory-policy noeviction');
    expect(line).toContain('--appendonly yes');
  });

  it('runs Kafka as a single KRaft node', () => {
    const kafka = env(service('kafka'));
    expect(kafka.KAFKA_PROCESS_ROLES?.split(',').sort()).toEqual(['broker', 'controller']);
    expect(kafka.KAFKA_NODE_ID).toBe('1');
    expect(kafka.KAFKA_CONTROLLER_QUORUM_VOTERS).toMatch(/^1@/);
    expect(kafka.KAFKA_ADVERTISED_LISTENERS).toContain('localhost:9092');
    expect(kafka.CLUSTER_ID).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(kafka.KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR).toBe('1');
  });

  it('health-checks Kafka and Redis', () => {
    expect(service('kafka').healthcheck?.test).toBeDefined();
    expect(service('redis').healthcheck?.test).toBeDefined();
  });

  it('mounts only files that exist in the repository', () => {
    const mounts = Object.values(compose.services).flatMap((svc) =>
      (svc.volumes ?? []).flatMap((v) => {
        const source = typeof v === 'string' ? v.split(':')[0] : v.source;
        // Relative paths are bind mounts; bare names are named volumes.
        return source !== undefined && source.startsWith('.') ? [source] : [];
      }),
    );
    expect(mounts).toEqual(expect.arrayContaining(['./config/prometheus', './config/grafana/provisioning', './config/grafana/dashboards', './config/nudge.yaml']));
    for (const source of mounts) expect(existsSync(join(root, source)), source).toBe(true);
  });

  it('gives Prometheus a config that scrapes the engine service and loads the alert rules, and Grafana a Prometheus data source', () => {
    const prometheus = parse(readFileSync(join(root, 'config/prometheus/prometheus.yml'), 'utf8')) as {
      rule_files?: string[];
      scrape_configs: Array<{ job_name: string; metrics_path?: string; static_configs: Array<{ targets: string[] }> }>;
    };
    const nudge = prometheus.scrape_configs.find((job) => job.job_name === 'nudge');
    expect(nudge?.metrics_path ?? '/metrics').toBe('/metrics');
    const port = env(service('engine')).NUDGE_HTTP_PORT;
    expect(nudge?.static_configs.flatMap((c) => c.targets)).toContain(`engine:${port}`);
    expect(prometheus.rule_files).toContain('rules/*.yml');
    expect(service('prometheus').volumes).toContain('./config/prometheus:/etc/prometheus:ro');

    const grafana = parse(
      readFileSync(join(root, 'config/grafana/provisioning/datasources/prometheus.yml'), 'utf8'),
    ) as { datasources: Array<{ type: string; url: string }> };
    expect(grafana.datasources).toContainEqual(
      expect.objectContaining({ type: 'prometheus', url: 'http://prometheus:9090' }),
    );
  });

  it('provisions the dashboards and lets anyone view them', () => {
    const grafana = service('grafana');
    expect(grafana.volumes).toContain('./config/grafana/dashboards:/var/lib/grafana/dashboards/nudge:ro');
    expect(env(grafana)).toMatchObject({ GF_AUTH_ANONYMOUS_ENABLED: 'true', GF_AUTH_ANONYMOUS_ORG_ROLE: 'Viewer' });
    const home = env(grafana).GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH ?? '';
    expect(existsSync(join(root, 'config/grafana/dashboards', home.replace('/var/lib/grafana/dashboards/nudge/', ''))), home).toBe(true);
  });

  it('runs nudge run and nudge worker from the image the Dockerfile builds, wired to the compose Kafka and Redis', () => {
    const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(/^FROM node:20-bookworm$/m);
    expect(dockerfile).toContain('CKJS_LINKING=dynamic');
    expect(dockerfile).toMatch(/ENTRYPOINT \["node", "--max-semi-space-size=32", "bin\/nudge.js"\]/);
    for (const name of ['engine', 'worker', 'loadgen']) {
      const svc = service(name);
      expect(svc.build, name).toBe('.');
      expect(svc.image, name).toBe(service('engine').image);
      const e = env(svc);
      // The INTERNAL listener: containers must not be sent to "localhost:9092".
      expect(e.NUDGE_KAFKA_BROKERS, name).toBe('kafka:29092');
      expect(e.REDIS_URL, name).toBe('redis://redis:6379');
      expect(existsSync(join(root, e.NUDGE_CONFIG ?? 'missing')), `${name} NUDGE_CONFIG`).toBe(true);
    }
    expect(command(service('engine'))).toBe('run');
    expect(command(service('worker'))).toBe('worker');
    // Prometheus in another container scrapes the ops port: it must not listen on loopback only.
    expect(env(service('engine')).NUDGE_HTTP_HOST).toBe('0.0.0.0');
    expect(dependsOn(service('engine'))).toMatchObject({ redis: 'service_healthy', 'kafka-init': 'service_completed_successfully' });
    expect(command(service('kafka-init'))).toContain('nudge.events');
  });

  it('starts synthetic traffic only with the loadgen profile', () => {
    expect(service('loadgen').profiles).toEqual(['loadgen']);
    expect(command(service('loadgen'))).toMatch(/^loadgen --rate \d+/);
    for (const [name, svc] of Object.entries(compose.services)) if (name !== 'loadgen') expect(svc.profiles, name).toBeUndefined();
  });

  it('keeps the host node_modules out of the image build', () => {
    const ignore = readFileSync(join(root, '.dockerignore'), 'utf8').split('\n');
    expect(ignore).toContain('node_modules');
  });
});
