import { describe, expect, it } from 'vitest';
import { consumerLag } from '../../src/sources/consumer-lag.js';

describe('consumerLag: messages after the group’s committed offset', () => {
  it('counts from the committed offset to the high watermark', () => {
    expect(consumerLag({ low: 0, high: 500 }, 480)).toBe(20);
    expect(consumerLag({ low: 0, high: 500 }, 500)).toBe(0);
  });

  it('counts every retained message when the group has no committed offset (it starts at the earliest)', () => {
    expect(consumerLag({ low: 100, high: 500 }, undefined)).toBe(400);
    expect(consumerLag({ low: 0, high: 0 }, undefined)).toBe(0);
  });

  it('does not count messages retention deleted before they were read', () => {
    expect(consumerLag({ low: 300, high: 500 }, 120)).toBe(200);
  });

  it('is never negative (a committed offset past a truncated log)', () => {
    expect(consumerLag({ low: 0, high: 50 }, 80)).toBe(0);
  });
});
