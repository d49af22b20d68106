import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { encodeEvent } from '../contract/event.js';
import { eventFromJson } from '../contract/json.js';
import { validateEvent, type EventLimits } from '../contract/validate.js';
import type { EventProducer } from '../sources/event-producer.js';

export interface ProduceLinesOptions {
  topic: string;
  limits?: EventLimits;
  now?: () => number;
  /** Called for each rejected line; `line` is 1-based. Messages carry no event data. */
  onReject?: (line: number, code: string, message: string) => void;
  onProgress?: (p: { lines: number; produced: number; rejected: number }) => void;
  /** Stop at the first bad line instead of going on (`nudge produce --strict`). */
  stopOnError?: boolean;
}

export interface ProduceLinesResult {
  lines: number;
  produced: number;
  rejected: number;
  stoppedEarly: boolean;
}

/**
 * `nudge produce`: JSON lines (the contract's field names, snake_case or camelCase) in,
 * protobuf events keyed by user id out. Each line is checked with the same validation the
 * engine applies, so a bad line is reported here, with its number, instead of landing in the
 * engine's dead-letter topic. Blank lines and lines starting with `#` are skipped.
 */
export async function produceLines(
  input: Readable,
  producer: EventProducer,
  options: ProduceLinesOptions,
): Promise<ProduceLinesResult> {
  const now = options.now ?? Date.now;
  const result: ProduceLinesResult = { lines: 0, produced: 0, rejected: 0, stoppedEarly: false };
  const reader = createInterface({ input, crlfDelay: Infinity });
  let lastProgress = now();
  for await (const raw of reader) {
    result.lines++;
    const text = raw.trim();
    if (text === '' || text.startsWith('#')) continue;
    const rejection = await produceOne(text, producer, options, now());
    if (rejection) {
      result.rejected++;
      options.onReject?.(result.lines, rejection.code, rejection.message);
      if (options.stopOnError) {
        result.stoppedEarly = true;
        reader.close();
        break;
      }
    } else {
      result.produced++;
    }
    if (options.onProgress && now() - lastProgress >= 1_000) {
      lastProgress = now();
      options.onProgress({ lines: result.lines, produced: result.produced, rejected: result.rejected });
    }
  }
  return result;
}

async function produceOne(
  text: string,
  producer: EventProducer,
  options: ProduceLinesOptions,
  nowMs: number,
): Promise<{ code: string; message: string } | null> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return {
      code: 'NUDGE_EVENT_BAD_JSON',
      message: 'not valid JSON; each line must be one JSON object such as {"event_id":"e1","user_id":"u1","name":"login","time_ms":1700000000000}',
    };
  }
  const converted = eventFromJson(parsed);
  if (!converted.ok) return converted.rejection;
  const invalid = options.limits ? validateEvent(converted.event, options.limits, nowMs) : validateEvent(converted.event, undefined, nowMs);
  if (invalid) return invalid;
  const event = converted.event;
  await producer.produce(options.topic, event.userId, encodeEvent(event));
  return null;
}
