import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { SendResult } from '../../src/touches/channel-adapter.js';
import { DisabledEndpoints } from '../../src/touches/channels/disabled-endpoints.js';
import { verifyWebhook } from '../../src/touches/channels/standard-webhooks.js';
import { WebhookAdapter, type WebhookAdapterOptions } from '../../src/touches/channels/webhook-adapter.js';
import { verifyStandardWebhook } from '../support/journey-scenario.js';
import { makeTouch, webhookSecret } from '../support/touch-harness.js';

/**
 * Issue 6, item 11 (webhooks), with the real adapter against real HTTP servers on loopback:
 * - signatures verify on the receiver, checked by the spec-derived verifier in tests/support
 *   (journey-scenario.ts `verifyStandardWebhook`, no code shared with src/), also during a
 *   secret rotation, and a tampered body fails;
 * - replayed and stale deliveries are detectable by a receiver built the way docs/security.md
 *   says (Nudge's `verifyWebhook` with a 300 s window, then `SET seen:<id> NX EX` in Redis):
 *   a captured delivery sent again is flagged as a replay, the same bytes past the window as
 *   stale, and Nudge's own retries carry the same webhook-id so they dedupe too;
 * - redirects (301, 302, 303, 307, 308) are never followed: the touch fails permanently and
 *   the Location target — another loopback server, or the cloud metadata address — is never
 *   requested;
 * - with allowPrivateAddresses off, private targets are refused before any connection: literal
 *   loopback/private/link-local addresses v4 and v6, the numeric and IPv4-mapped spellings of
 *   127.0.0.1, and a host name that resolves (through the system resolver) to loopback.
 * Through the BullMQ worker the same outcomes are covered in touches-delivery.test.ts; the
 * address ranges and the DNS guard (a fake resolver with mixed answers) in the unit tests
 * touches-address-guard.test.ts, the signing scheme's known-answer vector in
 * touches-signature.test.ts. Those are not repeated here.
 */

interface Recorded {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

interface Recorder {
  server: Server;
  port: number;
  requests: Recorded[];
}

/** A loopback server that records every request and answers with `reply`. */
async function recorder(reply: (req: Recorded) => { status: number; headers?: Record<string, string> } = () => ({ status: 200 })): Promise<Recorder> {
  const requests: Recorded[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const r = { path: req.url ?? '/', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      requests.push(r);
      const { status, headers } = reply(r);
      res.writeHead(status, headers ?? {});
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(server);
  return { server, port: (server.address() as AddressInfo).port, requests };
}

type Verdict = 'accepted' | 'replay' | `rejected: ${string}`;

/**
 * The receiver of docs/security.md: verify (signature, 300 s window) on the raw body, then
 * remember the webhook-id with SET NX EX; a second sight of an id is a replay. Its clock can
 * be moved forward to play a delivery captured earlier.
 */
async function guardedReceiver(secret: string, redis: Redis, namespace: string): Promise<Recorder & { state: { verdicts: Verdict[]; clockOffsetMs: number } }> {
  const state = { verdicts: [] as Verdict[], clockOffsetMs: 0 };
  const rec = await recorder();
  rec.server.removeAllListeners('request');
  rec.server.on('request', (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      rec.requests.push({ path: req.url ?? '/', headers: req.headers, body: raw.toString('utf8') });
      void (async (): Promise<Verdict> => {
        const v = verifyWebhook(secret, raw, req.headers, { toleranceSec: 300, nowMs: Date.now() + state.clockOffsetMs });
        if (!v.ok) return `rejected: ${v.reason}`;
        const first = await redis.set(`${namespace}:webhook:seen:${v.id}`, '1', 'EX', 600, 'NX');
        return first === null ? 'replay' : 'accepted';
      })().then((verdict) => {
        state.verdicts.push(verdict);
        // A replay is acknowledged (the sender must stop retrying) but not acted on.
        res.writeHead(verdict.startsWith('rejected') ? 400 : 200);
        res.end();
      });
    });
  });
  return Object.assign(rec, { state });
}

const servers: Server[] = [];
let redis: Redis;
let disabled: DisabledEndpoints;
const namespace = `wh${process.pid}x${Date.now().toString(36)}`;
const secret = webhookSecret();

beforeAll(() => {
  redis = new Redis(inject('redisUrl'));
  disabled = new DisabledEndpoints(redis, namespace);
});

afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
});

