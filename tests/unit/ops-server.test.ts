import { afterEach, describe, expect, it } from 'vitest';
import { Counter } from 'prom-client';
import { OpsServer } from '../../src/http/ops-server.js';
import { createMetricsRegistry } from '../../src/metrics/registry.js';
import { silentLogger } from '../../src/log.js';
import { capturedLogger } from '../support/touch-harness.js';

const servers: OpsServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function start(opts: Partial<ConstructorParameters<typeof OpsServer>[0]> = {}) {
  const registry = createMetricsRegistry();
  const server = new OpsServer({ host: '127.0.0.1', port: 0, registry, logger: silentLogger(), ...opts });
  servers.push(server);
  const { url } = await server.listen();
  return { server, url, registry };
}

describe('OpsServer', () => {
  it('answers /healthz and serves Prometheus text with process metrics on /metrics', async () => {
    const { url, registry } = await start();
    new Counter({ name: 'nudge_test_total', help: 'a test counter', registers: [registry] }).inc(3);
    const health = await fetch(`${url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok' });
    const metrics = await fetch(`${url}/metrics`);
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get('content-type')).toContain('text/plain');
    const text = await metrics.text();
    expect(text).toContain('nudge_test_total 3');
    expect(text).toMatch(/^nudge_process_cpu_user_seconds_total \d/m);
    expect(text).toContain('nudge_nodejs_eventloop_lag_seconds');
  });

  it('is ready only when every readiness check passes', async () => {
    let kafkaReady = false;
    const { url } = await start({
      readiness: [
        { name: 'redis', check: () => true },
        { name: 'kafka', check: async () => kafkaReady },
        { name: 'broken', check: () => { throw new Error('boom'); } },
      ],
    });
    let res = await fetch(`${url}/readyz`);
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ ready: false, checks: { redis: true, kafka: false, broken: false } });
    kafkaReady = true;
    res = await fetch(`${url}/readyz`);
    expect(((await res.json()) as { checks: Record<string, boolean> }).checks.kafka).toBe(true);
  });

  it('routes /v1 JSON endpoints with parameters, and answers 404 and 405 with a hint', async () => {
    const { server, url } = await start();
    server.route('GET', '/v1/users/:userId', (_req, params) => ({ status: 200, body: { user: params.userId } }));
    const ok = await fetch(`${url}/v1/users/u%2F1`);
    expect(await ok.json()).toEqual({ user: 'u/1' });
    const wrongMethod = await fetch(`${url}/v1/users/u1`, { method: 'POST' });
    expect(wrongMethod.status).toBe(405);
    const missing = await fetch(`${url}/v1/nothing`);
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: string }).error).toContain('/healthz');
  });

  it('requires the bearer token on /v1 (and on /metrics when configured) when one is set', async () => {
    const token = 'a-long-enough-token-123';
    const { server, url } = await start({ token, metricsRequireToken: true });
    server.route('GET', '/v1/ping', () => ({ status: 200, body: { pong: true } }));
    expect((await fetch(`${url}/v1/ping`)).status).toBe(401);
    expect((await fetch(`${url}/v1/ping`, { headers: { authorization: 'Bearer wrong-token-of-same-len' } })).status).toBe(401);
    expect((await fetch(`${url}/v1/ping`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
    expect((await fetch(`${url}/metrics`)).status).toBe(401);
    expect((await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
    // Health and readiness stay open for load balancers and orchestrators.
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
  });

  it('reads the scheme case-insensitively (RFC 7235) but the token exactly; refuses prefixes, extensions and empty tokens', async () => {
    const token = 'a-long-enough-token-123';
    const { server, url } = await start({ token });
    server.route('GET', '/v1/ping', () => ({ status: 200, body: { pong: true } }));
    const status = async (authorization: string) => (await fetch(`${url}/v1/ping`, { headers: { authorization } })).status;
    expect(await status(`bearer ${token}`)).toBe(200);
    expect(await status(`BEARER ${token}`)).toBe(200);
    for (const wrong of [`Bearer ${token.toUpperCase()}`, `Bearer ${token.slice(0, -1)}`, `Bearer ${token}x`, `Bearer ${token} ${token}`, 'Bearer ', `Basic ${token}`, token]) {
      expect([wrong, await status(wrong)]).toEqual([wrong, 401]);
    }
  });

  it('never writes the token to its log, even when a route fails on a request that carries it', async () => {
    const token = 'a-long-enough-token-456';
    const { logger, text } = capturedLogger();
    const { server, url } = await start({ token, logger });
    server.route('GET', '/v1/boom', () => {
      throw new Error('route failed');
    });
    const res = await fetch(`${url}/v1/boom?token=${token}`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(500);
    expect(text()).toContain('ops request failed');
    expect(text()).not.toContain(token);
  });
});
