import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import {
  LineCounter,
  isAlias,
  isCollection,
  isMap,
  isPair,
  isScalar,
  isSeq,
  parseDocument,
  visit,
  type Document,
  type Node as YamlNode,
} from 'yaml';
import { ErrorCodes, NudgeError, type ErrorCode } from '../errors.js';
import { formatDuration } from './duration.js';
import {
  FILE_PATH_FIELDS,
  NudgeConfigSchema,
  configErrorMap,
  describeValue,
  knownKeysAt,
  maskUrlCredentials,
  unknownKeyMessage,
  type NudgeConfig,
} from './schema.js';

/**
 * Loads the config once at start-up: one YAML file, environment overrides on top, one
 * validation against the schema, then a deep freeze. Every problem is collected and reported
 * together, each as `file:line:col: a.b[2].c: what was expected, got what`, so a config with
 * three mistakes takes one round trip to fix, not three. Secrets are never echoed.
 */

export interface LoadConfigOptions {
  /** The YAML file. Without it (and without `defaultsOnly`) NUDGE_CONFIG from `env` is used. */
  file?: string;
  /** Environment for overrides; defaults to `process.env`. Tests pass their own. */
  env?: Record<string, string | undefined>;
  /** Read no file: defaults plus environment overrides (what `nudge demo` runs on). */
  defaultsOnly?: boolean;
}

export interface EnvOverride {
  readonly name: string;
  /** The config field it sets (`a.b.c`), or null for NUDGE_CONFIG itself. */
  readonly path: string | null;
  readonly description: string;
}

type EnvKind = 'text' | 'port' | 'path';
interface EnvSpec extends EnvOverride {
  readonly target: readonly string[];
  readonly kind: EnvKind;
}

const env = (name: string, path: string | null, kind: EnvKind, description: string): EnvSpec => ({
  name,
  path,
  description,
  kind,
  target: path === null ? [] : path.split('.'),
});

/**
 * Environment overrides, in the order they apply (REDIS_URL before NUDGE_REDIS_URL, so the
 * latter wins). An empty value counts as unset: container tools often pass `VAR=` for "none".
 */
const ENV_SPECS: readonly EnvSpec[] = [
  env('NUDGE_CONFIG', null, 'text', 'config file to load when --config is not given'),
  env('NUDGE_KAFKA_BROKERS', 'kafka.brokers', 'text', 'Kafka bootstrap brokers, comma-separated'),
  env('NUDGE_KAFKA_TOPIC', 'kafka.topic', 'text', 'topic of AppEvent messages'),
  env('NUDGE_KAFKA_DLQ_TOPIC', 'kafka.dlqTopic', 'text', 'dead-letter topic for bad events'),
  env('NUDGE_KAFKA_GROUP_ID', 'kafka.groupId', 'text', 'consumer group of the engine'),
  env('NUDGE_KAFKA_SECURITY_PROTOCOL', 'kafka.security.protocol', 'text', 'plaintext, ssl, sasl_plaintext or sasl_ssl'),
  env('NUDGE_KAFKA_SASL_MECHANISM', 'kafka.security.sasl.mechanism', 'text', 'PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512'),
  env('NUDGE_KAFKA_SASL_USERNAME', 'kafka.security.sasl.username', 'text', 'SASL user'),
  env('NUDGE_KAFKA_SASL_PASSWORD', 'kafka.security.sasl.password', 'text', 'SASL password (secret)'),
  env('NUDGE_KAFKA_SSL_CA_FILE', 'kafka.security.tls.caFile', 'path', 'CA certificate(s) for the brokers (PEM file or directory)'),
  env('REDIS_URL', 'redis.url', 'text', 'Redis URL (redis://, or rediss:// for TLS)'),
  env('NUDGE_REDIS_URL', 'redis.url', 'text', 'Redis URL; wins over REDIS_URL'),
  env('NUDGE_REDIS_USERNAME', 'redis.username', 'text', 'Redis ACL user'),
  env('NUDGE_REDIS_PASSWORD', 'redis.password', 'text', 'Redis password (secret)'),
  env('NUDGE_HTTP_HOST', 'http.host', 'text', 'listen address of the ops API'),
  env('NUDGE_HTTP_PORT', 'http.port', 'port', 'listen port of the ops API'),
  env('NUDGE_HTTP_TOKEN', 'http.token', 'text', 'bearer token for /v1/* (secret, at least 16 characters)'),
  env('NUDGE_REPORTING_TZ', 'time.reportingTimeZone', 'text', 'IANA time zone of reports, e.g. Asia/Shanghai'),
  env('NUDGE_LOG_LEVEL', 'log.level', 'text', 'trace, debug, info, warn, error, fatal or silent'),
];

