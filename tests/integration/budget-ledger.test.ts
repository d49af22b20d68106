import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { silentLogger } from '../../src/log.js';
import { BudgetLedger } from '../../src/touches/budget-ledger.js';
import { BudgetSnapshot } from '../../src/touches/budget-snapshot.js';
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

  it('BudgetSnapshot: what the decision step sees is the ledger\'s spend, for the day it was read', async () => {
    const ledger = new BudgetLedger(redis, ns);
    const limits = { cost: 2, total: 20, perDay: 6 };
    for (const t of ['s1', 's2']) expect(await ledger.reserve('snap', t, limits, 7)).toBe('reserved');
    expect(await ledger.reserve('snap', 's3', limits, 8)).toBe('reserved');
    let now = 7;
    const snapshot = new BudgetSnapshot({ ledger, limits: [{ journeyId: 'snap', total: 20, perDay: 6 }, { journeyId: 'none', total: null, perDay: null }], dayOf: (ms) => ms, clock: () => now, logger: silentLogger() });
    expect(snapshot.remaining()).toBeUndefined(); // not read yet: the gate assumes nothing spent
    await snapshot.refresh();
    expect(snapshot.remaining()?.get('snap')).toEqual({ total: 14, today: 2, day: 7 });
    expect(snapshot.remaining()?.get('none')).toEqual({ total: null, today: null, day: 7 });
    now = 8;
    await snapshot.refresh();
    expect(snapshot.remaining()?.get('snap')).toEqual({ total: 14, today: 4, day: 8 });
  });
});
