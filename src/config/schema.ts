import { constants, accessSync, statSync } from 'node:fs';
import { z } from 'zod';
import { parseDuration } from './duration.js';
import { checkJourneyReferences } from './journey-references.js';
import { journeysSchema } from './journeys-section.js';
import { policySchema } from './policy-section.js';
import { activitySchema, behaviourSchema, lifecycleSchema } from './state-sections.js';
import { touchesSchema } from './touches-section.js';

/**
 * The one config schema (STYLE habit 7). Every field has a default, so an empty file is a
 * working config for a laptop; cross-field rules sit with the section they concern. The schema
 * describes the FILE (e.g. `time.allowedLateness: 2h`); its output is the shape the code uses
 * (`time.allowedLatenessMs: 7200000`). `loadConfig` (load.ts) adds file positions, environment
 * overrides and freezing; the words of every expectation live here.
 *
 * Objects are strict: an unknown key is an error, never ignored, because a typo such as
 * `kafak:` or `verifyHostnme: false` would otherwise silently keep a default.
 */

// ---------------------------------------------------------------------------------------------
// Wording shared by the schema and the loader.

/** Keys whose values are secrets: never echoed in an error, masked by `describeConfig`. */
const SECRET_KEYS = new Set(['password', 'token', 'keyPassword', 'secret']);
/** librdkafka pass-through properties that carry secrets (`ssl.keystore.password`, `*.pem`...). */
const SECRET_LIBRDKAFKA_KEY = /pass|secret|token|credential|\.pem$/i;

export function isSecretPath(path: readonly PropertyKey[]): boolean {
  const last = path[path.length - 1];
  if (typeof last !== 'string') return false;
  if (SECRET_KEYS.has(last)) return true;
  return path[path.length - 2] === 'librdkafka' && SECRET_LIBRDKAFKA_KEY.test(last);
}

/** `redis://user:pw@host` -> `redis://***@host`, so a URL can be shown without its password. */
export function maskUrlCredentials(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^@/?#]*@/i, '$1***@');
}

/** How an offending value is shown after "got": quoted, shortened, and never a secret. */
export function describeValue(value: unknown, secret = false): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'an empty value';
  if (Array.isArray(value)) return `a list of ${value.length} entries`;
  if (typeof value === 'object') return 'a mapping';
  if (secret) {
    return typeof value === 'string' ? `a value of ${value.length} characters` : `a ${typeof value}`;
  }
  if (typeof value === 'string') {
    const shown = value.length > 60 ? `${value.slice(0, 57)}...` : value;
    return JSON.stringify(shown);
  }
  return String(value);
}

/**
 * The message for every standard zod issue, passed as the per-parse error map. Field-specific
 * wording (durations, ports, topic names...) is set on those fields and takes precedence.
 */
export const configErrorMap: z.core.$ZodErrorMap = (issue) => {
  const path = issue.path ?? [];
  const got = describeValue(issue.input, isSecretPath(path));
  switch (issue.code) {
    case 'invalid_type':
      if (issue.input === undefined) return `required (expected ${typeName(issue.expected)})`;
      // A text where a section belongs is likely something pasted one level off, maybe a
      // password: say what kind of value it is, not what it says.
      if (typeof issue.input === 'string' && STRUCTURES.has(issue.expected)) {
        return `expected ${typeName(issue.expected)}, got a text of ${issue.input.length} characters`;
      }
      // `password: 012345` is the number 12345 to YAML; only quotes keep it as written.
      if (issue.expected === 'string' && (typeof issue.input === 'number' || typeof issue.input === 'boolean')) {
        return `expected a string, got ${got} (put it in quotes)`;
      }
      return `expected ${typeName(issue.expected)}, got ${got}`;
    case 'too_small':
      if (issue.origin === 'string') return `expected at least ${issue.minimum} characters, got ${got}`;
      if (issue.origin === 'array') return `expected at least ${issue.minimum} entries, got ${got}`;
      return `expected a number of at least ${issue.minimum}, got ${got}`;
    case 'too_big':
      if (issue.origin === 'string') return `expected at most ${issue.maximum} characters, got ${got}`;
      if (issue.origin === 'array') return `expected at most ${issue.maximum} entries, got ${got}`;
      return `expected a number of at most ${issue.maximum}, got ${got}`;
    case 'invalid_value':
      return `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}, got ${got}`;
    case 'invalid_format':
      return `has the wrong format, got ${got}`;
    default:
      return undefined;
  }
};

