import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { LookupFn } from './address-guard.js';

export interface PostResponse {
  status: number;
  headers: IncomingHttpHeaders;
}

export interface PostOptions {
  headers: Record<string, string>;
  signal: AbortSignal;
  /** DNS resolution; Node's default when absent. */
  lookup?: LookupFn | undefined;
  agents: PostAgents;
  /** Response body bytes read at most (then the socket is dropped); the body is not used. @default 64 KiB */
  maxResponseBytes?: number;
}

export interface PostAgents {
  http: HttpAgent;
  https: HttpsAgent;
}

/**
 * Keep-alive agents private to one adapter: a pooled socket is keyed by host and port only, so
 * sharing the global agent could hand a socket opened without the address guard to a sender
 * that requires it.
 */
export function postAgents(): PostAgents {
  return { http: new HttpAgent({ keepAlive: true }), https: new HttpsAgent({ keepAlive: true }) };
}

/**
 * One POST with node:http(s), which never follows redirects (a 3xx is just a status here).
 * Resolves with the status once the response has ended (or its body passed the cap); rejects
 * on a network error, a blocked address, or an abort (timeout or shutdown).
 */
export function postOnce(url: URL, body: Buffer, o: PostOptions): Promise<PostResponse> {
  const max = o.maxResponseBytes ?? 64 * 1024;
  const https = url.protocol === 'https:';
  const request = https ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(url, {
      method: 'POST',
      headers: { ...o.headers, 'content-length': String(body.length) },
      signal: o.signal,
      ...(o.lookup === undefined ? {} : { lookup: o.lookup as never }),
      agent: https ? o.agents.https : o.agents.http,
    });
    req.once('error', reject);
    req.once('response', (res) => {
      let seen = 0;
      const done = () => resolve({ status: res.statusCode ?? 0, headers: res.headers });
      res.on('data', (chunk: Buffer) => {
        seen += chunk.length;
        if (seen > max) {
          res.destroy();
          done();
        }
      });
      res.once('end', done);
      res.once('error', reject);
    });
    req.end(body);
  });
}
