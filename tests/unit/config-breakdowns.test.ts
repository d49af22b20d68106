import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { compileStateSpec } from '../../src/engine/state-spec.js';

const root = mkdtempSync(join(tmpdir(), 'nudge-breakdowns-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
function load(lines: string[]) {
  const file = join(root, `c${n++}.yaml`);
  writeFileSync(file, lines.join('\n') + '\n');
  return loadConfig({ file, env: {} });
}
function refusal(lines: string[]): string {
  try {
    load(lines);
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error('expected the config to be refused');
}

describe('activity.breakdowns', () => {
  it('compiles an exact split by channel and a HyperLogLog split by a trait, keeping that trait', () => {
    const cfg = load([
      'activity:',
      '  breakdowns:',
      '    - { name: channel, by: channel, values: [app, web] }',
      '    - { name: city, by: trait, trait: city, maxValues: 50 }',
    ]);
    const spec = compileStateSpec(cfg);
    expect(spec.breakdowns).toEqual([
      { name: 'channel', source: { kind: 'channel' }, values: new Set(['app', 'web']), maxValues: 200 },
      { name: 'city', source: { kind: 'trait', key: 'city' }, values: null, maxValues: 50 },
    ]);
    expect(spec.traitKeys).toContain('city');
  });

  it('refuses a trait split without its trait, reserved value names and unknown kinds, with paths', () => {
    const message = refusal([
      'activity:',
      '  breakdowns:',
      '    - { name: seg, by: trait }',
      '    - { name: ch, by: channel, values: [app, other] }',
      '    - { name: dev, by: device }',
    ]);
    expect(message).toContain('activity.breakdowns[0].trait: is required with by: trait');
    expect(message).toContain('activity.breakdowns[1].values: "other" and "unknown" are reserved');
    expect(message).toContain('activity.breakdowns[2].by');
  });
});
