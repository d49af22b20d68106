/**
 * The one error catalogue. Every error Nudge raises on purpose carries a stable code
 * (`NUDGE_…`), a retriable flag, context without personal data, and a message that says what
 * was wrong, the value seen (when it is not personal) and what to do next.
 *
 * Codes are a contract: operators grep logs and alert on them, so never rename one.
 * `tests/unit/errors-doc.test.ts` fails when a code is not documented in `docs/errors.md`.
 */

export const ErrorCodes = {
  /** The config file is missing, unreadable, not YAML, or fails the schema. */
  CONFIG_INVALID: 'NUDGE_CONFIG_INVALID',
  /** A config section exists in the schema for a later release and is not implemented yet. */
  CONFIG_UNSUPPORTED: 'NUDGE_CONFIG_UNSUPPORTED',
  /** An environment override has a value that cannot be used. */
  CONFIG_ENV_INVALID: 'NUDGE_CONFIG_ENV_INVALID',
  /** A command-line flag is missing or has a bad value. */
  CLI_USAGE: 'NUDGE_CLI_USAGE',
  /** Input to `nudge produce` is not a JSON object on one line, or fails validation. */
  PRODUCE_INPUT: 'NUDGE_PRODUCE_INPUT',
  /** The Kafka broker could not be reached or refused a request. */
  KAFKA_UNAVAILABLE: 'NUDGE_KAFKA_UNAVAILABLE',
  /** A produced message was not acknowledged by the broker. */
  KAFKA_DELIVERY: 'NUDGE_KAFKA_DELIVERY',
  /** Redis could not be reached or refused a command. */
  REDIS_UNAVAILABLE: 'NUDGE_REDIS_UNAVAILABLE',
  /** Redis is configured in a way that would lose data (for example an eviction policy). */
  REDIS_UNSAFE: 'NUDGE_REDIS_UNSAFE',
  /**
   * Redis answered with a lane fence below one it had acknowledged: it lost writes (restarted
   * from an AOF without its last second, or failed over to a lagging replica). The engine claims
   * the partition again and re-reads the lost offsets from Kafka by itself.
   */
  REDIS_STATE_LOST: 'NUDGE_REDIS_STATE_LOST',
  /** A feature was asked for that this build does not have yet. */
  NOT_IMPLEMENTED: 'NUDGE_NOT_IMPLEMENTED',
  /** A test or dev service (redis-server, the Kafka broker) failed to start. */
  SERVICE_START: 'NUDGE_SERVICE_START',
  /**
   * A valid event made the state step throw (a bug, or data the step does not handle). It goes
   * to the dead-letter topic with this code and its original bytes; the rest of its batch is
   * applied and the lane moves on. Fix the step, then replay the dead letters.
   */
  EVENT_POISON: 'NUDGE_EVENT_POISON',
  /**
   * A user's due timer made the state step throw. The user's timer is postponed (see
   * `TIMER_POISON_RETRY_MS` in pipeline/lane-steps.ts) so the lane's other timers still fire.
   */
  TIMER_POISON: 'NUDGE_TIMER_POISON',
  /**
   * The state step threw on the states a lane gave it to change in place, and not on copies of
   * them: a bug of the in-place path. The batch is applied from copies; nothing is lost.
   */
  STEP_IN_PLACE: 'NUDGE_STEP_IN_PLACE',
  /** An outbox entry or a touch job does not match the touch job contract (DESIGN §2.2). */
  TOUCH_INVALID: 'NUDGE_TOUCH_INVALID',
  /** A channel provider failed in a way that may pass (5xx, 429, timeout, network); retried with backoff. */
  TOUCH_DELIVERY_RETRY: 'NUDGE_TOUCH_DELIVERY_RETRY',
  /** A channel provider refused a touch for good (4xx other than 408/429, a redirect); not retried. */
  TOUCH_DELIVERY_REJECTED: 'NUDGE_TOUCH_DELIVERY_REJECTED',
  /** A webhook endpoint answered 410 Gone and is disabled; its touches fail without a request. */
  TOUCH_ENDPOINT_DISABLED: 'NUDGE_TOUCH_ENDPOINT_DISABLED',
  /** A webhook target resolves to a private, loopback or link-local address and allowPrivateAddresses is off. */
  TOUCH_TARGET_BLOCKED: 'NUDGE_TOUCH_TARGET_BLOCKED',
  /** Another attempt of the same touch holds the send lease (a stalled job re-run while the first still sends). */
  TOUCH_SEND_IN_PROGRESS: 'NUDGE_TOUCH_SEND_IN_PROGRESS',
  /** A touch job names a channel this worker has no adapter for. */
  TOUCH_NO_ADAPTER: 'NUDGE_TOUCH_NO_ADAPTER',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export interface NudgeErrorOptions {
  /** True when the same call may succeed later without a change (a broker that is down). */
  retriable?: boolean;
  /** Structured context for logs. Never put user data here beyond a user id. */
  context?: Record<string, unknown>;
  cause?: unknown;
}

export class NudgeError extends Error {
  readonly code: ErrorCode;
  readonly retriable: boolean;
  readonly context: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: NudgeErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'NudgeError';
    this.code = code;
    this.retriable = options.retriable ?? false;
    this.context = options.context ?? {};
  }
}

export function isNudgeError(err: unknown): err is NudgeError {
  return err instanceof NudgeError;
}

/** A message for any thrown value, safe to log (no stack, no object dumps). */
export function describeError(err: unknown): string {
  if (err instanceof NudgeError) return `${err.code}: ${err.message}`;
  if (err instanceof Error) return err.message;
  return String(err);
}