afterAll(async () => {
  const keys = await redis.keys(`${namespace}:*`);
  if (keys.length > 0) await redis.unlink(...keys);
  await redis.quit();
});

function adapter(url: string, over: Partial<WebhookAdapterOptions> = {}): WebhookAdapter {
  return new WebhookAdapter({ url, secret, disabled, allowPrivateAddresses: true, timeoutMs: 3_000, ...over });
}

async function send(a: WebhookAdapter, touch = makeTouch()): Promise<SendResult> {
  return a.send(touch, new AbortController().signal);
}

/** The delivery's headers as a plain map, for re-sending them byte for byte. */
function replayHeaders(h: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of ['content-type', 'webhook-id', 'webhook-timestamp', 'webhook-signature']) out[k] = String(h[k]);
  return out;
}

describe('webhook signatures (Standard Webhooks) verify on a real receiver', () => {
  it('every delivery carries id, timestamp and a v1 signature an independent verifier accepts; a tampered body fails', async () => {
    const rec = await recorder();
    const a = adapter(`http://127.0.0.1:${rec.port}/hooks`);
    const touches = [makeTouch(), makeTouch({ attributes: { product: 'fund', note: 'ünïcødé ✓' } })];
    for (const t of touches) expect(await send(a, t)).toEqual({ kind: 'ok' });
    expect(rec.requests.map((r) => r.headers['webhook-id'])).toEqual(touches.map((t) => t.touchId));
    for (const r of rec.requests) {
      expect(verifyStandardWebhook(secret, r.headers, r.body, Date.now())).toBeNull();
      expect(Math.abs(Number(r.headers['webhook-timestamp']) - Date.now() / 1000)).toBeLessThan(30);
      const tampered = r.body.replace('"template":"loan_offer"', '"template":"loan_offer2"');
      expect(tampered).not.toBe(r.body);
      expect(verifyStandardWebhook(secret, r.headers, tampered, Date.now())).toBe('no matching v1 signature');
      expect(verifyStandardWebhook(webhookSecret(), r.headers, r.body, Date.now())).toBe('no matching v1 signature');
    }
  });

  it('during a secret rotation each delivery is signed with both secrets; receivers holding either accept it', async () => {
    const rec = await recorder();
    const next = webhookSecret();
    const a = adapter(`http://127.0.0.1:${rec.port}/hooks`, { secret: [next, secret] });
    expect(await send(a)).toEqual({ kind: 'ok' });
    const [r] = rec.requests;
    expect(String(r?.headers['webhook-signature']).split(' ')).toHaveLength(2);
    expect(verifyStandardWebhook(next, r!.headers, r!.body, Date.now())).toBeNull();
    expect(verifyStandardWebhook(secret, r!.headers, r!.body, Date.now())).toBeNull();
  });
});

describe('replayed and stale deliveries are detectable (the receiver of docs/security.md)', () => {
  it('accepts the delivery once, flags the captured bytes sent again as a replay, and as stale past the window', async () => {
    const rx = await guardedReceiver(secret, redis, namespace);
    const url = `http://127.0.0.1:${rx.port}/hooks`;
    expect(await send(adapter(url))).toEqual({ kind: 'ok' });
    const captured = rx.requests[0]!;
    // An attacker (or a proxy) sends the captured request again, byte for byte.
    const again = await fetch(url, { method: 'POST', headers: replayHeaders(captured.headers), body: captured.body });
    expect(again.status).toBe(200);
    // ...or sends it six minutes later: outside the window, refused before the id is looked up.
    rx.state.clockOffsetMs = 360_000;
    const late = await fetch(url, { method: 'POST', headers: replayHeaders(captured.headers), body: captured.body });
    expect(late.status).toBe(400);
    // ...or keeps the body and signature but moves the timestamp on to pass the window: the signature breaks.
    rx.state.clockOffsetMs = 0;
    const moved = { ...replayHeaders(captured.headers), 'webhook-timestamp': String(Number(captured.headers['webhook-timestamp']) + 1) };
    const forged = await fetch(url, { method: 'POST', headers: moved, body: captured.body });
    expect(forged.status).toBe(400);
    expect(rx.state.verdicts).toEqual(['accepted', 'replay', 'rejected: stale', 'rejected: no-matching-signature']);
  });

  it("Nudge's own retry of a failed delivery reuses the webhook-id, so the receiver sees a replay, not a second touch", async () => {
    const rx = await guardedReceiver(secret, redis, namespace);
    const a = adapter(`http://127.0.0.1:${rx.port}/hooks`);
    const t = makeTouch();
    // The first attempt was processed but its answer lost (the worker gave up): the job retries.
    expect(await send(a, t)).toEqual({ kind: 'ok' });
    expect(await send(a, t)).toEqual({ kind: 'ok' });
    expect(rx.requests.map((r) => r.headers['webhook-id'])).toEqual([t.touchId, t.touchId]);
    expect(rx.state.verdicts).toEqual(['accepted', 'replay']);
  });
});

