import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { BudgetLedger } from '../../src/touches/budget-ledger.js';
import { dropNamespace } from '../support/engine-harness.js';

const ns = `b${randomBytes(4).toString('hex')}`;
let redis: Redis;
beforeAll(() => {
  redis = new Redis(inject('redisUrl'));
});
afterAll(async () => {
  await dropNamespace(redis, ns);
  await redis.quit();
});

describe('BudgetLedger against a real Redis', () => {
  it('never overspends under 200 concurrent reservations from separate connections, and charges a re-run once', async () => {
    const clients = Array.from({ length: 4 }, () => new Redis(inject('redisUrl')));
    try {
      const ledgers = clients.map((c) => new BudgetLedger(c, ns));
      const limits = { cost: 3, total: 100, perDay: null };
      const outcomes = await Promise.all(Array.from({ length: 200 }, (_, i) => ledgers[i % 4]!.reserve('checkin', `t${i}`, limits, 20_000)));
      expect(outcomes.filter((o) => o === 'reserved')).toHaveLength(33); // 33 x 3 = 99 <= 100
      expect(outcomes.filter((o) => o === 'budget_exhausted')).toHaveLength(167);
      expect(await ledgers[0]!.spent('checkin', 20_000)).toEqual({ total: 99, today: 99 });
      const first = outcomes.indexOf('reserved');
      expect(await ledgers[1]!.reserve('checkin', `t${first}`, limits, 20_000)).toBe('already-reserved');
      expect((await ledgers[0]!.spent('checkin', 20_000)).total).toBe(99);
    } finally {
      for (const c of clients) c.disconnect();
    }
  });

  it('keeps a budget per day apart from the total', async () => {
    const ledger = new BudgetLedger(redis, ns);
    const limits = { cost: 1, total: null, perDay: 2 };
    expect(await ledger.reserve('daily', 'a', limits, 1)).toBe('reserved');
    expect(await ledger.reserve('daily', 'b', limits, 1)).toBe('reserved');
    expect(await ledger.reserve('daily', 'c', limits, 1)).toBe('daily_budget_exhausted');
    expect(await ledger.reserve('daily', 'c', limits, 2)).toBe('reserved');
  });
});