const STRUCTURES = new Set(['object', 'record', 'array']);

function typeName(expected: string): string {
  const names: Record<string, string> = {
    string: 'a string',
    number: 'a number',
    int: 'a whole number',
    boolean: 'true or false',
    object: 'a mapping',
    record: 'a mapping',
    array: 'a list',
    nonoptional: 'a value',
  };
  return names[expected] ?? expected;
}

/** `unknown key "kafak" (did you mean "kafka"?)`, the suggestion only when one is close. */
export function unknownKeyMessage(key: string, known: readonly string[]): string {
  const suggestion = closest(key, known);
  const hint = suggestion ? `did you mean "${suggestion}"?` : `known keys: ${known.join(', ')}`;
  return `unknown key ${JSON.stringify(key)} (${hint})`;
}

function closest(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3; // edit distance 2 or less, else no suggestion
  for (const candidate of known) {
    const d = candidate.toLowerCase() === key.toLowerCase() ? 0 : editDistance(key, candidate);
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return best;
}

/** Optimal string alignment distance: Levenshtein plus a swap of two neighbours (`kafak`). */
function editDistance(a: string, b: string): number {
  const rows = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) rows[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, rows[i - 2]![j - 2]! + 1);
      rows[i]![j] = d;
    }
  }
  return rows[a.length]![b.length]!;
}

// ---------------------------------------------------------------------------------------------
// Field builders.

/** Issue params: the key itself is the problem, so point at the key rather than its value. */
const AT_KEY = { atKey: true } as const;

/** A value checked by `accept`, which returns the parsed value or undefined to refuse it. */
function field<T>(expectation: string, accept: (value: unknown) => T | undefined) {
  return z.unknown().transform((value, ctx): T => {
    const parsed = accept(value);
    if (parsed !== undefined) return parsed;
    ctx.addIssue({ code: 'custom', message: `expected ${expectation}, got ${describeValue(value)}` });
    return z.NEVER;
  });
}

const duration = (fallback: string) =>
  field('a duration like "30m"', (v) =>
    typeof v === 'string' || typeof v === 'number' ? (parseDuration(v) ?? undefined) : undefined,
  ).prefault(fallback);

// 0 asks the system for a free port (tests, several engines on one machine); the log says which.
const port = field('a port number 0-65535 (0 = any free port)', (v) =>
  typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 65535 ? v : undefined,
);

const wholeNumber = (min: number, max: number) =>
  field(`a whole number from ${min} to ${max}`, (v) =>
    typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max ? v : undefined,
  );

/** One of `values`, compared after `normalize` (librdkafka itself is case-insensitive here). */
function choice<const T extends readonly string[]>(values: T, normalize: (s: string) => string) {
  return field(`one of ${values.join(', ')}`, (v): T[number] | undefined => {
    const n = typeof v === 'string' ? normalize(v.trim()) : undefined;
    return values.find((allowed) => allowed === n);
  });
}

const text = (max = 255) => z.string().trim().min(1).max(max);

const KAFKA_NAME = /^[A-Za-z0-9._-]{1,249}$/;
const topicName = field('a Kafka topic name (letters, digits, ".", "_", "-"; 1-249 characters)', (v) =>
  typeof v === 'string' && KAFKA_NAME.test(v) && v !== '.' && v !== '..' ? v : undefined,
);

