import type { NudgeConfig } from '../config/schema.js';

export type LibrdkafkaProperties = Record<string, string | number | boolean>;

/**
 * The connection part of every librdkafka client Nudge creates (consumer, event producer, DLQ
 * producer, admin): brokers, client id and security, plus the user's pass-through properties.
 * Consumer- and producer-specific tuning is added by their own modules on top of this.
 *
 * Property names are librdkafka's (deps/librdkafka/CONFIGURATION.md, librdkafka 2.15.1 in
 * @confluentinc/kafka-javascript 1.10.1). The config schema has already refused pass-through
 * properties that would override any key set here, so the spread order is belt and braces.
 */
export function librdkafkaOptions(kafka: NudgeConfig['kafka']): LibrdkafkaProperties {
  const { protocol, sasl, tls } = kafka.security;
  const props: LibrdkafkaProperties = {
    ...kafka.librdkafka,
    'bootstrap.servers': kafka.brokers.join(','),
    'client.id': kafka.clientId,
    'security.protocol': protocol,
  };
  if (sasl) {
    // Despite the plural name librdkafka takes exactly one mechanism here.
    props['sasl.mechanisms'] = sasl.mechanism;
    props['sasl.username'] = sasl.username;
    props['sasl.password'] = sasl.password;
  }
  if (protocol === 'ssl' || protocol === 'sasl_ssl') {
    // Both are librdkafka's defaults already; they are set explicitly so that a wrong CA or a
    // certificate for another host fails closed whatever a future default or the environment's
    // OpenSSL config says (reliability.md §5.3, goal G14).
    props['enable.ssl.certificate.verification'] = true;
    props['ssl.endpoint.identification.algorithm'] = tls?.verifyHostname === false ? 'none' : 'https';
    if (tls?.caFile) props['ssl.ca.location'] = tls.caFile;
    if (tls?.certFile) props['ssl.certificate.location'] = tls.certFile;
    if (tls?.keyFile) props['ssl.key.location'] = tls.keyFile;
    if (tls?.keyPassword) props['ssl.key.password'] = tls.keyPassword;
  }
  return props;
}
