import { describe, expect, it } from 'vitest';
import { OFFSET_BEGINNING, resumeOffset } from '../../src/sources/resume-offset.js';

describe('resumeOffset: never start past what Redis has applied', () => {
  it('goes back to fence + 1 when the group committed past it (Redis restored from older state)', () => {
    expect(resumeOffset(101, 250)).toBe(101);
  });

  it('reads from the beginning when Redis has no fence but the group committed offsets (Redis lost the lane)', () => {
    expect(resumeOffset(0, 250)).toBe(OFFSET_BEGINNING);
  });

  it('keeps the committed offset when it is at or behind the fence: re-reads are skipped by the fence', () => {
    expect(resumeOffset(101, 101)).toBeUndefined();
    expect(resumeOffset(101, 40)).toBeUndefined();
  });

  it('keeps auto.offset.reset (earliest) for a group that never committed: a new group replays', () => {
    expect(resumeOffset(101, 'none')).toBeUndefined();
    expect(resumeOffset(0, 'none')).toBeUndefined();
  });

  it('starts at the fence when the committed offset could not be fetched: the one always-safe position', () => {
    expect(resumeOffset(101, 'unknown')).toBe(101);
    expect(resumeOffset(0, 'unknown')).toBe(OFFSET_BEGINNING);
  });

  it('leaves a lane without a claim (no fence known) to the committed offset', () => {
    expect(resumeOffset(undefined, 250)).toBeUndefined();
  });
});