// host[:port], host a name, IPv4 or [IPv6]; librdkafka's default port 9092 applies without one.
const BROKER = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(:(\d{1,5}))?$/;
const brokerAddress = field('a broker address like "kafka-1:9092"', (v) => {
  const m = typeof v === 'string' ? BROKER.exec(v.trim()) : null;
  if (!m || (m[3] !== undefined && (Number(m[3]) < 1 || Number(m[3]) > 65535))) return undefined;
  return m[0];
});

/** A comma-separated string is accepted for a list (`"k1:9092,k2:9092"`, as in env values). */
const commaList = (v: unknown) =>
  typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter((s) => s !== '') : v;

const timeZone = field('an IANA time zone like "Asia/Shanghai" or "UTC"', (v) => {
  // Offsets ("+08:00") are refused: they have no daylight-saving rules and newer ICU accepts them.
  if (typeof v !== 'string' || /^[+-]/.test(v) || v.trim() === '') return undefined;
  try {
    // Canonical spelling, so `asia/shanghai` and `Asia/Shanghai` compare equal downstream.
    return new Intl.DateTimeFormat('en-US', { timeZone: v }).resolvedOptions().timeZone;
  } catch {
    return undefined;
  }
});

/**
 * A path that must name something this process can read, checked now so a wrong path fails at
 * start-up with the field named, not at the first TLS handshake minutes later.
 * Relative paths are resolved by the loader (against the config file's directory) first.
 */
function readablePath(allowDirectory: boolean) {
  return text(4096).superRefine((path, ctx) => {
    let problem: string | undefined;
    try {
      accessSync(path, constants.R_OK);
      if (!allowDirectory && statSync(path).isDirectory()) problem = 'it is a directory, expected a PEM file';
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      problem =
        code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied for the user running Nudge' : String(code);
    }
    if (problem) ctx.addIssue({ code: 'custom', message: `cannot read ${JSON.stringify(path)} (${problem})` });
  });
}

/** A mapping that may be left empty in YAML (`kafka:` with every line commented out). */
const emptyAsAbsent = (v: unknown) => (v === null ? undefined : v);

// ---------------------------------------------------------------------------------------------
// kafka

export const SASL_MECHANISMS = ['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512'] as const;
export const KAFKA_PROTOCOLS = ['plaintext', 'ssl', 'sasl_plaintext', 'sasl_ssl'] as const;

const saslMechanism = z.unknown().transform((v, ctx) => {
  const name = typeof v === 'string' ? v.trim().toUpperCase() : undefined;
  const found = SASL_MECHANISMS.find((m) => m === name);
  if (found) return found;
  if (name === 'OAUTHBEARER' || name === 'GSSAPI') {
    ctx.addIssue({
      code: 'custom',
      message: `${name} is not supported yet in this version of Nudge; use SCRAM-SHA-512 (or SCRAM-SHA-256, PLAIN)`,
      params: { unsupported: true },
    });
  } else {
    ctx.addIssue({ code: 'custom', message: `expected one of ${SASL_MECHANISMS.join(', ')}, got ${describeValue(v)}` });
  }
  return z.NEVER;
});

/**
 * librdkafka properties Nudge sets itself, with what to do instead. Overriding them would break
 * a guarantee (offsets committed only after the Redis commit, idempotent produce) or bypass the
 * security settings, which must be visible in one place.
 */
