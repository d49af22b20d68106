import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { OffsetCommitter } from '../../src/sources/offset-committer.js';

/** Offsets gathered and sent in one request per interval, on virtual time. */

let sent: Array<Array<{ partition: number; offset: number }>>;
let owned: Set<number>;
const committer = () => new OffsetCommitter((o) => sent.push(o), (p) => owned.has(p), 100);

beforeEach(() => {
  vi.useFakeTimers();
  sent = [];
  owned = new Set([0, 1, 2]);
});
afterEach(() => vi.useRealTimers());

describe('OffsetCommitter', () => {
  it('sends the latest offset of every partition in one request once the interval has passed', () => {
    const c = committer();
    c.add(0, 10);
    c.add(1, 5);
    c.add(0, 20);
    vi.advanceTimersByTime(99);
    expect(sent).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(sent).toEqual([[{ partition: 0, offset: 20 }, { partition: 1, offset: 5 }]]);
    // Nothing gathered: no request, and the next offset starts a new interval.
    vi.advanceTimersByTime(500);
    expect(sent).toHaveLength(1);
    c.add(2, 7);
    vi.advanceTimersByTime(100);
    expect(sent[1]).toEqual([{ partition: 2, offset: 7 }]);
  });

  it('flushes a revoked partition at once and leaves the others to the timer', () => {
    const c = committer();
    c.add(0, 10);
    c.add(1, 5);
    c.flush([1]);
    expect(sent).toEqual([[{ partition: 1, offset: 5 }]]);
    vi.advanceTimersByTime(100);
    expect(sent[1]).toEqual([{ partition: 0, offset: 10 }]);
  });

  it('never sends the offset of a partition it dropped or no longer owns', () => {
    const c = committer();
    c.add(0, 10);
    c.add(1, 5);
    c.add(2, 3);
    c.drop(0); // a reclaim: may be past a fence Redis lost
    owned.delete(1); // revoked meanwhile
    vi.advanceTimersByTime(100);
    expect(sent).toEqual([[{ partition: 2, offset: 3 }]]);
  });

  it('sends everything at close, and nothing later', () => {
    const c = committer();
    c.add(0, 10);
    c.close();
    expect(sent).toEqual([[{ partition: 0, offset: 10 }]]);
    vi.advanceTimersByTime(1_000);
    expect(sent).toHaveLength(1);
  });
});
