import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

/**
 * Paths that must never reach a log line even if a caller passes them by mistake. Events are
 * logged by id only; these are the fields that can carry personal data or secrets.
 */
const REDACT_PATHS = [
  'props',
  '*.props',
  'event.props',
  'deviceId',
  '*.deviceId',
  'device_id',
  '*.device_id',
  'password',
  '*.password',
  'token',
  '*.token',
  'authorization',
  '*.authorization',
  'headers.authorization',
  'attributes',
  '*.attributes',
];

export interface LogOptions {
  level?: LevelWithSilent;
  /** Where lines go; defaults to stdout. Tests pass a stream to capture lines. */
  destination?: NodeJS.WritableStream;
  /** The component name, added to every line as `component`. */
  name?: string;
}

/**
 * Structured JSON logs (one object per line) for machines: `level`, `time`, `component`,
 * `msg`, and an error `code` where there is one. There is no module-level logger on purpose:
 * each entry point creates one and passes it down, so tests can capture what is written.
 */
export function createLogger(options: LogOptions = {}): Logger {
  return pino(
    {
      level: options.level ?? 'info',
      base: options.name ? { component: options.name } : {},
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    // pino wants its own destination type; a plain writable stream works the same way.
    (options.destination ?? process.stdout) as pino.DestinationStream,
  );
}

/** A logger that writes nothing, for library code used without one. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
