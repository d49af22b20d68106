import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { describe, expect, inject, it, onTestFinished } from 'vitest';
import { startRedisServer } from '../../src/dev/redis-server.js';
import { createTopic, deleteTopics, describeTopic, uniqueName, withAdmin } from '../support/kafka-admin.js';
import { testRedis } from '../support/redis.js';

describe('test services (global setup)', () => {
  it('gives a real Redis, configured never to evict when we started it', async () => {
    const redis = testRedis(inject('redisUrl'));
    onTestFinished(() => redis.cleanup());

    const info = await redis.client.info('server');
    expect(info).toMatch(/redis_version:\d+\.\d+/);
    if (inject('startedServices').redis) {
      expect(await redis.client.config('GET', 'maxmemory-policy')).toEqual(['maxmemory-policy', 'noeviction']);
    }
  });

  it('cleans up only the keys under its own prefix', async () => {
    const mine = testRedis(inject('redisUrl'));
    const other = testRedis(inject('redisUrl'));
    onTestFinished(() => other.cleanup());
    await mine.client.set(`${mine.prefix}a`, '1');
    await other.client.set(`${other.prefix}a`, '1');

    await mine.cleanup();

    expect(await other.client.exists(`${mine.prefix}a`, `${other.prefix}a`)).toBe(1);
  });

  it('gives a real Kafka broker that creates, describes and deletes topics', async () => {
    const brokers = inject('kafkaBrokers');
    const topic = uniqueName('services-test');
    onTestFinished(() => deleteTopics(brokers, [topic]));

    await createTopic(brokers, topic, 3);
    const meta = await describeTopic(brokers, topic);
    expect(meta.partitions.map((p) => p.partitionId)).toEqual([0, 1, 2]);

    await deleteTopics(brokers, [topic]);
    const topics = await withAdmin(brokers, (admin) => admin.listTopics());
    expect(topics).not.toContain(topic);
  });
});

describe('startRedisServer', () => {
  it('restarts on the same port and dir after a kill and keeps data with appendonly', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'nudge-redis-restart-'));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const first = await startRedisServer({ dir, appendonly: true, extraArgs: ['--appendfsync', 'always'] });
    onTestFinished(() => first.stop());
    const before = new Redis(first.url);
    await before.set('survives', 'yes');
    before.disconnect();

    await first.kill();

    const second = await startRedisServer({ port: first.port, dir, appendonly: true });
    onTestFinished(() => second.stop());
    const after = new Redis(second.url);
    onTestFinished(() => after.quit().then(() => undefined));
    expect(second.port).toBe(first.port);
    expect(await after.get('survives')).toBe('yes');
  });

  it('fails with NUDGE_SERVICE_START and the reason when the port is taken', async () => {
    const running = await startRedisServer();
    onTestFinished(() => running.stop());

    await expect(startRedisServer({ port: running.port })).rejects.toMatchObject({
      code: 'NUDGE_SERVICE_START',
      message: expect.stringMatching(/exited before it was ready[\s\S]*Address already in use/),
    });
  });
});
