import type { AppEvent } from '../contract/event.js';
import { parseEvent, type EventLimits } from '../contract/validate.js';
import type { DeadLetter, RawMessage } from './types.js';

export interface DecodedBatch {
  /** The valid events, in offset order. */
  events: AppEvent[];
  /** The message each event came from (same index), for a dead letter made later. */
  sources: RawMessage[];
  /** Messages that cannot be decoded or fail validation (DESIGN §2.1), in offset order. */
  dead: DeadLetter[];
}

/** The decode + validate step of a lane batch (DESIGN §3): valid events, and the rest as dead letters. */
export function decodeBatch(messages: readonly RawMessage[], limits: EventLimits, now: number): DecodedBatch {
  const out: DecodedBatch = { events: [], sources: [], dead: [] };
  for (const m of messages) {
    const parsed = parseEvent(m.value ?? Buffer.alloc(0), limits, now);
    if (parsed.ok) {
      out.events.push(parsed.event);
      out.sources.push(m);
    } else out.dead.push(deadLetter(m, parsed.rejection.code, parsed.rejection.message));
  }
  return out;
}

/** A dead letter carrying the message's original key and bytes. */
export function deadLetter(m: RawMessage, code: string, reason: string): DeadLetter {
  return { partition: m.partition, offset: m.offset, key: m.key ?? null, value: m.value, code, reason };
}
