import { describe, expect, it } from 'vitest';
import { emptyStepResult, record } from '../../src/rules/decisions.js';
import { emptyJourneyState } from '../../src/rules/journey-state.js';

// A result's lists start as one shared empty list (most decisions record nothing); what one
// decision records must never show up in another's result.
describe('decision results', () => {
  it('start empty and keep what each records to itself', () => {
    const a = emptyStepResult(emptyJourneyState());
    const b = emptyStepResult(emptyJourneyState());
    record(a, 'skipped', { journeyId: 'j1', reason: 'already_in_journey', occurrence: 'e1', detail: '' });
    record(a, 'skipped', { journeyId: 'j1', reason: 'reentry_never', occurrence: 'e2', detail: '' });
    record(b, 'scheduled', { kind: 'inactive', journeyId: 'j2', dueAt: 5 });
    expect(a.skipped.map((s) => s.occurrence)).toEqual(['e1', 'e2']);
    expect(a.scheduled).toEqual([]);
    expect(b.skipped).toEqual([]);
    expect(b.scheduled).toEqual([{ kind: 'inactive', journeyId: 'j2', dueAt: 5 }]);
    expect(emptyStepResult(emptyJourneyState()).skipped).toEqual([]);
  });

  it('refuse a push that casts around record, rather than leak it into every result', () => {
    const r = emptyStepResult(emptyJourneyState());
    expect(() => (r.touches as unknown[]).push({})).toThrow(TypeError);
    expect(emptyStepResult(emptyJourneyState()).touches).toHaveLength(0);
  });
});
