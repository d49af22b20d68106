import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { ENV_OVERRIDES, describeConfig, loadConfig, type LoadConfigOptions } from '../../src/config/load.js';
import { ErrorCodes, NudgeError } from '../../src/errors.js';

const SHIPPED = fileURLToPath(new URL('../../config/nudge.yaml', import.meta.url));
const DOCS = fileURLToPath(new URL('../../docs/config.md', import.meta.url));
const FIX_FILE = 'Fix the file and start again; `nudge check-config FILE` checks a file without starting.';
const FIX_ENV = 'Fix or unset the environment variables above and start again.';
const SECRET = 's3cret-XYZ';

const root = mkdtempSync(join(tmpdir(), 'nudge-config-test-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let count = 0;
/** Writes `lines` to <tmp>/<n>/nudge.yaml (a directory per file, so error text says nudge.yaml). */
function configFile(lines: readonly string[]): string {
  const dir = join(root, String(count++));
  mkdirSync(dir);
  const file = join(dir, 'nudge.yaml');
  writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

function loadError(opts: LoadConfigOptions): NudgeError {
  try {
    loadConfig(opts);
  } catch (err) {
    if (err instanceof NudgeError) return err;
    throw err;
  }
  throw new Error('expected loadConfig to refuse the config');
}

/** Loads `lines` with an empty environment and returns the error. */
function refused(lines: readonly string[], env: Record<string, string> = {}): NudgeError {
  return loadError({ file: configFile(lines), env });
}

const DEFAULTS = {
  kafka: {
    brokers: ['127.0.0.1:9092'],
    clientId: 'nudge',
    topic: 'nudge.events',
    dlqTopic: 'nudge.events.dlq',
    groupId: 'nudge-engine',
    security: { protocol: 'plaintext' },
    librdkafka: {},
  },
  redis: { url: 'redis://127.0.0.1:6379', keyPrefix: 'nudge' },
  http: { host: '127.0.0.1', port: 8080, metricsRequireToken: false },
  time: { reportingTimeZone: 'UTC', allowedLatenessMs: 7_200_000, maxFutureSkewMs: 300_000, maxTriggerAgeMs: 3_600_000 },
  events: { maxEventBytes: 65_536, maxProps: 32, maxPropValueLength: 512 },
  log: { level: 'info' },
  activity: {
    metrics: [{ name: 'active' }, { name: 'financial', events: ['transfer_done', 'fund_purchase', 'payment'] }],
    breakdowns: [],
  },
  lifecycle: { newForMs: 604_800_000, dormantAfterMs: 1_209_600_000, churnedAfterMs: 2_592_000_000, reactivatedForMs: 604_800_000, sweepIntervalMs: 1_000 },
  behaviour: { counters: [], sums: [], streaks: [], traits: [], deviceSignups: [] },
  journeys: [],
  policy: {
    consent: { default: 'granted', channels: {}, events: [] },
    caps: [],
    globalHoldout: 0,
    holdoutSalt: 'nudge',
  },
  touches: { queue: 'nudge-touches', keepCompletedMs: 604_800_000, attempts: 8, backoffMs: 5_000, defaultAdapter: 'log', channels: {} },
};

describe('loadConfig: valid files', () => {
  it('loads the shipped config/nudge.yaml: the defaults with the Asia/Shanghai reporting zone', () => {
    const cfg = loadConfig({ file: SHIPPED, env: {} });
    const { behaviour, journeys, policy, touches, ...rest } = cfg;
    const { behaviour: _b, journeys: _j, policy: _p, touches: _t, ...defaults } = DEFAULTS;
    expect(rest).toEqual({ ...defaults, time: { ...DEFAULTS.time, reportingTimeZone: 'Asia/Shanghai' } });
    // The banking playbook (DOMAIN.md), issue 4 item 7: every journey it names, with caps,
    // quiet hours 22:00-08:00 and a 10% holdout on the marketing journeys.
    expect(journeys.map((j) => j.id).sort()).toEqual(
      ['checkin-3', 'checkin-7', 'fund-interest', 'high-value-rm', 'loan-interest', 'referral-reward', 'salary-autoinvest', 'transfer-abandoned', 'win-back'].sort(),
    );
    expect(policy.caps.length).toBeGreaterThan(0);
    expect(policy.quietHours).toMatchObject({ from: 22 * 60, to: 8 * 60, action: 'defer' });
    expect(Object.keys(touches.channels).sort()).toEqual(['in_app', 'push', 'rm_task', 'sms']);
    // The banking playbook's behaviour windows (DOMAIN.md): page interest, transfers, check-ins.
    expect(behaviour.counters.map((c) => c.name)).toEqual(['loan_views', 'fund_views', 'loan_applications']);
    expect(behaviour.sums.map((c) => c.name)).toEqual(['transfers_30d']);
    expect(behaviour.streaks.map((c) => c.name)).toEqual(['checkin']);
  });

  it('applies every default to an empty file', () => {
    expect(loadConfig({ file: configFile([]), env: {} })).toEqual(DEFAULTS);
    expect(loadConfig({ file: configFile(['# nothing but a comment']), env: {} })).toEqual(DEFAULTS);
  });

  it('reads a section left empty (every line commented out) as all defaults', () => {
    expect(loadConfig({ file: configFile(['kafka:', '  # topic: x', 'http:']), env: {} })).toEqual(DEFAULTS);
  });

  it('applies defaults with defaultsOnly and no file', () => {
    expect(loadConfig({ defaultsOnly: true, env: {} })).toEqual(DEFAULTS);
  });

  it('turns durations into milliseconds, a comma string into a broker list, and canonicalises the zone', () => {
    const cfg = loadConfig({
      file: configFile([
        'kafka:',
        '  brokers: "kafka-1:9092, kafka-2:9093"',
        'time:',
        '  reportingTimeZone: asia/shanghai',
        '  allowedLateness: 1h30m',
        '  maxFutureSkew: 30s',
        '  maxTriggerAge: 90000',
      ]),
      env: {},
    });
    expect(cfg.kafka.brokers).toEqual(['kafka-1:9092', 'kafka-2:9093']);
    expect(cfg.time).toEqual({
      reportingTimeZone: 'Asia/Shanghai',
      allowedLatenessMs: 5_400_000,
      maxFutureSkewMs: 30_000,
      maxTriggerAgeMs: 90_000,
    });
  });

  it('resolves relative certificate paths against the directory of the config file', () => {
    const file = configFile(['kafka:', '  security:', '    protocol: ssl', '    tls:', '      caFile: ca.pem']);
    writeFileSync(join(dirname(file), 'ca.pem'), 'not checked here, only read by librdkafka');
    const cfg = loadConfig({ file, env: {} });
    expect(cfg.kafka.security.tls?.caFile).toBe(join(dirname(file), 'ca.pem'));
  });

  it('returns a deep-frozen config', () => {
    const cfg = loadConfig({ file: SHIPPED, env: {} });
    expect(Object.isFrozen(cfg)).toBe(true);
    expect(Object.isFrozen(cfg.kafka.security)).toBe(true);
    expect(Object.isFrozen(cfg.kafka.brokers)).toBe(true);
    // ES modules run in strict mode, where writing to a frozen object throws.
    expect(() => {
      (cfg.kafka.brokers as string[]).push('evil:9092');
    }).toThrow(TypeError);
    expect(() => {
      (cfg.time as { reportingTimeZone: string }).reportingTimeZone = 'UTC';
    }).toThrow(TypeError);
  });
});

describe('loadConfig: each error names file:line:col, the path and what was expected', () => {
  it('a bad duration', () => {
    const err = refused(['kafka:', '  topic: nudge.events', 'time:', '  allowedLateness: 30 minutes']);
    expect(err.code).toBe(ErrorCodes.CONFIG_INVALID);
    expect(err.message).toContain('nudge.yaml:4:20: time.allowedLateness: expected a duration like "30m", got "30 minutes"');
  });

  it('a port given as a string', () => {
    const err = refused(['http:', '  port: "8080"']);
    expect(err.message).toContain('nudge.yaml:2:9: http.port: expected a port number 0-65535 (0 = any free port), got "8080"');
  });

  it('a value outside an enumeration', () => {
    const err = refused(['log:', '  level: loud']);
    expect(err.message).toContain(
      'nudge.yaml:2:10: log.level: expected one of trace, debug, info, warn, error, fatal, silent, got "loud"',
    );
  });

  it('a time zone that does not exist', () => {
    const err = refused(['time:', '  reportingTimeZone: Asia/Shangai']);
    expect(err.message).toContain(
      'nudge.yaml:2:22: time.reportingTimeZone: expected an IANA time zone like "Asia/Shanghai" or "UTC", got "Asia/Shangai"',
    );
  });

  it('a bad entry in a list, with its index', () => {
    const err = refused(['kafka:', '  brokers:', '    - kafka-1:9092', '    - "kafka 2:9092"']);
    expect(err.message).toContain(
      'nudge.yaml:4:7: kafka.brokers[1]: expected a broker address like "kafka-1:9092", got "kafka 2:9092"',
    );
  });

  it('a wrong type', () => {
    const err = refused(['kafka:', '  security:', '    tls:', '      verifyHostname: "no"', '    protocol: ssl']);
    expect(err.message).toContain('nudge.yaml:4:23: kafka.security.tls.verifyHostname: expected true or false, got "no"');
  });

  it('a number where a string belongs, with the fix, and no echo when it is a secret', () => {
    const err = refused(['kafka:', '  clientId: 1234', '  security:', '    protocol: sasl_ssl', '    sasl:', '      username: nudge', '      password: 0123456']);
    expect(err.message).toContain('nudge.yaml:2:13: kafka.clientId: expected a string, got 1234 (put it in quotes)');
    expect(err.message).toContain('nudge.yaml:7:17: kafka.security.sasl.password: expected a string, got a number (put it in quotes)');
    expect(err.message).not.toContain('123456');
  });

  it('a missing required field, at its parent', () => {
    const err = refused(['kafka:', '  security:', '    protocol: sasl_ssl', '    sasl:', '      username: nudge']);
    expect(err.message).toContain('nudge.yaml:4:5: kafka.security.sasl.password: required (expected a string)');
  });

  it('a cross-field rule: sasl_ssl without credentials', () => {
    const err = refused(['kafka:', '  security:', '    protocol: sasl_ssl']);
    expect(err.message).toContain(
      'nudge.yaml:2:3: kafka.security.sasl: required when protocol is sasl_ssl: set username and password (and mechanism, default SCRAM-SHA-512)',
    );
  });

  it('a cross-field rule: TLS settings with a protocol that does not use TLS', () => {
    const err = refused(['kafka:', '  security:', '    tls:', '      verifyHostname: false']);
    expect(err.message).toContain(
      'nudge.yaml:3:5: kafka.security.tls: is set but protocol is plaintext, which does not use TLS; set protocol: ssl or sasl_ssl, or remove tls',
    );
  });

  it('a certificate file that does not exist, naming the path tried', () => {
    const file = configFile(['kafka:', '  security:', '    protocol: ssl', '    tls:', '      caFile: missing-ca.pem']);
    const err = loadError({ file, env: {} });
    const tried = join(dirname(file), 'missing-ca.pem');
    expect(err.message).toContain(`nudge.yaml:5:15: kafka.security.tls.caFile: cannot read "${tried}" (no such file)`);
  });

  it('a librdkafka property that Nudge owns', () => {
    const err = refused(['kafka:', '  librdkafka:', '    fetch.max.bytes: 1048576', '    enable.auto.commit: true']);
    expect(err.message).toContain(
      'nudge.yaml:4:5: kafka.librdkafka["enable.auto.commit"]: is set by Nudge itself; remove it: offsets are committed only after a batch is committed to Redis',
    );
  });

  it('a Redis URL that is not one, without echoing its password', () => {
    const err = refused(['redis:', `  url: "http://nudge:${SECRET}@redis:6379"`]);
    expect(err.message).toContain(
      'nudge.yaml:2:8: redis.url: expected a URL like "redis://127.0.0.1:6379/0" (rediss:// for TLS), got "http://***@redis:6379"',
    );
  });

  it('collects every problem in one message, in file order, then says what to do', () => {
    const file = configFile(['http:', '  port: -1', 'log:', '  level: loud', 'time:', '  maxFutureSkew: soon']);
    const err = loadError({ file, env: {} });
    expect(err.message.split('\n')).toEqual([
      'the config has 3 problems:',
      `${file}:2:9: http.port: expected a port number 0-65535 (0 = any free port), got -1`,
      `${file}:4:10: log.level: expected one of trace, debug, info, warn, error, fatal, silent, got "loud"`,
      `${file}:6:18: time.maxFutureSkew: expected a duration like "30m", got "soon"`,
      FIX_FILE,
    ]);
  });

  it('shows at most 20 problems and counts the rest', () => {
    const keys = Array.from({ length: 25 }, (_, i) => `  unknownKey${i}: 1`);
    const lines = refused(['http:', ...keys]).message.split('\n');
    expect(lines[0]).toBe('the config has 25 problems:');
    expect(lines).toHaveLength(1 + 20 + 1 + 1);
    expect(lines.at(-2)).toBe('... and 5 more');
    expect(lines.at(-1)).toBe(FIX_FILE);
  });

  it('a file whose top level is not a mapping', () => {
    const err = refused(['- kafka', '- redis']);
    expect(err.message).toContain('nudge.yaml:1:1: expected a mapping of sections (kafka:, redis:, http:, ...), got a list of 2 entries');
  });
});

describe('loadConfig: sections of later releases', () => {
  it('refuses workers: with NUDGE_CONFIG_UNSUPPORTED, even when empty', () => {
    const err = refused(['kafka:', '  topic: nudge.events', 'workers:']);
    expect(err.code).toBe(ErrorCodes.CONFIG_UNSUPPORTED);
    expect(err.message).toContain(
      'nudge.yaml:3:1: workers: not supported yet in this version of Nudge (it arrives with the workers release); remove the section to start',
    );
  });

  it.each(['journeys', 'policy', 'touches'])('accepts %s: left empty as its defaults', (section) => {
    expect(loadConfig({ file: configFile([`${section}:`]), env: {} })).toEqual(DEFAULTS);
  });

  it('refuses the OAUTHBEARER mechanism as not supported yet', () => {
    const err = refused([
      'kafka:',
      '  security:',
      '    protocol: sasl_ssl',
      '    sasl:',
      '      mechanism: OAUTHBEARER',
      '      username: nudge',
      '      password: x',
    ]);
    expect(err.code).toBe(ErrorCodes.CONFIG_UNSUPPORTED);
    expect(err.message).toContain(
      'nudge.yaml:5:18: kafka.security.sasl.mechanism: OAUTHBEARER is not supported yet in this version of Nudge; use SCRAM-SHA-512 (or SCRAM-SHA-256, PLAIN)',
    );
  });

  it('uses NUDGE_CONFIG_INVALID when an unsupported section comes with other problems', () => {
    const err = refused(['workers: {}', 'log:', '  level: loud']);
    expect(err.code).toBe(ErrorCodes.CONFIG_INVALID);
    expect(err.message).toContain('nudge.yaml:1:1: workers: not supported yet');
    expect(err.message).toContain('nudge.yaml:3:10: log.level:');
  });
});

describe('loadConfig: unknown keys, duplicates and YAML syntax', () => {
  it('suggests the known key for a top-level typo', () => {
    const err = refused(['kafak:', '  topic: x']);
    expect(err.message).toContain('nudge.yaml:1:1: kafak: unknown key "kafak" (did you mean "kafka"?)');
  });

  it('suggests the known key for a nested typo', () => {
    const err = refused(['kafka:', '  security:', '    protocol: ssl', '    tls:', '      verifyHostnme: false']);
    expect(err.message).toContain(
      'nudge.yaml:5:7: kafka.security.tls.verifyHostnme: unknown key "verifyHostnme" (did you mean "verifyHostname"?)',
    );
  });

  it('lists the known keys when none is close', () => {
    const err = refused(['http:', '  colour: blue']);
    expect(err.message).toContain('nudge.yaml:2:3: http.colour: unknown key "colour" (known keys: host, port, token, metricsRequireToken)');
  });

  it('refuses a duplicate key, naming both lines', () => {
    const err = refused(['kafka:', '  topic: a', '  groupId: g', '  topic: b']);
    expect(err.message).toContain('nudge.yaml:4:3: kafka.topic: duplicate key "topic" (first set on line 2); keep one');
  });

  it('reports a YAML syntax error with its line and column', () => {
    const err = refused(['kafka:', '\ttopic: x']);
    expect(err.message).toContain('nudge.yaml:2:1: YAML syntax: Tabs are not allowed as indentation');
    const unclosed = refused(['kafka:', '  brokers: [a:9092, b:9092', 'http:', '  port: 8080']);
    expect(unclosed.message).toContain(
      'nudge.yaml:3:1: YAML syntax: Flow sequence in block collection must be sufficiently indented and end with a ]',
    );
  });

  it('refuses a second YAML document in the file', () => {
    const err = refused(['log:', '  level: info', '---', 'log:', '  level: debug']);
    expect(err.message).toContain('nudge.yaml:3:1: a config file holds one YAML document');
  });
});

describe('loadConfig: secrets are never echoed', () => {
  it.each([
    ['an unknown key in a section', ['http:', `  password: "${SECRET}"`]],
    ['a token that is too short', ['http:', `  token: "${SECRET}"`]],
    ['a token with a space in it', ['http:', `  token: "${SECRET} ${SECRET}"`]],
    ['a password where a mapping is expected', ['redis:', `  tls: "${SECRET}"`, '  url: rediss://r:6380']],
    ['a password in an invalid Redis URL', ['redis:', `  url: "redis://:${SECRET}@"`]],
    ['credentials with the wrong protocol', ['kafka:', '  security:', '    sasl:', '      username: u', `      password: "${SECRET}"`]],
    ['a secret-looking librdkafka property of the wrong type', ['kafka:', '  librdkafka:', `    ssl.keystore.password: ["${SECRET}"]`]],
    ['a secret on a line with a syntax error', ['redis:', `  password: "${SECRET}`, 'http:', '  port: 1']],
    ['a secret under a section of a later release', ['workers:', `  - password: "${SECRET}"`]],
    ['a webhook secret of the wrong form', ['touches:', '  channels:', '    crm:', '      adapter: webhook', '      url: https://crm.example.com/h', `      secret: "${SECRET}"`]],
    ['a webhook secret of the wrong type', ['touches:', '  channels:', '    crm:', '      adapter: webhook', '      url: https://crm.example.com/h', `      secret: ["${SECRET}"]`]],
    ['a webhook URL with credentials', ['touches:', '  channels:', '    crm:', '      adapter: webhook', `      url: "ftp://u:${SECRET}@crm.example.com/h"`]],
  ])('%s', (_name, lines) => {
    const err = refused(lines);
    expect(err.message.split('\n').length).toBeGreaterThan(2); // it did report something
    expect(err.message).not.toContain(SECRET);
    expect(JSON.stringify(err.context)).not.toContain(SECRET);
  });

  it('says how long a refused secret is instead of what it is', () => {
    const err = refused(['http:', `  token: "${SECRET}"`]);
    expect(err.message).toContain('nudge.yaml:2:10: http.token: expected at least 16 characters, got a value of 10 characters');
  });

  it('masks secrets in describeConfig', () => {
    const cfg = loadConfig({
      file: configFile([
        'kafka:',
        '  security:',
        '    protocol: sasl_ssl',
        '    sasl:',
        '      username: engine',
        `      password: "${SECRET}"`,
        '  librdkafka:',
        `    ssl.keystore.password: "${SECRET}"`,
        'redis:',
        `  url: "rediss://engine:${SECRET}@redis.internal:6380/0"`,
        'http:',
        '  host: 0.0.0.0',
        `  token: "${SECRET}-${SECRET}"`,
      ]),
      env: {},
    });
    const summary = describeConfig(cfg);
    expect(summary).not.toContain(SECRET);
    expect(summary).toContain('sasl_ssl; SCRAM-SHA-512 as "engine", password (set)');
    expect(summary).toContain('rediss://***@redis.internal:6380/0');
    expect(summary).toContain('ssl.keystore.password=***');
    expect(summary).toContain('0.0.0.0:8080; token (set) for /v1/*');
  });
});

describe('loadConfig: environment overrides', () => {
  const file = () => configFile(['kafka:', '  topic: from-file', '  brokers: [file:9092]', 'redis:', '  url: redis://file:6379']);

  it('win over the file', () => {
    const cfg = loadConfig({
      file: file(),
      env: {
        NUDGE_KAFKA_TOPIC: 'from-env',
        NUDGE_KAFKA_BROKERS: 'env-1:9092, env-2:9093',
        NUDGE_KAFKA_DLQ_TOPIC: 'from-env.dlq',
        NUDGE_KAFKA_GROUP_ID: 'env-group',
        NUDGE_KAFKA_SECURITY_PROTOCOL: 'SASL_SSL',
        NUDGE_KAFKA_SASL_MECHANISM: 'scram-sha-256',
        NUDGE_KAFKA_SASL_USERNAME: 'engine',
        NUDGE_KAFKA_SASL_PASSWORD: 'pw',
        NUDGE_REDIS_USERNAME: 'engine',
        NUDGE_REDIS_PASSWORD: 'redis-pw',
        NUDGE_HTTP_HOST: '::1',
        NUDGE_HTTP_PORT: '9090',
        NUDGE_HTTP_TOKEN: 'a-token-of-24-characters',
        NUDGE_REPORTING_TZ: 'Asia/Shanghai',
        NUDGE_LOG_LEVEL: 'DEBUG',
      },
    });
    expect(cfg.kafka).toMatchObject({
      topic: 'from-env',
      brokers: ['env-1:9092', 'env-2:9093'],
      dlqTopic: 'from-env.dlq',
      groupId: 'env-group',
      security: { protocol: 'sasl_ssl', sasl: { mechanism: 'SCRAM-SHA-256', username: 'engine', password: 'pw' } },
    });
    expect(cfg.redis).toMatchObject({ url: 'redis://file:6379', username: 'engine', password: 'redis-pw' });
    expect(cfg.http).toMatchObject({ host: '::1', port: 9090, token: 'a-token-of-24-characters' });
    expect(cfg.time.reportingTimeZone).toBe('Asia/Shanghai');
    expect(cfg.log.level).toBe('debug');
  });

  it('NUDGE_REDIS_URL wins over REDIS_URL, which wins over the file', () => {
    expect(loadConfig({ file: file(), env: { REDIS_URL: 'redis://a:1' } }).redis.url).toBe('redis://a:1');
    const both = loadConfig({ file: file(), env: { REDIS_URL: 'redis://a:1', NUDGE_REDIS_URL: 'redis://b:2' } });
    expect(both.redis.url).toBe('redis://b:2');
  });

  it('treats an empty value as unset', () => {
    expect(loadConfig({ file: file(), env: { NUDGE_KAFKA_TOPIC: '' } }).kafka.topic).toBe('from-file');
  });

  it('resolves NUDGE_KAFKA_SSL_CA_FILE against the working directory', () => {
    const cfg = loadConfig({
      defaultsOnly: true,
      env: { NUDGE_KAFKA_SECURITY_PROTOCOL: 'ssl', NUDGE_KAFKA_SSL_CA_FILE: 'config/nudge.yaml' },
    });
    expect(cfg.kafka.security.tls?.caFile).toBe(join(process.cwd(), 'config/nudge.yaml'));
  });

  it('refuses a bad value with NUDGE_CONFIG_ENV_INVALID, naming the variable', () => {
    const err = loadError({ file: file(), env: { NUDGE_HTTP_PORT: 'abc' } });
    expect(err.code).toBe(ErrorCodes.CONFIG_ENV_INVALID);
    expect(err.message.split('\n')).toEqual([
      'the config has 1 problem:',
      'env NUDGE_HTTP_PORT: expected a port number 0-65535 (0 = any free port), got "abc"',
      FIX_ENV,
    ]);
  });

  it('refuses bad values checked by the schema, without echoing secrets', () => {
    const err = loadError({
      defaultsOnly: true,
      env: { NUDGE_HTTP_PORT: '70000', NUDGE_HTTP_TOKEN: 'short', NUDGE_REPORTING_TZ: 'Mars/Olympus', NUDGE_KAFKA_BROKERS: ',' },
    });
    expect(err.code).toBe(ErrorCodes.CONFIG_ENV_INVALID);
    expect(err.message).toContain('env NUDGE_HTTP_PORT: expected a port number 0-65535 (0 = any free port), got "70000"');
    expect(err.message).toContain('env NUDGE_HTTP_TOKEN: expected at least 16 characters, got a value of 5 characters');
    expect(err.message).toContain('env NUDGE_REPORTING_TZ: expected an IANA time zone like "Asia/Shanghai" or "UTC", got "Mars/Olympus"');
    expect(err.message).toContain('env NUDGE_KAFKA_BROKERS: expected at least one broker address like "kafka-1:9092"');
    expect(err.message).not.toContain('short');
  });

  it('reads the file named by NUDGE_CONFIG when no file is passed', () => {
    const cfg = loadConfig({ env: { NUDGE_CONFIG: file() } });
    expect(cfg.kafka.topic).toBe('from-file');
  });

  it('documents every override in docs/config.md', () => {
    const docs = readFileSync(DOCS, 'utf8');
    const names = ENV_OVERRIDES.map((o) => o.name);
    expect(names).toEqual([
      'NUDGE_CONFIG',
      'NUDGE_KAFKA_BROKERS',
      'NUDGE_KAFKA_TOPIC',
      'NUDGE_KAFKA_DLQ_TOPIC',
      'NUDGE_KAFKA_GROUP_ID',
      'NUDGE_KAFKA_SECURITY_PROTOCOL',
      'NUDGE_KAFKA_SASL_MECHANISM',
      'NUDGE_KAFKA_SASL_USERNAME',
      'NUDGE_KAFKA_SASL_PASSWORD',
      'NUDGE_KAFKA_SSL_CA_FILE',
      'REDIS_URL',
      'NUDGE_REDIS_URL',
      'NUDGE_REDIS_USERNAME',
      'NUDGE_REDIS_PASSWORD',
      'NUDGE_HTTP_HOST',
      'NUDGE_HTTP_PORT',
      'NUDGE_HTTP_TOKEN',
      'NUDGE_REPORTING_TZ',
      'NUDGE_LOG_LEVEL',
    ]);
    for (const name of names) expect(docs).toContain(`| \`${name}\` |`);
  });
});

describe('loadConfig: the file itself', () => {
  it('says which path was tried when the file is missing, and where the example is', () => {
    const missing = join(root, 'nowhere', 'nudge.yaml');
    const err = loadError({ file: missing, env: {} });
    expect(err.code).toBe(ErrorCodes.CONFIG_INVALID);
    expect(err.message).toBe(
      `cannot read the config file ${missing} (no such file). config/nudge.yaml is the shipped example: copy it, or pass --config FILE or set NUDGE_CONFIG.`,
    );
  });

  it('refuses to guess when given neither a file nor defaultsOnly', () => {
    const err = loadError({ env: {} });
    expect(err.code).toBe(ErrorCodes.CONFIG_INVALID);
    expect(err.message).toContain('no config file given');
  });

  it('http: a non-loopback address needs a token', () => {
    const err = refused(['http:', '  host: 0.0.0.0']);
    expect(err.message).toContain(
      'nudge.yaml:1:1: http.token: required when http.host is not a loopback address (0.0.0.0 exposes the API to the network); set a token of at least 16 characters or bind to 127.0.0.1',
    );
  });
});

describe('loadConfig: state sections (activity, lifecycle, behaviour)', () => {
  it('compiles metrics, lifecycle thresholds, counters, sums, streaks and traits', () => {
    const cfg = loadConfig({
      file: configFile([
        'activity:',
        '  metrics:',
        '    - name: active',
        '    - name: payers',
        '      events: [payment]',
        'lifecycle:',
        '  dormantAfter: 10d',
        'behaviour:',
        '  counters:',
        '    - name: loan_views',
        '      match: { name: page_view, props: { page: loan_detail } }',
        '      keep: 3',
        '      within: 24h',
        '  sums:',
        '    - name: spend_30d',
        '      match: { name: [payment, transfer_done] }',
        '      window: 30d',
        '      bucket: 1d',
        '  streaks:',
        '    - name: checkin',
        '      match: { name: checkin }',
        '  traits: [segment]',
      ]),
      env: {},
    });
    expect(cfg.activity.metrics).toEqual([{ name: 'active' }, { name: 'payers', events: ['payment'] }]);
    expect(cfg.lifecycle.dormantAfterMs).toBe(864_000_000);
    expect(cfg.behaviour.counters).toEqual([{ name: 'loan_views', match: { name: 'page_view', props: { page: 'loan_detail' } }, keep: 3, withinMs: 86_400_000 }]);
    expect(cfg.behaviour.sums[0]).toMatchObject({ name: 'spend_30d', windowMs: 2_592_000_000, bucketMs: 86_400_000 });
    expect(cfg.behaviour.traits).toEqual(['segment']);
  });

  it('refuses duplicate names, impossible thresholds and unknown keys with their paths', () => {
    const file = configFile([
      'activity:',
      '  metrics:',
      '    - name: active',
      '    - name: active',
      'lifecycle:',
      '  dormantAfter: 30d',
      '  churnedAfter: 14d',
      'behaviour:',
      '  counters:',
      '    - name: views',
      '      match: { nmae: page_view }',
      '      keep: 3',
      '      within: a day',
    ]);
    const message = loadError({ file, env: {} }).message;
    expect(message).toContain('activity.metrics[1].name: "active" is used twice; names must be unique');
    expect(message).toContain('lifecycle.churnedAfter: must be longer than lifecycle.dormantAfter');
    expect(message).toContain('behaviour.counters[0].within: expected a duration like "30m", got "a day"');
    expect(message).toContain('behaviour.counters[0].match');
    expect(message).toContain('"nmae"');
  });
});