export const OWNED_LIBRDKAFKA_PROPERTIES: Readonly<Record<string, string>> = {
  'bootstrap.servers': 'set kafka.brokers instead',
  'metadata.broker.list': 'set kafka.brokers instead',
  'client.id': 'set kafka.clientId instead',
  'group.id': 'set kafka.groupId instead',
  'enable.auto.commit':
    'remove it: offsets are committed only after a batch is committed to Redis, and auto-commit could move them past events not yet applied',
  'auto.commit.enable': 'remove it: offsets are committed only after a batch is committed to Redis',
  'enable.auto.offset.store': 'remove it: offsets are stored only after a batch is committed to Redis',
  'enable.idempotence': 'remove it: produce is idempotent so a retry cannot duplicate or reorder events',
  acks: 'remove it: produce uses acks=all so an acknowledged event survives a broker failure',
  'request.required.acks': 'remove it: produce uses acks=all so an acknowledged event survives a broker failure',
  'security.protocol': 'set kafka.security.protocol instead',
  'sasl.mechanisms': 'set kafka.security.sasl.mechanism instead',
  'sasl.mechanism': 'set kafka.security.sasl.mechanism instead',
  'sasl.username': 'set kafka.security.sasl.username instead',
  'sasl.password': 'set kafka.security.sasl.password (or NUDGE_KAFKA_SASL_PASSWORD) instead',
  'ssl.ca.location': 'set kafka.security.tls.caFile instead',
  'ssl.certificate.location': 'set kafka.security.tls.certFile instead',
  'ssl.key.location': 'set kafka.security.tls.keyFile instead',
  'ssl.key.password': 'set kafka.security.tls.keyPassword instead',
  'enable.ssl.certificate.verification':
    'remove it: broker certificates are always verified; to trust a private CA set kafka.security.tls.caFile',
  'ssl.endpoint.identification.algorithm': 'set kafka.security.tls.verifyHostname instead',
};

const librdkafkaExtras = z
  .record(
    z.string(),
    z.union([z.string(), z.number(), z.boolean()], { error: 'expected a string, number or boolean' }),
  )
  .superRefine((props, ctx) => {
    for (const key of Object.keys(props)) {
      const owned = OWNED_LIBRDKAFKA_PROPERTIES[key];
      if (owned !== undefined) {
        ctx.addIssue({ code: 'custom', path: [key], message: `is set by Nudge itself; ${owned}`, params: AT_KEY });
      } else if (key.endsWith('_cb')) {
        ctx.addIssue({ code: 'custom', path: [key], message: 'is set by Nudge itself; remove it (Nudge registers its own callbacks)', params: AT_KEY });
      } else if (!/^[a-z][a-z0-9_.]*$/.test(key)) {
        ctx.addIssue({
          code: 'custom',
          path: [key],
          message: 'expected a librdkafka property name like "fetch.max.bytes" (see librdkafka CONFIGURATION.md)',
          params: AT_KEY,
        });
      }
    }
  });

const saslSchema = z.strictObject({
  /** Default SCRAM-SHA-512. PLAIN sends the password as is: use it only with sasl_ssl. */
  mechanism: saslMechanism.prefault('SCRAM-SHA-512'),
  /** Required. The SASL user. */
  username: text(),
  /** Required. Secret: never logged; prefer NUDGE_KAFKA_SASL_PASSWORD over the file. */
  password: z.string().min(1),
});

const kafkaTlsSchema = z.strictObject({
  /** Default: the system CA store. File or directory of CA certificates (librdkafka accepts both). */
  caFile: readablePath(true).optional(),
  /** Default none. Client certificate (PEM) for mutual TLS; needs keyFile. */
  certFile: readablePath(false).optional(),
  /** Default none. Client private key (PEM) for mutual TLS; needs certFile. */
  keyFile: readablePath(false).optional(),
  /** Default none. Passphrase of keyFile. Secret. */
  keyPassword: z.string().min(1).optional(),
  /** Default true. Check that the broker's certificate names the host dialled (RFC 2818). */
  verifyHostname: z.boolean().default(true),
});

const usesTls = (protocol: string) => protocol === 'ssl' || protocol === 'sasl_ssl';
const usesSasl = (protocol: string) => protocol.startsWith('sasl_');