describe('redirects are not followed', () => {
  for (const status of [301, 302, 303, 307, 308]) {
    it(`a ${status} fails the touch permanently; the Location target is never requested`, async () => {
      const target = await recorder();
      const rec = await recorder((r) => (r.path === '/hooks' ? { status, headers: { location: `http://127.0.0.1:${target.port}/stolen` } } : { status: 200 }));
      const result = await send(adapter(`http://127.0.0.1:${rec.port}/hooks`));
      expect(result).toMatchObject({ kind: 'permanent', reason: expect.stringContaining(`${status} (a redirect, not followed)`) });
      expect(rec.requests.map((r) => r.path)).toEqual(['/hooks']);
      expect(target.requests).toEqual([]);
    });
  }

  it('a redirect to a private or metadata address is refused the same way, with the address guard on', async () => {
    // The receiver is on loopback, so the guard must be off to reach it at all; the redirect to
    // the metadata address is refused because no redirect is ever followed, guard or not.
    const target = await recorder();
    for (const location of ['http://169.254.169.254/latest/meta-data/', `http://localhost:${target.port}/x`, 'http://10.0.0.1/']) {
      const rec = await recorder(() => ({ status: 307, headers: { location } }));
      expect(await send(adapter(`http://127.0.0.1:${rec.port}/hooks`))).toMatchObject({ kind: 'permanent' });
      expect(rec.requests).toHaveLength(1);
    }
    expect(target.requests).toEqual([]);
  });
});

describe('private-address targets are blocked by config (allowPrivateAddresses: false, the default)', () => {
  it('refuses loopback, private and link-local targets before connecting, however they are spelt', async () => {
    const rec = await recorder();
    const p = rec.port;
    const urls = [
      `http://127.0.0.1:${p}/hooks`,
      `http://127.1:${p}/hooks`, // WHATWG URL reads it as 127.0.0.1
      `http://2130706433:${p}/hooks`, // decimal 127.0.0.1
      `http://0x7f000001:${p}/hooks`, // hexadecimal 127.0.0.1
      `http://[::ffff:127.0.0.1]:${p}/hooks`, // IPv4-mapped IPv6
      `http://[::1]:${p}/hooks`,
      `http://10.20.30.40:${p}/hooks`,
      `http://172.16.5.4:${p}/hooks`,
      `http://192.168.1.1:${p}/hooks`,
      'http://169.254.169.254/latest/meta-data/', // cloud metadata
      `http://[fd00::1]:${p}/hooks`,
      `http://[fe80::1]:${p}/hooks`,
      `http://localhost:${p}/hooks`, // a name the system resolver maps to 127.0.0.1
    ];
    const outcomes: string[] = [];
    for (const url of urls) {
      const r = await send(adapter(url, { allowPrivateAddresses: undefined }));
      outcomes.push(`${url} ${r.kind} ${'code' in r ? String(r.code) : '-'}`);
    }
    expect(outcomes).toEqual(urls.map((u) => `${u} permanent NUDGE_TOUCH_TARGET_BLOCKED`));
    expect(rec.requests).toEqual([]);
    // The control: the same receiver is reachable once private targets are allowed.
    expect(await send(adapter(`http://localhost:${p}/hooks`))).toEqual({ kind: 'ok' });
    expect(rec.requests).toHaveLength(1);
  });

  it('says in the failure which address was refused and what to change, without the URL (it may carry a token)', async () => {
    const r = await send(adapter('http://user:s3cr3t-token@localhost:9/hooks?key=s3cr3t-token', { allowPrivateAddresses: false }));
    expect(r).toMatchObject({ kind: 'permanent', code: 'NUDGE_TOUCH_TARGET_BLOCKED' });
    const reason = (r as { reason: string }).reason;
    expect(reason).toContain('127.0.0.1');
    expect(reason).toContain('allowPrivateAddresses');
    expect(reason).not.toContain('s3cr3t-token');
  });
});
