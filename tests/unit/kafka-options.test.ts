import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import kafka from '@confluentinc/kafka-javascript';
import type { LibrdKafkaError, ProducerGlobalConfig } from '@confluentinc/kafka-javascript';
import { afterAll, describe, expect, it } from 'vitest';
import { describeConfig, loadConfig } from '../../src/config/load.js';
import type { NudgeConfig } from '../../src/config/schema.js';
import { kafkaConnectError, librdkafkaOptions, rememberBrokerError } from '../../src/sources/kafka-options.js';

// A self-signed CA certificate (public part only, EC P-256, valid until 2126), made with
// `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -subj "/CN=Nudge test CA"`.
// librdkafka loads it when the client is created; no broker ever presents a certificate here.
const TEST_CA_PEM = `-----BEGIN CERTIFICATE-----
MIIBhzCCAS2gAwIBAgIUf4UKkGmpM2ZZuN8ECGIUwc368rcwCgYIKoZIzj0EAwIw
GDEWMBQGA1UEAwwNTnVkZ2UgdGVzdCBDQTAgFw0yNjExMjMwOTI5MjNaGA8yMTI2
MTAzMDA5MjkyM1owGDEWMBQGA1UEAwwNTnVkZ2UgdGVzdCBDQTBZMBMGByqGSM49
AgEGCCqGSM49AwEHA0IABFaA7JnbYvlL6oWaXItK+TVK5xc7On5b+yPX++MZPqW1
OlG6YxRTjcnYf6fCfCdQaRA3jL13HHu+Q0C9C2/KchmjUzBRMB0GA1UdDgQWBBQD
qHPzapP8wrdT8Ntq6+m/uy03czAfBgNVHSMEGDAWgBQDqHPzapP8wrdT8Ntq6+m/
uy03czAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIQCBIa56Q4WE
8S1tcwC6rzx0YcpYaRIDswvOU+jU7sPjswIgYtNw6DxDto8G2k+Y26vp22BBTPDR
LFXdMq5xpabuHEE=
-----END CERTIFICATE-----
`;

