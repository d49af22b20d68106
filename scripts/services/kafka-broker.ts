import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { access, mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import kafkaJs from '@confluentinc/kafka-javascript';
import { ErrorCodes, NudgeError } from '../../src/errors.js';
import {
  describeExit,
  exitOf,
  freePort,
  killWhenParentDies,
  terminate,
  type ProcessExit,
} from '../../src/dev/redis-server.js';

const { Kafka, logLevel } = kafkaJs.KafkaJS;

type Log = (msg: string) => void;

export interface KafkaBrokerOptions {
  /** Client (PLAINTEXT) port on 127.0.0.1. @default a free port */
  port?: number;
  /** KRaft controller port on 127.0.0.1. @default a free port */
  controllerPort?: number;
  /** Config, logs and partitions. Reusing one keeps topics across restarts. @default a new temp dir, removed by `stop()` */
  dataDir?: string;
  /** Progress lines (jar fetch, unexpected exit). @default discard */
  log?: Log;
  /** How long the broker may take to serve metadata. @default 90_000 */
  readyTimeoutMs?: number;
  /**
   * Extra broker settings, applied after (and so over) the built-in ones. A crash test that
   * SIGKILLs the broker and restarts it on the same data dir waits `broker.session.timeout.ms`
   * (9 s by default) for the dead broker's session to expire; such a test may lower it here.
   * @default {}
   */
  properties?: Record<string, string | number | boolean>;
  /**
   * Also serve an SSL listener on `localhost:<port>` (a host name, so a certificate for
   * `localhost` verifies with librdkafka's hostname check), with the server certificate and key
   * from a PKCS12 keystore (Java 17 reads PKCS12; `openssl pkcs12 -export` makes one). The
   * broker's own traffic (controller, readiness check) stays on PLAINTEXT. @default none
   */
  ssl?: SslListenerOptions;
}

export interface SslListenerOptions {
  /** @default a free port */
  port?: number;
  keystoreFile: string;
  keystorePassword: string;
  /**
   * Also serve a SASL_SSL listener (same certificate) that logs users in with SCRAM-SHA-512,
   * with this one user, created when the data dir is formatted. @default none
   */
  scram?: { username: string; password: string; port?: number };
}

export interface KafkaBrokerHandle {
  /** Bootstrap servers, `127.0.0.1:PORT`. */
  brokers: string;
  /** With the `ssl` option: the SSL listener's bootstrap servers, `localhost:PORT`. */
  sslBrokers?: string;
  /** With `ssl.scram`: the SASL_SSL (SCRAM-SHA-512) listener's bootstrap servers, `localhost:PORT`. */
  saslSslBrokers?: string;
  port: number;
  controllerPort: number;
  pid: number;
  dataDir: string;
  /** WARN and above from the broker (log4j2), for reading after a failure. */
  logFile: string;
  exited: Promise<ProcessExit>;
  /** SIGTERM (controlled shutdown, ~2 s), waits for exit; removes a temp data dir it made. */
  stop(): Promise<void>;
  /** SIGKILL, waits for exit; leaves the data dir for a restart. */
  kill(): Promise<void>;
}

const POM = fileURLToPath(new URL('../kafka/pom.xml', import.meta.url));
const INSTALL_HINT =
  'or set KAFKA_BROKERS to an existing broker (with Docker: `docker compose up -d kafka`, then KAFKA_BROKERS=127.0.0.1:9092)';
const STOP_GRACE_MS = 30_000;
const LOCK_WAIT_MS = 10 * 60_000;

/**
 * Fetches the Kafka broker jars once with Maven into `~/.cache/nudge/kafka-<version>/libs` and
 * returns that directory. The marker file holds a hash of the pom, so editing the pom refetches.
 * A lock directory keeps two concurrent runs (two terminals, CI retries) from writing one cache.
 */
export async function ensureKafkaJars(log: Log = () => {}): Promise<string> {
  const pom = await readFile(POM, 'utf8');
  const version = /<kafka\.version>([^<]+)<\/kafka\.version>/.exec(pom)?.[1];
  if (version === undefined) throw startError(`no <kafka.version> in ${POM}: restore the property`);
  const home = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'nudge', `kafka-${version}`);
  const libs = join(home, 'libs');
  const marker = join(home, 'libs.complete');
  const digest = createHash('sha256').update(pom).digest('hex');
  const fetched = async () => (await readFile(marker, 'utf8').catch(() => '')) === digest;

  if (await fetched()) return libs;
  await mkdir(home, { recursive: true });
  return withLock(join(home, 'lock'), log, async () => {
    if (await fetched()) return libs; // another process fetched them while we waited
    await checkJava();
    log(`fetching Apache Kafka ${version} jars from Maven Central (once, ~45 MB) into ${libs}...`);
    const started = Date.now();
    // Download beside the cache and rename: a run killed mid-download never leaves half a libs dir.
    const partial = join(home, `libs.partial-${process.pid}`);
    const mvn = await run('mvn', [
      '-q', '-B', '-Dstyle.color=never', '-f', POM, 'dependency:copy-dependencies',
      '-DincludeScope=runtime', `-DoutputDirectory=${partial}`,
    ]);
    if (mvn === 'missing' || mvn.code !== 0) await rm(partial, { recursive: true, force: true });
    if (mvn === 'missing') {
      throw startError(
        'mvn (Apache Maven) not found on PATH: it fetches the Kafka broker jars once. Install it ' +
          `(Debian: apt-get install maven) ${INSTALL_HINT}`,
      );
    }
    if (mvn.code !== 0) {
      throw startError(`mvn could not fetch the Kafka jars (exit code ${mvn.code}); its output:\n${mvn.output}`);
    }
    await rm(libs, { recursive: true, force: true });
    // Class-data archives list the jars they came from; new jars need new archives.
    await rm(join(home, 'cds'), { recursive: true, force: true });
    await rename(partial, libs);
    await writeFile(marker, digest);
    log(`fetched the Kafka jars in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    return libs;
  });
}

/**
 * Starts a single-node KRaft Kafka broker (broker and controller in one JVM) on 127.0.0.1 and
 * resolves once it answers a metadata request, so callers can create topics straight away.
 */
export async function startKafkaBroker(opts: KafkaBrokerOptions = {}): Promise<KafkaBrokerHandle> {
  const log = opts.log ?? (() => {});
  const [libs, javaVersion] = await Promise.all([ensureKafkaJars(log), checkJava()]);
  const port = opts.port ?? (await freePort());
  let controllerPort = opts.controllerPort ?? (await freePort());
  while (controllerPort === port) controllerPort = await freePort();
  const ownsDir = opts.dataDir === undefined;
  const dataDir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), 'nudge-kafka-')));
  const kraftDir = join(dataDir, 'kraft');
  const logFile = join(dataDir, 'broker.log');
  const outFile = join(dataDir, 'broker.out');
  const propsFile = join(dataDir, 'server.properties');
  const log4jFile = join(dataDir, 'log4j2.xml');
  await mkdir(dataDir, { recursive: true });
  const taken = new Set([port, controllerPort]);
  const anotherPort = async (wanted: number | undefined): Promise<number> => {
    let p = wanted ?? (await freePort());
    while (taken.has(p)) p = await freePort();
    taken.add(p);
    return p;
  };
  let ssl: SslListener | undefined;
  if (opts.ssl) {
    const { scram, keystoreFile, keystorePassword } = opts.ssl;
    ssl = { keystoreFile, keystorePassword, port: await anotherPort(opts.ssl.port) };
    if (scram) ssl.scram = { ...scram, port: await anotherPort(scram.port) };
  }
  const extra = Object.entries(opts.properties ?? {}).map(([key, value]) => `${key}=${value}`);
  await writeFile(propsFile, serverProperties(port, controllerPort, kraftDir, ssl) + extra.join('\n'));
  await writeFile(log4jFile, log4jConfig(logFile));
  const jvmCommon = [`-Dlog4j2.configurationFile=${log4jFile}`, '-cp', join(libs, '*')];

  // Formatting writes meta.properties; skipping it on a formatted dir is what makes restarts work.
  if (!(await exists(join(kraftDir, 'meta.properties')))) {
    const cds = await classDataArchive(libs, 'storage-tool', javaVersion);
    // SCRAM users of a KRaft cluster are records in its metadata log, written when it is formatted.
    const scram = ssl?.scram ? ['--add-scram', `SCRAM-SHA-512=[name=${ssl.scram.username},password=${ssl.scram.password}]`] : [];
    const format = await run('java', [...cds.jvmArgs, ...jvmCommon, 'kafka.tools.StorageTool', 'format', '-t', clusterId(), '-c', propsFile, ...scram]);
    await cds.settle(format !== 'missing' && format.code === 0);
    if (format === 'missing' || format.code !== 0) {
      throw startError(`could not format the Kafka data dir ${kraftDir}:\n${format === 'missing' ? 'java not found' : format.output}`);
    }
  }

  const cds = await classDataArchive(libs, 'broker', javaVersion);
  // The JVM's own stdout/stderr go to a file: nothing to drain, and startup crashes stay readable.
  const out = openSync(outFile, 'a');
  const child = spawn(
    'java',
    ['-Xmx512m', '-Xms256m', '-XX:+UseG1GC', '-XX:+ExitOnOutOfMemoryError', '-Djava.awt.headless=true', ...cds.jvmArgs, ...jvmCommon, 'kafka.Kafka', propsFile],
    // Own process group, like redis-server: the host decides when the broker stops (see killWhenParentDies).
    { stdio: ['ignore', out, out], detached: true },
  );
  closeSync(out);
  // Keep the archive only from a broker that got to serve (so it holds the classes a running
  // broker needs) and exited without a signal: SIGTERM runs the shutdown hooks and exits with
  // code 143 after writing it, while SIGKILL may cut it short.
  let served = false;
  const exited = exitOf(child).then(async (exit) => {
    await cds.settle(served && exit.signal === null);
    return exit;
  });
  const pid = child.pid;
  if (pid === undefined) {
    await exited;
    throw startError(`could not start java for the Kafka broker; see ${outFile}`, { dataDir });
  }
  void exited.then(killWhenParentDies(pid));
  const brokers = `127.0.0.1:${port}`;

  const timeoutMs = opts.readyTimeoutMs ?? 90_000;
  const outcome = await waitUntilServing(brokers, exited, timeoutMs);
  if (outcome !== 'ready') {
    // The data dir stays, even a temp one: the error below points at the logs inside it.
    child.kill('SIGKILL');
    await exited;
    const why = outcome === 'timeout' ? `did not serve metadata within ${timeoutMs / 1000} s` : `exited (${describeExit(outcome)})`;
    throw startError(
      `Kafka broker on ${brokers} ${why}. If a port is taken, pass other ones or let them be picked. ` +
        `Last lines of ${logFile} and ${outFile}:\n${await tail(logFile)}\n${await tail(outFile)}`,
      { brokers, dataDir },
    );
  }

  served = true;
  let stopping = false;
  void exited.then(async (exit) => {
    if (!stopping) log(`Kafka broker on ${brokers} exited unexpectedly (${describeExit(exit)}):\n${await tail(logFile)}`);
  });
  return {
    brokers,
    ...(ssl ? { sslBrokers: `localhost:${ssl.port}` } : {}),
    ...(ssl?.scram ? { saslSslBrokers: `localhost:${ssl.scram.port}` } : {}),
    port,
    controllerPort,
    pid,
    dataDir,
    logFile,
    exited,
    async stop() {
      stopping = true;
      await terminate(child, exited, 'SIGTERM', STOP_GRACE_MS);
      if (ownsDir) await rm(dataDir, { recursive: true, force: true });
    },
    async kill() {
      stopping = true;
      await terminate(child, exited, 'SIGKILL', STOP_GRACE_MS);
    },
  };
}

interface SslListener {
  port: number;
  keystoreFile: string;
  keystorePassword: string;
  scram?: { username: string; password: string; port: number };
}

function serverProperties(port: number, controllerPort: number, kraftDir: string, ssl?: SslListener): string {
  const sslListener = (ssl ? `,SSL://localhost:${ssl.port}` : '') + (ssl?.scram ? `,SASL_SSL://localhost:${ssl.scram.port}` : '');
  return [
    'process.roles=broker,controller',
    'node.id=1',
    `controller.quorum.voters=1@127.0.0.1:${controllerPort}`,
    `listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort}${sslListener}`,
    `advertised.listeners=PLAINTEXT://127.0.0.1:${port}${sslListener}`,
    'controller.listener.names=CONTROLLER',
    'inter.broker.listener.name=PLAINTEXT',
    `listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT${ssl ? ',SSL:SSL' : ''}${ssl?.scram ? ',SASL_SSL:SASL_SSL' : ''}`,
    ...(ssl
      ? [
          'ssl.keystore.type=PKCS12',
          `ssl.keystore.location=${ssl.keystoreFile}`,
          `ssl.keystore.password=${ssl.keystorePassword}`,
          `ssl.key.password=${ssl.keystorePassword}`,
          // Clients need no certificate of their own (server authentication only).
          'ssl.client.auth=none',
        ]
      : []),
    ...(ssl?.scram
      ? [
          'sasl.enabled.mechanisms=SCRAM-SHA-512',
          'listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;',
        ]
      : []),
    `log.dirs=${kraftDir}`,
    // One node: every internal topic must accept a replication factor and ISR of 1.
    'offsets.topic.replication.factor=1',
    'transaction.state.log.replication.factor=1',
    'transaction.state.log.min.isr=1',
    'share.coordinator.state.topic.replication.factor=1',
    'share.coordinator.state.topic.min.isr=1',
    // 50 partitions by default: the first consumer group (or transaction) would wait for all of them.
    'offsets.topic.num.partitions=4',
    'transaction.state.log.num.partitions=4',
    // Tests join groups constantly; the default 3 s delay would slow every one of them.
    'group.initial.rebalance.delay.ms=0',
    'num.partitions=4',
    'auto.create.topics.enable=true',
    '',
  ].join('\n');
}

function log4jConfig(logFile: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="warn">
  <Appenders>
    <File name="file" fileName="${escapeXml(logFile)}">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Root level="warn"><AppenderRef ref="file"/></Root>
  </Loggers>
</Configuration>
`;
}

/**
 * Polls with admin `listTopics()` until the broker answers: an open port is not enough, the
 * controller must have elected itself and the broker registered. Each attempt is bounded by its
 * own request timeout; the loop ends early if the JVM exits.
 */
async function waitUntilServing(
  brokers: string,
  exited: Promise<ProcessExit>,
  timeoutMs: number,
): Promise<'ready' | 'timeout' | ProcessExit> {
  const deadline = Date.now() + timeoutMs;
  let exit: ProcessExit | undefined;
  void exited.then((e) => (exit = e));
  // librdkafka logs every refused connection while the JVM starts; those are expected here.
  const admin = new Kafka({
    kafkaJS: { brokers: [brokers], logLevel: logLevel.NOTHING },
    // librdkafka backs off exponentially up to 10 s between refused connects, which would add
    // seconds after the broker is up; the JVM starts in a few seconds, so retry at a steady pace.
    'reconnect.backoff.ms': 100,
    'reconnect.backoff.max.ms': 250,
  }).admin();
  await admin.connect();
  try {
    while (Date.now() < deadline) {
      const attempt = Date.now();
      const result = await Promise.race([
        admin.listTopics({ timeout: Math.min(5_000, Math.max(1, deadline - attempt)) }).then(
          () => 'ready' as const,
          () => 'retry' as const,
        ),
        exited,
      ]);
      if (result === 'ready') return 'ready';
      if (exit !== undefined) return exit;
      // A refused connection can fail in microseconds; do not spin on a core the JVM needs.
      const spent = Date.now() - attempt;
      if (spent < 250) await new Promise((resolve) => setTimeout(resolve, 250 - spent));
    }
    return 'timeout';
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

/**
 * Class-data sharing: the JVM maps the classes it loaded last time from an archive instead of
 * reading and verifying them from ~45 MB of jars again. Measured on our 2-core machines it cuts
 * broker start-up by about 40% (the apache/kafka image does the same). The first run records the
 * archive as the JVM exits (a few seconds more on that stop); later runs use it. One archive per
 * Java version, since the JVM ignores (with a warning in broker.out) an archive from another.
 */
async function classDataArchive(
  libs: string,
  tool: 'broker' | 'storage-tool',
  javaVersion: string,
): Promise<{ jvmArgs: string[]; settle(complete: boolean): Promise<void> }> {
  const file = join(dirname(libs), 'cds', `${tool}-java-${javaVersion.replace(/[^\w.-]/g, '_')}.jsa`);
  if (await exists(file)) return { jvmArgs: [`-XX:SharedArchiveFile=${file}`], settle: async () => {} };
  await mkdir(dirname(file), { recursive: true });
  // Written beside and renamed, so a concurrent run never maps a half-written archive.
  const partial = `${file}.partial-${process.pid}-${randomBytes(4).toString('hex')}`;
  return {
    jvmArgs: [`-XX:ArchiveClassesAtExit=${partial}`],
    async settle(complete) {
      if (complete) await rename(partial, file).catch(() => {}); // no archive written: nothing to keep
      await rm(partial, { force: true });
    },
  };
}

/** Resolves with the Java version (`17.0.15`) or explains how to get Java 17+. */
async function checkJava(): Promise<string> {
  const result = await run('java', ['-version']);
  const hint = `install Java 17 or newer (Debian: apt-get install openjdk-17-jre-headless) ${INSTALL_HINT}`;
  if (result === 'missing') throw startError(`java not found on PATH: the Kafka test broker needs it; ${hint}`);
  const match = /version "(\d+)(?:\.(\d+))?/.exec(result.output);
  const major = match?.[1] === '1' ? Number(match[2]) : Number(match?.[1]);
  if (!(major >= 17)) throw startError(`Kafka 4 needs Java 17 or newer, found: ${result.output.split('\n')[0]}; ${hint}`);
  return /version "([^"]+)"/.exec(result.output)?.[1] ?? String(major);
}

/** Runs a command to completion; keeps the last 8 KB of its combined output for error messages. */
function run(cmd: string, args: string[]): Promise<{ code: number | null; output: string } | 'missing'> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const keep = (chunk: Buffer) => {
      output = (output + chunk.toString('utf8')).slice(-8_192);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ENOENT' ? 'missing' : { code: null, output: err.message }));
    child.once('close', (code) => resolve({ code, output }));
  });
}

/**
 * Serialises the fetch across processes with `mkdir` (atomic). Waiting for another process has
 * no event to await across processes, so this polls; a lock whose owner pid is gone is stale.
 */
async function withLock<T>(lockDir: string, log: Log, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + LOCK_WAIT_MS;
  let told = false;
  for (;;) {
    try {
      await mkdir(lockDir);
      await writeFile(join(lockDir, 'owner'), String(process.pid));
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const owner = Number(await readFile(join(lockDir, 'owner'), 'utf8').catch(() => 'NaN'));
    // No owner file yet is normal for a moment after mkdir; for a minute it means the owner died there.
    const ownerless = !Number.isInteger(owner) && Date.now() - (await stat(lockDir).catch(() => ({ mtimeMs: 0 }))).mtimeMs > 60_000;
    if (ownerless || (Number.isInteger(owner) && !isAlive(owner))) {
      await rm(lockDir, { recursive: true, force: true });
      continue;
    }
    if (Date.now() > deadline) throw startError(`waited ${LOCK_WAIT_MS / 60_000} min for ${lockDir}: remove it if no fetch is running`);
    if (!told) log(`waiting for another process fetching the Kafka jars (lock ${lockDir})...`);
    told = true;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  try {
    return await fn();
  } finally {
    await rm(lockDir, { recursive: true, force: true });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A KRaft cluster id: 16 random bytes, base64url (22 chars); never leading '-', which the CLI would read as a flag. */
function clusterId(): string {
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}

/** The last lines of a log without Java stack frames, which would crowd out the `Caused by:` lines. */
async function tail(file: string, lines = 20): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '');
  const kept = text.trimEnd().split('\n').filter((line) => !/^\s+(at |\.\.\. \d+ more)/.test(line));
  return kept.slice(-lines).join('\n');
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

async function exists(file: string): Promise<boolean> {
  return access(file).then(() => true, () => false);
}

function startError(message: string, context: Record<string, unknown> = {}): NudgeError {
  return new NudgeError(ErrorCodes.SERVICE_START, message, { context });
}