/** The table of overrides, for the README and `nudge help env`. */
export const ENV_OVERRIDES: readonly EnvOverride[] = ENV_SPECS.map(({ name, path, description }) => ({ name, path, description }));

const MAX_SHOWN = 20;
const MAX_FILE_BYTES = 1024 * 1024;
const FIX_FILE = 'Fix the file and start again; `nudge check-config FILE` checks a file without starting.';
const FIX_ENV = 'Fix or unset the environment variables above and start again.';

type ProblemKind = 'file' | 'env' | 'unsupported';
interface Problem {
  kind: ProblemKind;
  /** `config/nudge.yaml:12:7`, `env NUDGE_HTTP_PORT`, or a file name alone. */
  where: string;
  /** Offset in the file, to list problems in file order. */
  pos?: number | undefined;
  path: readonly PropertyKey[];
  message: string;
}

export function loadConfig(opts: LoadConfigOptions = {}): NudgeConfig {
  const environment = opts.env ?? process.env;
  const file = opts.defaultsOnly ? undefined : (opts.file ?? nonEmpty(environment.NUDGE_CONFIG));
  if (file === undefined && !opts.defaultsOnly) {
    throw new NudgeError(
      ErrorCodes.CONFIG_INVALID,
      'no config file given: pass --config FILE or set NUDGE_CONFIG (config/nudge.yaml is the shipped example).',
    );
  }

  let raw: unknown = {};
  let yaml: ParsedYaml | undefined;
  const problems: Problem[] = [];
  if (file !== undefined) {
    yaml = parseYaml(file, readConfigFile(file));
    // After a syntax error the recovered document may not be what was meant: stop there.
    if (yaml.raw === undefined && yaml.problems.length > 0) fail(yaml.problems, file);
    problems.push(...yaml.problems);
    raw = yaml.raw ?? {};
    resolveRelativePaths(raw, dirname(resolve(file)));
  }

  const envOrigins = applyEnv(raw, environment, problems);

  const result = NudgeConfigSchema.safeParse(raw, { error: configErrorMap });
  if (!result.success) {
    for (const issue of result.error.issues) {
      problems.push(...toProblems(issue, { file, yaml, envOrigins }));
    }
  }
  if (problems.length > 0 || !result.success) fail(problems, file);
  return deepFreeze(result.data) as NudgeConfig;
}

// ---------------------------------------------------------------------------------------------
// Reading and parsing

