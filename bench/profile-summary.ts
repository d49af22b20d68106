/**
 * Where the time goes in a V8 CPU profile (`node --cpu-prof`, or a bench's --profile): self time
 * by function and by area (our src/ modules, each dependency, Node internals, GC, native).
 *
 *   npx tsx bench/profile-summary.ts FILE.cpuprofile [--top 30]
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  totalMs: number;
  byFunction: Array<{ name: string; where: string; area: string; selfMs: number; share: number }>;
  byArea: Array<{ area: string; selfMs: number; share: number }>;
  /** Inclusive time of our own src/ functions (self + callees). */
  inclusive: Array<{ name: string; where: string; totalMs: number; share: number }>;
}

/** Buckets a frame: "src/state/decide.ts", "node_modules/ioredis", "node:internal", "(garbage collector)"... */
function areaOf(url: string, functionName: string): string {
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return `node_modules/${nm[1]}`;
  if (url.startsWith('node:')) return 'node:internal';
  const src = /\/((?:src|bench|scripts)\/.+)$/.exec(url);
  if (src) return src[1] as string;
  return url;
}

export function summarise(profile: Profile, top = 30): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i] as number;
    // timeDeltas[i] is the time since the previous sample; attribute it to this sample.
    const dt = profile.timeDeltas[i + 1] ?? 0;
    selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, dt));
  }
  const total = [...selfUs.values()].reduce((a, b) => a + b, 0);
  const fn = new Map<string, { name: string; where: string; area: string; us: number }>();
  const area = new Map<string, number>();
  const incl = new Map<string, { name: string; where: string; us: number }>();
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    const a = areaOf(url, functionName);
    const where = url === '' ? '' : `${a}:${lineNumber + 1}`;
    const key = `${functionName}@${where}`;
    const f = fn.get(key) ?? { name: functionName || '(anonymous)', where, area: a, us: 0 };
    f.us += us;
    fn.set(key, f);
    area.set(a, (area.get(a) ?? 0) + us);
    // Inclusive time of our own functions: walk up once per distinct frame on the stack.
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const n = byId.get(cur);
      if (!n) break;
      const u = n.callFrame.url;
      if (!/\/src\//.test(u)) continue;
      const w = `${areaOf(u, '')}:${n.callFrame.lineNumber + 1}`;
      const k = `${n.callFrame.functionName}@${w}`;
      if (seen.has(k)) continue;
      seen.add(k);
      const e = incl.get(k) ?? { name: n.callFrame.functionName || '(anonymous)', where: w, us: 0 };
      e.us += us;
      incl.set(k, e);
    }
  }
  const ms = (us: number) => Math.round(us / 100) / 10;
  const share = (us: number) => Math.round((1000 * us) / Math.max(1, total)) / 10;
  return {
    totalMs: ms(total),
    byFunction: [...fn.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map((f) => ({ name: f.name, where: f.where, area: f.area, selfMs: ms(f.us), share: share(f.us) })),
    byArea: [...area.entries()].sort((a, b) => b[1] - a[1]).map(([a, us]) => ({ area: a, selfMs: ms(us), share: share(us) })),
    inclusive: [...incl.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map((e) => ({ name: e.name, where: e.where, totalMs: ms(e.us), share: share(e.us) })),
  };
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '30' } } });
  const file = positionals[0];
  if (file === undefined) throw new Error('usage: npx tsx bench/profile-summary.ts FILE.cpuprofile [--top 30]');
  const s = summarise(JSON.parse(await readFile(file, 'utf8')) as Profile, Number(values.top));
  const out = (line: string) => process.stdout.write(`${line}\n`);
  out(`${path.basename(file)}: ${s.totalMs} ms sampled on the JS thread`);
  out('\nself time by area');
  for (const a of s.byArea.slice(0, 20)) out(`${String(a.share).padStart(6)} %  ${String(a.selfMs).padStart(9)} ms  ${a.area}`);
  out('\nself time by function');
  for (const f of s.byFunction) out(`${String(f.share).padStart(6)} %  ${String(f.selfMs).padStart(9)} ms  ${f.name}  ${f.where}`);
  out('\ninclusive time of src/ functions');
  for (const f of s.inclusive) out(`${String(f.share).padStart(6)} %  ${String(f.totalMs).padStart(9)} ms  ${f.name}  ${f.where}`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname)) {
  main().catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
}
