import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { compileStateSpec } from '../../src/engine/state-spec.js';
import { startRedisServer, type RedisServerHandle } from '../../src/dev/redis-server.js';
import { StateQueries } from '../../src/state/queries.js';
import { STATE_REF_SPEC, STATE_YAML, DAY, ZONE, kafkaYaml, usedMemory } from '../support/chaos-services.js';
import { pollUntil } from '../support/poll.js';
import { createTopic, deleteTopics, uniqueName, withAdmin } from '../support/kafka-admin.js';
import { highWatermarks, produceLog, testConfig, waitForLanes } from '../support/engine-harness.js';
import { readMetric, startEngineProcess, type EngineProcess } from '../support/engine-process.js';
import { appliedMessages, describeFences, readFences, waitForFences } from '../support/lane-fences.js';
import { countMismatches, userMismatches } from '../support/reference-compare.js';
import { buildReferenceLog } from '../support/reference-log.js';
import { runReference, type RefResult } from '../support/reference-model.js';

/**
 * Guards (issue 6 item 8; DESIGN §5 "Guards").
 *
 * 1. The engine refuses to start on a Redis whose `maxmemory-policy` may evict keys (an
 *    evicted user state or lane fence silently breaks exactly-once), says why and what to do,
 *    and starts on the same Redis once the policy is `noeviction`.
 * 2. Redis out of memory (a private redis-server whose `maxmemory` is lowered under its use
 *    mid-run, noeviction): every commit script is refused with OOM, so the engine pauses —
 *    the lane fences stand still, the group's committed offsets never pass them, the process
 *    keeps running — and when `maxmemory` is raised it resumes by itself and the final state
 *    equals the brute-force reference: nothing was lost or applied twice across the pause.
 */
const PARTITIONS = 4;
const START = Date.UTC(2026, 2, 2);
const DAYS = 40;
const NOW = START + (DAYS + 2) * DAY;
/** How long Redis stays full: long enough for several retry rounds at the 5 s backoff cap. */
const HOLD_MS = 12_000;

