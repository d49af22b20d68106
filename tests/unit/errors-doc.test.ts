import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../src/errors.js';
import { EVENT_ERROR_CODES } from '../../src/contract/event.js';

// Codes are a contract operators grep for and alert on: each must be explained in docs/errors.md,
// and the page must not keep explaining a code that no longer exists.
const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
/** Codes documented as table rows: "| `NUDGE_X` | ...". */
const documented = new Set([...doc.matchAll(/^\| `(NUDGE_[A-Z_]+)` \|/gm)].map((m) => m[1]));

describe('docs/errors.md', () => {
  const known = [...Object.values(ErrorCodes), ...Object.keys(EVENT_ERROR_CODES)];

  it('has a row for every process error code and every event rejection code', () => {
    expect(known.filter((c) => !documented.has(c))).toEqual([]);
  });

  it('documents no code the sources do not define', () => {
    expect([...documented].filter((c) => c !== undefined && !known.includes(c))).toEqual([]);
  });

  it('says what to do next for every process error', () => {
    for (const code of Object.values(ErrorCodes)) {
      const row = doc.split('\n').find((l) => l.startsWith(`| \`${code}\` |`));
      const cells = row?.split('|').map((c) => c.trim()) ?? [];
      // | code | when | retriable | what to do |
      expect(cells[4]?.length ?? 0, `${code}: the "what to do" cell`).toBeGreaterThan(5);
    }
  });
});