const kafkaSecuritySchema = z
  .strictObject({
    /** Default plaintext. Use sasl_ssl in production (reliability.md §5.3). */
    protocol: choice(KAFKA_PROTOCOLS, (s) => s.toLowerCase()).prefault('plaintext'),
    /** Required for sasl_plaintext and sasl_ssl; refused otherwise (it would be ignored). */
    sasl: z.preprocess(emptyAsAbsent, saslSchema.optional()),
    /** Only for ssl and sasl_ssl; refused otherwise (it would be ignored). */
    tls: z.preprocess(emptyAsAbsent, kafkaTlsSchema.optional()),
  })
  .superRefine((sec, ctx) => {
    if (usesSasl(sec.protocol) && !sec.sasl) {
      ctx.addIssue({ code: 'custom', path: ['sasl'], message: `required when protocol is ${sec.protocol}: set username and password (and mechanism, default SCRAM-SHA-512)` });
    }
    if (!usesSasl(sec.protocol) && sec.sasl) {
      ctx.addIssue({ code: 'custom', path: ['sasl'], message: `is set but protocol is ${sec.protocol}, so the credentials would not be used; set protocol: sasl_ssl or remove sasl` });
    }
    if (!usesTls(sec.protocol) && sec.tls) {
      ctx.addIssue({ code: 'custom', path: ['tls'], message: `is set but protocol is ${sec.protocol}, which does not use TLS; set protocol: ssl or sasl_ssl, or remove tls` });
    }
    if (sec.tls) checkKeyPair(sec.tls, ['tls'], ctx);
  });

function checkKeyPair(
  tls: { certFile?: string | undefined; keyFile?: string | undefined; keyPassword?: string | undefined },
  at: PropertyKey[],
  ctx: z.core.$RefinementCtx<unknown>,
): void {
  if (tls.certFile && !tls.keyFile) {
    ctx.addIssue({ code: 'custom', path: [...at, 'keyFile'], message: 'required when certFile is set (a client certificate needs its private key)' });
  }
  if (tls.keyFile && !tls.certFile) {
    ctx.addIssue({ code: 'custom', path: [...at, 'certFile'], message: 'required when keyFile is set (a private key needs its client certificate)' });
  }
  if (tls.keyPassword && !tls.keyFile) {
    ctx.addIssue({ code: 'custom', path: [...at, 'keyPassword'], message: 'is set but keyFile is not' });
  }
}

const kafkaSchema = z
  .strictObject({
    /** Default ["127.0.0.1:9092"]. Bootstrap brokers; a comma-separated string also works. */
    brokers: z
      .preprocess(commaList, z.array(brokerAddress).min(1, 'expected at least one broker address like "kafka-1:9092"'))
      .default(() => ['127.0.0.1:9092']),
    /** Default "nudge". librdkafka client.id, shown in broker logs and quotas. */
    clientId: text().default('nudge'),
    /** Default "nudge.events". The topic of AppEvent messages (DESIGN §2.1). */
    topic: topicName.prefault('nudge.events'),
    /** Default "nudge.events.dlq". Where undecodable or invalid events go, with a reason. */
    dlqTopic: topicName.prefault('nudge.events.dlq'),
    /** Default "nudge-engine". The consumer group of the engine. */
    groupId: text().default('nudge-engine'),
    /** Default plaintext with no credentials. */
    security: z.preprocess(emptyAsAbsent, kafkaSecuritySchema.prefault({})),
    /** Default {}. Extra librdkafka properties for advanced tuning; Nudge-owned ones are refused. */
    librdkafka: z.preprocess(emptyAsAbsent, librdkafkaExtras.default(() => ({}))),
  })
  .superRefine((kafka, ctx) => {
    if (kafka.dlqTopic === kafka.topic) {
      ctx.addIssue({ code: 'custom', path: ['dlqTopic'], message: 'must differ from kafka.topic, or bad events would be consumed again' });
    }
  });

// ---------------------------------------------------------------------------------------------
// redis

