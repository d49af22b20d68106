import { describe, expect, it } from 'vitest';
import { guardedLookup, isPrivateAddress, type LookupFn } from '../../src/touches/channels/address-guard.js';
import { parseRetryAfter } from '../../src/touches/channels/retry-after.js';

describe('private address guard', () => {
  it('blocks loopback, private, link-local, CGNAT, multicast and reserved addresses, v4 and v6', () => {
    for (const ip of ['127.0.0.1', '127.9.9.9', '10.1.2.3', '172.16.0.1', '172.31.255.255', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '224.0.0.1', '255.255.255.255', '::1', '::', 'fe80::1', 'fc00::1', 'fd12:3456::1', '::ffff:127.0.0.1', '::ffff:10.0.0.1', 'ff02::1', 'not-an-ip']) {
      expect([ip, isPrivateAddress(ip)]).toEqual([ip, true]);
    }
  });

  it('lets public addresses through', () => {
    for (const ip of ['8.8.8.8', '1.1.1.1', '172.32.0.1', '192.169.0.1', '100.128.0.1', '2606:4700:4700::1111', '::ffff:8.8.8.8']) {
      expect([ip, isPrivateAddress(ip)]).toEqual([ip, false]);
    }
  });

  const fakeDns = (answers: Record<string, string[]>): LookupFn => (hostname, _o, cb) => {
    const list = answers[hostname];
    if (!list) return cb(Object.assign(new Error('nx'), { code: 'ENOTFOUND' }), []);
    cb(null, list.map((address) => ({ address, family: address.includes(':') ? 6 : 4 })));
  };

  it('resolves the host and refuses it when any address is private (one bad answer is enough)', async () => {
    const lookup = guardedLookup(fakeDns({ 'ok.test': ['93.184.216.34'], 'mixed.test': ['93.184.216.34', '10.0.0.7'], 'meta.test': ['169.254.169.254'] }));
    const call = (host: string, all: boolean) =>
      new Promise<{ err: NodeJS.ErrnoException | null; address: unknown; family?: number }>((resolve) => lookup(host, { all } as never, (err, address, family) => resolve({ err, address, family })));
    expect(await call('ok.test', false)).toEqual({ err: null, address: '93.184.216.34', family: 4 });
    expect((await call('ok.test', true)).address).toEqual([{ address: '93.184.216.34', family: 4 }]);
    expect((await call('mixed.test', true)).err?.code).toBe('NUDGE_TOUCH_TARGET_BLOCKED');
    expect((await call('meta.test', false)).err?.message).toContain('169.254.169.254');
    expect((await call('nx.test', false)).err?.code).toBe('ENOTFOUND');
  });
});

describe('Retry-After', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  it('reads delay-seconds and HTTP-dates, caps, and ignores garbage', () => {
    expect(parseRetryAfter('3', now, 60_000)).toBe(3000);
    expect(parseRetryAfter(['0'], now, 60_000)).toBe(0);
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:00:10 GMT', now, 60_000)).toBe(10_000);
    expect(parseRetryAfter('Wed, 31 Dec 2025 23:00:00 GMT', now, 60_000)).toBe(0);
    expect(parseRetryAfter('86400', now, 60_000)).toBe(60_000);
    expect(parseRetryAfter('soon', now, 60_000)).toBeUndefined();
    expect(parseRetryAfter(undefined, now, 60_000)).toBeUndefined();
  });
});
