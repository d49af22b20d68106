import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Registry } from 'prom-client';
import type { Logger } from '../log.js';

/** One readiness condition: `/readyz` is 200 only when every check says ready. */
export interface ReadinessCheck {
  name: string;
  /** Resolves true when ready. A throw or a slow answer (over 2 s) counts as not ready. */
  check: () => boolean | Promise<boolean>;
}

export interface JsonResponse {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

export type RouteHandler = (req: IncomingMessage, params: Record<string, string>, url: URL) =>
  | JsonResponse
  | Promise<JsonResponse>;

export interface OpsServerOptions {
  host: string;
  port: number;
  registry: Registry;
  logger: Logger;
  readiness?: ReadinessCheck[];
  /** When set, `/v1/*` needs `Authorization: Bearer <token>`. */
  token?: string;
  /** When true (and a token is set), `/metrics` needs the token too. */
  metricsRequireToken?: boolean;
}

interface Route {
  method: string;
  /** Path segments; a segment starting with ':' captures a parameter. */
  segments: string[];
  handler: RouteHandler;
}

const READINESS_TIMEOUT_MS = 2_000;

/**
 * The ops HTTP server (DESIGN §2.3): `/healthz`, `/readyz`, `/metrics` and the JSON API routes
 * that later modules register with `route()`. Plain `node:http`: the API is small, and a
 * framework would cost more start-up time than it saves code.
 */
export class OpsServer {
  private readonly server: Server;
  private readonly routes: Route[] = [];
  private readonly readiness: ReadinessCheck[];
  /** SHA-256 of the token (null: no token, the API is open); the token itself is not kept. */
  private readonly tokenDigest: Buffer | null;

  constructor(private readonly options: OpsServerOptions) {
    this.readiness = [...(options.readiness ?? [])];
    this.tokenDigest = options.token ? createHash('sha256').update(options.token).digest() : null;
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        options.logger.error({ err: errorSummary(err), path: safePath(req.url) }, 'ops request failed');
        if (!res.headersSent) sendJson(res, { status: 500, body: { error: 'internal error; see the engine log' } });
        else res.destroy();
      });
    });
    // A slow client must not hold a socket open forever.
    this.server.requestTimeout = 30_000;
    this.server.headersTimeout = 10_000;
  }

  /** Registers a JSON route such as `GET /v1/users/:userId`. */
  route(method: string, path: string, handler: RouteHandler): this {
    this.routes.push({ method: method.toUpperCase(), segments: splitPath(path), handler });
    return this;
  }

  addReadinessCheck(check: ReadinessCheck): this {
    this.readiness.push(check);
    return this;
  }

  async listen(): Promise<{ host: string; port: number; url: string }> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port, this.options.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    const addr = this.server.address() as AddressInfo;
    return { host: addr.address, port: addr.port, url: `http://${hostForUrl(addr.address)}:${addr.port}` };
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const method = req.method ?? 'GET';
    if (url.pathname === '/healthz' && method === 'GET') {
      sendJson(res, { status: 200, body: { status: 'ok' } });
      return;
    }
    if (url.pathname === '/readyz' && method === 'GET') {
      sendJson(res, await this.readinessReport());
      return;
    }
    if (url.pathname === '/metrics' && method === 'GET') {
      if (this.options.metricsRequireToken && !this.authorized(req)) return sendUnauthorized(res);
      const text = await this.options.registry.metrics();
      res.writeHead(200, { 'content-type': this.options.registry.contentType });
      res.end(text);
      return;
    }
    if (url.pathname.startsWith('/v1/') && !this.authorized(req)) return sendUnauthorized(res);

    const segments = splitPath(url.pathname);
    let pathMatched = false;
    for (const route of this.routes) {
      const params = matchSegments(route.segments, segments);
      if (!params) continue;
      pathMatched = true;
      if (route.method !== method) continue;
      sendJson(res, await route.handler(req, params, url));
      return;
    }
    if (pathMatched) {
      sendJson(res, { status: 405, body: { error: `method ${method} is not allowed on ${url.pathname}` } });
      return;
    }
    sendJson(res, {
      status: 404,
      body: { error: `no such endpoint: ${url.pathname}. Endpoints: /healthz, /readyz, /metrics, /v1/...` },
    });
  }

  private authorized(req: IncomingMessage): boolean {
    if (!this.tokenDigest) return true;
    // The scheme is case-insensitive (RFC 7235 §2.1); the token is not.
    const presented = /^Bearer +(\S+) *$/i.exec(req.headers.authorization ?? '')?.[1] ?? '';
    // Digests of equal length, compared in constant time: neither a prefix nor the token's
    // length can be learnt from how long a 401 takes.
    return timingSafeEqual(createHash('sha256').update(presented).digest(), this.tokenDigest);
  }

  private async readinessReport(): Promise<JsonResponse> {
    const results = await Promise.all(
      this.readiness.map(async ({ name, check }) => {
        try {
          const ready = await withTimeout(Promise.resolve(check()), READINESS_TIMEOUT_MS);
          return { name, ready: ready === true };
        } catch {
          return { name, ready: false };
        }
      }),
    );
    const ready = results.every((r) => r.ready);
    return { status: ready ? 200 : 503, body: { ready, checks: Object.fromEntries(results.map((r) => [r.name, r.ready])) } };
  }
}

function sendJson(res: ServerResponse, response: JsonResponse): void {
  const body = JSON.stringify(response.body);
  res.writeHead(response.status, {
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
    ...response.headers,
  });
  res.end(body);
}

function sendUnauthorized(res: ServerResponse): void {
  sendJson(res, {
    status: 401,
    body: { error: 'missing or wrong bearer token: send "Authorization: Bearer <http.token from the config>"' },
    headers: { 'www-authenticate': 'Bearer' },
  });
}

function splitPath(path: string): string[] {
  return path.split('/').filter((s) => s.length > 0);
}

function matchSegments(pattern: string[], actual: string[]): Record<string, string> | null {
  if (pattern.length !== actual.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i] as string;
    const a = actual[i] as string;
    if (p.startsWith(':')) {
      try {
        params[p.slice(1)] = decodeURIComponent(a);
      } catch {
        return null;
      }
    } else if (p !== a) return null;
  }
  return params;
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    promise.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

/** The path without the query string: queries may carry ids a log should not keep. */
function safePath(url: string | undefined): string {
  return (url ?? '').split('?')[0] ?? '';
}

function errorSummary(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function hostForUrl(address: string): string {
  return address.includes(':') ? `[${address}]` : address;
}