const redisUrl = z.unknown().transform((v, ctx) => {
  if (typeof v === 'string') {
    try {
      const url = new URL(v);
      const dbOk = url.pathname === '' || url.pathname === '/' || /^\/\d{1,2}$/.test(url.pathname);
      if ((url.protocol === 'redis:' || url.protocol === 'rediss:') && url.hostname !== '' && dbOk) return v;
    } catch {
      // fall through to the message
    }
  }
  const got = typeof v === 'string' ? describeValue(maskUrlCredentials(v)) : describeValue(v);
  ctx.addIssue({ code: 'custom', message: `expected a URL like "redis://127.0.0.1:6379/0" (rediss:// for TLS), got ${got}` });
  return z.NEVER;
});

const redisTlsSchema = z.strictObject({
  /** Default: Node's bundled CA store. CA certificate (PEM) that signed the server's certificate. */
  caFile: readablePath(false).optional(),
  /** Default none. Client certificate (PEM) when the server requires one (tls-auth-clients). */
  certFile: readablePath(false).optional(),
  /** Default none. Client private key (PEM); needs certFile. */
  keyFile: readablePath(false).optional(),
  /** Default true. Refuse a server certificate the CA did not sign. Only turn off on a laptop. */
  rejectUnauthorized: z.boolean().default(true),
  /** Default: the URL's host name. The name to check the certificate against (SNI). */
  servername: text().optional(),
});

const redisSchema = z
  .strictObject({
    /** Default "redis://127.0.0.1:6379". rediss:// turns TLS on. May carry user:password@. */
    url: redisUrl.prefault('redis://127.0.0.1:6379'),
    /** Default none. Redis ACL user (reliability.md §5.4: a user per role). */
    username: text().optional(),
    /** Default none. Password of the ACL user (or of `requirepass`). Secret. */
    password: z.string().min(1).optional(),
    /** Only with a rediss:// URL. */
    tls: z.preprocess(emptyAsAbsent, redisTlsSchema.optional()),
    /**
     * Default "nudge". A namespace written INSIDE Nudge's key names by the one key-builder module
     * (with the Redis Cluster hash tags). It is NOT ioredis' `keyPrefix` option, which Nudge never
     * uses: that option does not apply to keys built inside Lua scripts or by BullMQ.
     */
    keyPrefix: z
      .string()
      .regex(/^[A-Za-z0-9_.-]{1,32}$/, { error: (iss) => `expected 1-32 letters, digits, ".", "_" or "-", got ${describeValue(iss.input)}` })
      .default('nudge'),
  })
  .superRefine((redis, ctx) => {
    const url = new URL(redis.url);
    if ((url.username || url.password) && (redis.username !== undefined || redis.password !== undefined)) {
      ctx.addIssue({ code: 'custom', path: ['url'], message: 'carries credentials and redis.username/password are set too; keep one of the two' });
    }
    if (redis.username !== undefined && redis.password === undefined && !url.password) {
      ctx.addIssue({ code: 'custom', path: ['password'], message: 'required when redis.username is set (an ACL user logs in with a password)' });
    }
    if (redis.tls && url.protocol !== 'rediss:') {
      ctx.addIssue({ code: 'custom', path: ['tls'], message: 'is set but redis.url starts with redis://; use rediss:// to turn TLS on, or remove tls' });
    }
    if (redis.tls) checkKeyPair(redis.tls, ['tls'], ctx);
  });

// ---------------------------------------------------------------------------------------------
// http, time, events, log

const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|::1|\[::1\])$/i;

