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

/**
 * The message of a failed connect: librdkafka's connect callback only says "broker transport
 * failure", while the cause (a certificate that does not verify, a refused SASL login) arrives
 * as `event.error`s before it, often followed by a vaguer "all broker connections are down".
 * Given the recent ones, a TLS or SASL cause gets advice naming the setting to check; anything
 * else keeps the caller's `otherwise` message, with the last broker error.
 */
export function kafkaConnectError(brokers: string, recentBrokerErrors: readonly string[], otherwise: string): string {
  const causes = recentBrokerErrors.map((e) => e.replace(/^\[thrd:[^\]]*\]: /, ''));
  // SASL first: its errors name the listener, `sasl_ssl://host:port`, which a TLS test would match.
  const sasl = causes.find((c) => /SASL authentication|authentication failed/i.test(c));
  if (sasl !== undefined) {
    return (
      `cannot connect to the Kafka broker at ${brokers}: authentication failed (${sasl}). ` +
      'Check kafka.security.sasl.mechanism and the username and password (NUDGE_KAFKA_SASL_USERNAME / NUDGE_KAFKA_SASL_PASSWORD).'
    );
  }
  const tls = causes.find((c) => /SSL handshake|certificate|handshake failed/i.test(c));
  if (tls !== undefined) {
    return (
      `cannot connect to the Kafka broker at ${brokers}: the TLS handshake failed (${tls}). ` +
      'Check kafka.security.tls.caFile (NUDGE_KAFKA_SSL_CA_FILE): the broker certificate must chain to that CA and name the host given in kafka.brokers. Nudge never falls back to plaintext.'
    );
  }
  const last = causes.at(-1);
  return last === undefined ? otherwise : `${otherwise} Last broker error: ${last}`;
}

/**
 * Keeps the last few distinct broker errors for `kafkaConnectError`. Distinct, because
 * librdkafka logs a failed handshake once and then repeats "all broker connections are down"
 * for as long as the connect lasts, which would push the cause out of a plain ring.
 */
export function rememberBrokerError(recent: string[], message: string): void {
  if (recent.includes(message)) return;
  recent.push(message);
  if (recent.length > 8) recent.splice(0, recent.length - 8);
}
