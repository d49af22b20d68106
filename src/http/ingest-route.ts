import type { IncomingMessage } from 'node:http';
import { encodeEvent } from '../contract/event.js';
import { eventFromJson } from '../contract/json.js';
import { validateEvent, type EventLimits } from '../contract/validate.js';
import type { EventProducer } from '../sources/event-producer.js';
import type { JsonResponse, OpsServer } from './ops-server.js';

export interface IngestOptions {
  topic: string;
  limits: EventLimits;
  clock: () => number;
  /** Largest request body; 413 beyond. */
  maxBodyBytes?: number;
  /** Most events in one request; 413 beyond. */
  maxEvents?: number;
}

/**
 * `POST /v1/events` for producers that cannot speak Kafka (DESIGN §2.1): a JSON array in, the
 * valid events produced to the topic keyed by user id, 202 with what was accepted and why the
 * rest was not. 202 is sent only after the broker acknowledged every accepted event, so an
 * answer never covers an event that could still be lost; a down broker answers 503.
 */
export function registerIngestRoute(server: OpsServer, producer: Pick<EventProducer, 'sendAndWait'>, o: IngestOptions): void {
  const maxBody = o.maxBodyBytes ?? 1_048_576;
  const maxEvents = o.maxEvents ?? 1_000;
  server.route('POST', '/v1/events', async (req): Promise<JsonResponse> => {
    const body = await readBody(req, maxBody);
    // Closed after the answer: the rest of an oversized body is never read, and a keep-alive
    // connection left with it unread would swallow the client's next request (regression:
    // tests/integration/http-ingest.test.ts, the chunked 413).
    if (body === null) return { status: 413, headers: { connection: 'close' }, body: { error: `request body over ${maxBody} bytes; send fewer events per request` } };
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      return { status: 400, body: { error: 'body is not valid JSON; send a JSON array of events' } };
    }
    if (!Array.isArray(parsed)) return { status: 400, body: { error: 'body must be a JSON array of events' } };
    if (parsed.length > maxEvents) return { status: 413, body: { error: `${parsed.length} events in one request; the limit is ${maxEvents}` } };
    const now = o.clock();
    const rejected: Array<{ index: number; code: string; message: string }> = [];
    const accepted = [];
    for (let i = 0; i < parsed.length; i++) {
      const converted = eventFromJson(parsed[i]);
      if (!converted.ok) {
        rejected.push({ index: i, ...converted.rejection });
        continue;
      }
      const invalid = validateEvent(converted.event, o.limits, now);
      if (invalid) rejected.push({ index: i, ...invalid });
      else accepted.push(converted.event);
    }
    try {
      await producer.sendAndWait(
        o.topic,
        accepted.map((e) => ({ key: e.userId, value: encodeEvent(e) })),
        10_000,
      );
    } catch {
      return {
        status: 503,
        headers: { 'retry-after': '5' },
        body: { error: 'the Kafka broker did not acknowledge the events; nothing in this request was accepted for sure. Retry the whole request (event ids make retries safe).' },
      };
    }
    return { status: 202, body: { accepted: accepted.length, rejected: rejected.length, errors: rejected } };
  });
}

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer | null> {
  const declared = Number(req.headers['content-length'] ?? '0');
  if (declared > limit) {
    req.resume();
    return null;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) {
      req.resume();
      return null;
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}
