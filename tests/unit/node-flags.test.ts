import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ENGINE_NODE_FLAGS } from '../../src/cli/node-flags.js';

const root = path.resolve(import.meta.dirname, '../..');
const read = (file: string): string => readFileSync(path.join(root, file), 'utf8');

/** Every way the engine is launched passes the engine's V8 flags to Node (src/cli/node-flags.ts). */
describe('the engine launchers', () => {
  it('has flags to pass', () => {
    expect(ENGINE_NODE_FLAGS.length).toBeGreaterThan(0);
    for (const f of ENGINE_NODE_FLAGS) expect(f).toMatch(/^--[a-z0-9-]+(=\S+)?$/);
  });

  it('bin/nudge.js runs Node with them (its shebang)', () => {
    expect(read('bin/nudge.js').split('\n')[0]).toBe(`#!/usr/bin/env -S node ${ENGINE_NODE_FLAGS.join(' ')}`);
  });

  it('npm start runs Node with them', () => {
    const scripts = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts;
    expect(scripts['start']).toBe(`node ${ENGINE_NODE_FLAGS.join(' ')} bin/nudge.js demo`);
  });

  it('the Docker image runs Node with them', () => {
    const entry = /^ENTRYPOINT (\[.*\])$/m.exec(read('Dockerfile'))?.[1];
    expect(JSON.parse(entry ?? 'null')).toEqual(['node', ...ENGINE_NODE_FLAGS, 'bin/nudge.js']);
  });

  it('bin/nudge.js started through its shebang works on this machine (env -S splits the flags)', async () => {
    const { stdout } = await promisify(execFile)(path.join(root, 'bin/nudge.js'), ['help'], { cwd: root });
    expect(stdout).toContain('Usage: nudge <command>');
  });
});
