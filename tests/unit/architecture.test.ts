import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import madge from 'madge';

/**
 * STYLE.md habit 1: folders show the data flow, sources -> pipeline -> state -> rules ->
 * touches, and dependencies point one way. Shared foundations (errors, log, config, contract,
 * metrics) are imported by anyone and import no layer; entry points (cli, http, tools, dev,
 * engine) sit on top and nothing below imports them.
 */
const SRC = resolve(__dirname, '../../src');
const LAYERS = ['sources', 'pipeline', 'state', 'rules', 'touches'];
const FOUNDATION = new Set(['errors.ts', 'log.ts', 'config', 'contract', 'metrics']);
const ENTRY = new Set(['cli', 'http', 'tools', 'dev', 'engine']);

function listTs(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return listTs(p);
    return p.endsWith('.ts') && !p.endsWith('.d.ts') ? [p] : [];
  });
}

/** Relative imports of a file, resolved to source paths (`./x.js` is `./x.ts` on disk). */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/(?:import|export)\s[^'"]*?from\s+['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]\s*\)/g)) {
    const spec = (m[1] ?? m[2]) as string;
    out.push(resolve(dirname(file), spec.replace(/\.js$/, '.ts')));
  }
  return out;
}

function topOf(file: string): string {
  return relative(SRC, file).split('/')[0] as string;
}

describe('architecture', () => {
  const files = listTs(SRC);
  const graph = new Map(files.map((f) => [f, importsOf(f)]));

  it('has no circular imports (own graph walk)', () => {
    const state = new Map<string, 'visiting' | 'done'>();
    const cycles: string[] = [];
    const visit = (f: string, path: string[]): void => {
      if (state.get(f) === 'done') return;
      if (state.get(f) === 'visiting') {
        cycles.push([...path.slice(path.indexOf(f)), f].map((p) => relative(SRC, p)).join(' -> '));
        return;
      }
      state.set(f, 'visiting');
      for (const dep of graph.get(f) ?? []) if (graph.has(dep)) visit(dep, [...path, f]);
      state.set(f, 'done');
    };
    for (const f of files) visit(f, []);
    expect(cycles).toEqual([]);
  });

  it('has no circular imports (madge)', async () => {
    const result = await madge(SRC, { fileExtensions: ['ts'], tsConfig: resolve(__dirname, '../../tsconfig.json') });
    expect(result.circular()).toEqual([]);
    // madge silently skips what it cannot resolve; a skip would hide a cycle.
    expect(result.warnings().skipped).toEqual([]);
  });

  it('imports only every relative path that exists', () => {
    const missing = [...graph].flatMap(([f, deps]) => deps.filter((d) => !d.endsWith('.json') && !statSync(d, { throwIfNoEntry: false }) && !statSync(d.replace(/\.ts$/, '.js'), { throwIfNoEntry: false })).map((d) => `${relative(SRC, f)} -> ${relative(SRC, d)}`));
    expect(missing).toEqual([]);
  });

  it('points dependencies one way: downstream layers, foundations and entry points keep their place', () => {
    const violations: string[] = [];
    for (const [file, deps] of graph) {
      const from = topOf(file);
      for (const dep of deps) {
        const to = topOf(dep);
        if (to === from) continue;
        const fromLayer = LAYERS.indexOf(from);
        const toLayer = LAYERS.indexOf(to);
        const bad =
          (FOUNDATION.has(from) && !FOUNDATION.has(to)) ||
          (!ENTRY.has(from) && ENTRY.has(to)) ||
          (fromLayer >= 0 && toLayer >= 0 && toLayer < fromLayer);
        if (bad) violations.push(`${relative(SRC, file)} -> ${relative(SRC, dep)}`);
      }
    }
    expect(violations).toEqual([]);
  });
});
