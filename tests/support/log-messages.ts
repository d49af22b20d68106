import { encodeEvent, type AppEvent } from '../../src/contract/event.js';
import { partitionOf, type LogMessage } from './reference-log.js';

/** A valid event with the contract's defaults for every field not given. */
export function appEvent(e: Pick<AppEvent, 'eventId' | 'userId' | 'name' | 'timeMs'> & Partial<AppEvent>): AppEvent {
  return { channel: 'app', props: {}, value: 0, tz: '', deviceId: '', sentMs: 0, ...e };
}

/**
 * A hand-written event as a log message for `produceLog`: placed on the partition the
 * reference model assumes (reference-log's `partitionOf`), with its reference twin.
 */
export function logMessage(e: AppEvent, partitions: number): LogMessage {
  const partition = partitionOf(e.userId, partitions);
  return {
    partition,
    key: e.userId,
    value: Buffer.from(encodeEvent(e)),
    ref: {
      partition,
      event: { eventId: e.eventId, userId: e.userId, name: e.name, timeMs: e.timeMs, props: { ...e.props }, value: e.value, tz: e.tz, channel: e.channel },
    },
  };
}