const dir = mkdtempSync(join(tmpdir(), 'nudge-kafka-options-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const caFile = join(dir, 'ca.pem');
writeFileSync(caFile, TEST_CA_PEM);
// Passes the load-time "exists and is readable" check; librdkafka must still refuse it.
const notACertificate = join(dir, 'not-a-ca.pem');
writeFileSync(notACertificate, 'this is not a PEM certificate\n');

let count = 0;
function kafkaConfig(lines: readonly string[]): NudgeConfig['kafka'] {
  const file = join(dir, `nudge-${count++}.yaml`);
  writeFileSync(file, ['kafka:', ...lines.map((l) => `  ${l}`)].join('\n') + '\n');
  return loadConfig({ file, env: {} }).kafka;
}

const saslSsl = () =>
  kafkaConfig([
    'brokers: [kafka-1:9093, kafka-2:9093]',
    'security:',
    '  protocol: sasl_ssl',
    '  sasl:',
    '    mechanism: SCRAM-SHA-512',
    '    username: nudge-engine',
    '    password: engine-password',
    '  tls:',
    `    caFile: ${caFile}`,
    'librdkafka:',
    '  fetch.max.bytes: 1048576',
    '  socket.keepalive.enable: true',
  ]);

/** The same Kafka config with another CA file, bypassing the load-time check on purpose. */
function withCaFile(config: NudgeConfig['kafka'], path: string): NudgeConfig['kafka'] {
  return { ...config, security: { ...config.security, tls: { verifyHostname: true, ...config.security.tls, caFile: path } } };
}

describe('librdkafkaOptions', () => {
  it('maps SASL_SSL with SCRAM and a CA file to librdkafka properties', () => {
    expect(librdkafkaOptions(saslSsl())).toEqual({
      'fetch.max.bytes': 1048576,
      'socket.keepalive.enable': true,
      'bootstrap.servers': 'kafka-1:9093,kafka-2:9093',
      'client.id': 'nudge',
      'security.protocol': 'sasl_ssl',
      'sasl.mechanisms': 'SCRAM-SHA-512',
      'sasl.username': 'nudge-engine',
      'sasl.password': 'engine-password',
      'enable.ssl.certificate.verification': true,
      'ssl.endpoint.identification.algorithm': 'https',
      'ssl.ca.location': caFile,
    });
  });

  it('maps the defaults to plaintext with no TLS or SASL properties', () => {
    expect(librdkafkaOptions(kafkaConfig([]))).toEqual({
      'bootstrap.servers': '127.0.0.1:9092',
      'client.id': 'nudge',
      'security.protocol': 'plaintext',
    });
  });

  it('maps mutual TLS and verifyHostname: false', () => {
    const certFile = join(dir, 'client.pem');
    const keyFile = join(dir, 'client.key');
    writeFileSync(certFile, 'cert');
    writeFileSync(keyFile, 'key');
    const options = librdkafkaOptions(
      kafkaConfig([
        'security:',
        '  protocol: ssl',
        '  tls:',
        `    certFile: ${certFile}`,
        `    keyFile: ${keyFile}`,
        '    keyPassword: key-passphrase',
        '    verifyHostname: false',
      ]),
    );
    expect(options).toEqual({
      'bootstrap.servers': '127.0.0.1:9092',
      'client.id': 'nudge',
      'security.protocol': 'ssl',
      'enable.ssl.certificate.verification': true,
      'ssl.endpoint.identification.algorithm': 'none',
      'ssl.certificate.location': certFile,
      'ssl.key.location': keyFile,
      'ssl.key.password': 'key-passphrase',
    });
  });

  it('maps SASL and the CA file from the environment, as an operator keeps secrets out of the file', () => {
    const password = 'env-only-password-7f3a';
    const env = {
      NUDGE_KAFKA_BROKERS: 'kafka-1:9093,kafka-2:9093',
      NUDGE_KAFKA_SECURITY_PROTOCOL: 'sasl_ssl',
      NUDGE_KAFKA_SASL_MECHANISM: 'SCRAM-SHA-256',
      NUDGE_KAFKA_SASL_USERNAME: 'nudge-engine',
      NUDGE_KAFKA_SASL_PASSWORD: password,
      NUDGE_KAFKA_SSL_CA_FILE: caFile,
    };
    const config = loadConfig({ defaultsOnly: true, env });
    expect(librdkafkaOptions(config.kafka)).toEqual({
      'bootstrap.servers': 'kafka-1:9093,kafka-2:9093',
      'client.id': 'nudge',
      'security.protocol': 'sasl_ssl',
      'sasl.mechanisms': 'SCRAM-SHA-256',
      'sasl.username': 'nudge-engine',
      'sasl.password': password,
      'enable.ssl.certificate.verification': true,
      'ssl.endpoint.identification.algorithm': 'https',
      'ssl.ca.location': caFile,
    });
    // The summary `nudge check-config` prints (and a start-up log would show) masks the secret.
    const summary = describeConfig(config);
    expect(summary).toContain('sasl_ssl');
    expect(summary).toContain('nudge-engine');
    expect(summary).not.toContain(password);
  });

  it('masks secret-looking pass-through properties in the summary', () => {
    const config = kafkaConfig(['security:', '  protocol: ssl', 'librdkafka:', '  ssl.keystore.password: "keystore-secret-91"', '  socket.keepalive.enable: true']);
    expect(librdkafkaOptions(config)['ssl.keystore.password']).toBe('keystore-secret-91');
    expect(describeConfig(loadConfig({ defaultsOnly: true, env: {} }))).not.toContain('keystore-secret-91');
    const summary = describeConfig({ ...loadConfig({ defaultsOnly: true, env: {} }), kafka: config });
    expect(summary).toContain('ssl.keystore.password=***');
    expect(summary).not.toContain('keystore-secret-91');
  });

  it("uses only property names listed in the bundled librdkafka's CONFIGURATION.md", () => {
    const require = createRequire(import.meta.url);
    const pkg = dirname(require.resolve('@confluentinc/kafka-javascript/package.json'));
    const doc = readFileSync(join(pkg, 'deps/librdkafka/CONFIGURATION.md'), 'utf8');
    const documented = new Set(doc.split('\n').map((line) => line.split(/\s+\|/)[0]!.trim()));
    const nudgeKeys = Object.keys(librdkafkaOptions(saslSsl())).filter((k) => k !== 'fetch.max.bytes' && k !== 'socket.keepalive.enable');
    for (const key of [...nudgeKeys, 'ssl.certificate.location', 'ssl.key.location', 'ssl.key.password']) {
      expect(documented, key).toContain(key);
    }
  });
});

describe('librdkafkaOptions reach librdkafka', () => {
  // The node-rdkafka-style producer creates its native librdkafka handle in connect(), which
  // loads the CA file before any broker is contacted: a bad CA fails there, in milliseconds.
  function connectError(config: ProducerGlobalConfig): Promise<LibrdKafkaError | null> {
    const producer = new kafka.Producer(config);
    return new Promise((resolve) => producer.connect({ timeout: 10_000 }, (err) => resolve(err ?? null)));
  }

  it('fails closed when the CA file is not a certificate', async () => {
    const options = librdkafkaOptions(withCaFile(saslSsl(), notACertificate));
    const err = await connectError(options as ProducerGlobalConfig);
    expect(err?.message).toMatch(/^ssl\.ca\.location failed: /);
  });

  it('fails closed when the CA file does not exist', async () => {
    const options = librdkafkaOptions(withCaFile(saslSsl(), join(dir, 'no-such-ca.pem')));
    const err = await connectError(options as ProducerGlobalConfig);
    expect(err?.message).toMatch(/^ssl\.ca\.location failed: /);
  });

  it('fails closed through the KafkaJS-style client too', async () => {
    const client = new kafka.KafkaJS.Kafka({});
    const producer = client.producer(librdkafkaOptions(withCaFile(saslSsl(), notACertificate)) as ProducerGlobalConfig);
    await expect(producer.connect()).rejects.toThrow(/ssl\.ca\.location failed/);
  });

  it('creates a client for sasl_ssl + SCRAM-SHA-512 with a valid CA, no broker needed', () => {
    // AdminClient.create() creates the native handle synchronously and throws on any property
    // librdkafka refuses; it connects to brokers lazily, so none needs to exist.
    const admin = kafka.AdminClient.create(librdkafkaOptions(saslSsl()) as ProducerGlobalConfig);
    admin.disconnect();
  });

  it('is refused by librdkafka for a mechanism it does not know (the control for the test above)', () => {
    const options = { ...librdkafkaOptions(saslSsl()), 'sasl.mechanisms': 'SCRAM-SHA-1024' };
    expect(() => kafka.AdminClient.create(options as ProducerGlobalConfig)).toThrow();
  });
});

describe('kafkaConnectError', () => {
  const otherwise = 'cannot reach the Kafka broker at b:9093 (broker transport failure). Check kafka.brokers.';
  it('names the CA setting when the handshake failed, and says there is no plaintext fallback', () => {
    const msg = kafkaConnectError('b:9093', ['[thrd:ssl://b:9093/bootstrap]: ssl://b:9093/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed', 'all broker connections are down'], otherwise);
    expect(msg).toMatch(/^cannot connect to the Kafka broker at b:9093: the TLS handshake failed \(ssl:\/\/b:9093\/bootstrap: SSL handshake failed/);
    expect(msg).toContain('Check kafka.security.tls.caFile (NUDGE_KAFKA_SSL_CA_FILE)');
    expect(msg).toContain('never falls back to plaintext');
  });
  it('names the SASL settings when authentication failed', () => {
    // As librdkafka words it: the listener's name, sasl_ssl://, must not read as a TLS failure.
    const msg = kafkaConnectError('b:9093', ['[thrd:sasl_ssl://b:9093/bootstrap]: sasl_ssl://b:9093/bootstrap: SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512 (after 436ms in state AUTH_REQ)', 'all broker connections are down'], otherwise);
    expect(msg).toMatch(/^cannot connect to the Kafka broker at b:9093: authentication failed \(sasl_ssl:\/\/b:9093\/bootstrap: SASL authentication error/);
    expect(msg).toContain('Check kafka.security.sasl.mechanism and the username and password');
  });
  it('keeps the caller\'s message otherwise, with the last broker error if there was one', () => {
    expect(kafkaConnectError('b:9093', [], otherwise)).toBe(otherwise);
    expect(kafkaConnectError('b:9093', ['x', 'Connect to ipv4#10.0.0.1:9093 failed: Connection refused'], otherwise)).toBe(`${otherwise} Last broker error: Connect to ipv4#10.0.0.1:9093 failed: Connection refused`);
  });
  it('remembers the cause through the repeats that follow it, within a bound', () => {
    const recent: string[] = [];
    rememberBrokerError(recent, 'ssl://b:9093/bootstrap: SSL handshake failed: certificate verify failed');
    for (let i = 0; i < 100; i++) rememberBrokerError(recent, 'all broker connections are down');
    expect(kafkaConnectError('b:9093', recent, otherwise)).toContain('the TLS handshake failed');
    for (let i = 0; i < 100; i++) rememberBrokerError(recent, `error ${i}`);
    expect(recent).toHaveLength(8);
  });
});
