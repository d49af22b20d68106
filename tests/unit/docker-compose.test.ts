import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));

interface ComposeService {
  image?: string;
  command?: string | string[];
  ports?: Array<string | { published?: string | number; target?: number }>;
  environment?: Record<string, string | number | boolean> | string[];
  volumes?: Array<string | { type?: string; source?: string }>;
  healthcheck?: { test?: string | string[] };
}

const compose = parse(readFileSync(join(root, 'docker-compose.yml'), 'utf8')) as {
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

const expectedPorts: Record<string, string> = { kafka: '9092', redis: '6379', prometheus: '9090', grafana: '3000' };

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
    expect(mounts).toEqual(expect.arrayContaining(['./config/prometheus', './config/grafana/provisioning']));
    for (const source of mounts) expect(existsSync(join(root, source)), source).toBe(true);
  });

  it('gives Prometheus a config that scrapes Nudge and Grafana a Prometheus data source', () => {
    const prometheus = parse(readFileSync(join(root, 'config/prometheus/prometheus.yml'), 'utf8')) as {
      scrape_configs: Array<{ job_name: string; metrics_path?: string; static_configs: Array<{ targets: string[] }> }>;
    };
    const nudge = prometheus.scrape_configs.find((job) => job.job_name === 'nudge');
    expect(nudge?.metrics_path ?? '/metrics').toBe('/metrics');
    expect(nudge?.static_configs.flatMap((c) => c.targets)).toContain('host.docker.internal:8080');

    const grafana = parse(
      readFileSync(join(root, 'config/grafana/provisioning/datasources/prometheus.yml'), 'utf8'),
    ) as { datasources: Array<{ type: string; url: string }> };
    expect(grafana.datasources).toContainEqual(
      expect.objectContaining({ type: 'prometheus', url: 'http://prometheus:9090' }),
    );
  });
});