describe('guards', () => {
  const brokers = inject('kafkaBrokers');
  const children: EngineProcess[] = [];
  const servers: RedisServerHandle[] = [];
  const topics: string[] = [];

  afterAll(async () => {
    await Promise.all(children.map((c) => c.kill()));
    await Promise.all(servers.map((s) => s.stop()));
    if (topics.length) await deleteTopics(brokers, topics);
  });

  const yaml = (redisUrl: string, topic: string, groupId: string, namespace: string): string =>
    `${kafkaYaml(brokers, topic, groupId)}
redis:
  url: ${redisUrl}
  keyPrefix: ${namespace}
http:
  port: 0
${STATE_YAML}`;

  it('refuses to start when maxmemory-policy is not noeviction, and says what to do', async () => {
    const server = await startRedisServer({ extraArgs: ['--maxmemory-policy', 'allkeys-lru'] });
    servers.push(server);
    const topic = uniqueName('guard-policy');
    const { file } = testConfig(yaml(server.url, topic, uniqueName('guard-policy-group'), `g${randomBytes(4).toString('hex')}`));

    const refused = await startEngineProcess({ configFile: file }).then(
      (c) => {
        children.push(c);
        return null;
      },
      (err: Error) => err.message,
    );
    expect(refused, 'the engine started on an evicting Redis').not.toBeNull();
    expect(refused).toMatch(/exited before it was ready \(exit code 1\)/);
    // Why, with the value seen, and what to do.
    expect(refused).toContain('maxmemory-policy is "allkeys-lru"');
    expect(refused).toContain('CONFIG SET maxmemory-policy noeviction');

    // The same Redis, made safe: the engine starts, so the refusal was the policy's doing.
    const admin = new Redis(server.url);
    await admin.config('SET', 'maxmemory-policy', 'noeviction');
    await admin.quit();
    const started = await startEngineProcess({ configFile: file });
    children.push(started);
    await started.stop();
    expect(await started.exited).toMatchObject({ code: 0 });
  }, 120_000);

  describe('Redis out of memory', () => {
    const topic = uniqueName('guard-oom');
    const group = uniqueName('guard-oom-group');
    const namespace = `o${randomBytes(4).toString('hex')}`;
    let server: RedisServerHandle;
    let redis: Redis;
    let ref: RefResult;
    let ends: Map<number, number>;
    let total: number;
    let file: string;
    let queries: StateQueries;

    beforeAll(async () => {
      server = await startRedisServer();
      servers.push(server);
      redis = new Redis(server.url);
      const log = buildReferenceLog({ seed: 880_117, users: 2_000, days: DAYS, events: 40_000, partitions: PARTITIONS, startMs: START, nowMs: NOW, reportingTimeZone: ZONE });
      total = log.length;
      ref = runReference(log.map((m) => m.ref), STATE_REF_SPEC, NOW);
      topics.push(topic, `${topic}.dlq`);
      await createTopic(brokers, topic, PARTITIONS);
      await createTopic(brokers, `${topic}.dlq`, 1);
      await produceLog(brokers, topic, log);
      ends = await highWatermarks(brokers, topic);
      const written = testConfig(yaml(server.url, topic, group, namespace));
      file = written.file;
      queries = new StateQueries(redis, namespace, topic, compileStateSpec(written.config));
    }, 120_000);

    afterAll(async () => {
      await redis?.quit();
    });

    it('pauses instead of losing work, keeps running, and resumes when maxmemory is raised', async () => {
      const engine = await startEngineProcess({ configFile: file, clockMs: NOW, maxBatch: 100 });
      children.push(engine);
      await waitForFences(redis, namespace, topic, ends, (f) => appliedMessages(f) >= total * 0.2, 'engine to apply 20% of the log', 120_000);

      // Full: maxmemory at the current use, then filler until a write is refused.
      await redis.config('SET', 'maxmemory', String(await usedMemory(redis)));
      const filler = 'x'.repeat(512 * 1024);
      let fillers = 0;
      for (;;) {
        const refused = await redis.set(`${namespace}:filler:${fillers}`, filler).then(() => false, (err: Error) => /^OOM/.test(err.message));
        if (refused) break;
        if (++fillers > 200) throw new Error('Redis never refused a write after maxmemory was lowered');
      }
      const retriesBefore = await readMetric(engine.opsUrl, 'nudge_io_retries_total', 'operation="commit"');
      // The engine's next commit meets the OOM error and retries (the metric says it did).
      await pollUntil(() => readMetric(engine.opsUrl, 'nudge_io_retries_total', 'operation="commit"'), (n) => n > retriesBefore, 'a commit refused with OOM and retried', 30_000);
      const atFull = await readFences(redis, namespace, topic, ends.keys());
      expect(appliedMessages(atFull), 'the log was done before Redis filled up: nothing to pause').toBeLessThan(total);

      // Hold: nothing may move. Checked at the end of the hold (a poll cannot await "nothing
      // happened"); the fences are also compared with the group's committed offsets.
      await new Promise((r) => setTimeout(r, HOLD_MS));
      const afterHold = await readFences(redis, namespace, topic, ends.keys());
      expect(describeFences(afterHold, ends)).toBe(describeFences(atFull, ends));
      const committed = await groupOffsets(brokers, group, topic);
      for (const [p, fence] of afterHold) {
        expect(committed.get(p) ?? 0, `p${p}: the group's committed offset is past the state Redis holds`).toBeLessThanOrEqual(fence + 1);
      }
      const retriesDuringHold = (await readMetric(engine.opsUrl, 'nudge_io_retries_total', 'operation="commit"')) - retriesBefore;
      expect(retriesDuringHold).toBeGreaterThan(1);
      expect(await Promise.race([engine.exited.then(() => 'exited'), Promise.resolve('running')])).toBe('running');

      // Raised: the lanes' retry loops get through on their own.
      const raisedAt = Date.now();
      await redis.config('SET', 'maxmemory', '0');
      await waitForFences(redis, namespace, topic, ends, (f) => appliedMessages(f) > appliedMessages(afterHold), 'first commit after maxmemory was raised', 30_000);
      const resumedMs = Date.now() - raisedAt;
      await waitForLanes(redis, namespace, topic, ends, 180_000);
      console.info(`guards: Redis full for ${HOLD_MS} ms at ${appliedMessages(afterHold)}/${total} messages applied; ${retriesDuringHold} commit retries meanwhile; first commit ${resumedMs} ms after maxmemory was raised`);
      expect(resumedMs).toBeLessThan(15_000);

      expect((await countMismatches(queries, ref, STATE_REF_SPEC)).slice(0, 20)).toEqual([]);
      expect((await userMismatches(queries, ref, STATE_REF_SPEC, NOW)).slice(0, 10)).toEqual([]);
      await engine.stop();
      expect(await engine.exited).toMatchObject({ code: 0 });
    }, 360_000);
  });
});

/** The group's committed offset per partition (0 where it has none). */
async function groupOffsets(brokers: string, groupId: string, topic: string): Promise<Map<number, number>> {
  const [committed] = await withAdmin(brokers, (admin) => admin.fetchOffsets({ groupId, topics: [topic] }));
  return new Map((committed?.partitions ?? []).map((p) => [p.partition, Math.max(0, Number(p.offset))]));
}