const httpSchema = z
  .strictObject({
    /** Default "127.0.0.1". Listen address of the ops API; loopback unless a token is set. */
    host: text().default('127.0.0.1'),
    /** Default 8080. */
    port: port.prefault(8080),
    /** Default none. Bearer token required on /v1/*; at least 16 characters. Secret. */
    token: z
      .string()
      .min(16)
      .regex(/^[A-Za-z0-9._~+/=-]+$/, 'expected only letters, digits and - . _ ~ + / = (the characters of a bearer token)')
      .optional(),
    /** Default false. Require the token on /metrics too (Prometheus can send it). */
    metricsRequireToken: z.boolean().default(false),
  })
  .superRefine((http, ctx) => {
    if (http.metricsRequireToken && !http.token) {
      ctx.addIssue({ code: 'custom', path: ['metricsRequireToken'], message: 'is true but http.token is not set' });
    }
    if (!http.token && !LOOPBACK.test(http.host)) {
      ctx.addIssue({
        code: 'custom',
        path: ['token'],
        message: `required when http.host is not a loopback address (${http.host} exposes the API to the network); set a token of at least 16 characters or bind to 127.0.0.1`,
      });
    }
  });

const timeSchema = z
  .strictObject({
    /** Default "UTC". IANA zone that defines calendar days, ISO weeks and months for reports. */
    reportingTimeZone: timeZone.prefault('UTC'),
    /** Default "2h". Events further behind their lane's stream time count as late, change no count. */
    allowedLateness: duration('2h'),
    /** Default "5m". Events further ahead of the wall clock are clamped to it (and counted). */
    maxFutureSkew: duration('5m'),
    /** Default "1h". Journey triggers ignore events older than this by the wall clock. */
    maxTriggerAge: duration('1h'),
  })
  .transform((t) => ({
    reportingTimeZone: t.reportingTimeZone,
    allowedLatenessMs: t.allowedLateness,
    maxFutureSkewMs: t.maxFutureSkew,
    maxTriggerAgeMs: t.maxTriggerAge,
  }));

// Small on purpose: these bound what one hostile event can cost in memory (reliability.md §5.6).
const eventsSchema = z.strictObject({
  /** Default 65536. Larger messages go to the DLQ undecoded. Range 256..1048576. */
  maxEventBytes: wholeNumber(256, 1_048_576).prefault(65_536),
  /** Default 32. Events with more props are rejected. Range 0..256. */
  maxProps: wholeNumber(0, 256).prefault(32),
  /** Default 512. Longest prop value, in characters. Range 1..8192. */
  maxPropValueLength: wholeNumber(1, 8192).prefault(512),
});

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

const logSchema = z.strictObject({
  /** Default info. */
  level: choice(LOG_LEVELS, (s) => s.toLowerCase()).prefault('info'),
});

// ---------------------------------------------------------------------------------------------
// The whole file

/** Sections of later releases, refused with NUDGE_CONFIG_UNSUPPORTED rather than ignored. */
export const RESERVED_SECTIONS: Readonly<Record<string, string>> = {
  workers: 'workers',
};

const reserved = (name: string) =>
  z
    .unknown()
    .optional()
    .superRefine((value, ctx) => {
      if (value === undefined) return;
      ctx.addIssue({
        code: 'custom',
        message: `not supported yet in this version of Nudge (it arrives with the ${RESERVED_SECTIONS[name]} release); remove the section to start`,
        params: { unsupported: true, ...AT_KEY },
      });
    });

const section = <T extends z.ZodType>(schema: T) => z.preprocess(emptyAsAbsent, schema.prefault({} as never));

/** Sections journeys refer into: their own problems must be fixed before references are checked. */
const REFERENCED = new Set(['behaviour', 'policy', 'touches', 'activity']);
const isJourneysList = (v: unknown) => typeof v === 'object' && v !== null && Array.isArray((v as { journeys?: unknown }).journeys);