function readConfigFile(file: string): string {
  try {
    const source = readFileSync(file);
    if (source.length > MAX_FILE_BYTES) {
      throw new NudgeError(ErrorCodes.CONFIG_INVALID, `${file}: is ${source.length} bytes; a config file is at most 1 MiB. Is this the right file?`, {
        context: { file },
      });
    }
    return source.toString('utf8');
  } catch (err) {
    if (err instanceof NudgeError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'it is a directory' : String(code);
    throw new NudgeError(
      ErrorCodes.CONFIG_INVALID,
      `cannot read the config file ${file} (${why}${resolve(file) === file ? '' : `; tried ${resolve(file)}`}). ` +
        'config/nudge.yaml is the shipped example: copy it, or pass --config FILE or set NUDGE_CONFIG.',
      { context: { file }, cause: err },
    );
  }
}

interface ParsedYaml {
  doc: Document;
  lines: LineCounter;
  /** Undefined when the YAML could not be read as a whole (syntax errors). */
  raw: unknown;
  /** Syntax errors (fatal: the schema is not checked) or duplicate keys and unknown tags. */
  problems: Problem[];
}

function parseYaml(file: string, source: string): ParsedYaml {
  const lines = new LineCounter();
  // prettyErrors off: the pretty form quotes the source line, which may hold a password.
  // uniqueKeys off: duplicates are found below, with the path and both lines in the message.
  const doc = parseDocument(source, { lineCounter: lines, prettyErrors: false, uniqueKeys: false });
  const problems: Problem[] = [];
  let fatal = false;
  const at = (pos: number | undefined, message: string, path: readonly PropertyKey[] = [], isFatal = true) => {
    problems.push({ kind: 'file', where: where(file, lines, pos), pos, path, message });
    fatal ||= isFatal;
  };

  for (const err of doc.errors) {
    const message =
      err.code === 'MULTIPLE_DOCS'
        ? 'a config file holds one YAML document; remove the "---" separator and what follows, or merge them'
        : `YAML syntax: ${err.message}`;
    at(err.pos[0], message);
  }
  // Warnings are problems too (an unknown tag such as `!env` would silently become a string).
  for (const warning of doc.warnings) at(warning.pos[0], `YAML: ${warning.message}`, [], false);
  checkStructure(doc, lines, at);
  let raw: unknown;
  if (!fatal) {
    try {
      raw = doc.toJS({ maxAliasCount: 100 });
    } catch (err) {
      at(undefined, `YAML: ${(err as Error).message}`);
    }
  }
  return { doc, lines, raw: fatal ? undefined : raw, problems };
}

/** Duplicate keys, keys that are not plain scalars, and aliases to no anchor. */
function checkStructure(
  doc: Document,
  lines: LineCounter,
  at: (pos: number | undefined, message: string, path?: readonly PropertyKey[], isFatal?: boolean) => void,
): void {
  visit(doc, {
    Map(_key, map, ancestry) {
      const firstSeen = new Map<string, number | undefined>();
      const path = pathOf(ancestry);
      for (const pair of map.items) {
        const keyNode = pair.key as YamlNode | null;
        if (!isScalar(keyNode)) {
          at(start(keyNode) ?? start(map), 'expected a plain key (a name), got a list or mapping used as a key', path);
          continue;
        }
        const key = String(keyNode.value);
        if (firstSeen.has(key)) {
          const first = firstSeen.get(key);
          const note = first === undefined ? '' : ` (first set on line ${lines.linePos(first).line})`;
          at(start(keyNode), `duplicate key ${JSON.stringify(key)}${note}; keep one`, [...path, key], false);
        } else {
          firstSeen.set(key, start(keyNode));
        }
      }
    },
    Alias(_key, alias) {
      if (!alias.resolve(doc)) at(start(alias), `YAML: alias *${alias.source} refers to no anchor &${alias.source} before it`);
    },
  });
}

/** The config path of a node from `visit`'s ancestry (Document, YAMLMap, Pair, YAMLSeq...). */
function pathOf(ancestry: readonly unknown[]): PropertyKey[] {
  const path: PropertyKey[] = [];
  for (let i = 0; i < ancestry.length; i++) {
    const node = ancestry[i];
    if (isSeq(node)) {
      const index = node.items.indexOf(ancestry[i + 1] as never);
      if (index >= 0) path.push(index);
    } else if (isPair(node) && isScalar(node.key)) {
      path.push(String(node.key.value));
    }
  }
  return path;
}

function resolveRelativePaths(raw: unknown, baseDir: string): void {
  for (const fieldPath of FILE_PATH_FIELDS) {
    const parent = getIn(raw, fieldPath.slice(0, -1));
    const key = fieldPath[fieldPath.length - 1]!;
    if (isPlainObject(parent) && typeof parent[key] === 'string' && parent[key] !== '' && !isAbsolute(parent[key])) {
      parent[key] = resolve(baseDir, parent[key]);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Environment overrides

/** Applies the overrides to `raw`; returns which env var set which path (for error messages). */
function applyEnv(raw: unknown, environment: Record<string, string | undefined>, problems: Problem[]): Map<string, string> {
  const origins = new Map<string, string>();
  for (const spec of ENV_SPECS) {
    const value = nonEmpty(environment[spec.name]);
    if (value === undefined || spec.path === null) continue;
    let parsed: unknown = value;
    if (spec.kind === 'port') {
      const n = /^\d{1,5}$/.test(value.trim()) ? Number(value.trim()) : NaN;
      if (!(n >= 0 && n <= 65535)) {
        problems.push({ kind: 'env', where: `env ${spec.name}`, path: [], message: `expected a port number 0-65535 (0 = any free port), got ${describeValue(value)}` });
        continue;
      }
      parsed = n;
    } else if (spec.kind === 'path') {
      parsed = resolve(value);
    }
    if (setIn(raw, spec.target, parsed)) origins.set(spec.target.join('.'), spec.name);
  }
  return origins;
}

function setIn(root: unknown, path: readonly string[], value: unknown): boolean {
  let node = root;
  for (let i = 0; i < path.length - 1; i++) {
    if (!isPlainObject(node)) return false;
    const key = path[i]!;
    if (node[key] === undefined || node[key] === null) node[key] = {};
    node = node[key];
  }
  if (!isPlainObject(node)) return false; // the file has a non-mapping here; that is reported
  node[path[path.length - 1]!] = value;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Issues -> problems

interface IssueContext {
  file: string | undefined;
  yaml: ParsedYaml | undefined;
  envOrigins: Map<string, string>;
}

type Issue = { code: string; path: PropertyKey[]; message: string; keys?: string[]; params?: Record<string, unknown> };

function toProblems(issue: Issue, ctx: IssueContext): Problem[] {
  if (issue.code === 'unrecognized_keys' && issue.keys) {
    const known = knownKeysAt(issue.path) ?? [];
    return issue.keys.map((key) => problemAt([...issue.path, key], unknownKeyMessage(key, known), 'file', true, ctx));
  }
  if (issue.path.length === 0 && issue.code === 'invalid_type') {
    const message = issue.message.replace(/^expected a mapping/, 'expected a mapping of sections (kafka:, redis:, http:, ...)');
    return [problemAt([], message, 'file', false, ctx)];
  }
  const unsupported = issue.code === 'custom' && issue.params?.unsupported === true;
  return [problemAt(issue.path, issue.message, unsupported ? 'unsupported' : 'file', issue.params?.atKey === true, ctx)];
}

function problemAt(path: readonly PropertyKey[], message: string, kind: ProblemKind, atKey: boolean, ctx: IssueContext): Problem {
  const dotted = path.map(String).join('.');
  for (const [origin, name] of ctx.envOrigins) {
    if (dotted === origin || dotted.startsWith(`${origin}.`)) return { kind: 'env', where: `env ${name}`, path: [], message };
  }
  if (!ctx.yaml || ctx.file === undefined) return { kind, where: ctx.file ?? 'config', path, message };
  const pos = locate(ctx.yaml.doc, path, atKey);
  return { kind, where: where(ctx.file, ctx.yaml.lines, pos), pos, path, message };
}

/**
 * The offset of the node at `path`: the value for a scalar, the key for a mapping or list
 * entry, an unknown key itself when `atKey`; for a path that is not in the file (a missing
 * required field) the key of its nearest ancestor that is.
 */
function locate(doc: Document, path: readonly PropertyKey[], atKey: boolean): number | undefined {
  let node: unknown = doc.contents;
  let keyPos: number | undefined;
  for (let i = 0; i < path.length; i++) {
    if (isAlias(node)) node = node.resolve(doc);
    const segment = path[i];
    const last = i === path.length - 1;
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(segment));
      if (!pair) return keyPos ?? start(node);
      keyPos = start(pair.key as YamlNode);
      if (last && atKey) return keyPos;
      node = pair.value;
    } else if (isSeq(node) && typeof segment === 'number' && node.items[segment] !== undefined) {
      node = node.items[segment];
      keyPos = start(node as YamlNode) ?? keyPos;
    } else {
      return keyPos ?? start(node as YamlNode);
    }
  }
  if (isCollection(node) || node === null || node === undefined) return keyPos ?? start(node as YamlNode);
  // An empty value (`topic:`) has a zero-width range at the start of the next line: use the key.
  const range = (node as YamlNode).range;
  return range && range[1] > range[0] ? range[0] : (keyPos ?? range?.[0]);
}

function start(node: YamlNode | null | undefined): number | undefined {
  return node?.range?.[0];
}

function where(file: string, lines: LineCounter, pos: number | undefined): string {
  if (pos === undefined) return file;
  const { line, col } = lines.linePos(pos);
  return `${file}:${line}:${col}`;
}

/** `kafka.librdkafka["enable.auto.commit"]`, `journeys[2].trigger.within`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(String(segment))) out += out === '' ? String(segment) : `.${String(segment)}`;
    else out += `[${JSON.stringify(String(segment))}]`;
  }
  return out;
}

function fail(problems: readonly Problem[], file: string | undefined): never {
  const kinds = new Set(problems.map((p) => p.kind));
  const code: ErrorCode =
    kinds.size === 1 && kinds.has('env')
      ? ErrorCodes.CONFIG_ENV_INVALID
      : kinds.size === 1 && kinds.has('unsupported')
        ? ErrorCodes.CONFIG_UNSUPPORTED
        : ErrorCodes.CONFIG_INVALID;
  // File order first (what an editor shows), then problems without a position, then env.
  const rank = (p: Problem) => (p.kind === 'env' ? 2 : p.pos === undefined ? 1 : 0);
  const sorted = [...problems].sort((a, b) => rank(a) - rank(b) || (a.pos ?? 0) - (b.pos ?? 0));
  const lines = sorted.slice(0, MAX_SHOWN).map((p) => {
    const path = formatPath(p.path);
    return path === '' ? `${p.where}: ${p.message}` : `${p.where}: ${path}: ${p.message}`;
  });
  if (problems.length > MAX_SHOWN) lines.push(`... and ${problems.length - MAX_SHOWN} more`);
  const count = problems.length === 1 ? '1 problem' : `${problems.length} problems`;
  const advice = kinds.size === 1 && kinds.has('env') ? FIX_ENV : FIX_FILE;
  throw new NudgeError(code, [`the config has ${count}:`, ...lines, advice].join('\n'), {
    context: { file, problems: lines.slice(0, MAX_SHOWN) },
  });
}

// ---------------------------------------------------------------------------------------------
// Summary

const SET = '(set)';

/** A short human summary with every secret masked, for `nudge check-config` and start-up logs. */
export function describeConfig(cfg: NudgeConfig): string {
  const { kafka, redis, http, time, events, log, activity, lifecycle, behaviour, journeys, touches } = cfg;
  const sec = kafka.security;
  const kafkaAuth = [
    sec.protocol,
    sec.sasl ? `${sec.sasl.mechanism} as ${JSON.stringify(sec.sasl.username)}, password ${SET}` : undefined,
    sec.tls?.caFile ? `CA ${sec.tls.caFile}` : undefined,
    sec.tls?.certFile ? `client certificate ${sec.tls.certFile}` : undefined,
    sec.protocol === 'ssl' || sec.protocol === 'sasl_ssl'
      ? sec.tls?.verifyHostname === false
        ? 'host name NOT verified'
        : 'host name verified'
      : 'not encrypted',
  ].filter((s) => s !== undefined);
  const extras = Object.entries(kafka.librdkafka).map(
    ([k, v]) => `${k}=${/pass|secret|token|credential|\.pem$/i.test(k) ? '***' : String(v)}`,
  );
  const redisTls = redis.url.startsWith('rediss:')
    ? `TLS, certificate ${redis.tls?.rejectUnauthorized === false ? 'NOT verified' : 'verified'}`
    : 'not encrypted';
  return [
    `kafka   brokers ${kafka.brokers.join(',')}; topic ${kafka.topic}, DLQ ${kafka.dlqTopic}; group ${kafka.groupId}; client ${kafka.clientId}`,
    `        security ${kafkaAuth.join('; ')}`,
    ...(extras.length > 0 ? [`        librdkafka ${extras.join(', ')}`] : []),
    `redis   ${maskUrlCredentials(redis.url)}${redis.username ? ` as ${JSON.stringify(redis.username)}` : ''}` +
      `${redis.password ? `, password ${SET}` : ''}; ${redisTls}; key prefix ${JSON.stringify(redis.keyPrefix)}`,
    `http    ${http.host}:${http.port}; ${http.token ? `token ${SET} for /v1/*${http.metricsRequireToken ? ' and /metrics' : ''}` : 'no token'}`,
    `time    reporting zone ${time.reportingTimeZone}; allowed lateness ${formatDuration(time.allowedLatenessMs)}; ` +
      `max future skew ${formatDuration(time.maxFutureSkewMs)}; max trigger age ${formatDuration(time.maxTriggerAgeMs)}`,
    `events  at most ${events.maxEventBytes} bytes, ${events.maxProps} props, ${events.maxPropValueLength} characters per prop value`,
    `log     level ${log.level}`,
    `activity ${activity.metrics.map((m) => `${m.name} (${m.events ? m.events.join(', ') : 'any event'})`).join('; ')}: DAU/WAU/MAU, week, month`,
    `lifecycle new for ${formatDuration(lifecycle.newForMs)}; dormant after ${formatDuration(lifecycle.dormantAfterMs)}; ` +
      `churned after ${formatDuration(lifecycle.churnedAfterMs)}; reactivated for ${formatDuration(lifecycle.reactivatedForMs)}; timers swept every ${formatDuration(lifecycle.sweepIntervalMs)}`,
    ...behaviour.counters.map((c) => `counter ${c.name}: at least ${c.keep} of ${describeMatch(c.match)} within ${formatDuration(c.withinMs)}`),
    ...behaviour.sums.map((x) => `sum     ${x.name}: value of ${describeMatch(x.match)} over ${formatDuration(x.windowMs)} in ${formatDuration(x.bucketMs)} buckets`),
    ...behaviour.streaks.map((x) => `streak  ${x.name}: consecutive days with ${describeMatch(x.match)}`),
    ...(behaviour.traits.length > 0 ? [`traits  ${behaviour.traits.join(', ')}`] : []),
    `touches queue ${touches.queue}; completed jobs kept ${formatDuration(touches.keepCompletedMs)}; ${touches.attempts} attempts, backoff from ${formatDuration(touches.backoffMs)}`,
    ...describeChannels(touches, journeys),
  ].join('\n');
}

/** Every channel a journey uses or the touches section lists, with its adapter (secrets masked). */
function describeChannels(touches: NudgeConfig['touches'], journeys: NudgeConfig['journeys']): string[] {
  const used = new Set(journeys.flatMap((j) => [...j.channel, ...j.steps.flatMap((s) => s.channel ?? [])]));
  const names = [...new Set([...Object.keys(touches.channels), ...used])].sort();
  return names.map((name) => {
    const c = touches.channels[name];
    if (c === undefined) return `channel ${name}: ${touches.defaultAdapter} adapter (not listed under touches.channels)`;
    const limits = [`concurrency ${c.concurrency}`, c.rateLimit ? `at most ${c.rateLimit.max} per ${formatDuration(c.rateLimit.perMs)}` : ''].filter(Boolean);
    const hook = c.webhook
      ? ` to ${maskUrlCredentials(c.webhook.url)}, secret ${SET}${Array.isArray(c.webhook.secret) && c.webhook.secret.length > 1 ? ` (${c.webhook.secret.length}, rotating)` : ''}, timeout ${formatDuration(c.webhook.timeoutMs)}${c.webhook.allowPrivateAddresses ? ', private addresses allowed' : ''}`
      : '';
    return `channel ${name}: ${c.adapter} adapter${hook}; ${limits.join(', ')}${used.has(name) ? '' : ' (no journey uses it)'}`;
  });
}

// ---------------------------------------------------------------------------------------------
// Small helpers

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function getIn(root: unknown, path: readonly string[]): unknown {
  let node = root;
  for (const key of path) node = isPlainObject(node) ? node[key] : undefined;
  return node;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

function describeMatch(m: { readonly name?: string | readonly string[]; readonly props?: Readonly<Record<string, string>>; readonly channel?: string }): string {
  const names = m.name === undefined ? 'any event' : typeof m.name === 'string' ? m.name : m.name.join(' or ');
  const props = Object.entries(m.props ?? {}).map(([k, v]) => `${k}=${v}`);
  return [names, ...(props.length ? [`with ${props.join(', ')}`] : []), ...(m.channel ? [`on ${m.channel}`] : [])].join(' ');
}
