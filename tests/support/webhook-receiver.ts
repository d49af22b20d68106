import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { verifyWebhook, type WebhookVerification } from '../../src/touches/channels/standard-webhooks.js';

export interface ReceivedRequest {
  /** When the request arrived (ms, this process's clock). */
  at: number;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** `webhook-id` (the touch id). */
  id: string;
  /** Checked on arrival with the receiver's secret, as a real receiver would. */
  verified: WebhookVerification;
  /** How many requests were open at this one's arrival, itself included. */
  inFlight: number;
}

export interface Reply {
  status: number;
  headers?: Record<string, string>;
  /** Answer only after this many ms (a slow or hung endpoint). */
  delayMs?: number;
}

export type ReplyScript = (req: ReceivedRequest, nth: number) => Reply;

export interface WebhookReceiver {
  url: string;
  port: number;
  requests: ReceivedRequest[];
  setScript(script: ReplyScript): void;
  /** Resolves once `n` requests (matching `path`, default all) have arrived. */
  waitFor(n: number, timeoutMs?: number, path?: string): Promise<ReceivedRequest[]>;
  close(): Promise<void>;
}

/**
 * A real HTTP server on loopback that records every request and verifies its Standard Webhooks
 * signature, answering per a script (status, headers, delay). For the touches integration tests.
 */
export async function startWebhookReceiver(secret: string, script: ReplyScript = () => ({ status: 200 })): Promise<WebhookReceiver> {
  const requests: ReceivedRequest[] = [];
  let current = script;
  let open = 0;
  const pending = new Set<ServerResponse>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    open++;
    const inFlight = open;
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const r: ReceivedRequest = {
        at: Date.now(),
        path: req.url ?? '/',
        headers: req.headers,
        body,
        id: String(req.headers['webhook-id'] ?? ''),
        verified: verifyWebhook(secret, body, req.headers as Record<string, string>),
        inFlight,
      };
      requests.push(r);
      const reply = current(r, requests.length);
      pending.add(res);
      const answer = () => {
        pending.delete(res);
        open--;
        if (res.destroyed) return;
        res.writeHead(reply.status, reply.headers ?? {});
        res.end();
      };
      if (reply.delayMs) setTimeout(answer, reply.delayMs);
      else answer();
    });
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/hooks`,
    port,
    requests,
    setScript: (s) => {
      current = s;
    },
    async waitFor(n, timeoutMs = 15_000, path) {
      const deadline = Date.now() + timeoutMs;
      const matching = () => requests.filter((r) => path === undefined || r.path === path);
      while (matching().length < n) {
        if (Date.now() > deadline) throw new Error(`receiver got ${matching().length} of ${n} requests within ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 20));
      }
      return matching();
    },
    async close() {
      for (const res of pending) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