export const NudgeConfigSchema = z
  .strictObject({
    kafka: section(kafkaSchema),
    redis: section(redisSchema),
    http: section(httpSchema),
    time: section(timeSchema),
    events: section(eventsSchema),
    log: section(logSchema),
    activity: section(activitySchema),
    lifecycle: section(lifecycleSchema),
    behaviour: section(behaviourSchema),
    /** Default none. The journey language: docs/config.md "journeys". */
    journeys: z.preprocess(emptyAsAbsent, journeysSchema.default([])),
    policy: section(policySchema),
    touches: section(touchesSchema),
    workers: reserved('workers'),
  })
  .superRefine(
    (cfg, ctx) => {
      // Journeys with problems of their own are skipped: their values may be half-parsed.
      const broken = new Set(ctx.issues.flatMap((i) => (i.path?.[0] === 'journeys' && typeof i.path[1] === 'number' ? [i.path[1]] : [])));
      const breakdownTraits = cfg.activity.breakdowns.flatMap((b) => (b.trait !== undefined ? [b.trait] : []));
      checkJourneyReferences({ journeys: cfg.journeys, policy: cfg.policy, touches: cfg.touches, behaviour: cfg.behaviour, breakdownTraits, skip: broken }, ctx);
    },
    // Also when other journeys or sections have problems, so one round trip shows these too;
    // not when a section the references point into is itself broken.
    { when: (payload) => isJourneysList(payload.value) && !payload.issues.some((i) => REFERENCED.has(String(i.path?.[0]))) },
  )
  .transform(({ kafka, redis, http, time, events, log, activity, lifecycle, behaviour, journeys, policy, touches }) => ({
    kafka,
    redis,
    http,
    time,
    events,
    log,
    activity,
    lifecycle,
    behaviour,
    journeys,
    policy,
    touches,
  }));

/** Relative paths in these fields are resolved against the config file's directory. */
export const FILE_PATH_FIELDS: readonly (readonly string[])[] = [
  ['kafka', 'security', 'tls', 'caFile'],
  ['kafka', 'security', 'tls', 'certFile'],
  ['kafka', 'security', 'tls', 'keyFile'],
  ['redis', 'tls', 'caFile'],
  ['redis', 'tls', 'certFile'],
  ['redis', 'tls', 'keyFile'],
];

export type DeepReadonly<T> = T extends readonly (infer E)[]
  ? readonly DeepReadonly<E>[]
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T;

/** The validated, frozen config every component receives. Durations are in milliseconds. */
export type NudgeConfig = DeepReadonly<z.output<typeof NudgeConfigSchema>>;

// ---------------------------------------------------------------------------------------------
// Known keys, for "did you mean" on unknown keys.

interface SchemaLike {
  _zod: { def: { type: string; shape?: Record<string, SchemaLike>; innerType?: SchemaLike; in?: SchemaLike; out?: SchemaLike; valueType?: SchemaLike; element?: SchemaLike } };
}

const WRAPPERS = new Set(['default', 'prefault', 'optional', 'nullable', 'readonly', 'nonoptional', 'catch']);

function unwrap(schema: SchemaLike): SchemaLike {
  let s = schema;
  for (;;) {
    const def = s._zod.def;
    if (WRAPPERS.has(def.type) && def.innerType) s = def.innerType;
    else if (def.type === 'pipe' && def.in && def.out) s = def.in._zod.def.type === 'transform' ? def.out : def.in;
    else return s;
  }
}

/** The keys a mapping at `path` may have, or undefined when `path` is not a strict mapping. */
export function knownKeysAt(path: readonly PropertyKey[]): string[] | undefined {
  let s: SchemaLike | undefined = unwrap(NudgeConfigSchema as unknown as SchemaLike);
  for (const segment of path) {
    const def: SchemaLike['_zod']['def'] = s._zod.def;
    if (def.type === 'object') s = def.shape?.[String(segment)];
    else if (def.type === 'record') s = def.valueType;
    else if (def.type === 'array') s = def.element;
    else return undefined;
    if (!s) return undefined;
    s = unwrap(s);
  }
  const def = s._zod.def;
  return def.type === 'object' && def.shape ? Object.keys(def.shape) : undefined;
}
